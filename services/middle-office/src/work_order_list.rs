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
use crate::work_order::{Event, Kind, Lifecycle, Visit, Window, WorkOrderDetails};

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
        2
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
                opened_at BIGINT NOT NULL,
                technician TEXT,
                window_start BIGINT,
                window_end BIGINT
            )"
            .into(),
            "CREATE UNIQUE INDEX {work_orders}_by_position ON {work_orders} (position)".into(),
            "CREATE INDEX {work_orders}_by_case ON {work_orders} (case_id, position)".into(),
            "CREATE INDEX {work_orders}_by_technician ON {work_orders} (technician, lifecycle)"
                .into(),
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
        // Later events change rows; applied after the inserts (a work order opened in this
        // batch is a row by then), in event order.
        let mut changes: Vec<(String, Vec<SqlValue>)> = Vec::new();
        for recorded in events {
            let event = match Event::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(%error, position = recorded.position, "work order list passes over an undecodable event");
                    continue;
                }
            };
            let version = recorded.version as i64;
            let (work_order_id, set, mut parameters): (Uuid, &str, Vec<SqlValue>) = match event {
                Event::Opened(details) => {
                    work_orders.push([
                        details.work_order_id.into(),
                        recorded.position.into(),
                        version.into(),
                        details.case_id.into(),
                        kind_name(details.kind).into(),
                        details.product.into(),
                        details.serial_number.into(),
                        details.summary.into(),
                        lifecycle_name(Lifecycle::Open).into(),
                        recorded.metadata.occurred_at.into(),
                    ]);
                    continue;
                }
                Event::Scheduled {
                    work_order_id,
                    window,
                    ..
                } => (
                    work_order_id,
                    "window_start = $1, window_end = $2, \
                     lifecycle = CASE WHEN lifecycle = 'open' THEN 'scheduled' ELSE lifecycle END",
                    vec![window.start.into(), window.end.into()],
                ),
                Event::Dispatched {
                    work_order_id,
                    technician,
                    ..
                } => (
                    work_order_id,
                    "technician = $1, lifecycle = 'dispatched'",
                    vec![technician.into()],
                ),
                Event::EnRoute { work_order_id, .. } => {
                    (work_order_id, "lifecycle = 'en-route'", vec![])
                }
                Event::Arrived { work_order_id, .. } => {
                    (work_order_id, "lifecycle = 'on-site'", vec![])
                }
                Event::Completed { work_order_id, .. } => {
                    (work_order_id, "lifecycle = 'completed'", vec![])
                }
                // Charges are read from the work order's stream (`GetWorkOrder`).
                Event::Charged { .. } => continue,
            };
            // SQLite numbers `$N` by first appearance: the version and id come last.
            parameters.push(version.into());
            let version_parameter = parameters.len();
            parameters.push(work_order_id.into());
            let id_parameter = parameters.len();
            changes.push((
                tables.sql(&format!(
                    "UPDATE {{work_orders}} SET {set}, version = ${version_parameter} \
                     WHERE work_order_id = ${id_parameter}"
                )),
                parameters,
            ));
        }
        work_orders.flush(transaction).await?;
        for (sql, parameters) in changes {
            transaction.execute(&sql, &parameters).await?;
        }
        Ok(())
    }
}

fn lifecycle_name(lifecycle: Lifecycle) -> &'static str {
    match lifecycle {
        Lifecycle::Open => "open",
        Lifecycle::Scheduled => "scheduled",
        Lifecycle::Dispatched => "dispatched",
        Lifecycle::EnRoute => "en-route",
        Lifecycle::OnSite => "on-site",
        Lifecycle::Completed => "completed",
    }
}

const COLUMNS: &str = "work_order_id, position, version, case_id, kind, product, \
     serial_number, summary, lifecycle, opened_at, technician, window_start, window_end";

fn view(row: &SqlRow) -> Result<WorkOrderView, Error> {
    let lifecycle = match row.text(8)? {
        "open" => Lifecycle::Open,
        "scheduled" => Lifecycle::Scheduled,
        "dispatched" => Lifecycle::Dispatched,
        "en-route" => Lifecycle::EnRoute,
        "on-site" => Lifecycle::OnSite,
        "completed" => Lifecycle::Completed,
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
        // The list holds the technician and the window; the rest of a visit is read from
        // the work order's stream (`GetWorkOrder`).
        visit: Visit {
            technician: row.optional_text(10)?.map(str::to_owned),
            window: match (row.optional_integer(11)?, row.optional_integer(12)?) {
                (Some(_), Some(_)) => Some(Window {
                    start: row.timestamp(11)?,
                    end: row.timestamp(12)?,
                }),
                _ => None,
            },
            ..Visit::default()
        },
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
