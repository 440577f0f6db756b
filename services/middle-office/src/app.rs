//! Reacting to the front office, work-order queries, and the work-order read model.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use svcops_bus::consumer::{Handler, HandlerError};
use svcops_bus::envelope::BusEvent;
use svcops_bus::relay::Tap;
use svcops_eventstore::{
    Append, EventStore, ExpectedVersion, RecordedEvent, StreamId, read_whole_stream,
};
use svcops_kit::events::CommandContext;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::codec;
use crate::domain::{
    Command, Kind, Lifecycle, WorkOrder, WorkOrderDetails, work_needed, work_order_id,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("work order {0} not found")]
    NotFound(Uuid),
    #[error(transparent)]
    Store(#[from] svcops_eventstore::Error),
    #[error(transparent)]
    Corrupt(#[from] codec::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkOrderView {
    pub details: WorkOrderDetails,
    pub lifecycle: Lifecycle,
    pub opened_at: OffsetDateTime,
    pub version: u64,
}

pub fn work_order_stream(work_order_id: Uuid) -> StreamId {
    StreamId::for_aggregate("workorder", work_order_id)
}

fn fold(events: &[RecordedEvent]) -> Result<Option<WorkOrderView>, Error> {
    let mut order = WorkOrder::default();
    for recorded in events {
        if let Some(event) = codec::decode(&recorded.event_type, &recorded.payload)? {
            order.apply(event, recorded.metadata.occurred_at);
        }
    }
    let version = events.last().map_or(0, |event| event.version);
    Ok(order.opened.map(|opened| WorkOrderView {
        details: opened.details,
        lifecycle: opened.lifecycle,
        opened_at: opened.opened_at,
        version,
    }))
}

pub struct WorkOrders {
    store: Arc<dyn EventStore>,
    relay: Arc<Notify>,
    list: Arc<WorkOrderList>,
}

impl WorkOrders {
    pub fn new(store: Arc<dyn EventStore>, relay: Arc<Notify>, list: Arc<WorkOrderList>) -> Self {
        Self { store, relay, list }
    }

    pub async fn get(&self, work_order_id: Uuid) -> Result<WorkOrderView, Error> {
        let events =
            read_whole_stream(self.store.as_ref(), &work_order_stream(work_order_id)).await?;
        fold(&events)?.ok_or(Error::NotFound(work_order_id))
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
        let opened = codec::decode_case_opened(&cause.event_type, &cause.payload)
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
        let stream = work_order_stream(details.work_order_id);
        let events = match WorkOrder::default().decide(Command::Open(details)) {
            Ok(events) => events,
            Err(error) => return Err(HandlerError::Failed(error.to_string())),
        };
        let context = CommandContext::reacting_to(crate::SERVICE, cause);
        let events = events
            .iter()
            .map(|event| context.event(Some(opened.case_id), &codec::encode(event)))
            .collect();
        let append = Append::new(stream, ExpectedVersion::NoStream, events)
            .idempotency_key(format!("middle-office/case-opened/{}", cause.event_id));
        match self.store.append(append).await {
            Ok(outcome) => {
                if !outcome.is_duplicate() {
                    tracing::info!(case_id = %opened.case_id, ?kind, "work order opened");
                    self.relay.notify_one();
                }
                Ok(())
            }
            // The case's work order exists already: this delivery's work was done.
            Err(svcops_eventstore::Error::Concurrency { .. }) => Ok(()),
            Err(error) if error.is_transient() => Err(HandlerError::Unavailable(error.to_string())),
            Err(error) => Err(HandlerError::Failed(error.to_string())),
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
        let inner = self
            .inner
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
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
        self.inner.read().map_or(0, |inner| inner.by_position.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Tap for WorkOrderList {
    fn observe(&self, events: &[RecordedEvent]) {
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        for recorded in events {
            let details = match codec::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(crate::domain::Event::Opened(details))) => details,
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

pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Repair => "repair",
        Kind::Installation => "installation",
    }
}
