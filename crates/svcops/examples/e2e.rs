//! End to end through the pipeline (`make bench-e2e`): `svcops up` (embedded) as its own
//! process, or with `--cluster` the four office binaries on the local PostgreSQL and broker
//! (`SVCOPS_TEST_DATABASE_URL`, `SVCOPS_TEST_KAFKA`, as the system tests), driven open loop at
//! fixed offered rates of repair `OpenCase`, stepping up.
//!
//! - Every step offers `rate` cases/s for `--step-seconds`. A sample of the cases (about
//!   `--watched-per-second` of them) is followed with `WatchCase` from the moment it is
//!   opened; its end-to-end latency is the time from sending `OpenCase` to the arrival of the
//!   last of its four expected timeline entries (front, middle and back office). A step is
//!   sustained when every case was accepted, every sampled case completed, and the sampled
//!   p99 is at most 100 ms.
//! - Beside it, in the same run: the front door's own saturation rate (closed loop, 32 at
//!   once, nothing watched), CPU per case of the svcops processes (`/proc/<pid>/stat`) and of
//!   the whole machine but this load generator (`/proc/stat`: PostgreSQL and the broker
//!   included), fsyncs per case (`fsync` + `fdatasync` machine-wide, counted with `perf stat`
//!   when it is there), and `WatchCase` catch-up of settled cases (p50/p99 to `CaughtUp`).
//!
//! `cargo run --release -p svcops --example e2e -- --help`

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use parking_lot::Mutex;
use svcops_kit::auth::{Authenticator, Role};
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::frontoffice::v1::case_service_client::CaseServiceClient;
use svcops_proto::listenin::v1 as listen;
use svcops_proto::listenin::v1::listen_in_service_client::ListenInServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// The entries a repair case's timeline holds once every office has reacted.
const EXPECTED: [&str; 4] = [
    "svcops.frontoffice.v1.CaseOpened",
    "svcops.middleoffice.v1.WorkOrderOpened",
    "svcops.backoffice.v1.SlaOnSiteTargetSet",
    "svcops.backoffice.v1.ClosedLoopItemOpened",
];

/// A sampled case that has not completed this long after the end of its step failed it.
const COMPLETION_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(about = "End-to-end rate of repair cases through svcops, embedded or as a cluster")]
struct Args {
    /// The `svcops` binary to run (`svcops up`).
    #[arg(long, default_value = "target/release/svcops")]
    svcops: PathBuf,
    /// Run the four office binaries (next to this example's directory) on PostgreSQL and
    /// the broker instead of `svcops up`.
    #[arg(long)]
    cluster: bool,
    /// Offered rates, cases/s, tried in order until one is not sustained.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,200,400,600,800,1000,1200"
    )]
    rates: Vec<u32>,
    /// Length of each step.
    #[arg(long, default_value_t = 20)]
    step_seconds: u64,
    /// Cases followed with `WatchCase` per second of a step.
    #[arg(long, default_value_t = 20)]
    watched_per_second: u32,
    /// Length of the closed-loop saturation run of the front door.
    #[arg(long, default_value_t = 10)]
    saturation_seconds: u64,
}

/// What runs svcops for the benchmark.
enum Processes {
    Embedded {
        child: tokio::process::Child,
        _data: tempfile::TempDir,
        authenticator: Authenticator,
    },
    Cluster(tests::Cluster),
}

struct Server {
    processes: Processes,
    /// Where `OpenCase` goes, and where `WatchCase` goes.
    front: String,
    listen_in: String,
}

impl Server {
    async fn start(args: &Args) -> anyhow::Result<Self> {
        if args.cluster {
            let cluster = tests::Cluster::start().await;
            let address = |name: &str| {
                cluster
                    .services
                    .iter()
                    .find(|service| service.name == name)
                    .map(|service| service.address.clone())
                    .context("service missing")
            };
            let (front, listen_in) = (address("front-office")?, address("listen-in")?);
            return Ok(Self {
                processes: Processes::Cluster(cluster),
                front,
                listen_in,
            });
        }
        let binary = &args.svcops;
        let data = tempfile::tempdir()?;
        let mut child = tokio::process::Command::new(binary)
            .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let address = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.strip_prefix("svcops is running on ")
                    && let Some(address) = rest.split_whitespace().next()
                {
                    return Ok(address.to_owned());
                }
            }
            bail!("svcops up exited before serving")
        })
        .await
        .context("svcops up did not start in time")??;
        // Keep reading, so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let secret = std::fs::read_to_string(data.path().join("token-secret"))?;
        let authenticator = Authenticator::new(secret.trim().as_bytes())?;
        let server = Self {
            processes: Processes::Embedded {
                child,
                _data: data,
                authenticator,
            },
            front: address.clone(),
            listen_in: address,
        };
        server.wait_serving().await?;
        Ok(server)
    }

    fn mode(&self) -> &'static str {
        match self.processes {
            Processes::Embedded { .. } => "embedded (svcops up, SQLite, embedded bus)",
            Processes::Cluster(_) => "cluster (four office processes, PostgreSQL, the broker)",
        }
    }

    async fn wait_serving(&self) -> anyhow::Result<()> {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(channel) = connect(&self.front).await
                && let Ok(response) = HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await
                && response.into_inner().status == ServingStatus::Serving as i32
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("svcops did not become healthy")
    }

    /// A few connections to each of the two addresses.
    async fn channels(&self) -> anyhow::Result<Channels> {
        let mut channels = Channels {
            front: Vec::new(),
            listen_in: Vec::new(),
        };
        for _ in 0..4 {
            channels.front.push(connect(&self.front).await?);
            channels.listen_in.push(connect(&self.listen_in).await?);
        }
        Ok(channels)
    }

    fn token(&self, role: Role) -> anyhow::Result<String> {
        match &self.processes {
            Processes::Embedded { authenticator, .. } => {
                Ok(authenticator.issue("bench", role, Duration::from_secs(24 * 3600))?)
            }
            Processes::Cluster(cluster) => Ok(cluster.token(role)),
        }
    }

    /// CPU time the svcops processes have used (user + system).
    fn cpu(&self) -> Duration {
        let pids: Vec<u32> = match &self.processes {
            Processes::Embedded { child, .. } => child.id().into_iter().collect(),
            Processes::Cluster(cluster) => cluster
                .services
                .iter()
                .filter_map(tests::Service::pid)
                .collect(),
        };
        pids.into_iter()
            .map(|pid| process_cpu(&format!("/proc/{pid}/stat")))
            .sum()
    }
}

async fn connect(address: &str) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(address.to_owned())?.connect().await?)
}

struct Channels {
    front: Vec<Channel>,
    listen_in: Vec<Channel>,
}

/// User + system CPU of the process whose `stat` file this is.
fn process_cpu(stat_path: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(stat_path) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|index| fields.get(*index)?.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// CPU time the whole machine has been busy, less this load generator's own.
fn machine_cpu_but_ours() -> Duration {
    let busy_ticks = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let line = stat.lines().next()?.to_owned();
            // cpu user nice system idle iowait irq softirq steal …
            let fields: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|field| field.parse().ok())
                .collect();
            Some(
                [0, 1, 2, 5, 6, 7]
                    .iter()
                    .filter_map(|index| fields.get(*index))
                    .sum::<u64>(),
            )
        })
        .unwrap_or(0);
    Duration::from_millis(busy_ticks * 10).saturating_sub(process_cpu("/proc/self/stat"))
}

/// Counts `fsync` and `fdatasync` calls on the whole machine while it lives, with
/// `perf stat`; `None` where perf or its syscall tracepoints are not available.
struct SyncCounter {
    child: std::process::Child,
    output: PathBuf,
}

impl SyncCounter {
    fn start(directory: &std::path::Path) -> Option<Self> {
        let output = directory.join(format!("perf-{}.csv", uuid::Uuid::new_v4().simple()));
        let child = std::process::Command::new("perf")
            .args([
                "stat",
                "-x,",
                "-a",
                "-e",
                "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync",
                "-o",
            ])
            .arg(&output)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        Some(Self { child, output })
    }

    /// Stops counting; the count, if perf produced one.
    fn stop(mut self) -> Option<u64> {
        let interrupted = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .ok()?;
        if !interrupted.success() {
            return None;
        }
        self.child.wait().ok()?;
        let report = std::fs::read_to_string(&self.output).ok()?;
        let _ = std::fs::remove_file(&self.output);
        let counts: Vec<u64> = report
            .lines()
            .filter(|line| line.contains("syscalls:sys_enter_f"))
            .filter_map(|line| line.split(',').next()?.trim().parse().ok())
            .collect();
        (counts.len() == 2).then(|| counts.iter().sum())
    }
}

fn repair_case(index: u64) -> front::OpenCaseRequest {
    front::OpenCaseRequest {
        request_id: String::new(),
        customer_phone: format!("+86138{:08}", index % 100_000_000),
        category: common::CaseCategory::Repair.into(),
        priority: common::Priority::High.into(),
        channel: front::Channel::Hotline.into(),
        summary: "ceiling lamp flickers".into(),
        product: "PL-200".into(),
        serial_number: format!("SN-{index}"),
        ..Default::default()
    }
}

fn request<T>(token: &str, body: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Follows `case_id` until its timeline holds every expected entry; the time that took
/// from `sent`, or `None` if it did not within `until`.
async fn watch(
    mut listen_in: ListenInServiceClient<Channel>,
    token: String,
    case_id: String,
    sent: Instant,
    until: Instant,
) -> Option<Duration> {
    let body = listen::WatchCaseRequest {
        case_id,
        catch_up_only: false,
        after_sequence: 0,
    };
    let followed = async {
        let mut stream = listen_in
            .watch_case(request(&token, body))
            .await
            .ok()?
            .into_inner();
        let mut seen = Vec::new();
        while let Some(message) = stream.next().await {
            if let Some(listen::watch_case_response::Kind::Entry(entry)) = message.ok()?.kind
                && EXPECTED.contains(&entry.event_type.as_str())
                && !seen.contains(&entry.event_type)
            {
                seen.push(entry.event_type);
                if seen.len() == EXPECTED.len() {
                    return Some(sent.elapsed());
                }
            }
        }
        None
    };
    tokio::time::timeout_at(until.into(), followed)
        .await
        .ok()
        .flatten()
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

struct Step {
    accepted: u64,
    refused: u64,
    accept: Vec<Duration>,
    end_to_end: Vec<Duration>,
    incomplete: u64,
    cpu_per_case: Duration,
    machine_cpu_per_case: Duration,
    fsyncs_per_case: Option<f64>,
}

async fn step(
    server: &Server,
    channels: &Channels,
    rate: u32,
    args: &Args,
    next_index: &AtomicU64,
) -> anyhow::Result<Step> {
    let agent = server.token(Role::Agent)?;
    let executive = server.token(Role::Executive)?;
    let total = u64::from(rate) * args.step_seconds;
    let sample_every = (u64::from(rate) / u64::from(args.watched_per_second.max(1))).max(1);
    let accept = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let cpu_before = server.cpu();
    let machine_cpu_before = machine_cpu_but_ours();
    let syncs = SyncCounter::start(&std::env::temp_dir());
    let started = Instant::now();
    let until = started + Duration::from_secs(args.step_seconds) + COMPLETION_GRACE;
    let mut requests = tokio::task::JoinSet::new();
    let mut watchers = tokio::task::JoinSet::new();
    for sent_count in 0..total {
        // Open loop: each case at its time, whatever the ones before are doing.
        let at = started + Duration::from_secs_f64(sent_count as f64 / f64::from(rate));
        tokio::time::sleep_until(at.into()).await;
        let index = next_index.fetch_add(1, Ordering::Relaxed);
        let channel = channels.front[index as usize % channels.front.len()].clone();
        let listen_in_channel =
            channels.listen_in[index as usize % channels.listen_in.len()].clone();
        let (agent, executive, accept, refused) = (
            agent.clone(),
            executive.clone(),
            accept.clone(),
            refused.clone(),
        );
        let sampled = sent_count % sample_every == 0;
        let (watched_sender, watched) = tokio::sync::oneshot::channel();
        if sampled {
            watchers.spawn(async move { watched.await.ok().flatten() });
        }
        requests.spawn(async move {
            let sent = Instant::now();
            let opened = CaseServiceClient::new(channel)
                .open_case(request(&agent, repair_case(index)))
                .await;
            match opened {
                Ok(response) => {
                    accept.lock().push(sent.elapsed());
                    if sampled && let Some(case) = response.into_inner().case {
                        let listen_in = ListenInServiceClient::new(listen_in_channel);
                        let latency = watch(listen_in, executive, case.case_id, sent, until).await;
                        let _ = watched_sender.send(latency);
                    }
                }
                Err(_) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while requests.join_next().await.is_some() {}
    let mut end_to_end = Vec::new();
    let mut incomplete = 0;
    while let Some(latency) = watchers.join_next().await {
        match latency.ok().flatten() {
            Some(latency) => end_to_end.push(latency),
            None => incomplete += 1,
        }
    }
    let cpu = server.cpu().saturating_sub(cpu_before);
    let machine_cpu = machine_cpu_but_ours().saturating_sub(machine_cpu_before);
    let fsyncs = syncs.and_then(SyncCounter::stop);
    let mut accept = std::mem::take(&mut *accept.lock());
    accept.sort();
    end_to_end.sort();
    let accepted = accept.len() as u64;
    let cases = u32::try_from(accepted.max(1)).unwrap_or(u32::MAX);
    Ok(Step {
        accepted,
        refused: refused.load(Ordering::Relaxed),
        accept,
        end_to_end,
        incomplete,
        cpu_per_case: cpu / cases,
        machine_cpu_per_case: machine_cpu / cases,
        fsyncs_per_case: fsyncs.map(|count| count as f64 / f64::from(cases)),
    })
}

/// Cases/s the front door accepts with 32 requests always in flight, nothing watched.
async fn saturation(
    server: &Server,
    channels: &[Channel],
    seconds: u64,
    next_index: &AtomicU64,
) -> anyhow::Result<f64> {
    let agent = server.token(Role::Agent)?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let accepted = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for worker in 0..32usize {
        let channel = channels[worker % channels.len()].clone();
        let (agent, accepted) = (agent.clone(), accepted.clone());
        let first = next_index.fetch_add(1_000_000, Ordering::Relaxed);
        tasks.spawn(async move {
            let mut cases = CaseServiceClient::new(channel);
            let mut index = first;
            while Instant::now() < deadline {
                index += 1;
                if cases
                    .open_case(request(&agent, repair_case(index)))
                    .await
                    .is_ok()
                {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(accepted.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Opens one case and follows it until every office has reacted: consumer groups have
/// joined and every connection is up before anything is timed. How long that took.
async fn warm_up(server: &Server, channels: &Channels) -> anyhow::Result<Duration> {
    let sent = Instant::now();
    let case = CaseServiceClient::new(channels.front[0].clone())
        .open_case(request(
            &server.token(Role::Agent)?,
            repair_case(800_000_000),
        ))
        .await?
        .into_inner()
        .case
        .context("case")?;
    watch(
        ListenInServiceClient::new(channels.listen_in[0].clone()),
        server.token(Role::Executive)?,
        case.case_id,
        sent,
        sent + Duration::from_secs(120),
    )
    .await
    .context("the first case did not go through every office within 120 s")
}

/// `WatchCase` catch-up of settled cases: time to `CaughtUp`, sorted.
async fn catch_up(
    server: &Server,
    channels: &Channels,
    cases: u64,
) -> anyhow::Result<Vec<Duration>> {
    let (channel, listen_in) = (channels.front[0].clone(), channels.listen_in[0].clone());
    let agent = server.token(Role::Agent)?;
    let executive = server.token(Role::Executive)?;
    let mut case_ids = Vec::new();
    for index in 0..cases {
        let case = CaseServiceClient::new(channel.clone())
            .open_case(request(&agent, repair_case(900_000_000 + index)))
            .await?
            .into_inner()
            .case
            .context("case")?;
        case_ids.push(case.case_id);
    }
    // Settled: every expected entry is there.
    for case_id in &case_ids {
        let settled = watch(
            ListenInServiceClient::new(listen_in.clone()),
            executive.clone(),
            case_id.clone(),
            Instant::now(),
            Instant::now() + Duration::from_secs(30),
        )
        .await;
        if settled.is_none() {
            bail!("case {case_id} did not settle");
        }
    }
    let mut times = Vec::new();
    for case_id in &case_ids {
        let started = Instant::now();
        let body = listen::WatchCaseRequest {
            case_id: case_id.clone(),
            catch_up_only: true,
            after_sequence: 0,
        };
        let mut stream = ListenInServiceClient::new(listen_in.clone())
            .watch_case(request(&executive, body))
            .await?
            .into_inner();
        while let Some(message) = stream.next().await {
            if let Some(listen::watch_case_response::Kind::CaughtUp(_)) = message?.kind {
                times.push(started.elapsed());
                break;
            }
        }
    }
    times.sort();
    Ok(times)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Server::start(&args).await?;
    let channels = server.channels().await?;
    let next_index = AtomicU64::new(0);
    let warm = warm_up(&server, &channels).await?;
    println!(
        "warm: a first case went through every office in {:.0} ms (consumer groups joined)",
        ms(warm)
    );
    println!(
        "{}, steps of {} s, about {} cases/s followed with WatchCase",
        server.mode(),
        args.step_seconds,
        args.watched_per_second
    );
    println!(
        "{:>8} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>8}  sustained",
        "offered",
        "accepted",
        "refused",
        "accept p50",
        "accept p99",
        "e2e p50",
        "e2e p99",
        "incomplete",
        "cpu/case",
        "all cpu",
        "fsyncs"
    );
    let mut sustained_rate = 0;
    for &rate in &args.rates {
        let step = step(&server, &channels, rate, &args, &next_index).await?;
        let p99 = percentile(&step.end_to_end, 0.99);
        let sustained =
            step.refused == 0 && step.incomplete == 0 && p99 <= Duration::from_millis(100);
        println!(
            "{:>8} {:>9} {:>8} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>10} {:>7.2}ms {:>7.2}ms {:>8}  {}",
            rate,
            step.accepted,
            step.refused,
            ms(percentile(&step.accept, 0.5)),
            ms(percentile(&step.accept, 0.99)),
            ms(percentile(&step.end_to_end, 0.5)),
            ms(p99),
            step.incomplete,
            ms(step.cpu_per_case),
            ms(step.machine_cpu_per_case),
            step.fsyncs_per_case
                .map_or_else(|| "n/a".to_owned(), |fsyncs| format!("{fsyncs:.2}")),
            if sustained { "yes" } else { "no" }
        );
        if !sustained {
            break;
        }
        sustained_rate = rate;
    }
    let front_door = saturation(
        &server,
        &channels.front,
        args.saturation_seconds,
        &next_index,
    )
    .await?;
    println!("front door saturation (closed loop, 32 in flight): {front_door:.0} cases/s");
    println!(
        "highest sustained end to end: {sustained_rate} cases/s; ratio to the front door: {:.2}",
        f64::from(sustained_rate) / front_door
    );
    // Let the saturation burst drain before timing catch-ups.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let times = catch_up(&server, &channels, 50).await?;
    println!(
        "WatchCase catch-up of a settled case: p50 {:.1} ms, p99 {:.1} ms ({} cases)",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        times.len()
    );
    Ok(())
}
