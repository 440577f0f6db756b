//! A case's lifecycle over gRPC, as in a process of its own on a real store: every move,
//! the list following it, refusals that name the state, retries by request id, field
//! violations and who may do what.

use svcops_kit::auth::Role;
use svcops_proto::common::v1 as types;
use svcops_proto::frontoffice::v1 as proto;
use uuid::Uuid;

use crate::common::{FrontOffice, fields};

/// A repair case, opened as an agent.
async fn open(office: &mut FrontOffice) -> proto::Case {
    office
        .open(
            "+8613800001234",
            types::CaseCategory::Repair,
            "lamp flickers",
        )
        .await
}

fn state(case: &proto::Case) -> proto::CaseState {
    proto::CaseState::try_from(case.state).unwrap()
}

#[tokio::test]
async fn a_case_walks_its_lifecycle_and_the_list_follows() {
    let mut office = FrontOffice::start().await;
    let case_id = open(&mut office).await.case_id;
    let id = || case_id.clone();

    let request = office.request(
        Role::Agent,
        proto::TriageCaseRequest {
            case_id: id(),
            queue: "repair".into(),
            priority: types::Priority::High.into(),
            ..Default::default()
        },
    );
    let case = office
        .cases
        .triage_case(request)
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(
        (state(&case), case.queue.as_str(), case.priority),
        (
            proto::CaseState::Triaged,
            "repair",
            i32::from(types::Priority::High)
        )
    );

    let request = office.request(
        Role::Manager,
        proto::AssignCaseRequest {
            case_id: id(),
            assignee: "agent-7".into(),
            ..Default::default()
        },
    );
    let case = office
        .cases
        .assign_case(request)
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(
        (state(&case), case.assignee.as_str()),
        (proto::CaseState::Assigned, "agent-7")
    );

    let request = office.request(
        Role::Agent,
        proto::SetCaseWaitingRequest {
            case_id: id(),
            waiting_on: proto::WaitingOn::MiddleOffice.into(),
            reason: "technician booked for Friday".into(),
            ..Default::default()
        },
    );
    let case = office
        .cases
        .set_case_waiting(request)
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(
        (state(&case), case.waiting_on),
        (
            proto::CaseState::Waiting,
            i32::from(proto::WaitingOn::MiddleOffice)
        )
    );

    // Closing needs a resolution first: refused, naming the state.
    let request = office.request(
        Role::Agent,
        proto::CloseCaseRequest {
            case_id: id(),
            ..Default::default()
        },
    );
    let refused = office.cases.close_case(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        "cannot close a case that is waiting on the middle office"
    );

    let request = office.request(
        Role::Agent,
        proto::ResumeCaseRequest {
            case_id: id(),
            ..Default::default()
        },
    );
    let case = office
        .cases
        .resume_case(request)
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(state(&case), proto::CaseState::Assigned);

    // A resolution retried with its request id is one resolution; the same id with another
    // resolution is refused.
    let resolve = |resolution: &str| proto::ResolveCaseRequest {
        case_id: id(),
        request_id: "resolve-1".into(),
        resolution: resolution.into(),
    };
    let first = office
        .cases
        .resolve_case(office.request(Role::Agent, resolve("replaced the driver board")))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    let again = office
        .cases
        .resolve_case(office.request(Role::Agent, resolve("replaced the driver board")))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(state(&first), proto::CaseState::Resolved);
    assert_eq!(first.version, again.version, "the retry wrote nothing");
    let reused = office
        .cases
        .resolve_case(office.request(Role::Agent, resolve("something else")))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), tonic::Code::InvalidArgument);

    // The customer confirms (a system may say so), then calls again.
    let request = office.request(
        Role::Service,
        proto::CloseCaseRequest {
            case_id: id(),
            ..Default::default()
        },
    );
    let case = office
        .cases
        .close_case(request)
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(state(&case), proto::CaseState::Closed);
    let request = office.request(
        Role::Service,
        proto::ReopenCaseRequest {
            case_id: id(),
            reason: "flickers again".into(),
            ..Default::default()
        },
    );
    let case = office
        .cases
        .reopen_case(request)
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(
        (
            state(&case),
            case.assignee.as_str(),
            case.reopened_count,
            case.resolution.as_str()
        ),
        (proto::CaseState::Assigned, "agent-7", 1, "")
    );

    // The list (a persisted projection) says the same, read after the writes (by the role
    // that reopened it, which sees the same personal data).
    let request = office.request(Role::Service, proto::ListCasesRequest::default());
    let listed = office
        .cases
        .list_cases(request)
        .await
        .unwrap()
        .into_inner()
        .cases;
    let listed = listed
        .iter()
        .find(|listed| listed.case_id == case_id)
        .unwrap();
    assert_eq!(listed, &case, "the list and the stream agree");
}

#[tokio::test]
async fn lifecycle_requests_are_validated_and_authorised() {
    let mut office = FrontOffice::start().await;
    let case_id = open(&mut office).await.case_id;

    let request = office.request(
        Role::Agent,
        proto::TriageCaseRequest {
            case_id: "not-a-uuid".into(),
            request_id: "x".repeat(129),
            queue: "Repair Queue".into(),
            priority: 99,
        },
    );
    let invalid = office.cases.triage_case(request).await.unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        fields(&invalid),
        ["case_id", "request_id", "queue", "priority"]
    );

    let request = office.request(
        Role::Agent,
        proto::SetCaseWaitingRequest {
            case_id: case_id.clone(),
            waiting_on: proto::WaitingOn::Unspecified.into(),
            reason: " ".into(),
            ..Default::default()
        },
    );
    let invalid = office.cases.set_case_waiting(request).await.unwrap_err();
    assert_eq!(fields(&invalid), ["waiting_on", "reason"]);

    let request = office.request(
        Role::Agent,
        proto::ResolveCaseRequest {
            case_id: Uuid::now_v7().to_string(),
            resolution: "fixed".into(),
            ..Default::default()
        },
    );
    let missing = office.cases.resolve_case(request).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // Who may do what: executives and QA read; systems confirm and reopen but do not work
    // cases.
    for role in [Role::Executive, Role::Qa, Role::Technician, Role::Service] {
        let request = office.request(
            role,
            proto::AssignCaseRequest {
                case_id: case_id.clone(),
                assignee: "agent-7".into(),
                ..Default::default()
            },
        );
        let denied = office.cases.assign_case(request).await.unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{role}");
    }
    for role in [Role::Executive, Role::Qa, Role::Technician] {
        let request = office.request(
            role,
            proto::ReopenCaseRequest {
                case_id: case_id.clone(),
                reason: "again".into(),
                ..Default::default()
            },
        );
        let denied = office.cases.reopen_case(request).await.unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{role}");
    }
}
