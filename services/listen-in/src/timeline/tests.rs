//! Timelines over a real (SQLite) store: ordering, holding aside across restarts, bounds.

use std::time::Duration;

use svcops_eventstore::SqliteStore;

use super::*;
use crate::app::SOURCE;

/// An event of `stream_id` at `version` on `case_id`, caused by `causation_id`.
fn event_in(
    case_id: Uuid,
    stream_id: &str,
    version: u64,
    causation_id: Option<Uuid>,
    source: &str,
) -> BusEvent {
    BusEvent {
        source: source.into(),
        stream_id: stream_id.into(),
        version,
        event_id: Uuid::now_v7(),
        event_type: "svcops.test.v1.Something".into(),
        payload: vec![],
        metadata: EventMetadata {
            case_id: Some(case_id),
            actor_subject: "a".into(),
            actor_role: "agent".into(),
            correlation_id: Uuid::now_v7(),
            causation_id,
            traceparent: None,
            occurred_at: OffsetDateTime::UNIX_EPOCH,
        },
        recorded_at: OffsetDateTime::UNIX_EPOCH,
    }
}

fn bus_event(case_id: Uuid, causation_id: Option<Uuid>, source: &str) -> BusEvent {
    event_in(
        case_id,
        &format!("x-{}", Uuid::now_v7()),
        1,
        causation_id,
        source,
    )
}

async fn open(path: &std::path::Path, limits: Limits) -> Arc<Timelines> {
    let store = SqliteStore::open(path).await.expect("store");
    Arc::new(
        Timelines::open(Arc::new(store), limits)
            .await
            .expect("timelines"),
    )
}

async fn timelines_with(limits: Limits) -> (tempfile::TempDir, Arc<Timelines>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let timelines = open(&dir.path().join("listen.db"), limits).await;
    (dir, timelines)
}

async fn timelines() -> (tempfile::TempDir, Arc<Timelines>) {
    timelines_with(Limits::default()).await
}

/// Observes `event`, failing if that blocks: a consumer must never wait for a cause.
async fn observe(timelines: &Timelines, event: &BusEvent) {
    tokio::time::timeout(Duration::from_secs(2), timelines.observe(event))
        .await
        .expect("observing never waits for a cause")
        .expect("observed");
}

async fn event_ids(timelines: &Timelines, case_id: Uuid) -> Vec<String> {
    timelines
        .read(case_id, 0, 100)
        .await
        .expect("read")
        .into_iter()
        .map(|entry| entry.event_id)
        .collect()
}

fn ids(events: &[&BusEvent]) -> Vec<String> {
    events
        .iter()
        .map(|event| event.event_id.to_string())
        .collect()
}

#[tokio::test]
async fn an_effect_that_arrives_first_is_held_aside_without_blocking_and_follows_its_cause() {
    let (_dir, timelines) = timelines().await;
    let case_id = Uuid::now_v7();
    let cause = bus_event(case_id, None, "svcops/front-office");
    let effect = bus_event(case_id, Some(cause.event_id), "svcops/middle-office");
    observe(&timelines, &effect).await;
    assert!(
        event_ids(&timelines, case_id).await.is_empty(),
        "held aside"
    );
    observe(&timelines, &cause).await;
    assert_eq!(
        event_ids(&timelines, case_id).await,
        ids(&[&cause, &effect])
    );
}

#[tokio::test]
async fn a_chain_arriving_backwards_is_recorded_cause_first() {
    let (_dir, timelines) = timelines().await;
    let case_id = Uuid::now_v7();
    let opened = bus_event(case_id, None, "svcops/front-office");
    let work_order = bus_event(case_id, Some(opened.event_id), "svcops/middle-office");
    let target = bus_event(case_id, Some(work_order.event_id), "svcops/back-office");
    observe(&timelines, &target).await;
    observe(&timelines, &work_order).await;
    observe(&timelines, &opened).await;
    assert_eq!(
        event_ids(&timelines, case_id).await,
        ids(&[&opened, &work_order, &target])
    );
}

#[tokio::test]
async fn a_later_event_of_a_held_events_stream_does_not_overtake_it() {
    let (_dir, timelines) = timelines().await;
    let case_id = Uuid::now_v7();
    let cause = bus_event(case_id, None, "svcops/front-office");
    let first = event_in(
        case_id,
        "sla-1",
        1,
        Some(cause.event_id),
        "svcops/back-office",
    );
    let second = event_in(case_id, "sla-1", 2, None, "svcops/back-office");
    observe(&timelines, &first).await;
    observe(&timelines, &second).await;
    assert!(event_ids(&timelines, case_id).await.is_empty(), "both held");
    observe(&timelines, &cause).await;
    assert_eq!(
        event_ids(&timelines, case_id).await,
        ids(&[&cause, &first, &second])
    );
}

#[tokio::test]
async fn held_effects_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("listen.db");
    let case_id = Uuid::now_v7();
    let cause = bus_event(case_id, None, "svcops/front-office");
    let effect = bus_event(case_id, Some(cause.event_id), "svcops/middle-office");
    let behind = event_in(case_id, &effect.stream_id, 2, None, "svcops/middle-office");
    {
        let timelines = open(&path, Limits::default()).await;
        observe(&timelines, &effect).await;
        observe(&timelines, &behind).await;
        // Acknowledged and gone from memory: only the store remembers.
    }
    let timelines = open(&path, Limits::default()).await;
    // A redelivery after the restart is harmless.
    observe(&timelines, &effect).await;
    assert!(event_ids(&timelines, case_id).await.is_empty());
    observe(&timelines, &cause).await;
    assert_eq!(
        event_ids(&timelines, case_id).await,
        ids(&[&cause, &effect, &behind])
    );
    let again = open(&path, Limits::default()).await;
    again.sweep(OffsetDateTime::now_utc()).await.expect("sweep");
    assert_eq!(event_ids(&again, case_id).await.len(), 3, "released once");
}

#[tokio::test]
async fn past_the_age_bound_an_effect_is_recorded_marked_and_its_late_cause_follows() {
    let limits = Limits {
        max_held: 100,
        max_age: Duration::from_secs(60),
    };
    let (_dir, timelines) = timelines_with(limits).await;
    let case_id = Uuid::now_v7();
    let cause = bus_event(case_id, None, "svcops/middle-office");
    let flagged = bus_event(case_id, Some(cause.event_id), "svcops/front-office");
    observe(&timelines, &flagged).await;
    let now = OffsetDateTime::now_utc();
    timelines.sweep(now).await.expect("sweep");
    assert!(
        event_ids(&timelines, case_id).await.is_empty(),
        "within the bound"
    );
    timelines
        .sweep(now + Duration::from_secs(61))
        .await
        .expect("sweep");
    observe(&timelines, &cause).await;
    let entries = timelines.read(case_id, 0, 10).await.expect("read");
    assert_eq!(
        entries
            .iter()
            .map(|entry| (entry.event_id.clone(), entry.cause_missing))
            .collect::<Vec<_>>(),
        [
            (flagged.event_id.to_string(), true),
            (cause.event_id.to_string(), false)
        ]
    );
}

#[tokio::test]
async fn past_the_count_bound_the_oldest_is_recorded_marked() {
    let limits = Limits {
        max_held: 1,
        max_age: Duration::from_secs(3600),
    };
    let (_dir, timelines) = timelines_with(limits).await;
    let case_id = Uuid::now_v7();
    let oldest = bus_event(case_id, Some(Uuid::now_v7()), "svcops/front-office");
    let newer = bus_event(case_id, Some(Uuid::now_v7()), "svcops/back-office");
    observe(&timelines, &oldest).await;
    observe(&timelines, &newer).await;
    let entries = timelines.read(case_id, 0, 10).await.expect("read");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].event_id, oldest.event_id.to_string());
    assert!(entries[0].cause_missing);
}

#[tokio::test]
async fn redelivery_records_an_event_once() {
    let (_dir, timelines) = timelines().await;
    let case_id = Uuid::now_v7();
    let event = bus_event(case_id, None, "svcops/front-office");
    observe(&timelines, &event).await;
    observe(&timelines, &event).await;
    let effect = bus_event(case_id, Some(Uuid::now_v7()), "svcops/back-office");
    observe(&timelines, &effect).await;
    observe(&timelines, &effect).await;
    assert_eq!(timelines.read(case_id, 0, 10).await.expect("read").len(), 1);
}

#[tokio::test]
async fn reading_after_the_last_possible_sequence_is_empty() {
    let (_dir, timelines) = timelines().await;
    let case_id = Uuid::now_v7();
    observe(&timelines, &bus_event(case_id, None, "svcops/front-office")).await;
    assert!(
        timelines
            .read(case_id, u64::MAX, 10)
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test]
async fn a_case_is_known_once_an_office_event_of_it_is_on_the_timeline_or_held() {
    let (_dir, timelines) = timelines().await;
    let case_id = Uuid::now_v7();
    assert!(!timelines.case_known(case_id).await.expect("known"));
    // Listen-in's own session events do not make a case known.
    observe(&timelines, &bus_event(case_id, None, SOURCE)).await;
    assert!(!timelines.case_known(case_id).await.expect("known"));
    let held = Uuid::now_v7();
    observe(
        &timelines,
        &bus_event(held, Some(Uuid::now_v7()), "svcops/back-office"),
    )
    .await;
    assert!(timelines.case_known(held).await.expect("known"));
    observe(&timelines, &bus_event(case_id, None, "svcops/front-office")).await;
    assert!(timelines.case_known(case_id).await.expect("known"));
}

#[tokio::test]
async fn waiting_for_a_case_ends_when_its_first_event_lands_or_the_grace_runs_out() {
    let (_dir, timelines) = timelines().await;
    let unknown = Uuid::now_v7();
    assert!(
        !timelines
            .wait_for_case(
                unknown,
                tokio::time::Instant::now() + Duration::from_millis(100)
            )
            .await
            .expect("wait")
    );
    let opened_now = Uuid::now_v7();
    let waiting = tokio::spawn({
        let timelines = timelines.clone();
        async move {
            timelines
                .wait_for_case(
                    opened_now,
                    tokio::time::Instant::now() + Duration::from_secs(30),
                )
                .await
        }
    });
    observe(
        &timelines,
        &bus_event(opened_now, None, "svcops/front-office"),
    )
    .await;
    let found = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken by the entry, not the grace")
        .expect("join")
        .expect("wait");
    assert!(found);
}

mod kept_payload {
    use prost::Message;
    use svcops_bus::envelope::BusEvent;
    use svcops_eventstore::EventMetadata;
    use svcops_proto::frontoffice::v1::CaseOpened;
    use time::OffsetDateTime;
    use uuid::Uuid;

    #[test]
    fn a_plain_phone_from_before_sealing_is_not_kept() {
        let mut payload = CaseOpened {
            case_id: Uuid::now_v7().to_string(),
            summary: "lamp flickers".into(),
            ..Default::default()
        }
        .encode_to_vec();
        // Field 2 (reserved, once the plain phone), length-delimited: what an old event holds.
        let phone = b"+8613800001234";
        payload.extend([2 << 3 | 2, phone.len() as u8]);
        payload.extend(phone);
        let event = BusEvent {
            source: "svcops/front-office".into(),
            stream_id: "case-1".into(),
            version: 1,
            event_id: Uuid::now_v7(),
            event_type: <CaseOpened as prost::Name>::full_name(),
            payload,
            metadata: EventMetadata {
                case_id: None,
                actor_subject: "agent".into(),
                actor_role: "agent".into(),
                correlation_id: Uuid::now_v7(),
                causation_id: None,
                traceparent: None,
                occurred_at: OffsetDateTime::now_utc(),
            },
            recorded_at: OffsetDateTime::now_utc(),
        };
        let kept = super::super::kept_payload(&event);
        assert!(
            !kept.windows(phone.len()).any(|window| window == phone),
            "the plain phone is gone"
        );
        let decoded = CaseOpened::decode(kept.as_slice()).expect("still a CaseOpened");
        assert_eq!(decoded.summary, "lamp flickers");
    }
}

#[tokio::test]
async fn a_batch_records_what_one_by_one_would_in_the_same_order() {
    let (_one_dir, one_by_one) = timelines().await;
    let (_batch_dir, batched) = timelines().await;
    let mut arrivals = Vec::new();
    let mut cases = Vec::new();
    for _ in 0..12 {
        let case_id = Uuid::now_v7();
        let case_stream = format!("case-{case_id}");
        let opened = event_in(case_id, &case_stream, 1, None, "svcops/front-office");
        let noted = event_in(case_id, &case_stream, 2, None, "svcops/front-office");
        let work_order = bus_event(case_id, Some(opened.event_id), "svcops/middle-office");
        let target = bus_event(case_id, Some(work_order.event_id), "svcops/back-office");
        arrivals.extend([opened, noted, work_order, target]);
        cases.push(case_id);
    }
    // A fixed shuffle, so effects often come before their causes, within and across batches,
    // and a redelivery of everything at the end.
    let mut state = 0x2545_f491_u64;
    for index in (1..arrivals.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        arrivals.swap(index, (state >> 33) as usize % (index + 1));
    }
    let redelivered = arrivals.clone();
    arrivals.extend(redelivered);
    for event in &arrivals {
        observe(&one_by_one, event).await;
    }
    for batch in arrivals.chunks(7) {
        tokio::time::timeout(Duration::from_secs(2), batched.observe_batch(batch))
            .await
            .expect("a batch never waits for a cause")
            .expect("observed");
    }
    for case_id in cases {
        let expected = event_ids(&one_by_one, case_id).await;
        assert_eq!(expected.len(), 4, "every event of the case, once");
        assert_eq!(event_ids(&batched, case_id).await, expected);
    }
    assert!(batched.holding.lock().await.aside.is_empty());
}

#[tokio::test]
async fn what_a_late_recorder_held_aside_is_picked_up_by_the_sweep_of_the_one_recording_now() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("listen.db");
    // The replica that lost the recorder lease, and the one that took over after it.
    let late = open(&path, Limits::default()).await;
    let now = open(&path, Limits::default()).await;
    let case_id = Uuid::now_v7();
    let cause = bus_event(case_id, None, "svcops/front-office");
    let effect = bus_event(case_id, Some(cause.event_id), "svcops/middle-office");
    // The late one finishes holding an effect aside after the other restored what was held.
    observe(&late, &effect).await;
    now.sweep(OffsetDateTime::now_utc()).await.expect("sweep");
    observe(&now, &cause).await;
    assert_eq!(
        event_ids(&now, case_id).await,
        ids(&[&cause, &effect]),
        "the effect follows its cause, though only the late recorder held it"
    );
}
