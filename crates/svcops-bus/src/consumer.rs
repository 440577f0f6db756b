//! Runs a handler over a subscription.
//!
//! Each delivery is decoded and handed to the handler; only after the handler returned (its
//! effects committed in its own store, with the source event id recorded as the idempotency
//! key in the same transaction) is the delivery acknowledged. Redelivery after a crash is
//! therefore harmless: the effect happens exactly once.
//!
//! Deliveries come in batches: the one waited for, and whatever else is already received
//! (up to [`MAX_BATCH`]). A handler that takes batches ([`Handler::handle_batch`]) gets them
//! whole (listen-in records a batch in one transaction); otherwise the deliveries of one key
//! (one case) are handled in their order and different keys side by side, so their appends
//! share commits (SQLite's group commit) or connections (PostgreSQL). The batch is
//! acknowledged once every delivery in it is settled.
//!
//! - store or broker unavailable: retried with backoff until it comes back (nothing is
//!   dead-lettered because a database is down);
//! - undecodable message, or a handler failure that persists over [`FAILURE_ATTEMPTS`]
//!   tries: sent to `<topic>.dlq` with its origin and the error, and the consumer moves on.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::envelope::{self, BusEvent};
use crate::{Bus, Delivery, Message, metrics, topics};

/// Tries for a handler failure before the message is dead-lettered.
pub const FAILURE_ATTEMPTS: u32 = 3;

/// Most deliveries handled as one batch.
pub const MAX_BATCH: usize = 256;

/// What a handler can report.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A dependency (database, broker) is unavailable: retry until it is back.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Processing this event failed: retried a few times, then dead-lettered.
    #[error("failed: {0}")]
    Failed(String),
}

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError>;

    /// Handles a batch whole, in its order: `None` if this handler takes events one by one
    /// (the default). On an error the consumer handles the batch's events one by one with
    /// [`Handler::handle`] (so each may be retried or dead-lettered on its own): whatever
    /// the batch did must be safe to do again.
    async fn handle_batch(&self, _events: &[BusEvent]) -> Option<Result<(), HandlerError>> {
        None
    }
}

/// A message that was dead-lettered, as its `<topic>.dlq` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Topic, partition and offset the message was consumed from.
    pub origin_topic: String,
    pub origin_partition: String,
    pub origin_offset: String,
    /// Consumer group that gave up on it, and why.
    pub group: String,
    pub error: String,
    /// What the message claimed to be, where it could still be read.
    pub case_id: Option<uuid::Uuid>,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
}

impl DeadLetter {
    fn from_message(message: &Message) -> Self {
        let header = |name: &str| message.header(name).map(str::to_owned);
        Self {
            origin_topic: header("dlq_topic").unwrap_or_default(),
            origin_partition: header("dlq_partition").unwrap_or_default(),
            origin_offset: header("dlq_offset").unwrap_or_default(),
            group: header("dlq_group").unwrap_or_default(),
            error: header("dlq_error").unwrap_or_default(),
            case_id: message
                .header("ce_caseid")
                .and_then(|id| uuid::Uuid::parse_str(id).ok()),
            event_id: header("ce_id"),
            event_type: header("ce_type"),
        }
    }

    /// Identifies the dead letter: the group that gave up and the origin it gave up on.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.group, self.origin_topic, self.origin_partition, self.origin_offset
        )
    }
}

/// Reacts to dead letters (e.g. flags their case). A failure other than `Unavailable` is
/// logged and the dead letter skipped: there is no dead-letter topic for dead letters.
#[async_trait]
pub trait DeadLetterHandler: Send + Sync + 'static {
    async fn handle(&self, dead_letter: &DeadLetter) -> Result<(), HandlerError>;
}

/// Consumes `topics` as `group` until `shutdown`. Returns an error only if the subscription
/// cannot be created or breaks for good.
pub async fn run(
    bus: Arc<dyn Bus>,
    group: &str,
    topics: &[&str],
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) -> Result<(), crate::Error> {
    consume(bus, group, topics, &EventProcess(handler), shutdown).await
}

/// Consumes dead-letter topics (`topics` are the originals; their `.dlq` topics are read).
pub async fn run_dead_letters(
    bus: Arc<dyn Bus>,
    group: &str,
    topics: &[&str],
    handler: Arc<dyn DeadLetterHandler>,
    shutdown: CancellationToken,
) -> Result<(), crate::Error> {
    let dead_letter_topics: Vec<String> = topics
        .iter()
        .map(|topic| topics::dead_letter(topic))
        .collect();
    let dead_letter_topics: Vec<&str> = dead_letter_topics.iter().map(String::as_str).collect();
    consume(
        bus,
        group,
        &dead_letter_topics,
        &DeadLetterProcess(handler),
        shutdown,
    )
    .await
}

/// What to do with one delivery. Returns once the delivery is settled (handled, or safely on
/// its dead-letter topic): `Some(())`, acknowledge it. `None` when shut down midway: nothing
/// is acknowledged and the delivery comes again after a restart. There is no third outcome:
/// a consumer never moves past a delivery it has not settled, because acknowledging a later
/// one would commit the offset past it.
#[async_trait]
trait Process: Send + Sync {
    async fn process(
        &self,
        bus: &dyn Bus,
        group: &str,
        delivery: &Delivery,
        shutdown: &CancellationToken,
    ) -> Option<()>;

    /// Settles a batch: by default the deliveries of one key in order, keys side by side.
    async fn process_batch(
        &self,
        bus: &dyn Bus,
        group: &str,
        batch: &[Delivery],
        shutdown: &CancellationToken,
    ) -> Option<()> {
        by_key(self, bus, group, batch, shutdown).await
    }
}

/// Settles `batch` one delivery at a time, the deliveries of one key (one case) in their
/// order and different keys concurrently. `None` if shut down midway.
async fn by_key<P: Process + ?Sized>(
    process: &P,
    bus: &dyn Bus,
    group: &str,
    batch: &[Delivery],
    shutdown: &CancellationToken,
) -> Option<()> {
    let mut keys: Vec<(&str, Vec<&Delivery>)> = Vec::new();
    for delivery in batch {
        let key = delivery.message.key.as_str();
        match keys.iter_mut().find(|(seen, _)| *seen == key) {
            Some((_, deliveries)) => deliveries.push(delivery),
            None => keys.push((key, vec![delivery])),
        }
    }
    let runs = keys.into_iter().map(|(_, deliveries)| async move {
        for delivery in deliveries {
            process.process(bus, group, delivery, shutdown).await?;
        }
        Some(())
    });
    futures::future::join_all(runs)
        .await
        .into_iter()
        .collect::<Option<Vec<()>>>()
        .map(|_| ())
}

struct EventProcess(Arc<dyn Handler>);

#[async_trait]
impl Process for EventProcess {
    async fn process(
        &self,
        bus: &dyn Bus,
        group: &str,
        delivery: &Delivery,
        shutdown: &CancellationToken,
    ) -> Option<()> {
        process(bus, group, self.0.as_ref(), delivery, shutdown).await
    }

    async fn process_batch(
        &self,
        bus: &dyn Bus,
        group: &str,
        batch: &[Delivery],
        shutdown: &CancellationToken,
    ) -> Option<()> {
        if batch.len() > 1 {
            // Whole, if every delivery decodes and the handler takes batches.
            let events: Option<Vec<BusEvent>> = batch
                .iter()
                .map(|delivery| envelope::from_message(&delivery.message).ok())
                .collect();
            if let Some(events) = events {
                let span = tracing::info_span!(
                    "consume batch",
                    otel.kind = "consumer",
                    messaging.consumer_group = group,
                    messaging.batch.message_count = events.len(),
                );
                let handled =
                    tracing::Instrument::instrument(self.0.handle_batch(&events), span).await;
                match handled {
                    Some(Ok(())) => {
                        for (delivery, event) in batch.iter().zip(&events) {
                            record_processed(group, delivery, event);
                        }
                        return Some(());
                    }
                    Some(Err(error)) => {
                        tracing::warn!(group, %error, size = events.len(), "batch failed; handling its events one by one");
                    }
                    None => {}
                }
            }
        }
        by_key(self, bus, group, batch, shutdown).await
    }
}

struct DeadLetterProcess(Arc<dyn DeadLetterHandler>);

#[async_trait]
impl Process for DeadLetterProcess {
    async fn process(
        &self,
        _bus: &dyn Bus,
        group: &str,
        delivery: &Delivery,
        shutdown: &CancellationToken,
    ) -> Option<()> {
        let dead_letter = DeadLetter::from_message(&delivery.message);
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.0.handle(&dead_letter).await {
                Ok(()) => return Some(()),
                Err(HandlerError::Failed(reason)) => {
                    tracing::error!(group, key = %dead_letter.key(), %reason, "dead letter not handled; skipped");
                    return Some(());
                }
                Err(HandlerError::Unavailable(reason)) => {
                    tracing::warn!(group, %reason, ?backoff, "dead-letter handler unavailable; retrying");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

async fn consume(
    bus: Arc<dyn Bus>,
    group: &str,
    topics: &[&str],
    process: &dyn Process,
    shutdown: CancellationToken,
) -> Result<(), crate::Error> {
    let mut subscription = bus.subscribe(group, topics).await?;
    loop {
        let delivery = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            delivery = subscription.next() => delivery,
        };
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(crate::Error::Closed) => return Err(crate::Error::Closed),
            Err(error) => {
                tracing::warn!(group, %error, "consumer could not receive; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        let mut batch = vec![delivery];
        let mut drained = false;
        while batch.len() < MAX_BATCH {
            match subscription.try_next() {
                Some(Ok(delivery)) => batch.push(delivery),
                Some(Err(error)) => {
                    // The next wait reports it again if it lasts.
                    tracing::debug!(group, %error, "could not add to the batch");
                    break;
                }
                None => {
                    drained = true;
                    break;
                }
            }
        }
        // Behind only while more is waiting than one batch takes: then by the age of the
        // batch's oldest event. A batch that took everything received keeps up, however old
        // its events (a restart's short backlog).
        let source = format!("consumer:{group}");
        let oldest = batch
            .iter()
            .filter_map(|delivery| envelope::recorded_at(&delivery.message))
            .min();
        match oldest {
            Some(oldest) if !drained => {
                crate::lag::report(&source, metrics::age_seconds(oldest));
            }
            _ => crate::lag::report(&source, 0.0),
        }
        ::metrics::histogram!(metrics::CONSUMER_BATCH, "group" => group.to_owned())
            .record(batch.len() as f64);
        if process
            .process_batch(bus.as_ref(), group, &batch, &shutdown)
            .await
            .is_none()
        {
            return Ok(());
        }
        while let Err(error) = subscription.ack_all(&batch).await {
            tracing::warn!(group, %error, "could not acknowledge; retrying");
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

/// Handles one delivery to completion. `None` when shut down midway (nothing acknowledged).
async fn process(
    bus: &dyn Bus,
    group: &str,
    handler: &dyn Handler,
    delivery: &Delivery,
    shutdown: &CancellationToken,
) -> Option<()> {
    let event = match envelope::from_message(&delivery.message) {
        Ok(event) => event,
        Err(error) => {
            return dead_letter(bus, group, delivery, &error.to_string(), shutdown).await;
        }
    };
    let handled = || {
        ::metrics::gauge!(metrics::CONSUMER_LAG, &labels(group, delivery))
            .set(metrics::age_seconds(event.recorded_at));
    };
    // The handler runs in a span continuing the trace of the event's cause, so what it
    // appends carries that trace on.
    let span = tracing::info_span!(
        "consume",
        otel.kind = "consumer",
        messaging.destination = %delivery.topic,
        messaging.consumer_group = group,
        event_type = %event.event_type,
        event_id = %event.event_id,
    );
    if let Some(traceparent) = &event.metadata.traceparent {
        envelope::set_remote_parent(&span, traceparent);
    }
    let mut failures = 0;
    let mut backoff = Duration::from_millis(50);
    loop {
        let error = match tracing::Instrument::instrument(handler.handle(&event), span.clone())
            .await
        {
            Ok(()) => {
                record_processed(group, delivery, &event);
                return Some(());
            }
            Err(HandlerError::Failed(reason)) => {
                failures += 1;
                if failures >= FAILURE_ATTEMPTS {
                    tracing::error!(group, event_id = %event.event_id, %reason, "dead-lettering event");
                    let settled = dead_letter(bus, group, delivery, &reason, shutdown).await;
                    if settled.is_some() {
                        handled();
                    }
                    return settled;
                }
                reason
            }
            Err(HandlerError::Unavailable(reason)) => reason,
        };
        ::metrics::counter!(metrics::CONSUMER_RETRIES, "group" => group.to_owned()).increment(1);
        tracing::warn!(group, event_id = %event.event_id, %error, ?backoff, "handler failed; retrying");
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Counts `event` handled by `group`, and its age as the group's lag.
fn record_processed(group: &str, delivery: &Delivery, event: &BusEvent) {
    let labels = labels(group, delivery);
    ::metrics::counter!(metrics::CONSUMER_PROCESSED, &labels).increment(1);
    ::metrics::gauge!(metrics::CONSUMER_LAG, &labels).set(metrics::age_seconds(event.recorded_at));
}

/// Metric labels of a delivery handled by `group`.
fn labels(group: &str, delivery: &Delivery) -> [(&'static str, String); 2] {
    [
        ("group", group.to_owned()),
        ("topic", delivery.topic.clone()),
    ]
}

/// Publishes the delivery to its dead-letter topic, retrying until the broker takes it: a
/// poison message is settled only once it is safely dead-lettered. `None` when shut down
/// first (not acknowledged: it is consumed, and dead-lettered, again after a restart).
async fn dead_letter(
    bus: &dyn Bus,
    group: &str,
    delivery: &Delivery,
    error: &str,
    shutdown: &CancellationToken,
) -> Option<()> {
    let mut headers = delivery.message.headers.clone();
    headers.push(("dlq_topic".into(), delivery.topic.clone().into_bytes()));
    headers.push((
        "dlq_partition".into(),
        delivery.partition.to_string().into_bytes(),
    ));
    headers.push((
        "dlq_offset".into(),
        delivery.offset.to_string().into_bytes(),
    ));
    headers.push(("dlq_group".into(), group.as_bytes().to_vec()));
    headers.push(("dlq_error".into(), error.as_bytes().to_vec()));
    let mut message = Message {
        key: delivery.message.key.clone(),
        headers,
        payload: delivery.message.payload.clone(),
    };
    let topic = topics::dead_letter(&delivery.topic);
    let mut backoff = Duration::from_millis(50);
    while let Err(error) = bus.publish(&topic, vec![message.clone()]).await {
        // Our headers can push a message near the size limit over it: then the dead letter
        // goes without its payload (origin, offset and headers still name it) rather than
        // wedging the consumer on a publish that can never succeed.
        if error.is_message_too_large() && !message.payload.is_empty() {
            tracing::error!(group, %topic, bytes = message.payload.len(), "dead letter too large; sending it without its payload");
            message.headers.push((
                "dlq_payload_dropped".into(),
                format!("{} bytes: {error}", message.payload.len()).into_bytes(),
            ));
            message.payload.clear();
            continue;
        }
        ::metrics::counter!(metrics::CONSUMER_RETRIES, "group" => group.to_owned()).increment(1);
        tracing::warn!(group, %topic, %error, ?backoff, "could not dead-letter a message; retrying");
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    let labels = labels(group, delivery);
    ::metrics::counter!(metrics::CONSUMER_DEAD_LETTERED, &labels).increment(1);
    Some(())
}

/// [`run`] as a background task that logs how it ended.
pub fn spawn(
    bus: Arc<dyn Bus>,
    group: impl Into<String>,
    topics: &[&str],
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let topics = topics.iter().map(|topic| (*topic).to_owned()).collect();
    spawn_consume(
        bus,
        group.into(),
        topics,
        Arc::new(EventProcess(handler)),
        shutdown,
    )
}

/// [`run_dead_letters`] as a background task that logs how it ended.
pub fn spawn_dead_letters(
    bus: Arc<dyn Bus>,
    group: impl Into<String>,
    topics: &[&str],
    handler: Arc<dyn DeadLetterHandler>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let topics = topics
        .iter()
        .map(|topic| topics::dead_letter(topic))
        .collect();
    spawn_consume(
        bus,
        group.into(),
        topics,
        Arc::new(DeadLetterProcess(handler)),
        shutdown,
    )
}

fn spawn_consume(
    bus: Arc<dyn Bus>,
    group: String,
    topics: Vec<String>,
    process: Arc<dyn Process>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(error) = consume(bus, &group, &topics, process.as_ref(), shutdown).await {
            tracing::error!(%error, group, "consumer stopped");
        }
    })
}
