//! Given/when/then on a case's progress.

use svcops_kit::aggregate::DomainEvent;
use svcops_kit::aggregate::testkit::given;

use super::*;

#[test]
fn a_new_step_is_noted_and_a_redelivered_one_is_nothing() {
    let case_id = Uuid::now_v7();
    let mut visit = Visit::new(Uuid::now_v7());
    given::<Progress>([])
        .when(ProgressCommand::Note {
            case_id,
            visit: visit.clone(),
        })
        .then_expect_events(vec![ProgressEvent::Noted {
            case_id,
            visit: visit.clone(),
        }]);
    given::<Progress>([ProgressEvent::Noted {
        case_id,
        visit: visit.clone(),
    }])
    .when(ProgressCommand::Note {
        case_id,
        visit: visit.clone(),
    })
    .then_expect_events(vec![]);
    visit.stage = Stage::TechnicianEnRoute;
    visit.eta = Some(svcops_kit::events::now_micros());
    let event = ProgressEvent::Noted { case_id, visit };
    let (event_type, payload) = event.encode();
    assert_eq!(
        ProgressEvent::decode(&event_type, &payload),
        Ok(Some(event))
    );
}
