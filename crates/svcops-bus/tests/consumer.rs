//! The consumer runner: poison messages go to `<topic>.dlq` and the consumer keeps going.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use svcops_bus::consumer::{self, FAILURE_ATTEMPTS, Handler, HandlerError};
use svcops_bus::envelope::{self, BusEvent};
use svcops_bus::{Bus, EmbeddedBus, Message, topics};
use svcops_eventstore::{EventMetadata, RecordedEvent, StreamId};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TOPIC: &str = topics::FRONT_OFFICE;
const GROUP: &str = "svcops.backoffice.sla";

fn recorded(position: i64) -> RecordedEvent {
    RecordedEvent {
        position,
        stream_id: StreamId::parse(format!("case-{position}")).expect("stream id"),
        version: 1,
        event_id: Uuid::now_v7(),
        event_type: "svcops.frontoffice.v1.CaseOpened".into(),
        payload: vec![position as u8],
        metadata: EventMetadata {
            case_id: Some(Uuid::now_v7()),
            actor_subject: "alice".into(),
            actor_role: "agent".into(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            traceparent: None,
            occurred_at: OffsetDateTime::now_utc(),
        },
        recorded_at: OffsetDateTime::now_utc(),
    }
}

/// Runs the consumer as `GROUP` on `TOPIC` until `done` holds (checked after each handled
/// event, signalled on `progress`), then shuts it down and checks it stopped cleanly.
async fn consume_until<H: Handler>(
    bus: Arc<dyn Bus>,
    handler: Arc<H>,
    progress: &Notify,
    done: impl Fn() -> bool,
    what: &str,
) {
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(consumer::run(
        bus,
        GROUP,
        &[TOPIC],
        handler,
        shutdown.clone(),
    ));
    tokio::time::timeout(Duration::from_secs(20), async {
        while !done() {
            progress.notified().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out: {what}"));
    shutdown.cancel();
    running
        .await
        .expect("consumer task")
        .expect("consumer stops cleanly");
}

/// Records what it handled; always fails on one event.
struct Recorder {
    poison: Uuid,
    handled: Mutex<Vec<Uuid>>,
    poison_attempts: Mutex<u32>,
    progress: Notify,
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError> {
        if event.event_id == self.poison {
            *self.poison_attempts.lock() += 1;
            return Err(HandlerError::Failed("price list missing".into()));
        }
        self.handled.lock().push(event.event_id);
        self.progress.notify_one();
        Ok(())
    }
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_the_consumer_moves_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus: Arc<dyn Bus> = Arc::new(
        EmbeddedBus::open(&dir.path().join("bus.sqlite"))
            .await
            .expect("embedded bus"),
    );
    // One case: its deliveries are handled in order (other cases' may pass them in a batch).
    let case_id = Uuid::now_v7();
    let events: Vec<RecordedEvent> = (1..=3)
        .map(|position| of_case(case_id, position as u64, position))
        .collect();
    let undecodable = Message {
        key: case_id.to_string(),
        headers: vec![("content-type".into(), b"text/plain".to_vec())],
        payload: b"not an event".to_vec(),
    };
    let mut messages: Vec<Message> = events
        .iter()
        .map(|event| envelope::to_message("svcops/front-office", event))
        .collect();
    messages.insert(1, undecodable.clone());
    bus.publish(TOPIC, messages).await.expect("publish");

    let handler = Arc::new(Recorder {
        poison: events[1].event_id,
        handled: Mutex::default(),
        poison_attempts: Mutex::default(),
        progress: Notify::new(),
    });
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(consumer::run(
        bus.clone(),
        GROUP,
        &[TOPIC],
        handler.clone(),
        shutdown.clone(),
    ));

    // The event after both poison messages gets handled.
    tokio::time::timeout(Duration::from_secs(20), async {
        while !handler.handled.lock().contains(&events[2].event_id) {
            handler.progress.notified().await;
        }
    })
    .await
    .expect("consumer reaches the last event");
    assert_eq!(
        *handler.handled.lock(),
        vec![events[0].event_id, events[2].event_id]
    );
    assert_eq!(*handler.poison_attempts.lock(), FAILURE_ATTEMPTS);

    // Both poison messages are on the dead-letter topic, in order, with origin and error.
    let mut dead_letters = bus
        .subscribe("inspector", &[&topics::dead_letter(TOPIC)])
        .await
        .expect("subscribe dlq");
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), dead_letters.next())
            .await
            .expect("dead letter in time")
            .expect("dead letter")
            .message
    };
    let first = next().await;
    assert_eq!(first.payload, undecodable.payload);
    assert_eq!(first.key, undecodable.key);
    assert!(
        first
            .header("dlq_error")
            .is_some_and(|error| error.contains("undecodable")),
        "{first:?}"
    );
    assert_eq!(first.header("dlq_topic"), Some(TOPIC));
    assert_eq!(first.header("dlq_group"), Some(GROUP));
    assert_eq!(
        first.header("content-type"),
        Some("text/plain"),
        "original headers kept"
    );

    let second = next().await;
    assert_eq!(second.header("dlq_error"), Some("price list missing"));
    assert_eq!(second.header("dlq_topic"), Some(TOPIC));
    assert_eq!(second.header("dlq_partition"), Some("0"));
    assert!(second.header("dlq_offset").is_some());
    let original = envelope::from_message(&second).expect("the original event is intact");
    assert_eq!(original.event_id, events[1].event_id);

    shutdown.cancel();
    running
        .await
        .expect("consumer task")
        .expect("consumer stops cleanly");

    // Everything was acknowledged, poison included: a restart does not see it again.
    let mut restarted = bus.subscribe(GROUP, &[TOPIC]).await.expect("subscribe");
    let again = tokio::time::timeout(Duration::from_millis(500), restarted.next()).await;
    assert!(again.is_err(), "nothing left for the group: {again:?}");
}

/// Why a dead-letter publish is refused: given the messages and how many dead-letter
/// publishes were tried before, an error, or `None` to let it through.
type Refusal = Box<dyn Fn(&[Message], u32) -> Option<svcops_bus::Error> + Send + Sync>;

/// A real bus whose dead-letter topics refuse publishes as `refuse` says (broker faults).
struct RefusingDeadLetters {
    inner: Arc<dyn Bus>,
    refuse: Refusal,
    attempts: Mutex<u32>,
    dead_lettered: Mutex<u32>,
}

impl RefusingDeadLetters {
    fn new(inner: Arc<dyn Bus>, refuse: Refusal) -> Self {
        Self {
            inner,
            refuse,
            attempts: Mutex::new(0),
            dead_lettered: Mutex::new(0),
        }
    }
}

#[async_trait]
impl Bus for RefusingDeadLetters {
    async fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), svcops_bus::Error> {
        if !topic.ends_with(".dlq") {
            return self.inner.publish(topic, messages).await;
        }
        let attempt = {
            let mut attempts = self.attempts.lock();
            *attempts += 1;
            *attempts - 1
        };
        if let Some(error) = (self.refuse)(&messages, attempt) {
            return Err(error);
        }
        self.inner.publish(topic, messages).await?;
        *self.dead_lettered.lock() += 1;
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn svcops_bus::Subscription>, svcops_bus::Error> {
        self.inner.subscribe(group, topics).await
    }

    async fn ping(&self) -> Result<(), svcops_bus::Error> {
        self.inner.ping().await
    }
}

/// Records the order of what it handled against what was dead-lettered by then.
struct OrderRecorder {
    bus: Arc<RefusingDeadLetters>,
    handled: Mutex<Vec<(Uuid, u32)>>,
    progress: Notify,
}

#[async_trait]
impl Handler for OrderRecorder {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError> {
        let dead_lettered = *self.bus.dead_lettered.lock();
        self.handled.lock().push((event.event_id, dead_lettered));
        self.progress.notify_one();
        Ok(())
    }
}

#[tokio::test]
async fn a_poison_message_is_never_skipped_while_its_dead_letter_topic_is_unavailable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded: Arc<dyn Bus> = Arc::new(
        EmbeddedBus::open(&dir.path().join("bus.sqlite"))
            .await
            .expect("embedded bus"),
    );
    // A broker stall: the first four dead-letter publishes time out.
    let bus = Arc::new(RefusingDeadLetters::new(
        embedded.clone(),
        Box::new(|_, attempt| {
            (attempt < 4).then_some(svcops_bus::Error::Timeout(Duration::from_millis(1)))
        }),
    ));
    let after = recorded(7);
    // Of the same case: handled after the poison message, in order.
    let poison = Message {
        key: after.metadata.case_id.expect("case").to_string(),
        headers: vec![("content-type".into(), b"text/plain".to_vec())],
        payload: b"not an event".to_vec(),
    };
    bus.publish(
        TOPIC,
        vec![poison, envelope::to_message("svcops/front-office", &after)],
    )
    .await
    .expect("publish");

    let handler = Arc::new(OrderRecorder {
        bus: bus.clone(),
        handled: Mutex::default(),
        progress: Notify::new(),
    });
    consume_until(
        bus.clone(),
        handler.clone(),
        &handler.progress,
        || !handler.handled.lock().is_empty(),
        "the event after the poison message is handled",
    )
    .await;

    // The consumer waited for the dead-letter topic before moving on: the poison message was
    // dead-lettered (once) before the next event was handled, so no offset passed it.
    assert_eq!(*handler.handled.lock(), vec![(after.event_id, 1)]);
    let mut dead_letters = embedded
        .subscribe("inspector", &[&topics::dead_letter(TOPIC)])
        .await
        .expect("subscribe dlq");
    let dead = tokio::time::timeout(Duration::from_secs(10), dead_letters.next())
        .await
        .expect("dead letter in time")
        .expect("dead letter");
    assert_eq!(dead.message.payload, b"not an event");
}

#[tokio::test]
async fn a_corrupt_row_of_the_embedded_bus_is_dead_lettered_not_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bus.sqlite");
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(&path).await.expect("embedded bus"));
    let before = recorded(1);
    bus.publish(
        TOPIC,
        vec![envelope::to_message("svcops/front-office", &before)],
    )
    .await
    .expect("publish");
    // A row whose headers blob is cut short (a torn write, a bad migration, a hand edit).
    let writer = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open the bus file");
    sqlx::query("INSERT INTO bus_messages (topic, key, headers, payload) VALUES (?1, ?2, ?3, ?4)")
        .bind(TOPIC)
        .bind("case-corrupt")
        .bind(vec![9u8, 0, 0])
        .bind(b"payload".to_vec())
        .execute(&writer)
        .await
        .expect("insert a corrupt row");
    writer.close().await;
    let after = recorded(3);
    bus.publish(
        TOPIC,
        vec![envelope::to_message("svcops/front-office", &after)],
    )
    .await
    .expect("publish");

    let handler = Arc::new(Recorder {
        poison: Uuid::nil(),
        handled: Mutex::default(),
        poison_attempts: Mutex::default(),
        progress: Notify::new(),
    });
    consume_until(
        bus.clone(),
        handler.clone(),
        &handler.progress,
        || handler.handled.lock().len() >= 2,
        "both readable events are handled",
    )
    .await;
    assert_eq!(
        *handler.handled.lock(),
        vec![before.event_id, after.event_id]
    );
    let mut dead_letters = bus
        .subscribe("inspector", &[&topics::dead_letter(TOPIC)])
        .await
        .expect("subscribe dlq");
    let dead = tokio::time::timeout(Duration::from_secs(10), dead_letters.next())
        .await
        .expect("the corrupt row is dead-lettered")
        .expect("dead letter")
        .message;
    assert_eq!(dead.key, "case-corrupt");
    assert_eq!(dead.payload, b"payload");
    assert!(
        dead.header("svcops_bus_corrupt")
            .is_some_and(|reason| reason.contains("truncated")),
        "{dead:?}"
    );
    assert!(
        dead.header("dlq_error")
            .is_some_and(|error| error.contains("truncated")),
        "the dead letter says why: {dead:?}"
    );
}

#[tokio::test]
async fn a_dead_letter_too_large_for_the_broker_goes_without_its_payload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded: Arc<dyn Bus> = Arc::new(
        EmbeddedBus::open(&dir.path().join("bus.sqlite"))
            .await
            .expect("embedded bus"),
    );
    // The broker refuses any dead letter with a payload as too large.
    let bus: Arc<dyn Bus> = Arc::new(RefusingDeadLetters::new(
        embedded.clone(),
        Box::new(|messages, _| {
            messages
                .iter()
                .any(|message| !message.payload.is_empty())
                .then_some(svcops_bus::Error::Kafka(
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge,
                    ),
                ))
        }),
    ));
    let after = recorded(5);
    bus.publish(
        TOPIC,
        vec![
            Message {
                key: "case-big".into(),
                headers: vec![("content-type".into(), b"text/plain".to_vec())],
                payload: vec![7; 4096],
            },
            envelope::to_message("svcops/front-office", &after),
        ],
    )
    .await
    .expect("publish");
    let handler = Arc::new(Recorder {
        poison: Uuid::nil(),
        handled: Mutex::default(),
        poison_attempts: Mutex::default(),
        progress: Notify::new(),
    });
    consume_until(
        bus.clone(),
        handler.clone(),
        &handler.progress,
        || !handler.handled.lock().is_empty(),
        "the consumer is not wedged by the dead letter",
    )
    .await;
    let mut dead_letters = embedded
        .subscribe("inspector", &[&topics::dead_letter(TOPIC)])
        .await
        .expect("subscribe dlq");
    let dead = tokio::time::timeout(Duration::from_secs(10), dead_letters.next())
        .await
        .expect("dead letter in time")
        .expect("dead letter")
        .message;
    assert_eq!(dead.key, "case-big");
    assert!(dead.payload.is_empty());
    assert!(
        dead.header("dlq_payload_dropped")
            .is_some_and(|note| note.starts_with("4096 bytes")),
        "{dead:?}"
    );
}

/// An event of `case_id` at `version` of its case stream.
fn of_case(case_id: Uuid, version: u64, position: i64) -> RecordedEvent {
    let mut event = recorded(position);
    event.stream_id = StreamId::for_aggregate("case", case_id);
    event.version = version;
    event.metadata.case_id = Some(case_id);
    event
}

/// Records each event as it is handled one by one, and how many ran at once; may take, or
/// refuse, batches.
#[derive(Default)]
struct Concurrent {
    handled: Mutex<Vec<(Uuid, u64)>>,
    running: std::sync::atomic::AtomicUsize,
    most_at_once: std::sync::atomic::AtomicUsize,
    batches: Mutex<Vec<usize>>,
    refuse_batches: bool,
    take_batches: bool,
    progress: Notify,
}

#[async_trait]
impl Handler for Concurrent {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError> {
        use std::sync::atomic::Ordering;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.handled
            .lock()
            .push((event.metadata.case_id.expect("case"), event.version));
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.progress.notify_one();
        Ok(())
    }

    async fn handle_batch(&self, events: &[BusEvent]) -> Option<Result<(), HandlerError>> {
        if !self.take_batches {
            return None;
        }
        self.batches.lock().push(events.len());
        if self.refuse_batches {
            return Some(Err(HandlerError::Unavailable("batch refused".into())));
        }
        for event in events {
            self.handled
                .lock()
                .push((event.metadata.case_id.expect("case"), event.version));
        }
        self.progress.notify_one();
        Some(Ok(()))
    }
}

/// Publishes 10 events for each of 4 cases, interleaved, and returns the cases.
async fn publish_interleaved(bus: &Arc<dyn Bus>) -> Vec<Uuid> {
    let cases: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let mut messages = Vec::new();
    for version in 1..=10u64 {
        for (index, case_id) in cases.iter().enumerate() {
            let position = (version as i64) * 10 + index as i64;
            messages.push(envelope::to_message(
                "svcops/front-office",
                &of_case(*case_id, version, position),
            ));
        }
    }
    bus.publish(TOPIC, messages).await.expect("publish");
    cases
}

async fn embedded_bus(dir: &tempfile::TempDir) -> Arc<dyn Bus> {
    Arc::new(
        EmbeddedBus::open(&dir.path().join("bus.sqlite"))
            .await
            .expect("embedded bus"),
    )
}

fn assert_each_once_in_case_order(handled: &[(Uuid, u64)], cases: &[Uuid]) {
    assert_eq!(handled.len(), 40, "each event once: {handled:?}");
    for case_id in cases {
        let versions: Vec<u64> = handled
            .iter()
            .filter(|(case, _)| case == case_id)
            .map(|(_, version)| *version)
            .collect();
        assert_eq!(versions, (1..=10).collect::<Vec<_>>(), "case {case_id}");
    }
}

#[tokio::test]
async fn a_batch_handles_each_case_in_its_order_and_cases_side_by_side() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = embedded_bus(&dir).await;
    let cases = publish_interleaved(&bus).await;
    let handler = Arc::new(Concurrent::default());
    consume_until(
        bus,
        handler.clone(),
        &handler.progress,
        || handler.handled.lock().len() >= 40,
        "every event handled",
    )
    .await;
    assert_each_once_in_case_order(&handler.handled.lock(), &cases);
    let most = handler
        .most_at_once
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        most > 1,
        "cases were handled side by side (at most {most} at once)"
    );
    assert!(most <= cases.len(), "never two events of one case at once");
}

#[tokio::test]
async fn a_handler_that_takes_batches_gets_them_whole_and_a_refused_one_goes_one_by_one() {
    for refuse_batches in [false, true] {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = embedded_bus(&dir).await;
        let cases = publish_interleaved(&bus).await;
        let handler = Arc::new(Concurrent {
            take_batches: true,
            refuse_batches,
            ..Concurrent::default()
        });
        consume_until(
            bus,
            handler.clone(),
            &handler.progress,
            || handler.handled.lock().len() >= 40,
            "every event handled",
        )
        .await;
        assert_each_once_in_case_order(&handler.handled.lock(), &cases);
        let batches = handler.batches.lock().clone();
        assert!(
            batches.iter().any(|size| *size > 1),
            "deliveries already received came as one batch: {batches:?}"
        );
    }
}
