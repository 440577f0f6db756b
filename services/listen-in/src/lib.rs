//! svcops listen-in: executives follow live cases across every office.
//!
//! One replica at a time (`recorder`, under a lease) consumes all four topics (`app`) into
//! per-case timelines in listen-in's own store (`timeline`), ordered by the pure rules of
//! `hold_aside` (causes before effects, each stream in its order). Every replica serves
//! `WatchCase` (`grpc`): it replays a timeline and then follows it, woken by the log, each
//! listen on the record (`session_log`, over the `session` aggregate) and naming the replica
//! serving it (`replica`), so the sessions of a replica that is gone are ended by another
//! (`index` has the open ones). `describe` renders events for people; personal data reaches
//! listen-in only sealed, so it never shows.

pub mod app;
pub mod describe;
pub mod grpc;
pub mod hold_aside;
pub mod index;
pub mod recorder;
pub mod replica;
pub mod session;
pub mod session_log;
pub mod timeline;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use svcops_bus::relay::Relay;
use svcops_bus::topics;
use svcops_eventstore::projection::Projector;
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
    /// The registration lapses and the relay stops after the sessions have recorded their
    /// ends: no other replica ends them meanwhile, and the relay publishes them.
    relay_shutdown: CancellationToken,
    registration_shutdown: CancellationToken,
    registration: replica::Registration,
    index: Projector,
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
        let replica_id = svcops_kit::service::replica_id();
        let index = ports
            .start_projection(Arc::new(index::ListenInIndex), &shutdown)
            .await?;
        let timelines = Arc::new(timeline::Timelines::new(
            ports.store.clone(),
            settings.limits(),
            Some(index.read_model()),
        ));
        let session_log = Arc::new(session_log::SessionLog::new(
            ports.store.clone(),
            relay.waker(),
        ));
        let relay_shutdown = CancellationToken::new();
        let registration_shutdown = CancellationToken::new();
        let (registration, registering) = replica::Registration::spawn(
            ports.read_models.clone(),
            replica_id.clone(),
            registration_shutdown.clone(),
        );
        let recorder = Arc::new(recorder::Recorder {
            timelines: timelines.clone(),
            bus: ports.bus.clone(),
            read_models: ports.read_models.clone(),
            index: index.read_model(),
            session_log: session_log.clone(),
            service: SERVICE,
        });
        let tasks = vec![
            tokio::spawn(relay.run_leased(
                ports.read_models.clone(),
                replica_id.clone(),
                relay_shutdown.clone(),
            )),
            registering,
            tokio::spawn(recorder::run(recorder, replica_id, shutdown.clone())),
            tokio::spawn(timeline::follow_log(timelines.clone(), shutdown.clone())),
        ];
        Ok(Self {
            timelines,
            session_log,
            unknown_case_grace: grpc::UnknownCaseGrace {
                per_request: Duration::from_millis(settings.unknown_case_grace_ms),
                not_before: started + Duration::from_millis(settings.startup_grace_ms),
            },
            shutdown,
            relay_shutdown,
            registration_shutdown,
            registration,
            index,
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
                self.registration.clone(),
            ),
            authenticator.interceptor(),
        ));
    }

    fn service_names() -> Vec<String> {
        vec![SERVICE_NAME.to_owned()]
    }

    async fn stopped(self) {
        self.sessions.ended(SESSION_END_WAIT).await;
        self.registration_shutdown.cancel();
        self.relay_shutdown.cancel();
        svcops_kit::service::join_all(self.tasks).await;
        self.index.stopped().await;
    }
}
