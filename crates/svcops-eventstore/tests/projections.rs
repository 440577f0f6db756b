//! The read-model port's contract, run against both adapters. Leases: one holder at a
//! time, takeover after expiry, work under a lease never on two replicas at once. The
//! projection runner: every event applied exactly
//! once in position order, a batch commits with its checkpoint, a crash mid-batch neither
//! skips nor re-applies, commits out of position order are never passed, two runners on one
//! generation apply each event once, and rebuilds and new versions switch over whole.
//!
//! PostgreSQL from `SVCOPS_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`),
//! a fresh database per case; SQLite a fresh file per case.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use svcops_eventstore::lease::{self, LeaseSettings};
use svcops_eventstore::projection::{self, LogTail, Projection, RunnerSettings, Tables};
use svcops_eventstore::read_model::{Dialect, ReadModelTransaction, ReadModels};
use svcops_eventstore::{
    Append, AppendOutcome, Error, EventMetadata, EventStore, ExpectedVersion, NewEvent,
    PostgresStore, RecordedEvent, SqliteStore, StreamId,
};
use svcops_testsuite::{ContractFixture, contract_suite};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// The store under test, as both ports, plus raw access for the out-of-order case.
#[derive(Clone)]
struct Adapter {
    store: Arc<dyn EventStore>,
    read_models: Arc<dyn ReadModels>,
    raw: Raw,
}

#[derive(Clone)]
enum Raw {
    Postgres(sqlx::PgPool),
    Sqlite,
}

struct PostgresFixture {
    store: PostgresStore,
    url: String,
}

impl ContractFixture for PostgresFixture {
    type Port = Adapter;

    async fn new() -> Self {
        let server = std::env::var("SVCOPS_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
        let url = format!(
            "{}/svcops_test_{}",
            server.trim_end_matches('/'),
            Uuid::new_v4().simple()
        );
        let store = PostgresStore::connect(&url, 16)
            .await
            .unwrap_or_else(|error| panic!("PostgreSQL at {server} is not reachable: {error}"));
        Self { store, url }
    }

    fn port(&self) -> Adapter {
        Adapter {
            store: Arc::new(self.store.clone()),
            read_models: Arc::new(self.store.clone()),
            raw: Raw::Postgres(self.store.pool().clone()),
        }
    }

    async fn teardown(self) {
        use sqlx::migrate::MigrateDatabase;
        self.store.pool().close().await;
        let _ = sqlx::Postgres::force_drop_database(&self.url).await;
    }
}

struct SqliteFixture {
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

impl ContractFixture for SqliteFixture {
    type Port = Adapter;

    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&dir.path().join("events.db"))
            .await
            .expect("open the SQLite store");
        Self { store, _dir: dir }
    }

    fn port(&self) -> Adapter {
        Adapter {
            store: Arc::new(self.store.clone()),
            read_models: Arc::new(self.store.clone()),
            raw: Raw::Sqlite,
        }
    }

    async fn teardown(self) {
        self.store.close().await;
    }
}

contract_suite! {
    adapters: { postgres => PostgresFixture, sqlite => SqliteFixture },
    cases: [
        every_event_is_applied_once_in_position_order,
        a_failed_batch_leaves_neither_rows_nor_checkpoint,
        a_runner_killed_mid_batch_neither_skips_nor_reapplies,
        a_commit_out_of_position_order_is_never_passed,
        a_log_tail_reports_a_late_commit_and_nothing_twice,
        a_running_writer_missing_from_the_snapshot_still_holds_the_horizon,
        two_runners_on_one_generation_apply_each_event_once,
        a_rebuild_is_built_beside_the_live_generation_and_switches_over_whole,
        a_new_version_replaces_the_old_once_caught_up,
        a_rebuild_on_one_replica_is_carried_on_by_the_others,
        a_rebuild_is_refused_while_another_version_is_live,
        a_lease_has_one_holder_at_a_time_and_a_growing_token,
        an_expired_lease_is_taken_over_after_its_holder_stopped,
        work_under_a_lease_runs_on_one_replica_and_moves_on_when_its_holder_dies,
    ],
}

// ---------------------------------------------------------------------------------------
// A projection that records what it saw
// ---------------------------------------------------------------------------------------

/// Records every event it applies (position, stream, version), without a key, so an event
/// applied twice shows as two rows. Can be told to fail, or to hang, at a position.
#[derive(Default)]
struct Seen {
    version: i64,
    fail_once_at: Option<i64>,
    failed: AtomicBool,
    hang_at: Option<i64>,
    hanging: Arc<Notify>,
    batches: AtomicUsize,
}

impl Seen {
    fn new() -> Self {
        Self {
            version: 1,
            ..Self::default()
        }
    }
}

#[async_trait]
impl Projection for Seen {
    fn name(&self) -> &'static str {
        "seen"
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn tables(&self) -> &'static [&'static str] {
        &["events"]
    }

    fn schema(&self, _dialect: Dialect) -> Vec<String> {
        vec![
            "CREATE TABLE {events} (position BIGINT NOT NULL, stream_id TEXT NOT NULL, \
             version BIGINT NOT NULL, projection_version BIGINT NOT NULL)"
                .into(),
        ]
    }

    async fn apply(
        &self,
        transaction: &mut dyn ReadModelTransaction,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), Error> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        let insert = tables.sql(
            "INSERT INTO {events} (position, stream_id, version, projection_version) \
             VALUES ($1, $2, $3, $4)",
        );
        for event in events {
            if self.fail_once_at == Some(event.position)
                && !self.failed.swap(true, Ordering::SeqCst)
            {
                return Err(Error::ReadModel {
                    reason: "told to fail".into(),
                });
            }
            if self.hang_at == Some(event.position) {
                self.hanging.notify_one();
                std::future::pending::<()>().await;
            }
            transaction
                .execute(
                    &insert,
                    &[
                        event.position.into(),
                        event.stream_id.as_str().into(),
                        (event.version as i64).into(),
                        self.version.into(),
                    ],
                )
                .await?;
        }
        Ok(())
    }
}

fn settings() -> RunnerSettings {
    RunnerSettings {
        batch_size: 7,
        idle_poll: Duration::from_millis(20),
        drop_retired_after: Duration::ZERO,
    }
}

async fn start(
    adapter: &Adapter,
    projection: Arc<dyn Projection>,
    settings: RunnerSettings,
) -> (projection::Projector, CancellationToken) {
    let shutdown = CancellationToken::new();
    let projector = projection::start(
        adapter.store.clone(),
        adapter.read_models.clone(),
        projection,
        settings,
        shutdown.clone(),
    )
    .await
    .expect("the projection starts");
    (projector, shutdown)
}

fn event() -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "svcops.test.v1.Happened".into(),
        payload: vec![1, 2, 3],
        metadata: EventMetadata {
            case_id: None,
            actor_subject: "tester".into(),
            actor_role: "service".into(),
            correlation_id: Uuid::new_v4(),
            causation_id: None,
            traceparent: None,
            occurred_at: OffsetDateTime::now_utc(),
        },
    }
}

/// Appends `count` events over a few streams, some appends carrying several events.
/// Appends one event to a new `stream` in a task of its own (it may have to wait for a
/// writer held open by the test).
fn append_meanwhile(adapter: &Adapter, stream: StreamId) -> tokio::task::JoinHandle<AppendOutcome> {
    let store = adapter.store.clone();
    tokio::spawn(async move {
        store
            .append(Append::new(
                stream,
                ExpectedVersion::NoStream,
                vec![event()],
            ))
            .await
            .expect("the append lands")
    })
}

async fn append_some(adapter: &Adapter, count: usize) {
    let streams: Vec<StreamId> = (0..3)
        .map(|_| StreamId::for_aggregate("thing", Uuid::new_v4()))
        .collect();
    let mut written = 0;
    let mut turn = 0;
    while written < count {
        let size = (turn % 3 + 1).min(count - written);
        adapter
            .store
            .append(Append::new(
                streams[turn % streams.len()].clone(),
                ExpectedVersion::Any,
                (0..size).map(|_| event()).collect(),
            ))
            .await
            .expect("append");
        written += size;
        turn += 1;
    }
}

/// `(position, count)` of every applied event in the live generation, by position.
async fn applied(adapter: &Adapter, tables: &Tables) -> Vec<(i64, i64)> {
    let rows = adapter
        .read_models
        .query(
            &tables
                .sql("SELECT position, COUNT(*) FROM {events} GROUP BY position ORDER BY position"),
            &[],
        )
        .await
        .expect("read the projection");
    rows.iter()
        .map(|row| {
            (
                row.integer(0).expect("position"),
                row.integer(1).expect("count"),
            )
        })
        .collect()
}

/// Every position in the log, each applied exactly once.
async fn assert_applied_exactly_once(adapter: &Adapter, tables: &Tables) {
    let log: Vec<(i64, i64)> = adapter
        .store
        .read_all(0, 100_000)
        .await
        .expect("read the log")
        .iter()
        .map(|event| (event.position, 1))
        .collect();
    assert_eq!(applied(adapter, tables).await, log);
}

async fn table_exists(adapter: &Adapter, name: &str) -> bool {
    let sql = match adapter.read_models.dialect() {
        Dialect::Postgres => "SELECT COUNT(*) FROM pg_tables WHERE tablename = $1",
        Dialect::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
    };
    let rows = adapter
        .read_models
        .query(sql, &[name.into()])
        .await
        .expect("look the table up");
    rows[0].integer(0).expect("a count") == 1
}

// ---------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------

mod cases {
    use super::*;

    pub async fn every_event_is_applied_once_in_position_order(adapter: Adapter) {
        append_some(&adapter, 40).await;
        let projection = Arc::new(Seen::new());
        let (projector, shutdown) = start(&adapter, projection.clone(), settings()).await;
        let read_model = projector.read_model();
        let tables = read_model.caught_up(WAIT).await.expect("catches up");
        assert_applied_exactly_once(&adapter, &tables).await;
        assert!(
            projection.batches.load(Ordering::SeqCst) >= 40 / 7,
            "applied in batches of at most 7"
        );

        // It follows what comes next, and a reader reads its own write.
        append_some(&adapter, 5).await;
        let tables = read_model.caught_up(WAIT).await.expect("catches up");
        assert_applied_exactly_once(&adapter, &tables).await;
        let statuses = projection::projection_statuses(adapter.read_models.as_ref())
            .await
            .expect("statuses");
        assert_eq!(statuses.len(), 1);
        assert_eq!(
            statuses[0].checkpoint,
            adapter.store.head().await.expect("head")
        );
        shutdown.cancel();
        projector.stopped().await;
    }

    pub async fn a_failed_batch_leaves_neither_rows_nor_checkpoint(adapter: Adapter) {
        append_some(&adapter, 20).await;
        let fail_at = adapter.store.read_all(0, 100).await.expect("read")[10].position;
        // Fails once in the middle of the second batch (positions 8..=14), then succeeds.
        let projection = Arc::new(Seen {
            fail_once_at: Some(fail_at),
            ..Seen::new()
        });
        let (projector, shutdown) = start(&adapter, projection.clone(), settings()).await;
        let tables = projector
            .read_model()
            .caught_up(WAIT)
            .await
            .expect("catches up after the failure");
        assert!(projection.failed.load(Ordering::SeqCst), "it did fail once");
        // The rows the failed attempt wrote before failing rolled back with it.
        assert_applied_exactly_once(&adapter, &tables).await;
        shutdown.cancel();
        projector.stopped().await;
    }

    pub async fn a_runner_killed_mid_batch_neither_skips_nor_reapplies(adapter: Adapter) {
        append_some(&adapter, 30).await;
        let hang_at = adapter.store.read_all(0, 100).await.expect("read")[17].position;
        let hanging = Arc::new(Seen {
            hang_at: Some(hang_at),
            ..Seen::new()
        });
        let (crashed, _shutdown) = start(&adapter, hanging.clone(), settings()).await;
        // Inside the third batch, with some of its rows written: the process dies.
        tokio::time::timeout(WAIT, hanging.hanging.notified())
            .await
            .expect("the runner reaches the event it hangs at");
        crashed.abort();
        crashed.stopped().await;
        let (tables, checkpoint) = crashed.read_model().live().await.expect("live");
        assert!(
            checkpoint < hang_at,
            "the checkpoint ({checkpoint}) passed the batch that never committed"
        );

        // The next process carries on from the last whole batch.
        let (restarted, shutdown) = start(&adapter, Arc::new(Seen::new()), settings()).await;
        let caught_up = restarted
            .read_model()
            .caught_up(WAIT)
            .await
            .expect("catches up");
        assert_eq!(caught_up, tables, "the same generation");
        assert_applied_exactly_once(&adapter, &tables).await;
        shutdown.cancel();
        restarted.stopped().await;
    }

    pub async fn a_commit_out_of_position_order_is_never_passed(adapter: Adapter) {
        append_some(&adapter, 3).await;
        let (projector, shutdown) = start(&adapter, Arc::new(Seen::new()), settings()).await;
        let read_model = projector.read_model();
        read_model.caught_up(WAIT).await.expect("catches up");

        // A writer takes the next position and stays open.
        let held = HeldWrite::begin(&adapter).await;
        // Another append is written meanwhile (on PostgreSQL it commits first, with the higher
        // position; SQLite's one writer makes it wait).
        let later = append_meanwhile(&adapter, StreamId::for_aggregate("later", Uuid::new_v4()));
        // Give the runner every chance to pass the held position: were it reading up to the
        // head, it would apply the later event and move its checkpoint past the held one.
        for _ in 0..25 {
            read_model.caught_up(Duration::from_millis(1)).await.ok();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (tables, checkpoint) = read_model.live().await.expect("live");
        assert!(
            checkpoint < held.position,
            "the checkpoint ({checkpoint}) passed a position ({}) still being written",
            held.position
        );

        held.commit().await;
        later.await.expect("the later append");
        let caught_up = read_model.caught_up(WAIT).await.expect("catches up");
        assert_eq!(caught_up, tables);
        assert_applied_exactly_once(&adapter, &tables).await;
        shutdown.cancel();
        projector.stopped().await;
    }

    pub async fn a_log_tail_reports_a_late_commit_and_nothing_twice(adapter: Adapter) {
        append_some(&adapter, 3).await;
        let mut tail = LogTail::from_head(adapter.store.clone(), 100)
            .await
            .expect("tail");
        assert!(
            tail.next_batch().await.expect("poll").is_empty(),
            "starts at the head"
        );
        let held = HeldWrite::begin(&adapter).await;
        let later_stream = StreamId::for_aggregate("later", Uuid::new_v4());
        let later = append_meanwhile(&adapter, later_stream.clone());
        let mut reported = Vec::new();
        for _ in 0..25 {
            reported.extend(tail.next_batch().await.expect("poll"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            reported.is_empty(),
            "reported {:?} past a position ({}) still being written",
            reported
                .iter()
                .map(|event| event.position)
                .collect::<Vec<_>>(),
            held.position
        );
        let held_position = held.position;
        held.commit().await;
        later.await.expect("the later append");
        let deadline = tokio::time::Instant::now() + WAIT;
        while reported.len() < 2 && tokio::time::Instant::now() < deadline {
            reported.extend(tail.next_batch().await.expect("poll"));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        reported.extend(tail.next_batch().await.expect("poll"));
        let reported: Vec<(i64, &str)> = reported
            .iter()
            .map(|event| (event.position, event.stream_id.as_str()))
            .collect();
        assert_eq!(reported.len(), 2, "each once: {reported:?}");
        assert_eq!(
            reported[0].0, held_position,
            "in position order: {reported:?}"
        );
        assert_eq!(reported[1].1, later_stream.as_str(), "{reported:?}");

        // A write rolled back leaves a gap for good: the tail goes past it.
        let abandoned = HeldWrite::begin(&adapter).await;
        let after_gap = StreamId::for_aggregate("after-gap", Uuid::new_v4());
        let after = append_meanwhile(&adapter, after_gap.clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
        abandoned.roll_back().await;
        after.await.expect("the append after the gap");
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut past_gap = Vec::new();
        while past_gap.is_empty() && tokio::time::Instant::now() < deadline {
            past_gap.extend(tail.next_batch().await.expect("poll"));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let past_gap: Vec<&str> = past_gap
            .iter()
            .map(|event| event.stream_id.as_str())
            .collect();
        assert_eq!(
            past_gap,
            [after_gap.as_str()],
            "past the rolled-back position"
        );
    }

    pub async fn two_runners_on_one_generation_apply_each_event_once(adapter: Adapter) {
        // Two replicas of one office run the same projection against one database.
        let (first, first_shutdown) = start(&adapter, Arc::new(Seen::new()), settings()).await;
        let (second, second_shutdown) = start(&adapter, Arc::new(Seen::new()), settings()).await;
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let adapter = adapter.clone();
                tokio::spawn(async move { append_some(&adapter, 25).await })
            })
            .collect();
        for writer in writers {
            writer.await.expect("writer");
        }
        let tables = first
            .read_model()
            .caught_up(WAIT)
            .await
            .expect("first catches up");
        assert_eq!(
            second
                .read_model()
                .caught_up(WAIT)
                .await
                .expect("second catches up"),
            tables
        );
        assert_applied_exactly_once(&adapter, &tables).await;
        first_shutdown.cancel();
        second_shutdown.cancel();
        first.stopped().await;
        second.stopped().await;
    }

    pub async fn a_rebuild_is_built_beside_the_live_generation_and_switches_over_whole(
        adapter: Adapter,
    ) {
        append_some(&adapter, 30).await;
        let (projector, shutdown) = start(&adapter, Arc::new(Seen::new()), settings()).await;
        let read_model = projector.read_model();
        let before = read_model.caught_up(WAIT).await.expect("catches up");

        let building = projector.rebuild().await.expect("a rebuild starts");
        assert_eq!(building.generation, before.generation() + 1);
        // Until it is caught up, readers keep reading the whole live generation.
        loop {
            let (live, _) = read_model.live().await.expect("live");
            if live.generation() == building.generation {
                break;
            }
            assert_eq!(live, before);
            assert_applied_exactly_once(&adapter, &live).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let after = read_model.caught_up(WAIT).await.expect("caught up");
        assert_eq!(after.generation(), building.generation);
        assert_applied_exactly_once(&adapter, &after).await;
        // The replaced generation's tables go.
        let old = before.name("events");
        let deadline = tokio::time::Instant::now() + WAIT;
        while table_exists(&adapter, &old).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{old} was never dropped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let statuses = projection::projection_statuses(adapter.read_models.as_ref())
            .await
            .expect("statuses");
        assert_eq!(statuses.len(), 1, "{statuses:?}");
        shutdown.cancel();
        projector.stopped().await;
    }

    pub async fn a_new_version_replaces_the_old_once_caught_up(adapter: Adapter) {
        append_some(&adapter, 30).await;
        let (old, old_shutdown) = start(&adapter, Arc::new(Seen::new()), settings()).await;
        let old_tables = old
            .read_model()
            .caught_up(WAIT)
            .await
            .expect("v1 catches up");
        old_shutdown.cancel();
        old.stopped().await;

        let (new, shutdown) = start(
            &adapter,
            Arc::new(Seen {
                version: 2,
                ..Seen::new()
            }),
            settings(),
        )
        .await;
        let tables = new
            .read_model()
            .caught_up(WAIT)
            .await
            .expect("v2 catches up");
        assert_eq!(tables.generation(), old_tables.generation() + 1);
        assert_applied_exactly_once(&adapter, &tables).await;
        let versions = adapter
            .read_models
            .query(
                &tables.sql("SELECT DISTINCT projection_version FROM {events}"),
                &[],
            )
            .await
            .expect("read");
        assert_eq!(versions.len(), 1);
        assert_eq!(
            versions[0].integer(0).expect("version"),
            2,
            "built by v2 alone"
        );

        // A v1 process started now neither builds nor reads: v2 is live.
        let (stale, stale_shutdown) = start(&adapter, Arc::new(Seen::new()), settings()).await;
        match stale.read_model().live().await {
            Err(Error::ReadModelNotReady { .. }) => {}
            other => panic!("an old version read a newer generation: {other:?}"),
        }
        stale_shutdown.cancel();
        stale.stopped().await;
        shutdown.cancel();
        new.stopped().await;
    }

    fn lease_settings() -> LeaseSettings {
        LeaseSettings {
            ttl: Duration::from_millis(600),
            margin: Duration::from_millis(200),
            renew_every: Duration::from_millis(100),
            retry_every: Duration::from_millis(50),
        }
    }

    pub async fn a_lease_has_one_holder_at_a_time_and_a_growing_token(adapter: Adapter) {
        let read_models = adapter.read_models.as_ref();
        let settings = lease_settings();
        let mut first = lease::try_acquire(read_models, "relay", "replica-a", &settings)
            .await
            .expect("try")
            .expect("a free lease is taken");
        assert!(
            lease::try_acquire(read_models, "relay", "replica-b", &settings)
                .await
                .expect("try")
                .is_none(),
            "a held lease is not taken"
        );
        assert!(
            lease::try_acquire(read_models, "other", "replica-b", &settings)
                .await
                .expect("try")
                .is_some(),
            "leases are by name"
        );
        assert!(
            lease::renew(read_models, &mut first, &settings)
                .await
                .expect("renew")
        );
        lease::release(read_models, &first).await.expect("release");
        let mut second = lease::try_acquire(read_models, "relay", "replica-b", &settings)
            .await
            .expect("try")
            .expect("a released lease is taken at once");
        assert!(second.token > first.token, "the fencing token grows");
        assert!(
            !lease::renew(read_models, &mut first, &settings)
                .await
                .expect("renew"),
            "a lease given up cannot be renewed"
        );
        assert!(
            lease::renew(read_models, &mut second, &settings)
                .await
                .expect("renew")
        );
    }

    pub async fn an_expired_lease_is_taken_over_after_its_holder_stopped(adapter: Adapter) {
        let read_models = adapter.read_models.as_ref();
        let settings = lease_settings();
        let mut crashed = lease::try_acquire(read_models, "relay", "replica-a", &settings)
            .await
            .expect("try")
            .expect("taken");
        // The holder dies: no renewal, no release. Another replica keeps trying.
        let taken = loop {
            if let Some(held) = lease::try_acquire(read_models, "relay", "replica-b", &settings)
                .await
                .expect("try")
            {
                break held;
            }
            tokio::time::sleep(settings.retry_every).await;
        };
        let taken_at = tokio::time::Instant::now();
        assert!(
            crashed.deadline <= taken_at,
            "the old holder still counted the lease its own when it was taken over"
        );
        assert!(
            taken_at.duration_since(crashed.deadline) < Duration::from_secs(5),
            "takeover took {:?} past the old deadline",
            taken_at.duration_since(crashed.deadline)
        );
        assert!(taken.token > crashed.token);
        assert!(
            !lease::renew(read_models, &mut crashed, &settings)
                .await
                .expect("renew"),
            "the old holder cannot renew a lease taken over"
        );
    }

    pub async fn work_under_a_lease_runs_on_one_replica_and_moves_on_when_its_holder_dies(
        adapter: Adapter,
    ) {
        // Each replica records when it starts and stops working in the lease's name.
        let log = Arc::new(parking_lot::Mutex::new(Vec::<(
            &'static str,
            bool,
            tokio::time::Instant,
        )>::new()));
        let replica = |name: &'static str, shutdown: CancellationToken| {
            let log = log.clone();
            let read_models = adapter.read_models.clone();
            tokio::spawn(lease::run_while_held(
                read_models,
                "relay".into(),
                name.into(),
                lease_settings(),
                shutdown,
                move |guard| {
                    let log = log.clone();
                    async move {
                        log.lock().push((name, true, tokio::time::Instant::now()));
                        guard.stop.cancelled().await;
                        log.lock().push((name, false, tokio::time::Instant::now()));
                    }
                },
            ))
        };
        let a_shutdown = CancellationToken::new();
        let b_shutdown = CancellationToken::new();
        let a = replica("a", a_shutdown.clone());
        // Let a take it first.
        while log.lock().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let b = replica("b", b_shutdown.clone());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            log.lock().len(),
            1,
            "b works while a holds the lease: {:?}",
            log.lock()
        );

        // a crashes: its task (work and renewals) is gone at once, the lease left to expire.
        let crashed_at = tokio::time::Instant::now();
        a.abort();
        let _ = a.await;
        let deadline = crashed_at + Duration::from_secs(10);
        while !log
            .lock()
            .iter()
            .any(|(name, start, _)| *name == "b" && *start)
        {
            assert!(tokio::time::Instant::now() < deadline, "b never took over");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took_over_at = log.lock().last().expect("b's start").2;
        assert!(
            took_over_at.duration_since(crashed_at)
                >= lease_settings().ttl - lease_settings().margin,
            "b started before a's lease could have expired"
        );
        // A graceful stop releases at once.
        b_shutdown.cancel();
        b.await.expect("b stops");
        let entries = log.lock().clone();
        assert_eq!(
            entries
                .iter()
                .map(|(name, start, _)| (*name, *start))
                .collect::<Vec<_>>(),
            [("a", true), ("b", true), ("b", false)]
        );
        let c_shutdown = CancellationToken::new();
        let c = replica("c", c_shutdown.clone());
        let released_at = tokio::time::Instant::now();
        while log.lock().len() < 4 {
            assert!(
                released_at.elapsed() < lease_settings().ttl,
                "a released lease waited for its expiry"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        c_shutdown.cancel();
        c.await.expect("c stops");
    }

    /// The interleaving PostgreSQL's snapshot alone misses: `earlier` takes its id and a
    /// position, `later` takes a higher id and the next position and stays open, `earlier`
    /// takes one more position and commits. The snapshot's `xmax` is then `later`'s id, so
    /// its list of running ids leaves `later` out, though its position is below the head.
    pub async fn a_running_writer_missing_from_the_snapshot_still_holds_the_horizon(
        adapter: Adapter,
    ) {
        let Raw::Postgres(pool) = &adapter.raw else {
            // SQLite has one writer: a second waits for the first, so this cannot happen.
            return;
        };
        append_some(&adapter, 3).await;
        let (projector, shutdown) = start(&adapter, Arc::new(Seen::new()), settings()).await;
        let read_model = projector.read_model();
        read_model.caught_up(WAIT).await.expect("catches up");

        let mut earlier = pool.begin().await.expect("begin");
        insert_held(&mut earlier).await;
        let mut later = pool.begin().await.expect("begin");
        let held = insert_held(&mut later).await;
        let later_id: i64 =
            sqlx::query_scalar("SELECT (pg_current_xact_id()::text::bigint) % 4294967296")
                .fetch_one(&mut *later)
                .await
                .expect("its id");
        insert_held(&mut earlier).await;
        earlier.commit().await.expect("commit");
        // Whatever else the cluster is doing (its `xmax` may or may not have passed `later`
        // by now), the log's snapshot lists `later` as running.
        let snapshot = adapter.store.log_snapshot().await.expect("snapshot");
        assert!(
            snapshot.in_progress.contains(&(later_id as u64)),
            "a running writer ({later_id}) is missing from {snapshot:?}"
        );

        for _ in 0..25 {
            read_model.caught_up(Duration::from_millis(1)).await.ok();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (tables, checkpoint) = read_model.live().await.expect("live");
        assert!(
            checkpoint < held,
            "the checkpoint ({checkpoint}) passed a position ({held}) still being written"
        );
        later.commit().await.expect("commit");
        assert_eq!(
            read_model.caught_up(WAIT).await.expect("catches up"),
            tables
        );
        assert_applied_exactly_once(&adapter, &tables).await;
        shutdown.cancel();
        projector.stopped().await;
    }

    pub async fn a_rebuild_on_one_replica_is_carried_on_by_the_others(adapter: Adapter) {
        append_some(&adapter, 20).await;
        let (first, first_shutdown) = start(&adapter, Arc::new(Seen::new()), settings()).await;
        let (second, second_shutdown) = start(&adapter, Arc::new(Seen::new()), settings()).await;
        let before = second
            .read_model()
            .caught_up(WAIT)
            .await
            .expect("caught up");
        let building = first.rebuild().await.expect("a rebuild starts");
        let deadline = tokio::time::Instant::now() + WAIT;
        while second
            .read_model()
            .live()
            .await
            .expect("live")
            .0
            .generation()
            != building.generation
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the rebuild never went live"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The replica that rebuilt it goes away; the other one feeds the new generation.
        first_shutdown.cancel();
        first.stopped().await;
        append_some(&adapter, 10).await;
        let after = second
            .read_model()
            .caught_up(WAIT)
            .await
            .expect("the other replica carries on");
        assert_eq!(after.generation(), before.generation() + 1);
        assert_applied_exactly_once(&adapter, &after).await;
        second_shutdown.cancel();
        second.stopped().await;
    }

    pub async fn a_rebuild_is_refused_while_another_version_is_live(adapter: Adapter) {
        append_some(&adapter, 10).await;
        let (old, old_shutdown) = start(&adapter, Arc::new(Seen::new()), settings()).await;
        old.read_model()
            .caught_up(WAIT)
            .await
            .expect("v1 caught up");
        let (new, new_shutdown) = start(
            &adapter,
            Arc::new(Seen {
                version: 2,
                ..Seen::new()
            }),
            settings(),
        )
        .await;
        // While v2 builds, and once it is live, v1 code must not build a generation.
        match old.rebuild().await {
            Err(Error::Precondition(_)) => {}
            other => panic!("a v1 rebuild beside a v2 generation: {other:?}"),
        }
        new.read_model()
            .caught_up(WAIT)
            .await
            .expect("v2 caught up");
        match old.rebuild().await {
            Err(Error::Precondition(_)) => {}
            other => panic!("a v1 rebuild with v2 live: {other:?}"),
        }
        let statuses = projection::projection_statuses(adapter.read_models.as_ref())
            .await
            .expect("statuses");
        assert!(
            statuses.iter().all(|status| status.version == 2),
            "{statuses:?}"
        );
        old_shutdown.cancel();
        new_shutdown.cancel();
        old.stopped().await;
        new.stopped().await;
    }
}

// ---------------------------------------------------------------------------------------
// An event written in a transaction that stays open
// ---------------------------------------------------------------------------------------

/// Inserts one event in `transaction`, the way any writer would; returns its position.
async fn insert_held(transaction: &mut sqlx::Transaction<'static, sqlx::Postgres>) -> i64 {
    sqlx::query_scalar(HELD_INSERT)
        .bind(format!("held-{}", Uuid::new_v4()))
        .bind(Uuid::new_v4())
        .bind(Uuid::new_v4())
        .bind(OffsetDateTime::now_utc())
        .bind(vec![0u8])
        .fetch_one(&mut **transaction)
        .await
        .expect("insert")
}

const HELD_INSERT: &str = "INSERT INTO events (stream_id, version, event_id, event_type, \
     actor_subject, actor_role, correlation_id, occurred_at, recorded_at, payload) \
     VALUES ($1, 1, $2, 'svcops.test.v1.Held', 'tester', 'service', $3, $4, $4, $5) \
     RETURNING position";

enum HeldConnection {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(Box<dyn ReadModelTransaction>),
}

struct HeldWrite {
    connection: HeldConnection,
    position: i64,
}

impl HeldWrite {
    /// Inserts one event the way any writer would (taking the next position) and does not
    /// commit.
    async fn begin(adapter: &Adapter) -> Self {
        const INSERT: &str = HELD_INSERT;
        let stream = format!("held-{}", Uuid::new_v4());
        match &adapter.raw {
            Raw::Postgres(pool) => {
                let mut transaction = pool.begin().await.expect("begin");
                let position: i64 = sqlx::query_scalar(INSERT)
                    .bind(&stream)
                    .bind(Uuid::new_v4())
                    .bind(Uuid::new_v4())
                    .bind(OffsetDateTime::now_utc())
                    .bind(vec![0u8])
                    .fetch_one(&mut *transaction)
                    .await
                    .expect("insert");
                Self {
                    connection: HeldConnection::Postgres(transaction),
                    position,
                }
            }
            Raw::Sqlite => {
                // SQLite's writers are the store's one writer connection: hold it, as a
                // read-model batch or an append does.
                let mut transaction = adapter.read_models.begin().await.expect("begin");
                let now = OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .expect("format");
                let rows = transaction
                    .query(
                        INSERT,
                        &[
                            stream.into(),
                            Uuid::new_v4().as_bytes().to_vec().into(),
                            Uuid::new_v4().as_bytes().to_vec().into(),
                            now.into(),
                            vec![0u8].into(),
                        ],
                    )
                    .await
                    .expect("insert");
                Self {
                    position: rows[0].integer(0).expect("a position"),
                    connection: HeldConnection::Sqlite(transaction),
                }
            }
        }
    }

    /// Gives the write up: its position stays a gap for good.
    async fn roll_back(self) {
        match self.connection {
            HeldConnection::Postgres(transaction) => {
                transaction.rollback().await.expect("roll back")
            }
            HeldConnection::Sqlite(transaction) => drop(transaction),
        }
    }

    async fn commit(self) {
        match self.connection {
            HeldConnection::Postgres(transaction) => transaction.commit().await.expect("commit"),
            HeldConnection::Sqlite(transaction) => transaction.commit().await.expect("commit"),
        }
    }
}
