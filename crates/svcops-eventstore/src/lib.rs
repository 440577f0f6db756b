//! svcops-eventstore: the append-only log every svcops service keeps its state in.
//!
//! One [`EventStore`] port, two adapters: [`PostgresStore`] (cluster mode) and
//! [`SqliteStore`] (embedded mode). Both pass the same contract suite (`tests/contract.rs`).
//!
//! Guarantees, whichever adapter:
//! - an append names the version it expects the stream to be at; a mismatch is
//!   [`Error::Concurrency`], never a silent overwrite or a gap;
//! - an append may carry an idempotency key: the first append with a key wins, any later one
//!   returns that first result and appends nothing (commands' `request_id`, and consumers'
//!   "processed event ids", both go through this one mechanism);
//! - every published append also lands in the outbox in the same statement/transaction, and
//!   [`EventStore::unpublished`] returns every committed, not yet published event whatever
//!   the order transactions committed in, so the relay can never skip one.

mod group_commit;
pub mod lease;
pub mod personal_data_secret;
mod postgres;
pub mod projection;
pub mod read_model;
mod sqlite;
mod types;

pub use personal_data_secret::PersonalDataSecret;
pub use postgres::{PostgresPersonalDataKeys, PostgresStore};
pub use sqlite::{SqlitePersonalDataKeys, SqliteStore};
pub use types::*;

use async_trait::async_trait;

/// Everything that can go wrong talking to the event store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stream was not at the expected version: someone else appended first.
    #[error("stream {stream_id} is not at the expected version {expected}")]
    Concurrency {
        stream_id: String,
        expected: ExpectedVersion,
    },
    /// The request itself is malformed (empty append, bad stream id, ...).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// The idempotency key was first used by a different request (its fingerprint differs).
    #[error("idempotency key {key:?} was already used by a different request")]
    IdempotencyKeyReused { key: String },
    /// The database refused the data itself (a data exception or a constraint, SQLSTATE
    /// classes 22 and 23): retrying the same append cannot succeed. Callers validate what
    /// reaches the store, so at the API this is an internal error, never the database's text.
    #[error("event store refused the data: {0}")]
    Rejected(sqlx::Error),
    /// The database could not be reached or failed; the caller may retry.
    #[error("event store unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("event store migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be read back (corruption or an incompatible schema).
    #[error("corrupt event row at position {position}: {reason}")]
    Corrupt { position: i64, reason: String },
    /// A read-model table or row is not what its projection expects (a bug or a schema
    /// changed by hand).
    #[error("read model: {reason}")]
    ReadModel { reason: String },
    /// A read model cannot answer yet: it is behind the position asked for, or a new
    /// version of it is still being built. Retrying later succeeds.
    #[error("read model {name} is not ready: {reason}")]
    ReadModelNotReady { name: &'static str, reason: String },
    /// The request does not fit what is there now (a rebuild while another version of the
    /// projection is live or building).
    #[error("{0}")]
    Precondition(String),
    /// A data key could not be wrapped or unwrapped with the personal data secret.
    #[error(transparent)]
    PersonalData(#[from] personal_data_secret::Error),
}

impl Error {
    /// Whether retrying the same call later may succeed (the store was unreachable or busy),
    /// as opposed to a refusal that will repeat whatever the retries.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::ReadModelNotReady { .. })
    }
}

impl From<sqlx::Error> for Error {
    /// Sorts database errors by whose fault they are: the data's (refused for good) or the
    /// database's (unreachable, restarting, overloaded: an outage to wait out).
    fn from(error: sqlx::Error) -> Self {
        let refused = match &error {
            sqlx::Error::Database(database) => {
                use sqlx::error::ErrorKind;
                let constraint = !matches!(database.kind(), ErrorKind::Other);
                // PostgreSQL: SQLSTATE class 22 (data exception: bad encoding, NUL, out of
                // range …). SQLite: SQLITE_TOOBIG (18), SQLITE_MISMATCH (20), SQLITE_RANGE
                // (25), as the primary code of a possibly extended result code.
                let data = match database.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                    Some(sqlite) => sqlx::error::DatabaseError::code(sqlite)
                        .and_then(|code| code.parse::<i32>().ok())
                        .is_some_and(|code| matches!(code & 0xff, 18 | 20 | 25)),
                    None => database
                        .code()
                        .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
                };
                constraint || data
            }
            // A value that cannot be encoded at all is the data's fault; a type missing from
            // the database (`TypeNotFound`) is a deployment's, so it stays an outage.
            sqlx::Error::Encode(_) => true,
            _ => false,
        };
        if refused {
            Self::Rejected(error)
        } else {
            Self::Unavailable(error)
        }
    }
}

/// The port: what services need from an event store.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends events to one stream atomically, checking the expected version and the
    /// idempotency key.
    async fn append(&self, append: Append) -> Result<AppendOutcome, Error>;

    /// Appends several, in order, each on its own terms (one refused leaves no trace and the
    /// others go on): one outcome per append. An adapter may write them in one transaction
    /// (SQLite does, so they share one commit); the default appends them one by one.
    async fn append_all(&self, appends: Vec<Append>) -> Vec<Result<AppendOutcome, Error>> {
        let mut outcomes = Vec::with_capacity(appends.len());
        for append in appends {
            outcomes.push(self.append(append).await);
        }
        outcomes
    }

    /// Reads a stream in version order, starting at `from_version` (1 = the first event).
    async fn read_stream(
        &self,
        stream_id: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error>;

    /// Reads committed events with a position greater than `after`, in position order.
    ///
    /// Meant for rebuilding read models from the whole log. Under concurrent writers on
    /// PostgreSQL a later call can still return a position lower than one already seen
    /// (transactions commit out of position order): tail the log below a settled horizon
    /// ([`EventStore::log_snapshot`], `projection::Horizon`) or with
    /// [`EventStore::unpublished`].
    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, Error>;

    /// The position of the newest committed event (0 for an empty log). A caller's own
    /// committed write is at or below it.
    async fn head(&self) -> Result<Position, Error>;

    /// The head, and the writers in progress as of the same instant (PostgreSQL transaction
    /// ids; none on SQLite, whose one writer always writes above the head). What
    /// `projection::Horizon` needs to tell which positions are settled.
    async fn log_snapshot(&self) -> Result<LogSnapshot, Error>;

    /// Committed events not yet marked published, in position order.
    async fn unpublished(&self, limit: usize) -> Result<Vec<RecordedEvent>, Error>;

    /// Marks events published (removes them from the outbox).
    async fn mark_published(&self, positions: &[Position]) -> Result<(), Error>;

    /// The stored position of a named checkpoint.
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, Error>;

    /// Stores a named checkpoint.
    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), Error>;

    /// The first result of the append that used `key`, if any did.
    async fn idempotent_result(&self, key: &str) -> Result<Option<Appended>, Error>;

    /// A retry's check before it is decided again: the first result of the append that used
    /// `key`, if any did, or [`Error::IdempotencyKeyReused`] when that append was asked with
    /// another `request_hash` (as an append with the key would be refused).
    async fn idempotent_retry(
        &self,
        key: &str,
        request_hash: Option<&[u8]>,
    ) -> Result<Option<Appended>, Error>;

    /// Cheap reachability check for health reporting.
    async fn ping(&self) -> Result<(), Error>;
}

/// What is known of a data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    Active(Vec<u8>),
    /// The subject was erased: the key is gone for good.
    Erased,
    Unknown,
}

impl KeyState {
    /// From the `wrapped_key` column of a looked-up row: no row, an erased (NULL) key, or a
    /// key, which is unwrapped.
    pub(crate) fn from_column(
        key_id: uuid::Uuid,
        column: Option<Option<Vec<u8>>>,
        secret: &PersonalDataSecret,
    ) -> Result<Self, Error> {
        Ok(match column {
            None => KeyState::Unknown,
            Some(None) => KeyState::Erased,
            Some(Some(wrapped)) => KeyState::Active(secret.unwrap_key(key_id, &wrapped)?),
        })
    }

    /// The state of each of `key_ids` from the rows found (`wrapped_key` by key id).
    pub(crate) fn of_each(
        key_ids: &[uuid::Uuid],
        found: &std::collections::HashMap<uuid::Uuid, Option<Vec<u8>>>,
        secret: &PersonalDataSecret,
    ) -> Result<std::collections::HashMap<uuid::Uuid, KeyState>, Error> {
        key_ids
            .iter()
            .map(|key_id| {
                let state = Self::from_column(*key_id, found.get(key_id).cloned(), secret)?;
                Ok((*key_id, state))
            })
            .collect()
    }
}

/// The key a subject found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKey {
    pub key_id: uuid::Uuid,
    pub key: Vec<u8>,
    /// Whether this call made it (the subject had none).
    pub created: bool,
}

/// What became of adding a subject to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectClaim {
    /// The subject finds this key now; this call made it so.
    Claimed,
    /// The subject found this key already.
    AlreadyHeld,
    /// Another key holds the subject.
    HeldBy(uuid::Uuid),
    /// The key is erased or was never made: nothing may find it.
    NoKey,
}

impl SubjectClaim {
    /// From the key the subject finds after an attempt to add it to `key_id`.
    pub(crate) fn of(key_id: uuid::Uuid, holder: Option<uuid::Uuid>, inserted: bool) -> Self {
        match holder {
            Some(holder) if holder == key_id && inserted => SubjectClaim::Claimed,
            Some(holder) if holder == key_id => SubjectClaim::AlreadyHeld,
            Some(holder) => SubjectClaim::HeldBy(holder),
            None => SubjectClaim::NoKey,
        }
    }
}

/// Data keys for personal data (crypto-shredding): kept beside the log, mutable, erasable.
///
/// Adapters store a keyed hash of the subject and the key wrapped with the personal data
/// secret ([`PersonalDataSecret`]), never either in plain form.
#[async_trait]
pub trait PersonalDataKeys: Send + Sync + 'static {
    /// The key of `subject`, created with `new_key` on first use (the first caller's key
    /// wins a race). A subject erased before gets a new key.
    async fn key_for_subject(&self, subject: &str, new_key: &[u8]) -> Result<SubjectKey, Error>;

    /// Adds `subject` to the subjects that find key `key_id` (a customer's second phone),
    /// unless another key holds it already.
    async fn add_subject(&self, key_id: uuid::Uuid, subject: &str) -> Result<SubjectClaim, Error>;

    /// Takes `subject` off key `key_id` (a claim whose write failed after it); returns
    /// whether it was there. Another key's subject is left alone.
    async fn remove_subject(&self, key_id: uuid::Uuid, subject: &str) -> Result<bool, Error>;

    async fn key(&self, key_id: uuid::Uuid) -> Result<KeyState, Error>;

    /// The keys of many ids at once (a page of cases), in one round trip; an id with no key
    /// is `Unknown`.
    async fn keys(
        &self,
        key_ids: &[uuid::Uuid],
    ) -> Result<std::collections::HashMap<uuid::Uuid, KeyState>, Error>;

    /// The id of the subject's current key, without creating one; `None` if it has none
    /// (never had, or it was destroyed).
    async fn subject_key_id(&self, subject: &str) -> Result<Option<uuid::Uuid>, Error>;

    /// Destroys a key for good, and with it the link to its subject. Returns whether the
    /// key was still there, so destroying twice is harmless.
    async fn destroy_key(&self, key_id: uuid::Uuid) -> Result<bool, Error>;
}

/// Reads a whole stream (helper over [`EventStore::read_stream`]).
pub async fn read_whole_stream(
    store: &dyn EventStore,
    stream_id: &StreamId,
) -> Result<Vec<RecordedEvent>, Error> {
    const PAGE: usize = 500;
    let mut events = Vec::new();
    loop {
        let from = events.len() as u64 + 1;
        let page = store.read_stream(stream_id, from, PAGE).await?;
        let done = page.len() < PAGE;
        events.extend(page);
        if done {
            return Ok(events);
        }
    }
}
