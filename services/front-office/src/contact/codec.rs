//! Contact events and values <-> protobuf, for stored events and for the gRPC edge.

use std::sync::LazyLock;

use prost::{Message, Name};
use svcops_kit::aggregate::{DecodeError, DomainEvent, EventDecoders};
use svcops_proto::frontoffice::v1 as proto;
use uuid::Uuid;

use super::{ContactCommand, ContactEvent, CustomerField, Speaker, Utterance};
use crate::case::{QueueName, channel_from_proto};

impl From<Speaker> for proto::Speaker {
    fn from(speaker: Speaker) -> Self {
        match speaker {
            Speaker::Customer => proto::Speaker::Customer,
            Speaker::Agent => proto::Speaker::Agent,
            Speaker::Bot => proto::Speaker::Bot,
        }
    }
}

/// `None` for an unknown value or "unspecified".
pub fn speaker_from_proto(value: i32) -> Option<Speaker> {
    match proto::Speaker::try_from(value).ok()? {
        proto::Speaker::Customer => Some(Speaker::Customer),
        proto::Speaker::Agent => Some(Speaker::Agent),
        proto::Speaker::Bot => Some(Speaker::Bot),
        proto::Speaker::Unspecified => None,
    }
}

impl From<CustomerField> for proto::CustomerField {
    fn from(field: CustomerField) -> Self {
        match field {
            CustomerField::Phone => proto::CustomerField::Phone,
            CustomerField::Name => proto::CustomerField::Name,
            CustomerField::Email => proto::CustomerField::Email,
            CustomerField::Address => proto::CustomerField::Address,
            CustomerField::AccountNumber => proto::CustomerField::AccountNumber,
        }
    }
}

/// `None` for an unknown value or "unspecified".
pub fn customer_field_from_proto(value: i32) -> Option<CustomerField> {
    match proto::CustomerField::try_from(value).ok()? {
        proto::CustomerField::Phone => Some(CustomerField::Phone),
        proto::CustomerField::Name => Some(CustomerField::Name),
        proto::CustomerField::Email => Some(CustomerField::Email),
        proto::CustomerField::Address => Some(CustomerField::Address),
        proto::CustomerField::AccountNumber => Some(CustomerField::AccountNumber),
        proto::CustomerField::Unspecified => None,
    }
}

impl ContactCommand {
    /// What a request asked for, as an idempotency request hash.
    pub fn request_hash(&self, contact_id: Uuid) -> Vec<u8> {
        let contact = contact_id.to_string();
        let wire = |value: i32| value.to_le_bytes().to_vec();
        let parts: Vec<Vec<u8>> = match self {
            ContactCommand::Start {
                case_id,
                channel,
                with_bot,
                ..
            } => vec![
                b"start".to_vec(),
                case_id.to_string().into_bytes(),
                wire(proto::Channel::from(*channel) as i32),
                vec![u8::from(*with_bot)],
            ],
            ContactCommand::Say(utterance) => vec![
                b"say".to_vec(),
                contact.into_bytes(),
                wire(proto::Speaker::from(utterance.speaker) as i32),
                utterance.text.as_bytes().to_vec(),
                utterance.start_ms.to_le_bytes().to_vec(),
                utterance.end_ms.to_le_bytes().to_vec(),
            ],
            ContactCommand::HandOff { queue, reason } => vec![
                b"hand-off".to_vec(),
                contact.into_bytes(),
                queue.as_str().as_bytes().to_vec(),
                reason.as_bytes().to_vec(),
            ],
            ContactCommand::End => vec![b"end".to_vec(), contact.into_bytes()],
        };
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        svcops_kit::events::request_hash(&parts)
    }
}

fn named<M: Message + Name>(message: &M) -> (String, Vec<u8>) {
    (M::full_name(), message.encode_to_vec())
}

fn uuid(event_type: &str, raw: &str) -> Result<Uuid, DecodeError> {
    Uuid::parse_str(raw).map_err(|error| DecodeError::new(event_type, error))
}

static DECODERS: LazyLock<EventDecoders<ContactEvent>> = LazyLock::new(|| {
    EventDecoders::new()
        .on::<proto::ContactStarted>(|event_type, e| {
            Ok(ContactEvent::Started {
                contact_id: uuid(event_type, &e.contact_id)?,
                case_id: uuid(event_type, &e.case_id)?,
                channel: channel_from_proto(e.channel)
                    .flatten()
                    .ok_or_else(|| DecodeError::new(event_type, "unknown channel"))?,
                with_bot: e.with_bot,
                // A field a newer version names and this one does not know is left out.
                known_fields: e
                    .known_fields
                    .iter()
                    .filter_map(|field| customer_field_from_proto(*field))
                    .collect(),
            })
        })
        .on::<proto::UtteranceAppended>(|event_type, e| {
            Ok(ContactEvent::Said {
                contact_id: uuid(event_type, &e.contact_id)?,
                case_id: uuid(event_type, &e.case_id)?,
                utterance: Utterance {
                    sequence: e.sequence,
                    speaker: speaker_from_proto(e.speaker)
                        .ok_or_else(|| DecodeError::new(event_type, "unknown speaker"))?,
                    text: e.text,
                    start_ms: e.start_ms,
                    end_ms: e.end_ms,
                },
            })
        })
        .on::<proto::ContactHandedOff>(|event_type, e| {
            Ok(ContactEvent::HandedOff {
                contact_id: uuid(event_type, &e.contact_id)?,
                case_id: uuid(event_type, &e.case_id)?,
                queue: QueueName::parse("queue", &e.queue)
                    .map_err(|error| DecodeError::new(event_type, error))?,
                reason: e.reason,
                utterances: e.utterances,
            })
        })
        .on::<proto::ContactEnded>(|event_type, e| {
            Ok(ContactEvent::Ended {
                contact_id: uuid(event_type, &e.contact_id)?,
                case_id: uuid(event_type, &e.case_id)?,
            })
        })
});

impl DomainEvent for ContactEvent {
    fn encode(&self) -> (String, Vec<u8>) {
        match self {
            ContactEvent::Started {
                contact_id,
                case_id,
                channel,
                with_bot,
                known_fields,
            } => named(&proto::ContactStarted {
                contact_id: contact_id.to_string(),
                case_id: case_id.to_string(),
                channel: proto::Channel::from(*channel).into(),
                with_bot: *with_bot,
                known_fields: known_fields
                    .iter()
                    .map(|field| proto::CustomerField::from(*field).into())
                    .collect(),
            }),
            ContactEvent::Said {
                contact_id,
                case_id,
                utterance,
            } => named(&proto::UtteranceAppended {
                contact_id: contact_id.to_string(),
                case_id: case_id.to_string(),
                sequence: utterance.sequence,
                speaker: proto::Speaker::from(utterance.speaker).into(),
                text: utterance.text.clone(),
                start_ms: utterance.start_ms,
                end_ms: utterance.end_ms,
            }),
            ContactEvent::HandedOff {
                contact_id,
                case_id,
                queue,
                reason,
                utterances,
            } => named(&proto::ContactHandedOff {
                contact_id: contact_id.to_string(),
                case_id: case_id.to_string(),
                queue: queue.as_str().to_owned(),
                reason: reason.clone(),
                utterances: *utterances,
            }),
            ContactEvent::Ended {
                contact_id,
                case_id,
            } => named(&proto::ContactEnded {
                contact_id: contact_id.to_string(),
                case_id: case_id.to_string(),
            }),
        }
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        DECODERS.decode(event_type, payload)
    }
}
