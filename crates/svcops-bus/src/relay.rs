//! Drains a store's outbox to the bus.
//!
//! The outbox holds every committed, unpublished event, whatever order transactions
//! committed in, so the relay cannot skip one (DESIGN §3.4). It publishes a batch, waits for
//! the broker's acknowledgement, then removes the batch from the outbox: a crash in between
//! publishes the batch again (at-least-once; consumers are idempotent). One relay per store.

use std::sync::Arc;
use std::time::Duration;

use svcops_eventstore::EventStore;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Bus, envelope, metrics};

/// Largest batch read from the outbox and published at once.
const BATCH: usize = 500;
/// How often the outbox is polled when nobody wakes the relay (appends by another process).
const POLL: Duration = Duration::from_millis(250);

pub struct Relay {
    store: Arc<dyn EventStore>,
    bus: Arc<dyn Bus>,
    topic: String,
    source: String,
    wake: Arc<Notify>,
}

impl Relay {
    /// `source` names the publishing service in the CloudEvents `ce_source` header.
    pub fn new(
        store: Arc<dyn EventStore>,
        bus: Arc<dyn Bus>,
        topic: impl Into<String>,
        source: impl Into<String>,
    ) -> Self {
        Self {
            store,
            bus,
            topic: topic.into(),
            source: source.into(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Notify this after an append to publish without waiting for the next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Publishes one batch; returns how many events it published.
    pub async fn publish_once(&self) -> Result<usize, RelayError> {
        let batch = self.store.unpublished(BATCH).await?;
        ::metrics::gauge!(metrics::RELAY_OUTBOX_BATCH, "topic" => self.topic.clone())
            .set(batch.len() as f64);
        let lag = ::metrics::gauge!(metrics::RELAY_LAG, "topic" => self.topic.clone());
        let Some(oldest) = batch.iter().map(|event| event.recorded_at).min() else {
            lag.set(0.0);
            return Ok(0);
        };
        // Set before publishing, so the lag keeps growing while the broker is down.
        lag.set(metrics::age_seconds(oldest));
        let messages = batch
            .iter()
            .map(|event| envelope::to_message(&self.source, event))
            .collect();
        self.bus.publish(&self.topic, messages).await?;
        ::metrics::counter!(metrics::RELAY_PUBLISHED, "topic" => self.topic.clone())
            .increment(batch.len() as u64);
        let positions: Vec<_> = batch.iter().map(|event| event.position).collect();
        self.store.mark_published(&positions).await?;
        tracing::debug!(topic = %self.topic, count = batch.len(), "relayed events");
        Ok(batch.len())
    }

    /// Runs until `shutdown`, then drains what is left (best effort) and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.publish_once().await {
                Ok(count) if count > 0 => {
                    backoff = Duration::from_millis(50);
                    continue;
                }
                Ok(_) => {
                    backoff = Duration::from_millis(50);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(POLL) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(topic = %self.topic, %error, "relay failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Flush on the way out so a graceful stop leaves nothing in the outbox it could send.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, self.publish_once()).await {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(topic = %self.topic, %error, "relay could not flush on shutdown");
                    break;
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] svcops_eventstore::Error),
    #[error(transparent)]
    Bus(#[from] crate::Error),
}
