//! Serving gRPC: health that follows the real dependencies, reflection, graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use svcops_bus::Bus;
use svcops_eventstore::EventStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;
use tower::layer::util::{Identity, Stack};

/// How often dependencies are probed for the health status.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// The health service name that tells whether this process's pipeline keeps up: SERVING
/// while no relay or consumer group of it is more than [`PIPELINE_MAX_LAG`] behind
/// (`svcops_bus::lag`), NOT_SERVING otherwise. A detail for probes and dashboards: the
/// process's own services stay SERVING (a lagging replica still takes reads), and the front
/// door's bound, if any, is what refuses new work.
pub const PIPELINE_HEALTH: &str = "svcops.pipeline";

/// Lag past which [`PIPELINE_HEALTH`] turns NOT_SERVING.
pub const PIPELINE_MAX_LAG: Duration = Duration::from_secs(10);

/// Something whose reachability decides whether a service is SERVING.
#[tonic::async_trait]
pub trait Dependency: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), String>;
}

/// An event store as a health dependency.
pub struct StoreDependency(pub Arc<dyn EventStore>);

#[tonic::async_trait]
impl Dependency for StoreDependency {
    fn name(&self) -> &'static str {
        "event store"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|error| error.to_string())
    }
}

/// A bus as a health dependency.
pub struct BusDependency(pub Arc<dyn Bus>);

#[tonic::async_trait]
impl Dependency for BusDependency {
    fn name(&self) -> &'static str {
        "bus"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|error| error.to_string())
    }
}

/// Keeps `services` (fully qualified gRPC service names) and the server as a whole (`""`)
/// SERVING while every dependency answers, NOT_SERVING otherwise, until `shutdown`, when
/// everything turns NOT_SERVING so load balancers stop sending before the server drains.
pub async fn track_health(
    reporter: HealthReporter,
    services: Vec<String>,
    dependencies: Vec<Arc<dyn Dependency>>,
    shutdown: CancellationToken,
) {
    let mut last: Option<bool> = None;
    let mut pipeline_last: Option<bool> = None;
    loop {
        let behind = svcops_bus::lag::worst()
            .filter(|(_, seconds)| *seconds > PIPELINE_MAX_LAG.as_secs_f64());
        let keeping_up = behind.is_none();
        if pipeline_last != Some(keeping_up) {
            match &behind {
                Some((source, seconds)) => {
                    tracing::warn!(%source, seconds, bound = PIPELINE_MAX_LAG.as_secs(), "pipeline falling behind")
                }
                None if pipeline_last.is_some() => tracing::info!("pipeline keeps up again"),
                None => {}
            }
            reporter
                .set_service_status(
                    PIPELINE_HEALTH,
                    if keeping_up {
                        tonic_health::ServingStatus::Serving
                    } else {
                        tonic_health::ServingStatus::NotServing
                    },
                )
                .await;
            pipeline_last = Some(keeping_up);
        }
        let mut healthy = true;
        for dependency in &dependencies {
            let check = tokio::time::timeout(HEALTH_INTERVAL * 3, dependency.check()).await;
            let failure = match check {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error),
                Err(_) => Some("timed out".to_owned()),
            };
            if let Some(error) = failure {
                if last != Some(false) {
                    tracing::warn!(dependency = dependency.name(), %error, "dependency unhealthy");
                }
                healthy = false;
            }
        }
        if last != Some(healthy) {
            set_all(&reporter, &services, healthy).await;
            tracing::info!(healthy, "health status changed");
            last = Some(healthy);
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(HEALTH_INTERVAL) => {}
        }
    }
    set_all(&reporter, &services, false).await;
}

async fn set_all(reporter: &HealthReporter, services: &[String], serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    for service in services {
        reporter.set_service_status(service, status).await;
    }
}

/// Server reflection (v1 and v1alpha) over every svcops proto and grpc.health.v1.
pub fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(svcops_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(svcops_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok((v1, v1alpha))
}

/// A tonic server builder with request spans joined to the caller's trace and RED metrics
/// for every call ([`crate::metrics::GrpcMetricsLayer`]).
pub fn builder() -> tonic::transport::Server<Stack<crate::metrics::GrpcMetricsLayer, Identity>> {
    tonic::transport::Server::builder()
        .trace_fn(|request: &http::Request<()>| {
            let span = tracing::info_span!(
                "grpc",
                otel.kind = "server",
                rpc.method = %request.uri().path(),
            );
            crate::telemetry::set_parent_from_headers(&span, request.headers());
            span
        })
        .layer(crate::metrics::GrpcMetricsLayer)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `routes` plus health and reflection on `listener` until `shutdown`: health turns
/// NOT_SERVING first, then the server stops accepting and drains in-flight calls.
///
/// `services` are the fully qualified names health reports on; reflection needs a token
/// like every other RPC; health does not (probes carry none).
pub async fn serve(
    routes: tonic::service::Routes,
    services: Vec<String>,
    dependencies: Vec<Arc<dyn Dependency>>,
    authenticator: &crate::auth::Authenticator,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    set_all(&reporter, &services, false).await;
    let (reflection_v1, reflection_v1alpha) = reflection()?;
    let routes = routes
        .add_service(health_service)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            reflection_v1,
            authenticator.interceptor(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            reflection_v1alpha,
            authenticator.interceptor(),
        ));
    let health = tokio::spawn(track_health(
        reporter,
        services,
        dependencies,
        shutdown.clone(),
    ));
    // TCP_NODELAY on every accepted socket: without it a server-streaming response's small
    // frames wait out Nagle's algorithm against the client's delayed ACK (about 40 ms per
    // `WatchCase` catch-up). tonic applies its own nodelay default only to listeners it
    // binds, not to a stream of accepted sockets handed to it.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    let _ = health.await;
    Ok(served?)
}
