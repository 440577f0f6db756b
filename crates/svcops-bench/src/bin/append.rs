//! Append throughput: svcops' PostgreSQL event store against a raw INSERT and against the
//! closest Rust peer (cqrs-es 0.5 with postgres-es 0.5), side by side in one run.
//!
//! Workload: every command opens a new stream and appends one event of ~500 bytes.
//! - `raw`:   one autocommit `INSERT` of the same row into a plain table with the columns of
//!   svcops' `events` table and only a bigserial primary key (sqlx 0.9);
//! - `store`: `PostgresStore::append` (NoStream, one event, no idempotency key, published);
//! - `peer`:  `postgres_cqrs` executing a command on a new aggregate id, whose handler emits one
//!   event (postgres-es 0.5 on sqlx 0.8; its tables from its `db/init.sql`, in schema `peer`).
//!
//! Each (workload, concurrency) is measured once per round after a warm-up, with a fresh
//! pool of `concurrency` connections driven by as many tokio tasks; the workloads take turns
//! in a rotating order each round so machine noise hits them alike, and the table reports the
//! median over the rounds. The database is created fresh for the run and dropped at the end.
//!
//! `cargo run --release -p svcops-bench --bin append -- --help`

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use postgres_es::{PostgresCqrs, postgres_cqrs};
use serde::{Deserialize, Serialize};
use sqlx::migrate::MigrateDatabase;
use svcops_eventstore::{
    Append, EventMetadata, EventStore, ExpectedVersion, NewEvent, PostgresStore, StreamId,
};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(about = "Append throughput: raw INSERT vs svcops PostgresStore vs cqrs-es/postgres-es")]
struct Args {
    /// PostgreSQL server URL (no database name); a fresh database is created for the run.
    #[arg(
        long,
        env = "SVCOPS_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    server_url: String,
    /// Concurrency levels (tasks = pool connections).
    #[arg(
        long,
        env = "SVCOPS_BENCH_CONCURRENCY",
        value_delimiter = ',',
        default_value = "1,8,32"
    )]
    concurrency: Vec<usize>,
    /// Measured commands per workload and round at concurrency 1.
    #[arg(long, env = "SVCOPS_BENCH_COMMANDS_C1", default_value_t = 4_000)]
    commands_c1: usize,
    /// Measured commands per workload and round at concurrency > 1.
    #[arg(long, env = "SVCOPS_BENCH_COMMANDS", default_value_t = 20_000)]
    commands: usize,
    /// Unmeasured warm-up commands before each measurement (at least 4 per task).
    #[arg(long, env = "SVCOPS_BENCH_WARMUP", default_value_t = 300)]
    warmup: usize,
    /// Rounds; the table shows the median of each figure over the rounds.
    #[arg(long, env = "SVCOPS_BENCH_ROUNDS", default_value_t = 3)]
    rounds: usize,
    /// Event payload size in bytes.
    #[arg(long, env = "SVCOPS_BENCH_PAYLOAD_BYTES", default_value_t = 500)]
    payload_bytes: usize,
    /// Short run for CI: 1 round, 400 commands at c=1, 2,000 above, 100 warm-up.
    #[arg(long, env = "SVCOPS_BENCH_QUICK")]
    quick: bool,
    /// Exit non-zero when store < 0.8x raw or store < 2x peer at the highest concurrency.
    #[arg(long)]
    check: bool,
    /// Keep the benchmark database instead of dropping it.
    #[arg(long)]
    keep_database: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Workload {
    Raw,
    Store,
    Peer,
}

impl Workload {
    const ALL: [Workload; 3] = [Workload::Raw, Workload::Store, Workload::Peer];
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that width and alignment in format strings apply.
        f.pad(match self {
            Workload::Raw => "raw INSERT",
            Workload::Store => "svcops store",
            Workload::Peer => "cqrs-es/postgres-es",
        })
    }
}

// ---------------------------------------------------------------------------------------
// Schema for the baseline and the peer
// ---------------------------------------------------------------------------------------

/// The columns of svcops' `events` table, with only the bigserial primary key.
const RAW_DDL: &str = r#"
CREATE TABLE raw_events (
    position        bigserial PRIMARY KEY,
    stream_id       text        NOT NULL,
    version         bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    case_id         uuid,
    actor_subject   text        NOT NULL,
    actor_role      text        NOT NULL,
    correlation_id  uuid        NOT NULL,
    causation_id    uuid,
    traceparent     text,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    payload         bytea       NOT NULL
)
"#;

const RAW_INSERT: &str = "INSERT INTO raw_events (stream_id, version, event_id, event_type, \
     case_id, actor_subject, actor_role, correlation_id, causation_id, traceparent, occurred_at, \
     payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// postgres-es' tables, verbatim from its repository's `db/init.sql` (events and snapshots;
/// the view table and test rows are left out), in their own schema so that the
/// repository's default table names do not meet svcops' `events`.
const PEER_DDL: [&str; 3] = [
    "CREATE SCHEMA peer",
    r#"CREATE TABLE peer.events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
)"#,
    r#"CREATE TABLE peer.snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
)"#,
];

// ---------------------------------------------------------------------------------------
// The peer's aggregate: one command, one event
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default, Serialize, Deserialize)]
struct Case {
    opened: bool,
}

#[derive(Debug)]
enum CaseCommand {
    OpenCase { summary: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CaseEvent {
    CaseOpened { summary: String },
}

impl DomainEvent for CaseEvent {
    fn event_type(&self) -> String {
        "CaseOpened".to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug)]
struct CaseError(&'static str);

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for CaseError {}

impl Aggregate for Case {
    const TYPE: &'static str = "case";
    type Command = CaseCommand;
    type Event = CaseEvent;
    type Error = CaseError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            CaseCommand::OpenCase { summary } => {
                if self.opened {
                    return Err(CaseError("case already open"));
                }
                sink.write(CaseEvent::CaseOpened { summary }, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CaseEvent::CaseOpened { .. } => self.opened = true,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------

/// What one command carries, prepared once so that building it is not measured.
struct Fixture {
    payload: Vec<u8>,
    /// A JSON-string payload of about the same encoded size, for the peer.
    summary: String,
}

impl Fixture {
    fn new(payload_bytes: usize) -> Self {
        // Incompressible-looking bytes (TOAST would not compress a ~500-byte value anyway).
        let payload = (0..payload_bytes)
            .map(|index| (index.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        // `{"CaseOpened":{"summary":"…"}}` adds 28 bytes around the text.
        let summary = (0..payload_bytes.saturating_sub(28))
            .map(|index| char::from(b'a' + (index % 26) as u8))
            .collect();
        Self { payload, summary }
    }

    fn metadata() -> EventMetadata {
        EventMetadata {
            case_id: Some(Uuid::new_v4()),
            actor_subject: "agent-0042".to_owned(),
            actor_role: "agent".to_owned(),
            correlation_id: Uuid::new_v4(),
            causation_id: Some(Uuid::new_v4()),
            traceparent: Some(format!(
                "00-{}-{:016x}-01",
                Uuid::new_v4().simple(),
                0x5eed_u64
            )),
            occurred_at: OffsetDateTime::now_utc(),
        }
    }
}

enum Target {
    Raw(sqlx::PgPool),
    Store(PostgresStore),
    Peer(Box<PostgresCqrs<Case>>, sqlx08::PgPool),
}

impl Target {
    async fn open(workload: Workload, url: &str, connections: usize) -> anyhow::Result<Self> {
        let max = u32::try_from(connections).context("concurrency too large")?;
        Ok(match workload {
            Workload::Raw => Target::Raw(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(max)
                    .min_connections(max)
                    .connect(url)
                    .await
                    .context("raw pool")?,
            ),
            Workload::Store => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(max)
                    .min_connections(max)
                    .connect(url)
                    .await
                    .context("store pool")?;
                Target::Store(PostgresStore::from_pool(pool).await.context("store")?)
            }
            Workload::Peer => {
                let options: sqlx08::postgres::PgConnectOptions =
                    url.parse().context("peer connection URL")?;
                let pool = sqlx08::postgres::PgPoolOptions::new()
                    .max_connections(max)
                    .min_connections(max)
                    .connect_with(options.options([("search_path", "peer")]))
                    .await
                    .context("peer pool")?;
                Target::Peer(Box::new(postgres_cqrs(pool.clone(), Vec::new(), ())), pool)
            }
        })
    }

    async fn command(&self, fixture: &Fixture) -> anyhow::Result<()> {
        match self {
            Target::Raw(pool) => {
                let metadata = Fixture::metadata();
                sqlx::query(RAW_INSERT)
                    .bind(format!("case-{}", Uuid::new_v4()))
                    .bind(1_i64)
                    .bind(Uuid::new_v4())
                    .bind("svcops.frontoffice.v1.CaseOpened")
                    .bind(metadata.case_id)
                    .bind(&metadata.actor_subject)
                    .bind(&metadata.actor_role)
                    .bind(metadata.correlation_id)
                    .bind(metadata.causation_id)
                    .bind(&metadata.traceparent)
                    .bind(metadata.occurred_at)
                    .bind(fixture.payload.as_slice())
                    .execute(pool)
                    .await?;
            }
            Target::Store(store) => {
                let event = NewEvent {
                    event_id: Uuid::new_v4(),
                    event_type: "svcops.frontoffice.v1.CaseOpened".to_owned(),
                    payload: fixture.payload.clone(),
                    metadata: Fixture::metadata(),
                };
                let outcome = store
                    .append(Append::new(
                        StreamId::for_aggregate("case", Uuid::new_v4()),
                        ExpectedVersion::NoStream,
                        vec![event],
                    ))
                    .await?;
                if outcome.is_duplicate() {
                    bail!("unexpected duplicate");
                }
            }
            Target::Peer(cqrs, _) => {
                // The same metadata, the way a cqrs-es user carries it.
                let metadata = Fixture::metadata();
                let mut map = HashMap::with_capacity(8);
                map.insert("event_id".to_owned(), Uuid::new_v4().to_string());
                if let Some(case_id) = metadata.case_id {
                    map.insert("case_id".to_owned(), case_id.to_string());
                }
                map.insert("actor_subject".to_owned(), metadata.actor_subject);
                map.insert("actor_role".to_owned(), metadata.actor_role);
                map.insert(
                    "correlation_id".to_owned(),
                    metadata.correlation_id.to_string(),
                );
                if let Some(causation_id) = metadata.causation_id {
                    map.insert("causation_id".to_owned(), causation_id.to_string());
                }
                if let Some(traceparent) = metadata.traceparent {
                    map.insert("traceparent".to_owned(), traceparent);
                }
                map.insert(
                    "occurred_at".to_owned(),
                    metadata.occurred_at.unix_timestamp_nanos().to_string(),
                );
                cqrs.execute_with_metadata(
                    &Uuid::new_v4().to_string(),
                    CaseCommand::OpenCase {
                        summary: fixture.summary.clone(),
                    },
                    map,
                )
                .await
                .map_err(|error| anyhow::anyhow!("cqrs-es: {error}"))?;
            }
        }
        Ok(())
    }

    async fn close(self) {
        match self {
            Target::Raw(pool) => pool.close().await,
            Target::Store(store) => store.pool().close().await,
            Target::Peer(_, pool) => pool.close().await,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Sample {
    events_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs `commands` commands over `tasks` tasks; returns the sample and the latencies.
async fn drive(
    target: &Arc<Target>,
    fixture: &Arc<Fixture>,
    tasks: usize,
    commands: usize,
) -> anyhow::Result<Sample> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let target = target.clone();
            let fixture = fixture.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(commands / tasks + 1);
                while next.fetch_add(1, Ordering::Relaxed) < commands {
                    let start = Instant::now();
                    target.command(&fixture).await?;
                    latencies.push(start.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(commands);
    for handle in handles {
        latencies.extend(handle.await.context("bench task panicked")??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(Sample {
        events_per_sec: commands as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
    })
}

fn percentile(sorted: &[Duration], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1_000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".to_owned())
}

async fn prepare(url: &str) -> anyhow::Result<()> {
    // svcops' schema via its migrations; the baseline's and the peer's by hand.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("connect to the benchmark database")?;
    PostgresStore::from_pool(pool.clone())
        .await
        .context("migrate svcops' schema")?;
    sqlx::raw_sql(RAW_DDL)
        .execute(&pool)
        .await
        .context("create raw_events")?;
    for ddl in PEER_DDL {
        sqlx::raw_sql(ddl)
            .execute(&pool)
            .await
            .context("create the peer's tables")?;
    }
    pool.close().await;
    Ok(())
}

async fn row_counts(url: &str) -> anyhow::Result<[i64; 3]> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let mut counts = [0; 3];
    for (count, sql) in counts.iter_mut().zip([
        "SELECT count(*) FROM raw_events",
        "SELECT count(*) FROM events",
        "SELECT count(*) FROM peer.events",
    ]) {
        *count = sqlx::query_scalar(sql).fetch_one(&pool).await?;
    }
    pool.close().await;
    Ok(counts)
}

struct Plan {
    concurrency: Vec<usize>,
    commands_c1: usize,
    commands: usize,
    warmup: usize,
    rounds: usize,
    payload_bytes: usize,
}

impl Plan {
    fn commands_at(&self, concurrency: usize) -> usize {
        if concurrency <= 1 {
            self.commands_c1
        } else {
            self.commands
        }
    }
}

type Results = HashMap<(Workload, usize), Vec<Sample>>;

async fn run(url: &str, plan: &Plan, fixture: &Arc<Fixture>) -> anyhow::Result<Results> {
    prepare(url).await?;
    let mut results: Results = HashMap::new();
    for round in 0..plan.rounds {
        for &concurrency in &plan.concurrency {
            // Rotate the order every round (and per concurrency) so that no workload always
            // runs first or last.
            let mut order = Workload::ALL;
            order.rotate_left((round + concurrency) % Workload::ALL.len());
            for workload in order {
                let target = Arc::new(Target::open(workload, url, concurrency).await?);
                let warmup = plan.warmup.max(4 * concurrency);
                drive(&target, fixture, concurrency, warmup)
                    .await
                    .with_context(|| format!("warm-up {workload} c={concurrency}"))?;
                let commands = plan.commands_at(concurrency);
                let sample = drive(&target, fixture, concurrency, commands)
                    .await
                    .with_context(|| format!("{workload} c={concurrency}"))?;
                println!(
                    "round {}/{}  c={concurrency:<3} {workload:<20} {:>9.0} events/s  p50 {:>7.2} ms  p99 {:>7.2} ms  (load {})",
                    round + 1,
                    plan.rounds,
                    sample.events_per_sec,
                    sample.p50_ms,
                    sample.p99_ms,
                    load_average()
                );
                results
                    .entry((workload, concurrency))
                    .or_default()
                    .push(sample);
                if let Ok(target) = Arc::try_unwrap(target) {
                    target.close().await;
                }
            }
        }
    }
    let expected: i64 = plan
        .concurrency
        .iter()
        .map(|&c| (plan.warmup.max(4 * c) + plan.commands_at(c)) as i64)
        .sum::<i64>()
        * plan.rounds as i64;
    let counts = row_counts(url).await?;
    if counts.iter().any(|&count| count != expected) {
        bail!("row counts {counts:?} (raw, store, peer) differ from the {expected} commands run");
    }
    Ok(results)
}

struct Ratios {
    concurrency: usize,
    store_to_raw: f64,
    store_to_peer: f64,
    store_to_raw_per_round: f64,
    store_to_peer_per_round: f64,
}

fn report(plan: &Plan, results: &Results) -> Vec<Ratios> {
    let figure = |workload: Workload, concurrency: usize, pick: fn(&Sample) -> f64| {
        median(
            results
                .get(&(workload, concurrency))
                .map(|samples| samples.iter().map(pick).collect())
                .unwrap_or_default(),
        )
    };
    println!();
    println!(
        "median of {} round(s); one new stream + one {}-byte event per command",
        plan.rounds, plan.payload_bytes
    );
    println!(
        "{:<22} {:>5} {:>12} {:>9} {:>9}",
        "workload", "conc", "events/s", "p50 ms", "p99 ms"
    );
    let mut ratios = Vec::new();
    for &concurrency in &plan.concurrency {
        for workload in Workload::ALL {
            println!(
                "{:<22} {:>5} {:>12.0} {:>9.2} {:>9.2}",
                workload.to_string(),
                concurrency,
                figure(workload, concurrency, |s| s.events_per_sec),
                figure(workload, concurrency, |s| s.p50_ms),
                figure(workload, concurrency, |s| s.p99_ms),
            );
        }
        let store = figure(Workload::Store, concurrency, |s| s.events_per_sec);
        let raw = figure(Workload::Raw, concurrency, |s| s.events_per_sec);
        let peer = figure(Workload::Peer, concurrency, |s| s.events_per_sec);
        // Also the median of the ratios within each round: the three workloads of a round
        // ran back to back, so they shared that moment's machine noise.
        let per_round = |other: Workload| {
            let (Some(stores), Some(others)) = (
                results.get(&(Workload::Store, concurrency)),
                results.get(&(other, concurrency)),
            ) else {
                return f64::NAN;
            };
            median(
                stores
                    .iter()
                    .zip(others)
                    .map(|(store, other)| store.events_per_sec / other.events_per_sec)
                    .collect(),
            )
        };
        ratios.push(Ratios {
            concurrency,
            store_to_raw: store / raw,
            store_to_peer: store / peer,
            store_to_raw_per_round: per_round(Workload::Raw),
            store_to_peer_per_round: per_round(Workload::Peer),
        });
    }
    println!();
    println!(
        "{:>5} {:>10} {:>11}   {:>22} {:>23}",
        "conc", "store/raw", "store/peer", "store/raw (per round)", "store/peer (per round)"
    );
    for ratio in &ratios {
        println!(
            "{:>5} {:>9.2}x {:>10.2}x   {:>21.2}x {:>22.2}x",
            ratio.concurrency,
            ratio.store_to_raw,
            ratio.store_to_peer,
            ratio.store_to_raw_per_round,
            ratio.store_to_peer_per_round
        );
    }
    println!("(ratios of the medians above; then medians of the ratios within each round)");
    ratios
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = if args.quick {
        Plan {
            concurrency: args.concurrency.clone(),
            commands_c1: 400,
            commands: 2_000,
            warmup: 100,
            rounds: 1,
            payload_bytes: args.payload_bytes,
        }
    } else {
        Plan {
            concurrency: args.concurrency.clone(),
            commands_c1: args.commands_c1,
            commands: args.commands,
            warmup: args.warmup,
            rounds: args.rounds.max(1),
            payload_bytes: args.payload_bytes,
        }
    };
    if plan.concurrency.is_empty() || plan.concurrency.contains(&0) {
        bail!("concurrency levels must be >= 1");
    }
    let fixture = Arc::new(Fixture::new(args.payload_bytes));

    let database = format!("svcops_bench_{}", Uuid::new_v4().simple());
    let url = format!("{}/{database}", args.server_url.trim_end_matches('/'));
    println!(
        "svcops append benchmark: database {database}, {} CPU(s), load {} \
         (shared machine: other processes add noise)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!(
        "concurrency {:?}, {} commands at c=1 and {} above, {} warm-up, {} round(s)",
        plan.concurrency, plan.commands_c1, plan.commands, plan.warmup, plan.rounds
    );
    sqlx::Postgres::create_database(&url)
        .await
        .with_context(|| format!("create database {database} at {}", args.server_url))?;

    let outcome = run(&url, &plan, &fixture).await;

    if args.keep_database {
        println!("kept database {database}");
    } else if let Err(error) = sqlx::Postgres::force_drop_database(&url).await {
        eprintln!("could not drop {database}: {error}");
    }
    let results = outcome?;
    let ratios = report(&plan, &results);

    if args.check {
        let Some(top) = ratios.iter().max_by_key(|ratio| ratio.concurrency) else {
            bail!("no results");
        };
        let (concurrency, to_raw, to_peer) = (top.concurrency, top.store_to_raw, top.store_to_peer);
        if to_raw < 0.8 || to_peer < 2.0 {
            bail!(
                "target missed at c={concurrency}: store/raw {to_raw:.2} (>= 0.8), \
                 store/peer {to_peer:.2} (>= 2.0)"
            );
        }
        println!("targets met at c={concurrency}: store >= 0.8x raw and >= 2x peer");
    }
    Ok(())
}
