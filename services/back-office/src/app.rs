//! Reacting to the other offices, and tracking queries (one case from its streams,
//! statistics from the case-tracking projection).

use std::sync::Arc;

use async_trait::async_trait;
use svcops_bus::consumer::{Handler, HandlerError};
use svcops_bus::envelope::BusEvent;
use svcops_eventstore::EventStore;
use svcops_eventstore::projection::ReadModel;
use svcops_kit::ApiError;
use svcops_kit::aggregate::{ExecuteError, Executor, Idempotency, NeverRefused};
use svcops_kit::events::CommandContext;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::case_tracking::Stats;
use crate::closed_loop::{ClosedLoop, LoopCommand};
use crate::sla::{SlaClock, SlaCommand};
use crate::upstream::{self, Upstream};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("case {0} is not tracked")]
    NotFound(Uuid),
    #[error(transparent)]
    Load(#[from] ExecuteError<NeverRefused>),
    #[error(transparent)]
    ReadModel(#[from] svcops_eventstore::Error),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotFound(id) => ApiError::NotFound {
                resource: "case tracking",
                id: id.to_string(),
            },
            Error::Load(error) => error.into(),
            Error::ReadModel(error) => error.into(),
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
    tracking: ReadModel,
}

impl BackOffice {
    pub fn new(store: Arc<dyn EventStore>, relay: Arc<Notify>, tracking: ReadModel) -> Self {
        Self {
            sla: Executor::new(store.clone(), relay.clone()),
            closed_loop: Executor::new(store, relay),
            tracking,
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

    /// Counts over everything tracked so far (read your writes, up to 5 s).
    pub async fn stats(&self) -> Result<Stats, Error> {
        let tables = self
            .tracking
            .caught_up(std::time::Duration::from_secs(5))
            .await?;
        Ok(crate::case_tracking::stats(&self.tracking, &tables).await?)
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
