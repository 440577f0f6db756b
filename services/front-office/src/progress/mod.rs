//! The case-progress aggregate (stream `progress-<case_id>`): where a case's field work
//! stands, as the middle office reports it, for self-service "where is my repair". Fed by
//! the middle office's events (`middle_office_events`); pure.

#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use prost::{Message, Name};
use svcops_kit::aggregate::{
    Aggregate, DecodeError, DomainEvent, EventDecoders, NeverRefused, Recorded,
};
use svcops_kit::events::{from_timestamp, to_timestamp};
use svcops_proto::frontoffice::v1 as proto;
use time::OffsetDateTime;
use uuid::Uuid;

/// A visit's stage, as a customer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Requested,
    Scheduled,
    TechnicianAssigned,
    TechnicianEnRoute,
    TechnicianOnSite,
    Done,
}

/// One visit as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    pub work_order_id: Uuid,
    pub stage: Stage,
    pub window: Option<(OffsetDateTime, OffsetDateTime)>,
    pub technician: Option<String>,
    pub eta: Option<OffsetDateTime>,
    pub arrived_at: Option<OffsetDateTime>,
    pub outcome: Option<String>,
}

impl Visit {
    pub fn new(work_order_id: Uuid) -> Self {
        Self {
            work_order_id,
            stage: Stage::Requested,
            window: None,
            technician: None,
            eta: None,
            arrived_at: None,
            outcome: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressCommand {
    /// The visit as a middle-office event left it.
    Note { case_id: Uuid, visit: Visit },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    Noted { case_id: Uuid, visit: Visit },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    pub visits: Vec<Visit>,
    pub updated_at: Option<OffsetDateTime>,
}

impl Progress {
    pub fn visit(&self, work_order_id: Uuid) -> Option<&Visit> {
        self.visits
            .iter()
            .find(|visit| visit.work_order_id == work_order_id)
    }
}

impl Aggregate for Progress {
    const KIND: &'static str = "progress";
    type Command = ProgressCommand;
    type Event = ProgressEvent;
    type Error = NeverRefused;

    /// The same visit again is nothing new (a redelivery).
    fn decide(&self, command: ProgressCommand) -> Result<Vec<ProgressEvent>, NeverRefused> {
        let ProgressCommand::Note { case_id, visit } = command;
        if self.visit(visit.work_order_id) == Some(&visit) {
            return Ok(vec![]);
        }
        Ok(vec![ProgressEvent::Noted { case_id, visit }])
    }

    fn apply(&mut self, recorded: &Recorded<ProgressEvent>) {
        let ProgressEvent::Noted { visit, .. } = &recorded.event;
        self.updated_at = Some(recorded.occurred_at);
        match self
            .visits
            .iter_mut()
            .find(|known| known.work_order_id == visit.work_order_id)
        {
            Some(known) => *known = visit.clone(),
            None => self.visits.push(visit.clone()),
        }
    }
}

impl From<Stage> for proto::VisitStage {
    fn from(stage: Stage) -> Self {
        match stage {
            Stage::Requested => proto::VisitStage::Requested,
            Stage::Scheduled => proto::VisitStage::Scheduled,
            Stage::TechnicianAssigned => proto::VisitStage::TechnicianAssigned,
            Stage::TechnicianEnRoute => proto::VisitStage::TechnicianEnRoute,
            Stage::TechnicianOnSite => proto::VisitStage::TechnicianOnSite,
            Stage::Done => proto::VisitStage::Done,
        }
    }
}

fn stage_from_proto(value: i32) -> Option<Stage> {
    Some(match proto::VisitStage::try_from(value).ok()? {
        proto::VisitStage::Unspecified => return None,
        proto::VisitStage::Requested => Stage::Requested,
        proto::VisitStage::Scheduled => Stage::Scheduled,
        proto::VisitStage::TechnicianAssigned => Stage::TechnicianAssigned,
        proto::VisitStage::TechnicianEnRoute => Stage::TechnicianEnRoute,
        proto::VisitStage::TechnicianOnSite => Stage::TechnicianOnSite,
        proto::VisitStage::Done => Stage::Done,
    })
}

static DECODERS: LazyLock<EventDecoders<ProgressEvent>> = LazyLock::new(|| {
    EventDecoders::new().on::<proto::CaseProgressNoted>(|event_type, e| {
        let uuid =
            |raw: &str| Uuid::parse_str(raw).map_err(|error| DecodeError::new(event_type, error));
        let time = |timestamp: Option<&prost_types::Timestamp>| timestamp.and_then(from_timestamp);
        Ok(ProgressEvent::Noted {
            case_id: uuid(&e.case_id)?,
            visit: Visit {
                work_order_id: uuid(&e.work_order_id)?,
                stage: stage_from_proto(e.stage)
                    .ok_or_else(|| DecodeError::new(event_type, "unknown stage"))?,
                window: time(e.window_start.as_ref()).zip(time(e.window_end.as_ref())),
                technician: (!e.technician.is_empty()).then_some(e.technician),
                eta: time(e.eta.as_ref()),
                arrived_at: time(e.arrived_at.as_ref()),
                outcome: (!e.outcome.is_empty()).then_some(e.outcome),
            },
        })
    })
});

impl DomainEvent for ProgressEvent {
    fn encode(&self) -> (String, Vec<u8>) {
        let ProgressEvent::Noted { case_id, visit } = self;
        (
            proto::CaseProgressNoted::full_name(),
            proto::CaseProgressNoted {
                case_id: case_id.to_string(),
                work_order_id: visit.work_order_id.to_string(),
                stage: proto::VisitStage::from(visit.stage).into(),
                window_start: visit.window.map(|(start, _)| to_timestamp(start)),
                window_end: visit.window.map(|(_, end)| to_timestamp(end)),
                technician: visit.technician.clone().unwrap_or_default(),
                eta: visit.eta.map(to_timestamp),
                arrived_at: visit.arrived_at.map(to_timestamp),
                outcome: visit.outcome.clone().unwrap_or_default(),
            }
            .encode_to_vec(),
        )
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        DECODERS.decode(event_type, payload)
    }
}
