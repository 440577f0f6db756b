//! The four offices as separate processes on PostgreSQL and a Kafka-protocol broker.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use svcops_kit::auth::Role;
use svcops_proto::backoffice::v1 as back;
use svcops_proto::backoffice::v1::back_office_service_client::BackOfficeServiceClient;
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::frontoffice::v1::case_service_client::CaseServiceClient;
use svcops_proto::listenin::v1 as listen;
use svcops_proto::listenin::v1::listen_in_service_client::ListenInServiceClient;
use svcops_proto::middleoffice::v1 as middle;
use svcops_proto::middleoffice::v1::work_order_service_client::WorkOrderServiceClient;
use tests::{Cluster, eventually};
use tokio_stream::StreamExt;

const FLOW_TIMEOUT: Duration = Duration::from_secs(60);

fn repair_case(phone: &str, request_id: &str) -> front::OpenCaseRequest {
    front::OpenCaseRequest {
        request_id: request_id.to_owned(),
        customer_phone: phone.to_owned(),
        category: common::CaseCategory::Repair.into(),
        priority: common::Priority::High.into(),
        channel: front::Channel::Hotline.into(),
        summary: "ceiling lamp flickers".into(),
        product: "PL-200".into(),
        serial_number: "SN-42".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repair_case_flows_through_every_office_and_listen_in_follows_it() {
    let mut cluster = Cluster::start().await;
    let front_channel = cluster.service("front-office").channel().await;
    let listen_channel = cluster.service("listen-in").channel().await;
    let back_channel = cluster.service("back-office").channel().await;
    let mut cases = CaseServiceClient::new(front_channel);

    // The caller's trace: carried in gRPC metadata into the event, then in Kafka headers
    // to every office that reacts.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let mut open_request = cluster.request(Role::Agent, repair_case("+86 138 0000 1234", "req-1"));
    open_request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .expect("ascii"),
    );
    let opened = cases
        .open_case(open_request)
        .await
        .expect("open case")
        .into_inner()
        .case
        .expect("case");
    // Idempotent retry: the same request id returns the same case.
    let again = cases
        .open_case(cluster.request(Role::Agent, repair_case("+86 138 0000 1234", "req-1")))
        .await
        .expect("retry")
        .into_inner()
        .case
        .expect("case");
    assert_eq!(again.case_id, opened.case_id);
    assert_eq!(again.version, 1);

    // The executive starts listening right away: catch-up, then live.
    let mut stream = ListenInServiceClient::new(listen_channel)
        .watch_case(cluster.request(
            Role::Executive,
            listen::WatchCaseRequest {
                case_id: opened.case_id.clone(),
                catch_up_only: false,
                after_sequence: 0,
            },
        ))
        .await
        .expect("watch")
        .into_inner();
    let mut entries = Vec::new();
    let mut caught_up = false;
    let wanted = [
        "svcops.frontoffice.v1.CaseOpened",
        "svcops.middleoffice.v1.WorkOrderOpened",
        "svcops.backoffice.v1.SlaClockStarted",
        "svcops.backoffice.v1.ClosedLoopItemOpened",
        "svcops.backoffice.v1.SlaOnSiteTargetSet",
        "svcops.listenin.v1.ListenSessionStarted",
    ];
    tokio::time::timeout(FLOW_TIMEOUT, async {
        while let Some(message) = stream.next().await {
            match message.expect("stream item").kind.expect("kind") {
                listen::watch_case_response::Kind::Entry(entry) => entries.push(entry),
                listen::watch_case_response::Kind::CaughtUp(_) => caught_up = true,
            }
            let seen: HashSet<&str> = entries
                .iter()
                .map(|entry| entry.event_type.as_str())
                .collect();
            if wanted.iter().all(|kind| seen.contains(kind)) {
                return;
            }
        }
        panic!("stream ended early");
    })
    .await
    .unwrap_or_else(|_| panic!("timeline incomplete: {entries:#?}"));
    assert!(caught_up, "the stream marks the end of the catch-up");

    // In order, gap-free, each with office, type, time and actor.
    for (index, entry) in entries.iter().enumerate() {
        assert_eq!(entry.sequence, index as u64 + 1, "gap-free sequence");
        assert!(entry.occurred_at.is_some());
        assert!(!entry.actor.as_ref().expect("actor").subject.is_empty());
        assert!(!entry.description.is_empty());
    }
    let first = entries
        .iter()
        .find(|entry| entry.event_type == "svcops.frontoffice.v1.CaseOpened")
        .expect("case opened");
    assert_eq!(first.office, common::Office::Front as i32);
    assert_eq!(first.actor.as_ref().expect("actor").subject, "test-agent");
    // Listen-in never sees the customer's phone: it travels sealed with the customer's key.
    assert!(
        first.description.contains("personal data sealed"),
        "{}",
        first.description
    );
    assert!(!first.description.contains("1234"), "{}", first.description);
    let office_of = |kind: &str| {
        entries
            .iter()
            .find(|entry| entry.event_type == kind)
            .expect(kind)
            .office
    };
    assert_eq!(
        office_of("svcops.middleoffice.v1.WorkOrderOpened"),
        common::Office::Middle as i32
    );
    assert_eq!(
        office_of("svcops.backoffice.v1.SlaClockStarted"),
        common::Office::Back as i32
    );
    assert_eq!(
        office_of("svcops.listenin.v1.ListenSessionStarted"),
        common::Office::ListenIn as i32
    );
    // Causes come before their effects, whichever office's topic was consumed first.
    let position = |kind: &str| {
        entries
            .iter()
            .position(|entry| entry.event_type == kind)
            .expect(kind)
    };
    let case_opened = position("svcops.frontoffice.v1.CaseOpened");
    for effect in [
        "svcops.middleoffice.v1.WorkOrderOpened",
        "svcops.backoffice.v1.SlaClockStarted",
        "svcops.backoffice.v1.ClosedLoopItemOpened",
    ] {
        assert!(
            case_opened < position(effect),
            "CaseOpened before {effect}: {entries:#?}"
        );
    }
    assert!(
        position("svcops.middleoffice.v1.WorkOrderOpened")
            < position("svcops.backoffice.v1.SlaOnSiteTargetSet"),
        "{entries:#?}"
    );
    // Every stream's events appear in the stream's own order.
    let mut last_version = std::collections::HashMap::new();
    for entry in &entries {
        let previous = last_version.insert(entry.stream_id.clone(), entry.stream_version);
        assert!(
            previous.is_none_or(|previous| previous < entry.stream_version),
            "{entry:?}"
        );
    }

    // One trace from the agent's call through every office's reaction.
    for office in ["front-office", "middle-office", "back-office"] {
        let url = cluster.service(office).database_url().to_owned();
        let store = svcops_eventstore::PostgresStore::connect(&url, 1)
            .await
            .expect("connect");
        let events = svcops_eventstore::EventStore::read_all(&store, 0, 100)
            .await
            .expect("read");
        assert!(!events.is_empty(), "{office} wrote events");
        for event in events.iter().filter(|event| {
            event.metadata.case_id.map(|id| id.to_string()) == Some(opened.case_id.clone())
        }) {
            let traceparent = event.metadata.traceparent.as_deref().unwrap_or_default();
            assert!(
                traceparent.contains(&trace_id),
                "{office} {} carries trace {traceparent:?}, expected {trace_id}",
                event.event_type
            );
        }
    }

    // Reads at the front office.
    let fetched = cases
        .get_case(cluster.request(
            Role::Agent,
            front::GetCaseRequest {
                case_id: opened.case_id.clone(),
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .case
        .expect("case");
    assert_eq!(fetched.customer_phone, "+8613800001234");
    assert_eq!(fetched.state, front::CaseState::Open as i32);
    let listed = eventually("the case in the list", FLOW_TIMEOUT, || {
        let mut cases = cases.clone();
        let request = cluster.request(
            Role::Manager,
            front::ListCasesRequest {
                page_size: 1,
                page_token: String::new(),
                ..Default::default()
            },
        );
        async move {
            let response = cases.list_cases(request).await.ok()?.into_inner();
            (response.cases.len() == 1).then_some(response)
        }
    })
    .await;
    assert_eq!(listed.cases[0].case_id, opened.case_id);
    assert!(listed.next_page_token.is_empty(), "one case, one page");

    // The back office tracks it.
    let tracking = BackOfficeServiceClient::new(back_channel)
        .get_case_tracking(cluster.request(
            Role::Qa,
            back::GetCaseTrackingRequest {
                case_id: opened.case_id.clone(),
            },
        ))
        .await
        .expect("tracking")
        .into_inner()
        .tracking
        .expect("tracking");
    assert_eq!(
        tracking.closed_loop_state,
        back::ClosedLoopState::Open as i32
    );
    assert_eq!(tracking.work_order_ids.len(), 1);
    assert!(tracking.first_response_due.is_some() && tracking.on_site_due.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_authenticates_authorises_and_validates() {
    let mut cluster = Cluster::start().await;
    let mut cases = CaseServiceClient::new(cluster.service("front-office").channel().await);
    let mut listen_in = ListenInServiceClient::new(cluster.service("listen-in").channel().await);

    let anonymous = cases
        .open_case(tonic::Request::new(repair_case("+8613800001234", "")))
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);

    let forged = {
        let mut request = tonic::Request::new(repair_case("+8613800001234", ""));
        request.metadata_mut().insert(
            "authorization",
            "Bearer not.a.token".parse().expect("ascii"),
        );
        cases.open_case(request).await.expect_err("bad token")
    };
    assert_eq!(forged.code(), tonic::Code::Unauthenticated);

    let denied = cases
        .open_case(cluster.request(Role::Executive, repair_case("+8613800001234", "")))
        .await
        .expect_err("executives do not open cases");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    let denied = listen_in
        .watch_case(cluster.request(
            Role::Agent,
            listen::WatchCaseRequest {
                case_id: uuid::Uuid::nil().to_string(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("agents do not listen in");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // Projections are for admins: a manager may neither list nor rebuild them.
    let denied = cases
        .rebuild_projection(cluster.request(
            Role::Manager,
            front::RebuildProjectionRequest {
                name: "case_list".into(),
            },
        ))
        .await
        .expect_err("managers do not rebuild read models");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let report = cases
        .list_projections(cluster.request(Role::Admin, front::ListProjectionsRequest {}))
        .await
        .expect("admins list projections")
        .into_inner()
        .report
        .expect("a report");
    assert!(
        report
            .generations
            .iter()
            .any(|generation| generation.name == "case_list"),
        "{report:?}"
    );
    let invalid = cases
        .rebuild_projection(cluster.request(
            Role::Admin,
            front::RebuildProjectionRequest { name: " ".into() },
        ))
        .await
        .expect_err("a projection needs a name");
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);

    let invalid = cases
        .open_case(cluster.request(
            Role::Agent,
            front::OpenCaseRequest {
                customer_phone: "12".into(),
                summary: String::new(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("invalid");
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert!(
        invalid.message().contains("customer_phone"),
        "{}",
        invalid.message()
    );
    assert!(
        invalid.message().contains("category"),
        "{}",
        invalid.message()
    );

    // A request id names one request: the same id with another body is refused, not
    // answered with the first result; a control character is refused alike by every store.
    cases
        .open_case(cluster.request(Role::Agent, repair_case("+8613800001234", "req-reused")))
        .await
        .expect("first use of the request id");
    let mut other_request = repair_case("+8613800001234", "req-reused");
    other_request.summary = "door bell broken".into();
    let reused = cases
        .open_case(cluster.request(Role::Agent, other_request))
        .await
        .expect_err("the same request id with another request");
    assert_eq!(reused.code(), tonic::Code::InvalidArgument, "{reused:?}");
    assert!(
        reused.message().contains("request_id"),
        "{}",
        reused.message()
    );
    let nul = cases
        .open_case(cluster.request(Role::Agent, repair_case("+8613800001234", "req\0one")))
        .await
        .expect_err("a request id with NUL");
    assert_eq!(nul.code(), tonic::Code::InvalidArgument, "{nul:?}");
    assert!(nul.message().contains("request_id"), "{}", nul.message());

    let missing = cases
        .get_case(cluster.request(
            Role::Agent,
            front::GetCaseRequest {
                case_id: uuid::Uuid::now_v7().to_string(),
            },
        ))
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_middle_office_mid_burst_loses_and_duplicates_nothing() {
    const CASES: usize = 200;
    let mut cluster = Cluster::start().await;
    let mut cases = CaseServiceClient::new(cluster.service("front-office").channel().await);
    let mut case_ids = Vec::with_capacity(CASES);
    // Both reactors die mid-burst with handled but not yet acknowledged deliveries (offsets
    // are committed every second), so they see those again after the restart: only their
    // idempotency keys keep the effects single. The middle office's work order is also
    // single by construction (its id derives from the case); listen-in's timeline entries
    // are keyed by nothing but the source event's id, so a broken key shows there.
    for index in 0..CASES {
        if index == CASES / 3 {
            cluster.service("middle-office").kill().await;
        }
        if index == CASES / 2 {
            cluster.service("listen-in").kill().await;
        }
        if index == CASES * 2 / 3 {
            cluster.service("middle-office").restart().await;
            cluster.service("listen-in").restart().await;
        }
        let case = cases
            .open_case(cluster.request(
                Role::Agent,
                repair_case("+8613800001234", &format!("burst-{index}")),
            ))
            .await
            .expect("open case")
            .into_inner()
            .case
            .expect("case");
        case_ids.push(case.case_id);
    }
    let mut back_office =
        BackOfficeServiceClient::new(cluster.service("back-office").channel().await);
    let stats = cluster
        .stats_counting(back_office.clone(), CASES as u64, Duration::from_secs(120))
        .await;
    assert_eq!(stats.cases_tracked, CASES as u64, "each case counted once");
    assert_eq!(
        stats.work_orders_tracked, CASES as u64,
        "each work order counted once"
    );
    assert_eq!(stats.closed_loop_open, CASES as u64);

    let mut work_orders =
        WorkOrderServiceClient::new(cluster.service("middle-office").channel().await);
    for case_id in &case_ids {
        let listed = work_orders
            .list_work_orders(cluster.request(
                Role::Technician,
                middle::ListWorkOrdersRequest {
                    case_id: case_id.clone(),
                    page_size: 10,
                    page_token: String::new(),
                },
            ))
            .await
            .expect("list work orders")
            .into_inner();
        assert_eq!(
            listed.work_orders.len(),
            1,
            "case {case_id} has exactly one work order"
        );
    }
    // Redeliveries after the kill must not have counted anything twice since.
    let again = back_office
        .get_service_stats(cluster.request(Role::Manager, back::GetServiceStatsRequest {}))
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(again, stats);

    // Every case's timeline holds each source event exactly once.
    let listen_in = ListenInServiceClient::new(cluster.service("listen-in").channel().await);
    for case_id in &case_ids {
        let entries = cluster
            .timeline_once_holding(
                listen_in.clone(),
                case_id,
                &[
                    "svcops.frontoffice.v1.CaseOpened",
                    "svcops.middleoffice.v1.WorkOrderOpened",
                    "svcops.backoffice.v1.SlaOnSiteTargetSet",
                ],
                FLOW_TIMEOUT,
            )
            .await;
        tests::assert_each_event_once(case_id, &entries);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_event_is_dead_lettered_and_its_case_flagged() {
    use svcops_bus::{Bus, KafkaBus, KafkaConfig, NamespacedBus, topics};
    use svcops_eventstore::{EventMetadata, RecordedEvent, StreamId};

    let mut cluster = Cluster::start().await;
    let mut cases = CaseServiceClient::new(cluster.service("front-office").channel().await);
    let case = cases
        .open_case(cluster.request(Role::Agent, repair_case("+8613800001234", "")))
        .await
        .expect("open case")
        .into_inner()
        .case
        .expect("case");
    let case_id = uuid::Uuid::parse_str(&case.case_id).expect("uuid");

    // A well-addressed CaseOpened whose payload is garbage: the offices that decode it give
    // up after their retries and dead-letter it.
    let poison = RecordedEvent {
        position: 1,
        stream_id: StreamId::for_aggregate("case", case_id),
        version: 99,
        event_id: uuid::Uuid::now_v7(),
        event_type: "svcops.frontoffice.v1.CaseOpened".into(),
        payload: vec![0xff, 0xff, 0xff],
        metadata: EventMetadata {
            case_id: Some(case_id),
            actor_subject: "mallory".into(),
            actor_role: "service".into(),
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
            traceparent: None,
            occurred_at: time::OffsetDateTime::now_utc(),
        },
        recorded_at: time::OffsetDateTime::now_utc(),
    };
    let bus = NamespacedBus::new(
        KafkaBus::connect(KafkaConfig::new(cluster.kafka.clone()))
            .await
            .expect("kafka"),
        &cluster.namespace,
    );
    bus.publish(
        topics::FRONT_OFFICE,
        vec![svcops_bus::envelope::to_message(
            "svcops/front-office",
            &poison,
        )],
    )
    .await
    .expect("publish poison");

    let flagged = eventually("the case to be flagged", FLOW_TIMEOUT, || {
        let mut cases = cases.clone();
        let request = cluster.request(
            Role::Agent,
            front::GetCaseRequest {
                case_id: case.case_id.clone(),
            },
        );
        async move {
            let case = cases.get_case(request).await.ok()?.into_inner().case?;
            (case.flags.len() >= 2).then_some(case)
        }
    })
    .await;
    let groups: HashSet<&str> = flagged
        .flags
        .iter()
        .map(|note| {
            assert_eq!(note.flag, front::CaseFlag::ProcessingFailed as i32);
            assert!(
                note.detail.contains(&poison.event_id.to_string()),
                "{}",
                note.detail
            );
            note.detail.split(' ').next().unwrap_or_default()
        })
        .collect();
    assert!(groups.contains("middle-office"), "{groups:?}");
    assert!(groups.contains("back-office"), "{groups:?}");

    // The offices kept going: a new case still flows.
    let next = cases
        .open_case(cluster.request(Role::Agent, repair_case("+8613800001234", "")))
        .await
        .expect("open case")
        .into_inner()
        .case
        .expect("case");
    let back_office = BackOfficeServiceClient::new(cluster.service("back-office").channel().await);
    eventually("the next case to be tracked", FLOW_TIMEOUT, || {
        let mut back_office = back_office.clone();
        let request = cluster.request(
            Role::Qa,
            back::GetCaseTrackingRequest {
                case_id: next.case_id.clone(),
            },
        );
        async move {
            back_office
                .get_case_tracking(request)
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
}

/// One reflection request, its first answer.
async fn reflect<S>(
    client: &mut tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient<
        tonic::transport::Channel,
    >,
    request: tonic::Request<S>,
) -> Option<tonic_reflection::pb::v1::server_reflection_response::MessageResponse>
where
    S: tokio_stream::Stream<Item = tonic_reflection::pb::v1::ServerReflectionRequest>
        + Send
        + 'static,
{
    client
        .server_reflection_info(request)
        .await
        .expect("reflection")
        .into_inner()
        .next()
        .await
        .expect("a response")
        .expect("ok")
        .message_response
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lets_a_generic_client_find_every_service() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let mut cluster = Cluster::start().await;
    let expected = [
        ("front-office", "svcops.frontoffice.v1.CaseService"),
        ("middle-office", "svcops.middleoffice.v1.WorkOrderService"),
        ("back-office", "svcops.backoffice.v1.BackOfficeService"),
        ("listen-in", "svcops.listenin.v1.ListenInService"),
    ];
    for (office, service) in expected {
        let mut client = ServerReflectionClient::new(cluster.service(office).channel().await);
        let ask = |request: MessageRequest| {
            tokio_stream::iter([ServerReflectionRequest {
                host: String::new(),
                message_request: Some(request),
            }])
        };
        // No token, no reflection.
        let anonymous = client
            .server_reflection_info(ask(MessageRequest::ListServices(String::new())))
            .await;
        assert_eq!(
            anonymous.expect_err("needs a token").code(),
            tonic::Code::Unauthenticated
        );

        let Some(MessageResponse::ListServicesResponse(list)) = reflect(
            &mut client,
            cluster.request(
                Role::Service,
                ask(MessageRequest::ListServices(String::new())),
            ),
        )
        .await
        else {
            panic!("not a service list");
        };
        let names: HashSet<String> = list
            .service
            .into_iter()
            .map(|service| service.name)
            .collect();
        assert!(names.contains(service), "{office} lists {names:?}");
        assert!(names.contains("grpc.health.v1.Health"), "{names:?}");

        // And the descriptors to call it.
        let Some(MessageResponse::FileDescriptorResponse(files)) = reflect(
            &mut client,
            cluster.request(
                Role::Service,
                ask(MessageRequest::FileContainingSymbol(service.to_owned())),
            ),
        )
        .await
        else {
            panic!("no descriptors for {service}");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_the_outbox_before_the_process_exits() {
    const CASES: usize = 30;
    let mut cluster = Cluster::start().await;
    let mut cases = CaseServiceClient::new(cluster.service("front-office").channel().await);
    let mut case_ids = Vec::new();
    for index in 0..CASES {
        let case = cases
            .open_case(cluster.request(
                Role::Agent,
                repair_case("+8613800001234", &format!("drain-{index}")),
            ))
            .await
            .expect("open")
            .into_inner()
            .case
            .expect("case");
        case_ids.push(case.case_id);
    }
    // Straight after the last commit: whatever the relay has not published yet must go out
    // before the process ends.
    let status = cluster.service("front-office").terminate().await;
    assert!(status.success(), "front office exited with {status}");

    let back_office = BackOfficeServiceClient::new(cluster.service("back-office").channel().await);
    eventually("the back office to see every case", FLOW_TIMEOUT, || {
        let mut back_office = back_office.clone();
        let request = cluster.request(Role::Manager, back::GetServiceStatsRequest {});
        async move {
            let stats = back_office
                .get_service_stats(request)
                .await
                .ok()?
                .into_inner();
            (stats.cases_tracked == CASES as u64).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn erasing_a_customer_makes_their_phone_unreadable_everywhere() {
    let mut cluster = Cluster::start().await;
    let mut cases = CaseServiceClient::new(cluster.service("front-office").channel().await);
    let phone = "+86 139 1234 5678";
    let mut case_ids = Vec::new();
    for _ in 0..2 {
        let case = cases
            .open_case(cluster.request(Role::Agent, repair_case(phone, "")))
            .await
            .expect("open")
            .into_inner()
            .case
            .expect("case");
        assert_eq!(case.customer_phone, "+8613912345678");
        case_ids.push(case.case_id);
    }
    // The phone is in no event of any office, in any form a reader could use.
    for office in ["front-office", "middle-office", "back-office", "listen-in"] {
        let url = cluster.service(office).database_url().to_owned();
        let store = svcops_eventstore::PostgresStore::connect(&url, 1)
            .await
            .expect("connect");
        let events = svcops_eventstore::EventStore::read_all(&store, 0, 1000)
            .await
            .expect("read");
        for event in events {
            assert!(
                !event.payload.windows(8).any(|window| window == b"13912345"),
                "{office} stores the phone in plain text in {}",
                event.event_type
            );
        }
        if office == "front-office" {
            // Nor in the key table: subjects are hashed, keys wrapped.
            let plain: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM personal_data_keys \
                 WHERE subject IS NOT NULL OR key IS NOT NULL OR subject_hash LIKE '%13912345%'",
            )
            .fetch_one(store.pool())
            .await
            .expect("read the key table");
            assert_eq!(plain, 0, "the key table holds the phone or a plain key");
        }
    }

    let denied = cases
        .erase_customer_data(cluster.request(
            Role::Agent,
            front::EraseCustomerDataRequest {
                customer_phone: phone.into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("agents may not erase");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let erased = cases
        .erase_customer_data(cluster.request(
            Role::Manager,
            front::EraseCustomerDataRequest {
                customer_phone: phone.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("erase")
        .into_inner();
    assert!(erased.erased);

    for case_id in &case_ids {
        let case = cases
            .get_case(cluster.request(
                Role::Agent,
                front::GetCaseRequest {
                    case_id: case_id.clone(),
                },
            ))
            .await
            .expect("the case is still there")
            .into_inner()
            .case
            .expect("case");
        assert!(case.customer_data_erased);
        assert_eq!(case.customer_phone, "");
        assert_eq!(
            case.summary, "ceiling lamp flickers",
            "the rest of the case stays"
        );
    }
    let listed = cases
        .list_cases(cluster.request(
            Role::Agent,
            front::ListCasesRequest {
                page_size: 10,
                page_token: String::new(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    assert!(
        listed
            .cases
            .iter()
            .all(|case| case.customer_data_erased && case.customer_phone.is_empty())
    );

    // Nothing left to erase; a returning customer starts afresh with a new key.
    let again = cases
        .erase_customer_data(cluster.request(
            Role::Manager,
            front::EraseCustomerDataRequest {
                customer_phone: phone.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("erase again")
        .into_inner();
    assert!(!again.erased);
    let returning = cases
        .open_case(cluster.request(Role::Agent, repair_case(phone, "")))
        .await
        .expect("open")
        .into_inner()
        .case
        .expect("case");
    assert_eq!(returning.customer_phone, "+8613912345678");
}
