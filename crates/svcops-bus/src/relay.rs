//! Drains a store's outbox to the bus.
//!
//! The outbox holds every committed, unpublished event, whatever order transactions
//! committed in, so the relay cannot skip one (DESIGN §3.4). It publishes a batch, waits for
//! the broker's acknowledgement, then removes the batch from the outbox: a crash in between
//! publishes the batch again (at-least-once; consumers are idempotent). One relay per store.

use std::sync::Arc;
use std::time::Duration;

use svcops_eventstore::EventStore;
use svcops_eventstore::lease::{self, LeaseSettings};
use svcops_eventstore::read_model::ReadModels;
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
        let source = format!("relay:{}", self.topic);
        let Some(oldest) = batch.iter().map(|event| event.recorded_at).min() else {
            lag.set(0.0);
            crate::lag::report(&source, 0.0);
            return Ok(0);
        };
        // Set before publishing, so the lag keeps growing while the broker is down.
        let age = metrics::age_seconds(oldest);
        lag.set(age);
        // Behind only with more than a batch waiting: a short outbox after a restart, however
        // old its events, is worked off at once.
        crate::lag::report(&source, if batch.len() >= BATCH { age } else { 0.0 });
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

    /// Relays while this replica holds the outbox's lease (`relay:<topic>` in the store's
    /// database), so several replicas of an office relay one at a time: the holder until it
    /// stops or dies, then another within the lease's expiry. A replica that loses the lease
    /// stops before its next batch, without a last flush; one that stops gracefully flushes
    /// and releases it. Per-case order holds across a takeover: the next holder starts from
    /// the outbox, where every event not yet acknowledged still is.
    pub async fn run_leased(
        self,
        read_models: Arc<dyn ReadModels>,
        replica: String,
        shutdown: CancellationToken,
    ) {
        let name = format!("relay:{}", self.topic);
        let relay = &self;
        lease::run_while_held(
            read_models,
            name,
            replica,
            LeaseSettings::default(),
            shutdown,
            |guard| async move { relay.serve(guard.stop.clone(), Some(guard.lost)).await },
        )
        .await;
    }

    /// Runs until `shutdown`, then drains what is left (best effort) and returns. Alone on
    /// its outbox: with replicas, use [`Relay::run_leased`].
    pub async fn run(self, shutdown: CancellationToken) {
        self.serve(shutdown, None).await;
    }

    async fn serve(&self, shutdown: CancellationToken, lost: Option<CancellationToken>) {
        let lost = lost.unwrap_or_default();
        let mut backoff = Duration::from_millis(50);
        loop {
            if lost.is_cancelled() || shutdown.is_cancelled() {
                break;
            }
            // A batch in flight when the lease is lost stops there: what it published but did
            // not mark goes out again from the next holder (consumers dedupe).
            let published = tokio::select! {
                published = self.publish_once() => published,
                () = lost.cancelled() => break,
            };
            match published {
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
        // Flush on the way out so a graceful stop leaves nothing in the outbox it could send;
        // not once the lease is lost: another replica relays now.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline && !lost.is_cancelled() {
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
