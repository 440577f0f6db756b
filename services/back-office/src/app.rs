//! Reacting to the other offices, tracking queries, and the statistics read model.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

use async_trait::async_trait;
use svcops_bus::consumer::{Handler, HandlerError};
use svcops_bus::envelope::BusEvent;
use svcops_bus::relay::Tap;
use svcops_eventstore::{EventStore, RecordedEvent};
use svcops_kit::ApiError;
use svcops_kit::aggregate::{
    DecodeError, DomainEvent, ExecuteError, Executor, Idempotency, NeverRefused,
};
use svcops_kit::events::CommandContext;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::closed_loop::{ClosedLoop, LoopCommand, LoopEvent};
use crate::sla::{SlaClock, SlaCommand, SlaEvent};
use crate::upstream::{self, Upstream};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("case {0} is not tracked")]
    NotFound(Uuid),
    #[error(transparent)]
    Load(#[from] ExecuteError<NeverRefused>),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotFound(id) => ApiError::NotFound {
                resource: "case tracking",
                id: id.to_string(),
            },
            Error::Load(error) => error.into(),
        }
    }
}

/// What the back office knows about one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    pub case_id: Uuid,
    pub sla: SlaClock,
    pub closed_loop: ClosedLoop,
}

pub struct BackOffice {
    sla: Executor<SlaClock>,
    closed_loop: Executor<ClosedLoop>,
    stats: Arc<Stats>,
}

impl BackOffice {
    pub fn new(store: Arc<dyn EventStore>, relay: Arc<Notify>, stats: Arc<Stats>) -> Self {
        Self {
            sla: Executor::new(store.clone(), relay.clone()),
            closed_loop: Executor::new(store, relay),
            stats,
        }
    }

    pub async fn tracking(&self, case_id: Uuid) -> Result<Tracking, Error> {
        let (sla, sla_version) = self.sla.load(case_id).await?;
        let (closed_loop, loop_version) = self.closed_loop.load(case_id).await?;
        if sla_version == 0 && loop_version == 0 {
            return Err(Error::NotFound(case_id));
        }
        Ok(Tracking {
            case_id,
            sla,
            closed_loop,
        })
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    pub async fn on_upstream(&self, cause: &BusEvent) -> Result<(), HandlerError> {
        let upstream = upstream::decode_upstream(&cause.event_type, &cause.payload)
            .map_err(|error| HandlerError::Failed(error.to_string()))?;
        let Some(upstream) = upstream else {
            return Ok(());
        };
        // The payload's case must be the one the envelope names (and the message was keyed
        // and ordered by): a mismatch is a broken producer, not something to guess about.
        let case_id = upstream.case_id();
        if cause.metadata.case_id != Some(case_id) {
            return Err(HandlerError::Failed(format!(
                "payload case {case_id} differs from the envelope's case {:?}",
                cause.metadata.case_id
            )));
        }
        let context = CommandContext::reacting_to(crate::SERVICE, cause);
        // One idempotency key per reaction and cause: a redelivery appends nothing.
        let key =
            |reaction: &str| Idempotency::key(format!("back-office/{reaction}/{}", cause.event_id));
        match upstream {
            Upstream::CaseOpened { priority, .. } => {
                let start = SlaCommand::Start {
                    case_id,
                    priority,
                    at: cause.metadata.occurred_at,
                };
                self.sla
                    .execute(case_id, Some(case_id), &context, start, key("sla-start"))
                    .await
                    .map_err(ExecuteError::into_handler_error)?;
                self.closed_loop
                    .execute(
                        case_id,
                        Some(case_id),
                        &context,
                        LoopCommand::Open { case_id },
                        key("closed-loop"),
                    )
                    .await
                    .map_err(ExecuteError::into_handler_error)?;
            }
            Upstream::WorkOrderOpened { work_order_id, .. } => {
                let on_site = SlaCommand::SetOnSiteTarget {
                    case_id,
                    work_order_id,
                };
                self.sla
                    .execute(case_id, Some(case_id), &context, on_site, key("on-site"))
                    .await
                    .map_err(ExecuteError::into_handler_error)?;
            }
        }
        Ok(())
    }
}

/// Consumes the front and middle offices' topics.
pub struct UpstreamEvents(pub Arc<BackOffice>);

#[async_trait]
impl Handler for UpstreamEvents {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError> {
        self.0.on_upstream(event).await
    }
}

/// Read model: exact counters, because each comes from an event in the log and each event
/// counts once (by stream and version).
#[derive(Default)]
pub struct Stats {
    inner: Mutex<StatsInner>,
}

#[derive(Default)]
struct StatsInner {
    seen: HashSet<(String, u64)>,
    cases_tracked: u64,
    closed_loop_open: u64,
    work_orders_tracked: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub cases_tracked: u64,
    pub closed_loop_open: u64,
    pub work_orders_tracked: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let inner = self.inner.lock();
        StatsSnapshot {
            cases_tracked: inner.cases_tracked,
            closed_loop_open: inner.closed_loop_open,
            work_orders_tracked: inner.work_orders_tracked,
        }
    }
}

impl Tap for Stats {
    fn observe(&self, events: &[RecordedEvent]) {
        let mut inner = self.inner.lock();
        for recorded in events {
            if !inner
                .seen
                .insert((recorded.stream_id.to_string(), recorded.version))
            {
                continue;
            }
            match SlaEvent::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(SlaEvent::Started { .. })) => inner.cases_tracked += 1,
                Ok(Some(SlaEvent::OnSiteTargetSet { .. })) => inner.work_orders_tracked += 1,
                Ok(None | Some(SlaEvent::WorkOrderAwaitingCase { .. })) => {}
                Err(error) => skip(&error),
            }
            match LoopEvent::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(LoopEvent::Opened { .. })) => inner.closed_loop_open += 1,
                Ok(None) => {}
                Err(error) => skip(&error),
            }
        }
    }
}

fn skip(error: &DecodeError) {
    tracing::error!(%error, "stats skip an undecodable event");
}
