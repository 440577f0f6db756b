//! The customer list read model on both adapters: pages newest first without gaps or
//! repeats, filters by segment and tag, merged customers left out, erased ones read as
//! erased, and a list right after a command sees it (read your writes).

use std::collections::BTreeSet;
use std::sync::Arc;

use front_office::app::{Cases, CustomerChange, Customers, NewCustomer};
use front_office::case_list::CaseListProjection;
use front_office::customer::{Personal, RecordingConsent, Segment, Tag};
use front_office::customer_list::{CustomerFilter, CustomerListProjection};
use svcops_eventstore::projection::{self, Projector, RunnerSettings};
use svcops_eventstore::read_model::ReadModels;
use svcops_eventstore::{
    EventStore, PersonalDataKeys, PersonalDataSecret, PostgresStore, SqliteStore,
};
use svcops_kit::events::CommandContext;
use svcops_kit::{Principal, Role};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Office {
    customers: Customers,
    cases: Cases,
    _projectors: Vec<Projector>,
    shutdown: CancellationToken,
}

async fn office(
    store: Arc<dyn EventStore>,
    read_models: Arc<dyn ReadModels>,
    keys: Arc<dyn PersonalDataKeys>,
) -> Office {
    let shutdown = CancellationToken::new();
    let start = |projection: Arc<dyn projection::Projection>| {
        projection::start(
            store.clone(),
            read_models.clone(),
            projection,
            RunnerSettings::default(),
            shutdown.clone(),
        )
    };
    let customer_list = start(Arc::new(CustomerListProjection)).await.unwrap();
    let case_list = start(Arc::new(CaseListProjection)).await.unwrap();
    Office {
        customers: Customers::new(
            store.clone(),
            keys.clone(),
            Arc::new(Notify::new()),
            customer_list.read_model(),
        ),
        cases: Cases::new(store, keys, Arc::new(Notify::new()), case_list.read_model()),
        _projectors: vec![customer_list, case_list],
        shutdown,
    }
}

fn agent() -> CommandContext {
    CommandContext::from_caller(Principal {
        subject: "alice".into(),
        role: Role::Agent,
    })
}

fn tag(raw: &str) -> Tag {
    Tag::parse("tag", raw).unwrap()
}

fn new_customer(n: usize, segment: Segment, tags: &[&str]) -> NewCustomer {
    NewCustomer {
        segment,
        name: Some(format!("Customer {n}")),
        phones: vec![
            front_office::customer::phone("phones", &format!("+8613600000{n:03}")).unwrap(),
        ],
        emails: Vec::new(),
        account_number: None,
        address: None,
        tags: tags.iter().map(|raw| tag(raw)).collect::<BTreeSet<_>>(),
        consent: RecordingConsent::Unknown,
    }
}

async fn pages_filters_merges_and_erasures(office: Office) {
    let segments = [
        Segment::Consumer,
        Segment::Hotel,
        Segment::Consumer,
        Segment::RealEstate,
        Segment::Hotel,
        Segment::Consumer,
    ];
    let mut registered = Vec::new();
    for (n, segment) in segments.into_iter().enumerate() {
        let tags: &[&str] = if n % 2 == 0 { &["vip"] } else { &[] };
        let customer = office
            .customers
            .register(&agent(), None, Vec::new(), new_customer(n, segment, tags))
            .await
            .unwrap();
        // Read your writes: the newest leads the list at once.
        let (first, _) = office
            .customers
            .list(&CustomerFilter::default(), 1, None)
            .await
            .unwrap();
        assert_eq!(first[0].customer_id, customer.customer_id);
        assert_eq!(
            first[0].name,
            Some(Personal::Known(format!("Customer {n}")))
        );
        registered.push(customer.customer_id);
    }

    // Pages of two, newest first, none missed or repeated.
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = office
            .customers
            .list(&CustomerFilter::default(), 2, after)
            .await
            .unwrap();
        listed.extend(page.iter().map(|customer| customer.customer_id));
        match next {
            Some(position) => after = Some(position),
            None => break,
        }
    }
    let newest_first: Vec<Uuid> = registered.iter().rev().copied().collect();
    assert_eq!(listed, newest_first);

    let ids = |customers: Vec<front_office::customer::CustomerView>| {
        customers
            .into_iter()
            .map(|customer| customer.customer_id)
            .collect::<Vec<_>>()
    };
    let hotels = office
        .customers
        .list(
            &CustomerFilter {
                segment: Some(Segment::Hotel),
                tag: None,
            },
            10,
            None,
        )
        .await
        .unwrap()
        .0;
    assert_eq!(ids(hotels), [registered[4], registered[1]]);

    // Tags move in and out of the list's filter.
    office
        .customers
        .change(
            &agent(),
            registered[1],
            None,
            Vec::new(),
            CustomerChange::Tag(tag("vip")),
        )
        .await
        .unwrap();
    office
        .customers
        .change(
            &agent(),
            registered[0],
            None,
            Vec::new(),
            CustomerChange::Untag(tag("vip")),
        )
        .await
        .unwrap();
    let vip = CustomerFilter {
        segment: None,
        tag: Some(tag("vip")),
    };
    let vips = office.customers.list(&vip, 10, None).await.unwrap().0;
    assert_eq!(
        ids(vips.clone()),
        [registered[4], registered[2], registered[1]]
    );
    assert_eq!(vips[2].tags, [tag("vip")]);

    // A merged customer leaves the list; an erased one stays, erased.
    office
        .customers
        .merge(&agent(), None, Vec::new(), registered[5], registered[2])
        .await
        .unwrap();
    assert!(
        office
            .cases
            .erase_customer_id(&agent(), registered[2])
            .await
            .unwrap()
    );
    let all = office
        .customers
        .list(&CustomerFilter::default(), 10, None)
        .await
        .unwrap()
        .0;
    assert_eq!(
        ids(all.clone()),
        [
            registered[4],
            registered[3],
            registered[2],
            registered[1],
            registered[0]
        ]
    );
    let erased = &all[2];
    assert!(erased.erased);
    assert_eq!(erased.name, Some(Personal::Erased));
    assert!(
        all[0]
            .name
            .as_ref()
            .is_some_and(|name| name.known().is_some())
    );
    office.shutdown.cancel();
}

fn secret() -> PersonalDataSecret {
    PersonalDataSecret::new(
        format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()).as_bytes(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_customer_list_pages_filters_merges_and_erasures() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("front-office.db"))
        .await
        .unwrap();
    let keys = Arc::new(store.personal_data_keys(secret()).await.unwrap());
    pages_filters_merges_and_erasures(office(Arc::new(store.clone()), Arc::new(store), keys).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_customer_list_pages_filters_merges_and_erasures() {
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
    pages_filters_merges_and_erasures(
        office(Arc::new(store.clone()), Arc::new(store.clone()), keys).await,
    )
    .await;
    store.pool().close().await;
    let _ = sqlx::Postgres::force_drop_database(&url).await;
}
