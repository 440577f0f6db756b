//! Given/when/then on the SLA clock.

use svcops_kit::aggregate::testkit::{clock, given};
use time::Duration;
use uuid::Uuid;

use super::*;

fn start(case_id: Uuid, priority: Priority) -> SlaCommand {
    SlaCommand::Start {
        case_id,
        priority,
        at: clock(),
    }
}

fn started(case_id: Uuid, priority: Priority) -> SlaEvent {
    let targets = default_targets(priority);
    SlaEvent::Started {
        case_id,
        policy: DEFAULT_POLICY.into(),
        priority: Some(priority),
        started_at: clock(),
        first_response_due: clock() + targets.first_response,
        resolution_due: clock() + targets.resolution,
    }
}

#[test]
fn given_no_clock_when_started_then_targets_follow_priority() {
    let case_id = Uuid::now_v7();
    given::<SlaClock>([])
        .when(start(case_id, Priority::Urgent))
        .then_expect_events(vec![SlaEvent::Started {
            case_id,
            policy: DEFAULT_POLICY.into(),
            priority: Some(Priority::Urgent),
            started_at: clock(),
            first_response_due: clock() + Duration::minutes(15),
            resolution_due: clock() + Duration::hours(24),
        }]);
}

#[test]
fn given_a_started_clock_when_started_again_then_nothing_happens() {
    let case_id = Uuid::now_v7();
    given::<SlaClock>([started(case_id, Priority::Normal)])
        .when(start(case_id, Priority::Normal))
        .then_expect_events(vec![]);
}

#[test]
fn on_site_target_counts_from_case_opening_with_its_priority() {
    let (case_id, work_order_id) = (Uuid::now_v7(), Uuid::now_v7());
    let on_site = SlaCommand::SetOnSiteTarget {
        case_id,
        work_order_id,
    };
    let target = SlaEvent::OnSiteTargetSet {
        case_id,
        work_order_id,
        on_site_due: clock() + Duration::hours(8),
    };
    given::<SlaClock>([started(case_id, Priority::High)])
        .when(on_site.clone())
        .then_expect_events(vec![target.clone()]);
    given::<SlaClock>([started(case_id, Priority::High), target])
        .when(on_site)
        .then_expect_events(vec![]);
}

#[test]
fn the_on_site_deadline_is_the_same_whichever_office_is_heard_first() {
    for priority in [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Urgent,
    ] {
        let (case_id, work_order_id) = (Uuid::now_v7(), Uuid::now_v7());
        let on_site = SlaCommand::SetOnSiteTarget {
            case_id,
            work_order_id,
        };
        let target = SlaEvent::OnSiteTargetSet {
            case_id,
            work_order_id,
            on_site_due: clock() + default_targets(priority).on_site,
        };
        let awaiting = SlaEvent::WorkOrderAwaitingCase {
            case_id,
            work_order_id,
        };

        // Case first: the target at once.
        given::<SlaClock>([started(case_id, priority)])
            .when(on_site.clone())
            .then_expect_events(vec![target.clone()]);

        // Work order first: no deadline until the case is known, then the same one.
        given::<SlaClock>([])
            .when(on_site.clone())
            .then_expect_events(vec![awaiting.clone()]);
        let waiting = given::<SlaClock>([awaiting.clone()]);
        assert_eq!(waiting.state.on_site_due, None);
        waiting
            .when(start(case_id, priority))
            .then_expect_events(vec![started(case_id, priority), target.clone()]);

        // Either way, the same clock; a redelivered work order changes nothing.
        let case_first = given::<SlaClock>([started(case_id, priority), target.clone()]).state;
        let work_order_first = given::<SlaClock>([awaiting, started(case_id, priority), target]);
        assert_eq!(work_order_first.state.on_site_due, case_first.on_site_due);
        assert_eq!(work_order_first.state.work_orders, case_first.work_orders);
        assert!(work_order_first.state.awaiting_case.is_empty());
        work_order_first.when(on_site).then_expect_events(vec![]);
    }
}

#[test]
fn a_clock_recorded_without_its_priority_infers_it_from_the_dues() {
    let (case_id, work_order_id) = (Uuid::now_v7(), Uuid::now_v7());
    given::<SlaClock>([SlaEvent::Started {
        case_id,
        policy: DEFAULT_POLICY.into(),
        priority: None,
        started_at: clock(),
        first_response_due: clock() + Duration::hours(1),
        resolution_due: clock() + Duration::hours(48),
    }])
    .when(SlaCommand::SetOnSiteTarget {
        case_id,
        work_order_id,
    })
    .then_expect_events(vec![SlaEvent::OnSiteTargetSet {
        case_id,
        work_order_id,
        on_site_due: clock() + Duration::hours(8),
    }]);
}

#[test]
fn events_round_trip_through_protobuf() {
    use svcops_kit::aggregate::DomainEvent;
    let case_id = Uuid::now_v7();
    for event in [
        started(case_id, Priority::Low),
        SlaEvent::OnSiteTargetSet {
            case_id,
            work_order_id: Uuid::now_v7(),
            on_site_due: clock(),
        },
        SlaEvent::WorkOrderAwaitingCase {
            case_id,
            work_order_id: Uuid::now_v7(),
        },
    ] {
        let (event_type, payload) = event.encode();
        assert_eq!(
            SlaEvent::decode(&event_type, &payload).expect("decodes"),
            Some(event)
        );
    }
}
