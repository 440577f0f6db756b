//! Domain <-> protobuf, for stored events and for the gRPC edge. The only place besides
//! `grpc.rs` that touches generated types.

use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as proto;

use svcops_eventstore::NewEvent;
use svcops_kit::events::CommandContext;

use crate::domain::{
    CaseDetails, Category, Channel, CustomerPhone, Event, Flag, PhoneNumber, Priority,
};

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
                    customer_phone: String::new(),
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
        customer_phone: if !opened.customer_key_id.is_empty() {
            CustomerPhone::Sealed {
                key_id: uuid::Uuid::parse_str(&opened.customer_key_id)
                    .map_err(|e| undecodable(e.to_string()))?,
                sealed: opened.customer_phone_sealed,
            }
        } else if opened.customer_phone.is_empty() {
            CustomerPhone::Erased
        } else {
            CustomerPhone::Known(
                PhoneNumber::parse("customer_phone", &opened.customer_phone)
                    .map_err(|e| undecodable(e.to_string()))?,
            )
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
