//! Benchmarks of the persisted projections (issue 6), printing ratios against baselines run
//! side by side:
//!
//! - **rebuild**: the case list built from position 0 over a log of `--events` case openings,
//!   in events/s, against a plain scan of the same log (`read_all`, the ceiling);
//! - **start-up**: `FrontOffice::start` over that log, against the time the scan took (what
//!   start-up cost when read models were folded from the log);
//! - **read your writes across replicas** (PostgreSQL): cases opened on one replica at
//!   `--rate` per second, each listed on another replica right after its command returned;
//!   p50/p99 of command-returned → listed.
//!
//! `cargo run --release -p front-office --example projection_bench -- --help`
//! (`make bench-projections`). Needs PostgreSQL at `SVCOPS_TEST_DATABASE_URL`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use front_office::app::Cases;
use front_office::case::{CaseDetails, CaseEvent, Category, Channel, CustomerPhone, Priority};
use front_office::case_list::CaseListProjection;
use svcops_eventstore::projection::{self, RunnerSettings};
use svcops_eventstore::read_model::{BulkInsert, ReadModels, SqlValue};
use svcops_eventstore::{
    EventStore, PersonalDataKeys, PersonalDataSecret, PostgresStore, SqliteStore,
};
use svcops_kit::aggregate::DomainEvent;
use svcops_kit::events::CommandContext;
use svcops_kit::service::{Office, Ports};
use svcops_kit::{Principal, Role};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    /// Case openings in the log.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// postgres, sqlite or both.
    #[arg(long, default_value = "both")]
    backend: String,
    /// Commands per second for the read-your-writes run.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Commands in the read-your-writes run.
    #[arg(long, default_value_t = 2_000)]
    commands: usize,
}

fn secret() -> PersonalDataSecret {
    PersonalDataSecret::new(
        format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()).as_bytes(),
    )
    .unwrap()
}

fn opened(n: usize) -> (Uuid, String, Vec<u8>) {
    let case_id = Uuid::now_v7();
    let event = CaseEvent::Opened {
        case_id,
        details: CaseDetails {
            customer_phone: CustomerPhone::Sealed {
                key_id: Uuid::now_v7(),
                sealed: vec![7; 40],
            },
            category: Category::Repair,
            priority: Priority::Normal,
            channel: Channel::Hotline,
            summary: format!("ceiling lamp {n} flickers"),
            product: "PL-200".into(),
            serial_number: format!("SN{n:08}"),
            segment: Some(front_office::customer::Segment::Consumer),
            project_id: None,
        },
    };
    let (event_type, payload) = event.encode();
    (case_id, event_type, payload)
}

/// Writes `count` case openings straight into PostgreSQL's log, 10,000 rows a statement.
async fn fill_postgres(store: &PostgresStore, count: usize) {
    let mut written = 0;
    while written < count {
        let chunk = (count - written).min(10_000);
        let (mut streams, mut ids, mut types, mut cases, mut payloads) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for n in written..written + chunk {
            let (case_id, event_type, payload) = opened(n);
            streams.push(format!("case-{case_id}"));
            ids.push(Uuid::now_v7());
            types.push(event_type);
            cases.push(case_id);
            payloads.push(payload);
        }
        sqlx::query(
            "INSERT INTO events (stream_id, version, event_id, event_type, case_id, \
             actor_subject, actor_role, correlation_id, occurred_at, payload) \
             SELECT s, 1, i, t, c, 'bench', 'agent', i, now(), p \
             FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::uuid[], $5::bytea[]) \
             AS x(s, i, t, c, p)",
        )
        .bind(&streams)
        .bind(&ids)
        .bind(&types)
        .bind(&cases)
        .bind(&payloads)
        .execute(store.pool())
        .await
        .expect("fill the log");
        written += chunk;
    }
}

/// Writes `count` case openings straight into SQLite's log, in the store's own row format.
async fn fill_sqlite(store: &SqliteStore, count: usize) {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut written = 0;
    while written < count {
        let chunk = (count - written).min(20_000);
        let mut rows = BulkInsert::new(
            "events",
            &[
                "stream_id",
                "version",
                "event_id",
                "event_type",
                "case_id",
                "actor_subject",
                "actor_role",
                "correlation_id",
                "occurred_at",
                "recorded_at",
                "payload",
            ],
            "",
        );
        for n in written..written + chunk {
            let (case_id, event_type, payload) = opened(n);
            let id = Uuid::now_v7().as_bytes().to_vec();
            rows.push([
                format!("case-{case_id}").into(),
                1_i64.into(),
                id.clone().into(),
                event_type.into(),
                case_id.as_bytes().to_vec().into(),
                "bench".into(),
                "agent".into(),
                id.into(),
                now.clone().into(),
                now.clone().into(),
                SqlValue::Blob(Some(payload)),
            ]);
        }
        let mut transaction = store.begin().await.unwrap();
        rows.flush(transaction.as_mut())
            .await
            .expect("fill the log");
        transaction.commit().await.unwrap();
        written += chunk;
    }
}

/// Reads the whole log as a projection would, applying nothing.
async fn scan(store: &dyn EventStore) -> (usize, Duration) {
    let started = Instant::now();
    let (mut after, mut events) = (0, 0);
    loop {
        let batch = store.read_all(after, 5_000).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        events += batch.len();
    }
    (events, started.elapsed())
}

struct Measured {
    backend: &'static str,
    events: usize,
    scan: Duration,
    rebuild: Duration,
    start_up: Duration,
}

async fn rebuild_and_start(
    backend: &'static str,
    store: Arc<dyn EventStore>,
    read_models: Arc<dyn ReadModels>,
    keys: Arc<dyn PersonalDataKeys>,
    count: usize,
) -> Measured {
    let (events, scan) = scan(store.as_ref()).await;
    assert_eq!(events, count);
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let list = projection::start(
        store.clone(),
        read_models.clone(),
        Arc::new(CaseListProjection),
        RunnerSettings {
            batch_size: 5_000,
            ..RunnerSettings::default()
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let head = store.head().await.unwrap();
    list.read_model()
        .applied(head, Duration::from_secs(3_600))
        .await
        .unwrap();
    let rebuild = started.elapsed();
    shutdown.cancel();
    list.stopped().await;

    // Start-up of the office over the same log, its case list already built.
    let dir = tempfile::tempdir().unwrap();
    let bus = svcops_bus::EmbeddedBus::open(&dir.path().join("bus.db"))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let office = front_office::FrontOffice::start(
        Ports {
            store,
            read_models,
            keys: Some(keys),
            bus: Arc::new(bus),
            backpressure: svcops_bus::lag::Backpressure::OFF,
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let start_up = started.elapsed();
    shutdown.cancel();
    office.stopped().await;
    Measured {
        backend,
        events,
        scan,
        rebuild,
        start_up,
    }
}

fn agent() -> CommandContext {
    CommandContext::from_caller(Principal {
        subject: "bench".into(),
        role: Role::Agent,
    })
}

/// Command on replica A → listed on replica B, each command's latency in milliseconds.
async fn read_your_writes(store: &PostgresStore, rate: u32, commands: usize) -> Vec<f64> {
    let keys: Arc<dyn PersonalDataKeys> =
        Arc::new(store.personal_data_keys(secret()).await.unwrap());
    let shutdown = CancellationToken::new();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let list = projection::start(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(CaseListProjection),
            RunnerSettings::default(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        let cases = Arc::new(Cases::new(
            Arc::new(store.clone()),
            keys.clone(),
            Arc::new(Notify::new()),
            list.read_model(),
        ));
        replicas.push((cases, list));
    }
    let (writer, reader) = (replicas[0].0.clone(), replicas[1].1.read_model());
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    let mut tasks = Vec::new();
    for n in 0..commands {
        pace.tick().await;
        let (writer, reader) = (writer.clone(), reader.clone());
        tasks.push(tokio::spawn(async move {
            let details = CaseDetails::parse(
                &format!("+86138{n:08}"),
                Category::Repair,
                Priority::Normal,
                Channel::Hotline,
                "flickers",
                "",
                "",
            )
            .unwrap();
            let case = writer.open(&agent(), None, details).await.unwrap();
            let returned = Instant::now();
            // What `ListCases` on the other replica does before it reads a page: wait for its
            // read model to have applied everything committed before the call.
            let tables = reader.caught_up(Duration::from_secs(30)).await.unwrap();
            let rows = reader
                .query(
                    &tables,
                    "SELECT COUNT(*) FROM {cases} WHERE case_id = $1",
                    &[case.case_id.into()],
                )
                .await
                .unwrap();
            assert_eq!(rows[0].integer(0).unwrap(), 1, "read your writes");
            returned.elapsed().as_secs_f64() * 1_000.0
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    shutdown.cancel();
    for (_, list) in replicas {
        list.stopped().await;
    }
    latencies.sort_by(f64::total_cmp);
    latencies
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn postgres_store() -> (PostgresStore, String) {
    let server = std::env::var("SVCOPS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let url = format!(
        "{}/svcops_bench_{}",
        server.trim_end_matches('/'),
        Uuid::new_v4().simple()
    );
    (PostgresStore::connect(&url, 16).await.unwrap(), url)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let backends: Vec<&str> = match args.backend.as_str() {
        "both" => vec!["postgres", "sqlite"],
        one => vec![one],
    };
    println!(
        "projection benchmark: {} case openings, {} CPU(s)",
        args.events,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut results = Vec::new();
    let mut latencies = None;
    for backend in backends {
        let filling = Instant::now();
        match backend {
            "postgres" => {
                let (store, url) = postgres_store().await;
                fill_postgres(&store, args.events).await;
                println!("postgres: log written in {:.1?}", filling.elapsed());
                let keys = Arc::new(store.personal_data_keys(secret()).await.unwrap());
                results.push(
                    rebuild_and_start(
                        "postgres",
                        Arc::new(store.clone()),
                        Arc::new(store.clone()),
                        keys,
                        args.events,
                    )
                    .await,
                );
                store.pool().close().await;
                let (store, fresh) = postgres_store().await;
                latencies = Some(read_your_writes(&store, args.rate, args.commands).await);
                store.pool().close().await;
                for url in [url, fresh] {
                    use sqlx::migrate::MigrateDatabase;
                    let _ = sqlx::Postgres::force_drop_database(&url).await;
                }
            }
            "sqlite" => {
                let dir = tempfile::tempdir().unwrap();
                let store = SqliteStore::open(&dir.path().join("front-office.db"))
                    .await
                    .unwrap();
                fill_sqlite(&store, args.events).await;
                println!("sqlite: log written in {:.1?}", filling.elapsed());
                let keys = Arc::new(store.personal_data_keys(secret()).await.unwrap());
                results.push(
                    rebuild_and_start(
                        "sqlite",
                        Arc::new(store.clone()),
                        Arc::new(store.clone()),
                        keys,
                        args.events,
                    )
                    .await,
                );
                store.close().await;
            }
            other => panic!("unknown backend {other:?}: postgres, sqlite or both"),
        }
    }
    println!();
    println!(
        "{:<9} {:>10} {:>14} {:>16} {:>14} {:>12} {:>16}",
        "backend",
        "events",
        "scan ev/s",
        "rebuild ev/s",
        "rebuild/scan",
        "start-up",
        "start-up/scan"
    );
    for measured in &results {
        let per_second = |elapsed: Duration| measured.events as f64 / elapsed.as_secs_f64();
        println!(
            "{:<9} {:>10} {:>14.0} {:>16.0} {:>13.2}x {:>10.0}ms {:>15.4}x",
            measured.backend,
            measured.events,
            per_second(measured.scan),
            per_second(measured.rebuild),
            measured.scan.as_secs_f64() / measured.rebuild.as_secs_f64(),
            measured.start_up.as_secs_f64() * 1_000.0,
            measured.start_up.as_secs_f64() / measured.scan.as_secs_f64(),
        );
    }
    if let Some(latencies) = latencies {
        println!();
        println!(
            "read your writes across replicas (postgres): {} commands at {}/s, command returned -> listed on the other replica: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latencies.len(),
            args.rate,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or_default()
        );
    }
}
