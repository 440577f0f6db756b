//! Building events with the metadata every event carries (DESIGN §3.3), and decoding them.

use prost::{Message, Name};
use svcops_bus::envelope::BusEvent;
use svcops_eventstore::{EventMetadata, NewEvent};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::{Principal, Role};

/// Who is acting and in which causal chain: everything an event needs besides its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    pub actor: Principal,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
}

impl CommandContext {
    /// A command from an authenticated caller starts a new causal chain.
    pub fn from_caller(actor: Principal) -> Self {
        Self {
            actor,
            correlation_id: Uuid::now_v7(),
            causation_id: None,
        }
    }

    /// A service reacting to `cause`: same correlation, caused by that event, acted by the
    /// service itself.
    pub fn reacting_to(service: &str, cause: &BusEvent) -> Self {
        Self {
            actor: Principal {
                subject: service.to_owned(),
                role: Role::Service,
            },
            correlation_id: cause.metadata.correlation_id,
            causation_id: Some(cause.event_id),
        }
    }

    /// A new event with this context, the current trace and the current time.
    pub fn event<M: Message + Name>(&self, case_id: Option<Uuid>, payload: &M) -> NewEvent {
        self.new_event(case_id, M::full_name(), payload.encode_to_vec())
    }

    /// [`CommandContext::event`] from an already encoded payload and its type name.
    pub fn new_event(
        &self,
        case_id: Option<Uuid>,
        event_type: String,
        payload: Vec<u8>,
    ) -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type,
            payload,
            metadata: EventMetadata {
                case_id,
                actor_subject: self.actor.subject.clone(),
                actor_role: self.actor.role.as_str().to_owned(),
                correlation_id: self.correlation_id,
                causation_id: self.causation_id,
                traceparent: crate::telemetry::current_traceparent(),
                occurred_at: now_micros(),
            },
        }
    }
}

/// An idempotency key no two different inputs share: `scope`, then each part prefixed by
/// its length, so a subject containing `/` cannot pass for a subject and a request id.
pub fn idempotency_key(scope: &str, parts: &[&str]) -> String {
    let mut key = scope.to_owned();
    for part in parts {
        key.push('/');
        key.push_str(&part.len().to_string());
        key.push(':');
        key.push_str(part);
    }
    key
}

/// A fingerprint of a request (SHA-256 over its length-prefixed fields), stored with its
/// idempotency key so the same key with another request is told apart from a retry.
pub fn request_hash(fields: &[&[u8]]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field);
    }
    hasher.finalize().to_vec()
}

/// What a request message asked for, as an idempotency request hash: its protobuf type
/// name and its encoding with the request id cleared (prost encodes the same message to the
/// same bytes; the name tells apart two RPCs whose requests encode alike).
pub fn message_hash<M: prost::Message + prost::Name + Clone>(
    request: &M,
    clear_request_id: fn(&mut M),
) -> Vec<u8> {
    let mut body = request.clone();
    clear_request_id(&mut body);
    request_hash(&[M::full_name().as_bytes(), &body.encode_to_vec()])
}

/// Now, truncated to microseconds (what PostgreSQL keeps), so a stored and a fresh value
/// compare equal.
pub fn now_micros() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// Decodes `payload` as `M` if `event_type` names `M`; `Ok(None)` for other types.
pub fn decode<M: Message + Name + Default>(
    event_type: &str,
    payload: &[u8],
) -> Result<Option<M>, prost::DecodeError> {
    if event_type == M::full_name() {
        M::decode(payload).map(Some)
    } else {
        Ok(None)
    }
}

/// Converts a time to a protobuf timestamp.
pub fn to_timestamp(time: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.unix_timestamp(),
        nanos: i32::try_from(time.nanosecond()).unwrap_or(0),
    }
}

/// Converts a protobuf timestamp to a time (`None` if out of range).
pub fn from_timestamp(timestamp: &prost_types::Timestamp) -> Option<OffsetDateTime> {
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    OffsetDateTime::from_unix_timestamp(timestamp.seconds)
        .ok()?
        .replace_nanosecond(nanos)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_cannot_be_confused_by_separators() {
        assert_ne!(
            idempotency_key("front-office/open-case", &["alice/x", "y"]),
            idempotency_key("front-office/open-case", &["alice", "x/y"])
        );
        assert_eq!(
            idempotency_key("front-office/open-case", &["alice", "r-1"]),
            "front-office/open-case/5:alice/3:r-1"
        );
    }

    #[test]
    fn request_hashes_tell_requests_apart() {
        assert_eq!(request_hash(&[b"a", b"bc"]), request_hash(&[b"a", b"bc"]));
        assert_ne!(request_hash(&[b"a", b"bc"]), request_hash(&[b"ab", b"c"]));
        assert_ne!(request_hash(&[b"a"]), request_hash(&[b"b"]));
    }
}
