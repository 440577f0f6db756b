//! Reacting to the front office, work-order queries, and the work-order read model.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;

use async_trait::async_trait;
use svcops_bus::consumer::{Handler, HandlerError};
use svcops_bus::envelope::BusEvent;
use svcops_bus::relay::Tap;
use svcops_eventstore::{EventStore, RecordedEvent};
use svcops_kit::ApiError;
use svcops_kit::aggregate::{DomainEvent, ExecuteError, Executor, Idempotency};
use svcops_kit::events::CommandContext;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::front_office_events::{self, work_needed};
use crate::work_order::{
    self, Command, Event, Lifecycle, WorkOrder, WorkOrderDetails, work_order_id,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("work order {0} not found")]
    NotFound(Uuid),
    #[error(transparent)]
    Load(#[from] ExecuteError<work_order::Error>),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotFound(id) => ApiError::NotFound {
                resource: "work order",
                id: id.to_string(),
            },
            Error::Load(error) => error.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkOrderView {
    pub details: WorkOrderDetails,
    pub lifecycle: Lifecycle,
    pub opened_at: OffsetDateTime,
    pub version: u64,
}

pub struct WorkOrders {
    orders: Executor<WorkOrder>,
    list: Arc<WorkOrderList>,
}

impl WorkOrders {
    pub fn new(store: Arc<dyn EventStore>, relay: Arc<Notify>, list: Arc<WorkOrderList>) -> Self {
        Self {
            orders: Executor::new(store, relay),
            list,
        }
    }

    pub async fn get(&self, work_order_id: Uuid) -> Result<WorkOrderView, Error> {
        let (order, version) = self.orders.load(work_order_id).await?;
        let opened = order.opened.ok_or(Error::NotFound(work_order_id))?;
        Ok(WorkOrderView {
            details: opened.details,
            lifecycle: opened.lifecycle,
            opened_at: opened.opened_at,
            version,
        })
    }

    pub fn list(
        &self,
        case_id: Option<Uuid>,
        page_size: usize,
        before: Option<i64>,
    ) -> (Vec<WorkOrderView>, Option<i64>) {
        self.list.page(case_id, page_size, before)
    }

    /// Opens the case's work order if the case needs field work. Idempotent twice over: the
    /// source event id is the idempotency key, and the work order id derives from the case.
    pub async fn on_case_opened(&self, cause: &BusEvent) -> Result<(), HandlerError> {
        let opened = front_office_events::decode_case_opened(&cause.event_type, &cause.payload)
            .map_err(|error| HandlerError::Failed(error.to_string()))?;
        let Some(opened) = opened else {
            return Ok(());
        };
        // The payload's case must be the one the envelope names (and keyed the message by).
        if cause.metadata.case_id != Some(opened.case_id) {
            return Err(HandlerError::Failed(format!(
                "payload case {} differs from the envelope's case {:?}",
                opened.case_id, cause.metadata.case_id
            )));
        }
        let Some(kind) = work_needed(opened.category) else {
            return Ok(());
        };
        let details = WorkOrderDetails {
            work_order_id: work_order_id(opened.case_id),
            case_id: opened.case_id,
            kind,
            product: opened.product,
            serial_number: opened.serial_number,
            summary: opened.summary,
        };
        let context = CommandContext::reacting_to(crate::SERVICE, cause);
        let executed = self
            .orders
            .execute(
                details.work_order_id,
                Some(opened.case_id),
                &context,
                Command::Open(details),
                Idempotency::key(format!("middle-office/case-opened/{}", cause.event_id)),
            )
            .await;
        match executed {
            Ok(executed) => {
                if executed.appended {
                    tracing::info!(case_id = %opened.case_id, ?kind, "work order opened");
                }
                Ok(())
            }
            // The case's work order exists already: this delivery's work was done.
            Err(ExecuteError::Domain(work_order::Error::AlreadyOpened(_))) => Ok(()),
            Err(error) => Err(error.into_handler_error()),
        }
    }
}

/// Consumes the front office's topic.
pub struct FrontOfficeEvents(pub Arc<WorkOrders>);

#[async_trait]
impl Handler for FrontOfficeEvents {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError> {
        self.0.on_case_opened(event).await
    }
}

/// Read model: work orders by position, with an index by case.
#[derive(Default)]
pub struct WorkOrderList {
    inner: RwLock<ListInner>,
}

#[derive(Default)]
struct ListInner {
    by_position: BTreeMap<i64, WorkOrderView>,
    by_case: HashMap<Uuid, Vec<i64>>,
    seen: HashMap<Uuid, i64>,
}

impl WorkOrderList {
    fn page(
        &self,
        case_id: Option<Uuid>,
        page_size: usize,
        before: Option<i64>,
    ) -> (Vec<WorkOrderView>, Option<i64>) {
        let page_size = page_size.max(1);
        let inner = self.inner.read();
        let limit = before.unwrap_or(i64::MAX);
        let positions: Vec<i64> = match case_id {
            Some(case_id) => inner
                .by_case
                .get(&case_id)
                .map(|positions| {
                    positions
                        .iter()
                        .rev()
                        .copied()
                        .filter(|position| *position < limit)
                        .take(page_size + 1)
                        .collect()
                })
                .unwrap_or_default(),
            None => inner
                .by_position
                .range(..limit)
                .rev()
                .take(page_size + 1)
                .map(|(position, _)| *position)
                .collect(),
        };
        let next = (positions.len() > page_size).then(|| positions[page_size - 1]);
        let views = positions
            .iter()
            .take(page_size)
            .filter_map(|position| inner.by_position.get(position).cloned())
            .collect();
        (views, next)
    }

    pub fn len(&self) -> usize {
        self.inner.read().by_position.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Tap for WorkOrderList {
    fn observe(&self, events: &[RecordedEvent]) {
        let mut inner = self.inner.write();
        for recorded in events {
            let details = match Event::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(Event::Opened(details))) => details,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(%error, "work order list skips an undecodable event");
                    continue;
                }
            };
            if inner.seen.contains_key(&details.work_order_id) {
                continue;
            }
            inner.seen.insert(details.work_order_id, recorded.position);
            inner
                .by_case
                .entry(details.case_id)
                .or_default()
                .push(recorded.position);
            inner.by_position.insert(
                recorded.position,
                WorkOrderView {
                    details,
                    lifecycle: Lifecycle::Open,
                    opened_at: recorded.metadata.occurred_at,
                    version: recorded.version,
                },
            );
        }
    }
}
