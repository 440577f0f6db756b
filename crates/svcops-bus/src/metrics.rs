//! What the relay and the consumer runner record, through the `metrics` facade.
//!
//! The bus only emits; whoever runs the process decides whether anything is recorded and
//! how it is exported (`svcops_kit::metrics` installs a Prometheus recorder). Without a
//! recorder every call below is a no-op.

use time::OffsetDateTime;

/// Events the relay published, by topic (counter).
pub const RELAY_PUBLISHED: &str = "svcops_relay_published_total";
/// Size of the last batch the relay read from the outbox, by topic (one relay per store, so
/// per office); 0 when it found the outbox empty (gauge).
pub const RELAY_OUTBOX_BATCH: &str = "svcops_relay_outbox_batch";
/// Age of the oldest event in the batch being published, by topic; 0 once the outbox is
/// empty (gauge, seconds).
pub const RELAY_LAG: &str = "svcops_relay_lag_seconds";
/// Events a consumer handled successfully, by group and topic (counter).
pub const CONSUMER_PROCESSED: &str = "svcops_consumer_processed_total";
/// Messages a consumer sent to `<topic>.dlq`, by group and (origin) topic (counter).
pub const CONSUMER_DEAD_LETTERED: &str = "svcops_consumer_dead_lettered_total";
/// Handler attempts that failed and were retried, by group (counter).
pub const CONSUMER_RETRIES: &str = "svcops_consumer_retries_total";
/// Age of the event a consumer handled last, by group and topic (gauge, seconds).
pub const CONSUMER_LAG: &str = "svcops_consumer_lag_seconds";
/// Deliveries a consumer took as one batch, by group (histogram).
pub const CONSUMER_BATCH: &str = "svcops_consumer_batch_size";

/// Registers help texts and units with the installed recorder. Call once after installing
/// it (descriptions given before a recorder exists are lost).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(RELAY_PUBLISHED, "Events the relay published to the bus.");
    describe_gauge!(
        RELAY_OUTBOX_BATCH,
        "Size of the last batch the relay read from the outbox (0: outbox empty)."
    );
    describe_gauge!(
        RELAY_LAG,
        Unit::Seconds,
        "Age of the oldest event in the batch the relay is publishing (0: outbox empty)."
    );
    describe_counter!(
        CONSUMER_PROCESSED,
        "Events a consumer group handled successfully."
    );
    describe_counter!(
        CONSUMER_DEAD_LETTERED,
        "Messages a consumer group sent to the dead-letter topic."
    );
    describe_counter!(
        CONSUMER_RETRIES,
        "Failed handler attempts a consumer group retried."
    );
    describe_gauge!(
        CONSUMER_LAG,
        Unit::Seconds,
        "Age (now - recorded time) of the event a consumer group handled last."
    );
    describe_histogram!(
        CONSUMER_BATCH,
        "Deliveries a consumer group took as one batch (those already received)."
    );
}

/// Seconds from `recorded_at` to now, never negative (clocks of two hosts may disagree).
pub(crate) fn age_seconds(recorded_at: OffsetDateTime) -> f64 {
    (OffsetDateTime::now_utc() - recorded_at)
        .as_seconds_f64()
        .max(0.0)
}
