//! Harness for system tests: boots svcops services as real processes on port 0 against the
//! local PostgreSQL and Kafka-protocol broker, and waits on gRPC health (never on sleep).
//!
//! The service binaries must be built first (`make test` does `cargo build --bins`).
//! Environment: `SVCOPS_TEST_DATABASE_URL` (server URL, default
//! `postgres://postgres@127.0.0.1:5432`), `SVCOPS_TEST_KAFKA` (default `127.0.0.1:9092`).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use svcops_kit::auth::{Authenticator, Role};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub const OFFICES: [&str; 4] = ["front-office", "middle-office", "back-office", "listen-in"];

/// How long a service may take to start and report SERVING.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub fn binary(name: &str) -> PathBuf {
    // target/<profile>/deps/<test binary> -> target/<profile>/<name>
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the service binaries first (`cargo build --bins`, or `make test`)",
        path.display()
    );
    path
}

/// One running service process.
pub struct Service {
    pub name: &'static str,
    pub address: String,
    env: HashMap<String, String>,
    child: Child,
}

impl Service {
    async fn spawn(name: &'static str, env: HashMap<String, String>) -> Service {
        let mut child = Command::new(binary(name))
            .envs(&env)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let address = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(address) = line.strip_prefix("listening on ") {
                    return address.trim().to_owned();
                }
            }
            panic!("{name} exited before listening");
        })
        .await
        .unwrap_or_else(|_| panic!("{name} did not start listening in time"));
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let service = Service {
            name,
            address: format!("http://{address}"),
            env,
            child,
        };
        service.wait_serving().await;
        service
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.address.clone())
            .expect("valid address")
            .connect()
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.name))
    }

    async fn wait_serving(&self) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(channel) = Channel::from_shared(self.address.clone())
                .expect("address")
                .connect()
                .await
            {
                let status = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                if let Ok(response) = status
                    && response.get_ref().status == ServingStatus::Serving as i32
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never became SERVING",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id, as the service names itself in leases (`host/pid/suffix`).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// This service's own database.
    pub fn database_url(&self) -> &str {
        &self.env["SVCOPS_DATABASE_URL"]
    }

    /// SIGTERM: the graceful way down. Returns the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill");
        assert!(sent.success(), "could not signal {}", self.name);
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within 30 s of SIGTERM", self.name))
            .expect("wait")
    }

    /// SIGKILL: no drain, no flush, no goodbye.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill");
    }

    /// Starts the same service again (same database, same bus namespace, new port).
    pub async fn restart(&mut self) {
        let _ = self.child.kill().await;
        *self = Service::spawn(self.name, self.env.clone()).await;
    }
}

/// The four offices as separate processes, isolated from other clusters on the same
/// PostgreSQL (own databases) and broker (own topic namespace).
pub struct Cluster {
    pub services: Vec<Service>,
    /// Kafka bootstrap servers and this cluster's topic namespace on them.
    pub kafka: String,
    pub namespace: String,
    authenticator: Authenticator,
}

impl Cluster {
    pub async fn start() -> Cluster {
        Self::start_with(&[]).await
    }

    /// Starts the cluster with extra environment for every service.
    pub async fn start_with(extra_env: &[(&str, &str)]) -> Cluster {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let database = std::env::var("SVCOPS_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let kafka = std::env::var("SVCOPS_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
        let namespace = format!("test{id}");
        // Generated per run: a test cluster never sees a real secret.
        let personal_data_secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut services = Vec::new();
        for name in OFFICES {
            let env = HashMap::from([
                ("SVCOPS_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
                (
                    "SVCOPS_DATABASE_URL".to_owned(),
                    format!("{database}/svcops_{}_{id}", name.replace('-', "_")),
                ),
                ("SVCOPS_DATABASE_POOL".to_owned(), "4".to_owned()),
                ("SVCOPS_KAFKA_BOOTSTRAP".to_owned(), kafka.clone()),
                ("SVCOPS_BUS_NAMESPACE".to_owned(), namespace.clone()),
                ("SVCOPS_TOKEN_SECRET".to_owned(), secret.clone()),
            ]);
            let mut env = env;
            // Only the office that holds personal data gets the secret protecting it.
            if name == "front-office" {
                env.insert(
                    "SVCOPS_PERSONAL_DATA_SECRET".to_owned(),
                    personal_data_secret.clone(),
                );
            }
            env.extend(
                extra_env
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
            );
            services.push(Service::spawn(name, env).await);
        }
        Cluster {
            services,
            kafka,
            namespace,
            authenticator: Authenticator::new(secret.as_bytes()).expect("secret"),
        }
    }

    /// Starts another replica of `name`: same database, same consumer groups, its own port.
    pub async fn add_replica(&mut self, name: &str) {
        let first = self
            .services
            .iter()
            .find(|service| service.name == name)
            .unwrap_or_else(|| panic!("no service {name}"));
        let (name, env) = (first.name, first.env.clone());
        self.services.push(Service::spawn(name, env).await);
    }

    /// Every replica of `name`.
    pub fn replicas(&mut self, name: &str) -> Vec<&mut Service> {
        self.services
            .iter_mut()
            .filter(|service| service.name == name)
            .collect()
    }

    pub fn service(&mut self, name: &str) -> &mut Service {
        self.services
            .iter_mut()
            .find(|service| service.name == name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// A bearer token for `role`.
    pub fn token(&self, role: Role) -> String {
        self.authenticator
            .issue(&format!("test-{role}"), role, Duration::from_secs(3600))
            .expect("token")
    }

    /// A request carrying a token for `role`.
    pub fn request<T>(&self, role: Role, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token(role))
                .parse()
                .expect("ascii"),
        );
        request
    }
}

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that no event is on `case_id`'s timeline twice.
pub fn assert_each_event_once(
    case_id: &str,
    entries: &[svcops_proto::listenin::v1::TimelineEntry],
) {
    let mut seen = std::collections::HashSet::new();
    for entry in entries {
        assert!(
            seen.insert(entry.event_id.as_str()),
            "case {case_id}: event {} ({}) is on the timeline twice",
            entry.event_id,
            entry.event_type
        );
    }
}

/// A case's timeline so far (`WatchCase` without following), once it holds an event of
/// every type in `required`; `None` while it does not (or listen-in does not answer yet).
pub async fn timeline_holding(
    mut listen_in: svcops_proto::listenin::v1::listen_in_service_client::ListenInServiceClient<
        Channel,
    >,
    request: tonic::Request<svcops_proto::listenin::v1::WatchCaseRequest>,
    required: &[&str],
) -> Option<Vec<svcops_proto::listenin::v1::TimelineEntry>> {
    use svcops_proto::listenin::v1::watch_case_response::Kind;
    use tokio_stream::StreamExt;
    let mut stream = listen_in.watch_case(request).await.ok()?.into_inner();
    let mut entries = Vec::new();
    while let Some(message) = stream.next().await {
        if let Some(Kind::Entry(entry)) = message.ok()?.kind {
            entries.push(entry);
        }
    }
    required
        .iter()
        .all(|kind| entries.iter().any(|entry| entry.event_type == *kind))
        .then_some(entries)
}

impl Cluster {
    /// The back office's statistics once they count at least `cases` cases and work orders.
    pub async fn stats_counting(
        &self,
        back_office: svcops_proto::backoffice::v1::back_office_service_client::BackOfficeServiceClient<Channel>,
        cases: u64,
        timeout: Duration,
    ) -> svcops_proto::backoffice::v1::GetServiceStatsResponse {
        use svcops_proto::backoffice::v1::GetServiceStatsRequest;
        eventually(
            "the back office to count every case and work order",
            timeout,
            || {
                let mut back_office = back_office.clone();
                let request = self.request(Role::Manager, GetServiceStatsRequest {});
                async move {
                    let stats = back_office
                        .get_service_stats(request)
                        .await
                        .ok()?
                        .into_inner();
                    (stats.cases_tracked >= cases && stats.work_orders_tracked >= cases)
                        .then_some(stats)
                }
            },
        )
        .await
    }

    /// A case's timeline (caught up, as an executive), once it holds an event of every type
    /// in `required`.
    pub async fn timeline_once_holding(
        &self,
        listen_in: svcops_proto::listenin::v1::listen_in_service_client::ListenInServiceClient<
            Channel,
        >,
        case_id: &str,
        required: &[&str],
        timeout: Duration,
    ) -> Vec<svcops_proto::listenin::v1::TimelineEntry> {
        use svcops_proto::listenin::v1::WatchCaseRequest;
        eventually("the case's timeline to hold its events", timeout, || {
            let request = self.request(
                Role::Executive,
                WatchCaseRequest {
                    case_id: case_id.to_owned(),
                    catch_up_only: true,
                    after_sequence: 0,
                },
            );
            timeline_holding(listen_in.clone(), request, required)
        })
        .await
    }
}
