//! End to end through the pipeline (`make bench-e2e`): `svcops up` (embedded) as its own
//! process, driven open loop at fixed offered rates of repair `OpenCase`, stepping up.
//!
//! - Every step offers `rate` cases/s for `--step-seconds`. A sample of the cases (about
//!   `--watched-per-second` of them) is followed with `WatchCase` from the moment it is
//!   opened; its end-to-end latency is the time from sending `OpenCase` to the arrival of the
//!   last of its four expected timeline entries (front, middle and back office). A step is
//!   sustained when every case was accepted, every sampled case completed, and the sampled
//!   p99 is at most 100 ms.
//! - Beside it, in the same run: the front door's own saturation rate (closed loop, 32 at
//!   once, nothing watched), server CPU per case (from `/proc/<pid>/stat`), and `WatchCase`
//!   catch-up of settled cases (p50/p99 to `CaughtUp`).
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
#[command(about = "End-to-end rate of repair cases through svcops, embedded")]
struct Args {
    /// The `svcops` binary to run (`svcops up`).
    #[arg(long, default_value = "target/release/svcops")]
    svcops: PathBuf,
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

struct Server {
    child: tokio::process::Child,
    address: String,
    _data: tempfile::TempDir,
    authenticator: Authenticator,
}

impl Server {
    async fn start(binary: &PathBuf) -> anyhow::Result<Self> {
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
            child,
            address,
            _data: data,
            authenticator,
        };
        server.wait_serving().await?;
        Ok(server)
    }

    async fn wait_serving(&self) -> anyhow::Result<()> {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(channel) = self.channel().await
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

    async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(self.address.clone())?
            .connect()
            .await?)
    }

    fn token(&self, role: Role) -> anyhow::Result<String> {
        Ok(self
            .authenticator
            .issue("bench", role, Duration::from_secs(24 * 3600))?)
    }

    /// CPU time the server process has used (user + system).
    fn cpu(&self) -> Duration {
        let Some(pid) = self.child.id() else {
            return Duration::ZERO;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
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
}

async fn step(
    server: &Server,
    channels: &[Channel],
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
    let started = Instant::now();
    let until = started + Duration::from_secs(args.step_seconds) + COMPLETION_GRACE;
    let mut requests = tokio::task::JoinSet::new();
    let mut watchers = tokio::task::JoinSet::new();
    for sent_count in 0..total {
        // Open loop: each case at its time, whatever the ones before are doing.
        let at = started + Duration::from_secs_f64(sent_count as f64 / f64::from(rate));
        tokio::time::sleep_until(at.into()).await;
        let index = next_index.fetch_add(1, Ordering::Relaxed);
        let channel = channels[index as usize % channels.len()].clone();
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
            let opened = CaseServiceClient::new(channel.clone())
                .open_case(request(&agent, repair_case(index)))
                .await;
            match opened {
                Ok(response) => {
                    accept.lock().push(sent.elapsed());
                    if sampled && let Some(case) = response.into_inner().case {
                        let listen_in = ListenInServiceClient::new(channel);
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
    let mut accept = std::mem::take(&mut *accept.lock());
    accept.sort();
    end_to_end.sort();
    let accepted = accept.len() as u64;
    Ok(Step {
        accepted,
        refused: refused.load(Ordering::Relaxed),
        accept,
        end_to_end,
        incomplete,
        cpu_per_case: cpu / u32::try_from(accepted.max(1)).unwrap_or(u32::MAX),
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

/// `WatchCase` catch-up of settled cases: time to `CaughtUp`, sorted.
async fn catch_up(server: &Server, channel: Channel, cases: u64) -> anyhow::Result<Vec<Duration>> {
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
            ListenInServiceClient::new(channel.clone()),
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
        let mut stream = ListenInServiceClient::new(channel.clone())
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
    let server = Server::start(&args.svcops).await?;
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(server.channel().await?);
    }
    let next_index = AtomicU64::new(0);
    println!(
        "embedded (svcops up), steps of {} s, about {} cases/s followed with WatchCase",
        args.step_seconds, args.watched_per_second
    );
    println!(
        "{:>8} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}  sustained",
        "offered",
        "accepted",
        "refused",
        "accept p50",
        "accept p99",
        "e2e p50",
        "e2e p99",
        "incomplete",
        "cpu/case"
    );
    let mut sustained_rate = 0;
    for &rate in &args.rates {
        let step = step(&server, &channels, rate, &args, &next_index).await?;
        let p99 = percentile(&step.end_to_end, 0.99);
        let sustained =
            step.refused == 0 && step.incomplete == 0 && p99 <= Duration::from_millis(100);
        println!(
            "{:>8} {:>9} {:>8} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>10} {:>7.2}ms  {}",
            rate,
            step.accepted,
            step.refused,
            ms(percentile(&step.accept, 0.5)),
            ms(percentile(&step.accept, 0.99)),
            ms(percentile(&step.end_to_end, 0.5)),
            ms(p99),
            step.incomplete,
            ms(step.cpu_per_case),
            if sustained { "yes" } else { "no" }
        );
        if !sustained {
            break;
        }
        sustained_rate = rate;
    }
    let front_door = saturation(&server, &channels, args.saturation_seconds, &next_index).await?;
    println!("front door saturation (closed loop, 32 in flight): {front_door:.0} cases/s");
    println!(
        "highest sustained end to end: {sustained_rate} cases/s; ratio to the front door: {:.2}",
        f64::from(sustained_rate) / front_door
    );
    // Let the saturation burst drain before timing catch-ups.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let times = catch_up(&server, channels[0].clone(), 50).await?;
    println!(
        "WatchCase catch-up of a settled case: p50 {:.1} ms, p99 {:.1} ms ({} cases)",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        times.len()
    );
    Ok(())
}
