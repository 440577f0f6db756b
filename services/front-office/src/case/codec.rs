//! Case events and values <-> protobuf, for stored events and for the gRPC edge.

use std::sync::LazyLock;

use prost::{Message, Name};
use svcops_kit::aggregate::{DecodeError, DomainEvent, EventDecoders};
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as proto;
use uuid::Uuid;

use super::{CaseDetails, CaseEvent, Category, Channel, CustomerPhone, Flag, Priority};

impl From<Category> for common::CaseCategory {
    fn from(category: Category) -> Self {
        match category {
            Category::Consultation => common::CaseCategory::Consultation,
            Category::Complaint => common::CaseCategory::Complaint,
            Category::Repair => common::CaseCategory::Repair,
            Category::Installation => common::CaseCategory::Installation,
            Category::Return => common::CaseCategory::Return,
        }
    }
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

impl From<Channel> for proto::Channel {
    fn from(channel: Channel) -> Self {
        match channel {
            Channel::Hotline => proto::Channel::Hotline,
            Channel::Chat => proto::Channel::Chat,
            Channel::Bot => proto::Channel::Bot,
            Channel::App => proto::Channel::App,
            Channel::Messaging => proto::Channel::Messaging,
            Channel::Email => proto::Channel::Email,
        }
    }
}

impl From<Flag> for proto::CaseFlag {
    fn from(flag: Flag) -> Self {
        match flag {
            Flag::ProcessingFailed => proto::CaseFlag::ProcessingFailed,
        }
    }
}

/// `None` for an unknown value or "unspecified".
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

pub fn flag_from_proto(value: i32) -> Option<Flag> {
    match proto::CaseFlag::try_from(value).ok()? {
        proto::CaseFlag::ProcessingFailed => Some(Flag::ProcessingFailed),
        proto::CaseFlag::Unspecified => None,
    }
}

impl CaseDetails {
    /// What a request to open a case asked for, as an idempotency request hash: the phone
    /// as the customer's key id (the sealed bytes differ on every call, and the phone itself
    /// must not be kept beside the key), enums by their wire numbers (which never change;
    /// names may).
    pub fn request_hash(&self) -> Vec<u8> {
        let phone = match &self.customer_phone {
            CustomerPhone::Sealed { key_id, .. } => key_id.to_string(),
            CustomerPhone::Known(_) | CustomerPhone::Erased => String::new(),
        };
        let (category, priority, channel) = (
            (common::CaseCategory::from(self.category) as i32).to_le_bytes(),
            (common::Priority::from(self.priority) as i32).to_le_bytes(),
            (proto::Channel::from(self.channel) as i32).to_le_bytes(),
        );
        svcops_kit::events::request_hash(&[
            phone.as_bytes(),
            &category,
            &priority,
            &channel,
            self.summary.as_bytes(),
            self.product.as_bytes(),
            self.serial_number.as_bytes(),
        ])
    }
}

fn named<M: Message + Name>(message: &M) -> (String, Vec<u8>) {
    (M::full_name(), message.encode_to_vec())
}

fn uuid(event_type: &str, raw: &str) -> Result<Uuid, DecodeError> {
    Uuid::parse_str(raw).map_err(|error| DecodeError::new(event_type, error))
}

fn opened(event_type: &str, opened: proto::CaseOpened) -> Result<CaseEvent, DecodeError> {
    let details = CaseDetails {
        // Events from before sealing carried the phone in plain text (field 2, now
        // reserved), where erasure cannot reach it: it is never read, so they read as erased.
        customer_phone: if opened.customer_key_id.is_empty() {
            CustomerPhone::Erased
        } else {
            CustomerPhone::Sealed {
                key_id: uuid(event_type, &opened.customer_key_id)?,
                sealed: opened.customer_phone_sealed,
            }
        },
        category: category_from_proto(opened.category)
            .ok_or_else(|| DecodeError::new(event_type, "unknown category"))?,
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
    Ok(CaseEvent::Opened {
        case_id: uuid(event_type, &opened.case_id)?,
        details,
    })
}

fn flagged(event_type: &str, flagged: proto::CaseFlagged) -> Result<CaseEvent, DecodeError> {
    Ok(CaseEvent::Flagged {
        case_id: uuid(event_type, &flagged.case_id)?,
        flag: flag_from_proto(flagged.flag)
            .ok_or_else(|| DecodeError::new(event_type, "unknown flag"))?,
        detail: flagged.detail,
    })
}

static DECODERS: LazyLock<EventDecoders<CaseEvent>> = LazyLock::new(|| {
    EventDecoders::new()
        .on::<proto::CaseOpened>(opened)
        .on::<proto::CaseFlagged>(flagged)
});

impl DomainEvent for CaseEvent {
    fn encode(&self) -> (String, Vec<u8>) {
        match self {
            CaseEvent::Opened { case_id, details } => {
                // The aggregate refuses to open a case with an unsealed phone; were one to
                // get here anyway, it is written as erased, never in plain text.
                let (key_id, sealed) = match &details.customer_phone {
                    CustomerPhone::Sealed { key_id, sealed } => {
                        (key_id.to_string(), sealed.clone())
                    }
                    CustomerPhone::Known(_) | CustomerPhone::Erased => (String::new(), Vec::new()),
                };
                named(&proto::CaseOpened {
                    case_id: case_id.to_string(),
                    customer_key_id: key_id,
                    customer_phone_sealed: sealed,
                    category: common::CaseCategory::from(details.category).into(),
                    priority: common::Priority::from(details.priority).into(),
                    channel: proto::Channel::from(details.channel).into(),
                    summary: details.summary.clone(),
                    product: details.product.clone(),
                    serial_number: details.serial_number.clone(),
                })
            }
            CaseEvent::Flagged {
                case_id,
                flag,
                detail,
            } => named(&proto::CaseFlagged {
                case_id: case_id.to_string(),
                flag: proto::CaseFlag::from(*flag).into(),
                detail: detail.clone(),
            }),
        }
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        DECODERS.decode(event_type, payload)
    }
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
        let case_id = Uuid::now_v7();
        let payload = PlainPhoneCaseOpened {
            case_id: case_id.to_string(),
            customer_phone: "+8613800001234".into(),
            category: common::CaseCategory::Repair.into(),
            summary: "lamp flickers".into(),
        }
        .encode_to_vec();
        let event = CaseEvent::decode("svcops.frontoffice.v1.CaseOpened", &payload)
            .expect("old events stay readable")
            .expect("a case opened");
        let CaseEvent::Opened { details, .. } = &event else {
            panic!("not a case opened: {event:?}");
        };
        assert_eq!(details.customer_phone, CustomerPhone::Erased);
        assert_eq!(details.summary, "lamp flickers", "the rest stays");
        assert!(
            !format!("{event:?}").contains("13800001234"),
            "the phone surfaces: {event:?}"
        );
    }

    #[test]
    fn events_round_trip() {
        let case_id = Uuid::now_v7();
        let events = [
            CaseEvent::Opened {
                case_id,
                details: CaseDetails {
                    customer_phone: CustomerPhone::Sealed {
                        key_id: Uuid::now_v7(),
                        sealed: vec![1, 2, 3],
                    },
                    category: Category::Installation,
                    priority: Priority::Urgent,
                    channel: Channel::Email,
                    summary: "install".into(),
                    product: "PL-200".into(),
                    serial_number: "SN1".into(),
                },
            },
            CaseEvent::Flagged {
                case_id,
                flag: Flag::ProcessingFailed,
                detail: "gave up".into(),
            },
        ];
        for event in events {
            let (event_type, payload) = event.encode();
            assert_eq!(
                CaseEvent::decode(&event_type, &payload).expect("decodes"),
                Some(event)
            );
        }
        assert_eq!(CaseEvent::decode("svcops.other.v1.Thing", &[]), Ok(None));
    }
}
