//! What a service is to the process that runs it, and the one way to run it in cluster mode.
//!
//! Each office implements [`Office`]. Cluster mode ([`main`]) runs one office per process
//! against PostgreSQL and Kafka; embedded mode (`svcops up`) starts all four with SQLite stores
//! and the embedded bus and serves them on one port. The office code cannot tell which.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use svcops_bus::{Bus, KafkaBus, KafkaConfig};
use svcops_eventstore::{EventStore, PersonalDataKeys, PersonalDataSecret, PostgresStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

use crate::auth::Authenticator;
use crate::server::{BusDependency, Dependency, StoreDependency};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    #[error("event store: {0}")]
    Store(#[from] svcops_eventstore::Error),
    #[error("bus: {0}")]
    Bus(#[from] svcops_bus::Error),
    #[error(transparent)]
    Server(#[from] crate::server::Error),
    #[error("auth: {0}")]
    Auth(#[from] crate::auth::Error),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::Error),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::Error),
    #[error(
        "SVCOPS_PERSONAL_DATA_SECRET is not set: {0} seals personal data with keys derived \
         from it (at least 32 bytes, kept outside the database)"
    )]
    MissingPersonalDataSecret(&'static str),
    #[error("SVCOPS_PERSONAL_DATA_SECRET: {0}")]
    PersonalDataSecret(#[source] svcops_eventstore::personal_data_secret::Error),
    #[error("{0} holds personal data but was started without personal data keys")]
    NoPersonalDataKeys(&'static str),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// The ports an office runs on.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn EventStore>,
    /// Read-model tables in the store's database (the same adapter as `store`), for the
    /// office's projections.
    pub read_models: Arc<dyn svcops_eventstore::read_model::ReadModels>,
    /// Data keys for personal data, kept in the same database as the store; only for an
    /// office that holds personal data ([`Office::HOLDS_PERSONAL_DATA`]).
    pub keys: Option<Arc<dyn PersonalDataKeys>>,
    pub bus: Arc<dyn Bus>,
    /// When the office's front door refuses new commands because the pipeline lags.
    pub backpressure: svcops_bus::lag::Backpressure,
}

impl Ports {
    /// Starts one of the office's projections over its log and read-model tables, with the
    /// default pacing (`svcops_eventstore::projection::start`).
    pub async fn start_projection(
        &self,
        projection: Arc<dyn svcops_eventstore::projection::Projection>,
        shutdown: &CancellationToken,
    ) -> Result<svcops_eventstore::projection::Projector, svcops_eventstore::Error> {
        svcops_eventstore::projection::start(
            self.store.clone(),
            self.read_models.clone(),
            projection,
            svcops_eventstore::projection::RunnerSettings::default(),
            shutdown.clone(),
        )
        .await
    }
}

/// This process's name among the replicas of its office, for leases: the host (the pod's
/// name in Kubernetes), the process id and a random suffix, unique across restarts.
pub fn replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}/{}", std::process::id(), &suffix[..8])
}

/// One office of the cluster.
#[async_trait]
pub trait Office: Send + Sync + Sized + 'static {
    /// Service name, e.g. `front-office`; also its consumer group and `ce_source` suffix.
    const NAME: &'static str;

    /// Whether the office seals personal data. Only such an office gets data keys, and
    /// needs the personal data secret (in cluster mode `SVCOPS_PERSONAL_DATA_SECRET`).
    const HOLDS_PERSONAL_DATA: bool = false;

    /// Rebuilds read models and spawns background work (relay, consumers) until `shutdown`.
    async fn start(ports: Ports, shutdown: CancellationToken) -> Result<Self, Error>;

    /// Adds the office's gRPC services, each behind `authenticator`.
    fn add_routes(&self, routes: &mut RoutesBuilder, authenticator: &Authenticator);

    /// Fully qualified gRPC service names, for health.
    fn service_names() -> Vec<String>;

    /// Waits for background work to finish after shutdown (the relay flushes).
    async fn stopped(self);
}

/// Cluster-mode configuration, from `--config FILE` and `SVCOPS_*` variables.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterConfig {
    /// gRPC listen address (`SVCOPS_LISTEN`).
    pub listen: SocketAddr,
    /// PostgreSQL URL of this service's own database (`SVCOPS_DATABASE_URL`).
    pub database_url: String,
    #[serde(default = "default_pool")]
    pub database_pool: u32,
    /// Kafka bootstrap servers (`SVCOPS_KAFKA_BOOTSTRAP`).
    pub kafka_bootstrap: String,
    #[serde(default = "default_partitions")]
    pub kafka_partitions: i32,
    /// Messages per record batch (`SVCOPS_KAFKA_BATCH_MESSAGES`); 0 (the default) lets
    /// librdkafka batch freely. Set 1 for a broker that cannot resume a consumer group
    /// inside a batch (the crates.io release of Tansu 0.6.0), at about a tenth of the
    /// publish rate.
    #[serde(default)]
    pub kafka_batch_messages: u32,
    /// Longest a consumer's fetch waits at the broker, in milliseconds
    /// (`SVCOPS_KAFKA_FETCH_WAIT_MS`, default 20). Tansu answers an empty fetch only after
    /// the whole wait, so it is a floor on each hop's latency there; on Apache Kafka raise it
    /// (500 is librdkafka's default) to save idle fetches.
    #[serde(default = "default_fetch_wait_ms")]
    pub kafka_fetch_wait_ms: u64,
    /// Shared token-signing secret, at least 32 bytes (`SVCOPS_TOKEN_SECRET`).
    pub token_secret: String,
    /// Secret the personal-data keys are protected with, at least 32 bytes
    /// (`SVCOPS_PERSONAL_DATA_SECRET`): subjects are stored as a keyed hash and data keys
    /// wrapped, both with keys derived from it. Required by offices that hold personal data
    /// (the front office); losing it makes every sealed phone unreadable.
    #[serde(default)]
    pub personal_data_secret: Option<String>,
    /// Prefix of this cluster's topics and consumer groups on a shared broker
    /// (`SVCOPS_BUS_NAMESPACE`); none by default.
    #[serde(default)]
    pub bus_namespace: Option<String>,
    /// OTLP/gRPC collector (`SVCOPS_OTLP_ENDPOINT`); spans are not exported when unset.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Address of the Prometheus `GET /metrics` listener (`SVCOPS_METRICS_LISTEN`), a port
    /// of its own; no metrics are recorded or served when unset.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Refuse new commands (RESOURCE_EXHAUSTED, with a retry delay) while this process's
    /// relay or a consumer group is more than this many seconds behind
    /// (`SVCOPS_MAX_LAG_SECONDS`); 0 or unset: never.
    #[serde(default)]
    pub max_lag_seconds: u64,
}

fn default_pool() -> u32 {
    16
}

fn default_fetch_wait_ms() -> u64 {
    20
}

fn default_partitions() -> i32 {
    3
}

impl std::fmt::Display for ClusterConfig {
    // Never prints the secret or database credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "listen={} kafka={} otlp={} metrics={}",
            self.listen,
            self.kafka_bootstrap,
            self.otlp_endpoint.as_deref().unwrap_or("-"),
            self.metrics_listen
                .map_or_else(|| "-".to_owned(), |address| address.to_string())
        )
    }
}

/// Runs `O` in cluster mode on `listener` until `shutdown`.
pub async fn run<O: Office>(
    config: ClusterConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let authenticator = Authenticator::new(config.token_secret.as_bytes())?;
    let personal_data_secret = if O::HOLDS_PERSONAL_DATA {
        let secret = config
            .personal_data_secret
            .as_deref()
            .ok_or(Error::MissingPersonalDataSecret(O::NAME))?;
        Some(PersonalDataSecret::new(secret.as_bytes()).map_err(Error::PersonalDataSecret)?)
    } else {
        None
    };
    // First, so the offices' relays and consumers record from their first event on.
    let metrics = match config.metrics_listen {
        Some(address) => Some(crate::metrics::spawn(address, shutdown.clone()).await?),
        None => None,
    };
    let postgres =
        Arc::new(PostgresStore::connect(&config.database_url, config.database_pool).await?);
    let keys: Option<Arc<dyn PersonalDataKeys>> = match personal_data_secret {
        Some(secret) => Some(Arc::new(
            postgres
                .personal_data_keys(secret)
                .await
                .map_err(|error| match error {
                    svcops_eventstore::Error::PersonalData(error) => {
                        Error::PersonalDataSecret(error)
                    }
                    other => other.into(),
                })?,
        )),
        None => None,
    };
    let read_models: Arc<dyn svcops_eventstore::read_model::ReadModels> = postgres.clone();
    let store: Arc<dyn EventStore> = postgres;
    let kafka = KafkaBus::connect(KafkaConfig {
        partitions: config.kafka_partitions,
        batch_messages: (config.kafka_batch_messages > 0).then_some(config.kafka_batch_messages),
        fetch_wait: std::time::Duration::from_millis(config.kafka_fetch_wait_ms),
        ..KafkaConfig::new(config.kafka_bootstrap.clone())
    })
    .await?;
    let bus: Arc<dyn Bus> = match config.bus_namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(namespace) => Arc::new(svcops_bus::NamespacedBus::new(kafka, namespace)),
        None => Arc::new(kafka),
    };
    let office = O::start(
        Ports {
            store: store.clone(),
            read_models,
            keys,
            bus: bus.clone(),
            backpressure: svcops_bus::lag::Backpressure {
                max_lag: (config.max_lag_seconds > 0)
                    .then(|| std::time::Duration::from_secs(config.max_lag_seconds)),
            },
        },
        shutdown.clone(),
    )
    .await?;
    let mut routes = RoutesBuilder::default();
    office.add_routes(&mut routes, &authenticator);
    let dependencies: Vec<Arc<dyn Dependency>> = vec![
        Arc::new(StoreDependency(store)),
        Arc::new(BusDependency(bus)),
    ];
    tracing::info!(service = O::NAME, address = %listener.local_addr().map_or_else(|_| "?".into(), |a| a.to_string()), "serving");
    let served = crate::server::serve(
        routes.routes(),
        O::service_names(),
        dependencies,
        &authenticator,
        listener,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    office.stopped().await;
    if let Some(metrics) = metrics {
        metrics.stopped().await;
    }
    Ok(served?)
}

/// Command line of every service binary.
#[derive(Debug, clap::Parser)]
struct Args {
    /// TOML config file; `SVCOPS_*` environment variables override it.
    #[arg(long, env = "SVCOPS_CONFIG")]
    config: Option<PathBuf>,
}

/// The whole `main` of a service binary: config, telemetry, listener, run, exit code.
pub async fn main<O: Office>() -> std::process::ExitCode {
    use clap::Parser;
    let args = Args::parse();
    let config: ClusterConfig = match crate::config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{}: {error}", O::NAME);
            return std::process::ExitCode::from(2);
        }
    };
    let _telemetry = match crate::telemetry::init(
        O::NAME,
        config.otlp_endpoint.as_deref(),
        crate::telemetry::LogFormat::Json,
    ) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{}: {error}", O::NAME);
            return std::process::ExitCode::from(2);
        }
    };
    tracing::info!(%config, "starting {}", O::NAME);
    let listener = match TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(source) => {
            let error = Error::Listen {
                address: config.listen,
                source,
            };
            tracing::error!(%error, "cannot start");
            eprintln!("{}: {error}", O::NAME);
            return std::process::ExitCode::FAILURE;
        }
    };
    // Tests bind port 0: say where we listen on stdout, in one parseable line.
    if let Ok(address) = listener.local_addr() {
        println!("listening on {address}");
    }
    match run::<O>(config, listener, crate::shutdown::on_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "stopped with an error");
            eprintln!("{}: {error}", O::NAME);
            std::process::ExitCode::FAILURE
        }
    }
}

/// Waits for an office's background tasks (relay, consumers) after shutdown.
pub async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        if let Err(error) = task.await {
            tracing::error!(%error, "background task failed");
        }
    }
}
