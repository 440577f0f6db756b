//! Stored event <-> bus message, in CloudEvents binary content mode over Kafka headers.
//!
//! Standard attributes: `ce_id`, `ce_type`, `ce_source`, `ce_subject` (the stream id),
//! `ce_time`, `ce_specversion`, `content-type`; W3C `traceparent`. svcops extensions carry
//! the rest of the event metadata (DESIGN §3.3) so a consumer needs nothing but the message.

use svcops_eventstore::{EventMetadata, RecordedEvent};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::Message;

pub const CONTENT_TYPE: &str = "application/protobuf";

/// Header an adapter puts on a stored message it could not read back, with the reason; such a
/// message is undecodable and dead-lettered.
pub const CORRUPT_HEADER: &str = "svcops_bus_corrupt";

/// Why a message is not a valid svcops event (it goes to the dead-letter topic).
#[derive(Debug, thiserror::Error)]
#[error("undecodable event message: header {header}: {reason}")]
pub struct Error {
    pub header: &'static str,
    pub reason: String,
}

/// An event as a consumer in another service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEvent {
    /// The publishing service, e.g. `svcops/front-office`.
    pub source: String,
    pub stream_id: String,
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: Vec<u8>,
    pub metadata: EventMetadata,
    pub recorded_at: OffsetDateTime,
}

/// The message the relay publishes for a stored event.
pub fn to_message(source: &str, event: &RecordedEvent) -> Message {
    let metadata = &event.metadata;
    let key = metadata
        .case_id
        .map_or_else(|| event.stream_id.to_string(), |case| case.to_string());
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        ("ce_specversion".into(), b"1.0".to_vec()),
        ("ce_id".into(), event.event_id.to_string().into_bytes()),
        ("ce_type".into(), event.event_type.clone().into_bytes()),
        ("ce_source".into(), source.as_bytes().to_vec()),
        (
            "ce_subject".into(),
            event.stream_id.to_string().into_bytes(),
        ),
        (
            "ce_time".into(),
            format_time(metadata.occurred_at).into_bytes(),
        ),
        ("content-type".into(), CONTENT_TYPE.as_bytes().to_vec()),
        (
            "ce_streamversion".into(),
            event.version.to_string().into_bytes(),
        ),
        (
            "ce_recordedtime".into(),
            format_time(event.recorded_at).into_bytes(),
        ),
        (
            "ce_actor".into(),
            metadata.actor_subject.clone().into_bytes(),
        ),
        (
            "ce_actorrole".into(),
            metadata.actor_role.clone().into_bytes(),
        ),
        (
            "ce_correlationid".into(),
            metadata.correlation_id.to_string().into_bytes(),
        ),
    ];
    if let Some(case_id) = metadata.case_id {
        headers.push(("ce_caseid".into(), case_id.to_string().into_bytes()));
    }
    if let Some(causation_id) = metadata.causation_id {
        headers.push((
            "ce_causationid".into(),
            causation_id.to_string().into_bytes(),
        ));
    }
    if let Some(traceparent) = &metadata.traceparent {
        headers.push(("traceparent".into(), traceparent.clone().into_bytes()));
    }
    Message {
        key,
        headers,
        payload: event.payload.clone(),
    }
}

/// Most bytes of one text header; anything longer is not an svcops event.
const MAX_HEADER_TEXT: usize = 1024;

/// Header text as the stores will keep it: no control characters (PostgreSQL refuses NUL,
/// SQLite keeps it) and bounded, so a bad header makes the message undecodable (dead-lettered
/// at once) instead of failing every store write that copies it.
fn checked_text<'a>(header: &'static str, text: &'a str) -> Result<&'a str, Error> {
    if text.len() > MAX_HEADER_TEXT {
        return Err(Error {
            header,
            reason: format!("longer than {MAX_HEADER_TEXT} bytes"),
        });
    }
    match text.chars().find(|c| c.is_control()) {
        None => Ok(text),
        Some(c) => Err(Error {
            header,
            reason: format!("contains the control character {c:?}"),
        }),
    }
}

/// Decodes a message published by [`to_message`].
pub fn from_message(message: &Message) -> Result<BusEvent, Error> {
    let required = |header: &'static str| {
        let text = message.header(header).ok_or(Error {
            header,
            reason: "missing".into(),
        })?;
        checked_text(header, text)
    };
    let uuid = |header: &'static str, text: &str| {
        Uuid::parse_str(text).map_err(|error| Error {
            header,
            reason: error.to_string(),
        })
    };
    let time = |header: &'static str| {
        let text = required(header)?;
        OffsetDateTime::parse(text, &Rfc3339).map_err(|error| Error {
            header,
            reason: error.to_string(),
        })
    };
    let optional_uuid = |header: &'static str| {
        message
            .header(header)
            .map(|text| uuid(header, text))
            .transpose()
    };
    // A stored message its bus could not read back (see the embedded adapter): say why.
    if let Some(reason) = message.header(CORRUPT_HEADER) {
        return Err(Error {
            header: CORRUPT_HEADER,
            reason: reason.to_owned(),
        });
    }
    let content_type = required("content-type")?;
    if content_type != CONTENT_TYPE {
        return Err(Error {
            header: "content-type",
            reason: format!("expected {CONTENT_TYPE}, got {content_type}"),
        });
    }
    let version = required("ce_streamversion")?;
    Ok(BusEvent {
        source: required("ce_source")?.to_owned(),
        stream_id: required("ce_subject")?.to_owned(),
        version: version.parse().map_err(|_| Error {
            header: "ce_streamversion",
            reason: format!("not a number: {version:?}"),
        })?,
        event_id: uuid("ce_id", required("ce_id")?)?,
        event_type: required("ce_type")?.to_owned(),
        payload: message.payload.clone(),
        metadata: EventMetadata {
            case_id: optional_uuid("ce_caseid")?,
            actor_subject: required("ce_actor")?.to_owned(),
            actor_role: required("ce_actorrole")?.to_owned(),
            correlation_id: uuid("ce_correlationid", required("ce_correlationid")?)?,
            causation_id: optional_uuid("ce_causationid")?,
            traceparent: message
                .header("traceparent")
                .map(|text| checked_text("traceparent", text).map(str::to_owned))
                .transpose()?,
            occurred_at: time("ce_time")?,
        },
        recorded_at: time("ce_recordedtime")?,
    })
}

/// Makes `span` a child of the remote span named by a W3C `traceparent` (as carried by an
/// event and its Kafka headers), so a reaction continues the trace of its cause.
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::propagation::TextMapPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(context);
}

/// When the event in `message` was recorded, read from its header alone (without decoding
/// the rest).
pub fn recorded_at(message: &Message) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(message.header("ce_recordedtime")?, &Rfc3339).ok()
}

fn format_time(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use svcops_eventstore::StreamId;

    use super::*;

    fn recorded(case_id: Option<Uuid>) -> RecordedEvent {
        RecordedEvent {
            position: 7,
            stream_id: StreamId::parse("case-1").expect("valid"),
            version: 3,
            event_id: Uuid::now_v7(),
            event_type: "svcops.frontoffice.v1.CaseOpened".into(),
            payload: vec![1, 2, 3],
            metadata: EventMetadata {
                case_id,
                actor_subject: "alice".into(),
                actor_role: "agent".into(),
                correlation_id: Uuid::now_v7(),
                causation_id: Some(Uuid::now_v7()),
                traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                occurred_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid"),
            },
            recorded_at: OffsetDateTime::from_unix_timestamp(1_700_000_001).expect("valid"),
        }
    }

    #[test]
    fn round_trips_every_attribute() {
        let event = recorded(Some(Uuid::now_v7()));
        let message = to_message("svcops/front-office", &event);
        let decoded = from_message(&message).expect("decodes");
        assert_eq!(decoded.event_id, event.event_id);
        assert_eq!(decoded.event_type, event.event_type);
        assert_eq!(decoded.stream_id, "case-1");
        assert_eq!(decoded.version, 3);
        assert_eq!(decoded.metadata, event.metadata);
        assert_eq!(decoded.recorded_at, event.recorded_at);
        assert_eq!(decoded.payload, vec![1, 2, 3]);
        assert_eq!(decoded.source, "svcops/front-office");
    }

    #[test]
    fn keys_by_case_when_there_is_one_else_by_stream() {
        let case_id = Uuid::now_v7();
        assert_eq!(
            to_message("s", &recorded(Some(case_id))).key,
            case_id.to_string()
        );
        assert_eq!(to_message("s", &recorded(None)).key, "case-1");
    }

    #[test]
    fn rejects_header_text_no_store_would_keep_alike() {
        for (header, value) in [
            ("ce_actor", "alice\0"),
            ("ce_actorrole", "agent\u{7}"),
            ("traceparent", "00-\0"),
            ("ce_type", "svcops.frontoffice.v1.CaseOpened\n"),
            ("ce_subject", &"x".repeat(MAX_HEADER_TEXT + 1)),
        ] {
            let mut message = to_message("svcops/front-office", &recorded(Some(Uuid::now_v7())));
            for (name, bytes) in &mut message.headers {
                if name == header {
                    *bytes = value.as_bytes().to_vec();
                }
            }
            let error = from_message(&message).expect_err(header);
            assert_eq!(error.header, header, "{error}");
        }
    }

    #[test]
    fn rejects_a_message_without_cloud_events_headers() {
        let message = Message {
            key: "k".into(),
            headers: vec![("content-type".into(), CONTENT_TYPE.into())],
            payload: vec![],
        };
        let error = from_message(&message).expect_err("must fail");
        assert_eq!(error.reason, "missing", "{error}");
        assert!(error.header.starts_with("ce_"), "{error}");
    }
}
