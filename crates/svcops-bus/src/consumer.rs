//! Runs a handler over a subscription.
//!
//! Each delivery is decoded and handed to the handler; only after the handler returned (its
//! effects committed in its own store, with the source event id recorded as the idempotency
//! key in the same transaction) is the delivery acknowledged. Redelivery after a crash is
//! therefore harmless: the effect happens exactly once.
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
        let Some(outcome) =
            process(bus.as_ref(), group, handler.as_ref(), &delivery, &shutdown).await
        else {
            return Ok(());
        };
        if let Err(error) = outcome {
            // Not acknowledged: the message comes again after a restart.
            tracing::warn!(group, %error, "could not dead-letter a message");
            continue;
        }
        while let Err(error) = subscription.ack(&delivery).await {
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
) -> Option<Result<(), crate::Error>> {
    let event = match envelope::from_message(&delivery.message) {
        Ok(event) => event,
        Err(error) => return Some(dead_letter(bus, group, delivery, &error.to_string()).await),
    };
    let handled = || {
        let labels = [
            ("group", group.to_owned()),
            ("topic", delivery.topic.clone()),
        ];
        ::metrics::gauge!(metrics::CONSUMER_LAG, &labels)
            .set(metrics::age_seconds(event.recorded_at));
    };
    let mut failures = 0;
    let mut backoff = Duration::from_millis(50);
    loop {
        let error = match handler.handle(&event).await {
            Ok(()) => {
                let labels = [
                    ("group", group.to_owned()),
                    ("topic", delivery.topic.clone()),
                ];
                ::metrics::counter!(metrics::CONSUMER_PROCESSED, &labels).increment(1);
                handled();
                return Some(Ok(()));
            }
            Err(HandlerError::Failed(reason)) => {
                failures += 1;
                if failures >= FAILURE_ATTEMPTS {
                    tracing::error!(group, event_id = %event.event_id, %reason, "dead-lettering event");
                    let outcome = dead_letter(bus, group, delivery, &reason).await;
                    if outcome.is_ok() {
                        handled();
                    }
                    return Some(outcome);
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

async fn dead_letter(
    bus: &dyn Bus,
    group: &str,
    delivery: &Delivery,
    error: &str,
) -> Result<(), crate::Error> {
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
    let message = Message {
        key: delivery.message.key.clone(),
        headers,
        payload: delivery.message.payload.clone(),
    };
    bus.publish(&topics::dead_letter(&delivery.topic), vec![message])
        .await?;
    let labels = [
        ("group", group.to_owned()),
        ("topic", delivery.topic.clone()),
    ];
    ::metrics::counter!(metrics::CONSUMER_DEAD_LETTERED, &labels).increment(1);
    Ok(())
}
