//! What the back office tracks, as tables: every case's SLA clock, the on-site target of
//! every work order, and every closed-loop item. A persisted projection
//! (`svcops_eventstore::projection`) in the office's own database; the service statistics
//! are counts over it, exact because the runner applies each event once.

use async_trait::async_trait;
use svcops_eventstore::projection::{Projection, ReadModel, Tables};
use svcops_eventstore::read_model::{BulkInsert, Dialect, ReadModelTransaction};
use svcops_eventstore::{Error, RecordedEvent};
use svcops_kit::aggregate::DomainEvent;

use crate::closed_loop::LoopEvent;
use crate::sla::{Priority, SlaEvent};

pub struct CaseTrackingProjection;

fn priority_name(priority: Priority) -> &'static str {
    match priority {
        Priority::Low => "low",
        Priority::Normal => "normal",
        Priority::High => "high",
        Priority::Urgent => "urgent",
    }
}

#[async_trait]
impl Projection for CaseTrackingProjection {
    fn name(&self) -> &'static str {
        "case_tracking"
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["sla_clocks", "on_site_targets", "closed_loop_items"]
    }

    fn schema(&self, _dialect: Dialect) -> Vec<String> {
        // Times in unix microseconds.
        vec![
            "CREATE TABLE {sla_clocks} (
                case_id TEXT PRIMARY KEY,
                position BIGINT NOT NULL,
                policy TEXT NOT NULL,
                priority TEXT,
                started_at BIGINT NOT NULL,
                first_response_due BIGINT NOT NULL,
                resolution_due BIGINT NOT NULL
            )"
            .into(),
            "CREATE TABLE {on_site_targets} (
                work_order_id TEXT PRIMARY KEY,
                case_id TEXT NOT NULL,
                on_site_due BIGINT NOT NULL
            )"
            .into(),
            "CREATE INDEX {on_site_targets}_by_case ON {on_site_targets} (case_id)".into(),
            "CREATE TABLE {closed_loop_items} (
                case_id TEXT PRIMARY KEY,
                position BIGINT NOT NULL,
                status TEXT NOT NULL,
                opened_at BIGINT NOT NULL
            )"
            .into(),
            "CREATE INDEX {closed_loop_items}_by_status ON {closed_loop_items} (status)".into(),
        ]
    }

    async fn apply(
        &self,
        transaction: &mut dyn ReadModelTransaction,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), Error> {
        let mut clocks = BulkInsert::new(
            &tables.name("sla_clocks"),
            &[
                "case_id",
                "position",
                "policy",
                "priority",
                "started_at",
                "first_response_due",
                "resolution_due",
            ],
            "",
        );
        let mut on_site = BulkInsert::new(
            &tables.name("on_site_targets"),
            &["work_order_id", "case_id", "on_site_due"],
            "",
        );
        let mut items = BulkInsert::new(
            &tables.name("closed_loop_items"),
            &["case_id", "position", "status", "opened_at"],
            "",
        );
        for recorded in events {
            match SlaEvent::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(SlaEvent::Started {
                    case_id,
                    policy,
                    priority,
                    started_at,
                    first_response_due,
                    resolution_due,
                })) => clocks.push([
                    case_id.into(),
                    recorded.position.into(),
                    policy.into(),
                    priority.map(|p| priority_name(p).to_owned()).into(),
                    started_at.into(),
                    first_response_due.into(),
                    resolution_due.into(),
                ]),
                Ok(Some(SlaEvent::OnSiteTargetSet {
                    case_id,
                    work_order_id,
                    on_site_due,
                })) => on_site.push([work_order_id.into(), case_id.into(), on_site_due.into()]),
                Ok(None | Some(SlaEvent::WorkOrderAwaitingCase { .. })) => {}
                Err(error) => {
                    tracing::error!(%error, position = recorded.position, "case tracking passes over an undecodable event");
                }
            }
            match LoopEvent::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(LoopEvent::Opened { case_id })) => items.push([
                    case_id.into(),
                    recorded.position.into(),
                    "open".into(),
                    recorded.metadata.occurred_at.into(),
                ]),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%error, position = recorded.position, "case tracking passes over an undecodable event");
                }
            }
        }
        clocks.flush(transaction).await?;
        on_site.flush(transaction).await?;
        items.flush(transaction).await?;
        Ok(())
    }
}

/// Service statistics: counts over the tracking tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub cases_tracked: u64,
    pub closed_loop_open: u64,
    pub work_orders_tracked: u64,
}

pub async fn stats(tracking: &ReadModel, tables: &Tables) -> Result<Stats, Error> {
    let rows = tracking
        .query(
            tables,
            "SELECT (SELECT COUNT(*) FROM {sla_clocks}), \
             (SELECT COUNT(*) FROM {closed_loop_items} WHERE status = 'open'), \
             (SELECT COUNT(*) FROM {on_site_targets})",
            &[],
        )
        .await?;
    let row = rows.first().ok_or_else(|| Error::ReadModel {
        reason: "the statistics query returned no row".into(),
    })?;
    let count = |index| row.integer(index).map(|count| count.max(0) as u64);
    Ok(Stats {
        cases_tracked: count(0)?,
        closed_loop_open: count(1)?,
        work_orders_tracked: count(2)?,
    })
}
