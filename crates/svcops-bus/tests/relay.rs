//! The relay never skips an event when transactions commit out of position order
//! (DESIGN §3.4), on the real PostgreSQL event store.
//!
//! Needs PostgreSQL at `SVCOPS_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`,
//! trust auth); each test creates its own database.

use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use svcops_bus::relay::Relay;
use svcops_bus::{Bus, EmbeddedBus, Subscription, envelope};
use svcops_eventstore::{
    Append, EventMetadata, EventStore, ExpectedVersion, NewEvent, PostgresStore, StreamId,
};
use time::OffsetDateTime;
use uuid::Uuid;

const TOPIC: &str = "svcops.frontoffice.events.v1";
const SOURCE: &str = "svcops/front-office";

fn database_url() -> String {
    let server = std::env::var("SVCOPS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    format!("{server}/svcops_bus_relay_{}", Uuid::new_v4().simple())
}

fn new_event(event_type: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.into(),
        payload: vec![1, 2, 3],
        metadata: EventMetadata {
            case_id: Some(Uuid::now_v7()),
            actor_subject: "alice".into(),
            actor_role: "agent".into(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            traceparent: None,
            occurred_at: OffsetDateTime::now_utc(),
        },
    }
}

async fn next_event_id(subscription: &mut dyn Subscription) -> Uuid {
    let delivery = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("a delivery in time")
        .expect("delivery");
    envelope::from_message(&delivery.message)
        .expect("relayed messages decode")
        .event_id
}

async fn assert_nothing_more(subscription: &mut dyn Subscription) {
    if let Ok(delivery) =
        tokio::time::timeout(Duration::from_millis(500), subscription.next()).await
    {
        panic!("unexpected delivery: {delivery:?}");
    }
}

#[tokio::test]
async fn relay_publishes_an_event_that_commits_after_a_higher_position() {
    let url = database_url();
    let store = PostgresStore::connect(&url, 5)
        .await
        .expect("PostgreSQL reachable (see DESIGN §7)");
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = Arc::new(
        EmbeddedBus::open(&dir.path().join("bus.sqlite"))
            .await
            .expect("embedded bus"),
    );
    let relay = Relay::new(Arc::new(store.clone()), bus.clone(), TOPIC, SOURCE);
    let mut subscription = bus
        .subscribe("observer", &[TOPIC])
        .await
        .expect("subscribe");

    // A slow append: inserts its event and outbox row exactly as `PostgresStore::append` does
    // (one transaction), but stays uncommitted while another append goes through.
    let held = new_event("svcops.test.v1.SlowAppended");
    let mut transaction = store.pool().begin().await.expect("begin");
    let held_position: i64 = sqlx::query_scalar(
        "INSERT INTO events (stream_id, version, event_id, event_type, case_id, actor_subject, \
         actor_role, correlation_id, causation_id, traceparent, occurred_at, payload) \
         VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING position",
    )
    .bind("case-slow")
    .bind(held.event_id)
    .bind(&held.event_type)
    .bind(held.metadata.case_id)
    .bind(&held.metadata.actor_subject)
    .bind(&held.metadata.actor_role)
    .bind(held.metadata.correlation_id)
    .bind(held.metadata.causation_id)
    .bind(&held.metadata.traceparent)
    .bind(held.metadata.occurred_at)
    .bind(&held.payload)
    .fetch_one(&mut *transaction)
    .await
    .expect("insert held event");
    sqlx::query("INSERT INTO outbox (position) VALUES ($1)")
        .bind(held_position)
        .execute(&mut *transaction)
        .await
        .expect("insert held outbox row");

    let fast = new_event("svcops.test.v1.FastAppended");
    store
        .append(Append::new(
            StreamId::parse("case-fast").expect("stream id"),
            ExpectedVersion::NoStream,
            vec![fast.clone()],
        ))
        .await
        .expect("append commits");

    // Only the committed event is visible, although its position is the higher one.
    let visible = store.read_all(0, 100).await.expect("read_all");
    assert_eq!(visible.len(), 1);
    assert_eq!(visible[0].event_id, fast.event_id);
    assert!(
        visible[0].position > held_position,
        "committed out of position order"
    );
    let naive_cursor = visible[0].position;

    assert_eq!(relay.publish_once().await.expect("relay"), 1);
    assert_eq!(next_event_id(subscription.as_mut()).await, fast.event_id);
    assert_eq!(
        relay.publish_once().await.expect("relay"),
        0,
        "nothing else committed"
    );

    transaction.commit().await.expect("commit the slow append");

    // A tailing reader that remembers the highest position it saw would never see it ...
    let after_cursor = store.read_all(naive_cursor, 100).await.expect("read_all");
    assert!(
        after_cursor
            .iter()
            .all(|event| event.event_id != held.event_id),
        "a position cursor skips the late commit"
    );
    // ... though it is committed, below the cursor.
    let all = store.read_all(0, 100).await.expect("read_all");
    assert!(all.iter().any(|event| event.event_id == held.event_id));

    // The relay drains the outbox, whatever the position: nothing skipped.
    assert_eq!(relay.publish_once().await.expect("relay"), 1);
    assert_eq!(next_event_id(subscription.as_mut()).await, held.event_id);
    assert_eq!(relay.publish_once().await.expect("relay"), 0);
    assert!(store.unpublished(10).await.expect("outbox").is_empty());
    assert_nothing_more(subscription.as_mut()).await;

    store.pool().close().await;
    // Best effort: a leftover test database is harmless.
    let _ = sqlx::Postgres::drop_database(&url).await;
}

#[tokio::test]
async fn relay_publishes_in_position_order_and_keeps_metadata() {
    let url = database_url();
    let store = PostgresStore::connect(&url, 5)
        .await
        .expect("PostgreSQL reachable (see DESIGN §7)");
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = Arc::new(
        EmbeddedBus::open(&dir.path().join("bus.sqlite"))
            .await
            .expect("embedded bus"),
    );
    let relay = Relay::new(Arc::new(store.clone()), bus.clone(), TOPIC, SOURCE);

    let stream = StreamId::parse("case-ordered").expect("stream id");
    let events: Vec<NewEvent> = (0..5).map(|_| new_event("svcops.test.v1.Step")).collect();
    store
        .append(Append::new(
            stream.clone(),
            ExpectedVersion::NoStream,
            events[..2].to_vec(),
        ))
        .await
        .expect("append");
    store
        .append(Append::new(
            stream.clone(),
            ExpectedVersion::Exact(2),
            events[2..].to_vec(),
        ))
        .await
        .expect("append");
    assert_eq!(relay.publish_once().await.expect("relay"), 5);

    let mut subscription = bus
        .subscribe("observer", &[TOPIC])
        .await
        .expect("subscribe");
    for (index, sent) in events.iter().enumerate() {
        let delivery = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("a delivery in time")
            .expect("delivery");
        let event = envelope::from_message(&delivery.message).expect("decodes");
        assert_eq!(event.event_id, sent.event_id);
        assert_eq!(event.version, index as u64 + 1);
        assert_eq!(event.stream_id, stream.as_str());
        assert_eq!(event.source, SOURCE);
        assert_eq!(event.metadata.case_id, sent.metadata.case_id);
        assert_eq!(event.payload, sent.payload);
    }

    store.pool().close().await;
    let _ = sqlx::Postgres::drop_database(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_relay_one_at_a_time_and_a_takeover_keeps_per_stream_order() {
    use std::collections::{HashMap, HashSet};
    use tokio_util::sync::CancellationToken;

    let url = database_url();
    let store = PostgresStore::connect(&url, 8)
        .await
        .expect("PostgreSQL reachable (see DESIGN §7)");
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = Arc::new(
        EmbeddedBus::open(&dir.path().join("bus.sqlite"))
            .await
            .expect("embedded bus"),
    );
    let mut subscription = bus
        .subscribe("observer", &[TOPIC])
        .await
        .expect("subscribe");
    // Two replicas of one office, each with its relay on the one outbox.
    let replica = |name: &str, shutdown: CancellationToken| {
        let relay = Relay::new(Arc::new(store.clone()), bus.clone(), TOPIC, SOURCE);
        tokio::spawn(relay.run_leased(Arc::new(store.clone()), name.to_owned(), shutdown))
    };
    let shutdown = CancellationToken::new();
    let first = replica("replica-a", shutdown.clone());
    let second = replica("replica-b", shutdown.clone());

    let streams: Vec<StreamId> = (0..10)
        .map(|_| StreamId::for_aggregate("case", Uuid::now_v7()))
        .collect();
    let mut appended: HashMap<String, Vec<Uuid>> = HashMap::new();
    for round in 0..30 {
        for stream in &streams {
            let event = new_event("svcops.test.v1.Step");
            appended
                .entry(stream.to_string())
                .or_default()
                .push(event.event_id);
            store
                .append(Append::new(
                    stream.clone(),
                    ExpectedVersion::Any,
                    vec![event],
                ))
                .await
                .expect("append");
        }
        if round == 10 {
            // Whichever replica holds the lease dies now: both tasks are candidates, so kill
            // the holder by asking the database who it is.
            let holder: String = sqlx::query_scalar("SELECT holder FROM leases WHERE name = $1")
                .bind(format!("relay:{TOPIC}"))
                .fetch_one(store.pool())
                .await
                .expect("a replica holds the relay lease");
            if holder == "replica-a" {
                first.abort();
            } else {
                second.abort();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every event arrives; per stream, first arrivals keep the stream's order (a takeover
    // may repeat what the dead holder published but had not marked: consumers dedupe).
    let expected: usize = appended.values().map(Vec::len).sum();
    let mut seen = HashSet::new();
    let mut arrived: HashMap<String, Vec<Uuid>> = HashMap::new();
    while seen.len() < expected {
        let delivery = tokio::time::timeout(Duration::from_secs(20), subscription.next())
            .await
            .expect("every event arrives, the takeover included")
            .expect("delivery");
        let event = envelope::from_message(&delivery.message).expect("decodes");
        if seen.insert(event.event_id) {
            arrived
                .entry(event.stream_id)
                .or_default()
                .push(event.event_id);
        }
    }
    assert_eq!(arrived, appended);
    let holder: String = sqlx::query_scalar("SELECT holder FROM leases WHERE name = $1")
        .bind(format!("relay:{TOPIC}"))
        .fetch_one(store.pool())
        .await
        .expect("lease");
    assert!(
        !first.is_finished() || !second.is_finished(),
        "one replica lives"
    );
    assert!(holder == "replica-a" || holder == "replica-b");
    shutdown.cancel();
    let _ = first.await;
    let _ = second.await;
    store.pool().close().await;
    let _ = sqlx::Postgres::drop_database(&url).await;
}
