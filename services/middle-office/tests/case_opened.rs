//! What the middle office refuses to guess about a front-office `CaseOpened` (a real SQLite
//! store): a payload naming another case than its envelope, or a category it does not know.

use std::sync::Arc;

use middle_office::app::WorkOrders;
use middle_office::work_order::work_order_id;
use middle_office::work_order_list::WorkOrderListProjection;
use prost::{Message, Name};
use svcops_bus::consumer::HandlerError;
use svcops_bus::envelope::BusEvent;
use svcops_eventstore::projection::{self, Projector, RunnerSettings};
use svcops_eventstore::{EventMetadata, SqliteStore};
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

fn case_opened(envelope_case: Uuid, payload_case: Uuid, category: i32) -> BusEvent {
    BusEvent {
        source: "svcops/front-office".into(),
        stream_id: format!("case-{payload_case}"),
        version: 1,
        event_id: Uuid::now_v7(),
        event_type: front::CaseOpened::full_name(),
        payload: front::CaseOpened {
            case_id: payload_case.to_string(),
            category,
            summary: "ceiling lamp flickers".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        metadata: EventMetadata {
            case_id: Some(envelope_case),
            actor_subject: "agent".into(),
            actor_role: "agent".into(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            traceparent: None,
            occurred_at: OffsetDateTime::now_utc(),
        },
        recorded_at: OffsetDateTime::now_utc(),
    }
}

async fn work_orders() -> (WorkOrders, (Projector, tempfile::TempDir)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("middle.db"))
        .await
        .expect("store");
    let list = projection::start(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(WorkOrderListProjection),
        RunnerSettings::default(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("the work order list starts");
    let orders = WorkOrders::new(Arc::new(store), Arc::new(Notify::new()), list.read_model());
    (orders, (list, dir))
}

#[tokio::test]
async fn a_payload_naming_another_case_than_its_envelope_opens_nothing() {
    let (orders, _dir) = work_orders().await;
    let (envelope_case, payload_case) = (Uuid::now_v7(), Uuid::now_v7());
    let event = case_opened(
        envelope_case,
        payload_case,
        common::CaseCategory::Repair as i32,
    );
    assert!(matches!(
        orders.on_case_opened(&event).await,
        Err(HandlerError::Failed(_))
    ));
    for case in [envelope_case, payload_case] {
        assert!(orders.get(work_order_id(case)).await.is_err());
    }
}

#[tokio::test]
async fn an_unknown_category_is_dead_lettered_not_read_as_no_field_work() {
    let (orders, _dir) = work_orders().await;
    let case = Uuid::now_v7();
    assert!(matches!(
        orders.on_case_opened(&case_opened(case, case, 42)).await,
        Err(HandlerError::Failed(_))
    ));
    // A known one still opens its work order.
    orders
        .on_case_opened(&case_opened(
            case,
            case,
            common::CaseCategory::Repair as i32,
        ))
        .await
        .expect("a repair opens a work order");
    let opened = orders
        .get(work_order_id(case))
        .await
        .expect("the work order exists");
    // Listed at once (read your writes), alone, and under its case only.
    let (listed, next) = orders.list(None, 10, None).await.expect("list");
    assert_eq!((listed, next), (vec![opened.clone()], None));
    let (of_case, _) = orders.list(Some(case), 10, None).await.expect("list");
    assert_eq!(of_case, vec![opened]);
    let (of_other, _) = orders
        .list(Some(Uuid::now_v7()), 10, None)
        .await
        .expect("list");
    assert!(of_other.is_empty());
}

#[tokio::test]
async fn the_list_pages_newest_first_without_gaps_or_repeats() {
    let (orders, _dir) = work_orders().await;
    let mut opened = Vec::new();
    for _ in 0..5 {
        let case = Uuid::now_v7();
        orders
            .on_case_opened(&case_opened(
                case,
                case,
                common::CaseCategory::Installation as i32,
            ))
            .await
            .expect("opens");
        opened.push(work_order_id(case));
    }
    let mut listed = Vec::new();
    let mut before = None;
    loop {
        let (page, next) = orders.list(None, 2, before).await.expect("list");
        assert!(page.len() <= 2);
        listed.extend(page.into_iter().map(|view| view.details.work_order_id));
        match next {
            Some(position) => before = Some(position),
            None => break,
        }
    }
    opened.reverse();
    assert_eq!(listed, opened);
}
