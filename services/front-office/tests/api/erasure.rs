//! Erasure writes twice (the `CustomerDataErased` record and the destroyed key), so a
//! failure between the two must neither lose the record nor make a retry answer "nothing to
//! erase", and a record must not outlive a restart with its key still there. The failures
//! are real: the database refuses one of the writes (a trigger), then takes writes again.

use std::sync::Arc;

use front_office::app::Cases;
use front_office::case::{CaseDetails, Category, Channel, CustomerPhone, PhoneNumber, Priority};
use front_office::case_list::CaseListProjection;
use sqlx::Connection;
use svcops_eventstore::projection::{self, Projector, RunnerSettings};
use svcops_eventstore::{EventStore, PersonalDataKeys, PersonalDataSecret, SqliteStore};
use svcops_kit::events::CommandContext;
use svcops_kit::service::{Office, Ports};
use svcops_kit::{Principal, Role};
use tokio::sync::Notify;
use uuid::Uuid;

const PHONE: &str = "+8613800001234";
const ERASED: &str = "svcops.frontoffice.v1.CustomerDataErased";

struct Fixture {
    cases: Cases,
    _list: Projector,
    store: SqliteStore,
    keys: Arc<dyn PersonalDataKeys>,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("front-office.db"))
            .await
            .unwrap();
        let secret = PersonalDataSecret::new(
            format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()).as_bytes(),
        )
        .unwrap();
        let keys: Arc<dyn PersonalDataKeys> =
            Arc::new(store.personal_data_keys(secret).await.unwrap());
        let list = projection::start(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(CaseListProjection),
            RunnerSettings::default(),
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
        let cases = Cases::new(
            Arc::new(store.clone()),
            keys.clone(),
            Arc::new(Notify::new()),
            list.read_model(),
        );
        Self {
            cases,
            _list: list,
            store,
            keys,
            dir,
        }
    }

    fn context(role: Role) -> CommandContext {
        CommandContext::from_caller(Principal {
            subject: format!("test-{role}"),
            role,
        })
    }

    async fn open_case(&self) -> Uuid {
        let details = CaseDetails::parse(
            PHONE,
            Category::Repair,
            Priority::Normal,
            Channel::Hotline,
            "lamp flickers",
            "",
            "",
        )
        .unwrap();
        self.cases
            .open(&Self::context(Role::Agent), None, details)
            .await
            .unwrap()
            .case_id
    }

    async fn erase(&self) -> Result<bool, front_office::app::Error> {
        self.cases
            .erase_customer(
                &Self::context(Role::Manager),
                &PhoneNumber::parse("customer_phone", PHONE).unwrap(),
            )
            .await
    }

    /// Runs SQL on a connection of its own, beside the store's.
    async fn execute(&self, sql: &str) {
        let mut connection = sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new()
                .filename(self.dir.path().join("front-office.db")),
        )
        .await
        .unwrap();
        // Test-only SQL, written in this file.
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
    }

    async fn erasure_records(&self) -> usize {
        self.store
            .read_all(0, 1000)
            .await
            .unwrap()
            .iter()
            .filter(|event| event.event_type == ERASED)
            .count()
    }

    /// Fails the first erasure with `trigger` in place, drops it, retries.
    async fn erase_after_a_failure(&self, trigger: &str, name: &str) {
        let case_id = self.open_case().await;
        self.execute(trigger).await;
        let failed = self.erase().await;
        assert!(failed.is_err(), "the injected failure surfaces: {failed:?}");
        self.execute(&format!("DROP TRIGGER {name}")).await;

        assert!(
            self.erase().await.unwrap(),
            "a retry finishes the erasure and says so"
        );
        assert_eq!(self.erasure_records().await, 1, "exactly one record");
        let case = self.cases.get(case_id).await.unwrap();
        assert_eq!(case.details.customer_phone, CustomerPhone::Erased);

        assert!(
            !self.erase().await.unwrap(),
            "once erased, there is nothing left to erase"
        );
        assert_eq!(self.erasure_records().await, 1, "still exactly one record");
    }
}

#[tokio::test]
async fn a_retry_after_the_record_failed_to_append_erases_and_records_once() {
    let office = Fixture::start().await;
    office
        .erase_after_a_failure(
            &format!(
                "CREATE TRIGGER refuse_record BEFORE INSERT ON events \
                 WHEN NEW.event_type = '{ERASED}' \
                 BEGIN SELECT RAISE(ABORT, 'injected: the record is refused'); END"
            ),
            "refuse_record",
        )
        .await;
}

const REFUSE_DESTRUCTION: &str = "CREATE TRIGGER refuse_destruction \
     BEFORE UPDATE ON personal_data_keys WHEN NEW.wrapped_key IS NULL \
     BEGIN SELECT RAISE(ABORT, 'injected: the key is not destroyed'); END";

#[tokio::test]
async fn a_retry_after_the_key_failed_to_be_destroyed_erases_and_records_once() {
    let office = Fixture::start().await;
    office
        .erase_after_a_failure(REFUSE_DESTRUCTION, "refuse_destruction")
        .await;
}

#[tokio::test]
async fn an_erasure_never_retried_is_finished_when_the_office_starts() {
    let fixture = Fixture::start().await;
    let case_id = fixture.open_case().await;
    fixture.execute(REFUSE_DESTRUCTION).await;
    assert!(fixture.erase().await.is_err());
    assert_eq!(fixture.erasure_records().await, 1);
    assert!(
        fixture.keys.subject_key_id(PHONE).await.unwrap().is_some(),
        "the key outlived its record"
    );
    // (The office also retries in the background from here on: whichever finishes first.)
    fixture.execute("DROP TRIGGER refuse_destruction").await;

    // Nobody retries; the office restarts on the same store.
    let bus = svcops_bus::EmbeddedBus::open(&fixture.dir.path().join("bus.db"))
        .await
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let office = front_office::FrontOffice::start(
        Ports {
            store: Arc::new(fixture.store.clone()),
            read_models: Arc::new(fixture.store.clone()),
            keys: Some(fixture.keys.clone()),
            bus: Arc::new(bus),
            backpressure: svcops_bus::lag::Backpressure::OFF,
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    // It finishes in the background, once its erasure records are caught up.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while fixture.keys.subject_key_id(PHONE).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted office never finished the erasure"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    office.stopped().await;
    let case = fixture.cases.get(case_id).await.unwrap();
    assert_eq!(case.details.customer_phone, CustomerPhone::Erased);
    assert_eq!(
        fixture.erasure_records().await,
        1,
        "still exactly one record"
    );
}

#[tokio::test]
async fn an_erasure_whose_key_could_not_be_destroyed_finishes_in_the_background() {
    let fixture = Fixture::start().await;
    fixture.open_case().await;
    fixture.execute(REFUSE_DESTRUCTION).await;
    assert!(fixture.erase().await.is_err());
    assert_eq!(fixture.erasure_records().await, 1);
    fixture.execute("DROP TRIGGER refuse_destruction").await;
    // Nobody retries and nothing restarts: the office itself finishes the job.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while fixture.keys.subject_key_id(PHONE).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key outlived its erasure record"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(fixture.erasure_records().await, 1);
}
