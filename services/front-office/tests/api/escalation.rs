//! Complaint escalation and public-opinion risk over gRPC, as in a process of its own on a
//! real store: the rules that raise the flag, people raising and clearing it, refusals and
//! who may do what; and the case list filtered by what agents and managers look for.

use svcops_kit::auth::Role;
use svcops_proto::common::v1 as types;
use svcops_proto::frontoffice::v1 as proto;

use crate::common::{FrontOffice, fields};

/// What these tests ask of the front office beyond the shared harness.
trait Escalations {
    async fn escalate(
        &mut self,
        role: Role,
        case_id: &str,
        level: u32,
        reason: &str,
    ) -> Result<proto::Case, tonic::Status>;

    async fn list(&mut self, filter: proto::ListCasesRequest) -> Vec<proto::Case>;
}

impl Escalations for FrontOffice {
    async fn escalate(
        &mut self,
        role: Role,
        case_id: &str,
        level: u32,
        reason: &str,
    ) -> Result<proto::Case, tonic::Status> {
        let request = self.request(
            role,
            proto::EscalateCaseRequest {
                case_id: case_id.into(),
                level,
                reason: reason.into(),
                ..Default::default()
            },
        );
        Ok(self
            .cases
            .escalate_case(request)
            .await?
            .into_inner()
            .case
            .unwrap())
    }

    async fn list(&mut self, filter: proto::ListCasesRequest) -> Vec<proto::Case> {
        let mut cases = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = self.request(
                Role::Agent,
                proto::ListCasesRequest {
                    page_size: 2,
                    page_token: page_token.clone(),
                    ..filter.clone()
                },
            );
            let page = self.cases.list_cases(request).await.unwrap().into_inner();
            cases.extend(page.cases);
            if page.next_page_token.is_empty() {
                return cases;
            }
            page_token = page.next_page_token;
        }
    }
}

fn trigger(case: &proto::Case) -> Option<proto::RiskTrigger> {
    case.risk
        .as_ref()
        .map(|risk| proto::RiskTrigger::try_from(risk.trigger).unwrap())
}

fn ids(cases: &[proto::Case]) -> Vec<&str> {
    cases.iter().map(|case| case.case_id.as_str()).collect()
}

#[tokio::test]
async fn risk_rules_and_people_flag_cases_and_managers_clear_them() {
    let mut office = FrontOffice::start().await;

    // A summary naming a medium: flagged on intake, priority raised.
    let threatened = office
        .open(
            "+8613800000001",
            types::CaseCategory::Complaint,
            "客户说不解决就发抖音曝光",
        )
        .await;
    assert_eq!(trigger(&threatened), Some(proto::RiskTrigger::Keyword));
    assert_eq!(threatened.priority, types::Priority::Urgent as i32);
    assert_eq!(
        threatened.risk.as_ref().unwrap().detail,
        "\"曝光\" in the summary"
    );

    // The third complaint of one customer within the window.
    let phone = "+86 139-0000-0002";
    let first = office
        .open(phone, types::CaseCategory::Complaint, "technician late")
        .await;
    let second = office
        .open(
            phone,
            types::CaseCategory::Complaint,
            "technician late again",
        )
        .await;
    assert_eq!(trigger(&first), None);
    assert_eq!(trigger(&second), None);
    // The rule reads the case list as it is: let it take in the two first.
    let listed = office
        .list(proto::ListCasesRequest {
            customer_phone: phone.into(),
            ..Default::default()
        })
        .await;
    assert_eq!(ids(&listed), [&second.case_id, &first.case_id]);
    let third = office
        .open(phone, types::CaseCategory::Complaint, "nobody called back")
        .await;
    assert_eq!(
        trigger(&third),
        Some(proto::RiskTrigger::RepeatedComplaints)
    );

    // Escalation: up one level at a time or more, never down; the top flags the risk.
    let case_id = first.case_id.clone();
    let at_one = office
        .escalate(Role::Agent, &case_id, 1, "second call")
        .await
        .unwrap();
    assert_eq!((at_one.escalation_level, trigger(&at_one)), (1, None));
    let lower = office
        .escalate(Role::Agent, &case_id, 1, "same again")
        .await
        .unwrap();
    assert_eq!(
        lower.version, at_one.version,
        "the same level records nothing"
    );
    let at_three = office
        .escalate(Role::Manager, &case_id, 3, "asks for the director")
        .await
        .unwrap();
    assert_eq!(at_three.escalation_level, 3);
    assert_eq!(at_three.escalation_reason, "asks for the director");
    assert_eq!(trigger(&at_three), Some(proto::RiskTrigger::TopEscalation));
    let down = office
        .escalate(Role::Agent, &case_id, 2, "calmer now")
        .await
        .unwrap_err();
    assert_eq!(down.code(), tonic::Code::FailedPrecondition);
    assert_eq!(down.message(), "the case is already at escalation level 3");

    // Agents raise the flag by hand; only managers clear it.
    let request = office.request(
        Role::Agent,
        proto::FlagCaseRiskRequest {
            case_id: second.case_id.clone(),
            reason: "filmed the technician".into(),
            ..Default::default()
        },
    );
    let flagged = office
        .cases
        .flag_case_risk(request)
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(trigger(&flagged), Some(proto::RiskTrigger::Person));
    let clear = |role| proto::ClearCaseRiskRequest {
        case_id: second.case_id.clone(),
        reason: "customer is satisfied".into(),
        request_id: format!("clear-{role}"),
    };
    let request = office.request(Role::Agent, clear(Role::Agent));
    let denied = office.cases.clear_case_risk(request).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let request = office.request(Role::Manager, clear(Role::Manager));
    let cleared = office
        .cases
        .clear_case_risk(request)
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(trigger(&cleared), None);
    assert_eq!(
        cleared.priority,
        types::Priority::Urgent as i32,
        "the raised priority stays"
    );

    // Filters: at risk or not, escalated, by customer, combined with paging.
    let at_risk = office
        .list(proto::ListCasesRequest {
            at_risk: Some(true),
            ..Default::default()
        })
        .await;
    assert_eq!(
        ids(&at_risk),
        [&third.case_id, &first.case_id, &threatened.case_id]
    );
    let calm = office
        .list(proto::ListCasesRequest {
            at_risk: Some(false),
            ..Default::default()
        })
        .await;
    assert_eq!(ids(&calm), [&second.case_id]);
    let escalated = office
        .list(proto::ListCasesRequest {
            min_escalation_level: 2,
            ..Default::default()
        })
        .await;
    assert_eq!(ids(&escalated), [&first.case_id]);
    let nobody = office
        .list(proto::ListCasesRequest {
            customer_phone: "+8613700000009".into(),
            ..Default::default()
        })
        .await;
    assert!(nobody.is_empty(), "a phone svcops never saw has no cases");
    let since = at_three.updated_at.unwrap();
    let changed = office
        .list(proto::ListCasesRequest {
            updated_since: Some(since),
            ..Default::default()
        })
        .await;
    assert_eq!(ids(&changed), [&second.case_id, &first.case_id]);
    let complaints_of_one = office
        .list(proto::ListCasesRequest {
            customer_phone: phone.into(),
            at_risk: Some(true),
            category: types::CaseCategory::Complaint.into(),
            state: proto::CaseState::Open.into(),
            ..Default::default()
        })
        .await;
    assert_eq!(ids(&complaints_of_one), [&third.case_id, &first.case_id]);

    office.served.stop().await;
}

#[tokio::test]
async fn escalation_and_risk_requests_are_validated_and_authorised() {
    let mut office = FrontOffice::start().await;
    let case = office
        .open(
            "+8613800000003",
            types::CaseCategory::Repair,
            "lamp flickers",
        )
        .await;

    let invalid = office
        .escalate(Role::Agent, "nope", 4, " ")
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert_eq!(fields(&invalid), ["case_id", "level", "reason"]);

    let request = office.request(
        Role::Agent,
        proto::FlagCaseRiskRequest {
            case_id: case.case_id.clone(),
            reason: "bell\u{7}".into(),
            ..Default::default()
        },
    );
    let invalid = office.cases.flag_case_risk(request).await.unwrap_err();
    assert_eq!(fields(&invalid), ["reason"]);

    let request = office.request(
        Role::Manager,
        proto::ListCasesRequest {
            state: 42,
            queue: "Not A Queue".into(),
            category: 42,
            customer_phone: "call me".into(),
            min_escalation_level: 7,
            ..Default::default()
        },
    );
    let invalid = office.cases.list_cases(request).await.unwrap_err();
    assert_eq!(
        fields(&invalid),
        [
            "state",
            "queue",
            "category",
            "customer_phone",
            "min_escalation_level"
        ]
    );

    // Roles that see phones masked may not find out whether a phone has cases.
    let request = office.request(
        Role::Manager,
        proto::ListCasesRequest {
            customer_phone: "+8613800000003".into(),
            ..Default::default()
        },
    );
    let denied = office.cases.list_cases(request).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // Executives, QA, technicians and systems read cases; they do not escalate or flag.
    for role in [Role::Executive, Role::Qa, Role::Technician, Role::Service] {
        let denied = office
            .escalate(role, &case.case_id, 1, "x")
            .await
            .unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{role}");
        let request = office.request(
            role,
            proto::FlagCaseRiskRequest {
                case_id: case.case_id.clone(),
                reason: "x".into(),
                ..Default::default()
            },
        );
        let denied = office.cases.flag_case_risk(request).await.unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{role}");
    }

    // A retry by request id returns the first result; another body under it is refused.
    let escalate = |level, reason: &str| proto::EscalateCaseRequest {
        case_id: case.case_id.clone(),
        request_id: "escalate-once".into(),
        level,
        reason: reason.into(),
    };
    let request = office.request(Role::Agent, escalate(2, "third visit"));
    let first = office
        .cases
        .escalate_case(request)
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    // Another change in between: the retry still answers with what the first call did.
    office
        .escalate(Role::Manager, &case.case_id, 3, "director")
        .await
        .unwrap();
    let request = office.request(Role::Agent, escalate(2, "third visit"));
    let again = office
        .cases
        .escalate_case(request)
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(
        (again.version, again.escalation_level),
        (first.version, 2),
        "the retry returns the first result"
    );
    let request = office.request(Role::Agent, escalate(3, "third visit"));
    let reused = office.cases.escalate_case(request).await.unwrap_err();
    assert_eq!(reused.code(), tonic::Code::InvalidArgument);

    office.served.stop().await;
}
