//! Intake through gRPC against the raw event-store append, side by side in one run (issue 7):
//!
//! - **append** (the baseline, the foundation benchmark's `store` workload):
//!   `PostgresStore::append` of one ~500-byte event to a new stream;
//! - **intake**: what a hotline call costs the front office: `OpenCase`, `StartContact`,
//!   five `AppendUtterance` and `EndContact`, one after another per case, over gRPC with
//!   tokens, against the same PostgreSQL; the office runs in this process with its
//!   projections and relay (to an embedded bus in a temporary directory) as in production.
//!
//! Both run `--concurrency` tasks; the workloads take turns in a rotating order each round,
//! and the table reports medians over the rounds: cases/s (appends/s), p50/p99 of a whole
//! case and of one RPC, and the ratio intake cases/s ÷ appends/s.
//!
//! Then **progress**: self-service `GetCaseProgress` (with the customer's phone) on cases
//! whose visit is en route, offered at `--progress-rate` requests/s on a fixed schedule
//! (open loop: latency counts from when a request was due, so queueing shows), with the
//! append baseline's p99 beside it.
//!
//! `cargo run --release -p front-office --example intake_bench -- --help`
//! (`make bench-intake`). Needs PostgreSQL at `SVCOPS_TEST_DATABASE_URL`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use svcops_bus::lag::Backpressure;
use svcops_eventstore::{
    Append, EventMetadata, EventStore, ExpectedVersion, NewEvent, PersonalDataSecret,
    PostgresStore, StreamId,
};
use svcops_kit::auth::{Authenticator, Role};
use svcops_kit::service::{Office, Ports};
use svcops_proto::common::v1 as types;
use svcops_proto::frontoffice::v1 as proto;
use svcops_proto::frontoffice::v1::case_service_client::CaseServiceClient;
use svcops_proto::frontoffice::v1::contact_service_client::ContactServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    /// Concurrent tasks for both workloads.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Cases per intake round.
    #[arg(long, default_value_t = 1_500)]
    cases: usize,
    /// Appends per baseline round.
    #[arg(long, default_value_t = 10_000)]
    appends: usize,
    /// Rounds; the table shows medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// GetCaseProgress requests per second offered.
    #[arg(long, default_value_t = 2_000)]
    progress_rate: u64,
    /// Seconds of GetCaseProgress per round.
    #[arg(long, default_value_t = 5)]
    progress_seconds: u64,
}

/// Opens `count` cases and notes a visit en route on each, as the middle office's events
/// would: what self-service is asked about. Returns each case's id and phone.
async fn cases_with_visits(
    channel: &Channel,
    agent: &str,
    store: &PostgresStore,
    count: usize,
) -> Vec<(String, String)> {
    use front_office::progress::{Progress, ProgressCommand, Stage, Visit};
    let progress: svcops_kit::aggregate::Executor<Progress> = svcops_kit::aggregate::Executor::new(
        Arc::new(store.clone()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let context = svcops_kit::events::CommandContext::from_caller(svcops_kit::Principal {
        subject: "middle-office".into(),
        role: Role::Service,
    });
    let mut cases = CaseServiceClient::new(channel.clone());
    let mut opened = Vec::new();
    for n in 0..count {
        let phone = format!("+86139{:08}", n);
        let case = cases
            .open_case(request(
                agent,
                proto::OpenCaseRequest {
                    customer_phone: phone.clone(),
                    category: types::CaseCategory::Repair.into(),
                    summary: "洗衣机漏水".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .case
            .unwrap();
        let case_id = Uuid::parse_str(&case.case_id).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let mut visit = Visit::new(Uuid::new_v4());
        for stage in [
            Stage::Scheduled,
            Stage::TechnicianAssigned,
            Stage::TechnicianEnRoute,
        ] {
            visit.stage = stage;
            visit.window = Some((now, now + time::Duration::hours(2)));
            visit.technician = Some("tech-1".into());
            visit.eta =
                (stage == Stage::TechnicianEnRoute).then(|| now + time::Duration::minutes(20));
            progress
                .execute(
                    case_id,
                    None,
                    &context,
                    ProgressCommand::Note {
                        case_id,
                        visit: visit.clone(),
                    },
                    svcops_kit::aggregate::Idempotency::none(),
                )
                .await
                .unwrap();
        }
        opened.push((case.case_id, phone));
    }
    opened
}

/// `rate` GetCaseProgress requests/s for `seconds`, each due at its slot; latency from the
/// slot. Returns the achieved rate and p50/p99 in ms.
async fn progress_load(
    channel: &Channel,
    service: &str,
    cases: &[(String, String)],
    rate: u64,
    seconds: u64,
) -> Measured {
    let total = (rate * seconds) as usize;
    let started = Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let next = Arc::new(AtomicUsize::new(0));
    let cases = Arc::new(cases.to_vec());
    // Enough workers that a slow answer does not hold back the schedule.
    let tasks: Vec<_> = (0..128)
        .map(|_| {
            let (next, cases, service) = (next.clone(), cases.clone(), service.to_owned());
            let mut client = CaseServiceClient::new(channel.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return latencies;
                    }
                    let due = started + interval * n as u32;
                    tokio::time::sleep_until(due.into()).await;
                    let (case_id, phone) = &cases[n % cases.len()];
                    let answer = client
                        .get_case_progress(request(
                            &service,
                            proto::GetCaseProgressRequest {
                                case_id: case_id.clone(),
                                customer_phone: phone.clone(),
                            },
                        ))
                        .await
                        .unwrap()
                        .into_inner();
                    assert_eq!(answer.visits.len(), 1);
                    latencies.push(due.elapsed().as_secs_f64() * 1e3);
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    summarise(started.elapsed(), total, latencies.clone(), latencies)
}

const UTTERANCES: [(&str, &str); 5] = [
    ("customer", "您好，我家客厅的吊灯一直在闪"),
    ("agent", "请问是哪个型号？购买多久了？"),
    ("customer", "PL-200，去年十月买的"),
    ("agent", "好的，我为您安排上门检修，请问明天上午方便吗？"),
    ("customer", "明天上午可以，谢谢"),
];

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(&values, 0.5)
}

/// One workload's round: rate, and latency percentiles in ms.
#[derive(Debug, Clone, Copy)]
struct Measured {
    per_second: f64,
    p50: f64,
    p99: f64,
    rpc_p50: f64,
    rpc_p99: f64,
}

fn summarise(
    elapsed: Duration,
    count: usize,
    mut whole: Vec<f64>,
    mut calls: Vec<f64>,
) -> Measured {
    whole.sort_by(f64::total_cmp);
    calls.sort_by(f64::total_cmp);
    Measured {
        per_second: count as f64 / elapsed.as_secs_f64(),
        p50: percentile(&whole, 0.5),
        p99: percentile(&whole, 0.99),
        rpc_p50: percentile(&calls, 0.5),
        rpc_p99: percentile(&calls, 0.99),
    }
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
        occurred_at: time::OffsetDateTime::now_utc(),
    }
}

async fn appends(store: &PostgresStore, count: usize, concurrency: usize) -> Measured {
    let next = Arc::new(AtomicUsize::new(0));
    let payload = vec![7u8; 500];
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (store, next, payload) = (store.clone(), next.clone(), payload.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let began = Instant::now();
                    store
                        .append(Append::new(
                            StreamId::for_aggregate("case", Uuid::new_v4()),
                            ExpectedVersion::NoStream,
                            vec![NewEvent {
                                event_id: Uuid::new_v4(),
                                event_type: "svcops.frontoffice.v1.CaseOpened".to_owned(),
                                payload: payload.clone(),
                                metadata: metadata(),
                            }],
                        ))
                        .await
                        .unwrap();
                    latencies.push(began.elapsed().as_secs_f64() * 1e3);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    summarise(elapsed, count, latencies.clone(), latencies)
}

struct Clients {
    cases: CaseServiceClient<Channel>,
    contacts: ContactServiceClient<Channel>,
    agent: String,
    service: String,
}

fn request<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", token.parse().unwrap());
    request
}

/// One hotline case: its latency, and each call's.
async fn one_case(clients: &mut Clients, n: usize, calls: &mut Vec<f64>) -> f64 {
    let began = Instant::now();
    let mut timed = Instant::now();
    let mut lap = |calls: &mut Vec<f64>| {
        calls.push(timed.elapsed().as_secs_f64() * 1e3);
        timed = Instant::now();
    };
    let case = clients
        .cases
        .open_case(request(
            &clients.agent,
            proto::OpenCaseRequest {
                request_id: format!("bench-{n}-{}", Uuid::new_v4()),
                customer_phone: format!("+86138{:08}", n % 100_000_000),
                category: types::CaseCategory::Repair.into(),
                summary: "吊灯闪烁".into(),
                product: "PL-200".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    lap(calls);
    let contact = clients
        .contacts
        .start_contact(request(
            &clients.service,
            proto::StartContactRequest {
                case_id: case.case_id,
                channel: proto::Channel::Hotline.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    lap(calls);
    for (index, (speaker, text)) in UTTERANCES.iter().enumerate() {
        let speaker = match *speaker {
            "customer" => proto::Speaker::Customer,
            _ => proto::Speaker::Agent,
        };
        let at = index as u32 * 3_000;
        clients
            .contacts
            .append_utterance(request(
                &clients.service,
                proto::AppendUtteranceRequest {
                    request_id: format!("{}/{index}", contact.contact_id),
                    contact_id: contact.contact_id.clone(),
                    speaker: speaker.into(),
                    text: (*text).to_owned(),
                    start_ms: at,
                    end_ms: at + 2_500,
                },
            ))
            .await
            .unwrap();
        lap(calls);
    }
    clients
        .contacts
        .end_contact(request(
            &clients.service,
            proto::EndContactRequest {
                contact_id: contact.contact_id,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    lap(calls);
    began.elapsed().as_secs_f64() * 1e3
}

async fn intake(
    channel: &Channel,
    tokens: &(String, String),
    count: usize,
    concurrency: usize,
) -> Measured {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let next = next.clone();
            let mut clients = Clients {
                cases: CaseServiceClient::new(channel.clone()),
                contacts: ContactServiceClient::new(channel.clone()),
                agent: tokens.0.clone(),
                service: tokens.1.clone(),
            };
            tokio::spawn(async move {
                let (mut whole, mut calls) = (Vec::new(), Vec::new());
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        return (whole, calls);
                    }
                    whole.push(one_case(&mut clients, n, &mut calls).await);
                }
            })
        })
        .collect();
    let (mut whole, mut calls) = (Vec::new(), Vec::new());
    for task in tasks {
        let (case_latencies, call_latencies) = task.await.unwrap();
        whole.extend(case_latencies);
        calls.extend(call_latencies);
    }
    summarise(started.elapsed(), count, whole, calls)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let server = std::env::var("SVCOPS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let url = format!(
        "{}/svcops_bench_{}",
        server.trim_end_matches('/'),
        Uuid::new_v4().simple()
    );
    let store = PostgresStore::connect(&url, 16).await.unwrap();
    let secret = PersonalDataSecret::new(
        format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()).as_bytes(),
    )
    .unwrap();
    let keys = Arc::new(store.personal_data_keys(secret).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let bus = svcops_bus::EmbeddedBus::open(&dir.path().join("bus.db"))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let office = front_office::FrontOffice::start(
        Ports {
            store: Arc::new(store.clone()),
            read_models: Arc::new(store.clone()),
            keys: Some(keys),
            bus: Arc::new(bus),
            backpressure: Backpressure { max_lag: None },
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let authenticator = Authenticator::new(Uuid::new_v4().simple().to_string().as_bytes()).unwrap();
    let mut routes = tonic::service::RoutesBuilder::default();
    office.add_routes(&mut routes, &authenticator);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let serving = {
        let (authenticator, shutdown) = (authenticator.clone(), shutdown.clone());
        tokio::spawn(async move {
            svcops_kit::server::serve(
                routes.routes(),
                front_office::FrontOffice::service_names(),
                Vec::new(),
                &authenticator,
                listener,
                shutdown,
            )
            .await
        })
    };
    let token = |role: Role| {
        let token = authenticator
            .issue(&format!("{role}-bench"), role, Duration::from_secs(3_600))
            .unwrap();
        format!("Bearer {token}")
    };
    let tokens = (token(Role::Agent), token(Role::Service));
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    println!(
        "intake benchmark: PostgreSQL, concurrency {}, {} CPU(s); a case = OpenCase + StartContact + {} AppendUtterance + EndContact",
        args.concurrency,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        UTTERANCES.len()
    );
    // Warm-up: connections, statement caches, the projections' first batches.
    intake(&channel, &tokens, 100, args.concurrency).await;
    appends(&store, 500, args.concurrency).await;

    let (mut append_rounds, mut intake_rounds) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        if round % 2 == 0 {
            append_rounds.push(appends(&store, args.appends, args.concurrency).await);
            intake_rounds.push(intake(&channel, &tokens, args.cases, args.concurrency).await);
        } else {
            intake_rounds.push(intake(&channel, &tokens, args.cases, args.concurrency).await);
            append_rounds.push(appends(&store, args.appends, args.concurrency).await);
        }
        let (a, i) = (append_rounds[round], intake_rounds[round]);
        println!(
            "round {}: append {:.0}/s, intake {:.0} cases/s ({:.0} RPC/s), ratio {:.3}",
            round + 1,
            a.per_second,
            i.per_second,
            i.per_second * (UTTERANCES.len() + 3) as f64,
            i.per_second / a.per_second
        );
    }
    let with_visits = cases_with_visits(&channel, &tokens.0, &store, 500).await;
    progress_load(&channel, &tokens.1, &with_visits, args.progress_rate, 1).await;
    let mut progress_rounds = Vec::new();
    for round in 0..args.rounds {
        let measured = progress_load(
            &channel,
            &tokens.1,
            &with_visits,
            args.progress_rate,
            args.progress_seconds,
        )
        .await;
        println!(
            "round {}: progress offered {}/s, served {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
            round + 1,
            args.progress_rate,
            measured.per_second,
            measured.p50,
            measured.p99
        );
        progress_rounds.push(measured);
    }
    let med =
        |rounds: &[Measured], pick: fn(&Measured) -> f64| median(rounds.iter().map(pick).collect());
    println!();
    println!("| workload | rate /s | p50 ms | p99 ms | one RPC p50 ms | one RPC p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, rounds) in [
        ("append (baseline)", &append_rounds),
        ("intake, cases", &intake_rounds),
        ("GetCaseProgress, self-service", &progress_rounds),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            med(rounds, |m| m.per_second),
            med(rounds, |m| m.p50),
            med(rounds, |m| m.p99),
            med(rounds, |m| m.rpc_p50),
            med(rounds, |m| m.rpc_p99),
        );
    }
    let ratios: Vec<f64> = append_rounds
        .iter()
        .zip(&intake_rounds)
        .map(|(a, i)| i.per_second / a.per_second)
        .collect();
    println!();
    println!(
        "intake cases/s ÷ appends/s: median {:.3} (target ≥ 0.7); per RPC: {:.3}",
        median(ratios.clone()),
        median(ratios) * (UTTERANCES.len() + 3) as f64
    );

    println!(
        "GetCaseProgress at {}/s offered: p99 median {:.2} ms (target ≤ 5 ms); append p99 median {:.2} ms",
        args.progress_rate,
        med(&progress_rounds, |m| m.p99),
        med(&append_rounds, |m| m.p99)
    );

    shutdown.cancel();
    serving.await.unwrap().unwrap();
    office.stopped().await;
    store.pool().close().await;
    use sqlx::migrate::MigrateDatabase;
    let _ = sqlx::Postgres::force_drop_database(&url).await;
}
