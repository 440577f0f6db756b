//! The case list read model on both adapters: pages newest first without gaps or repeats,
//! each listed case equal to the case read from its stream (flags included), and a list
//! right after a command sees it (read your writes).

use std::sync::Arc;

use front_office::app::Cases;
use front_office::case::{
    Case, CaseCommand, CaseDetails, Category, Channel, EscalationLevel, Flag, PhoneNumber,
    Priority, RiskTrigger, Stage,
};
use front_office::case_list::{CaseFilter, CaseListProjection};
use svcops_eventstore::projection::{self, Projector, RunnerSettings};
use svcops_eventstore::read_model::ReadModels;
use svcops_eventstore::{
    EventStore, PersonalDataKeys, PersonalDataSecret, PostgresStore, SqliteStore,
};
use svcops_kit::aggregate::{Executor, Idempotency};
use svcops_kit::events::CommandContext;
use svcops_kit::{Principal, Role};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Office {
    cases: Cases,
    case_executor: Executor<Case>,
    _list: Projector,
    shutdown: CancellationToken,
}

fn secret() -> PersonalDataSecret {
    PersonalDataSecret::new(
        format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()).as_bytes(),
    )
    .unwrap()
}

async fn office(
    store: Arc<dyn EventStore>,
    read_models: Arc<dyn ReadModels>,
    keys: Arc<dyn PersonalDataKeys>,
) -> Office {
    let shutdown = CancellationToken::new();
    let list = projection::start(
        store.clone(),
        read_models,
        Arc::new(CaseListProjection),
        RunnerSettings::default(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    Office {
        cases: Cases::new(
            store.clone(),
            keys,
            Arc::new(Notify::new()),
            list.read_model(),
        ),
        case_executor: Executor::new(store, Arc::new(Notify::new())),
        _list: list,
        shutdown,
    }
}

fn agent() -> CommandContext {
    CommandContext::from_caller(Principal {
        subject: "alice".into(),
        role: Role::Agent,
    })
}

async fn pages_newest_first_equal_to_the_streams(office: Office) {
    let mut opened = Vec::new();
    for n in 0..7 {
        let details = CaseDetails::parse(
            &format!("+86138000012{n:02}"),
            Category::Repair,
            if n % 2 == 0 {
                Priority::High
            } else {
                Priority::Low
            },
            Channel::Chat,
            &format!("case {n}"),
            "PL-200",
            &format!("SN{n}"),
        )
        .unwrap();
        let case = office.cases.open(&agent(), None, details).await.unwrap();
        opened.push(case.case_id);
        // The list reads its own writes: no waiting in between.
        let (first, _) = office
            .cases
            .list(CaseFilter::default(), None, 1, None)
            .await
            .unwrap();
        assert_eq!(
            first[0].case_id, case.case_id,
            "the newest case leads the list"
        );
    }
    for case_id in [opened[1], opened[1], opened[4]] {
        office
            .case_executor
            .execute(
                case_id,
                Some(case_id),
                &agent(),
                CaseCommand::Flag {
                    flag: Flag::ProcessingFailed,
                    detail: "middle-office could not process it".into(),
                },
                Idempotency::none(),
            )
            .await
            .unwrap();
    }
    // Lifecycle moves, one case each through a different path (the list applies each in
    // its batch, in order): reassigned while waiting, resolved and reopened without an
    // assignee, closed.
    let queue = |name| front_office::case::QueueName::parse("queue", name).unwrap();
    let agent_named = |name| front_office::case::AgentName::parse("assignee", name).unwrap();
    let moves = [
        (
            opened[2],
            vec![
                CaseCommand::Triage {
                    queue: queue("repair"),
                    priority: Some(Priority::Urgent),
                },
                CaseCommand::Assign {
                    assignee: agent_named("agent-1"),
                },
                CaseCommand::Wait {
                    on: front_office::case::WaitingOn::Customer,
                    reason: "photos of the lamp".into(),
                },
                CaseCommand::Assign {
                    assignee: agent_named("agent-2"),
                },
            ],
        ),
        (
            opened[3],
            vec![
                CaseCommand::Resolve {
                    resolution: "explained the dimmer".into(),
                },
                CaseCommand::Reopen {
                    reason: "still flickers".into(),
                },
            ],
        ),
        (
            opened[5],
            vec![
                CaseCommand::Assign {
                    assignee: agent_named("agent-3"),
                },
                CaseCommand::Resolve {
                    resolution: "replaced the driver".into(),
                },
                CaseCommand::Close,
            ],
        ),
        // Escalated to the top (which flags the risk too); flagged and cleared; escalated.
        (
            opened[4],
            vec![CaseCommand::Escalate {
                level: EscalationLevel::TOP,
                reason: "asks for the director".into(),
            }],
        ),
        (
            opened[1],
            vec![
                CaseCommand::FlagRisk {
                    reason: "filmed the visit".into(),
                },
                CaseCommand::ClearRisk {
                    reason: "deleted the video".into(),
                },
            ],
        ),
        (
            opened[0],
            vec![CaseCommand::Escalate {
                level: EscalationLevel::parse("level", 1).unwrap(),
                reason: "second call".into(),
            }],
        ),
    ];
    for (case_id, commands) in moves {
        for command in commands {
            office
                .case_executor
                .execute(
                    case_id,
                    Some(case_id),
                    &agent(),
                    command,
                    Idempotency::none(),
                )
                .await
                .unwrap();
        }
    }

    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = office
            .cases
            .list(CaseFilter::default(), None, 3, after)
            .await
            .unwrap();
        assert!(page.len() <= 3);
        listed.extend(page);
        match next {
            Some(position) => after = Some(position),
            None => break,
        }
    }
    let newest_first: Vec<Uuid> = opened.iter().rev().copied().collect();
    assert_eq!(
        listed.iter().map(|case| case.case_id).collect::<Vec<_>>(),
        newest_first,
        "every case once, newest first"
    );
    for case in &listed {
        assert_eq!(
            case,
            &office.cases.get(case.case_id).await.unwrap(),
            "the listed case is the case"
        );
    }
    use front_office::case::{Lifecycle, WaitingOn};
    assert_eq!(
        (
            listed[4].lifecycle,
            listed[4].assignee.as_ref().map(|agent| agent.as_str())
        ),
        (Lifecycle::Waiting(WaitingOn::Customer), Some("agent-2")),
        "case 2, reassigned while waiting"
    );
    assert_eq!(
        (listed[3].lifecycle, listed[3].reopened_count),
        (Lifecycle::Open, 1),
        "case 3, reopened without an assignee"
    );
    assert_eq!(listed[1].lifecycle, Lifecycle::Closed, "case 5");
    assert_eq!(listed[5].flags.len(), 2, "case 1 was flagged twice");
    assert_eq!(listed[2].flags.len(), 1, "case 4 was flagged once");
    assert!(matches!(
        listed[0].details.customer_phone,
        front_office::case::CustomerPhone::Known(ref phone) if phone == &PhoneNumber::parse("p", "+8613800001206").unwrap()
    ));
    assert_eq!(
        listed[2].risk.as_ref().map(|note| note.risk.trigger),
        Some(RiskTrigger::TopEscalation),
        "case 4, escalated to the top"
    );
    assert_eq!(listed[2].details.priority, Priority::Urgent);
    assert_eq!(listed[5].risk, None, "case 1, flagged and cleared");

    // Filters, alone and combined, each the cases that match, newest first.
    let filtered = |filter: CaseFilter, phone: Option<&'static str>| {
        let cases = &office.cases;
        async move {
            let phone = phone.map(|phone| PhoneNumber::parse("p", phone).unwrap());
            let (page, next) = cases.list(filter, phone.as_ref(), 100, None).await.unwrap();
            assert_eq!(next, None);
            page.into_iter()
                .map(|case| case.case_id)
                .collect::<Vec<_>>()
        }
    };
    let level = |level| EscalationLevel::parse("level", level).unwrap();
    let cases = |indexes: &[usize]| indexes.iter().map(|&n| opened[n]).collect::<Vec<_>>();
    assert_eq!(
        filtered(
            CaseFilter {
                at_risk: Some(true),
                ..Default::default()
            },
            None
        )
        .await,
        cases(&[4])
    );
    assert_eq!(
        filtered(
            CaseFilter {
                min_escalation: Some(level(1)),
                ..Default::default()
            },
            None
        )
        .await,
        cases(&[4, 0])
    );
    assert_eq!(
        filtered(
            CaseFilter {
                stage: Some(Stage::Waiting),
                queue: Some(queue("repair")),
                assignee: Some(agent_named("agent-2")),
                category: Some(Category::Repair),
                ..Default::default()
            },
            None
        )
        .await,
        cases(&[2])
    );
    assert_eq!(
        filtered(
            CaseFilter {
                stage: Some(Stage::Open),
                at_risk: Some(false),
                ..Default::default()
            },
            None
        )
        .await,
        cases(&[6, 3, 1, 0])
    );
    assert_eq!(
        filtered(CaseFilter::default(), Some("+8613800001206")).await,
        cases(&[6])
    );
    assert!(
        filtered(
            CaseFilter {
                category: Some(Category::Complaint),
                ..Default::default()
            },
            None
        )
        .await
        .is_empty()
    );
    let since = listed[5].updated_at;
    assert_eq!(
        filtered(
            CaseFilter {
                updated_since: Some(since),
                ..Default::default()
            },
            None
        )
        .await,
        cases(&[1, 0]),
        "changed at or after case 1's last change"
    );
    // Every phone was new: consumers, each case its own customer's.
    assert_eq!(
        filtered(
            CaseFilter {
                segment: Some(front_office::customer::Segment::Consumer),
                ..Default::default()
            },
            None
        )
        .await,
        cases(&[6, 5, 4, 3, 2, 1, 0])
    );
    let third = listed
        .iter()
        .find(|case| case.case_id == opened[3])
        .unwrap();
    assert_eq!(
        filtered(
            CaseFilter {
                segment: Some(front_office::customer::Segment::Consumer),
                customer_ids: vec![third.customer_id.unwrap()],
                ..Default::default()
            },
            None
        )
        .await,
        cases(&[3])
    );
    assert!(
        filtered(
            CaseFilter {
                segment: Some(front_office::customer::Segment::Hotel),
                ..Default::default()
            },
            None
        )
        .await
        .is_empty()
    );
    office.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_pages_newest_first_equal_to_the_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("front-office.db"))
        .await
        .unwrap();
    let keys = Arc::new(store.personal_data_keys(secret()).await.unwrap());
    pages_newest_first_equal_to_the_streams(
        office(Arc::new(store.clone()), Arc::new(store), keys).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pages_newest_first_equal_to_the_streams() {
    use sqlx::migrate::MigrateDatabase;
    let server = std::env::var("SVCOPS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let url = format!(
        "{}/svcops_test_{}",
        server.trim_end_matches('/'),
        Uuid::new_v4().simple()
    );
    let store = PostgresStore::connect(&url, 8).await.unwrap();
    let keys = Arc::new(store.personal_data_keys(secret()).await.unwrap());
    pages_newest_first_equal_to_the_streams(
        office(Arc::new(store.clone()), Arc::new(store.clone()), keys).await,
    )
    .await;
    store.pool().close().await;
    let _ = sqlx::Postgres::force_drop_database(&url).await;
}
