//! The work-order list: every work order, newest first, optionally of one case. A persisted
//! projection (`svcops_eventstore::projection`) in the office's own database.

use async_trait::async_trait;
use svcops_eventstore::projection::{Projection, ReadModel, Tables};
use svcops_eventstore::read_model::{
    BulkInsert, Dialect, ReadModelTransaction, SqlRow, SqlValue, page_of,
};
use svcops_eventstore::{Error, RecordedEvent};
use svcops_kit::aggregate::DomainEvent;
use uuid::Uuid;

use crate::app::WorkOrderView;
use crate::work_order::{Event, Kind, Lifecycle, WorkOrderDetails};

pub struct WorkOrderListProjection;

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Repair => "repair",
        Kind::Installation => "installation",
    }
}

fn kind_of(name: &str) -> Result<Kind, Error> {
    match name {
        "repair" => Ok(Kind::Repair),
        "installation" => Ok(Kind::Installation),
        other => Err(Error::ReadModel {
            reason: format!("unknown work order kind {other:?}"),
        }),
    }
}

#[async_trait]
impl Projection for WorkOrderListProjection {
    fn name(&self) -> &'static str {
        "work_order_list"
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["work_orders"]
    }

    fn schema(&self, _dialect: Dialect) -> Vec<String> {
        vec![
            "CREATE TABLE {work_orders} (
                work_order_id TEXT PRIMARY KEY,
                position BIGINT NOT NULL,
                version BIGINT NOT NULL,
                case_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                product TEXT NOT NULL,
                serial_number TEXT NOT NULL,
                summary TEXT NOT NULL,
                lifecycle TEXT NOT NULL,
                opened_at BIGINT NOT NULL
            )"
            .into(),
            "CREATE UNIQUE INDEX {work_orders}_by_position ON {work_orders} (position)".into(),
            "CREATE INDEX {work_orders}_by_case ON {work_orders} (case_id, position)".into(),
        ]
    }

    async fn apply(
        &self,
        transaction: &mut dyn ReadModelTransaction,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), Error> {
        let mut work_orders = BulkInsert::new(
            &tables.name("work_orders"),
            &[
                "work_order_id",
                "position",
                "version",
                "case_id",
                "kind",
                "product",
                "serial_number",
                "summary",
                "lifecycle",
                "opened_at",
            ],
            "",
        );
        for recorded in events {
            let details = match Event::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(Event::Opened(details))) => details,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(%error, position = recorded.position, "work order list passes over an undecodable event");
                    continue;
                }
            };
            work_orders.push([
                details.work_order_id.into(),
                recorded.position.into(),
                (recorded.version as i64).into(),
                details.case_id.into(),
                kind_name(details.kind).into(),
                details.product.into(),
                details.serial_number.into(),
                details.summary.into(),
                "open".into(),
                recorded.metadata.occurred_at.into(),
            ]);
        }
        work_orders.flush(transaction).await?;
        Ok(())
    }
}

const COLUMNS: &str = "work_order_id, position, version, case_id, kind, product, \
     serial_number, summary, lifecycle, opened_at";

fn view(row: &SqlRow) -> Result<WorkOrderView, Error> {
    let lifecycle = match row.text(8)? {
        "open" => Lifecycle::Open,
        other => {
            return Err(Error::ReadModel {
                reason: format!("unknown work order lifecycle {other:?}"),
            });
        }
    };
    Ok(WorkOrderView {
        details: WorkOrderDetails {
            work_order_id: row.uuid(0)?,
            case_id: row.uuid(3)?,
            kind: kind_of(row.text(4)?)?,
            product: row.text(5)?.to_owned(),
            serial_number: row.text(6)?.to_owned(),
            summary: row.text(7)?.to_owned(),
        },
        lifecycle,
        opened_at: row.timestamp(9)?,
        version: row.integer(2)? as u64,
    })
}

/// One page, newest first (of one case, if given), with the token of the next page.
pub async fn page(
    list: &ReadModel,
    tables: &Tables,
    case_id: Option<Uuid>,
    page_size: usize,
    before: Option<i64>,
) -> Result<(Vec<WorkOrderView>, Option<i64>), Error> {
    let page_size = page_size.clamp(1, 1_000);
    let before: SqlValue = before.unwrap_or(i64::MAX).into();
    let limit: SqlValue = (page_size as i64 + 1).into();
    let rows = match case_id {
        Some(case_id) => {
            list.query(
                tables,
                &format!(
                    "SELECT {COLUMNS} FROM {{work_orders}} WHERE case_id = $1 AND position < $2 \
                     ORDER BY position DESC LIMIT +$3"
                ),
                &[case_id.into(), before, limit],
            )
            .await?
        }
        None => {
            list.query(
                tables,
                &format!(
                    "SELECT {COLUMNS} FROM {{work_orders}} WHERE position < $1 \
                     ORDER BY position DESC LIMIT +$2"
                ),
                &[before, limit],
            )
            .await?
        }
    };
    let (rows, next) = page_of(rows, page_size, 1)?;
    let views = rows.iter().map(view).collect::<Result<_, _>>()?;
    Ok((views, next))
}
