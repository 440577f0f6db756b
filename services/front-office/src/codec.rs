//! Domain <-> protobuf, for stored events and for the gRPC edge. The only place besides
//! `grpc.rs` that touches generated types.

use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as proto;

use svcops_eventstore::NewEvent;
use svcops_kit::events::CommandContext;

use crate::domain::{CaseDetails, Category, Channel, CustomerPhone, Event, Flag, Priority};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot decode {event_type}: {reason}")]
    Undecodable { event_type: String, reason: String },
    /// A bug: personal data must be sealed before it is written.
    #[error("refusing to write an unsealed customer phone")]
    Unsealed,
}

pub fn category_from_proto(value: i32) -> Option<Category> {
    match common::CaseCategory::try_from(value).ok()? {
        common::CaseCategory::Consultation => Some(Category::Consultation),
        common::CaseCategory::Complaint => Some(Category::Complaint),
        common::CaseCategory::Repair => Some(Category::Repair),
        common::CaseCategory::Installation => Some(Category::Installation),
        common::CaseCategory::Return => Some(Category::Return),
        common::CaseCategory::Unspecified => None,
    }
}

pub fn category_to_proto(category: Category) -> common::CaseCategory {
    match category {
        Category::Consultation => common::CaseCategory::Consultation,
        Category::Complaint => common::CaseCategory::Complaint,
        Category::Repair => common::CaseCategory::Repair,
        Category::Installation => common::CaseCategory::Installation,
        Category::Return => common::CaseCategory::Return,
    }
}

/// `None` for an unknown value; `Some(None)` for "unspecified".
pub fn priority_from_proto(value: i32) -> Option<Option<Priority>> {
    Some(match common::Priority::try_from(value).ok()? {
        common::Priority::Unspecified => None,
        common::Priority::Low => Some(Priority::Low),
        common::Priority::Normal => Some(Priority::Normal),
        common::Priority::High => Some(Priority::High),
        common::Priority::Urgent => Some(Priority::Urgent),
    })
}

pub fn priority_to_proto(priority: Priority) -> common::Priority {
    match priority {
        Priority::Low => common::Priority::Low,
        Priority::Normal => common::Priority::Normal,
        Priority::High => common::Priority::High,
        Priority::Urgent => common::Priority::Urgent,
    }
}

/// `None` for an unknown value; `Some(None)` for "unspecified".
pub fn channel_from_proto(value: i32) -> Option<Option<Channel>> {
    Some(match proto::Channel::try_from(value).ok()? {
        proto::Channel::Unspecified => None,
        proto::Channel::Hotline => Some(Channel::Hotline),
        proto::Channel::Chat => Some(Channel::Chat),
        proto::Channel::Bot => Some(Channel::Bot),
        proto::Channel::App => Some(Channel::App),
        proto::Channel::Messaging => Some(Channel::Messaging),
        proto::Channel::Email => Some(Channel::Email),
    })
}

pub fn channel_to_proto(channel: Channel) -> proto::Channel {
    match channel {
        Channel::Hotline => proto::Channel::Hotline,
        Channel::Chat => proto::Channel::Chat,
        Channel::Bot => proto::Channel::Bot,
        Channel::App => proto::Channel::App,
        Channel::Messaging => proto::Channel::Messaging,
        Channel::Email => proto::Channel::Email,
    }
}

fn flag_to_proto(flag: Flag) -> proto::CaseFlag {
    match flag {
        Flag::ProcessingFailed => proto::CaseFlag::ProcessingFailed,
    }
}

pub fn flag_from_proto(value: i32) -> Option<Flag> {
    match proto::CaseFlag::try_from(value).ok()? {
        proto::CaseFlag::ProcessingFailed => Some(Flag::ProcessingFailed),
        proto::CaseFlag::Unspecified => None,
    }
}

pub fn flag_to_proto_i32(flag: Flag) -> i32 {
    flag_to_proto(flag).into()
}

/// The stored form of a domain event, with the context's metadata.
pub fn to_new_event(context: &CommandContext, event: &Event) -> Result<NewEvent, Error> {
    Ok(match event {
        Event::Opened { case_id, details } => {
            let CustomerPhone::Sealed { key_id, sealed } = &details.customer_phone else {
                return Err(Error::Unsealed);
            };
            context.event(
                Some(*case_id),
                &proto::CaseOpened {
                    case_id: case_id.to_string(),
                    customer_key_id: key_id.to_string(),
                    customer_phone_sealed: sealed.clone(),
                    category: category_to_proto(details.category).into(),
                    priority: priority_to_proto(details.priority).into(),
                    channel: channel_to_proto(details.channel).into(),
                    summary: details.summary.clone(),
                    product: details.product.clone(),
                    serial_number: details.serial_number.clone(),
                },
            )
        }
        Event::Flagged {
            case_id,
            flag,
            detail,
        } => context.event(
            Some(*case_id),
            &proto::CaseFlagged {
                case_id: case_id.to_string(),
                flag: flag_to_proto(*flag).into(),
                detail: detail.clone(),
            },
        ),
    })
}

/// The record of an erasure: which data key was destroyed, nothing personal.
pub fn erasure_record(context: &CommandContext, key_id: uuid::Uuid) -> NewEvent {
    context.event(
        None,
        &proto::CustomerDataErased {
            key_id: key_id.to_string(),
        },
    )
}

/// The data key an erasure record names; `Ok(None)` for any other event.
pub fn erased_key_id(event_type: &str, payload: &[u8]) -> Result<Option<uuid::Uuid>, Error> {
    let undecodable = |reason: String| Error::Undecodable {
        event_type: event_type.to_owned(),
        reason,
    };
    svcops_kit::events::decode::<proto::CustomerDataErased>(event_type, payload)
        .map_err(|error| undecodable(error.to_string()))?
        .map(|record| {
            uuid::Uuid::parse_str(&record.key_id).map_err(|error| undecodable(error.to_string()))
        })
        .transpose()
}

/// The domain event of a stored event; `Ok(None)` for types this version does not know.
pub fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Event>, Error> {
    let undecodable = |reason: String| Error::Undecodable {
        event_type: event_type.to_owned(),
        reason,
    };
    if let Some(flagged) = svcops_kit::events::decode::<proto::CaseFlagged>(event_type, payload)
        .map_err(|error| undecodable(error.to_string()))?
    {
        return Ok(Some(Event::Flagged {
            case_id: uuid::Uuid::parse_str(&flagged.case_id)
                .map_err(|e| undecodable(e.to_string()))?,
            flag: flag_from_proto(flagged.flag)
                .ok_or_else(|| undecodable("unknown flag".into()))?,
            detail: flagged.detail,
        }));
    }
    let Some(opened) = svcops_kit::events::decode::<proto::CaseOpened>(event_type, payload)
        .map_err(|error| undecodable(error.to_string()))?
    else {
        return Ok(None);
    };
    let case_id = uuid::Uuid::parse_str(&opened.case_id).map_err(|e| undecodable(e.to_string()))?;
    let details = CaseDetails {
        // Events from before sealing carried the phone in plain text (field 2, now
        // reserved), where erasure cannot reach it: it is never read, so they read as erased.
        customer_phone: if opened.customer_key_id.is_empty() {
            CustomerPhone::Erased
        } else {
            CustomerPhone::Sealed {
                key_id: uuid::Uuid::parse_str(&opened.customer_key_id)
                    .map_err(|e| undecodable(e.to_string()))?,
                sealed: opened.customer_phone_sealed,
            }
        },
        category: category_from_proto(opened.category)
            .ok_or_else(|| undecodable("unknown category".into()))?,
        priority: priority_from_proto(opened.priority)
            .flatten()
            .unwrap_or(Priority::Normal),
        channel: channel_from_proto(opened.channel)
            .flatten()
            .unwrap_or(Channel::Hotline),
        summary: opened.summary,
        product: opened.product,
        serial_number: opened.serial_number,
    };
    Ok(Some(Event::Opened { case_id, details }))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// `CaseOpened` as written before personal data was sealed: the phone in field 2.
    #[derive(Clone, PartialEq, Message)]
    struct PlainPhoneCaseOpened {
        #[prost(string, tag = "1")]
        case_id: String,
        #[prost(string, tag = "2")]
        customer_phone: String,
        #[prost(int32, tag = "3")]
        category: i32,
        #[prost(string, tag = "6")]
        summary: String,
    }

    #[test]
    fn a_plain_phone_from_before_sealing_is_never_read() {
        let case_id = uuid::Uuid::now_v7();
        let payload = PlainPhoneCaseOpened {
            case_id: case_id.to_string(),
            customer_phone: "+8613800001234".into(),
            category: common::CaseCategory::Repair.into(),
            summary: "lamp flickers".into(),
        }
        .encode_to_vec();
        let event = decode("svcops.frontoffice.v1.CaseOpened", &payload)
            .expect("old events stay readable")
            .expect("a case opened");
        let Event::Opened { details, .. } = &event else {
            panic!("not a case opened: {event:?}");
        };
        assert_eq!(details.customer_phone, CustomerPhone::Erased);
        assert_eq!(details.summary, "lamp flickers", "the rest stays");
        assert!(
            !format!("{event:?}").contains("13800001234"),
            "the phone surfaces: {event:?}"
        );
    }
}
