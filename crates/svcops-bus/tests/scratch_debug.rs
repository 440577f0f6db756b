#![allow(clippy::unwrap_used)]
use std::time::{Duration, Instant};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer, CommitMode};
use rdkafka::Message as _;
use svcops_bus::{Bus, KafkaBus, KafkaConfig, Message};

struct Ctx(&'static str, Instant);
impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        eprintln!("[{} {:>6}ms {:?} {}] {}", self.0, self.1.elapsed().as_millis(), level, fac, msg);
    }
}
impl ConsumerContext for Ctx {}

fn consumer(name: &'static str, group: &str, start: Instant) -> StreamConsumer<Ctx> {
    ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("debug", "fetch")
        .set_log_level(RDKafkaLogLevel::Debug)
        .create_with_context(Ctx(name, start))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn scratch() {
    let start = Instant::now();
    let bus = KafkaBus::connect(KafkaConfig::new("127.0.0.1:9092")).await.unwrap();
    let topic = format!("scratch.{}", uuid::Uuid::new_v4().simple());
    let group = format!("{topic}.g");
    bus.publish(&topic, (0..10).map(|i| Message { key: "k".into(), headers: vec![], payload: vec![i] }).collect()).await.unwrap();
    let c1 = consumer("c1", &group, start);
    c1.subscribe(&[&topic]).unwrap();
    let mut last = None;
    for _ in 0..10 { let m = c1.recv().await.unwrap(); eprintln!("c1 got {} {}", m.partition(), m.offset()); last = Some((m.partition(), m.offset())); }
    let (p, o) = last.unwrap();
    c1.store_offset(&topic, p, o - 6).unwrap();
    let r = tokio::task::spawn_blocking(move || { let r = c1.commit_consumer_state(CommitMode::Sync); eprintln!("commit: {r:?}"); drop(c1); eprintln!("c1 closed at {:?}", start.elapsed()); }).await;
    eprintln!("{r:?}");
    let c2 = consumer("c2", &group, start);
    c2.subscribe(&[&topic]).unwrap();
    match tokio::time::timeout(Duration::from_secs(8), c2.recv()).await {
        Ok(m) => { let m = m.unwrap(); eprintln!("c2 got {} {} at {:?}", m.partition(), m.offset(), start.elapsed()); }
        Err(_) => eprintln!("c2 nothing"),
    }
    tokio::task::spawn_blocking(move || drop(c2)).await.unwrap();
}
