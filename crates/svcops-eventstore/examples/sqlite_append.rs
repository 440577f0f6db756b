//! SQLite append throughput: the store's group commit against one commit per append, side by
//! side in one run (`make bench-sqlite`).
//!
//! Workload: every command opens a new stream and appends one event of ~500 bytes, from
//! `concurrency` tasks at once.
//! - `per-commit`: what the store did before group commit: one transaction per append on
//!   the one writer connection (same pragmas: WAL, synchronous=FULL), an `INSERT` into a
//!   table shaped like `events` plus its outbox row;
//! - `store`: `SqliteStore::append` (NoStream, one event, published), group commit.
//!
//! Workloads take turns each round (the order rotates) and the table shows the median over
//! rounds, each on a fresh file in a temporary directory.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use svcops_eventstore::{
    Append, EventMetadata, EventStore, ExpectedVersion, NewEvent, SqliteStore, StreamId,
};
use time::OffsetDateTime;
use uuid::Uuid;

const ROUNDS: usize = 5;
const COMMANDS: usize = 4_000;

fn event() -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "svcops.bench.v1.Happened".into(),
        payload: vec![7u8; 500],
        metadata: EventMetadata {
            case_id: Some(Uuid::now_v7()),
            actor_subject: "bench".into(),
            actor_role: "agent".into(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            traceparent: None,
            occurred_at: OffsetDateTime::now_utc(),
        },
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Workload {
    PerCommit,
    Store,
}

async fn run(workload: Workload, concurrency: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let per_task = COMMANDS / concurrency;
    let started;
    match workload {
        Workload::Store => {
            let store = Arc::new(SqliteStore::open(&path).await.expect("open"));
            started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..per_task {
                        let stream = StreamId::for_aggregate("bench", Uuid::now_v7());
                        store
                            .append(Append::new(
                                stream,
                                ExpectedVersion::NoStream,
                                vec![event()],
                            ))
                            .await
                            .expect("append");
                    }
                }));
            }
            for task in tasks {
                task.await.expect("task");
            }
        }
        Workload::PerCommit => {
            let options = SqliteConnectOptions::from_str("sqlite:")
                .expect("options")
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10));
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .expect("pool");
            sqlx::query(
                "CREATE TABLE events (position INTEGER PRIMARY KEY AUTOINCREMENT, \
                 stream_id TEXT NOT NULL, version INTEGER NOT NULL, event_id BLOB NOT NULL UNIQUE, \
                 event_type TEXT NOT NULL, case_id BLOB, actor_subject TEXT NOT NULL, \
                 actor_role TEXT NOT NULL, correlation_id BLOB NOT NULL, occurred_at TEXT NOT NULL, \
                 payload BLOB NOT NULL, UNIQUE (stream_id, version))",
            )
            .execute(&writer)
            .await
            .expect("schema");
            sqlx::query("CREATE TABLE outbox (position INTEGER PRIMARY KEY)")
                .execute(&writer)
                .await
                .expect("schema");
            started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let writer = writer.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..per_task {
                        let event = event();
                        let mut transaction = writer.begin().await.expect("begin");
                        let position: i64 = sqlx::query_scalar(
                            "INSERT INTO events (stream_id, version, event_id, event_type, \
                             case_id, actor_subject, actor_role, correlation_id, occurred_at, \
                             payload) VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                             RETURNING position",
                        )
                        .bind(format!("bench-{}", Uuid::now_v7()))
                        .bind(event.event_id)
                        .bind(&event.event_type)
                        .bind(event.metadata.case_id)
                        .bind(&event.metadata.actor_subject)
                        .bind(&event.metadata.actor_role)
                        .bind(event.metadata.correlation_id)
                        .bind(event.metadata.occurred_at.to_string())
                        .bind(&event.payload)
                        .fetch_one(&mut *transaction)
                        .await
                        .expect("insert");
                        sqlx::query("INSERT INTO outbox (position) VALUES (?1)")
                            .bind(position)
                            .execute(&mut *transaction)
                            .await
                            .expect("outbox");
                        transaction.commit().await.expect("commit");
                    }
                }));
            }
            for task in tasks {
                task.await.expect("task");
            }
        }
    }
    (per_task * concurrency) as f64 / started.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    println!("SQLite appends/s, median of {ROUNDS} rounds of {COMMANDS} (WAL, synchronous=FULL)");
    println!(
        "{:>11} {:>12} {:>12} {:>8}",
        "concurrency", "per-commit", "store", "ratio"
    );
    for concurrency in [1, 8, 32] {
        let mut per_commit = Vec::new();
        let mut store = Vec::new();
        for round in 0..ROUNDS {
            let order = if round % 2 == 0 {
                [Workload::PerCommit, Workload::Store]
            } else {
                [Workload::Store, Workload::PerCommit]
            };
            for workload in order {
                let rate = run(workload, concurrency).await;
                match workload {
                    Workload::PerCommit => per_commit.push(rate),
                    Workload::Store => store.push(rate),
                }
            }
        }
        let (per_commit, store) = (median(&mut per_commit), median(&mut store));
        println!(
            "{concurrency:>11} {per_commit:>12.0} {store:>12.0} {:>7.2}x",
            store / per_commit
        );
    }
}
