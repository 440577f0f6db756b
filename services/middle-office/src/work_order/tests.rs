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

fn at(hour: u8, minute: u8) -> time::OffsetDateTime {
    time::macros::datetime!(2026-11-27 00:00 UTC)
        .replace_hour(hour)
        .and_then(|t| t.replace_minute(minute))
        .expect("a time of day")
}

fn window() -> Window {
    Window::new(at(9, 0), at(11, 0)).expect("window")
}

fn scheduled(details: &WorkOrderDetails) -> Event {
    Event::Scheduled {
        work_order_id: details.work_order_id,
        case_id: details.case_id,
        window: window(),
        previous: None,
    }
}

fn dispatched(details: &WorkOrderDetails, technician: &str) -> Event {
    Event::Dispatched {
        work_order_id: details.work_order_id,
        case_id: details.case_id,
        technician: technician.into(),
    }
}

#[test]
fn arrivals_are_early_on_time_or_late_with_minutes() {
    assert_eq!(punctuality(window(), at(8, 55)), Punctuality::Early(5));
    assert_eq!(
        punctuality(window(), at(9, 0) - time::Duration::seconds(30)),
        Punctuality::Early(1),
        "early by seconds is a minute early"
    );
    assert_eq!(punctuality(window(), at(9, 0)), Punctuality::OnTime);
    assert_eq!(punctuality(window(), at(11, 0)), Punctuality::OnTime);
    assert_eq!(punctuality(window(), at(11, 40)), Punctuality::Late(40));
    assert_eq!(
        punctuality(window(), at(11, 0) + time::Duration::seconds(20)),
        Punctuality::Late(1),
        "late by seconds is a minute late"
    );
}

#[test]
fn a_window_ends_after_it_starts_and_within_12_hours() {
    assert!(Window::new(at(9, 0), at(9, 0)).is_err());
    assert!(Window::new(at(10, 0), at(9, 0)).is_err());
    assert!(Window::new(at(0, 0), at(12, 1)).is_err());
    assert!(Window::new(at(0, 0), at(12, 0)).is_ok());
}

#[test]
fn given_a_scheduled_visit_when_rescheduled_then_the_old_window_is_kept() {
    let details = details();
    let later = Window::new(at(14, 0), at(16, 0)).expect("window");
    given::<WorkOrder>([Event::Opened(details.clone()), scheduled(&details)])
        .when(Command::Schedule(later))
        .then_expect_events(vec![Event::Scheduled {
            work_order_id: details.work_order_id,
            case_id: details.case_id,
            window: later,
            previous: Some(window()),
        }]);
    given::<WorkOrder>([Event::Opened(details.clone()), scheduled(&details)])
        .when(Command::Schedule(window()))
        .then_expect_events(vec![]);
}

#[test]
fn a_visit_goes_scheduled_dispatched_en_route_on_site_completed() {
    let details = details();
    let history = vec![
        Event::Opened(details.clone()),
        scheduled(&details),
        dispatched(&details, "tech-1"),
    ];
    let eta = at(8, 50);
    given::<WorkOrder>(history.clone())
        .when(Command::EnRoute { eta, by: None })
        .then_expect_events(vec![Event::EnRoute {
            work_order_id: details.work_order_id,
            case_id: details.case_id,
            technician: "tech-1".into(),
            eta,
        }]);
    let arrived = Event::Arrived {
        work_order_id: details.work_order_id,
        case_id: details.case_id,
        technician: "tech-1".into(),
        at: at(11, 15),
        punctuality: Punctuality::Late(15),
    };
    given::<WorkOrder>(history.clone())
        .when(Command::Arrive {
            at: at(11, 15),
            by: Some("tech-1".into()),
        })
        .then_expect_events(vec![arrived.clone()]);
    let mut on_site = history;
    on_site.push(arrived);
    given::<WorkOrder>(on_site.clone())
        .when(Command::Complete {
            outcome: Outcome::FixedOnSite,
            note: "replaced the pump".into(),
            by: None,
        })
        .then_expect_events(vec![Event::Completed {
            work_order_id: details.work_order_id,
            case_id: details.case_id,
            outcome: Outcome::FixedOnSite,
            note: "replaced the pump".into(),
        }]);
    given::<WorkOrder>(on_site.clone())
        .when(Command::Complete {
            outcome: Outcome::NotAProductFault,
            note: " ".into(),
            by: None,
        })
        .then_expect_error(Error::Invalid {
            field: "note",
            reason: "say why it is not a product fault".into(),
        });
    given::<WorkOrder>(on_site)
        .when(Command::Schedule(window()))
        .then_expect_error(Error::NotAllowed {
            action: "schedule",
            state: "on site",
        });
}

#[test]
fn a_technician_reports_only_for_a_visit_dispatched_to_them() {
    let details = details();
    given::<WorkOrder>([
        Event::Opened(details.clone()),
        scheduled(&details),
        dispatched(&details, "tech-1"),
        dispatched(&details, "tech-2"),
    ])
    .when(Command::EnRoute {
        eta: at(9, 0),
        by: Some("tech-1".into()),
    })
    .then_expect_error(Error::NotTheirs("tech-1".into()));
}

#[test]
fn illegal_steps_name_the_state() {
    let details = details();
    given::<WorkOrder>([Event::Opened(details.clone())])
        .when(Command::Dispatch {
            technician: "tech-1".into(),
        })
        .then_expect_error(Error::NotAllowed {
            action: "dispatch",
            state: "open",
        });
    given::<WorkOrder>([Event::Opened(details.clone()), scheduled(&details)])
        .when(Command::Arrive {
            at: at(9, 0),
            by: None,
        })
        .then_expect_error(Error::NotAllowed {
            action: "arrive at",
            state: "scheduled",
        });
    given::<WorkOrder>([])
        .when(Command::Schedule(window()))
        .then_expect_error(Error::NotOpened);
}

#[test]
fn visit_events_survive_their_protobuf_round_trip() {
    let details = details();
    for event in [
        scheduled(&details),
        Event::Scheduled {
            work_order_id: details.work_order_id,
            case_id: details.case_id,
            window: window(),
            previous: Some(window()),
        },
        dispatched(&details, "tech-1"),
        Event::EnRoute {
            work_order_id: details.work_order_id,
            case_id: details.case_id,
            technician: "tech-1".into(),
            eta: at(8, 45),
        },
        Event::Arrived {
            work_order_id: details.work_order_id,
            case_id: details.case_id,
            technician: "tech-1".into(),
            at: at(8, 55),
            punctuality: Punctuality::Early(5),
        },
        Event::Completed {
            work_order_id: details.work_order_id,
            case_id: details.case_id,
            outcome: Outcome::NeedsParts,
            note: "hose".into(),
        },
    ] {
        let (event_type, payload) = event.encode();
        assert_eq!(Event::decode(&event_type, &payload), Ok(Some(event)));
    }
}

fn on_site(details: &WorkOrderDetails) -> Vec<Event> {
    vec![
        Event::Opened(details.clone()),
        scheduled(details),
        dispatched(details, "tech-1"),
        Event::Arrived {
            work_order_id: details.work_order_id,
            case_id: details.case_id,
            technician: "tech-1".into(),
            at: at(9, 30),
            punctuality: Punctuality::OnTime,
        },
    ]
}

fn hoses(quantity: u32, unit_price: Option<i64>) -> Vec<crate::pricing::Requested> {
    vec![crate::pricing::Requested {
        code: "HOSE-1M".into(),
        quantity,
        unit_price,
    }]
}

#[test]
fn given_a_visit_on_site_when_charged_then_priced_from_the_list_with_its_free_units() {
    let details = details();
    let events = given::<WorkOrder>(on_site(&details))
        .when(Command::Charge {
            requested: hoses(2, None),
            list: crate::pricing::seeded(),
            approved_by: None,
            by: Some("tech-1".into()),
        })
        .events();
    let [
        Event::Charged {
            lines,
            approved_by,
            list_version,
            ..
        },
    ] = events.as_slice()
    else {
        panic!("one charge: {events:?}");
    };
    assert_eq!((lines[0].free_units, lines[0].amount), (1, 2_500));
    assert_eq!(
        (approved_by, list_version.as_str()),
        (&None, "seed-2026-11")
    );
}

#[test]
fn a_deviation_is_refused_to_a_technician_and_recorded_with_a_manager_s_approval() {
    let details = details();
    given::<WorkOrder>(on_site(&details))
        .when(Command::Charge {
            requested: hoses(2, Some(2_000)),
            list: crate::pricing::seeded(),
            approved_by: None,
            by: Some("tech-1".into()),
        })
        .then_expect_error(Error::Deviation(
            "HOSE-1M at 2000 cents is not the standard price (2500 cents): only a manager may charge a deviation".into(),
        ));
    let events = given::<WorkOrder>(on_site(&details))
        .when(Command::Charge {
            requested: hoses(2, Some(2_000)),
            list: crate::pricing::seeded(),
            approved_by: Some("manager-1".into()),
            by: None,
        })
        .events();
    let [
        Event::Charged {
            lines, approved_by, ..
        },
    ] = events.as_slice()
    else {
        panic!("one charge: {events:?}");
    };
    assert_eq!(approved_by.as_deref(), Some("manager-1"));
    assert_eq!(
        (lines[0].amount, lines[0].standard_amount),
        (2_000, Some(2_500))
    );
    given::<WorkOrder>([Event::Opened(details.clone()), scheduled(&details)])
        .when(Command::Charge {
            requested: hoses(1, None),
            list: crate::pricing::seeded(),
            approved_by: None,
            by: None,
        })
        .then_expect_error(Error::NotAllowed {
            action: "charge",
            state: "scheduled",
        });
}

#[test]
fn a_charge_survives_its_protobuf_round_trip() {
    let details = details();
    let event = Event::Charged {
        work_order_id: details.work_order_id,
        case_id: details.case_id,
        list_version: "seed-2026-11".into(),
        lines: crate::pricing::charge(
            &crate::pricing::seeded(),
            &std::collections::HashMap::new(),
            &hoses(3, Some(2_000)),
            true,
        )
        .expect("priced"),
        approved_by: Some("manager-1".into()),
    };
    let (event_type, payload) = event.encode();
    assert_eq!(Event::decode(&event_type, &payload), Ok(Some(event)));
}
