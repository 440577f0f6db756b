use std::fmt;

use time::OffsetDateTime;
use uuid::Uuid;

/// Global position of an event in one store's log; 0 means "before the first event".
pub type Position = i64;

/// Name of one aggregate instance's stream, e.g. `case-0190…`. Lower-case ASCII letters,
/// digits, `-` and `_`, at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(String);

impl StreamId {
    /// Parses a stream id, rejecting anything outside the allowed alphabet.
    pub fn parse(value: impl Into<String>) -> Result<Self, crate::Error> {
        let value = value.into();
        let valid = !value.is_empty()
            && value.len() <= 200
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(value))
        } else {
            Err(crate::Error::Invalid(format!("bad stream id {value:?}")))
        }
    }

    /// The stream of one aggregate: `<kind>-<uuid>`.
    pub fn for_aggregate(kind: &str, id: Uuid) -> Self {
        Self(format!("{kind}-{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The log as of one instant: its head, and the writers then in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSnapshot {
    pub head: Position,
    /// Ids of the transactions in progress (PostgreSQL), any of which may hold positions at
    /// or below `head` that are not visible yet.
    pub in_progress: Vec<u64>,
}

/// What the caller believes the stream's current version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version (>= 1).
    Exact(u64),
    /// Append after whatever is there (retrying internally on a race).
    Any,
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(version) => write!(f, "{version}"),
            Self::Any => f.write_str("any"),
        }
    }
}

/// Who did it, and why: the metadata every event carries (DESIGN §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMetadata {
    pub case_id: Option<Uuid>,
    pub actor_subject: String,
    pub actor_role: String,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    /// W3C `traceparent` of the span that produced the event.
    pub traceparent: Option<String>,
    pub occurred_at: OffsetDateTime,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: Uuid,
    /// Fully qualified protobuf message name of the payload.
    pub event_type: String,
    pub payload: Vec<u8>,
    pub metadata: EventMetadata,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream_id: StreamId,
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: Vec<u8>,
    pub metadata: EventMetadata,
    pub recorded_at: OffsetDateTime,
}

/// One atomic append to one stream.
#[derive(Debug, Clone)]
pub struct Append {
    pub stream_id: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    /// First append with a key wins; later ones return its result and append nothing.
    pub idempotency_key: Option<String>,
    /// A fingerprint of the request behind the key (e.g. a hash of the command): a later
    /// append with the same key and a different fingerprint is
    /// [`Error::IdempotencyKeyReused`](crate::Error::IdempotencyKeyReused), not a duplicate.
    pub request_hash: Option<Vec<u8>>,
    /// Whether the relay publishes these events to the bus (false for local-only records).
    pub publish: bool,
}

impl Append {
    /// A published append without idempotency key.
    pub fn new(stream_id: StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        Self {
            stream_id,
            expected,
            events,
            idempotency_key: None,
            request_hash: None,
            publish: true,
        }
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Fingerprint of the request behind the idempotency key (see [`Append::request_hash`]).
    pub fn request_hash(mut self, hash: impl Into<Vec<u8>>) -> Self {
        self.request_hash = Some(hash.into());
        self
    }

    pub fn local_only(mut self) -> Self {
        self.publish = false;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        if self.events.is_empty() {
            return Err(crate::Error::Invalid(
                "an append needs at least one event".into(),
            ));
        }
        if matches!(self.expected, ExpectedVersion::Exact(0)) {
            return Err(crate::Error::Invalid(
                "expected version 0: use ExpectedVersion::NoStream".into(),
            ));
        }
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.len() > 300 {
                return Err(crate::Error::Invalid(
                    "idempotency key must be 1..=300 bytes".into(),
                ));
            }
            text("idempotency key", key)?;
        }
        for event in &self.events {
            text("event type", &event.event_type)?;
            text("actor subject", &event.metadata.actor_subject)?;
            text("actor role", &event.metadata.actor_role)?;
            if let Some(traceparent) = &event.metadata.traceparent {
                text("traceparent", traceparent)?;
            }
        }
        Ok(())
    }
}

/// Text the store keeps must be storable the same way by every adapter: PostgreSQL refuses
/// NUL in text, SQLite would keep it, so both refuse it here (and any other control
/// character, which no svcops identifier or header has any business carrying).
pub(crate) fn text(what: &str, value: &str) -> Result<(), crate::Error> {
    match value.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(crate::Error::Invalid(format!(
            "{what} contains the control character {c:?}"
        ))),
    }
}

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub stream_id: StreamId,
    pub first_version: u64,
    pub last_version: u64,
}

/// Result of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The events were appended now.
    Appended(Appended),
    /// The idempotency key was already used: this is the first append's result, and nothing
    /// was appended now.
    Duplicate(Appended),
}

impl AppendOutcome {
    pub fn appended(&self) -> &Appended {
        match self {
            Self::Appended(appended) | Self::Duplicate(appended) => appended,
        }
    }

    pub fn is_duplicate(&self) -> bool {
        matches!(self, Self::Duplicate(_))
    }
}

/// `(first, last)` when `versions` (sorted) are `expected` consecutive versions.
pub(crate) fn consecutive(versions: &[i64], expected: usize) -> Option<(u64, u64)> {
    let (first, last) = (*versions.first()?, *versions.last()?);
    let in_a_row =
        versions.len() == expected && versions.windows(2).all(|pair| pair[1] == pair[0] + 1);
    in_a_row.then_some((first as u64, last as u64))
}

/// The answer to an append whose idempotency key was used before.
pub(crate) fn duplicate(
    append: &Append,
    key: &str,
    first: Appended,
    first_request_hash: Option<Vec<u8>>,
) -> Result<AppendOutcome, crate::Error> {
    same_request(key, append.request_hash.as_deref(), first_request_hash)?;
    Ok(AppendOutcome::Duplicate(first))
}

/// A key's second use asks for what its first did: refused when both carry request hashes
/// and they differ (a hash on one side only is accepted, as before hashes were kept).
pub(crate) fn same_request(
    key: &str,
    now: Option<&[u8]>,
    then: Option<Vec<u8>>,
) -> Result<(), crate::Error> {
    match (now, then) {
        (Some(now), Some(then)) if now != then.as_slice() => {
            Err(crate::Error::IdempotencyKeyReused {
                key: key.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// How many times an `ExpectedVersion::Any` append retries a lost race before giving up.
pub(crate) const ANY_VERSION_ATTEMPTS: usize = 20;
