//! Listen-in as a process: causes before effects without stalling a topic, across a crash;
//! unknown cases; session ends on a graceful stop and after a crash.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use svcops_bus::{Bus, KafkaBus, KafkaConfig, NamespacedBus, topics};
use svcops_eventstore::{EventMetadata, EventStore, PostgresStore, RecordedEvent, StreamId};
use svcops_kit::auth::Role;
use svcops_kit::events::decode;
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::frontoffice::v1::case_service_client::CaseServiceClient;
use svcops_proto::listenin::v1 as listen;
use svcops_proto::listenin::v1::listen_in_service_client::ListenInServiceClient;
use tests::{Cluster, eventually};
use tokio_stream::StreamExt;
use uuid::Uuid;

const FLOW_TIMEOUT: Duration = Duration::from_secs(60);
/// After a SIGKILL the broker lets the dead member's group session time out first.
const AFTER_CRASH_TIMEOUT: Duration = Duration::from_secs(120);
const SESSION_STARTED: &str = "svcops.listenin.v1.ListenSessionStarted";
const SESSION_ENDED: &str = "svcops.listenin.v1.ListenSessionEnded";

async fn open_case(cluster: &mut Cluster) -> String {
    let mut cases = CaseServiceClient::new(cluster.service("front-office").channel().await);
    cases
        .open_case(cluster.request(
            Role::Agent,
            front::OpenCaseRequest {
                request_id: String::new(),
                customer_phone: "+8613800001234".into(),
                category: common::CaseCategory::Repair.into(),
                priority: common::Priority::Normal.into(),
                channel: front::Channel::Hotline.into(),
                summary: "lamp flickers".into(),
                product: "PL-200".into(),
                serial_number: "SN-7".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("open case")
        .into_inner()
        .case
        .expect("case")
        .case_id
}

fn watch(case_id: &str, catch_up_only: bool) -> listen::WatchCaseRequest {
    listen::WatchCaseRequest {
        case_id: case_id.to_owned(),
        catch_up_only,
        after_sequence: 0,
    }
}

/// Where listen-in serves now, and an executive's token for it.
struct Executive {
    address: String,
    token: String,
}

impl Executive {
    fn at(cluster: &mut Cluster) -> Self {
        Self {
            token: cluster.token(Role::Executive),
            address: cluster.service("listen-in").address.clone(),
        }
    }
}

/// The case's timeline as a catch-up shows it now.
async fn timeline(executive: &Executive, case_id: &str) -> Option<Vec<listen::TimelineEntry>> {
    let channel = tonic::transport::Channel::from_shared(executive.address.clone())
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut request = tonic::Request::new(watch(case_id, true));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", executive.token).parse().ok()?,
    );
    let mut stream = ListenInServiceClient::new(channel)
        .watch_case(request)
        .await
        .ok()?
        .into_inner();
    let mut entries = Vec::new();
    while let Some(message) = stream.next().await {
        if let Some(listen::watch_case_response::Kind::Entry(entry)) = message.ok()?.kind {
            entries.push(entry);
        }
    }
    Some(entries)
}

/// Follows `case_id` as a manager (the catch-ups of [`timeline`] are executives') until
/// listen-in's record of this very session is on the timeline; returns the open stream and
/// the session's stream id.
async fn follow_until_own_start(
    cluster: &mut Cluster,
    case_id: &str,
) -> (tonic::Streaming<listen::WatchCaseResponse>, String) {
    let channel = cluster.service("listen-in").channel().await;
    let request = cluster.request(Role::Manager, watch(case_id, false));
    let mut stream = ListenInServiceClient::new(channel)
        .watch_case(request)
        .await
        .expect("a case opened a moment ago is watchable")
        .into_inner();
    let session = tokio::time::timeout(FLOW_TIMEOUT, async {
        while let Some(message) = stream.next().await {
            if let Some(listen::watch_case_response::Kind::Entry(entry)) =
                message.expect("item").kind
                && entry.event_type == SESSION_STARTED
                && entry
                    .actor
                    .as_ref()
                    .is_some_and(|actor| actor.subject == "test-manager")
            {
                return entry.stream_id;
            }
        }
        panic!("stream ended before the session's start was on the timeline");
    })
    .await
    .expect("the session's start reaches the timeline");
    (stream, session)
}

/// An event of `case_id` as some office would publish it.
fn probe(case_id: Uuid, stream: &str, causation_id: Option<Uuid>) -> RecordedEvent {
    RecordedEvent {
        position: 1,
        stream_id: StreamId::parse(stream).expect("stream id"),
        version: 1,
        event_id: Uuid::now_v7(),
        event_type: "svcops.test.v1.Probe".into(),
        payload: Vec::new(),
        metadata: EventMetadata {
            case_id: Some(case_id),
            actor_subject: "probe".into(),
            actor_role: "service".into(),
            correlation_id: Uuid::now_v7(),
            causation_id,
            traceparent: None,
            occurred_at: time::OffsetDateTime::now_utc(),
        },
        recorded_at: time::OffsetDateTime::now_utc(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_early_effect_waits_aside_without_stalling_its_topic_even_across_a_crash() {
    let mut cluster = Cluster::start().await;
    let case_id = open_case(&mut cluster).await;
    let case = Uuid::parse_str(&case_id).expect("uuid");
    let bus = NamespacedBus::new(
        KafkaBus::connect(KafkaConfig::new(cluster.kafka.clone()))
            .await
            .expect("kafka"),
        &cluster.namespace,
    );
    // Only listen-in consumes the back office's topic, so probes there touch nothing else.
    let cause = probe(case, &format!("probe-{}", Uuid::now_v7()), None);
    let effect = probe(
        case,
        &format!("probe-{}", Uuid::now_v7()),
        Some(cause.event_id),
    );
    let unrelated = probe(case, &format!("probe-{}", Uuid::now_v7()), None);
    let publish = |events: Vec<&RecordedEvent>| {
        let messages = events
            .into_iter()
            .map(|event| svcops_bus::envelope::to_message("svcops/back-office", event))
            .collect();
        bus.publish(topics::BACK_OFFICE, messages)
    };
    // Same case, same partition: the effect is delivered before the unrelated event.
    publish(vec![&effect, &unrelated]).await.expect("publish");
    let executive = Executive::at(&mut cluster);
    let seen = eventually("the event after the early effect", FLOW_TIMEOUT, || {
        let executive = &executive;
        let case_id = case_id.clone();
        let unrelated = unrelated.event_id.to_string();
        async move {
            let entries = timeline(executive, &case_id).await?;
            entries
                .iter()
                .any(|entry| entry.event_id == unrelated)
                .then_some(entries)
        }
    })
    .await;
    assert!(
        !seen
            .iter()
            .any(|entry| entry.event_id == effect.event_id.to_string()),
        "the effect waits aside for its cause while its topic moves on: {seen:#?}"
    );

    // Held aside durably: a crash loses nothing.
    cluster.service("listen-in").kill().await;
    cluster.service("listen-in").restart().await;
    publish(vec![&cause]).await.expect("publish");
    let executive = Executive::at(&mut cluster);
    let entries = eventually("the effect after its cause", AFTER_CRASH_TIMEOUT, || {
        let executive = &executive;
        let case_id = case_id.clone();
        let effect = effect.event_id.to_string();
        async move {
            let entries = timeline(executive, &case_id).await?;
            entries
                .iter()
                .any(|entry| entry.event_id == effect)
                .then_some(entries)
        }
    })
    .await;
    let position = |event: &RecordedEvent| {
        entries
            .iter()
            .position(|entry| entry.event_id == event.event_id.to_string())
            .expect("on the timeline")
    };
    assert!(position(&cause) < position(&effect), "{entries:#?}");
    assert!(!entries[position(&effect)].cause_missing);
    assert_eq!(
        entries
            .iter()
            .filter(|entry| entry.event_id == effect.event_id.to_string())
            .count(),
        1,
        "recorded once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_cut_off_by_a_crash_is_ended_when_listen_in_comes_back() {
    // A short grace, so the unknown case below is answered quickly.
    let mut cluster = Cluster::start_with(&[
        ("SVCOPS_LISTEN_IN__UNKNOWN_CASE_GRACE_MS", "1000"),
        ("SVCOPS_LISTEN_IN__STARTUP_GRACE_MS", "0"),
    ])
    .await;
    let case_id = open_case(&mut cluster).await;
    let executive = Executive::at(&mut cluster);
    eventually("the case on listen-in's timeline", FLOW_TIMEOUT, || {
        timeline(&executive, &case_id)
    })
    .await;
    let (_stream, session) = follow_until_own_start(&mut cluster, &case_id).await;
    cluster.service("listen-in").kill().await;
    cluster.service("listen-in").restart().await;
    let executive = Executive::at(&mut cluster);
    let ended = eventually("the cut-off session's end", AFTER_CRASH_TIMEOUT, || {
        let executive = &executive;
        let case_id = case_id.clone();
        let session = session.clone();
        async move {
            timeline(executive, &case_id)
                .await?
                .into_iter()
                .find(|entry| entry.event_type == SESSION_ENDED && entry.stream_id == session)
        }
    })
    .await;
    assert!(
        ended.description.contains("listen-in restarted"),
        "{}",
        ended.description
    );
    assert_eq!(ended.actor.expect("actor").subject, "test-manager");

    // No office ever recorded this case: NOT_FOUND after the grace period, not an empty
    // stream that follows forever.
    let channel = cluster.service("listen-in").channel().await;
    let request = cluster.request(Role::Executive, watch(&Uuid::now_v7().to_string(), false));
    let missing = ListenInServiceClient::new(channel)
        .watch_case(request)
        .await
        .expect_err("unknown case");
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_records_and_publishes_the_end_of_open_sessions_before_exiting() {
    let mut cluster = Cluster::start().await;
    let case_id = open_case(&mut cluster).await;
    let (_stream, session) = follow_until_own_start(&mut cluster, &case_id).await;
    let status = cluster.service("listen-in").terminate().await;
    assert!(status.success(), "listen-in exited with {status}");

    let store = PostgresStore::connect(cluster.service("listen-in").database_url(), 1)
        .await
        .expect("connect");
    let events = store
        .read_stream(&StreamId::parse(session).expect("stream"), 1, 10)
        .await
        .expect("read");
    let reasons: Vec<String> = events
        .iter()
        .filter_map(|event| {
            decode::<listen::ListenSessionEnded>(&event.event_type, &event.payload).expect("decode")
        })
        .map(|ended| ended.reason)
        .collect();
    assert_eq!(reasons, ["listen-in shut down"]);
    assert!(
        store.unpublished(10).await.expect("outbox").is_empty(),
        "the end was published before the process exited"
    );
}
