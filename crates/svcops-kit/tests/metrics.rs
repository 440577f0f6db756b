//! Prometheus metrics end to end: the `/metrics` listener over a real TCP connection, RED
//! metrics of real gRPC calls, and the relay and consumer metrics `svcops-bus` records
//! through the facade.
//!
//! All tests share the process's one recorder ([`metrics::install`] is idempotent), so each
//! uses labels of its own.

use std::sync::Arc;
use std::time::Duration;

use svcops_bus::consumer::{self, Handler, HandlerError};
use svcops_bus::envelope::BusEvent;
use svcops_bus::relay::Relay;
use svcops_bus::{Bus, EmbeddedBus};
use svcops_eventstore::{
    Append, EventMetadata, EventStore, ExpectedVersion, NewEvent, SqliteStore, StreamId,
};
use svcops_kit::metrics;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use uuid::Uuid;

/// `GET path` over a fresh HTTP/1.1 connection: (status line, headers, body).
async fn get(address: std::net::SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("send request");
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("response in time")
    .expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_lowercase(), body.to_owned())
}

/// Polls the recorder until `rendered` holds a line starting with `prefix`; returns it.
async fn wait_for_line(prefix: &str) -> String {
    let handle = metrics::install().expect("recorder");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rendered = handle.render();
        if let Some(line) = rendered.lines().find(|line| line.starts_with(prefix)) {
            return line.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no line starting with {prefix} in:\n{rendered}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no value in {line}"))
}

#[tokio::test]
async fn metrics_listener_serves_what_the_facade_records() {
    metrics::install().expect("recorder");
    assert!(metrics::install().is_ok(), "install is idempotent");
    let shutdown = CancellationToken::new();
    let listener = metrics::spawn(([127, 0, 0, 1], 0).into(), shutdown.clone())
        .await
        .expect("metrics listener");
    ::metrics::counter!("svcops_test_recorded_total", "test" => "listener").increment(3);
    ::metrics::gauge!("svcops_test_level", "test" => "listener").set(1.5);

    let (status, headers, body) = get(listener.address, "/metrics").await;
    assert!(status.ends_with("200 OK"), "{status}");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    assert!(
        body.lines()
            .any(|line| line == "svcops_test_recorded_total{test=\"listener\"} 3"),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|line| line == "svcops_test_level{test=\"listener\"} 1.5"),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|line| line == "# TYPE svcops_test_recorded_total counter"),
        "{body}"
    );

    let (status, _, _) = get(listener.address, "/elsewhere").await;
    assert!(status.contains(" 404 "), "{status}");

    let address = listener.address;
    shutdown.cancel();
    listener.stopped().await;
    assert!(
        TcpStream::connect(address).await.is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn every_rpc_is_counted_with_its_status_and_timed() {
    metrics::install().expect("recorder");
    let shutdown = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let authenticator =
        svcops_kit::auth::Authenticator::new(b"a-test-secret-of-at-least-32-bytes!!")
            .expect("authenticator");
    let server = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            svcops_kit::server::serve(
                tonic::service::RoutesBuilder::default().routes(),
                vec!["svcops.test.v1.Red".into()],
                Vec::new(),
                &authenticator,
                listener,
                shutdown,
            )
            .await
        })
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel.clone());

    // OK: unary success, the status travels in the trailers.
    for _ in 0..2 {
        health
            .check(HealthCheckRequest {
                service: "svcops.test.v1.Red".into(),
            })
            .await
            .expect("known service");
    }
    // NOT_FOUND: a trailers-only response, the status is in the headers.
    let error = health
        .check(HealthCheckRequest {
            service: "svcops.test.v1.Missing".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(error.code(), tonic::Code::NotFound);
    // A server stream the client gives up on: counted when the server drops it.
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "svcops.test.v1.Red".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    watch.message().await.expect("first status");
    drop(watch);

    let ok = wait_for_line(
        "grpc_server_requests_total{service=\"grpc.health.v1.Health\",method=\"Check\",code=\"OK\"}",
    )
    .await;
    assert!(value(&ok) >= 2.0, "{ok}");
    wait_for_line(
        "grpc_server_requests_total{service=\"grpc.health.v1.Health\",method=\"Check\",code=\"NOT_FOUND\"}",
    )
    .await;
    wait_for_line(
        "grpc_server_requests_total{service=\"grpc.health.v1.Health\",method=\"Watch\",code=\"CANCELLED\"}",
    )
    .await;
    let count = wait_for_line(
        "grpc_server_request_duration_seconds_count{service=\"grpc.health.v1.Health\",method=\"Check\"}",
    )
    .await;
    assert!(value(&count) >= 3.0, "{count}");
    wait_for_line(
        "grpc_server_request_duration_seconds_bucket{service=\"grpc.health.v1.Health\",method=\"Check\",le=\"0.001\"}",
    )
    .await;

    // Arbitrary paths do not grow the set of series.
    let unknown = tonic::client::Grpc::new(channel);
    let _ = call_unknown(unknown).await;
    wait_for_line(
        "grpc_server_requests_total{service=\"unknown\",method=\"unknown\",code=\"UNIMPLEMENTED\"}",
    )
    .await;
    assert!(
        !metrics::install()
            .expect("recorder")
            .render()
            .contains("NoSuchMethod")
    );

    shutdown.cancel();
    server
        .await
        .expect("server task")
        .expect("server stops cleanly");
}

/// Calls `/svcops.test.v1.Nowhere/NoSuchMethod`, which no server implements.
async fn call_unknown(
    mut client: tonic::client::Grpc<tonic::transport::Channel>,
) -> Result<(), tonic::Status> {
    client
        .ready()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    client
        .unary(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/svcops.test.v1.Nowhere/NoSuchMethod"),
            codec,
        )
        .await
        .map(|_| ())
}

fn new_event(event_type: &str, recorded_ago: Duration) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.into(),
        payload: vec![1, 2, 3],
        metadata: EventMetadata {
            case_id: Some(Uuid::now_v7()),
            actor_subject: "alice".into(),
            actor_role: "agent".into(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            traceparent: None,
            occurred_at: OffsetDateTime::now_utc() - recorded_ago,
        },
    }
}

const TOPIC: &str = "svcops.metricstest.events.v1";

/// Succeeds, except for events of type `Poison`, which always fail.
struct Picky;

#[async_trait::async_trait]
impl Handler for Picky {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError> {
        if event.event_type.ends_with("Poison") {
            Err(HandlerError::Failed("poisoned".into()))
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn relay_and_consumer_record_throughput_and_lag() {
    metrics::install().expect("recorder");
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(&dir.path().join("store.db"))
            .await
            .expect("store"),
    );
    let bus: Arc<dyn Bus> = Arc::new(
        EmbeddedBus::open(&dir.path().join("bus.db"))
            .await
            .expect("bus"),
    );
    store
        .append(Append::new(
            StreamId::parse("case-metrics").expect("stream id"),
            ExpectedVersion::NoStream,
            vec![
                new_event("svcops.test.v1.Fine", Duration::ZERO),
                new_event("svcops.test.v1.Poison", Duration::ZERO),
                new_event("svcops.test.v1.Fine", Duration::ZERO),
            ],
        ))
        .await
        .expect("append");

    tokio::time::sleep(Duration::from_millis(20)).await;
    let relay = Relay::new(store.clone(), bus.clone(), TOPIC, "svcops/metrics-test");
    assert_eq!(relay.publish_once().await.expect("publish"), 3);
    let published =
        wait_for_line("svcops_relay_published_total{topic=\"svcops.metricstest.events.v1\"}").await;
    assert_eq!(value(&published), 3.0, "{published}");
    let lag =
        wait_for_line("svcops_relay_lag_seconds{topic=\"svcops.metricstest.events.v1\"}").await;
    assert!(value(&lag) > 0.0, "the batch had waited a moment: {lag}");
    // The outbox is empty now: lag back to 0.
    assert_eq!(relay.publish_once().await.expect("publish"), 0);
    let lag =
        wait_for_line("svcops_relay_lag_seconds{topic=\"svcops.metricstest.events.v1\"}").await;
    assert_eq!(value(&lag), 0.0, "{lag}");
    let batch =
        wait_for_line("svcops_relay_outbox_batch{topic=\"svcops.metricstest.events.v1\"}").await;
    assert_eq!(value(&batch), 0.0, "the last batch read was empty: {batch}");

    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(consumer::run(
        bus,
        "metrics-test",
        &[TOPIC],
        Arc::new(Picky),
        shutdown.clone(),
    ));
    let processed = "svcops_consumer_processed_total{group=\"metrics-test\",topic=\"svcops.metricstest.events.v1\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while value(&wait_for_line(processed).await) < 2.0 {
        assert!(tokio::time::Instant::now() < deadline, "two processed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = wait_for_line(
        "svcops_consumer_dead_lettered_total{group=\"metrics-test\",topic=\"svcops.metricstest.events.v1\"}",
    )
    .await;
    assert_eq!(value(&dead), 1.0, "{dead}");
    let retries = wait_for_line("svcops_consumer_retries_total{group=\"metrics-test\"}").await;
    assert_eq!(
        value(&retries),
        f64::from(consumer::FAILURE_ATTEMPTS - 1),
        "{retries}"
    );
    let lag = wait_for_line(
        "svcops_consumer_lag_seconds{group=\"metrics-test\",topic=\"svcops.metricstest.events.v1\"}",
    )
    .await;
    assert!(value(&lag) > 0.0, "{lag}");
    shutdown.cancel();
    consumer
        .await
        .expect("consumer task")
        .expect("consumer stops cleanly");
}
