//! Prometheus metrics: one process-wide recorder behind the `metrics` facade, `GET /metrics`
//! on its own port, and RED (rate, errors, duration) for every RPC.
//!
//! Code anywhere in the workspace records through the facade (`metrics::counter!` …);
//! `svcops-bus` does so for relay and consumer lag without knowing about Prometheus. Until
//! [`install`] has run the facade calls are no-ops, so a process without a metrics listener
//! pays (almost) nothing.
//!
//! What is exported:
//!
//! | metric | labels | kind |
//! | --- | --- | --- |
//! | `grpc_server_requests_total` | `service`, `method`, `code` | counter |
//! | `grpc_server_request_duration_seconds` | `service`, `method` | histogram |
//! | `svcops_relay_*`, `svcops_consumer_*` | see [`svcops_bus::metrics`] | counters, gauges |
//!
//! `code` is the gRPC status name (`OK`, `NOT_FOUND`, …). The duration runs from the
//! request's arrival to the status being sent: for a server stream, its whole life.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// RPCs handled, by service, method and gRPC status code (counter).
pub const GRPC_REQUESTS: &str = "grpc_server_requests_total";
/// Time from request to status, by service and method (histogram, seconds).
pub const GRPC_DURATION: &str = "grpc_server_request_duration_seconds";

/// Buckets of [`GRPC_DURATION`]: Prometheus' defaults with a finer low end.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How often histogram samples are folded into buckets when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);
/// Longest wait for the metrics listener to close its connections after shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Content type of the text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("cannot install the metrics recorder: {0}")]
    Install(String),
    #[error("cannot listen for metrics on {address}: {reason}")]
    Listen { address: SocketAddr, reason: String },
}

static RECORDER: OnceLock<Result<PrometheusHandle, Error>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder, the first time;
/// later calls return the same handle. A process has one global recorder, so this is the
/// only way in: tests and embedded mode may call it as often as they like.
///
/// Fails only if some other recorder was installed first.
pub fn install() -> Result<PrometheusHandle, Error> {
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(GRPC_DURATION.into()), DURATION_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|error| Error::Install(error.to_string()))?;
            describe();
            Ok(handle)
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        GRPC_REQUESTS,
        "gRPC calls handled, by service, method and status code."
    );
    describe_histogram!(
        GRPC_DURATION,
        Unit::Seconds,
        "Time from a gRPC request to its status, by service and method."
    );
    svcops_bus::metrics::describe();
}

/// Serves `GET /metrics` (text exposition format) from `handle` on `listener` until
/// `shutdown`, and keeps the recorder's histograms drained meanwhile.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let upkeep = {
        let handle = handle.clone();
        let shutdown = shutdown.clone();
        async move {
            let mut interval = tokio::time::interval(UPKEEP);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = interval.tick() => handle.run_upkeep(),
                }
            }
        }
    };
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { ([(http::header::CONTENT_TYPE, TEXT_FORMAT)], handle.render()) }
        }),
    );
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
    let (served, ()) = tokio::join!(server.into_future(), upkeep);
    served
}

/// A metrics listener running in the background.
pub struct Listener {
    /// Where it listens (useful with port 0).
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl Listener {
    /// Waits (briefly) for the listener to stop after its shutdown token was cancelled.
    pub async fn stopped(self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.task).await;
    }
}

/// Installs the recorder, binds `address` and serves `/metrics` in the background until
/// `shutdown`.
pub async fn spawn(address: SocketAddr, shutdown: CancellationToken) -> Result<Listener, Error> {
    let handle = install()?;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|error| Error::Listen {
            address,
            reason: error.to_string(),
        })?;
    let address = listener.local_addr().map_err(|error| Error::Listen {
        address,
        reason: error.to_string(),
    })?;
    tracing::info!(%address, "serving metrics on /metrics");
    let task = tokio::spawn(async move {
        if let Err(error) = serve(listener, handle, shutdown).await {
            tracing::warn!(%error, "metrics listener stopped");
        }
    });
    Ok(Listener { address, task })
}

/// Tower layer recording RED metrics for every gRPC call ([`GRPC_REQUESTS`],
/// [`GRPC_DURATION`]).
///
/// The status is read where gRPC puts it: in the response headers of a trailers-only
/// response (errors returned before any message), otherwise in the trailers at the end of
/// the body, which the layer observes by wrapping the body. A body dropped before its
/// trailers (client went away, server shut down) counts as `CANCELLED`; one that ends without
/// trailers or fails counts as `UNKNOWN`.
///
/// `UNIMPLEMENTED` calls are counted under `service="unknown", method="unknown"` so that
/// callers probing arbitrary paths cannot grow the number of series; no svcops handler
/// returns `UNIMPLEMENTED` itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

/// The service of [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
{
    type Response = http::Response<MeteredBody<ResponseBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let call = Call::start(request.uri().path());
        ResponseFuture {
            inner: self.inner.call(request),
            call: Some(call),
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`GrpcMetrics`]: the response, its body metered.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, Body, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<MeteredBody<Body>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let call = this.call.take();
        Poll::Ready(match result {
            Ok(response) => {
                // Trailers-only response: the status is already in the headers.
                let call = match grpc_status(response.headers()) {
                    Some(code) => {
                        if let Some(call) = call {
                            call.finish(code);
                        }
                        None
                    }
                    None => call,
                };
                Ok(response.map(|inner| MeteredBody { inner, call }))
            }
            Err(error) => {
                if let Some(call) = call {
                    call.finish(UNKNOWN);
                }
                Err(error)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call's status when the trailers pass by.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }

    impl<B> PinnedDrop for MeteredBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(call) = this.project().call.take() {
                call.finish(CANCELLED);
            }
        }
    }
}

impl<B: http_body::Body> http_body::Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| grpc_status(trailers).unwrap_or(UNKNOWN)),
            Some(Err(_)) | None => Some(UNKNOWN),
        };
        if let Some(code) = code
            && let Some(call) = this.call.take()
        {
            call.finish(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

const CANCELLED: u8 = 1;
const UNKNOWN: u8 = 2;
const UNIMPLEMENTED: u8 = 12;

/// Canonical names of the gRPC status codes, by number.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The `grpc-status` in `headers`, if any; an unreadable one is `UNKNOWN`.
fn grpc_status(headers: &http::HeaderMap) -> Option<u8> {
    let value = headers.get("grpc-status")?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|text| text.parse::<u8>().ok())
            .filter(|code| usize::from(*code) < CODE_NAMES.len())
            .unwrap_or(UNKNOWN),
    )
}

/// One call being measured.
struct Call {
    /// `/package.Service/Method`.
    path: String,
    start: Instant,
}

impl Call {
    fn start(path: &str) -> Self {
        Self {
            path: path.to_owned(),
            start: Instant::now(),
        }
    }

    fn finish(self, code: u8) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let (service, method) = match split_path(&self.path) {
            Some((service, method)) if code != UNIMPLEMENTED => {
                (service.to_owned(), method.to_owned())
            }
            _ => ("unknown".to_owned(), "unknown".to_owned()),
        };
        let code = CODE_NAMES
            .get(usize::from(code))
            .copied()
            .unwrap_or("UNKNOWN");
        metrics::counter!(
            GRPC_REQUESTS,
            "service" => service.clone(),
            "method" => method.clone(),
            "code" => code,
        )
        .increment(1);
        metrics::histogram!(GRPC_DURATION, "service" => service, "method" => method)
            .record(elapsed);
    }
}

/// `/package.Service/Method` → (`package.Service`, `Method`).
fn split_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/svcops.frontoffice.v1.FrontOfficeService/OpenCase"),
            Some(("svcops.frontoffice.v1.FrontOfficeService", "OpenCase"))
        );
        assert_eq!(split_path("/"), None);
        assert_eq!(split_path("/a"), None);
        assert_eq!(split_path("/a/"), None);
        assert_eq!(split_path("/a/b/c"), None);
        assert_eq!(split_path("a/b"), None);
    }

    #[test]
    fn status_comes_from_the_grpc_status_header() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(grpc_status(&headers), Some(5));
        headers.insert("grpc-status", http::HeaderValue::from_static("99"));
        assert_eq!(grpc_status(&headers), Some(UNKNOWN));
        assert_eq!(CODE_NAMES[usize::from(UNIMPLEMENTED)], "UNIMPLEMENTED");
    }
}
