//! The bus contract, run against every adapter.
//!
//! Each case is an async fn over a [`BusPort`]: the bus and a topic prefix unique to the
//! test; `svcops_testsuite::contract_suite!` turns the list of cases into `#[tokio::test]`s
//! per adapter. The Kafka suite needs a broker at `SVCOPS_TEST_KAFKA` (default
//! `127.0.0.1:9092`, e.g. Tansu, DESIGN §4) and fails when it is unreachable.

use std::sync::Arc;
use std::time::Duration;

use svcops_bus::{Bus, EmbeddedBus, KafkaBus, KafkaConfig};
use svcops_testsuite::{ContractFixture, contract_suite};
use tempfile::TempDir;
use uuid::Uuid;

/// What a bus case gets: the bus, and a prefix for its topic and group names that no other
/// test uses.
#[derive(Clone)]
pub struct BusPort {
    pub bus: Arc<dyn Bus>,
    pub prefix: String,
}

impl BusPort {
    /// `bus` with a prefix of its own: `test.<uuid>`.
    fn new(bus: impl Bus + 'static) -> Self {
        Self {
            bus: Arc::new(bus),
            prefix: format!("test.{}", Uuid::new_v4().simple()),
        }
    }
}

/// An embedded bus in a temporary directory, removed with it.
struct EmbeddedFixture {
    port: BusPort,
    _dir: TempDir,
}

impl ContractFixture for EmbeddedFixture {
    type Port = BusPort;

    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = EmbeddedBus::open(&dir.path().join("bus.sqlite"))
            .await
            .expect("open embedded bus");
        Self {
            port: BusPort::new(bus),
            _dir: dir,
        }
    }

    fn port(&self) -> BusPort {
        self.port.clone()
    }

    async fn teardown(self) {}
}

fn kafka_servers() -> String {
    std::env::var("SVCOPS_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A connection to the shared broker; the prefix keeps the test's topics and groups apart.
/// `ONE_MESSAGE_BATCHES`: every message its own record batch (`batch_messages = 1`), the
/// setting for brokers that cannot resume a group inside a batch; otherwise the default
/// (librdkafka's batching: a publish's messages to one partition share a batch, so
/// `ack_then_resubscribe_resumes_after_the_acked_message` resumes inside one).
struct KafkaFixture<const ONE_MESSAGE_BATCHES: bool>(BusPort);

impl<const ONE_MESSAGE_BATCHES: bool> ContractFixture for KafkaFixture<ONE_MESSAGE_BATCHES> {
    type Port = BusPort;

    async fn new() -> Self {
        let servers = kafka_servers();
        let mut config = KafkaConfig::new(&servers);
        if ONE_MESSAGE_BATCHES {
            config.batch_messages = Some(1);
        }
        let bus = tokio::time::timeout(Duration::from_secs(30), KafkaBus::connect(config))
            .await
            .unwrap_or_else(|_| panic!("connecting to the Kafka broker at {servers} timed out"))
            .unwrap_or_else(|error| {
                panic!("Kafka broker at {servers} unreachable ({error}); start one (DESIGN §4) or set SVCOPS_TEST_KAFKA")
            });
        Self(BusPort::new(bus))
    }

    fn port(&self) -> BusPort {
        self.0.clone()
    }

    async fn teardown(self) {}
}

contract_suite! {
    adapters: {
        embedded_bus => EmbeddedFixture,
        kafka_bus => KafkaFixture<false>,
        kafka_one_message_batches_bus => KafkaFixture<true>,
    },
    cases: [
        publish_then_subscribe_delivers_everything_intact,
        per_key_order_holds_across_a_large_batch,
        ack_then_resubscribe_resumes_after_the_acked_message,
        resume_is_per_topic,
        a_new_group_starts_from_the_beginning,
        two_groups_each_receive_everything,
        empty_publish_is_a_no_op,
        ping_works,
    ],
}

mod cases {
    use std::collections::{BTreeMap, HashMap};
    use std::time::Duration;

    use svcops_bus::{Bus, Delivery, Message, Subscription};

    use super::BusPort;

    /// How long to wait for one expected delivery.
    const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long to watch for deliveries that should not come.
    const QUIET: Duration = Duration::from_secs(2);

    fn message(key: &str, seq: usize) -> Message {
        Message {
            key: key.to_owned(),
            headers: vec![
                ("seq".into(), seq.to_string().into_bytes()),
                ("binary".into(), vec![0, 255, (seq % 256) as u8]),
                ("empty".into(), Vec::new()),
            ],
            payload: format!("{key}/{seq}").into_bytes(),
        }
    }

    fn seq(delivery: &Delivery) -> usize {
        delivery
            .message
            .header("seq")
            .and_then(|seq| seq.parse().ok())
            .expect("test messages carry a seq header")
    }

    async fn receive(subscription: &mut dyn Subscription, count: usize) -> Vec<Delivery> {
        let mut deliveries = Vec::with_capacity(count);
        while deliveries.len() < count {
            let delivery = tokio::time::timeout(RECEIVE_TIMEOUT, subscription.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out after {} of {count} deliveries", deliveries.len())
                })
                .expect("subscription delivers");
            deliveries.push(delivery);
        }
        deliveries
    }

    async fn assert_nothing_more(subscription: &mut dyn Subscription) {
        if let Ok(delivery) = tokio::time::timeout(QUIET, subscription.next()).await {
            panic!("unexpected delivery: {delivery:?}");
        }
    }

    async fn subscribe(bus: &dyn Bus, group: &str, topics: &[&str]) -> Box<dyn Subscription> {
        bus.subscribe(group, topics).await.expect("subscribe")
    }

    pub async fn publish_then_subscribe_delivers_everything_intact(
        BusPort { bus, prefix }: BusPort,
    ) {
        let topic = format!("{prefix}.events");
        let sent: Vec<Message> = (0..10).map(|seq| message("case-1", seq)).collect();
        bus.publish(&topic, sent[..4].to_vec())
            .await
            .expect("publish");
        bus.publish(&topic, sent[4..].to_vec())
            .await
            .expect("publish");

        let mut subscription = subscribe(bus.as_ref(), &format!("{prefix}.g"), &[&topic]).await;
        let received = receive(subscription.as_mut(), sent.len()).await;
        for (delivery, message) in received.iter().zip(&sent) {
            assert_eq!(delivery.topic, topic);
            assert_eq!(
                &delivery.message, message,
                "key, headers and payload intact, in order"
            );
        }
        assert!(
            received
                .windows(2)
                .all(|pair| pair[0].offset < pair[1].offset),
            "offsets increase"
        );
        assert_nothing_more(subscription.as_mut()).await;
    }

    pub async fn per_key_order_holds_across_a_large_batch(BusPort { bus, prefix }: BusPort) {
        let topic = format!("{prefix}.events");
        let keys: Vec<String> = (0..7).map(|key| format!("case-{key}")).collect();
        let sent: Vec<Message> = (0..500)
            .map(|seq| message(&keys[seq % keys.len()], seq))
            .collect();
        bus.publish(&topic, sent.clone()).await.expect("publish");

        let mut subscription = subscribe(bus.as_ref(), &format!("{prefix}.g"), &[&topic]).await;
        let received = receive(subscription.as_mut(), sent.len()).await;
        let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut partition_of: HashMap<&str, i32> = HashMap::new();
        for delivery in &received {
            let key = delivery.message.key.as_str();
            by_key.entry(key).or_default().push(seq(delivery));
            let partition = *partition_of.entry(key).or_insert(delivery.partition);
            assert_eq!(partition, delivery.partition, "one key, one partition");
        }
        for (index, key) in keys.iter().enumerate() {
            let expected: Vec<usize> = (index..500).step_by(keys.len()).collect();
            assert_eq!(by_key[key.as_str()], expected, "order of key {key}");
        }
        assert_nothing_more(subscription.as_mut()).await;
    }

    pub async fn ack_then_resubscribe_resumes_after_the_acked_message(
        BusPort { bus, prefix }: BusPort,
    ) {
        let topic = format!("{prefix}.events");
        let group = format!("{prefix}.g");
        bus.publish(&topic, (0..10).map(|seq| message("case-1", seq)).collect())
            .await
            .expect("publish");

        let mut subscription = subscribe(bus.as_ref(), &group, &[&topic]).await;
        let received = receive(subscription.as_mut(), 10).await;
        subscription.ack(&received[3]).await.expect("ack");
        drop(subscription);

        // 4..9 were received but never acknowledged: they come again, and nothing before.
        let mut subscription = subscribe(bus.as_ref(), &group, &[&topic]).await;
        let again = receive(subscription.as_mut(), 6).await;
        assert_eq!(
            again.iter().map(seq).collect::<Vec<_>>(),
            (4..10).collect::<Vec<_>>()
        );
        assert_eq!(again, received[4..].to_vec(), "same offsets and content");

        // Acknowledging the last one leaves nothing for the next member.
        subscription.ack(&again[5]).await.expect("ack");
        drop(subscription);
        let mut subscription = subscribe(bus.as_ref(), &group, &[&topic]).await;
        bus.publish(&topic, vec![message("case-1", 10)])
            .await
            .expect("publish");
        let next = receive(subscription.as_mut(), 1).await;
        assert_eq!(seq(&next[0]), 10);
        assert_nothing_more(subscription.as_mut()).await;
    }

    pub async fn resume_is_per_topic(BusPort { bus, prefix }: BusPort) {
        let first = format!("{prefix}.first");
        let second = format!("{prefix}.second");
        let group = format!("{prefix}.g");
        bus.publish(&first, (0..3).map(|seq| message("a", seq)).collect())
            .await
            .expect("publish");
        bus.publish(&second, (10..13).map(|seq| message("b", seq)).collect())
            .await
            .expect("publish");

        let mut subscription = subscribe(bus.as_ref(), &group, &[&first, &second]).await;
        let received = receive(subscription.as_mut(), 6).await;
        let of = |topic: &str, seq_wanted: usize| {
            received
                .iter()
                .find(|delivery| delivery.topic == topic && seq(delivery) == seq_wanted)
                .cloned()
                .expect("delivered")
        };
        subscription.ack(&of(&first, 2)).await.expect("ack");
        subscription.ack(&of(&second, 10)).await.expect("ack");
        drop(subscription);

        let mut subscription = subscribe(bus.as_ref(), &group, &[&first, &second]).await;
        let again = receive(subscription.as_mut(), 2).await;
        assert!(again.iter().all(|delivery| delivery.topic == second));
        assert_eq!(again.iter().map(seq).collect::<Vec<_>>(), vec![11, 12]);
        assert_nothing_more(subscription.as_mut()).await;
    }

    pub async fn a_new_group_starts_from_the_beginning(BusPort { bus, prefix }: BusPort) {
        let topic = format!("{prefix}.events");
        bus.publish(&topic, (0..5).map(|seq| message("case-1", seq)).collect())
            .await
            .expect("publish");

        let mut old = subscribe(bus.as_ref(), &format!("{prefix}.old"), &[&topic]).await;
        let received = receive(old.as_mut(), 5).await;
        old.ack(&received[4]).await.expect("ack");
        drop(old);

        let mut new = subscribe(bus.as_ref(), &format!("{prefix}.new"), &[&topic]).await;
        let again = receive(new.as_mut(), 5).await;
        assert_eq!(again, received, "the new group sees the whole topic");
    }

    pub async fn two_groups_each_receive_everything(BusPort { bus, prefix }: BusPort) {
        let topic = format!("{prefix}.events");
        // Subscribed before anything is published: they must be woken by the publish.
        let mut one = subscribe(bus.as_ref(), &format!("{prefix}.one"), &[&topic]).await;
        let mut two = subscribe(bus.as_ref(), &format!("{prefix}.two"), &[&topic]).await;
        let sent: Vec<Message> = (0..30)
            .map(|seq| message(&format!("case-{}", seq % 3), seq))
            .collect();
        bus.publish(&topic, sent.clone()).await.expect("publish");

        let (first, second) = tokio::join!(receive(one.as_mut(), 30), receive(two.as_mut(), 30));
        for received in [first, second] {
            let mut seqs: Vec<usize> = received.iter().map(seq).collect();
            seqs.sort_unstable();
            assert_eq!(seqs, (0..30).collect::<Vec<_>>());
        }
    }

    pub async fn empty_publish_is_a_no_op(BusPort { bus, prefix }: BusPort) {
        let topic = format!("{prefix}.events");
        bus.publish(&topic, Vec::new())
            .await
            .expect("empty publish");
        bus.publish(&topic, vec![message("k", 1)])
            .await
            .expect("publish");
        let mut subscription = subscribe(bus.as_ref(), &format!("{prefix}.g"), &[&topic]).await;
        let received = receive(subscription.as_mut(), 1).await;
        assert_eq!(seq(&received[0]), 1);
    }

    pub async fn ping_works(BusPort { bus, .. }: BusPort) {
        bus.ping().await.expect("ping");
    }
}

/// Kafka adapter faults, on librdkafka's mock cluster (no CreateTopics there: topics are
/// created through the mock API). Tansu could be stalled with SIGSTOP instead, but it is
/// shared by every test of the run.
mod kafka_faults {
    use std::time::Duration;

    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use svcops_bus::{Bus, KafkaBus, KafkaConfig, Message};

    fn messages(count: usize) -> Vec<Message> {
        (0..count)
            .map(|seq| Message {
                key: "case-1".into(),
                headers: vec![("seq".into(), seq.to_string().into_bytes())],
                payload: seq.to_string().into_bytes(),
            })
            .collect()
    }

    async fn mock_bus(
        cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    ) -> KafkaBus {
        let mut config = KafkaConfig::new(cluster.bootstrap_servers());
        config.create_topics = false;
        config.partitions = 1;
        // The mock checks idempotent sequence numbers only for transactional producers, so
        // with several single-message batches in flight a retried batch lands after (or, as
        // a false "duplicate", instead of) later ones; real brokers, Tansu included, answer
        // OUT_OF_ORDER_SEQUENCE_NUMBER and librdkafka retries in order. One batch per publish
        // keeps the mock's answers meaningful.
        config.batch_messages = None;
        KafkaBus::connect(config)
            .await
            .expect("connect to the mock cluster")
    }

    async fn assert_received_once_in_order(bus: &KafkaBus, topic: &str, count: usize) {
        let mut subscription = bus.subscribe("faults", &[topic]).await.expect("subscribe");
        let mut seqs = Vec::new();
        // Read until quiet, so duplicates would show too.
        while let Ok(delivery) = tokio::time::timeout(
            Duration::from_secs(if seqs.len() < count { 30 } else { 1 }),
            subscription.next(),
        )
        .await
        {
            let delivery = delivery.expect("delivery");
            seqs.push(
                delivery
                    .message
                    .header("seq")
                    .expect("seq")
                    .parse::<usize>()
                    .expect("number"),
            );
        }
        assert_eq!(
            seqs,
            (0..count).collect::<Vec<_>>(),
            "each message once, in order"
        );
    }

    #[tokio::test]
    async fn publish_retries_through_transient_produce_errors() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("faults", 1, 1).expect("topic");
        let bus = mock_bus(&cluster).await;
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            ],
        );
        tokio::time::timeout(Duration::from_secs(30), bus.publish("faults", messages(50)))
            .await
            .expect("publish in time")
            .expect("publish survives transient errors");
        assert_received_once_in_order(&bus, "faults", 50).await;
    }

    #[tokio::test]
    async fn publish_waits_out_a_broker_outage() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("faults", 1, 1).expect("topic");
        let bus = mock_bus(&cluster).await;
        cluster.broker_down(1).expect("broker down");
        let publish = bus.publish("faults", messages(20));
        let up_later = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            cluster.broker_up(1).expect("broker up");
        };
        let (published, ()) = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(publish, up_later)
        })
        .await
        .expect("publish in time");
        published.expect("publish completes once the broker is back");
        assert_received_once_in_order(&bus, "faults", 20).await;
    }

    #[tokio::test]
    async fn an_unreachable_broker_fails_connect() {
        // Nothing listens on port 1.
        let config = KafkaConfig::new("127.0.0.1:1");
        let result = tokio::time::timeout(Duration::from_secs(30), KafkaBus::connect(config))
            .await
            .expect("connect gives up in time");
        assert!(result.is_err(), "connect must fail");
    }

    #[tokio::test]
    async fn ping_fails_while_the_broker_is_down() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("faults", 1, 1).expect("topic");
        let bus = mock_bus(&cluster).await;
        bus.ping().await.expect("ping while up");
        cluster.broker_down(1).expect("broker down");
        // librdkafka answers metadata from cache while a connection still looks healthy, so
        // allow for it to notice.
        let mut failed = false;
        for _ in 0..20 {
            if bus.ping().await.is_err() {
                failed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(failed, "ping reports the outage");
    }
}
