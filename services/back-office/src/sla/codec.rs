//! SLA clock events <-> protobuf.

use std::sync::LazyLock;

use prost::Message;
use svcops_kit::aggregate::{DecodeError, DomainEvent, EventDecoders};
use svcops_kit::events::{from_timestamp, to_timestamp};
use svcops_proto::backoffice::v1 as proto;
use svcops_proto::common::v1 as common;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Priority, SlaEvent};

fn uuid(event_type: &str, raw: &str) -> Result<Uuid, DecodeError> {
    Uuid::parse_str(raw).map_err(|error| DecodeError::new(event_type, error))
}

fn time(
    event_type: &str,
    timestamp: Option<&prost_types::Timestamp>,
) -> Result<OffsetDateTime, DecodeError> {
    timestamp
        .and_then(from_timestamp)
        .ok_or_else(|| DecodeError::new(event_type, "missing or bad timestamp"))
}

impl From<Priority> for common::Priority {
    fn from(priority: Priority) -> Self {
        match priority {
            Priority::Low => common::Priority::Low,
            Priority::Normal => common::Priority::Normal,
            Priority::High => common::Priority::High,
            Priority::Urgent => common::Priority::Urgent,
        }
    }
}

/// A priority as another office or an older event wrote it. Unset means the front office's
/// default (normal); a value this build does not know (a newer producer) is an error, never
/// silently read as another priority.
pub(crate) fn priority_from_proto(
    event_type: &str,
    raw: i32,
) -> Result<Option<Priority>, DecodeError> {
    match common::Priority::try_from(raw) {
        Ok(common::Priority::Unspecified) => Ok(None),
        Ok(common::Priority::Low) => Ok(Some(Priority::Low)),
        Ok(common::Priority::Normal) => Ok(Some(Priority::Normal)),
        Ok(common::Priority::High) => Ok(Some(Priority::High)),
        Ok(common::Priority::Urgent) => Ok(Some(Priority::Urgent)),
        Err(_) => Err(DecodeError::new(
            event_type,
            format!("unknown priority {raw}"),
        )),
    }
}

fn named<M: Message + prost::Name>(message: &M) -> (String, Vec<u8>) {
    (M::full_name(), message.encode_to_vec())
}

static DECODERS: LazyLock<EventDecoders<SlaEvent>> = LazyLock::new(|| {
    EventDecoders::new()
        .on::<proto::SlaClockStarted>(|event_type, started| {
            Ok(SlaEvent::Started {
                case_id: uuid(event_type, &started.case_id)?,
                policy: started.policy,
                priority: priority_from_proto(event_type, started.priority)?,
                started_at: time(event_type, started.started_at.as_ref())?,
                first_response_due: time(event_type, started.first_response_due.as_ref())?,
                resolution_due: time(event_type, started.resolution_due.as_ref())?,
            })
        })
        .on::<proto::SlaOnSiteTargetSet>(|event_type, on_site| {
            Ok(SlaEvent::OnSiteTargetSet {
                case_id: uuid(event_type, &on_site.case_id)?,
                work_order_id: uuid(event_type, &on_site.work_order_id)?,
                on_site_due: time(event_type, on_site.on_site_due.as_ref())?,
            })
        })
        .on::<proto::SlaWorkOrderAwaitingCase>(|event_type, awaiting| {
            Ok(SlaEvent::WorkOrderAwaitingCase {
                case_id: uuid(event_type, &awaiting.case_id)?,
                work_order_id: uuid(event_type, &awaiting.work_order_id)?,
            })
        })
});

impl DomainEvent for SlaEvent {
    fn encode(&self) -> (String, Vec<u8>) {
        match self {
            SlaEvent::Started {
                case_id,
                policy,
                priority,
                started_at,
                first_response_due,
                resolution_due,
            } => named(&proto::SlaClockStarted {
                case_id: case_id.to_string(),
                policy: policy.clone(),
                started_at: Some(to_timestamp(*started_at)),
                first_response_due: Some(to_timestamp(*first_response_due)),
                resolution_due: Some(to_timestamp(*resolution_due)),
                priority: priority.map_or(common::Priority::Unspecified, Into::into) as i32,
            }),
            SlaEvent::OnSiteTargetSet {
                case_id,
                work_order_id,
                on_site_due,
            } => named(&proto::SlaOnSiteTargetSet {
                case_id: case_id.to_string(),
                work_order_id: work_order_id.to_string(),
                on_site_due: Some(to_timestamp(*on_site_due)),
            }),
            SlaEvent::WorkOrderAwaitingCase {
                case_id,
                work_order_id,
            } => named(&proto::SlaWorkOrderAwaitingCase {
                case_id: case_id.to_string(),
                work_order_id: work_order_id.to_string(),
            }),
        }
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        DECODERS.decode(event_type, payload)
    }
}
