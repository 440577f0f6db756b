//! Case events and values <-> protobuf, for stored events and for the gRPC edge.

use std::sync::LazyLock;

use prost::{Message, Name};
use svcops_kit::aggregate::{DecodeError, DomainEvent, EventDecoders};
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as proto;
use uuid::Uuid;

use super::{
    AgentName, CaseDetails, CaseEvent, Category, Channel, CustomerPhone, EscalationLevel, Flag,
    Priority, QueueName, Risk, RiskTrigger, WaitingOn,
};

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

impl From<WaitingOn> for proto::WaitingOn {
    fn from(on: WaitingOn) -> Self {
        match on {
            WaitingOn::Customer => proto::WaitingOn::Customer,
            WaitingOn::MiddleOffice => proto::WaitingOn::MiddleOffice,
        }
    }
}

/// `None` for an unknown value or "unspecified".
pub fn waiting_on_from_proto(value: i32) -> Option<WaitingOn> {
    match proto::WaitingOn::try_from(value).ok()? {
        proto::WaitingOn::Customer => Some(WaitingOn::Customer),
        proto::WaitingOn::MiddleOffice => Some(WaitingOn::MiddleOffice),
        proto::WaitingOn::Unspecified => None,
    }
}

impl From<RiskTrigger> for proto::RiskTrigger {
    fn from(trigger: RiskTrigger) -> Self {
        match trigger {
            RiskTrigger::Person => proto::RiskTrigger::Person,
            RiskTrigger::Keyword => proto::RiskTrigger::Keyword,
            RiskTrigger::RepeatedComplaints => proto::RiskTrigger::RepeatedComplaints,
            RiskTrigger::TopEscalation => proto::RiskTrigger::TopEscalation,
        }
    }
}

/// `None` for an unknown value or "unspecified".
pub fn risk_trigger_from_proto(value: i32) -> Option<RiskTrigger> {
    match proto::RiskTrigger::try_from(value).ok()? {
        proto::RiskTrigger::Person => Some(RiskTrigger::Person),
        proto::RiskTrigger::Keyword => Some(RiskTrigger::Keyword),
        proto::RiskTrigger::RepeatedComplaints => Some(RiskTrigger::RepeatedComplaints),
        proto::RiskTrigger::TopEscalation => Some(RiskTrigger::TopEscalation),
        proto::RiskTrigger::Unspecified => None,
    }
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
        let project = self.project_id.map(|project_id| project_id.to_string());
        let mut fields: Vec<&[u8]> = vec![
            phone.as_bytes(),
            &category,
            &priority,
            &channel,
            self.summary.as_bytes(),
            self.product.as_bytes(),
            self.serial_number.as_bytes(),
        ];
        // Only when given: a request without one hashes as it always did.
        if let Some(project) = &project {
            fields.push(project.as_bytes());
        }
        svcops_kit::events::request_hash(&fields)
    }
}

impl super::CaseCommand {
    /// What a lifecycle request asked for, as an idempotency request hash: the same
    /// request_id with another command, case or value is told apart.
    pub fn request_hash(&self, case_id: Uuid) -> Vec<u8> {
        use super::CaseCommand;
        let case = case_id.to_string();
        let wire = |value: i32| value.to_le_bytes();
        let (verb, first, second): (&str, Vec<u8>, Vec<u8>) = match self {
            CaseCommand::Open { .. } | CaseCommand::Flag { .. } => {
                ("other", Vec::new(), Vec::new())
            }
            CaseCommand::Triage { queue, priority } => (
                "triage",
                queue.as_str().as_bytes().to_vec(),
                wire(priority.map_or(0, |priority| common::Priority::from(priority) as i32))
                    .to_vec(),
            ),
            CaseCommand::Assign { assignee } => {
                ("assign", assignee.as_str().as_bytes().to_vec(), Vec::new())
            }
            CaseCommand::Wait { on, reason } => (
                "wait",
                wire(proto::WaitingOn::from(*on) as i32).to_vec(),
                reason.as_bytes().to_vec(),
            ),
            CaseCommand::Resume => ("resume", Vec::new(), Vec::new()),
            CaseCommand::Resolve { resolution } => {
                ("resolve", resolution.as_bytes().to_vec(), Vec::new())
            }
            CaseCommand::Close => ("close", Vec::new(), Vec::new()),
            CaseCommand::Reopen { reason } => ("reopen", reason.as_bytes().to_vec(), Vec::new()),
            CaseCommand::Escalate { level, reason } => {
                ("escalate", vec![level.get()], reason.as_bytes().to_vec())
            }
            CaseCommand::FlagRisk { reason } => {
                ("flag-risk", reason.as_bytes().to_vec(), Vec::new())
            }
            CaseCommand::ClearRisk { reason } => {
                ("clear-risk", reason.as_bytes().to_vec(), Vec::new())
            }
            CaseCommand::RaiseRisk(risk) => (
                "raise-risk",
                wire(proto::RiskTrigger::from(risk.trigger) as i32).to_vec(),
                risk.detail.as_bytes().to_vec(),
            ),
        };
        svcops_kit::events::request_hash(&[verb.as_bytes(), case.as_bytes(), &first, &second])
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
        segment: crate::customer::segment_from_proto(opened.segment).flatten(),
        project_id: if opened.project_id.is_empty() {
            None
        } else {
            Some(uuid(event_type, &opened.project_id)?)
        },
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

/// A name as recorded; it was checked when its command was decided.
fn recorded_queue(event_type: &str, raw: String) -> Result<QueueName, DecodeError> {
    QueueName::parse("queue", &raw).map_err(|error| DecodeError::new(event_type, error))
}

fn recorded_agent(event_type: &str, raw: String) -> Result<AgentName, DecodeError> {
    AgentName::parse("assignee", &raw).map_err(|error| DecodeError::new(event_type, error))
}

static DECODERS: LazyLock<EventDecoders<CaseEvent>> = LazyLock::new(|| {
    EventDecoders::new()
        .on::<proto::CaseOpened>(opened)
        .on::<proto::CaseFlagged>(flagged)
        .on::<proto::CaseTriaged>(|event_type, e| {
            Ok(CaseEvent::Triaged {
                case_id: uuid(event_type, &e.case_id)?,
                queue: recorded_queue(event_type, e.queue)?,
                priority: priority_from_proto(e.priority)
                    .flatten()
                    .ok_or_else(|| DecodeError::new(event_type, "unknown priority"))?,
            })
        })
        .on::<proto::CaseAssigned>(|event_type, e| {
            Ok(CaseEvent::Assigned {
                case_id: uuid(event_type, &e.case_id)?,
                assignee: recorded_agent(event_type, e.assignee)?,
            })
        })
        .on::<proto::CaseWaiting>(|event_type, e| {
            Ok(CaseEvent::Waiting {
                case_id: uuid(event_type, &e.case_id)?,
                on: waiting_on_from_proto(e.waiting_on)
                    .ok_or_else(|| DecodeError::new(event_type, "unknown waiting_on"))?,
                reason: e.reason,
            })
        })
        .on::<proto::CaseResumed>(|event_type, e| {
            Ok(CaseEvent::Resumed {
                case_id: uuid(event_type, &e.case_id)?,
            })
        })
        .on::<proto::CaseResolved>(|event_type, e| {
            Ok(CaseEvent::Resolved {
                case_id: uuid(event_type, &e.case_id)?,
                resolution: e.resolution,
            })
        })
        .on::<proto::CaseClosed>(|event_type, e| {
            Ok(CaseEvent::Closed {
                case_id: uuid(event_type, &e.case_id)?,
            })
        })
        .on::<proto::CaseReopened>(|event_type, e| {
            Ok(CaseEvent::Reopened {
                case_id: uuid(event_type, &e.case_id)?,
                reason: e.reason,
            })
        })
        .on::<proto::CaseEscalated>(|event_type, e| {
            Ok(CaseEvent::Escalated {
                case_id: uuid(event_type, &e.case_id)?,
                level: EscalationLevel::parse("level", e.level)
                    .map_err(|error| DecodeError::new(event_type, error))?,
                reason: e.reason,
            })
        })
        .on::<proto::CaseRiskFlagged>(|event_type, e| {
            Ok(CaseEvent::RiskFlagged {
                case_id: uuid(event_type, &e.case_id)?,
                risk: Risk {
                    trigger: risk_trigger_from_proto(e.trigger)
                        .ok_or_else(|| DecodeError::new(event_type, "unknown risk trigger"))?,
                    detail: e.detail,
                },
                priority: priority_from_proto(e.priority)
                    .flatten()
                    .ok_or_else(|| DecodeError::new(event_type, "unknown priority"))?,
            })
        })
        .on::<proto::CaseRiskCleared>(|event_type, e| {
            Ok(CaseEvent::RiskCleared {
                case_id: uuid(event_type, &e.case_id)?,
                reason: e.reason,
            })
        })
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
                    segment: details
                        .segment
                        .map(|segment| proto::CustomerSegment::from(segment).into())
                        .unwrap_or_default(),
                    project_id: details
                        .project_id
                        .map(|project_id| project_id.to_string())
                        .unwrap_or_default(),
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
            CaseEvent::Triaged {
                case_id,
                queue,
                priority,
            } => named(&proto::CaseTriaged {
                case_id: case_id.to_string(),
                queue: queue.as_str().to_owned(),
                priority: common::Priority::from(*priority).into(),
            }),
            CaseEvent::Assigned { case_id, assignee } => named(&proto::CaseAssigned {
                case_id: case_id.to_string(),
                assignee: assignee.as_str().to_owned(),
            }),
            CaseEvent::Waiting {
                case_id,
                on,
                reason,
            } => named(&proto::CaseWaiting {
                case_id: case_id.to_string(),
                waiting_on: proto::WaitingOn::from(*on).into(),
                reason: reason.clone(),
            }),
            CaseEvent::Resumed { case_id } => named(&proto::CaseResumed {
                case_id: case_id.to_string(),
            }),
            CaseEvent::Resolved {
                case_id,
                resolution,
            } => named(&proto::CaseResolved {
                case_id: case_id.to_string(),
                resolution: resolution.clone(),
            }),
            CaseEvent::Closed { case_id } => named(&proto::CaseClosed {
                case_id: case_id.to_string(),
            }),
            CaseEvent::Reopened { case_id, reason } => named(&proto::CaseReopened {
                case_id: case_id.to_string(),
                reason: reason.clone(),
            }),
            CaseEvent::Escalated {
                case_id,
                level,
                reason,
            } => named(&proto::CaseEscalated {
                case_id: case_id.to_string(),
                level: u32::from(level.get()),
                reason: reason.clone(),
            }),
            CaseEvent::RiskFlagged {
                case_id,
                risk,
                priority,
            } => named(&proto::CaseRiskFlagged {
                case_id: case_id.to_string(),
                trigger: proto::RiskTrigger::from(risk.trigger).into(),
                detail: risk.detail.clone(),
                priority: common::Priority::from(*priority).into(),
            }),
            CaseEvent::RiskCleared { case_id, reason } => named(&proto::CaseRiskCleared {
                case_id: case_id.to_string(),
                reason: reason.clone(),
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
                    segment: Some(crate::customer::Segment::Hotel),
                    project_id: Some(Uuid::now_v7()),
                },
            },
            CaseEvent::Flagged {
                case_id,
                flag: Flag::ProcessingFailed,
                detail: "gave up".into(),
            },
            CaseEvent::Triaged {
                case_id,
                queue: QueueName::parse("queue", "repair").expect("valid"),
                priority: Priority::High,
            },
            CaseEvent::Assigned {
                case_id,
                assignee: AgentName::parse("assignee", "agent-7").expect("valid"),
            },
            CaseEvent::Waiting {
                case_id,
                on: WaitingOn::MiddleOffice,
                reason: "technician booked for Friday".into(),
            },
            CaseEvent::Resumed { case_id },
            CaseEvent::Resolved {
                case_id,
                resolution: "replaced the driver board".into(),
            },
            CaseEvent::Closed { case_id },
            CaseEvent::Reopened {
                case_id,
                reason: "flickers again".into(),
            },
            CaseEvent::Escalated {
                case_id,
                level: EscalationLevel::TOP,
                reason: "third visit".into(),
            },
            CaseEvent::RiskFlagged {
                case_id,
                risk: Risk {
                    trigger: RiskTrigger::Keyword,
                    detail: "\"微博\" in the summary".into(),
                },
                priority: Priority::Urgent,
            },
            CaseEvent::RiskCleared {
                case_id,
                reason: "the customer is satisfied".into(),
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
