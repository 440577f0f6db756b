//! Health follows the dependencies, and turns NOT_SERVING on shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use svcops_kit::server::Dependency;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A dependency the test switches on and off (standing in for a database or broker).
struct Switch(Arc<AtomicBool>);

#[tonic::async_trait]
impl Dependency for Switch {
    fn name(&self) -> &'static str {
        "switch"
    }
    async fn check(&self) -> Result<(), String> {
        if self.0.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("switched off".into())
        }
    }
}

async fn status(client: &mut HealthClient<tonic::transport::Channel>, service: &str) -> i32 {
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|response| response.into_inner().status)
        .unwrap_or(-1)
}

async fn wait_for(
    client: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
    wanted: ServingStatus,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status(client, service).await != wanted as i32 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{service:?} never became {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn health_is_serving_only_while_every_dependency_answers() {
    let up = Arc::new(AtomicBool::new(true));
    let shutdown = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let authenticator =
        svcops_kit::auth::Authenticator::new(b"a-test-secret-of-at-least-32-bytes!!")
            .expect("authenticator");
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        let dependency: Arc<dyn Dependency> = Arc::new(Switch(up.clone()));
        async move {
            svcops_kit::server::serve(
                tonic::service::RoutesBuilder::default().routes(),
                vec!["svcops.test.v1.Thing".into()],
                vec![dependency],
                &authenticator,
                listener,
                shutdown,
            )
            .await
        }
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);

    wait_for(&mut client, "", ServingStatus::Serving).await;
    wait_for(&mut client, "svcops.test.v1.Thing", ServingStatus::Serving).await;

    up.store(false, Ordering::SeqCst);
    wait_for(&mut client, "", ServingStatus::NotServing).await;
    wait_for(
        &mut client,
        "svcops.test.v1.Thing",
        ServingStatus::NotServing,
    )
    .await;

    up.store(true, Ordering::SeqCst);
    wait_for(&mut client, "svcops.test.v1.Thing", ServingStatus::Serving).await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops after shutdown")
        .expect("join")
        .expect("served cleanly");
}
