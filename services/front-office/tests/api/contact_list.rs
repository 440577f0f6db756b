//! The contact list read model on both adapters: a case's contacts, read from the list,
//! equal the contacts read from their streams (transcripts, hand-offs and ends included),
//! oldest first, and a read right after a command sees it.

use std::sync::Arc;

use front_office::app::{Cases, Contacts};
use front_office::case::{CaseDetails, Category, Channel, Priority, QueueName};
use front_office::case_list::CaseListProjection;
use front_office::contact::{Answering, ContactCommand, Speaker, Utterance};
use front_office::contact_list::ContactListProjection;
use svcops_eventstore::projection::{self, RunnerSettings};
use svcops_eventstore::read_model::ReadModels;
use svcops_eventstore::{
    EventStore, PersonalDataKeys, PersonalDataSecret, PostgresStore, SqliteStore,
};
use svcops_kit::events::CommandContext;
use svcops_kit::{Principal, Role};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn secret() -> PersonalDataSecret {
    PersonalDataSecret::new(
        format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()).as_bytes(),
    )
    .unwrap()
}

fn caller(role: Role) -> CommandContext {
    CommandContext::from_caller(Principal {
        subject: format!("{role}-1"),
        role,
    })
}

async fn contacts_of_a_case_equal_their_streams(
    store: Arc<dyn EventStore>,
    read_models: Arc<dyn ReadModels>,
    keys: Arc<dyn PersonalDataKeys>,
) {
    let shutdown = CancellationToken::new();
    let settings = RunnerSettings::default;
    let case_list = projection::start(
        store.clone(),
        read_models.clone(),
        Arc::new(CaseListProjection),
        settings(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let contact_list = projection::start(
        store.clone(),
        read_models,
        Arc::new(ContactListProjection),
        settings(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let relay = Arc::new(Notify::new());
    let cases = Arc::new(Cases::new(
        store.clone(),
        keys,
        relay.clone(),
        case_list.read_model(),
    ));
    let contacts = Contacts::new(store, relay, cases.clone(), contact_list.read_model());

    let details = CaseDetails::parse(
        "+8613800007777",
        Category::Complaint,
        Priority::Normal,
        Channel::Chat,
        "hotel corridor lights",
        "PL-900",
        "",
    )
    .unwrap();
    let case = cases
        .open(&caller(Role::Agent), None, details)
        .await
        .unwrap();
    let other = cases
        .open(
            &caller(Role::Agent),
            None,
            CaseDetails::parse(
                "+8613800007778",
                Category::Repair,
                Priority::Normal,
                Channel::Hotline,
                "another case",
                "",
                "",
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let service = caller(Role::Service);
    let bot_chat = contacts
        .start(&service, None, case.case_id, Channel::Chat, true)
        .await
        .unwrap();
    assert!(
        contacts
            .of_case(case.case_id)
            .await
            .unwrap()
            .iter()
            .any(|view| view.contact.contact_id == bot_chat.contact.contact_id),
        "the list reads its own writes"
    );
    let said = |speaker, text: &str, at| {
        ContactCommand::Say(Utterance::parse(speaker, text, at, at + 700).unwrap())
    };
    for command in [
        said(Speaker::Bot, "您好", 0),
        said(Speaker::Customer, "走廊灯不亮", 900),
        ContactCommand::HandOff {
            queue: QueueName::parse("queue", "complaints").unwrap(),
            reason: "asks for a person".into(),
        },
        said(Speaker::Agent, "我来处理", 2_000),
        ContactCommand::End,
    ] {
        contacts
            .change(&service, bot_chat.contact.contact_id, None, command)
            .await
            .unwrap();
    }
    let hotline = contacts
        .start(&service, None, case.case_id, Channel::Hotline, false)
        .await
        .unwrap();
    contacts
        .change(
            &service,
            hotline.contact.contact_id,
            None,
            said(Speaker::Customer, "any news?", 0),
        )
        .await
        .unwrap();
    contacts
        .start(&service, None, other.case_id, Channel::App, false)
        .await
        .unwrap();

    let listed = contacts.of_case(case.case_id).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|view| view.contact.contact_id)
            .collect::<Vec<_>>(),
        [bot_chat.contact.contact_id, hotline.contact.contact_id],
        "the case's contacts, oldest first, and no other case's"
    );
    for view in &listed {
        assert_eq!(
            view,
            &contacts.get(view.contact.contact_id).await.unwrap(),
            "the listed contact is the contact"
        );
    }
    assert_eq!(listed[0].contact.answering, Answering::Ended);
    assert_eq!(listed[0].contact.transcript.len(), 3);
    assert_eq!(listed[1].contact.answering, Answering::Person);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_contacts_of_a_case_equal_their_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("front-office.db"))
        .await
        .unwrap();
    let keys = Arc::new(store.personal_data_keys(secret()).await.unwrap());
    contacts_of_a_case_equal_their_streams(Arc::new(store.clone()), Arc::new(store), keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_contacts_of_a_case_equal_their_streams() {
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
    contacts_of_a_case_equal_their_streams(Arc::new(store.clone()), Arc::new(store.clone()), keys)
        .await;
    store.pool().close().await;
    let _ = sqlx::Postgres::force_drop_database(&url).await;
}
