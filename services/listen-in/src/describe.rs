//! One human-readable line per event. Listen-in holds no customer keys and events carry
//! personal data only sealed, so no line can show any.

use svcops_kit::events::{decode, from_timestamp};
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

/// Describes an event.
pub fn describe(event_type: &str, payload: &[u8], actor: &str) -> String {
    let described = (|| -> Result<Option<String>, prost::DecodeError> {
        if let Some(e) = decode::<front::CaseOpened>(event_type, payload)? {
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
            return Ok(Some(format!(
                "case opened: {category}, {priority} priority, via {channel}, customer {phone}: {}",
                e.summary
            )));
        }
        if let Some(e) = decode::<front::CaseFlagged>(event_type, payload)? {
            let flag = enum_name(
                front::CaseFlag::try_from(e.flag)
                    .ok()
                    .map(|f| f.as_str_name()),
                "CASE_FLAG_",
            );
            return Ok(Some(format!("case flagged ({flag}): {}", e.detail)));
        }
        if let Some(e) = decode::<middle::WorkOrderOpened>(event_type, payload)? {
            let kind = enum_name(
                middle::WorkOrderKind::try_from(e.kind)
                    .ok()
                    .map(|k| k.as_str_name()),
                "WORK_ORDER_KIND_",
            );
            return Ok(Some(format!(
                "work order {} opened ({kind})",
                short(&e.work_order_id)
            )));
        }
        if let Some(e) = decode::<back::SlaClockStarted>(event_type, payload)? {
            return Ok(Some(format!(
                "SLA clock started ({}): first response due {}, resolution due {}",
                e.policy,
                time(e.first_response_due.as_ref()),
                time(e.resolution_due.as_ref())
            )));
        }
        if let Some(e) = decode::<back::SlaOnSiteTargetSet>(event_type, payload)? {
            return Ok(Some(format!(
                "on-site arrival due {} for work order {}",
                time(e.on_site_due.as_ref()),
                short(&e.work_order_id)
            )));
        }
        if let Some(e) = decode::<back::SlaWorkOrderAwaitingCase>(event_type, payload)? {
            return Ok(Some(format!(
                "work order {} noted: its on-site target is set when the case reaches the back office",
                short(&e.work_order_id)
            )));
        }
        if decode::<back::ClosedLoopItemOpened>(event_type, payload)?.is_some() {
            return Ok(Some(
                "closed-loop tracking opened: open until the customer confirms".into(),
            ));
        }
        if let Some(e) = decode::<listen::ListenSessionStarted>(event_type, payload)? {
            let mode = enum_name(
                listen::ListenMode::try_from(e.mode)
                    .ok()
                    .map(|m| m.as_str_name()),
                "LISTEN_MODE_",
            );
            return Ok(Some(format!("{actor} started listening ({mode})")));
        }
        if let Some(e) = decode::<listen::ListenSessionEnded>(event_type, payload)? {
            return Ok(Some(match e.reason.as_str() {
                "" => format!("{actor} stopped listening"),
                reason => format!("{actor} stopped listening ({reason})"),
            }));
        }
        Ok(None)
    })();
    match described {
        Ok(Some(text)) => text,
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
    fn unknown_types_fall_back_to_their_name() {
        assert_eq!(
            describe("svcops.x.v1.SomethingNew", &[], "a"),
            "SomethingNew"
        );
    }
}
