//! What the front office reads of the middle office's events: each step of a case's field
//! work, noted on the case's progress (`progress`), which self-service reads.

use std::sync::Arc;

use async_trait::async_trait;
use svcops_bus::consumer::{Handler, HandlerError};
use svcops_bus::envelope::BusEvent;
use svcops_kit::aggregate::{Executor, Idempotency};
use svcops_kit::events::{CommandContext, from_timestamp};
use svcops_proto::middleoffice::v1 as middle;
use uuid::Uuid;

use crate::progress::{Progress, ProgressCommand, Stage, Visit};

/// A middle-office event as a change to one visit.
enum Step {
    Opened,
    Scheduled(time::OffsetDateTime, time::OffsetDateTime),
    Dispatched(String),
    EnRoute(time::OffsetDateTime),
    Arrived(time::OffsetDateTime),
    Completed(String),
}

fn corrupt(event_type: &str, reason: impl std::fmt::Display) -> HandlerError {
    HandlerError::Failed(format!("{event_type}: {reason}"))
}

/// The work order and the step an event is; `None` for events progress does not follow.
fn step_of(event: &BusEvent) -> Result<Option<(Uuid, Step)>, HandlerError> {
    use prost::{Message, Name};
    let kind = event.event_type.as_str();
    let id = |raw: &str| Uuid::parse_str(raw).map_err(|error| corrupt(kind, error));
    let time = |timestamp: Option<&prost_types::Timestamp>| {
        timestamp
            .and_then(from_timestamp)
            .ok_or_else(|| corrupt(kind, "missing or bad time"))
    };
    let decode_error = |error: prost::DecodeError| corrupt(kind, error);
    let payload = event.payload.as_slice();
    Ok(Some(if kind == middle::WorkOrderOpened::full_name() {
        let e = middle::WorkOrderOpened::decode(payload).map_err(decode_error)?;
        (id(&e.work_order_id)?, Step::Opened)
    } else if kind == middle::VisitScheduled::full_name() {
        let e = middle::VisitScheduled::decode(payload).map_err(decode_error)?;
        (
            id(&e.work_order_id)?,
            Step::Scheduled(time(e.window_start.as_ref())?, time(e.window_end.as_ref())?),
        )
    } else if kind == middle::TechnicianDispatched::full_name() {
        let e = middle::TechnicianDispatched::decode(payload).map_err(decode_error)?;
        (id(&e.work_order_id)?, Step::Dispatched(e.technician))
    } else if kind == middle::TechnicianEnRoute::full_name() {
        let e = middle::TechnicianEnRoute::decode(payload).map_err(decode_error)?;
        (id(&e.work_order_id)?, Step::EnRoute(time(e.eta.as_ref())?))
    } else if kind == middle::TechnicianArrived::full_name() {
        let e = middle::TechnicianArrived::decode(payload).map_err(decode_error)?;
        (
            id(&e.work_order_id)?,
            Step::Arrived(time(e.arrived_at.as_ref())?),
        )
    } else if kind == middle::WorkOrderCompleted::full_name() {
        let e = middle::WorkOrderCompleted::decode(payload).map_err(decode_error)?;
        let outcome = match middle::VisitOutcome::try_from(e.outcome) {
            Ok(middle::VisitOutcome::FixedOnSite) => "fixed on site",
            Ok(middle::VisitOutcome::NeedsParts) => "a part is needed: we will come back",
            Ok(middle::VisitOutcome::NeedsFactoryRepair) => "to be repaired at the factory",
            Ok(middle::VisitOutcome::NotAProductFault) => "not a product fault",
            _ => "done",
        };
        (id(&e.work_order_id)?, Step::Completed(outcome.to_owned()))
    } else {
        return Ok(None);
    }))
}

/// The visit after `step` (a stage never goes back: a window moved after dispatch leaves
/// the technician assigned).
fn advanced(mut visit: Visit, step: Step) -> Visit {
    let at_least = |visit: &mut Visit, stage: Stage| visit.stage = visit.stage.max(stage);
    match step {
        Step::Opened => {}
        Step::Scheduled(start, end) => {
            visit.window = Some((start, end));
            at_least(&mut visit, Stage::Scheduled);
        }
        Step::Dispatched(technician) => {
            visit.technician = Some(technician);
            at_least(&mut visit, Stage::TechnicianAssigned);
        }
        Step::EnRoute(eta) => {
            visit.eta = Some(eta);
            at_least(&mut visit, Stage::TechnicianEnRoute);
        }
        Step::Arrived(at) => {
            visit.arrived_at = Some(at);
            at_least(&mut visit, Stage::TechnicianOnSite);
        }
        Step::Completed(outcome) => {
            visit.outcome = Some(outcome);
            at_least(&mut visit, Stage::Done);
        }
    }
    visit
}

/// Notes the middle office's steps on cases' progress.
pub struct MiddleOfficeEvents {
    progress: Executor<Progress>,
}

impl MiddleOfficeEvents {
    pub fn new(
        store: Arc<dyn svcops_eventstore::EventStore>,
        relay: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            progress: Executor::new(store, relay),
        }
    }
}

#[async_trait]
impl Handler for MiddleOfficeEvents {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError> {
        let Some((work_order_id, step)) = step_of(event)? else {
            return Ok(());
        };
        let Some(case_id) = event.metadata.case_id else {
            return Err(corrupt(&event.event_type, "no case"));
        };
        // A case's events come in order (one partition per case), so the state read here
        // is the one the note is decided on.
        let (progress, _) = self
            .progress
            .load(case_id)
            .await
            .map_err(|error| error.into_handler_error())?;
        let visit = progress
            .visit(work_order_id)
            .cloned()
            .unwrap_or_else(|| Visit::new(work_order_id));
        let context = CommandContext::reacting_to(crate::SERVICE, event);
        self.progress
            .execute(
                case_id,
                None,
                &context,
                ProgressCommand::Note {
                    case_id,
                    visit: advanced(visit, step),
                },
                Idempotency::key(format!("front-office/progress/{}", event.event_id)),
            )
            .await
            .map_err(|error| error.into_handler_error())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_never_goes_back() {
        let visit = advanced(
            Visit::new(Uuid::now_v7()),
            Step::Dispatched("tech-1".into()),
        );
        assert_eq!(visit.stage, Stage::TechnicianAssigned);
        let now = svcops_kit::events::now_micros();
        let moved = advanced(visit, Step::Scheduled(now, now + time::Duration::hours(2)));
        assert_eq!(
            moved.stage,
            Stage::TechnicianAssigned,
            "a moved window keeps the technician"
        );
        assert!(moved.window.is_some());
        let done = advanced(moved, Step::Completed("fixed on site".into()));
        assert_eq!(done.stage, Stage::Done);
    }
}
