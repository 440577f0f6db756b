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
            earlier_complaints: 0,
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
            earlier_complaints: 0,
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
        .when(CaseCommand::Open {
            case_id,
            details,
            earlier_complaints: 0,
        })
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

// The lifecycle.

fn queue(name: &str) -> QueueName {
    QueueName::parse("queue", name).expect("valid")
}

fn agent(name: &str) -> AgentName {
    AgentName::parse("assignee", name).expect("valid")
}

/// A case opened, then moved by `events` (each after the one before).
fn case_after(events: impl IntoIterator<Item = CaseEvent>) -> (Uuid, Vec<CaseEvent>) {
    let case_id = Uuid::now_v7();
    let mut history = vec![opened(case_id, &details())];
    history.extend(events.into_iter().map(|event| with_case(event, case_id)));
    (case_id, history)
}

/// `event` about `case_id` (the tests write their events with a nil id).
fn with_case(event: CaseEvent, id: Uuid) -> CaseEvent {
    match event {
        CaseEvent::Triaged {
            queue, priority, ..
        } => CaseEvent::Triaged {
            case_id: id,
            queue,
            priority,
        },
        CaseEvent::Assigned { assignee, .. } => CaseEvent::Assigned {
            case_id: id,
            assignee,
        },
        CaseEvent::Waiting { on, reason, .. } => CaseEvent::Waiting {
            case_id: id,
            on,
            reason,
        },
        CaseEvent::Resumed { .. } => CaseEvent::Resumed { case_id: id },
        CaseEvent::Resolved { resolution, .. } => CaseEvent::Resolved {
            case_id: id,
            resolution,
        },
        CaseEvent::Closed { .. } => CaseEvent::Closed { case_id: id },
        CaseEvent::Reopened { reason, .. } => CaseEvent::Reopened {
            case_id: id,
            reason,
        },
        other => other,
    }
}

fn assigned(name: &str) -> CaseEvent {
    CaseEvent::Assigned {
        case_id: Uuid::nil(),
        assignee: agent(name),
    }
}

fn resolved() -> CaseEvent {
    CaseEvent::Resolved {
        case_id: Uuid::nil(),
        resolution: "replaced the driver board".into(),
    }
}

fn waiting(on: WaitingOn) -> CaseEvent {
    CaseEvent::Waiting {
        case_id: Uuid::nil(),
        on,
        reason: "technician booked".into(),
    }
}

#[test]
fn given_an_open_case_when_triaged_then_routed_with_its_priority() {
    let (case_id, history) = case_after([]);
    given::<Case>(history)
        .when(CaseCommand::Triage {
            queue: queue("repair"),
            priority: None,
        })
        .then_expect_events(vec![CaseEvent::Triaged {
            case_id,
            queue: queue("repair"),
            priority: Priority::Normal,
        }]);
}

#[test]
fn given_a_triaged_case_when_triaged_the_same_again_then_nothing_happens() {
    let (_, history) = case_after([CaseEvent::Triaged {
        case_id: Uuid::nil(),
        queue: queue("repair"),
        priority: Priority::High,
    }]);
    given::<Case>(history)
        .when(CaseCommand::Triage {
            queue: queue("repair"),
            priority: Some(Priority::High),
        })
        .then_expect_events(vec![]);
}

#[test]
fn given_an_assigned_case_when_reassigned_then_it_goes_to_the_new_agent() {
    let (case_id, history) = case_after([assigned("agent-1")]);
    let given = given::<Case>(history);
    let state = given.state.opened.clone().expect("opened");
    assert_eq!(
        (state.lifecycle, state.assignee),
        (Lifecycle::Assigned, Some(agent("agent-1")))
    );
    given
        .when(CaseCommand::Assign {
            assignee: agent("agent-2"),
        })
        .then_expect_events(vec![CaseEvent::Assigned {
            case_id,
            assignee: agent("agent-2"),
        }]);
}

#[test]
fn given_an_assigned_case_when_assigned_to_the_same_agent_then_nothing_happens() {
    let (_, history) = case_after([assigned("agent-1")]);
    given::<Case>(history)
        .when(CaseCommand::Assign {
            assignee: agent("agent-1"),
        })
        .then_expect_events(vec![]);
}

#[test]
fn given_a_triaged_case_when_set_waiting_then_refused_naming_its_state() {
    let (_, history) = case_after([CaseEvent::Triaged {
        case_id: Uuid::nil(),
        queue: queue("repair"),
        priority: Priority::Normal,
    }]);
    given::<Case>(history)
        .when(CaseCommand::Wait {
            on: WaitingOn::Customer,
            reason: "photos".into(),
        })
        .then_expect_error(CaseError::NotAllowed {
            action: "set waiting",
            state: "triaged",
        });
}

#[test]
fn given_a_waiting_case_when_reassigned_then_it_keeps_waiting() {
    let (_, history) = case_after([assigned("agent-1"), waiting(WaitingOn::MiddleOffice)]);
    let mut case = given::<Case>(history.clone()).state;
    case.apply(&recorded(
        with_case(
            assigned("agent-2"),
            case.opened.as_ref().expect("opened").case_id,
        ),
        history.len() as u64 + 1,
    ));
    let opened = case.opened.expect("opened");
    assert_eq!(
        opened.lifecycle,
        Lifecycle::Waiting(WaitingOn::MiddleOffice)
    );
    assert_eq!(opened.assignee, Some(agent("agent-2")));
}

#[test]
fn given_a_waiting_case_when_resumed_then_back_with_its_assignee() {
    let (case_id, history) = case_after([assigned("agent-1"), waiting(WaitingOn::Customer)]);
    given::<Case>(history)
        .when(CaseCommand::Resume)
        .then_expect_events(vec![CaseEvent::Resumed { case_id }]);
}

#[test]
fn given_a_resolved_case_when_closed_then_closed_and_nothing_more_but_reopen() {
    let (case_id, history) = case_after([assigned("agent-1"), resolved()]);
    let given_resolved = given::<Case>(history.clone());
    assert_eq!(
        given_resolved
            .state
            .opened
            .as_ref()
            .map(|opened| (opened.lifecycle, opened.resolution.clone())),
        Some((
            Lifecycle::Resolved,
            Some("replaced the driver board".to_owned())
        ))
    );
    given_resolved
        .when(CaseCommand::Close)
        .then_expect_events(vec![CaseEvent::Closed { case_id }]);
    let mut closed = history;
    closed.push(CaseEvent::Closed { case_id });
    given::<Case>(closed.clone())
        .when(CaseCommand::Resolve {
            resolution: "again".into(),
        })
        .then_expect_error(CaseError::NotAllowed {
            action: "resolve",
            state: "closed",
        });
    given::<Case>(closed)
        .when(CaseCommand::Close)
        .then_expect_error(CaseError::NotAllowed {
            action: "close",
            state: "closed",
        });
}

#[test]
fn given_a_closed_case_when_reopened_then_back_with_its_agent_and_counted() {
    let (case_id, mut history) = case_after([assigned("agent-1"), resolved()]);
    history.push(CaseEvent::Closed { case_id });
    let reopened = CaseEvent::Reopened {
        case_id,
        reason: "flickers again".into(),
    };
    let given = given::<Case>(history.clone());
    let mut case = given.state.clone();
    given
        .when(CaseCommand::Reopen {
            reason: "flickers again".into(),
        })
        .then_expect_events(vec![reopened.clone()]);
    case.apply(&recorded(reopened, history.len() as u64 + 1));
    let opened = case.opened.expect("opened");
    assert_eq!(
        (
            opened.lifecycle,
            opened.reopened_count,
            opened.resolution,
            opened.assignee
        ),
        (Lifecycle::Assigned, 1, None, Some(agent("agent-1")))
    );
}

#[test]
fn given_an_unassigned_resolved_case_when_reopened_then_open() {
    let (case_id, mut history) = case_after([resolved()]);
    history.push(CaseEvent::Reopened {
        case_id,
        reason: "not fixed".into(),
    });
    let opened = given::<Case>(history).state.opened.expect("opened");
    assert_eq!(opened.lifecycle, Lifecycle::Open);
}

#[test]
fn given_no_case_when_a_lifecycle_command_then_not_opened() {
    given::<Case>([])
        .when(CaseCommand::Resolve {
            resolution: "x".into(),
        })
        .then_expect_error(CaseError::NotOpened);
}

#[test]
fn an_illegal_move_is_a_failed_precondition() {
    use svcops_kit::aggregate::ErrorStatus;
    assert!(matches!(
        CaseError::NotAllowed {
            action: "close",
            state: "open"
        }
        .api_error(),
        ApiError::FailedPrecondition(message) if message == "cannot close a case that is open"
    ));
}

// Escalation and public-opinion risk.

fn risk(trigger: RiskTrigger, detail: &str) -> Risk {
    Risk {
        trigger,
        detail: detail.into(),
    }
}

fn flagged(case_id: Uuid, trigger: RiskTrigger, detail: &str) -> CaseEvent {
    CaseEvent::RiskFlagged {
        case_id,
        risk: risk(trigger, detail),
        priority: Priority::Urgent,
    }
}

fn level(level: u32) -> EscalationLevel {
    EscalationLevel::parse("level", level).expect("valid")
}

fn escalate(to: u32, reason: &str) -> CaseCommand {
    CaseCommand::Escalate {
        level: level(to),
        reason: reason.into(),
    }
}

fn escalated(case_id: Uuid, to: u32, reason: &str) -> CaseEvent {
    CaseEvent::Escalated {
        case_id,
        level: level(to),
        reason: reason.into(),
    }
}

fn open_command(case_id: Uuid, category: Category, summary: &str, earlier: u32) -> CaseCommand {
    let mut details = details();
    details.category = category;
    details.summary = summary.into();
    CaseCommand::Open {
        case_id,
        details,
        earlier_complaints: earlier,
    }
}

#[test]
fn given_no_case_when_opened_with_a_medium_in_the_summary_then_flagged_urgent() {
    let case_id = Uuid::now_v7();
    let events = given::<Case>([])
        .when(open_command(
            case_id,
            Category::Complaint,
            "客户说再不修好就发微博",
            0,
        ))
        .events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[1],
        flagged(case_id, RiskTrigger::Keyword, "\"微博\" in the summary")
    );
    let mut case = Case::default();
    for (index, event) in events.into_iter().enumerate() {
        case.apply(&recorded(event, index as u64 + 1));
    }
    let opened = case.opened.expect("opened");
    assert_eq!(
        opened.details.priority,
        Priority::Urgent,
        "the priority is raised"
    );
    assert_eq!(
        opened.risk.map(|note| note.risk),
        Some(risk(RiskTrigger::Keyword, "\"微博\" in the summary"))
    );
}

#[test]
fn given_two_earlier_complaints_when_a_third_is_opened_then_flagged() {
    let case_id = Uuid::now_v7();
    let events = given::<Case>([])
        .when(open_command(
            case_id,
            Category::Complaint,
            "rude technician",
            2,
        ))
        .events();
    assert_eq!(
        events.get(1),
        Some(&flagged(
            case_id,
            RiskTrigger::RepeatedComplaints,
            "complaint 3 from this customer within 30 days"
        ))
    );
    // One earlier complaint is not yet a pattern; repairs never count.
    let events = given::<Case>([])
        .when(open_command(
            case_id,
            Category::Complaint,
            "rude technician",
            1,
        ))
        .events();
    assert_eq!(events.len(), 1, "{events:?}");
    let events = given::<Case>([])
        .when(open_command(case_id, Category::Repair, "lamp flickers", 9))
        .events();
    assert_eq!(events.len(), 1, "{events:?}");
}

#[test]
fn given_both_rules_match_when_opened_then_flagged_once() {
    let case_id = Uuid::now_v7();
    let events = given::<Case>([])
        .when(open_command(
            case_id,
            Category::Complaint,
            "will post it online",
            5,
        ))
        .events();
    assert_eq!(
        events[1..],
        [flagged(
            case_id,
            RiskTrigger::Keyword,
            "\"post it online\" in the summary"
        )]
    );
}

#[test]
fn given_a_case_when_escalated_step_by_step_then_each_level_is_recorded() {
    let (case_id, history) = case_after([]);
    given::<Case>(history.clone())
        .when(escalate(1, "second call"))
        .then_expect_events(vec![escalated(case_id, 1, "second call")]);
    let mut at_two = history;
    at_two.push(escalated(case_id, 2, "team lead could not help"));
    given::<Case>(at_two.clone())
        .when(escalate(2, "again"))
        .then_expect_events(vec![]);
    given::<Case>(at_two.clone())
        .when(escalate(1, "back down"))
        .then_expect_error(CaseError::EscalatedHigher(level(2)));
    let state = given::<Case>(at_two).state.opened.expect("opened");
    assert_eq!(
        state.escalation,
        Some((level(2), "team lead could not help".to_owned()))
    );
}

#[test]
fn given_a_case_when_escalated_to_the_top_then_the_risk_is_flagged_too() {
    let (case_id, history) = case_after([]);
    given::<Case>(history.clone())
        .when(escalate(3, "customer demands the director"))
        .then_expect_events(vec![
            escalated(case_id, 3, "customer demands the director"),
            flagged(
                case_id,
                RiskTrigger::TopEscalation,
                "escalated to level 3: customer demands the director",
            ),
        ]);
    // A case flagged already is not flagged twice.
    let mut flagged_before = history;
    flagged_before.push(flagged(case_id, RiskTrigger::Person, "called a reporter"));
    given::<Case>(flagged_before)
        .when(escalate(3, "director"))
        .then_expect_events(vec![escalated(case_id, 3, "director")]);
}

#[test]
fn given_a_case_when_a_reason_names_a_medium_then_the_rule_flags_it() {
    let (case_id, history) = case_after([assigned("agent-1")]);
    given::<Case>(history.clone())
        .when(escalate(1, "says she will go to 抖音"))
        .then_expect_events(vec![
            escalated(case_id, 1, "says she will go to 抖音"),
            flagged(case_id, RiskTrigger::Keyword, "\"抖音\" in the reason"),
        ]);
    given::<Case>(history)
        .when(CaseCommand::Wait {
            on: WaitingOn::Customer,
            reason: "customer is talking to a journalist first".into(),
        })
        .then_expect_events(vec![
            CaseEvent::Waiting {
                case_id,
                on: WaitingOn::Customer,
                reason: "customer is talking to a journalist first".into(),
            },
            flagged(
                case_id,
                RiskTrigger::Keyword,
                "\"journalist\" in the reason",
            ),
        ]);
}

#[test]
fn given_a_closed_case_when_escalated_or_flagged_then_refused_naming_its_state() {
    let (case_id, mut history) = case_after([resolved()]);
    history.push(CaseEvent::Closed { case_id });
    given::<Case>(history.clone())
        .when(escalate(1, "x"))
        .then_expect_error(CaseError::NotAllowed {
            action: "escalate",
            state: "closed",
        });
    given::<Case>(history)
        .when(CaseCommand::FlagRisk { reason: "x".into() })
        .then_expect_error(CaseError::NotAllowed {
            action: "flag",
            state: "closed",
        });
}

#[test]
fn given_a_case_when_a_person_flags_and_a_manager_clears_then_it_can_be_flagged_again() {
    let (case_id, history) = case_after([]);
    given::<Case>(history.clone())
        .when(CaseCommand::FlagRisk {
            reason: "customer filmed the visit".into(),
        })
        .then_expect_events(vec![flagged(
            case_id,
            RiskTrigger::Person,
            "customer filmed the visit",
        )]);
    let mut at_risk = history;
    at_risk.push(flagged(case_id, RiskTrigger::Person, "filmed"));
    given::<Case>(at_risk.clone())
        .when(CaseCommand::FlagRisk {
            reason: "again".into(),
        })
        .then_expect_events(vec![]);
    let cleared = CaseEvent::RiskCleared {
        case_id,
        reason: "customer satisfied".into(),
    };
    given::<Case>(at_risk.clone())
        .when(CaseCommand::ClearRisk {
            reason: "customer satisfied".into(),
        })
        .then_expect_events(vec![cleared.clone()]);
    at_risk.push(cleared);
    let state = given::<Case>(at_risk.clone());
    assert_eq!(
        state.state.opened.as_ref().map(|o| o.risk.clone()),
        Some(None)
    );
    assert_eq!(
        state.state.opened.as_ref().map(|o| o.details.priority),
        Some(Priority::Urgent),
        "clearing the risk leaves the priority to people"
    );
    given::<Case>(at_risk.clone())
        .when(CaseCommand::ClearRisk { reason: "x".into() })
        .then_expect_events(vec![]);
    given::<Case>(at_risk)
        .when(CaseCommand::FlagRisk {
            reason: "posted after all".into(),
        })
        .then_expect_events(vec![flagged(
            case_id,
            RiskTrigger::Person,
            "posted after all",
        )]);
}

#[test]
fn an_escalation_below_the_case_is_a_failed_precondition_naming_its_level() {
    use svcops_kit::aggregate::ErrorStatus;
    assert!(matches!(
        CaseError::EscalatedHigher(level(2)).api_error(),
        ApiError::FailedPrecondition(message) if message == "the case is already at escalation level 2"
    ));
}
