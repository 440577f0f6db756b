//! svcops listen-in: executives follow live cases across every office.
//!
//! It consumes all four topics (`app`) into per-case timelines in its own store
//! (`timeline`), ordered by the pure rules of `hold_aside` (causes before effects, each
//! stream in its order), and `WatchCase` (`grpc`) replays a timeline and then follows it,
//! each listen on the record (`session_log`, over the `session` aggregate). `describe`
//! renders events for people; personal data reaches listen-in only sealed, so it never shows.

pub mod app;
pub mod describe;
pub mod grpc;
pub mod hold_aside;
pub mod session;
pub mod session_log;
pub mod timeline;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use svcops_bus::relay::Relay;
use svcops_bus::{consumer, topics};
use svcops_kit::auth::Authenticator;
use svcops_kit::service::{Error, Office, Ports};
use svcops_proto::listenin::v1::listen_in_service_server::{ListenInServiceServer, SERVICE_NAME};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

pub const SERVICE: &str = "listen-in";

/// Longest a graceful stop waits for running sessions to record their end.
const SESSION_END_WAIT: Duration = Duration::from_secs(5);

/// Listen-in's own settings, from `SVCOPS_LISTEN_IN__<NAME>` variables (e.g.
/// `SVCOPS_LISTEN_IN__UNKNOWN_CASE_GRACE_MS=2000`); every one has a default.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// How long `WatchCase` waits for the first event of a case it has not heard of before
    /// answering NOT_FOUND ([`grpc::UnknownCaseGrace`])...
    pub unknown_case_grace_ms: u64,
    /// ...and, in the first this-many milliseconds after a start, until they have passed.
    pub startup_grace_ms: u64,
    /// At most this many events wait aside for their cause, over all cases.
    pub hold_max_events: usize,
    /// No event waits aside for its cause longer than this.
    pub hold_max_age_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        let limits = hold_aside::Limits::default();
        Self {
            unknown_case_grace_ms: 3_000,
            startup_grace_ms: 10_000,
            hold_max_events: limits.max_held,
            hold_max_age_seconds: limits.max_age.as_secs(),
        }
    }
}

impl Settings {
    fn limits(&self) -> hold_aside::Limits {
        hold_aside::Limits {
            max_held: self.hold_max_events,
            max_age: Duration::from_secs(self.hold_max_age_seconds),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Config {
    #[serde(default)]
    listen_in: Settings,
}

pub struct ListenIn {
    timelines: Arc<timeline::Timelines>,
    session_log: Arc<session_log::SessionLog>,
    unknown_case_grace: grpc::UnknownCaseGrace,
    shutdown: CancellationToken,
    /// The relay stops after the sessions have recorded their ends, so it publishes them.
    relay_shutdown: CancellationToken,
    sessions: grpc::Sessions,
    tasks: Vec<JoinHandle<()>>,
}

#[async_trait::async_trait]
impl Office for ListenIn {
    const NAME: &'static str = SERVICE;

    async fn start(ports: Ports, shutdown: CancellationToken) -> Result<Self, Error> {
        let started = tokio::time::Instant::now();
        let settings = svcops_kit::config::load::<Config>(None)?.listen_in;
        let relay = Relay::new(
            ports.store.clone(),
            ports.bus.clone(),
            topics::LISTEN_IN,
            app::SOURCE,
        );
        let timelines =
            Arc::new(timeline::Timelines::open(ports.store.clone(), settings.limits()).await?);
        let session_log = Arc::new(session_log::SessionLog::new(
            ports.store.clone(),
            relay.waker(),
        ));
        // Before serving: every session open on the record now was left open by a crash.
        session_log.end_sessions_left_open().await?;
        let handler: Arc<dyn consumer::Handler> = Arc::new(app::AllOffices(timelines.clone()));
        let relay_shutdown = CancellationToken::new();
        let mut tasks = vec![
            tokio::spawn(relay.run_leased(
                ports.read_models.clone(),
                svcops_kit::service::replica_id(),
                relay_shutdown.clone(),
            )),
            tokio::spawn(timeline::sweep_until(timelines.clone(), shutdown.clone())),
        ];
        // One consumer per topic: an effect whose cause is on another office's topic is held
        // aside, and the topics are consumed independently, so nothing waits on a lagging one.
        for topic in topics::ALL {
            tasks.push(consumer::spawn(
                ports.bus.clone(),
                format!("{SERVICE}.{topic}"),
                &[topic],
                handler.clone(),
                shutdown.clone(),
            ));
        }
        Ok(Self {
            timelines,
            session_log,
            unknown_case_grace: grpc::UnknownCaseGrace {
                per_request: Duration::from_millis(settings.unknown_case_grace_ms),
                not_before: started + Duration::from_millis(settings.startup_grace_ms),
            },
            shutdown,
            relay_shutdown,
            sessions: grpc::Sessions::default(),
            tasks,
        })
    }

    fn add_routes(&self, routes: &mut RoutesBuilder, authenticator: &Authenticator) {
        routes.add_service(ListenInServiceServer::with_interceptor(
            grpc::ListenInGrpc::new(
                self.timelines.clone(),
                self.session_log.clone(),
                self.shutdown.clone(),
                self.sessions.clone(),
                self.unknown_case_grace,
            ),
            authenticator.interceptor(),
        ));
    }

    fn service_names() -> Vec<String> {
        vec![SERVICE_NAME.to_owned()]
    }

    async fn stopped(self) {
        self.sessions.ended(SESSION_END_WAIT).await;
        self.relay_shutdown.cancel();
        svcops_kit::service::join_all(self.tasks).await;
    }
}
