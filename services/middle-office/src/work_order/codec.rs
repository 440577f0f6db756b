//! Work order events <-> protobuf.

use std::sync::LazyLock;

use prost::Message;
use svcops_kit::aggregate::{DecodeError, DomainEvent, EventDecoders};
use svcops_proto::middleoffice::v1 as proto;
use uuid::Uuid;

use super::{Event, Kind, Outcome, Punctuality, Window, WorkOrderDetails};
use crate::pricing::ChargedLine;

pub fn line_to_proto(line: &ChargedLine) -> proto::ChargeLine {
    proto::ChargeLine {
        item_code: line.code.clone(),
        item_name: line.name.clone(),
        quantity: line.quantity,
        free_units: line.free_units,
        unit_price_cents: line.unit_price,
        amount_cents: line.amount,
        standard_amount_cents: line.standard_amount,
    }
}

fn line_from_proto(line: proto::ChargeLine) -> ChargedLine {
    ChargedLine {
        code: line.item_code,
        name: line.item_name,
        quantity: line.quantity,
        free_units: line.free_units,
        unit_price: line.unit_price_cents,
        amount: line.amount_cents,
        standard_amount: line.standard_amount_cents,
    }
}
use svcops_kit::events::{from_timestamp, to_timestamp};

impl From<Outcome> for proto::VisitOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::FixedOnSite => proto::VisitOutcome::FixedOnSite,
            Outcome::NeedsParts => proto::VisitOutcome::NeedsParts,
            Outcome::NeedsFactoryRepair => proto::VisitOutcome::NeedsFactoryRepair,
            Outcome::NotAProductFault => proto::VisitOutcome::NotAProductFault,
        }
    }
}

/// `None` for an unknown value or "unspecified".
pub fn outcome_from_proto(value: i32) -> Option<Outcome> {
    match proto::VisitOutcome::try_from(value).ok()? {
        proto::VisitOutcome::FixedOnSite => Some(Outcome::FixedOnSite),
        proto::VisitOutcome::NeedsParts => Some(Outcome::NeedsParts),
        proto::VisitOutcome::NeedsFactoryRepair => Some(Outcome::NeedsFactoryRepair),
        proto::VisitOutcome::NotAProductFault => Some(Outcome::NotAProductFault),
        proto::VisitOutcome::Unspecified => None,
    }
}

/// The wire punctuality and its minutes.
pub fn punctuality_to_proto(punctuality: Punctuality) -> (proto::Punctuality, u32) {
    match punctuality {
        Punctuality::Early(minutes) => (proto::Punctuality::Early, minutes),
        Punctuality::OnTime => (proto::Punctuality::OnTime, 0),
        Punctuality::Late(minutes) => (proto::Punctuality::Late, minutes),
    }
}

fn time(
    event_type: &str,
    timestamp: Option<&prost_types::Timestamp>,
) -> Result<time::OffsetDateTime, DecodeError> {
    timestamp
        .and_then(from_timestamp)
        .ok_or_else(|| DecodeError::new(event_type, "missing or bad time"))
}

fn ids(event_type: &str, work_order_id: &str, case_id: &str) -> Result<(Uuid, Uuid), DecodeError> {
    let parse = |raw: &str| Uuid::parse_str(raw).map_err(|e| DecodeError::new(event_type, e));
    Ok((parse(work_order_id)?, parse(case_id)?))
}

fn named<M: Message + prost::Name>(message: &M) -> (String, Vec<u8>) {
    (M::full_name(), message.encode_to_vec())
}

impl From<Kind> for proto::WorkOrderKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Repair => proto::WorkOrderKind::Repair,
            Kind::Installation => proto::WorkOrderKind::Installation,
        }
    }
}

static DECODERS: LazyLock<EventDecoders<Event>> = LazyLock::new(|| {
    EventDecoders::new()
        .on::<proto::VisitScheduled>(|event_type, e| {
            let (work_order_id, case_id) = ids(event_type, &e.work_order_id, &e.case_id)?;
            let previous = match (e.previous_start.as_ref(), e.previous_end.as_ref()) {
                (Some(start), Some(end)) => Some(Window {
                    start: time(event_type, Some(start))?,
                    end: time(event_type, Some(end))?,
                }),
                _ => None,
            };
            Ok(Event::Scheduled {
                work_order_id,
                case_id,
                window: Window {
                    start: time(event_type, e.window_start.as_ref())?,
                    end: time(event_type, e.window_end.as_ref())?,
                },
                previous,
            })
        })
        .on::<proto::TechnicianDispatched>(|event_type, e| {
            let (work_order_id, case_id) = ids(event_type, &e.work_order_id, &e.case_id)?;
            Ok(Event::Dispatched {
                work_order_id,
                case_id,
                technician: e.technician,
            })
        })
        .on::<proto::TechnicianEnRoute>(|event_type, e| {
            let (work_order_id, case_id) = ids(event_type, &e.work_order_id, &e.case_id)?;
            Ok(Event::EnRoute {
                work_order_id,
                case_id,
                technician: e.technician,
                eta: time(event_type, e.eta.as_ref())?,
            })
        })
        .on::<proto::TechnicianArrived>(|event_type, e| {
            let (work_order_id, case_id) = ids(event_type, &e.work_order_id, &e.case_id)?;
            let punctuality = match proto::Punctuality::try_from(e.punctuality) {
                Ok(proto::Punctuality::Early) => Punctuality::Early(e.minutes),
                Ok(proto::Punctuality::OnTime) => Punctuality::OnTime,
                Ok(proto::Punctuality::Late) => Punctuality::Late(e.minutes),
                _ => return Err(DecodeError::new(event_type, "unknown punctuality")),
            };
            Ok(Event::Arrived {
                work_order_id,
                case_id,
                technician: e.technician,
                at: time(event_type, e.arrived_at.as_ref())?,
                punctuality,
            })
        })
        .on::<proto::WorkOrderCompleted>(|event_type, e| {
            let (work_order_id, case_id) = ids(event_type, &e.work_order_id, &e.case_id)?;
            Ok(Event::Completed {
                work_order_id,
                case_id,
                outcome: outcome_from_proto(e.outcome)
                    .ok_or_else(|| DecodeError::new(event_type, "unknown outcome"))?,
                note: e.note,
            })
        })
        .on::<proto::WorkOrderCharged>(|event_type, e| {
            let (work_order_id, case_id) = ids(event_type, &e.work_order_id, &e.case_id)?;
            Ok(Event::Charged {
                work_order_id,
                case_id,
                list_version: e.price_list_version,
                lines: e.lines.into_iter().map(line_from_proto).collect(),
                approved_by: (!e.approved_by.is_empty()).then_some(e.approved_by),
            })
        })
        .on::<proto::WorkOrderOpened>(|event_type, opened| {
            let corrupt = |reason: &dyn std::fmt::Display| DecodeError::new(event_type, reason);
            let kind = match proto::WorkOrderKind::try_from(opened.kind) {
                Ok(proto::WorkOrderKind::Repair) => Kind::Repair,
                Ok(proto::WorkOrderKind::Installation) => Kind::Installation,
                _ => return Err(corrupt(&"unknown work order kind")),
            };
            Ok(Event::Opened(WorkOrderDetails {
                work_order_id: Uuid::parse_str(&opened.work_order_id).map_err(|e| corrupt(&e))?,
                case_id: Uuid::parse_str(&opened.case_id).map_err(|e| corrupt(&e))?,
                kind,
                product: opened.product,
                serial_number: opened.serial_number,
                summary: opened.summary,
            }))
        })
});

impl DomainEvent for Event {
    fn encode(&self) -> (String, Vec<u8>) {
        match self {
            Event::Opened(details) => (
                <proto::WorkOrderOpened as prost::Name>::full_name(),
                proto::WorkOrderOpened {
                    work_order_id: details.work_order_id.to_string(),
                    case_id: details.case_id.to_string(),
                    kind: proto::WorkOrderKind::from(details.kind).into(),
                    product: details.product.clone(),
                    serial_number: details.serial_number.clone(),
                    summary: details.summary.clone(),
                }
                .encode_to_vec(),
            ),
            Event::Scheduled {
                work_order_id,
                case_id,
                window,
                previous,
            } => named(&proto::VisitScheduled {
                work_order_id: work_order_id.to_string(),
                case_id: case_id.to_string(),
                window_start: Some(to_timestamp(window.start)),
                window_end: Some(to_timestamp(window.end)),
                previous_start: previous.map(|window| to_timestamp(window.start)),
                previous_end: previous.map(|window| to_timestamp(window.end)),
            }),
            Event::Dispatched {
                work_order_id,
                case_id,
                technician,
            } => named(&proto::TechnicianDispatched {
                work_order_id: work_order_id.to_string(),
                case_id: case_id.to_string(),
                technician: technician.clone(),
            }),
            Event::EnRoute {
                work_order_id,
                case_id,
                technician,
                eta,
            } => named(&proto::TechnicianEnRoute {
                work_order_id: work_order_id.to_string(),
                case_id: case_id.to_string(),
                technician: technician.clone(),
                eta: Some(to_timestamp(*eta)),
            }),
            Event::Arrived {
                work_order_id,
                case_id,
                technician,
                at,
                punctuality,
            } => {
                let (punctuality, minutes) = punctuality_to_proto(*punctuality);
                named(&proto::TechnicianArrived {
                    work_order_id: work_order_id.to_string(),
                    case_id: case_id.to_string(),
                    technician: technician.clone(),
                    arrived_at: Some(to_timestamp(*at)),
                    punctuality: punctuality.into(),
                    minutes,
                })
            }
            Event::Charged {
                work_order_id,
                case_id,
                list_version,
                lines,
                approved_by,
            } => named(&proto::WorkOrderCharged {
                work_order_id: work_order_id.to_string(),
                case_id: case_id.to_string(),
                price_list_version: list_version.clone(),
                total_cents: lines.iter().map(|line| line.amount).sum(),
                lines: lines.iter().map(line_to_proto).collect(),
                approved_by: approved_by.clone().unwrap_or_default(),
            }),
            Event::Completed {
                work_order_id,
                case_id,
                outcome,
                note,
            } => named(&proto::WorkOrderCompleted {
                work_order_id: work_order_id.to_string(),
                case_id: case_id.to_string(),
                outcome: proto::VisitOutcome::from(*outcome).into(),
                note: note.clone(),
            }),
        }
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        DECODERS.decode(event_type, payload)
    }
}
