//! Domain <-> protobuf for the back office, and reading the other offices' events.

use svcops_kit::events::{decode, from_timestamp, to_timestamp};
use svcops_proto::backoffice::v1 as proto;
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::middleoffice::v1 as middle;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{LoopEvent, Priority, SlaEvent};

#[derive(Debug, thiserror::Error)]
#[error("cannot decode {event_type}: {reason}")]
pub struct Error {
    pub event_type: String,
    pub reason: String,
}

fn error(event_type: &str, reason: impl ToString) -> Error {
    Error {
        event_type: event_type.to_owned(),
        reason: reason.to_string(),
    }
}

fn uuid(event_type: &str, raw: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(raw).map_err(|e| error(event_type, e))
}

fn time(
    event_type: &str,
    timestamp: Option<&prost_types::Timestamp>,
) -> Result<OffsetDateTime, Error> {
    timestamp
        .and_then(from_timestamp)
        .ok_or_else(|| error(event_type, "missing or bad timestamp"))
}

/// An event the back office writes, encoded.
pub enum Encoded {
    Started(proto::SlaClockStarted),
    OnSite(proto::SlaOnSiteTargetSet),
    Awaiting(proto::SlaWorkOrderAwaitingCase),
    Loop(proto::ClosedLoopItemOpened),
}

fn priority_to_proto(priority: Priority) -> common::Priority {
    match priority {
        Priority::Low => common::Priority::Low,
        Priority::Normal => common::Priority::Normal,
        Priority::High => common::Priority::High,
        Priority::Urgent => common::Priority::Urgent,
    }
}

/// A priority as another office or an older event wrote it. Unset means the front office's
/// default (normal); a value this build does not know (a newer producer) is an error, never
/// silently read as another priority.
fn priority_from_proto(event_type: &str, raw: i32) -> Result<Option<Priority>, Error> {
    match common::Priority::try_from(raw) {
        Ok(common::Priority::Unspecified) => Ok(None),
        Ok(common::Priority::Low) => Ok(Some(Priority::Low)),
        Ok(common::Priority::Normal) => Ok(Some(Priority::Normal)),
        Ok(common::Priority::High) => Ok(Some(Priority::High)),
        Ok(common::Priority::Urgent) => Ok(Some(Priority::Urgent)),
        Err(_) => Err(error(event_type, format!("unknown priority {raw}"))),
    }
}

pub fn encode_sla(event: &SlaEvent) -> Encoded {
    match event {
        SlaEvent::Started {
            case_id,
            policy,
            priority,
            started_at,
            first_response_due,
            resolution_due,
        } => Encoded::Started(proto::SlaClockStarted {
            case_id: case_id.to_string(),
            policy: policy.clone(),
            started_at: Some(to_timestamp(*started_at)),
            first_response_due: Some(to_timestamp(*first_response_due)),
            resolution_due: Some(to_timestamp(*resolution_due)),
            priority: priority.map_or(common::Priority::Unspecified, priority_to_proto) as i32,
        }),
        SlaEvent::WorkOrderAwaitingCase {
            case_id,
            work_order_id,
        } => Encoded::Awaiting(proto::SlaWorkOrderAwaitingCase {
            case_id: case_id.to_string(),
            work_order_id: work_order_id.to_string(),
        }),
        SlaEvent::OnSiteTargetSet {
            case_id,
            work_order_id,
            on_site_due,
        } => Encoded::OnSite(proto::SlaOnSiteTargetSet {
            case_id: case_id.to_string(),
            work_order_id: work_order_id.to_string(),
            on_site_due: Some(to_timestamp(*on_site_due)),
        }),
    }
}

pub fn encode_loop(event: &LoopEvent) -> Encoded {
    match event {
        LoopEvent::Opened { case_id } => Encoded::Loop(proto::ClosedLoopItemOpened {
            case_id: case_id.to_string(),
        }),
    }
}

pub fn decode_sla(event_type: &str, payload: &[u8]) -> Result<Option<SlaEvent>, Error> {
    if let Some(started) =
        decode::<proto::SlaClockStarted>(event_type, payload).map_err(|e| error(event_type, e))?
    {
        return Ok(Some(SlaEvent::Started {
            case_id: uuid(event_type, &started.case_id)?,
            policy: started.policy,
            priority: priority_from_proto(event_type, started.priority)?,
            started_at: time(event_type, started.started_at.as_ref())?,
            first_response_due: time(event_type, started.first_response_due.as_ref())?,
            resolution_due: time(event_type, started.resolution_due.as_ref())?,
        }));
    }
    if let Some(on_site) = decode::<proto::SlaOnSiteTargetSet>(event_type, payload)
        .map_err(|e| error(event_type, e))?
    {
        return Ok(Some(SlaEvent::OnSiteTargetSet {
            case_id: uuid(event_type, &on_site.case_id)?,
            work_order_id: uuid(event_type, &on_site.work_order_id)?,
            on_site_due: time(event_type, on_site.on_site_due.as_ref())?,
        }));
    }
    if let Some(awaiting) = decode::<proto::SlaWorkOrderAwaitingCase>(event_type, payload)
        .map_err(|e| error(event_type, e))?
    {
        return Ok(Some(SlaEvent::WorkOrderAwaitingCase {
            case_id: uuid(event_type, &awaiting.case_id)?,
            work_order_id: uuid(event_type, &awaiting.work_order_id)?,
        }));
    }
    Ok(None)
}

pub fn decode_loop(event_type: &str, payload: &[u8]) -> Result<Option<LoopEvent>, Error> {
    Ok(decode::<proto::ClosedLoopItemOpened>(event_type, payload)
        .map_err(|e| error(event_type, e))?
        .map(|opened| uuid(event_type, &opened.case_id))
        .transpose()?
        .map(|case_id| LoopEvent::Opened { case_id }))
}

/// What the back office reacts to from the other offices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    CaseOpened { case_id: Uuid, priority: Priority },
    WorkOrderOpened { case_id: Uuid, work_order_id: Uuid },
}

impl Upstream {
    pub fn case_id(&self) -> Uuid {
        match self {
            Upstream::CaseOpened { case_id, .. } | Upstream::WorkOrderOpened { case_id, .. } => {
                *case_id
            }
        }
    }
}

pub fn decode_upstream(event_type: &str, payload: &[u8]) -> Result<Option<Upstream>, Error> {
    if let Some(opened) =
        decode::<front::CaseOpened>(event_type, payload).map_err(|e| error(event_type, e))?
    {
        let priority =
            priority_from_proto(event_type, opened.priority)?.unwrap_or(Priority::Normal);
        return Ok(Some(Upstream::CaseOpened {
            case_id: uuid(event_type, &opened.case_id)?,
            priority,
        }));
    }
    if let Some(opened) =
        decode::<middle::WorkOrderOpened>(event_type, payload).map_err(|e| error(event_type, e))?
    {
        return Ok(Some(Upstream::WorkOrderOpened {
            case_id: uuid(event_type, &opened.case_id)?,
            work_order_id: uuid(event_type, &opened.work_order_id)?,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn case_opened(priority: i32) -> Vec<u8> {
        front::CaseOpened {
            case_id: Uuid::now_v7().to_string(),
            priority,
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_priority_from_a_newer_producer_is_an_error_not_normal() {
        let event_type = <front::CaseOpened as prost::Name>::full_name();
        assert!(decode_upstream(&event_type, &case_opened(99)).is_err());
        assert!(matches!(
            decode_upstream(&event_type, &case_opened(common::Priority::Urgent as i32)),
            Ok(Some(Upstream::CaseOpened {
                priority: Priority::Urgent,
                ..
            }))
        ));
    }
}
