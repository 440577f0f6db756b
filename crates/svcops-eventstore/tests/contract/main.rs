//! The event-store contract: one suite, run against every adapter.
//!
//! `svcops_testsuite::contract_suite!` generates one `#[tokio::test]` per case per adapter
//! (in the modules `postgres` and `sqlite`), so a failure names both the case and the
//! adapter.
//!
//! PostgreSQL: the server URL comes from `SVCOPS_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432`); every test creates its own database
//! `svcops_test_<uuid>` and drops it when the case passed. An unreachable server fails the
//! tests: they never skip.
//!
//! SQLite: every test opens a fresh file in its own temporary directory.

use std::sync::Arc;
use std::time::Duration;

use svcops_eventstore::{
    Append, AppendOutcome, Appended, Error, EventMetadata, EventStore, ExpectedVersion, NewEvent,
    PersonalDataSecret, Position, PostgresStore, RecordedEvent, SqliteStore, StreamId,
    personal_data_secret, read_whole_stream,
};
use svcops_testsuite::{ContractFixture, contract_suite};
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::Barrier;
use uuid::Uuid;

type Store = Arc<dyn EventStore>;
type Keys = Arc<dyn svcops_eventstore::PersonalDataKeys>;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// A fresh PostgreSQL database, dropped by `teardown`.
struct PostgresFixture {
    store: PostgresStore,
    url: String,
}

impl ContractFixture for PostgresFixture {
    type Port = Store;

    async fn new() -> Self {
        let server = std::env::var("SVCOPS_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
        let url = format!(
            "{}/svcops_test_{}",
            server.trim_end_matches('/'),
            Uuid::new_v4().simple()
        );
        let store = tokio::time::timeout(Duration::from_secs(60), PostgresStore::connect(&url, 16))
            .await
            .expect("timed out connecting to PostgreSQL (is it running? see DESIGN.md §7)")
            .unwrap_or_else(|error| {
                panic!(
                    "PostgreSQL at {server} is not reachable: {error} \
                     (set SVCOPS_TEST_DATABASE_URL; these tests never skip)"
                )
            });
        Self { store, url }
    }

    fn port(&self) -> Store {
        Arc::new(self.store.clone())
    }

    /// Drops the test database (only reached when the case passed; a failed case leaves its
    /// database behind for inspection).
    async fn teardown(self) {
        use sqlx::migrate::MigrateDatabase;
        self.store.pool().close().await;
        if let Err(error) = sqlx::Postgres::force_drop_database(&self.url).await {
            eprintln!("could not drop test database {}: {error}", self.url);
        }
    }
}

/// A fresh SQLite file in a temporary directory, removed with it.
struct SqliteFixture {
    store: SqliteStore,
    dir: tempfile::TempDir,
}

impl ContractFixture for SqliteFixture {
    type Port = Store;

    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let store = SqliteStore::open(&dir.path().join("events.db"))
            .await
            .expect("open the SQLite store");
        Self { store, dir }
    }

    fn port(&self) -> Store {
        Arc::new(self.store.clone())
    }

    async fn teardown(self) {}
}

contract_suite! {
    adapters: { postgres => PostgresFixture, sqlite => SqliteFixture },
    cases: [
        append_to_new_stream_round_trips_everything,
        empty_payload_round_trips,
        timestamps_keep_at_least_microseconds,
        read_stream_from_version_with_limit,
        no_stream_on_existing_stream_conflicts,
        exact_version_appends,
        exact_stale_version_conflicts,
        exact_version_ahead_conflicts_without_gap,
        any_appends_after_whatever_is_there,
        multi_event_append_is_atomic,
        appends_together_land_in_order_and_a_refused_one_leaves_no_trace,
        idempotency_key_returns_first_result,
        idempotency_key_is_not_used_up_by_a_failed_append,
        concurrent_appends_at_same_version_exactly_one_wins,
        a_burst_of_single_appends_each_lands_once_with_its_outbox_row,
        concurrent_appends_with_same_key_exactly_one_appended,
        concurrent_any_appends_all_land_without_gaps,
        read_all_in_position_order_with_limit,
        unpublished_returns_published_events_until_marked,
        checkpoints_load_save_overwrite,
        bad_input_is_invalid,
        ping_succeeds,
        an_append_retried_after_it_committed_finds_its_own_events,
        retries_racing_in_a_burst_find_their_own_events,
        the_same_key_with_a_different_request_is_refused,
        a_retry_is_recognised_before_it_is_decided_again,
    ],
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Now, truncated to whole microseconds (PostgreSQL keeps microseconds).
fn now_micros() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .expect("a truncated nanosecond is valid")
}

fn stream(kind: &str) -> StreamId {
    StreamId::for_aggregate(kind, Uuid::new_v4())
}

/// An event with every optional field set.
fn full_event(n: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: format!("svcops.test.v1.Happened{n}"),
        payload: (0..=255u8).cycle().skip(n).take(300 + n).collect(),
        metadata: EventMetadata {
            case_id: Some(Uuid::new_v4()),
            actor_subject: format!("user-{n} Zoë 🔧"),
            actor_role: "technician".to_owned(),
            correlation_id: Uuid::new_v4(),
            causation_id: Some(Uuid::new_v4()),
            traceparent: Some(format!(
                "00-{}-{:016x}-01",
                Uuid::new_v4().simple(),
                n as u64 + 1
            )),
            // A non-UTC offset: the instant must survive, whatever offset comes back.
            occurred_at: now_micros()
                .to_offset(UtcOffset::from_hms(2, 0, 0).expect("valid offset"))
                - time::Duration::seconds(n as i64),
        },
    }
}

/// An event with every optional field empty.
fn bare_event(n: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "svcops.test.v1.Bare".to_owned(),
        payload: vec![n as u8; 3],
        metadata: EventMetadata {
            case_id: None,
            actor_subject: "system".to_owned(),
            actor_role: "service".to_owned(),
            correlation_id: Uuid::new_v4(),
            causation_id: None,
            traceparent: None,
            occurred_at: now_micros(),
        },
    }
}

fn events(count: usize) -> Vec<NewEvent> {
    (0..count).map(bare_event).collect()
}

async fn append(store: &Store, append: Append) -> Result<AppendOutcome, Error> {
    store.append(append).await
}

async fn must_append(store: &Store, stream_id: &StreamId, expected: ExpectedVersion, count: usize) {
    let outcome = append(
        store,
        Append::new(stream_id.clone(), expected, events(count)),
    )
    .await
    .expect("setup append succeeds");
    assert!(
        !outcome.is_duplicate(),
        "setup append must not be a duplicate"
    );
}

async fn read(store: &Store, stream_id: &StreamId) -> Vec<RecordedEvent> {
    read_whole_stream(store.as_ref(), stream_id)
        .await
        .expect("read the stream")
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.version).collect()
}

fn positions(events: &[RecordedEvent]) -> Vec<Position> {
    events.iter().map(|event| event.position).collect()
}

fn event_ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|event| event.event_id).collect()
}

#[track_caller]
fn assert_concurrency(result: Result<AppendOutcome, Error>) {
    match result {
        Err(Error::Concurrency { .. }) => {}
        other => panic!("expected Error::Concurrency, got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Error>) {
    match result {
        Err(Error::Invalid(_)) => {}
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

#[track_caller]
fn assert_strictly_increasing(positions: &[Position]) {
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "positions not strictly increasing: {positions:?}"
    );
}

async fn all_events(store: &Store) -> Vec<RecordedEvent> {
    store.read_all(0, 100_000).await.expect("read_all")
}

// ---------------------------------------------------------------------------------------
// Cases, one file per topic (as quickwit splits `metastore_test_suite!`)
// ---------------------------------------------------------------------------------------

mod append;
mod idempotency;
mod keys;
mod outbox;

mod cases {
    pub use super::append::*;
    pub use super::idempotency::*;
    pub use super::outbox::*;
}
