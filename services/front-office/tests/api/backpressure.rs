//! The front door under a lagging pipeline: served over gRPC as in a process of its own, with
//! a lag bound, `OpenCase` is refused with RESOURCE_EXHAUSTED and a retry delay while a
//! consumer of this process reports it is behind past the bound, and taken again once it has
//! caught up; the health detail `svcops.pipeline` follows.

use std::time::Duration;

use svcops_bus::lag::{self, Backpressure};
use svcops_kit::auth::Role;
use svcops_proto::common::v1 as types;
use svcops_proto::frontoffice::v1 as proto;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;
use uuid::Uuid;

fn open_case() -> proto::OpenCaseRequest {
    proto::OpenCaseRequest {
        request_id: String::new(),
        customer_phone: "+8613800001234".into(),
        category: types::CaseCategory::Repair.into(),
        priority: types::Priority::Normal.into(),
        channel: proto::Channel::Hotline.into(),
        summary: "lamp flickers".into(),
        product: "PL-200".into(),
        serial_number: "SN-1".into(),
        ..Default::default()
    }
}

/// Waits (bounded) for the pipeline's health detail to read `status`.
async fn pipeline_health_becomes(address: std::net::SocketAddr, status: ServingStatus) {
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = health
            .check(HealthCheckRequest {
                service: svcops_kit::server::PIPELINE_HEALTH.into(),
            })
            .await
            .map(|response| response.into_inner().status);
        if now.as_ref().ok() == Some(&(status as i32)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pipeline health is {now:?}, not {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn open_case_is_refused_with_a_retry_delay_while_the_pipeline_lags_past_the_bound() {
    let served = crate::common::Served::start(Backpressure {
        max_lag: Some(Duration::from_secs(5)),
    })
    .await;
    let address = served.address;
    let mut cases = served.cases().await;
    let request = || served.request(Role::Agent, open_case());

    // A consumer of this process is a minute behind.
    let source = format!("consumer:test-{}", Uuid::new_v4());
    lag::report(&source, 60.0);
    pipeline_health_becomes(address, ServingStatus::NotServing).await;
    let refused = cases.open_case(request()).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains(&source) && refused.message().contains("retry in"),
        "names the laggard and when to retry, on one line: {}",
        refused.message()
    );
    let retry = refused
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a retry delay");
    assert!(retry >= Duration::from_secs(1) && retry <= Duration::from_secs(30));

    // Caught up: taken again.
    lag::report(&source, 0.0);
    pipeline_health_becomes(address, ServingStatus::Serving).await;
    let opened = cases.open_case(request()).await.unwrap().into_inner();
    assert!(opened.case.is_some());

    served.stop().await;
}
