//! Kafka publish rate, side by side: librdkafka's batching (the default) against one message
//! per record batch (`batch_messages = 1`, for brokers that cannot resume a consumer group
//! inside a batch). Publishes as the relay does: 500 messages a call, keys spread over 50
//! cases, 512-byte payloads, each round's two runs in alternating order.
//!
//! `cargo run --release -p svcops-bus --example publish_rate -- --help` (`make bench-kafka`);
//! the broker comes from `SVCOPS_TEST_KAFKA` (default `127.0.0.1:9092`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use svcops_bus::{Bus, KafkaBus, KafkaConfig, Message};
use uuid::Uuid;

const MESSAGES: usize = 20_000;
const PER_PUBLISH: usize = 500;
const ROUNDS: usize = 3;

async fn publish_rate(bus: &KafkaBus) -> f64 {
    let topic = format!("bench.{}", Uuid::new_v4().simple());
    // Creates the topic outside the measurement.
    bus.publish(&topic, vec![message(0)]).await.unwrap();
    let started = Instant::now();
    for first in (0..MESSAGES).step_by(PER_PUBLISH) {
        let messages = (first..first + PER_PUBLISH).map(message).collect();
        bus.publish(&topic, messages).await.unwrap();
    }
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}

fn message(n: usize) -> Message {
    Message {
        key: format!("case-{}", n % 50),
        headers: vec![("seq".into(), n.to_string().into_bytes())],
        payload: vec![(n % 251) as u8; 512],
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let servers = std::env::var("SVCOPS_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let batched = KafkaBus::connect(KafkaConfig::new(&servers)).await.unwrap();
    let one_per_batch = KafkaBus::connect(KafkaConfig {
        batch_messages: Some(1),
        ..KafkaConfig::new(&servers)
    })
    .await
    .unwrap();
    println!(
        "kafka publish rate at {servers}: {MESSAGES} × 512-byte messages, {PER_PUBLISH} per publish, {ROUNDS} rounds"
    );
    let (mut batched_rates, mut single_rates) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (first, second) = if round % 2 == 0 {
            (&batched, &one_per_batch)
        } else {
            (&one_per_batch, &batched)
        };
        let first_rate = publish_rate(first).await;
        let second_rate = publish_rate(second).await;
        let (batched_rate, single_rate) = if round % 2 == 0 {
            (first_rate, second_rate)
        } else {
            (second_rate, first_rate)
        };
        println!(
            "round {}/{ROUNDS}: batched {batched_rate:.0} msg/s, one per batch {single_rate:.0} msg/s ({:.1}x)",
            round + 1,
            batched_rate / single_rate
        );
        batched_rates.push(batched_rate);
        single_rates.push(single_rate);
    }
    let (batched, single) = (median(batched_rates), median(single_rates));
    println!(
        "median: batched {batched:.0} msg/s, one per batch {single:.0} msg/s: batched/one-per-batch {:.1}x",
        batched / single
    );
}
