//! The back office reads the front and middle offices' topics with no order between them:
//! whichever arrives first, the same events give the same deadlines (a real SQLite store).

use std::sync::Arc;

use back_office::app::BackOffice;
use back_office::case_tracking::{CaseTrackingProjection, Stats};
use prost::{Message, Name};
use svcops_bus::envelope::BusEvent;
use svcops_eventstore::projection::{self, Projector, RunnerSettings};
use svcops_eventstore::{EventMetadata, SqliteStore};
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::middleoffice::v1 as middle;
use time::{Duration, OffsetDateTime};
use tokio::sync::Notify;
use uuid::Uuid;

fn bus_event<M: Message + Name>(
    case_id: Uuid,
    stream_id: String,
    message: &M,
    at: OffsetDateTime,
) -> BusEvent {
    BusEvent {
        source: "svcops/test".into(),
        stream_id,
        version: 1,
        event_id: Uuid::now_v7(),
        event_type: M::full_name(),
        payload: message.encode_to_vec(),
        metadata: EventMetadata {
            case_id: Some(case_id),
            actor_subject: "test".into(),
            actor_role: "service".into(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            traceparent: None,
            occurred_at: at,
        },
        recorded_at: at,
    }
}

/// A back office on a fresh SQLite store (kept alive by the returned directory).
async fn back_office() -> (BackOffice, (Projector, tempfile::TempDir)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("back.db"))
        .await
        .expect("store");
    let tracking = projection::start(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(CaseTrackingProjection),
        RunnerSettings::default(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("the case tracking projection starts");
    let office = BackOffice::new(
        Arc::new(store),
        Arc::new(Notify::new()),
        tracking.read_model(),
    );
    (office, (tracking, dir))
}

async fn on_site_due(case_first: bool) -> (Option<OffsetDateTime>, Stats) {
    let (office, _dir) = back_office().await;
    let case_id = Uuid::now_v7();
    let opened_at = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid");
    let case_opened = bus_event(
        case_id,
        format!("case-{case_id}"),
        &front::CaseOpened {
            case_id: case_id.to_string(),
            priority: common::Priority::Urgent.into(),
            category: common::CaseCategory::Repair.into(),
            ..Default::default()
        },
        opened_at,
    );
    // The work order opened 40 minutes after the case.
    let work_order_opened = bus_event(
        case_id,
        format!("workorder-{case_id}"),
        &middle::WorkOrderOpened {
            case_id: case_id.to_string(),
            work_order_id: Uuid::now_v7().to_string(),
            ..Default::default()
        },
        opened_at + Duration::minutes(40),
    );
    let order = if case_first {
        [&case_opened, &work_order_opened]
    } else {
        [&work_order_opened, &case_opened]
    };
    for event in order {
        office.on_upstream(event).await.expect("handled");
        // Redelivery changes nothing.
        office.on_upstream(event).await.expect("handled again");
    }
    let tracking = office.tracking(case_id).await.expect("tracked");
    assert!(tracking.sla.awaiting_case.is_empty());
    assert_eq!(tracking.sla.work_orders.len(), 1);
    (
        tracking.sla.on_site_due,
        office.stats().await.expect("stats"),
    )
}

#[tokio::test]
async fn the_on_site_deadline_does_not_depend_on_which_topic_is_read_first() {
    let opened_at = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid");
    // Urgent: on site within 4 hours of the case's opening.
    let expected = Some(opened_at + Duration::hours(4));
    // Each counted once, whatever the order and however often it was delivered.
    let counted = Stats {
        cases_tracked: 1,
        closed_loop_open: 1,
        work_orders_tracked: 1,
    };
    assert_eq!(on_site_due(true).await, (expected, counted), "case first");
    assert_eq!(
        on_site_due(false).await,
        (expected, counted),
        "work order first"
    );
}

#[tokio::test]
async fn an_event_whose_payload_names_another_case_than_its_envelope_is_refused() {
    let (office, _dir) = back_office().await;
    let envelope_case = Uuid::now_v7();
    let event = bus_event(
        envelope_case,
        format!("case-{envelope_case}"),
        &front::CaseOpened {
            case_id: Uuid::now_v7().to_string(),
            priority: common::Priority::High.into(),
            ..Default::default()
        },
        OffsetDateTime::now_utc(),
    );
    assert!(matches!(
        office.on_upstream(&event).await,
        Err(svcops_bus::consumer::HandlerError::Failed(_))
    ));
    assert!(office.tracking(envelope_case).await.is_err());
}
