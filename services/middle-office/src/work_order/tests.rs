//! Given/when/then on the work order.

use svcops_kit::aggregate::DomainEvent;
use svcops_kit::aggregate::testkit::given;
use uuid::Uuid;

use super::*;

fn details() -> WorkOrderDetails {
    let case_id = Uuid::now_v7();
    WorkOrderDetails {
        work_order_id: work_order_id(case_id),
        case_id,
        kind: Kind::Repair,
        product: "PL-200".into(),
        serial_number: "SN1".into(),
        summary: "flickers".into(),
    }
}

#[test]
fn a_case_always_maps_to_the_same_work_order() {
    let case_id = Uuid::now_v7();
    assert_eq!(work_order_id(case_id), work_order_id(case_id));
    assert_ne!(work_order_id(case_id), work_order_id(Uuid::now_v7()));
}

#[test]
fn given_nothing_when_open_then_opened() {
    let details = details();
    given::<WorkOrder>([])
        .when(Command::Open(details.clone()))
        .then_expect_events(vec![Event::Opened(details)]);
}

#[test]
fn given_opened_when_open_then_rejected() {
    let details = details();
    given::<WorkOrder>([Event::Opened(details.clone())])
        .when(Command::Open(details.clone()))
        .then_expect_error(Error::AlreadyOpened(details.work_order_id));
}

#[test]
fn events_round_trip_through_protobuf() {
    let event = Event::Opened(details());
    let (event_type, payload) = event.encode();
    assert_eq!(Event::decode(&event_type, &payload), Ok(Some(event)));
}
