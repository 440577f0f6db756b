//! Structured logs and distributed traces.
//!
//! Logs are JSON lines on stderr (`RUST_LOG` filters, default `info`). Spans always get
//! OpenTelemetry trace ids, so trace context can be carried in gRPC metadata and in every
//! event (and from there in Kafka headers) even when nothing is exported; with an OTLP
//! endpoint configured (`otlp_endpoint`, or `OTEL_EXPORTER_OTLP_ENDPOINT`) spans are
//! exported too.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("telemetry already initialised: {0}")]
    AlreadyInitialised(String),
}

/// Flushes and shuts the tracer down when dropped.
#[must_use = "dropping the guard shuts tracing down"]
pub struct Guard {
    provider: SdkTracerProvider,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (services).
    Json,
    /// Compact human text (the CLI).
    Text,
}

/// Installs the global subscriber. `otlp_endpoint` falls back to
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn init(
    service_name: &'static str,
    otlp_endpoint: Option<&str>,
    format: LogFormat,
) -> Result<Guard, Error> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let endpoint = otlp_endpoint
        .map(str::to_owned)
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|endpoint| !endpoint.is_empty());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name)
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|error| Error::Exporter(error.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service_name);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
        // Colour only for a person at a terminal: escapes would litter a file or a pipe.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // `RUST_LOG` filters what is logged, not what is traced: trace context must flow
    // through every service whatever its log level.
    tracing_subscriber::registry()
        .with(fmt_layer.with_filter(filter))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .try_init()
        .map_err(|error| Error::AlreadyInitialised(error.to_string()))?;
    Ok(Guard { provider })
}

/// The W3C `traceparent` of the current span, to store on events.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the remote span named by `traceparent`.
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    svcops_bus::envelope::set_remote_parent(span, traceparent);
}

/// Makes `span` a child of the trace context in HTTP/2 (gRPC metadata) headers, if any.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if let Some(traceparent) = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
    {
        set_remote_parent(span, traceparent);
    }
}
