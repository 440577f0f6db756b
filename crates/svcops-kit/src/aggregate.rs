//! The kernel every aggregate of every office stands on: one trait, one way to turn its
//! events into stored events and back, and one command executor.
//!
//! An aggregate is pure: [`Aggregate::decide`] turns a command into events (or refuses it),
//! [`Aggregate::apply`] folds a recorded event into the state. The [`Executor`] does the IO
//! around it, the same way for every command: load the stream, fold it, decide, append at
//! the expected version (with the idempotency key and request hash when there is one, the
//! outbox row in the same transaction), and on a concurrency conflict re-read and decide
//! again, a bounded number of times.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use prost::{Message, Name};

use svcops_bus::consumer::HandlerError;
use svcops_eventstore::{
    Append, AppendOutcome, Appended, EventStore, ExpectedVersion, RecordedEvent, StreamId,
};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::ApiError;
use crate::events::CommandContext;

/// How often the executor re-reads and decides again after losing a race for the stream.
pub const CONFLICT_RETRIES: usize = 5;

/// An event as the store recorded it: the domain event with its envelope, so `apply` can use
/// when and by whom it happened without extra parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded<E> {
    pub event: E,
    /// Version in its stream (1 = first).
    pub version: u64,
    pub occurred_at: OffsetDateTime,
    pub actor_subject: String,
    pub actor_role: String,
}

impl<E> Recorded<E> {
    /// `event`, decoded from `stored`, in `stored`'s envelope.
    pub fn new(event: E, stored: &RecordedEvent) -> Self {
        Self {
            event,
            version: stored.version,
            occurred_at: stored.metadata.occurred_at,
            actor_subject: stored.metadata.actor_subject.clone(),
            actor_role: stored.metadata.actor_role.clone(),
        }
    }
}

/// A domain event's wire form: its protobuf type name and encoded payload.
pub trait DomainEvent: Sized + Send + Sync {
    /// Encodes the event as (fully qualified protobuf type name, payload).
    fn encode(&self) -> (String, Vec<u8>);

    /// Decodes a stored event; `Ok(None)` for a type that is not one of this aggregate's.
    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError>;
}

/// A stored event of a known type that cannot be read (corruption, or a producer newer
/// than this build writing values it does not know).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {event_type}: {reason}")]
pub struct DecodeError {
    pub event_type: String,
    pub reason: String,
}

impl DecodeError {
    pub fn new(event_type: &str, reason: impl ToString) -> Self {
        Self {
            event_type: event_type.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Reads one protobuf message into an event `E`; see [`EventDecoders`].
type Decoder<E> = Box<dyn Fn(&str, &[u8]) -> Result<E, DecodeError> + Send + Sync>;

/// Decoding by type name, in one place: a table from a protobuf message's full name
/// (`prost::Name::full_name`) to how that message becomes an `E`. Built once per event enum
/// (a `LazyLock` static), so a [`DomainEvent::decode`] or a reader of another office's events
/// is one lookup:
///
/// ```
/// use std::sync::LazyLock;
///
/// use svcops_kit::aggregate::{DecodeError, EventDecoders};
/// use svcops_proto::backoffice::v1 as proto;
///
/// enum LoopEvent {
///     Opened { case_id: uuid::Uuid },
/// }
///
/// static DECODERS: LazyLock<EventDecoders<LoopEvent>> = LazyLock::new(|| {
///     EventDecoders::new().on::<proto::ClosedLoopItemOpened>(|event_type, opened| {
///         let case_id = uuid::Uuid::parse_str(&opened.case_id)
///             .map_err(|error| DecodeError::new(event_type, error))?;
///         Ok(LoopEvent::Opened { case_id })
///     })
/// });
///
/// assert!(matches!(DECODERS.decode("svcops.other.v1.Thing", &[]), Ok(None)));
/// ```
pub struct EventDecoders<E> {
    by_type: HashMap<String, Decoder<E>>,
}

impl<E> Default for EventDecoders<E> {
    fn default() -> Self {
        Self {
            by_type: HashMap::new(),
        }
    }
}

impl<E> EventDecoders<E> {
    /// An empty table: every type is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads events of type `M::full_name()` with `convert`, which gets that type name (for
    /// its errors) and the decoded message, and refuses what the domain cannot take (an
    /// unknown enum value from a newer producer, a malformed id) with a [`DecodeError`].
    ///
    /// # Panics
    ///
    /// When `M` is registered already: two readings of one type is a programming error in
    /// the table, caught when the table is built.
    pub fn on<M>(
        mut self,
        convert: impl Fn(&str, M) -> Result<E, DecodeError> + Send + Sync + 'static,
    ) -> Self
    where
        M: Message + Name + Default,
    {
        let decode: Decoder<E> = Box::new(move |event_type, payload| {
            let message =
                M::decode(payload).map_err(|error| DecodeError::new(event_type, error))?;
            convert(event_type, message)
        });
        let event_type = M::full_name();
        assert!(
            !self.by_type.contains_key(&event_type),
            "{event_type} is registered twice in one EventDecoders table"
        );
        self.by_type.insert(event_type, decode);
        self
    }

    /// The event stored as `event_type` with `payload`: `Ok(None)` for a type the table does
    /// not know, a [`DecodeError`] naming the type for a payload that is not that message or
    /// that its conversion refuses.
    pub fn decode(&self, event_type: &str, payload: &[u8]) -> Result<Option<E>, DecodeError> {
        self.by_type
            .get(event_type)
            .map(|decode| decode(event_type, payload))
            .transpose()
    }
}

/// What a domain error means at the API: every aggregate's error says its own status, so
/// offices keep no `to_status` matches.
pub trait ErrorStatus {
    fn api_error(&self) -> ApiError;
}

/// The error of an aggregate that refuses no command (every command is valid in every
/// state, at worst a no-op).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NeverRefused {}

impl ErrorStatus for NeverRefused {
    fn api_error(&self) -> ApiError {
        match *self {}
    }
}

/// One aggregate: a consistency boundary with its own stream (`<KIND>-<id>`).
pub trait Aggregate: Default + Send + Sync + Sized + 'static {
    /// The stream kind, e.g. `"case"`: streams are named `<KIND>-<id>`.
    const KIND: &'static str;
    type Command: Clone + Send + Sync;
    type Event: DomainEvent;
    type Error: std::error::Error + ErrorStatus + Send + Sync + 'static;

    /// Pure: what the command changes, given the current state, or why it cannot.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Pure: the state after a recorded event.
    fn apply(&mut self, recorded: &Recorded<Self::Event>);

    fn stream(id: Uuid) -> StreamId {
        StreamId::for_aggregate(Self::KIND, id)
    }
}

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Domain(E),
    #[error(transparent)]
    Store(#[from] svcops_eventstore::Error),
    #[error(transparent)]
    Corrupt(#[from] DecodeError),
    /// Other writers kept winning the race for the stream.
    #[error("{stream}: too many concurrent writers")]
    Contended { stream: String },
}

impl<E: ErrorStatus> From<ExecuteError<E>> for ApiError {
    fn from(error: ExecuteError<E>) -> Self {
        match error {
            ExecuteError::Domain(error) => error.api_error(),
            ExecuteError::Store(error) => error.into(),
            ExecuteError::Corrupt(error) => ApiError::Internal(error.to_string()),
            ExecuteError::Contended { stream } => {
                ApiError::Conflict(format!("{stream} is busy; retry"))
            }
        }
    }
}

impl<E: std::fmt::Display> ExecuteError<E> {
    /// For consumers: an outage or contention is retried, anything else dead-lettered after
    /// the consumer's bounded retries.
    pub fn into_handler_error(self) -> HandlerError {
        match self {
            ExecuteError::Store(error) if error.is_transient() => {
                HandlerError::Unavailable(error.to_string())
            }
            ExecuteError::Contended { .. } => HandlerError::Unavailable(self.to_string()),
            other => HandlerError::Failed(other.to_string()),
        }
    }
}

/// A command with what makes it idempotent.
#[derive(Debug, Clone, Default)]
pub struct Idempotency {
    /// The first command with this key wins; later ones get its result and append nothing.
    pub key: Option<String>,
    /// Fingerprint of the request behind the key: the same key with another request is
    /// refused (`INVALID_ARGUMENT` on `request_id`).
    pub request_hash: Option<Vec<u8>>,
}

impl Idempotency {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn key(key: impl Into<String>) -> Self {
        Self {
            key: Some(key.into()),
            request_hash: None,
        }
    }

    /// The idempotency of a caller's request: none without a request id; otherwise a key
    /// scoped to the caller (nobody can fetch another caller's result by key) and `scope`,
    /// with the request's hash so the same id with another request is refused.
    pub fn of_caller(
        context: &crate::events::CommandContext,
        scope: &str,
        request_id: Option<&str>,
        hash: impl FnOnce() -> Vec<u8>,
    ) -> Self {
        match request_id {
            Some(request_id) => Self::key(crate::events::idempotency_key(
                scope,
                &[&context.actor.subject, request_id],
            ))
            .with_request_hash(hash()),
            None => Self::none(),
        }
    }

    pub fn with_request_hash(mut self, hash: Vec<u8>) -> Self {
        self.request_hash = Some(hash);
        self
    }
}

/// What a command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed<A> {
    /// The stream the command's events are in: for a repeated idempotency key, the stream
    /// of the first command with that key (which may be another aggregate than asked for,
    /// e.g. a retried "open" that minted a new id).
    pub stream_id: StreamId,
    /// The aggregate's state after the command (or after the first command with the same
    /// idempotency key).
    pub state: A,
    pub version: u64,
    /// Whether this call appended events (not: a no-op decision, or a repeated key).
    pub appended: bool,
}

/// Loads, decides and appends for one aggregate type.
pub struct Executor<A> {
    store: Arc<dyn EventStore>,
    relay: Arc<Notify>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for Executor<A> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            relay: self.relay.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> Executor<A> {
    /// `relay` is woken after every append, so the outbox drains at once.
    pub fn new(store: Arc<dyn EventStore>, relay: Arc<Notify>) -> Self {
        Self {
            store,
            relay,
            aggregate: PhantomData,
        }
    }

    /// The aggregate's state and version (0 when the stream does not exist).
    pub async fn load(&self, id: Uuid) -> Result<(A, u64), ExecuteError<A::Error>> {
        self.load_stream(&A::stream(id)).await
    }

    /// The state as the append `first` left it: a retry answers with the first result, not
    /// with what later commands made of the aggregate since.
    async fn load_until(&self, first: &Appended) -> Result<(A, u64), ExecuteError<A::Error>> {
        let mut events =
            svcops_eventstore::read_whole_stream(self.store.as_ref(), &first.stream_id).await?;
        events.retain(|event| event.version <= first.last_version);
        Ok(fold(&events)?)
    }

    /// The first result of a request whose idempotency key was used already, before any
    /// work is done for it again (work outside the aggregate: claiming a customer's phone).
    /// `None` for a new key or no key; a key reused with another request is refused.
    pub async fn first_result(
        &self,
        idempotency: &Idempotency,
    ) -> Result<Option<Executed<A>>, ExecuteError<A::Error>> {
        let Some(key) = &idempotency.key else {
            return Ok(None);
        };
        let Some(first) = self
            .store
            .idempotent_retry(key, idempotency.request_hash.as_deref())
            .await?
        else {
            return Ok(None);
        };
        let (state, version) = self.load_until(&first).await?;
        Ok(Some(Executed {
            stream_id: first.stream_id,
            state,
            version,
            appended: false,
        }))
    }

    /// [`Executor::load`] by stream id.
    pub async fn load_stream(&self, stream: &StreamId) -> Result<(A, u64), ExecuteError<A::Error>> {
        let events = svcops_eventstore::read_whole_stream(self.store.as_ref(), stream).await?;
        Ok(fold(&events)?)
    }

    /// Carries out `command` on aggregate `id`: decide on the current state, append at its
    /// version, and on a lost race re-read and decide again (at most [`CONFLICT_RETRIES`]
    /// more times). Events carry `context`'s actor and causation and `case_id`.
    pub async fn execute(
        &self,
        id: Uuid,
        case_id: Option<Uuid>,
        context: &CommandContext,
        command: A::Command,
        idempotency: Idempotency,
    ) -> Result<Executed<A>, ExecuteError<A::Error>> {
        self.execute_on_case(id, |_| case_id, context, command, idempotency)
            .await
    }

    /// [`Executor::execute`] for an aggregate that knows its case (a contact): the case id
    /// of the events is read from the state the command is decided on, so the caller need
    /// not load the stream first to find it.
    pub async fn execute_on_case(
        &self,
        id: Uuid,
        case_of: impl Fn(&A) -> Option<Uuid>,
        context: &CommandContext,
        command: A::Command,
        idempotency: Idempotency,
    ) -> Result<Executed<A>, ExecuteError<A::Error>> {
        let stream = A::stream(id);
        for _ in 0..=CONFLICT_RETRIES {
            let (state, version) = self.load(id).await?;
            let case_id = case_of(&state);
            let decided = state.decide(command.clone());
            let nothing_new = !decided.as_ref().is_ok_and(|events| !events.is_empty());
            if nothing_new {
                // Refused or nothing to do, perhaps because this is a retry whose first
                // attempt made the state what it is now (resolving a case it resolved): a
                // key already used answers with its first result, or is refused if reused.
                if let Some(key) = &idempotency.key
                    && let Some(first) = self
                        .store
                        .idempotent_retry(key, idempotency.request_hash.as_deref())
                        .await?
                {
                    let (state, version) = self.load_until(&first).await?;
                    return Ok(Executed {
                        stream_id: first.stream_id,
                        state,
                        version,
                        appended: false,
                    });
                }
            }
            let events = decided.map_err(ExecuteError::Domain)?;
            if events.is_empty() {
                return Ok(Executed {
                    stream_id: stream,
                    state,
                    version,
                    appended: false,
                });
            }
            let new_events: Vec<_> = events
                .iter()
                .map(|event| {
                    let (event_type, payload) = event.encode();
                    context.new_event(case_id, event_type, payload)
                })
                .collect();
            let occurred: Vec<OffsetDateTime> = new_events
                .iter()
                .map(|event| event.metadata.occurred_at)
                .collect();
            let expected = if version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(version)
            };
            let mut append = Append::new(stream.clone(), expected, new_events);
            if let Some(key) = &idempotency.key {
                append = append.idempotency_key(key.clone());
            }
            if let Some(hash) = &idempotency.request_hash {
                append = append.request_hash(hash.clone());
            }
            match self.store.append(append).await {
                Ok(AppendOutcome::Appended(appended)) => {
                    self.relay.notify_one();
                    // Appended at the version it was decided on: the stream is now exactly
                    // the state plus these events, so they are applied here rather than the
                    // stream read back (one round trip less per command).
                    let mut state = state;
                    for ((event, occurred_at), version) in events
                        .into_iter()
                        .zip(occurred)
                        .zip(appended.first_version..)
                    {
                        state.apply(&Recorded {
                            event,
                            version,
                            occurred_at,
                            actor_subject: context.actor.subject.clone(),
                            actor_role: context.actor.role.as_str().to_owned(),
                        });
                    }
                    return Ok(Executed {
                        stream_id: appended.stream_id,
                        state,
                        version: appended.last_version,
                        appended: true,
                    });
                }
                Ok(AppendOutcome::Duplicate(first)) => {
                    let (state, version) = self.load_until(&first).await?;
                    return Ok(Executed {
                        stream_id: first.stream_id,
                        state,
                        version,
                        appended: false,
                    });
                }
                Err(svcops_eventstore::Error::Concurrency { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(ExecuteError::Contended {
            stream: stream.to_string(),
        })
    }
}

/// Folds stored events into an aggregate: its state and version. Events of other types in
/// the stream are skipped (a stream may carry records that are not the aggregate's).
pub fn fold<A: Aggregate>(events: &[RecordedEvent]) -> Result<(A, u64), DecodeError> {
    let mut state = A::default();
    for stored in events {
        if let Some(event) = A::Event::decode(&stored.event_type, &stored.payload)? {
            state.apply(&Recorded::new(event, stored));
        }
    }
    Ok((state, events.last().map_or(0, |event| event.version)))
}

/// Given/when/then for aggregates, with a fixed clock and actor (cqrs-es `TestFramework`).
#[cfg(any(test, feature = "testkit"))]
pub mod testkit {
    use super::{Aggregate, Recorded};
    use time::OffsetDateTime;

    /// The fixed instant every given event happened at.
    pub fn clock() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// The state after `events`, recorded at [`clock`] by `test-agent` (agent).
    pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
        let mut state = A::default();
        for (index, event) in events.into_iter().enumerate() {
            state.apply(&recorded(event, index as u64 + 1));
        }
        Given { state }
    }

    /// An event as recorded at version `version`, at [`clock`], by `test-agent`.
    pub fn recorded<E>(event: E, version: u64) -> Recorded<E> {
        Recorded {
            event,
            version,
            occurred_at: clock(),
            actor_subject: "test-agent".to_owned(),
            actor_role: "agent".to_owned(),
        }
    }

    pub struct Given<A> {
        pub state: A,
    }

    impl<A: Aggregate> Given<A> {
        pub fn when(self, command: A::Command) -> Then<A> {
            Then {
                result: self.state.decide(command),
            }
        }
    }

    pub struct Then<A: Aggregate> {
        result: Result<Vec<A::Event>, A::Error>,
    }

    impl<A: Aggregate> Then<A>
    where
        A::Event: std::fmt::Debug + PartialEq,
        A::Error: std::fmt::Debug + PartialEq,
    {
        #[track_caller]
        pub fn then_expect_events(self, expected: Vec<A::Event>) {
            match self.result {
                Ok(events) => assert_eq!(events, expected),
                Err(error) => panic!("expected events {expected:?}, got error {error:?}"),
            }
        }

        #[track_caller]
        pub fn then_expect_error(self, expected: A::Error) {
            match self.result {
                Ok(events) => panic!("expected error {expected:?}, got events {events:?}"),
                Err(error) => assert_eq!(error, expected),
            }
        }

        /// The decided events, for assertions beyond equality.
        #[track_caller]
        pub fn events(self) -> Vec<A::Event> {
            match self.result {
                Ok(events) => events,
                Err(error) => panic!("expected events, got error {error:?}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use svcops_proto::backoffice::v1::ClosedLoopItemOpened;
    use svcops_proto::frontoffice::v1::CaseFlagged;

    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Event {
        LoopOpened(String),
        Flagged(String),
    }

    fn decoders() -> EventDecoders<Event> {
        EventDecoders::new()
            .on::<ClosedLoopItemOpened>(|_, opened| Ok(Event::LoopOpened(opened.case_id)))
            .on::<CaseFlagged>(|event_type, flagged| {
                if flagged.detail.is_empty() {
                    Err(DecodeError::new(event_type, "no detail"))
                } else {
                    Ok(Event::Flagged(flagged.detail))
                }
            })
    }

    fn flagged(detail: &str) -> Vec<u8> {
        CaseFlagged {
            detail: detail.to_owned(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn each_registered_type_is_read_by_its_own_conversion() {
        let decoders = decoders();
        let opened = ClosedLoopItemOpened {
            case_id: "case-1".to_owned(),
        };
        assert_eq!(
            decoders.decode(&ClosedLoopItemOpened::full_name(), &opened.encode_to_vec()),
            Ok(Some(Event::LoopOpened("case-1".to_owned())))
        );
        assert_eq!(
            decoders.decode(&CaseFlagged::full_name(), &flagged("gave up")),
            Ok(Some(Event::Flagged("gave up".to_owned())))
        );
    }

    #[test]
    fn an_unknown_type_is_none_whatever_its_payload() {
        assert_eq!(
            decoders().decode("svcops.other.v1.Thing", &[0xff; 3]),
            Ok(None)
        );
    }

    #[test]
    fn a_payload_that_is_not_the_message_is_an_error_naming_the_type() {
        let event_type = CaseFlagged::full_name();
        // Field 3 (detail) as a length-delimited string that claims more bytes than follow.
        let error = decoders()
            .decode(&event_type, &[0x1a, 0x10, b'x'])
            .expect_err("a truncated payload does not decode");
        assert_eq!(error.event_type, event_type);
        assert!(!error.reason.is_empty());
    }

    #[test]
    fn what_the_conversion_refuses_is_its_error() {
        let event_type = CaseFlagged::full_name();
        assert_eq!(
            decoders().decode(&event_type, &flagged("")),
            Err(DecodeError::new(&event_type, "no detail"))
        );
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn registering_a_type_twice_is_refused_when_the_table_is_built() {
        let _ = decoders().on::<CaseFlagged>(|_, flagged| Ok(Event::Flagged(flagged.detail)));
    }
}
