//! The event-store contract: one suite, run against every adapter.
//!
//! `contract_suite!` generates one `#[tokio::test]` per case per adapter (in the modules
//! `postgres` and `sqlite`), so a failure names both the case and the adapter.
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

impl PostgresFixture {
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

    fn store(&self) -> Store {
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

impl SqliteFixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let store = SqliteStore::open(&dir.path().join("events.db"))
            .await
            .expect("open the SQLite store");
        Self { store, dir }
    }

    fn store(&self) -> Store {
        Arc::new(self.store.clone())
    }

    async fn teardown(self) {}
}

/// Generates `postgres::<case>` and `sqlite::<case>` tests for every case in `cases`.
macro_rules! contract_suite {
    ($($case:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let fixture = super::PostgresFixture::new().await;
                    super::cases::$case(fixture.store()).await;
                    fixture.teardown().await;
                }
            )+
        }

        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let fixture = super::SqliteFixture::new().await;
                    super::cases::$case(fixture.store()).await;
                    fixture.teardown().await;
                }
            )+
        }
    };
}

contract_suite!(
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
);

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
// Cases
// ---------------------------------------------------------------------------------------

mod cases {
    use super::*;

    pub async fn append_to_new_stream_round_trips_everything(store: Store) {
        let stream_id = stream("case");
        let mut odd_offset = full_event(3);
        // Offsets may have seconds (historical zones): the instant must still round-trip.
        odd_offset.metadata.occurred_at = odd_offset
            .metadata
            .occurred_at
            .to_offset(UtcOffset::from_hms(-3, -25, -52).expect("valid offset"));
        let new_events = vec![full_event(1), bare_event(2), odd_offset];
        let before = OffsetDateTime::now_utc() - time::Duration::minutes(1);

        let outcome = append(
            &store,
            Append::new(
                stream_id.clone(),
                ExpectedVersion::NoStream,
                new_events.clone(),
            ),
        )
        .await
        .expect("append to a new stream");
        assert_eq!(
            outcome,
            AppendOutcome::Appended(Appended {
                stream_id: stream_id.clone(),
                first_version: 1,
                last_version: 3,
            })
        );

        let after = OffsetDateTime::now_utc() + time::Duration::minutes(1);
        let recorded = read(&store, &stream_id).await;
        assert_eq!(versions(&recorded), vec![1, 2, 3]);
        assert_strictly_increasing(&positions(&recorded));
        for (stored, sent) in recorded.iter().zip(&new_events) {
            assert!(stored.position > 0);
            assert_eq!(stored.stream_id, stream_id);
            assert_eq!(stored.event_id, sent.event_id);
            assert_eq!(stored.event_type, sent.event_type);
            assert_eq!(stored.payload, sent.payload);
            // EventMetadata's equality compares occurred_at as an instant, to the nanosecond;
            // the test timestamps have no digits below microseconds.
            assert_eq!(stored.metadata, sent.metadata);
            assert_eq!(
                stored.metadata.occurred_at.unix_timestamp_nanos(),
                sent.metadata.occurred_at.unix_timestamp_nanos()
            );
            assert!(
                stored.recorded_at > before && stored.recorded_at < after,
                "recorded_at {} not around now",
                stored.recorded_at
            );
        }

        // An unknown stream reads as empty.
        assert!(read(&store, &stream("case")).await.is_empty());
    }

    pub async fn empty_payload_round_trips(store: Store) {
        // A protobuf message with only default fields encodes to zero bytes.
        let stream_id = stream("case");
        let mut event = bare_event(0);
        event.payload = Vec::new();
        append(
            &store,
            Append::new(
                stream_id.clone(),
                ExpectedVersion::NoStream,
                vec![event.clone()],
            ),
        )
        .await
        .expect("append an event with an empty payload");
        let recorded = read(&store, &stream_id).await;
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].payload, Vec::<u8>::new());
        assert_eq!(recorded[0].event_id, event.event_id);
    }

    pub async fn timestamps_keep_at_least_microseconds(store: Store) {
        let stream_id = stream("case");
        let mut event = bare_event(0);
        let base = now_micros();
        event.metadata.occurred_at = base
            .replace_nanosecond(base.nanosecond() + 789)
            .expect("valid nanosecond");
        append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::NoStream, vec![event]),
        )
        .await
        .expect("append");
        let recorded = read(&store, &stream_id).await;
        let stored = recorded[0].metadata.occurred_at;
        // PostgreSQL keeps microseconds, SQLite more: both agree to the microsecond.
        assert_eq!(
            stored.unix_timestamp_nanos() / 1_000,
            base.unix_timestamp_nanos() / 1_000
        );
    }

    pub async fn read_stream_from_version_with_limit(store: Store) {
        let stream_id = stream("case");
        must_append(&store, &stream_id, ExpectedVersion::NoStream, 5).await;
        must_append(&store, &stream("other"), ExpectedVersion::NoStream, 2).await;
        let page = store
            .read_stream(&stream_id, 2, 3)
            .await
            .expect("read a page");
        assert_eq!(versions(&page), vec![2, 3, 4]);
        let rest = store
            .read_stream(&stream_id, 5, 10)
            .await
            .expect("read the rest");
        assert_eq!(versions(&rest), vec![5]);
        for from in [6, u64::MAX] {
            let beyond = store
                .read_stream(&stream_id, from, 10)
                .await
                .expect("read beyond the end");
            assert!(beyond.is_empty(), "from version {from}");
        }
        let none = store
            .read_stream(&stream_id, 1, 0)
            .await
            .expect("read zero events");
        assert!(none.is_empty());
        let unbounded = store
            .read_stream(&stream_id, 1, usize::MAX)
            .await
            .expect("read with an unbounded limit");
        assert_eq!(versions(&unbounded), vec![1, 2, 3, 4, 5]);
    }

    pub async fn no_stream_on_existing_stream_conflicts(store: Store) {
        let stream_id = stream("case");
        must_append(&store, &stream_id, ExpectedVersion::NoStream, 1).await;
        for count in [1, 2] {
            let result = append(
                &store,
                Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(count)),
            )
            .await;
            assert_concurrency(result);
            let result = append(
                &store,
                Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(count))
                    .local_only(),
            )
            .await;
            assert_concurrency(result);
        }
        assert_eq!(versions(&read(&store, &stream_id).await), vec![1]);
    }

    pub async fn exact_version_appends(store: Store) {
        let stream_id = stream("case");
        must_append(&store, &stream_id, ExpectedVersion::NoStream, 2).await;
        let outcome = append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::Exact(2), events(3)),
        )
        .await
        .expect("append at the right version");
        assert_eq!(
            outcome,
            AppendOutcome::Appended(Appended {
                stream_id: stream_id.clone(),
                first_version: 3,
                last_version: 5,
            })
        );
        must_append(&store, &stream_id, ExpectedVersion::Exact(5), 1).await;
        assert_eq!(
            versions(&read(&store, &stream_id).await),
            vec![1, 2, 3, 4, 5, 6]
        );
    }

    pub async fn exact_stale_version_conflicts(store: Store) {
        let stream_id = stream("case");
        must_append(&store, &stream_id, ExpectedVersion::NoStream, 3).await;
        for stale in 1..=2 {
            for count in [1, 3] {
                let result = append(
                    &store,
                    Append::new(
                        stream_id.clone(),
                        ExpectedVersion::Exact(stale),
                        events(count),
                    ),
                )
                .await;
                assert_concurrency(result);
            }
        }
        let recorded = read(&store, &stream_id).await;
        assert_eq!(versions(&recorded), vec![1, 2, 3]);
    }

    pub async fn exact_version_ahead_conflicts_without_gap(store: Store) {
        let stream_id = stream("case");
        must_append(&store, &stream_id, ExpectedVersion::NoStream, 1).await;
        // Single-event and multi-event appends (they may take different paths).
        for ahead in [2, 3, 100, i64::MAX as u64, u64::MAX] {
            for count in [1, 2] {
                let result = append(
                    &store,
                    Append::new(
                        stream_id.clone(),
                        ExpectedVersion::Exact(ahead),
                        events(count),
                    ),
                )
                .await;
                assert_concurrency(result);
            }
        }
        // On a stream that does not exist at all.
        let missing = stream("case");
        let result = append(
            &store,
            Append::new(missing.clone(), ExpectedVersion::Exact(1), events(1)),
        )
        .await;
        assert_concurrency(result);
        assert!(read(&store, &missing).await.is_empty());
        assert_eq!(versions(&read(&store, &stream_id).await), vec![1]);
        assert_eq!(all_events(&store).await.len(), 1);
    }

    pub async fn any_appends_after_whatever_is_there(store: Store) {
        let stream_id = stream("case");
        let outcome = append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::Any, events(2)),
        )
        .await
        .expect("Any on a new stream");
        assert_eq!(
            (
                outcome.appended().first_version,
                outcome.appended().last_version
            ),
            (1, 2)
        );
        let outcome = append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::Any, events(1)),
        )
        .await
        .expect("Any on an existing stream");
        assert_eq!(
            (
                outcome.appended().first_version,
                outcome.appended().last_version
            ),
            (3, 3)
        );
        assert_eq!(versions(&read(&store, &stream_id).await), vec![1, 2, 3]);
    }

    pub async fn multi_event_append_is_atomic(store: Store) {
        let stream_id = stream("case");
        must_append(&store, &stream_id, ExpectedVersion::NoStream, 2).await;
        // Would write versions 2..=5: version 2 exists, so nothing at all may land.
        let batch = events(4);
        let result = append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::Exact(1), batch.clone()),
        )
        .await;
        assert_concurrency(result);
        let recorded = read(&store, &stream_id).await;
        assert_eq!(versions(&recorded), vec![1, 2]);
        let all = all_events(&store).await;
        assert_eq!(all.len(), 2);
        assert!(
            all.iter()
                .all(|event| batch.iter().all(|new| new.event_id != event.event_id))
        );
        assert_eq!(store.unpublished(100).await.expect("unpublished").len(), 2);

        // And a good batch lands whole, in order.
        let batch = events(4);
        let outcome = append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::Exact(2), batch.clone()),
        )
        .await
        .expect("a good batch");
        assert_eq!(
            (
                outcome.appended().first_version,
                outcome.appended().last_version
            ),
            (3, 6)
        );
        let recorded = read(&store, &stream_id).await;
        assert_eq!(versions(&recorded), vec![1, 2, 3, 4, 5, 6]);
        let batch_ids: Vec<Uuid> = batch.iter().map(|event| event.event_id).collect();
        assert_eq!(event_ids(&recorded)[2..], batch_ids);
        assert_strictly_increasing(&positions(&recorded));
    }

    pub async fn idempotency_key_returns_first_result(store: Store) {
        let stream_id = stream("case");
        let key = format!("request-{}", Uuid::new_v4());
        let first = append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(2))
                .idempotency_key(&key),
        )
        .await
        .expect("first append with a key");
        let expected = Appended {
            stream_id: stream_id.clone(),
            first_version: 1,
            last_version: 2,
        };
        assert_eq!(first, AppendOutcome::Appended(expected.clone()));
        assert_eq!(
            store
                .idempotent_result(&key)
                .await
                .expect("look up the key"),
            Some(expected.clone())
        );
        assert_eq!(
            store
                .idempotent_result("request-never-used")
                .await
                .expect("look up an unknown key"),
            None
        );

        // The same request again, the same key with another expected version (stale, right
        // and ahead), and the same key on another stream: all return the first result.
        let other_stream = stream("case");
        let retries = vec![
            Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(2)),
            Append::new(stream_id.clone(), ExpectedVersion::Exact(1), events(1)),
            Append::new(stream_id.clone(), ExpectedVersion::Exact(2), events(1)),
            Append::new(stream_id.clone(), ExpectedVersion::Exact(7), events(1)),
            Append::new(stream_id.clone(), ExpectedVersion::Any, events(3)),
            Append::new(other_stream.clone(), ExpectedVersion::NoStream, events(1)),
            Append::new(other_stream.clone(), ExpectedVersion::Any, events(1)).local_only(),
        ];
        for retry in retries {
            let description = format!("{} {:?}", retry.stream_id, retry.expected);
            let outcome = append(&store, retry.idempotency_key(&key))
                .await
                .unwrap_or_else(|error| panic!("retry {description} failed: {error}"));
            assert_eq!(
                outcome,
                AppendOutcome::Duplicate(expected.clone()),
                "retry {description}"
            );
            assert!(outcome.is_duplicate());
        }
        assert_eq!(versions(&read(&store, &stream_id).await), vec![1, 2]);
        assert!(read(&store, &other_stream).await.is_empty());
        assert_eq!(all_events(&store).await.len(), 2);
        assert_eq!(store.unpublished(100).await.expect("unpublished").len(), 2);

        // Another key appends normally.
        let outcome = append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::Exact(2), events(1))
                .idempotency_key(format!("request-{}", Uuid::new_v4())),
        )
        .await
        .expect("append with a fresh key");
        assert!(!outcome.is_duplicate());
        assert_eq!(outcome.appended().first_version, 3);
    }

    pub async fn idempotency_key_is_not_used_up_by_a_failed_append(store: Store) {
        let stream_id = stream("case");
        must_append(&store, &stream_id, ExpectedVersion::NoStream, 1).await;
        let key = format!("request-{}", Uuid::new_v4());
        // Rejected appends (version ahead, stale, NoStream on an existing stream) must not
        // record the key: the command was not carried out, and its corrected retry must run.
        for expected in [
            ExpectedVersion::Exact(3),
            ExpectedVersion::Exact(5),
            ExpectedVersion::NoStream,
        ] {
            let result = append(
                &store,
                Append::new(stream_id.clone(), expected, events(1)).idempotency_key(&key),
            )
            .await;
            assert_concurrency(result);
        }
        let missing = stream("case");
        let result = append(
            &store,
            Append::new(missing.clone(), ExpectedVersion::Exact(2), events(1))
                .idempotency_key(&key),
        )
        .await;
        assert_concurrency(result);
        assert_eq!(
            store
                .idempotent_result(&key)
                .await
                .expect("look up the key"),
            None,
            "a rejected append must not record its key"
        );

        let outcome = append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::Exact(1), events(1))
                .idempotency_key(&key),
        )
        .await
        .expect("the corrected retry");
        assert_eq!(
            outcome,
            AppendOutcome::Appended(Appended {
                stream_id: stream_id.clone(),
                first_version: 2,
                last_version: 2,
            })
        );
        assert_eq!(versions(&read(&store, &stream_id).await), vec![1, 2]);
        assert!(read(&store, &missing).await.is_empty());
    }

    /// Hundreds of concurrent one-event appends (the PostgreSQL adapter commits them in
    /// groups): each independent append lands, exactly one of those racing for the same
    /// stream does, and only published ones reach the outbox.
    pub async fn a_burst_of_single_appends_each_lands_once_with_its_outbox_row(store: Store) {
        const INDEPENDENT: usize = 300;
        const RACERS: usize = 40;
        let contested = stream("contested");
        let mut tasks = Vec::new();
        for index in 0..INDEPENDENT + RACERS {
            let store = store.clone();
            let contested = contested.clone();
            tasks.push(tokio::spawn(async move {
                let (stream_id, publish) = if index < INDEPENDENT {
                    (stream("burst"), index % 3 != 0)
                } else {
                    (contested, true)
                };
                let mut request =
                    Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(1));
                if !publish {
                    request = request.local_only();
                }
                (index, stream_id, publish, store.append(request).await)
            }));
        }
        let mut contested_wins = 0;
        let mut published_streams = std::collections::HashSet::new();
        for task in tasks {
            let (index, stream_id, publish, result) = task.await.expect("task");
            if index < INDEPENDENT {
                let outcome = result.expect("an independent append lands");
                assert_eq!(outcome.appended().first_version, 1);
                if publish {
                    published_streams.insert(stream_id.to_string());
                }
            } else {
                match result {
                    Ok(_) => contested_wins += 1,
                    Err(Error::Concurrency { .. }) => {}
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
        }
        assert_eq!(
            contested_wins, 1,
            "exactly one racer wins the contested stream"
        );
        assert_eq!(versions(&read(&store, &contested).await), [1]);
        let unpublished = store.unpublished(10_000).await.expect("unpublished");
        let outbox_streams: std::collections::HashSet<String> = unpublished
            .iter()
            .map(|event| event.stream_id.to_string())
            .filter(|stream_id| stream_id.starts_with("burst-"))
            .collect();
        assert_eq!(
            outbox_streams, published_streams,
            "published appends, and only those, are in the outbox"
        );
        let positions: std::collections::HashSet<_> =
            unpublished.iter().map(|event| event.position).collect();
        assert_eq!(positions.len(), unpublished.len(), "positions are unique");
    }

    pub async fn concurrent_appends_at_same_version_exactly_one_wins(store: Store) {
        for round in 0..20usize {
            let tasks = 2 + round % 7;
            let stream_id = stream("race");
            // Even rounds race on a new stream (NoStream), odd ones on an existing one.
            let expected = if round % 2 == 0 {
                ExpectedVersion::NoStream
            } else {
                must_append(&store, &stream_id, ExpectedVersion::NoStream, 1).await;
                ExpectedVersion::Exact(1)
            };
            let base = if round % 2 == 0 { 0 } else { 1 };
            let barrier = Arc::new(Barrier::new(tasks));
            let handles: Vec<_> = (0..tasks)
                .map(|task| {
                    let store = store.clone();
                    let stream_id = stream_id.clone();
                    let barrier = barrier.clone();
                    // Different batch sizes, so a winner is recognisable by its length.
                    let batch = events(1 + task % 3);
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let ids: Vec<Uuid> = batch.iter().map(|event| event.event_id).collect();
                        let result = store.append(Append::new(stream_id, expected, batch)).await;
                        (ids, result)
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for handle in handles {
                let (ids, result) = handle.await.expect("append task panicked");
                match result {
                    Ok(AppendOutcome::Appended(appended)) => winners.push((ids, appended)),
                    Err(Error::Concurrency { .. }) => {}
                    other => panic!("round {round}: unexpected result {other:?}"),
                }
            }
            assert_eq!(
                winners.len(),
                1,
                "round {round} with {tasks} tasks: exactly one append must win"
            );
            let (winner_ids, appended) = &winners[0];
            assert_eq!(appended.first_version, base + 1);
            assert_eq!(appended.last_version, base + winner_ids.len() as u64);
            let recorded = read(&store, &stream_id).await;
            let expected_versions: Vec<u64> = (1..=base + winner_ids.len() as u64).collect();
            assert_eq!(versions(&recorded), expected_versions, "round {round}");
            assert_eq!(
                &event_ids(&recorded)[base as usize..],
                winner_ids.as_slice()
            );
        }
    }

    pub async fn concurrent_appends_with_same_key_exactly_one_appended(store: Store) {
        for round in 0..20usize {
            let tasks = 2 + round % 7;
            let key = format!("request-{}", Uuid::new_v4());
            let shared_stream = stream("race");
            let barrier = Arc::new(Barrier::new(tasks));
            let handles: Vec<_> = (0..tasks)
                .map(|task| {
                    let store = store.clone();
                    let barrier = barrier.clone();
                    let key = key.clone();
                    // Half the rounds on one stream, the others each on its own stream, with
                    // a mix of expected versions.
                    let (stream_id, expected) = if round % 2 == 0 {
                        let expected = if task % 2 == 0 {
                            ExpectedVersion::NoStream
                        } else {
                            ExpectedVersion::Any
                        };
                        (shared_stream.clone(), expected)
                    } else {
                        (stream("race"), ExpectedVersion::NoStream)
                    };
                    tokio::spawn(async move {
                        barrier.wait().await;
                        store
                            .append(
                                Append::new(stream_id, expected, events(1 + task % 2))
                                    .idempotency_key(key),
                            )
                            .await
                    })
                })
                .collect();
            let mut appended = Vec::new();
            let mut duplicates = Vec::new();
            for handle in handles {
                match handle.await.expect("append task panicked") {
                    Ok(AppendOutcome::Appended(result)) => appended.push(result),
                    Ok(AppendOutcome::Duplicate(result)) => duplicates.push(result),
                    other => panic!("round {round}: unexpected result {other:?}"),
                }
            }
            assert_eq!(appended.len(), 1, "round {round}: exactly one Appended");
            assert_eq!(
                duplicates.len(),
                tasks - 1,
                "round {round}: the rest Duplicate"
            );
            assert!(
                duplicates.iter().all(|duplicate| duplicate == &appended[0]),
                "round {round}: duplicates must return the first result"
            );
            let winner = &appended[0];
            let recorded = read(&store, &winner.stream_id).await;
            let expected_versions: Vec<u64> =
                (winner.first_version..=winner.last_version).collect();
            assert_eq!(versions(&recorded), expected_versions, "round {round}");
        }
        // Nothing but the winners was written anywhere.
        let total: u64 = all_events(&store).await.len() as u64;
        assert!(total <= 20 * 2, "too many events written: {total}");
    }

    pub async fn concurrent_any_appends_all_land_without_gaps(store: Store) {
        let stream_id = stream("race");
        let tasks = 8;
        let barrier = Arc::new(Barrier::new(tasks));
        // Batches of one and of two events (they may take different paths).
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let store = store.clone();
                let stream_id = stream_id.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .append(Append::new(
                            stream_id,
                            ExpectedVersion::Any,
                            events(1 + task % 2),
                        ))
                        .await
                })
            })
            .collect();
        let mut ranges = Vec::new();
        for handle in handles {
            let outcome = handle
                .await
                .expect("append task panicked")
                .expect("an Any append lands despite the race");
            ranges.push((
                outcome.appended().first_version,
                outcome.appended().last_version,
            ));
        }
        // The ranges tile 1..=total without overlap or gap.
        ranges.sort_unstable();
        let total: u64 = (0..tasks as u64).map(|task| 1 + task % 2).sum();
        let mut next = 1;
        for (first, last) in &ranges {
            assert_eq!(*first, next, "ranges {ranges:?}");
            assert!(last >= first);
            next = last + 1;
        }
        assert_eq!(next, total + 1, "ranges {ranges:?}");
        let recorded = read(&store, &stream_id).await;
        assert_eq!(versions(&recorded), (1..=total).collect::<Vec<_>>());
    }

    pub async fn read_all_in_position_order_with_limit(store: Store) {
        assert!(all_events(&store).await.is_empty());
        let mut appended_ids = Vec::new();
        for index in 0..5 {
            let stream_id = stream("log");
            let batch = events(1 + index % 2);
            appended_ids.extend(batch.iter().map(|event| event.event_id));
            let mut append_request = Append::new(stream_id, ExpectedVersion::NoStream, batch);
            if index == 3 {
                // read_all covers local-only appends too.
                append_request = append_request.local_only();
            }
            append(&store, append_request)
                .await
                .expect("append to the log");
        }
        let all = all_events(&store).await;
        assert_eq!(
            event_ids(&all),
            appended_ids,
            "append order is position order"
        );
        let all_positions = positions(&all);
        assert_strictly_increasing(&all_positions);

        let page = store.read_all(0, 3).await.expect("first page");
        assert_eq!(positions(&page), all_positions[..3]);
        let page = store
            .read_all(all_positions[1], 2)
            .await
            .expect("page after a position");
        assert_eq!(positions(&page), all_positions[2..4]);
        let rest = store
            .read_all(all_positions[5], 100)
            .await
            .expect("the tail");
        assert_eq!(positions(&rest), all_positions[6..]);
        let past_end = store
            .read_all(*all_positions.last().expect("events exist"), 100)
            .await
            .expect("past the end");
        assert!(past_end.is_empty());
        let unbounded = store.read_all(0, usize::MAX).await.expect("unbounded");
        assert_eq!(positions(&unbounded), all_positions);
    }

    pub async fn unpublished_returns_published_events_until_marked(store: Store) {
        assert!(store.unpublished(10).await.expect("unpublished").is_empty());
        let published_a = stream("a");
        let local = stream("local");
        let published_b = stream("b");
        must_append(&store, &published_a, ExpectedVersion::NoStream, 2).await;
        append(
            &store,
            Append::new(local.clone(), ExpectedVersion::NoStream, events(1)).local_only(),
        )
        .await
        .expect("local-only append of one event");
        append(
            &store,
            Append::new(local.clone(), ExpectedVersion::Exact(1), events(1)).local_only(),
        )
        .await
        .expect("local-only append at a version");
        must_append(&store, &published_b, ExpectedVersion::NoStream, 1).await;
        must_append(&store, &published_a, ExpectedVersion::Exact(2), 1).await;

        let pending = store.unpublished(100).await.expect("unpublished");
        assert_eq!(pending.len(), 4);
        assert_strictly_increasing(&positions(&pending));
        assert!(pending.iter().all(|event| event.stream_id != local));
        let streams: Vec<(&str, u64)> = pending
            .iter()
            .map(|event| (event.stream_id.as_str(), event.version))
            .collect();
        assert_eq!(
            streams,
            vec![
                (published_a.as_str(), 1),
                (published_a.as_str(), 2),
                (published_b.as_str(), 1),
                (published_a.as_str(), 3),
            ]
        );
        // The events come back whole.
        let from_log = all_events(&store).await;
        for event in &pending {
            assert!(
                from_log.contains(event),
                "unpublished event differs from the log"
            );
        }

        let limited = store.unpublished(2).await.expect("limited");
        assert_eq!(positions(&limited), positions(&pending)[..2]);

        store
            .mark_published(&positions(&limited))
            .await
            .expect("mark published");
        let rest = store.unpublished(100).await.expect("unpublished");
        assert_eq!(positions(&rest), positions(&pending)[2..]);

        // Marking nothing, or already-published positions, is harmless.
        store.mark_published(&[]).await.expect("mark nothing");
        store
            .mark_published(&positions(&limited))
            .await
            .expect("mark twice");
        assert_eq!(
            positions(&store.unpublished(100).await.expect("unpublished")),
            positions(&rest)
        );

        store
            .mark_published(&positions(&rest))
            .await
            .expect("mark the rest");
        assert!(
            store
                .unpublished(100)
                .await
                .expect("unpublished")
                .is_empty()
        );
        // Published events stay in the log.
        assert_eq!(all_events(&store).await.len(), 6);
    }

    pub async fn checkpoints_load_save_overwrite(store: Store) {
        assert_eq!(
            store.load_checkpoint("relay").await.expect("load missing"),
            None
        );
        store.save_checkpoint("relay", 42).await.expect("save");
        store
            .save_checkpoint("projector", 7)
            .await
            .expect("save another");
        assert_eq!(
            store.load_checkpoint("relay").await.expect("load"),
            Some(42)
        );
        store.save_checkpoint("relay", 43).await.expect("overwrite");
        assert_eq!(
            store.load_checkpoint("relay").await.expect("load"),
            Some(43)
        );
        store
            .save_checkpoint("relay", 10)
            .await
            .expect("overwrite backwards");
        assert_eq!(
            store.load_checkpoint("relay").await.expect("load"),
            Some(10)
        );
        assert_eq!(
            store.load_checkpoint("projector").await.expect("load"),
            Some(7)
        );
        assert_eq!(store.load_checkpoint("nobody").await.expect("load"), None);
    }

    pub async fn bad_input_is_invalid(store: Store) {
        let stream_id = stream("case");
        assert_invalid(
            append(
                &store,
                Append::new(stream_id.clone(), ExpectedVersion::NoStream, Vec::new()),
            )
            .await,
        );
        assert_invalid(
            append(
                &store,
                Append::new(stream_id.clone(), ExpectedVersion::Exact(0), events(1)),
            )
            .await,
        );
        assert_invalid(
            append(
                &store,
                Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(1))
                    .idempotency_key(""),
            )
            .await,
        );
        assert_invalid(
            append(
                &store,
                Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(1))
                    .idempotency_key("k".repeat(301)),
            )
            .await,
        );
        // Text the adapters would store differently (PostgreSQL refuses NUL, SQLite keeps it)
        // is refused alike, before it reaches either.
        assert_invalid(
            append(
                &store,
                Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(1))
                    .idempotency_key("request\0one"),
            )
            .await,
        );
        for corrupt in [
            |event: &mut NewEvent| event.metadata.actor_subject = "alice\0".into(),
            |event: &mut NewEvent| event.metadata.actor_role = "agent\n".into(),
            |event: &mut NewEvent| event.metadata.traceparent = Some("00-\0".into()),
            |event: &mut NewEvent| event.event_type = "svcops.\0".into(),
        ] {
            let mut event = bare_event(1);
            corrupt(&mut event);
            assert_invalid(
                append(
                    &store,
                    Append::new(stream_id.clone(), ExpectedVersion::NoStream, vec![event]),
                )
                .await,
            );
        }
        for bad in ["", "Case-1", "case 1", "case/1", "case-é", &"x".repeat(201)] {
            assert_invalid(StreamId::parse(bad));
        }
        assert!(StreamId::parse("case-0190abcd_x").is_ok());
        assert!(StreamId::parse("x".repeat(200)).is_ok());
        // Nothing was written by the rejected appends.
        assert!(read(&store, &stream_id).await.is_empty());
        assert!(all_events(&store).await.is_empty());
    }

    pub async fn ping_succeeds(store: Store) {
        store.ping().await.expect("ping");
    }

    /// An append whose commit went through but whose answer was lost is retried with the
    /// same events (the same ids): the retry reports where they are, whatever the caller
    /// expected, and writes nothing twice.
    pub async fn an_append_retried_after_it_committed_finds_its_own_events(store: Store) {
        let stream_id = stream("case");
        for (expected, count) in [
            (ExpectedVersion::NoStream, 1),
            (ExpectedVersion::Exact(1), 1),
            (ExpectedVersion::Exact(2), 3),
            (ExpectedVersion::Any, 1),
            (ExpectedVersion::Any, 2),
        ] {
            let request = Append::new(stream_id.clone(), expected, events(count));
            let first = append(&store, request.clone())
                .await
                .unwrap_or_else(|error| panic!("first attempt {expected:?}: {error}"));
            let retry = append(&store, request)
                .await
                .unwrap_or_else(|error| panic!("retry {expected:?}: {error}"));
            assert_eq!(
                retry, first,
                "the retry of {expected:?} reports the first write"
            );
        }
        let recorded = read(&store, &stream_id).await;
        assert_eq!(versions(&recorded), (1..=8).collect::<Vec<u64>>());
        assert_eq!(store.unpublished(100).await.expect("unpublished").len(), 8);

        // Another event at a taken version is still refused: only one's own events count.
        assert_concurrency(
            append(
                &store,
                Append::new(stream_id.clone(), ExpectedVersion::Exact(1), events(1)),
            )
            .await,
        );
    }

    /// Concurrent single-event retries (the PostgreSQL adapter writes them in groups) each
    /// find their own event.
    pub async fn retries_racing_in_a_burst_find_their_own_events(store: Store) {
        let requests: Vec<Append> = (0..64)
            .map(|n| {
                let expected = if n % 2 == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Any
                };
                Append::new(stream("case"), expected, events(1))
            })
            .collect();
        let burst = |requests: Vec<Append>| {
            let store = store.clone();
            async move {
                let tasks: Vec<_> = requests
                    .into_iter()
                    .map(|request| {
                        let store = store.clone();
                        tokio::spawn(async move { store.append(request).await })
                    })
                    .collect();
                let mut outcomes = Vec::new();
                for task in tasks {
                    outcomes.push(task.await.expect("task").expect("append"));
                }
                outcomes
            }
        };
        let first = burst(requests.clone()).await;
        let retried = burst(requests.clone()).await;
        assert_eq!(retried, first);
        assert_eq!(all_events(&store).await.len(), requests.len());
    }

    pub async fn the_same_key_with_a_different_request_is_refused(store: Store) {
        let stream_id = stream("case");
        let key = format!("request-{}", Uuid::new_v4());
        let first = append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(1))
                .idempotency_key(&key)
                .request_hash(b"open case: lamp flickers".to_vec()),
        )
        .await
        .expect("first append");
        let same = append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(1))
                .idempotency_key(&key)
                .request_hash(b"open case: lamp flickers".to_vec()),
        )
        .await
        .expect("the same request again");
        assert_eq!(same, AppendOutcome::Duplicate(first.appended().clone()));
        for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any] {
            match append(
                &store,
                Append::new(stream_id.clone(), expected, events(1))
                    .idempotency_key(&key)
                    .request_hash(b"open case: door bell broken".to_vec()),
            )
            .await
            {
                Err(Error::IdempotencyKeyReused { key: reused }) => assert_eq!(reused, key),
                other => panic!("expected IdempotencyKeyReused, got {other:?}"),
            }
        }
        assert_eq!(versions(&read(&store, &stream_id).await), vec![1]);
    }
}

/// The same for the personal-data key port. Its cases also look at the key table as stored,
/// through [`KeyFixture`].
macro_rules! keys_suite {
    ($($case:ident),+ $(,)?) => {
        mod postgres_keys {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let fixture = super::PostgresFixture::new().await;
                    super::key_cases::$case(&fixture).await;
                    fixture.teardown().await;
                }
            )+
        }

        mod sqlite_keys {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let fixture = super::SqliteFixture::new().await;
                    super::key_cases::$case(&fixture).await;
                    fixture.teardown().await;
                }
            )+
        }
    };
}

keys_suite!(
    a_subject_keeps_its_first_key,
    concurrent_first_uses_agree_on_one_key,
    erasure_destroys_the_key_for_good,
    the_key_table_holds_neither_subjects_nor_keys,
    keys_open_only_with_the_secret_they_were_stored_with,
    plain_rows_from_before_are_protected_at_start,
);

/// A fresh secret per test: never a real one.
fn test_secret() -> PersonalDataSecret {
    PersonalDataSecret::new(
        format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()).as_bytes(),
    )
    .expect("64 bytes is long enough")
}

/// One row of `personal_data_keys` as stored.
#[derive(Debug)]
struct KeyRow {
    key_id: Uuid,
    subject: Option<String>,
    key: Option<Vec<u8>>,
    subject_hash: Option<String>,
    wrapped_key: Option<Vec<u8>>,
}

const SELECT_KEY_ROWS: &str =
    "SELECT key_id, subject, key, subject_hash, wrapped_key FROM personal_data_keys";

fn key_row<R: sqlx::Row>(row: &R) -> KeyRow
where
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    KeyRow {
        key_id: row.get(0),
        subject: row.get(1),
        key: row.get(2),
        subject_hash: row.get(3),
        wrapped_key: row.get(4),
    }
}

/// What a key case needs of an adapter: the port over it, and the table behind it.
#[async_trait::async_trait]
trait KeyFixture: Sync {
    /// The port, opened now with `secret` (which is when the secret is checked and plain
    /// rows are protected).
    async fn try_keys(&self, secret: PersonalDataSecret) -> Result<Keys, Error>;

    async fn keys(&self, secret: PersonalDataSecret) -> Keys {
        self.try_keys(secret).await.expect("keys")
    }

    async fn rows(&self) -> Vec<KeyRow>;
    /// Writes a row the way the adapter did before subjects were hashed and keys wrapped.
    async fn insert_plain_row(&self, key_id: Uuid, subject: &str, key: &[u8]);
}

#[async_trait::async_trait]
impl KeyFixture for PostgresFixture {
    async fn try_keys(&self, secret: PersonalDataSecret) -> Result<Keys, Error> {
        Ok(Arc::new(self.store.personal_data_keys(secret).await?))
    }

    async fn rows(&self) -> Vec<KeyRow> {
        sqlx::query(SELECT_KEY_ROWS)
            .fetch_all(self.store.pool())
            .await
            .expect("read the key table")
            .iter()
            .map(key_row)
            .collect()
    }

    async fn insert_plain_row(&self, key_id: Uuid, subject: &str, key: &[u8]) {
        sqlx::query("INSERT INTO personal_data_keys (key_id, subject, key) VALUES ($1, $2, $3)")
            .bind(key_id)
            .bind(subject)
            .bind(key)
            .execute(self.store.pool())
            .await
            .expect("insert a plain row");
    }
}

impl SqliteFixture {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("events.db")
    }

    /// A connection of its own, beside the store's.
    async fn raw(&self) -> sqlx::SqliteConnection {
        use sqlx::Connection;
        sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new().filename(self.path()),
        )
        .await
        .expect("open the file")
    }
}

#[async_trait::async_trait]
impl KeyFixture for SqliteFixture {
    async fn try_keys(&self, secret: PersonalDataSecret) -> Result<Keys, Error> {
        Ok(Arc::new(self.store.personal_data_keys(secret).await?))
    }

    async fn rows(&self) -> Vec<KeyRow> {
        sqlx::query(SELECT_KEY_ROWS)
            .fetch_all(&mut self.raw().await)
            .await
            .expect("read the key table")
            .iter()
            .map(key_row)
            .collect()
    }

    async fn insert_plain_row(&self, key_id: Uuid, subject: &str, key: &[u8]) {
        sqlx::query(
            "INSERT INTO personal_data_keys (key_id, subject, key, created_at) \
             VALUES (?1, ?2, ?3, '2024-01-01T00:00:00Z')",
        )
        .bind(key_id)
        .bind(subject)
        .bind(key)
        .execute(&mut self.raw().await)
        .await
        .expect("insert a plain row");
    }
}

/// Whether `haystack` contains `needle` anywhere.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

mod key_cases {
    use svcops_eventstore::KeyState;

    use super::*;

    pub async fn a_subject_keeps_its_first_key(fixture: &dyn KeyFixture) {
        let keys = fixture.keys(test_secret()).await;
        let (id, key) = keys
            .key_for_subject("+8613800001234", &[1; 32])
            .await
            .expect("key");
        assert_eq!(key, vec![1; 32]);
        let (again, key) = keys
            .key_for_subject("+8613800001234", &[2; 32])
            .await
            .expect("key");
        assert_eq!((again, key), (id, vec![1; 32]), "the first key stays");
        assert_eq!(
            keys.key(id).await.expect("lookup"),
            KeyState::Active(vec![1; 32])
        );
        assert_eq!(
            keys.subject_key_id("+8613800001234").await.expect("lookup"),
            Some(id)
        );
        assert_eq!(
            keys.key(Uuid::new_v4()).await.expect("lookup"),
            KeyState::Unknown
        );
        assert_eq!(
            keys.subject_key_id("+8613900000000").await.expect("lookup"),
            None,
            "looking a subject up creates no key"
        );
        let (other, _) = keys
            .key_for_subject("+8613900000000", &[3; 32])
            .await
            .expect("key");
        assert_ne!(other, id);
    }

    pub async fn concurrent_first_uses_agree_on_one_key(fixture: &dyn KeyFixture) {
        let keys = fixture.keys(test_secret()).await;
        let tasks: Vec<_> = (0..8u8)
            .map(|n| {
                let keys = keys.clone();
                tokio::spawn(async move { keys.key_for_subject("subject", &[n; 32]).await })
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for task in tasks {
            seen.insert(task.await.expect("join").expect("key"));
        }
        assert_eq!(seen.len(), 1, "one key for one subject: {seen:?}");
    }

    pub async fn erasure_destroys_the_key_for_good(fixture: &dyn KeyFixture) {
        let keys = fixture.keys(test_secret()).await;
        let (id, _) = keys
            .key_for_subject("erase-me", &[7; 32])
            .await
            .expect("key");
        assert!(keys.destroy_key(id).await.expect("destroy"));
        assert_eq!(keys.key(id).await.expect("lookup"), KeyState::Erased);
        assert_eq!(keys.subject_key_id("erase-me").await.expect("lookup"), None);
        assert!(
            !keys.destroy_key(id).await.expect("destroy again"),
            "destroying twice is harmless"
        );
        let (new_id, key) = keys
            .key_for_subject("erase-me", &[8; 32])
            .await
            .expect("key");
        assert_ne!(new_id, id, "a returning subject gets a new key");
        assert_eq!(key, vec![8; 32]);
        assert_eq!(keys.key(id).await.expect("lookup"), KeyState::Erased);
        let row = fixture
            .rows()
            .await
            .into_iter()
            .find(|row| row.key_id == id)
            .expect("the erased row stays");
        assert!(
            row.subject_hash.is_none() && row.wrapped_key.is_none(),
            "nothing links an erased key to its subject: {row:?}"
        );
    }

    pub async fn the_key_table_holds_neither_subjects_nor_keys(fixture: &dyn KeyFixture) {
        let keys = fixture.keys(test_secret()).await;
        let (id, _) = keys
            .key_for_subject("+8613800001234", &[9; 32])
            .await
            .expect("key");
        let rows = fixture.rows().await;
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.key_id, id);
        assert_eq!((&row.subject, &row.key), (&None, &None), "{row:?}");
        let subject_hash = row.subject_hash.as_deref().expect("subject hash");
        assert!(
            !subject_hash.contains("13800001234"),
            "the subject column holds the phone: {subject_hash}"
        );
        let wrapped = row.wrapped_key.as_deref().expect("wrapped key");
        assert!(
            !contains(wrapped, &[9; 8]),
            "the stored key bytes are the plain key: {wrapped:?}"
        );
    }

    pub async fn keys_open_only_with_the_secret_they_were_stored_with(fixture: &dyn KeyFixture) {
        let secret = test_secret();
        let (id, _) = fixture
            .keys(secret.clone())
            .await
            .key_for_subject("+8613800001234", &[5; 32])
            .await
            .expect("key");
        match fixture.try_keys(test_secret()).await {
            Err(Error::PersonalData(personal_data_secret::Error::Mismatch)) => {}
            Err(other) => panic!("another secret fails with the wrong error: {other}"),
            Ok(_) => panic!("another secret is accepted"),
        }
        assert_eq!(
            fixture.keys(secret).await.key(id).await.expect("lookup"),
            KeyState::Active(vec![5; 32]),
            "the secret the keys were stored under still opens them"
        );
    }

    pub async fn plain_rows_from_before_are_protected_at_start(fixture: &dyn KeyFixture) {
        let id = Uuid::now_v7();
        fixture
            .insert_plain_row(id, "+8613800001234", &[4; 32])
            .await;
        let secret = test_secret();
        let keys = fixture.keys(secret.clone()).await;
        assert_eq!(
            keys.key(id).await.expect("lookup"),
            KeyState::Active(vec![4; 32]),
            "what was sealed before stays readable"
        );
        assert_eq!(
            keys.key_for_subject("+8613800001234", &[6; 32])
                .await
                .expect("key"),
            (id, vec![4; 32]),
            "the subject keeps its key"
        );
        let rows = fixture.rows().await;
        assert_eq!(rows.len(), 1);
        assert_eq!((&rows[0].subject, &rows[0].key), (&None, &None), "{rows:?}");
        // Opening again (a restart) finds nothing plain left and changes nothing.
        let again = fixture.keys(secret).await;
        assert_eq!(
            again.key(id).await.expect("lookup"),
            KeyState::Active(vec![4; 32])
        );
    }
}

/// SQLite keeps the bytes of deleted and overwritten rows in free space unless
/// `secure_delete` is on; with it, an erased key's row leaves no trace in the file: neither
/// the wrapped key nor the subject's hash.
#[tokio::test]
async fn sqlite_erasure_leaves_no_trace_of_the_key_row_in_the_file() {
    let fixture = SqliteFixture::new().await;
    let keys = fixture.keys(test_secret()).await;
    let (id, _) = keys
        .key_for_subject("+8613800001234", &[3; 32])
        .await
        .expect("key");
    let stored = fixture.rows().await.pop().expect("one row");
    let wrapped = stored.wrapped_key.expect("wrapped key");
    let subject_hash = stored.subject_hash.expect("subject hash");
    assert!(keys.destroy_key(id).await.expect("destroy"));
    drop(keys);
    fixture.store.close().await;
    {
        use sqlx::Connection;
        let mut raw = fixture.raw().await;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut raw)
            .await
            .expect("checkpoint");
        raw.close().await.expect("close");
    }
    for file in ["events.db", "events.db-wal"] {
        let Ok(bytes) = std::fs::read(fixture.dir.path().join(file)) else {
            continue;
        };
        // Any eight bytes in a row: the page reuses part of the freed space, not all of it.
        assert!(
            !wrapped.windows(8).any(|part| contains(&bytes, part)),
            "{file} still holds part of the erased key"
        );
        assert!(
            !subject_hash
                .as_bytes()
                .windows(8)
                .any(|part| contains(&bytes, part)),
            "{file} still holds part of the erased subject's hash"
        );
    }
}
