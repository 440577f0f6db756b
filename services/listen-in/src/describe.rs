//! One human-readable line per event. Listen-in holds no customer keys and events carry
//! personal data only sealed, so no line can show any.

use std::sync::LazyLock;

use svcops_kit::aggregate::EventDecoders;
use svcops_kit::events::from_timestamp;
use svcops_proto::backoffice::v1 as back;
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::listenin::v1 as listen;
use svcops_proto::middleoffice::v1 as middle;
use time::format_description::well_known::Rfc3339;

fn time(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(from_timestamp)
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| "?".into())
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn enum_name(name: Option<&str>, prefix: &str) -> String {
    name.map(|name| {
        name.trim_start_matches(prefix)
            .to_lowercase()
            .replace('_', " ")
    })
    .unwrap_or_else(|| "unknown".into())
}

/// An event's line, before it is told who did it.
enum Line {
    Text(String),
    /// What the event's actor did: the line starts with the actor.
    ByActor(String),
}

static DESCRIPTIONS: LazyLock<EventDecoders<Line>> = LazyLock::new(|| {
    EventDecoders::new()
        .on::<front::CaseOpened>(|_, e| {
            // Sealed personal data stays sealed here: listen-in holds no customer keys. Events
            // from before sealing carried the phone in plain text (a field now reserved, so
            // never decoded): erasure cannot reach it there, so it is never shown.
            let phone = if e.customer_key_id.is_empty() {
                "(no personal data)"
            } else {
                "(personal data sealed)"
            };
            let category = enum_name(
                common::CaseCategory::try_from(e.category)
                    .ok()
                    .map(|c| c.as_str_name()),
                "CASE_CATEGORY_",
            );
            let priority = enum_name(
                common::Priority::try_from(e.priority)
                    .ok()
                    .map(|p| p.as_str_name()),
                "PRIORITY_",
            );
            let channel = enum_name(
                front::Channel::try_from(e.channel)
                    .ok()
                    .map(|c| c.as_str_name()),
                "CHANNEL_",
            );
            Ok(Line::Text(format!(
                "case opened: {category}, {priority} priority, via {channel}, customer {phone}: {}",
                e.summary
            )))
        })
        .on::<front::CaseFlagged>(|_, e| {
            let flag = enum_name(
                front::CaseFlag::try_from(e.flag)
                    .ok()
                    .map(|f| f.as_str_name()),
                "CASE_FLAG_",
            );
            Ok(Line::Text(format!("case flagged ({flag}): {}", e.detail)))
        })
        .on::<front::CaseTriaged>(|_, e| {
            let priority = enum_name(
                common::Priority::try_from(e.priority)
                    .ok()
                    .map(|p| p.as_str_name()),
                "PRIORITY_",
            );
            Ok(Line::ByActor(format!(
                "routed the case to queue {} ({priority} priority)",
                e.queue
            )))
        })
        .on::<front::CaseAssigned>(|_, e| {
            Ok(Line::ByActor(format!("assigned the case to {}", e.assignee)))
        })
        .on::<front::CaseWaiting>(|_, e| {
            let on = match front::WaitingOn::try_from(e.waiting_on) {
                Ok(front::WaitingOn::Customer) => "the customer",
                Ok(front::WaitingOn::MiddleOffice) => "the middle office",
                Ok(front::WaitingOn::Unspecified) | Err(_) => "someone",
            };
            Ok(Line::ByActor(format!(
                "set the case waiting on {on}: {}",
                e.reason
            )))
        })
        .on::<front::CaseResumed>(|_, _| Ok(Line::ByActor("took the case up again".into())))
        .on::<front::CaseResolved>(|_, e| {
            Ok(Line::ByActor(format!("resolved the case: {}", e.resolution)))
        })
        .on::<front::CaseClosed>(|_, _| {
            Ok(Line::Text(
                "case closed: the customer confirmed the resolution".into(),
            ))
        })
        .on::<front::CaseReopened>(|_, e| {
            Ok(Line::ByActor(format!("reopened the case: {}", e.reason)))
        })
        .on::<front::CaseEscalated>(|_, e| {
            Ok(Line::ByActor(format!(
                "escalated the complaint to level {}: {}",
                e.level, e.reason
            )))
        })
        .on::<front::CaseRiskFlagged>(|_, e| {
            let priority = enum_name(
                common::Priority::try_from(e.priority)
                    .ok()
                    .map(|p| p.as_str_name()),
                "PRIORITY_",
            );
            Ok(match front::RiskTrigger::try_from(e.trigger) {
                Ok(front::RiskTrigger::Person) => Line::ByActor(format!(
                    "flagged a public-opinion risk ({priority} priority now): {}",
                    e.detail
                )),
                trigger => {
                    let rule = match trigger {
                        Ok(front::RiskTrigger::Keyword) => "a keyword",
                        Ok(front::RiskTrigger::RepeatedComplaints) => "repeated complaints",
                        Ok(front::RiskTrigger::TopEscalation) => "the top escalation level",
                        Ok(front::RiskTrigger::Person | front::RiskTrigger::Unspecified)
                        | Err(_) => "a rule",
                    };
                    Line::Text(format!(
                        "public-opinion risk flagged by {rule} ({priority} priority now): {}",
                        e.detail
                    ))
                }
            })
        })
        .on::<front::ContactStarted>(|_, e| {
            let channel = enum_name(
                front::Channel::try_from(e.channel)
                    .ok()
                    .map(|c| c.as_str_name()),
                "CHANNEL_",
            );
            let answers = if e.with_bot { "a bot" } else { "a person" };
            Ok(Line::Text(format!(
                "contact {} started via {channel}; {answers} answers",
                short(&e.contact_id)
            )))
        })
        .on::<front::UtteranceAppended>(|_, e| {
            let speaker = match front::Speaker::try_from(e.speaker) {
                Ok(front::Speaker::Customer) => "customer",
                Ok(front::Speaker::Agent) => "agent",
                Ok(front::Speaker::Bot) => "bot",
                Ok(front::Speaker::Unspecified) | Err(_) => "someone",
            };
            Ok(Line::Text(format!("{speaker} said: {}", e.text)))
        })
        .on::<front::ContactHandedOff>(|_, e| {
            Ok(Line::Text(format!(
                "the bot handed contact {} to queue {} after {} utterances: {}",
                short(&e.contact_id),
                e.queue,
                e.utterances,
                e.reason
            )))
        })
        .on::<front::ContactEnded>(|_, e| {
            Ok(Line::Text(format!("contact {} ended", short(&e.contact_id))))
        })
        .on::<front::CaseRiskCleared>(|_, e| {
            Ok(Line::ByActor(format!(
                "cleared the public-opinion risk: {}",
                e.reason
            )))
        })
        .on::<middle::WorkOrderOpened>(|_, e| {
            let kind = enum_name(
                middle::WorkOrderKind::try_from(e.kind)
                    .ok()
                    .map(|k| k.as_str_name()),
                "WORK_ORDER_KIND_",
            );
            Ok(Line::Text(format!(
                "work order {} opened ({kind})",
                short(&e.work_order_id)
            )))
        })
        .on::<middle::VisitScheduled>(|_, e| {
            let window = format!(
                "{} to {}",
                time(e.window_start.as_ref()),
                time(e.window_end.as_ref())
            );
            Ok(Line::ByActor(if e.previous_start.is_some() {
                format!("moved the visit to {window}")
            } else {
                format!("agreed a visit {window}")
            }))
        })
        .on::<middle::TechnicianDispatched>(|_, e| {
            Ok(Line::ByActor(format!(
                "dispatched technician {} to work order {}",
                e.technician,
                short(&e.work_order_id)
            )))
        })
        .on::<middle::TechnicianEnRoute>(|_, e| {
            Ok(Line::Text(format!(
                "technician {} en route, arriving about {}",
                e.technician,
                time(e.eta.as_ref())
            )))
        })
        .on::<middle::TechnicianArrived>(|_, e| {
            let punctuality = match middle::Punctuality::try_from(e.punctuality) {
                Ok(middle::Punctuality::Early) => format!("{} min early", e.minutes),
                Ok(middle::Punctuality::OnTime) => "on time".to_owned(),
                Ok(middle::Punctuality::Late) => format!("{} min late", e.minutes),
                _ => "at an unknown time".to_owned(),
            };
            Ok(Line::Text(format!(
                "technician {} arrived on site, {punctuality}",
                e.technician
            )))
        })
        .on::<middle::WorkOrderCompleted>(|_, e| {
            let outcome = enum_name(
                middle::VisitOutcome::try_from(e.outcome)
                    .ok()
                    .map(|o| o.as_str_name()),
                "VISIT_OUTCOME_",
            );
            Ok(Line::ByActor(format!(
                "completed work order {}: {outcome}",
                short(&e.work_order_id)
            )))
        })
        .on::<middle::WorkOrderCharged>(|_, e| {
            let yuan = |cents: i64| format!("¥{}.{:02}", cents / 100, (cents % 100).abs());
            let deviations = e
                .lines
                .iter()
                .filter(|line| line.standard_amount_cents.is_some())
                .count();
            let mut text = format!(
                "charged {} line(s), {} in all (price list {})",
                e.lines.len(),
                yuan(e.total_cents),
                e.price_list_version
            );
            if deviations > 0 {
                text.push_str(&format!(
                    "; {deviations} off the standard, approved by {}",
                    e.approved_by
                ));
            }
            Ok(Line::ByActor(text))
        })
        .on::<middle::ReturnAuthorised>(|_, e| {
            Ok(Line::ByActor(format!(
                "authorised return {} of {} ({}) to the factory",
                short(&e.rma_id),
                e.product,
                e.serial_number
            )))
        })
        .on::<middle::ReturnAdvanced>(|_, e| {
            let step = enum_name(
                middle::ReturnStep::try_from(e.step)
                    .ok()
                    .map(|s| s.as_str_name()),
                "RETURN_STEP_",
            );
            let mut text = format!("return {}: {step}", short(&e.rma_id));
            if !e.tracking_number.is_empty() {
                text.push_str(&format!(" (tracking {})", e.tracking_number));
            }
            if !e.note.is_empty() {
                text.push_str(&format!(": {}", e.note));
            }
            Ok(Line::Text(text))
        })
        .on::<back::SlaClockStarted>(|_, e| {
            Ok(Line::Text(format!(
                "SLA clock started ({}): first response due {}, resolution due {}",
                e.policy,
                time(e.first_response_due.as_ref()),
                time(e.resolution_due.as_ref())
            )))
        })
        .on::<back::SlaOnSiteTargetSet>(|_, e| {
            Ok(Line::Text(format!(
                "on-site arrival due {} for work order {}",
                time(e.on_site_due.as_ref()),
                short(&e.work_order_id)
            )))
        })
        .on::<back::SlaWorkOrderAwaitingCase>(|_, e| {
            Ok(Line::Text(format!(
                "work order {} noted: its on-site target is set when the case reaches the back office",
                short(&e.work_order_id)
            )))
        })
        .on::<back::ClosedLoopItemOpened>(|_, _| {
            Ok(Line::Text(
                "closed-loop tracking opened: open until the customer confirms".into(),
            ))
        })
        .on::<listen::ListenSessionStarted>(|_, e| {
            let mode = enum_name(
                listen::ListenMode::try_from(e.mode)
                    .ok()
                    .map(|m| m.as_str_name()),
                "LISTEN_MODE_",
            );
            Ok(Line::ByActor(format!("started listening ({mode})")))
        })
        .on::<listen::ListenSessionEnded>(|_, e| {
            Ok(Line::ByActor(match e.reason.as_str() {
                "" => "stopped listening".to_owned(),
                reason => format!("stopped listening ({reason})"),
            }))
        })
});

/// Describes an event.
pub fn describe(event_type: &str, payload: &[u8], actor: &str) -> String {
    match DESCRIPTIONS.decode(event_type, payload) {
        Ok(Some(Line::Text(text))) => text,
        Ok(Some(Line::ByActor(text))) => format!("{actor} {text}"),
        Ok(None) => event_type
            .rsplit('.')
            .next()
            .unwrap_or(event_type)
            .to_owned(),
        Err(_) => format!("{event_type} (undecodable)"),
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
    fn a_plain_phone_from_before_sealing_is_never_shown() {
        let payload = PlainPhoneCaseOpened {
            case_id: "c".into(),
            customer_phone: "+8613800001234".into(),
            category: common::CaseCategory::Repair.into(),
            summary: "lamp flickers".into(),
        }
        .encode_to_vec();
        assert_eq!(
            describe("svcops.frontoffice.v1.CaseOpened", &payload, "alice"),
            "case opened: repair, unspecified priority, via unspecified, \
             customer (no personal data): lamp flickers"
        );
    }

    #[test]
    fn sealed_phones_stay_sealed() {
        let opened = front::CaseOpened {
            case_id: "c".into(),
            customer_key_id: "0190".into(),
            customer_phone_sealed: vec![1, 2, 3],
            category: common::CaseCategory::Repair.into(),
            summary: "lamp".into(),
            ..Default::default()
        };
        let text = describe(
            "svcops.frontoffice.v1.CaseOpened",
            &opened.encode_to_vec(),
            "alice",
        );
        assert!(text.contains("customer (personal data sealed)"), "{text}");
    }

    #[test]
    fn a_visit_is_told_step_by_step() {
        let arrived = middle::TechnicianArrived {
            technician: "tech-9".into(),
            punctuality: middle::Punctuality::Late.into(),
            minutes: 15,
            ..Default::default()
        };
        assert_eq!(
            describe(
                "svcops.middleoffice.v1.TechnicianArrived",
                &arrived.encode_to_vec(),
                "tech-9"
            ),
            "technician tech-9 arrived on site, 15 min late"
        );
        let completed = middle::WorkOrderCompleted {
            work_order_id: "0123456789".into(),
            outcome: middle::VisitOutcome::NeedsParts.into(),
            ..Default::default()
        };
        assert_eq!(
            describe(
                "svcops.middleoffice.v1.WorkOrderCompleted",
                &completed.encode_to_vec(),
                "tech-9"
            ),
            "tech-9 completed work order 01234567: needs parts"
        );
    }

    #[test]
    fn unknown_types_fall_back_to_their_name() {
        assert_eq!(
            describe("svcops.x.v1.SomethingNew", &[], "a"),
            "SomethingNew"
        );
    }

    #[test]
    fn listening_is_told_of_its_listener() {
        let started = listen::ListenSessionStarted {
            mode: listen::ListenMode::Whisper.into(),
            ..Default::default()
        };
        assert_eq!(
            describe(
                "svcops.listenin.v1.ListenSessionStarted",
                &started.encode_to_vec(),
                "ceo"
            ),
            "ceo started listening (whisper)"
        );
        let ended = listen::ListenSessionEnded {
            reason: "listen-in shut down".into(),
            ..Default::default()
        };
        assert_eq!(
            describe(
                "svcops.listenin.v1.ListenSessionEnded",
                &ended.encode_to_vec(),
                "ceo"
            ),
            "ceo stopped listening (listen-in shut down)"
        );
    }

    #[test]
    fn an_undecodable_event_says_so() {
        // Field 3 as a string that claims more bytes than follow.
        assert_eq!(
            describe(
                "svcops.frontoffice.v1.CaseFlagged",
                &[0x1a, 0x10, b'x'],
                "a"
            ),
            "svcops.frontoffice.v1.CaseFlagged (undecodable)"
        );
    }
}

#[cfg(test)]
mod lifecycle_tests {
    use prost::{Message, Name};

    use super::*;

    fn line<M: Message + Name>(message: &M) -> String {
        describe(&M::full_name(), &message.encode_to_vec(), "agent-7")
    }

    #[test]
    fn every_lifecycle_move_reads_as_a_sentence() {
        assert_eq!(
            line(&front::CaseTriaged {
                case_id: "c".into(),
                queue: "repair".into(),
                priority: common::Priority::High.into(),
            }),
            "agent-7 routed the case to queue repair (high priority)"
        );
        assert_eq!(
            line(&front::CaseWaiting {
                case_id: "c".into(),
                waiting_on: front::WaitingOn::MiddleOffice.into(),
                reason: "technician on Friday".into(),
            }),
            "agent-7 set the case waiting on the middle office: technician on Friday"
        );
        assert_eq!(
            line(&front::CaseClosed {
                case_id: "c".into()
            }),
            "case closed: the customer confirmed the resolution"
        );
        assert_eq!(
            line(&front::CaseReopened {
                case_id: "c".into(),
                reason: "flickers again".into(),
            }),
            "agent-7 reopened the case: flickers again"
        );
    }

    #[test]
    fn escalation_and_risk_read_as_sentences() {
        assert_eq!(
            line(&front::CaseEscalated {
                case_id: "c".into(),
                level: 2,
                reason: "second visit failed".into(),
            }),
            "agent-7 escalated the complaint to level 2: second visit failed"
        );
        assert_eq!(
            line(&front::CaseRiskFlagged {
                case_id: "c".into(),
                trigger: front::RiskTrigger::Keyword.into(),
                detail: "\"微博\" in the summary".into(),
                priority: common::Priority::Urgent.into(),
            }),
            "public-opinion risk flagged by a keyword (urgent priority now): \"微博\" in the summary"
        );
        assert_eq!(
            line(&front::CaseRiskFlagged {
                case_id: "c".into(),
                trigger: front::RiskTrigger::Person.into(),
                detail: "filmed the technician".into(),
                priority: common::Priority::Urgent.into(),
            }),
            "agent-7 flagged a public-opinion risk (urgent priority now): filmed the technician"
        );
        assert_eq!(
            line(&front::CaseRiskCleared {
                case_id: "c".into(),
                reason: "customer satisfied".into(),
            }),
            "agent-7 cleared the public-opinion risk: customer satisfied"
        );
    }

    #[test]
    fn a_conversation_reads_as_it_happens() {
        assert_eq!(
            line(&front::ContactStarted {
                contact_id: "0193c0de-aaaa".into(),
                case_id: "c".into(),
                channel: front::Channel::Chat.into(),
                with_bot: true,
                known_fields: vec![front::CustomerField::Phone.into()],
            }),
            "contact 0193c0de started via chat; a bot answers"
        );
        assert_eq!(
            line(&front::UtteranceAppended {
                contact_id: "0193c0de-aaaa".into(),
                case_id: "c".into(),
                sequence: 1,
                speaker: front::Speaker::Customer.into(),
                text: "我的灯一直闪".into(),
                start_ms: 0,
                end_ms: 1200,
            }),
            "customer said: 我的灯一直闪"
        );
        assert_eq!(
            line(&front::ContactHandedOff {
                contact_id: "0193c0de-aaaa".into(),
                case_id: "c".into(),
                queue: "complaints".into(),
                reason: "asks for a person".into(),
                utterances: 4,
            }),
            "the bot handed contact 0193c0de to queue complaints after 4 utterances: asks for a person"
        );
    }
}
