//! One trace, exported over OTLP, from an agent's call through every office's reaction.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use svcops_kit::auth::Role;
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::frontoffice::v1::case_service_client::CaseServiceClient;
use tests::{Cluster, eventually};

/// One received span: service name, span name, trace id.
type ReceivedSpan = (String, String, Vec<u8>);

/// A real OTLP/gRPC collector endpoint that keeps what it receives.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
                .map(|value| match value {
                    Value::StringValue(name) => name.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span.name, span.trace_id));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_is_one_trace_across_grpc_and_kafka_exported_over_otlp() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut cluster = Cluster::start_with(&[("SVCOPS_OTLP_ENDPOINT", &endpoint)]).await;

    let trace_id = uuid::Uuid::new_v4();
    let mut request = cluster.request(
        Role::Agent,
        front::OpenCaseRequest {
            customer_phone: "+8613800001234".into(),
            category: common::CaseCategory::Repair.into(),
            summary: "lamp flickers".into(),
            ..Default::default()
        },
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{}-00f067aa0ba902b7-01", trace_id.simple())
            .parse()
            .unwrap(),
    );
    CaseServiceClient::new(cluster.service("front-office").channel().await)
        .open_case(request)
        .await
        .expect("open case");

    // Spans are exported in batches (every few seconds), so wait for all four offices.
    const WANTED: [&str; 4] = ["front-office", "middle-office", "back-office", "listen-in"];
    let by_service = eventually(
        "spans of every office in the caller's trace",
        Duration::from_secs(60),
        || {
            let spans = collector.spans.lock().clone();
            async move {
                let mut by_service: HashMap<String, HashSet<String>> = HashMap::new();
                for (service, name, span_trace) in spans {
                    if span_trace == trace_id.as_bytes() {
                        by_service.entry(service).or_default().insert(name);
                    }
                }
                WANTED
                    .iter()
                    .all(|service| by_service.contains_key(*service))
                    .then_some(by_service)
            }
        },
    )
    .await;
    assert!(
        by_service["front-office"].contains("grpc"),
        "{by_service:?}"
    );
    for service in ["middle-office", "back-office", "listen-in"] {
        assert!(
            by_service[service].contains("consume"),
            "{service}: {by_service:?}"
        );
    }
}
