//! svcops-bus: how events leave one service and reach the others.
//!
//! - [`Bus`] is the port: publish batches to a topic, subscribe with a consumer group.
//!   Adapters: [`KafkaBus`] (cluster mode, any Kafka-protocol broker) and [`EmbeddedBus`]
//!   (embedded mode, a durable log in one SQLite file).
//! - [`envelope`] maps a stored event to a bus message and back (CloudEvents binary mode).
//! - [`relay`] drains a store's outbox to the bus: at-least-once, never skipping an event.
//! - [`consumer`] runs a handler over a subscription: bounded retries, dead letters,
//!   offsets acknowledged only after the handler (and its database transaction) succeeded.
//! - [`metrics`] names what the relay and the consumer record through the `metrics` facade
//!   (relay and consumer lag, throughput, dead letters, retries).

pub mod consumer;
mod embedded;
pub mod envelope;
mod kafka;
pub mod lag;
pub mod metrics;
mod namespace;
pub mod relay;

pub use embedded::EmbeddedBus;
pub use kafka::{KafkaBus, KafkaConfig};
pub use namespace::NamespacedBus;

use async_trait::async_trait;

/// One message on a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Partitioning key: the case id when the event belongs to a case, else the stream id.
    pub key: String,
    /// Header name/value pairs, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub payload: Vec<u8>,
}

impl Message {
    /// The first header with this name, as UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }
}

/// A message received from a subscription, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub message: Message,
}

/// Errors of the bus adapters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("embedded bus storage: {0}")]
    Embedded(#[from] sqlx::Error),
    #[error("embedded bus migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("subscription closed")]
    Closed,
    #[error("bad bus configuration: {0}")]
    Config(String),
}

impl Error {
    /// The broker refuses this message as it is (too large), however often it is retried.
    pub fn is_message_too_large(&self) -> bool {
        use rdkafka::types::RDKafkaErrorCode as Code;
        matches!(self, Error::Kafka(error) if matches!(
            error.rdkafka_error_code(),
            Some(Code::MessageSizeTooLarge | Code::InvalidMessageSize | Code::MessageBatchTooLarge)
        ))
    }
}

/// The port.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes messages to one topic and returns once every one is durably acknowledged.
    /// Messages with the same key keep their order.
    async fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), Error>;

    /// Joins consumer `group` on `topics`. A new group starts at the beginning of each topic;
    /// an existing one resumes after its last acknowledged message.
    async fn subscribe(&self, group: &str, topics: &[&str])
    -> Result<Box<dyn Subscription>, Error>;

    /// Cheap reachability check for health reporting.
    async fn ping(&self) -> Result<(), Error>;
}

/// A consumer group member's stream of deliveries.
#[async_trait]
pub trait Subscription: Send {
    /// The next delivery, waiting for one to arrive.
    async fn next(&mut self) -> Result<Delivery, Error>;

    /// A delivery already received, if one is there, without waiting: what a consumer adds
    /// to a batch after the delivery it waited for.
    fn try_next(&mut self) -> Option<Result<Delivery, Error>>;

    /// Acknowledges a delivery and everything before it on the same partition: after a
    /// restart the group resumes after it. Call only once its effects are committed.
    async fn ack(&mut self, delivery: &Delivery) -> Result<(), Error>;

    /// Acknowledges every delivery of a batch (received in this order, all settled).
    async fn ack_all(&mut self, deliveries: &[Delivery]) -> Result<(), Error> {
        for delivery in deliveries {
            self.ack(delivery).await?;
        }
        Ok(())
    }
}

/// Topic names (DESIGN §4).
pub mod topics {
    pub const FRONT_OFFICE: &str = "svcops.frontoffice.events.v1";
    pub const MIDDLE_OFFICE: &str = "svcops.middleoffice.events.v1";
    pub const BACK_OFFICE: &str = "svcops.backoffice.events.v1";
    pub const LISTEN_IN: &str = "svcops.listenin.events.v1";
    pub const ALL: [&str; 4] = [FRONT_OFFICE, MIDDLE_OFFICE, BACK_OFFICE, LISTEN_IN];

    /// The dead-letter topic of a topic.
    pub fn dead_letter(topic: &str) -> String {
        format!("{topic}.dlq")
    }
}
