//! Listen session events <-> protobuf.

use std::sync::LazyLock;

use prost::Message;
use svcops_kit::aggregate::{DecodeError, DomainEvent, EventDecoders};
use svcops_proto::listenin::v1 as proto;
use uuid::Uuid;

use super::{Ended, Event, Mode, Started};

impl From<Mode> for proto::ListenMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Observe => proto::ListenMode::Observe,
            Mode::Whisper => proto::ListenMode::Whisper,
            Mode::Barge => proto::ListenMode::Barge,
        }
    }
}

impl From<&Started> for proto::ListenSessionStarted {
    fn from(started: &Started) -> Self {
        proto::ListenSessionStarted {
            session_id: started.session_id.to_string(),
            case_id: started.case_id.to_string(),
            mode: proto::ListenMode::from(started.mode).into(),
            served_by: started.served_by.clone(),
        }
    }
}

impl From<&Ended> for proto::ListenSessionEnded {
    fn from(ended: &Ended) -> Self {
        proto::ListenSessionEnded {
            session_id: ended.session_id.to_string(),
            case_id: ended.case_id.to_string(),
            reason: ended.reason.clone(),
        }
    }
}

impl TryFrom<proto::ListenSessionStarted> for Started {
    type Error = String;

    fn try_from(started: proto::ListenSessionStarted) -> Result<Self, String> {
        let mode = match proto::ListenMode::try_from(started.mode) {
            Ok(proto::ListenMode::Observe) => Mode::Observe,
            Ok(proto::ListenMode::Whisper) => Mode::Whisper,
            Ok(proto::ListenMode::Barge) => Mode::Barge,
            _ => return Err("unknown listen mode".to_owned()),
        };
        Ok(Started {
            session_id: Uuid::parse_str(&started.session_id).map_err(|e| e.to_string())?,
            case_id: Uuid::parse_str(&started.case_id).map_err(|e| e.to_string())?,
            mode,
            served_by: started.served_by,
        })
    }
}

static DECODERS: LazyLock<EventDecoders<Event>> = LazyLock::new(|| {
    EventDecoders::new()
        .on::<proto::ListenSessionStarted>(|event_type, started| {
            Started::try_from(started)
                .map(Event::Started)
                .map_err(|error| DecodeError::new(event_type, error))
        })
        .on::<proto::ListenSessionEnded>(|event_type, ended| {
            let corrupt = |error: uuid::Error| DecodeError::new(event_type, error);
            Ok(Event::Ended(Ended {
                session_id: Uuid::parse_str(&ended.session_id).map_err(corrupt)?,
                case_id: Uuid::parse_str(&ended.case_id).map_err(corrupt)?,
                reason: ended.reason,
            }))
        })
});

impl DomainEvent for Event {
    fn encode(&self) -> (String, Vec<u8>) {
        match self {
            Event::Started(started) => (
                <proto::ListenSessionStarted as prost::Name>::full_name(),
                proto::ListenSessionStarted::from(started).encode_to_vec(),
            ),
            Event::Ended(ended) => (
                <proto::ListenSessionEnded as prost::Name>::full_name(),
                proto::ListenSessionEnded::from(ended).encode_to_vec(),
            ),
        }
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        DECODERS.decode(event_type, payload)
    }
}
