//! Given/when/then on the case.

use svcops_kit::aggregate::testkit::{clock, given, recorded};
use uuid::Uuid;

use super::*;

/// Details as the office decides on them: the phone sealed already.
fn details() -> CaseDetails {
    let mut details = CaseDetails::parse(
        "+86 138-0000-1234",
        Category::Repair,
        Priority::Normal,
        Channel::Hotline,
        "  ceiling lamp flickers ",
        "PL-200",
        "SN123",
    )
    .expect("valid");
    details.customer_phone = CustomerPhone::Sealed {
        key_id: Uuid::now_v7(),
        sealed: vec![1, 2, 3],
    };
    details
}

fn opened(case_id: Uuid, details: &CaseDetails) -> CaseEvent {
    CaseEvent::Opened {
        case_id,
        details: details.clone(),
    }
}

fn flag(detail: &str) -> CaseCommand {
    CaseCommand::Flag {
        flag: Flag::ProcessingFailed,
        detail: detail.into(),
    }
}

#[test]
fn given_no_case_when_open_then_opened() {
    let (case_id, details) = (Uuid::now_v7(), details());
    given::<Case>([])
        .when(CaseCommand::Open {
            case_id,
            details: details.clone(),
        })
        .then_expect_events(vec![opened(case_id, &details)]);
}

#[test]
fn given_no_case_when_open_with_an_unsealed_phone_then_refused() {
    let mut details = details();
    details.customer_phone = CustomerPhone::Known(
        PhoneNumber::parse("customer_phone", "+8613800001234").expect("valid"),
    );
    given::<Case>([])
        .when(CaseCommand::Open {
            case_id: Uuid::now_v7(),
            details,
        })
        .then_expect_error(CaseError::Unsealed);
}

#[test]
fn given_no_case_when_flagged_then_rejected() {
    given::<Case>([])
        .when(flag("x"))
        .then_expect_error(CaseError::NotOpened);
}

#[test]
fn given_an_open_case_when_open_again_then_rejected() {
    let (case_id, details) = (Uuid::now_v7(), details());
    given::<Case>([opened(case_id, &details)])
        .when(CaseCommand::Open { case_id, details })
        .then_expect_error(CaseError::AlreadyOpened(case_id));
}

#[test]
fn given_an_open_case_when_flagged_then_the_flag_is_kept() {
    let (case_id, details) = (Uuid::now_v7(), details());
    let given = given::<Case>([opened(case_id, &details)]);
    let mut case = given.state.clone();
    let events = given.when(flag("middle-office gave up")).events();
    assert_eq!(
        events,
        vec![CaseEvent::Flagged {
            case_id,
            flag: Flag::ProcessingFailed,
            detail: "middle-office gave up".into()
        }]
    );
    for (index, event) in events.into_iter().enumerate() {
        case.apply(&recorded(event, index as u64 + 2));
    }
    let opened = case.opened.expect("opened");
    assert_eq!(opened.lifecycle, Lifecycle::Open);
    assert_eq!(
        opened.flags,
        [FlagNote {
            flag: Flag::ProcessingFailed,
            detail: "middle-office gave up".into(),
            flagged_at: clock(),
        }]
    );
}

#[test]
fn the_envelope_says_who_opened_the_case_and_when() {
    let (case_id, details) = (Uuid::now_v7(), details());
    let opened = given::<Case>([opened(case_id, &details)])
        .state
        .opened
        .expect("opened");
    assert_eq!(
        (
            opened.opened_at,
            opened.opened_by.as_str(),
            opened.opened_by_role.as_str()
        ),
        (clock(), "test-agent", "agent")
    );
    assert_eq!(opened.details, details);
}

#[test]
fn errors_carry_their_status() {
    use svcops_kit::aggregate::ErrorStatus;
    assert!(matches!(
        CaseError::Invalid {
            field: "summary",
            reason: "must not be empty".into()
        }
        .api_error(),
        ApiError::InvalidArgument(violations) if violations[0].field == "summary"
    ));
    assert!(matches!(
        CaseError::AlreadyOpened(Uuid::nil()).api_error(),
        ApiError::FailedPrecondition(_)
    ));
    assert!(matches!(
        CaseError::Unsealed.api_error(),
        ApiError::Internal(_)
    ));
}
