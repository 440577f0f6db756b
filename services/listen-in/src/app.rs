//! Case timelines: every office's events of a case, in the order listen-in received them,
//! kept in listen-in's own store so a session can replay a case and then follow it live.

use std::sync::Arc;

use async_trait::async_trait;
use prost::Message;
use svcops_bus::consumer::{Handler, HandlerError};
use svcops_bus::envelope::BusEvent;
use svcops_eventstore::{
    Append, EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamId,
};
use svcops_kit::events::{CommandContext, to_timestamp};
use svcops_proto::listenin::v1 as proto;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use uuid::Uuid;

/// How long an event waits for its cause to reach the timeline before it is recorded
/// anyway (the cause may never come: it may belong to no case, or be dead-lettered).
const CAUSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often a waiting event checks for its cause.
const CAUSE_POLL: std::time::Duration = std::time::Duration::from_millis(25);

/// Capacity of the live feed; a listener further behind is told it lagged and re-reads
/// from the store, so a slow listener never holds anything up.
const LIVE_CAPACITY: usize = 4096;

pub fn timeline_stream(case_id: Uuid) -> StreamId {
    StreamId::for_aggregate("timeline", case_id)
}

pub fn session_stream(session_id: Uuid) -> StreamId {
    StreamId::for_aggregate("listen", session_id)
}

/// A timeline entry, decoded from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub sequence: u64,
    pub source: String,
    pub stream_id: String,
    pub stream_version: u64,
    pub event_id: String,
    pub event_type: String,
    pub payload: Vec<u8>,
    pub actor_subject: String,
    pub actor_role: String,
    pub occurred_at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] svcops_eventstore::Error),
    #[error("corrupt timeline entry: {0}")]
    Corrupt(#[from] prost::DecodeError),
}

/// A new entry on a case's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub case_id: Uuid,
    pub sequence: u64,
}

pub struct Timelines {
    store: Arc<dyn EventStore>,
    live: broadcast::Sender<Appended>,
    relay: Arc<tokio::sync::Notify>,
}

impl Timelines {
    pub fn new(store: Arc<dyn EventStore>, relay: Arc<tokio::sync::Notify>) -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        Self { store, live, relay }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Appended> {
        self.live.subscribe()
    }

    /// Entries of a case after `after`, at most `limit`.
    pub async fn read(&self, case_id: Uuid, after: u64, limit: usize) -> Result<Vec<Entry>, Error> {
        let events = self
            .store
            .read_stream(&timeline_stream(case_id), after + 1, limit)
            .await?;
        events.iter().map(decode_entry).collect()
    }

    fn observed_key(event_id: Uuid) -> String {
        format!("listen-in/observed/{event_id}")
    }

    /// Waits until the event that caused `event` is on the timeline, so an effect never
    /// precedes its cause even when another office's topic is consumed with a lag. Each
    /// topic has its own consumer, so waiting here never blocks the cause's own delivery.
    async fn wait_for_cause(&self, event: &BusEvent) -> Result<(), HandlerError> {
        let Some(cause) = event.metadata.causation_id else {
            return Ok(());
        };
        let key = Self::observed_key(cause);
        let deadline = tokio::time::Instant::now() + CAUSE_WAIT;
        loop {
            match self.store.idempotent_result(&key).await {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(event_id = %event.event_id, %cause, "cause never reached the timeline; recording the effect anyway");
                    return Ok(());
                }
                Ok(None) => tokio::time::sleep(CAUSE_POLL).await,
                Err(error) => return Err(HandlerError::Unavailable(error.to_string())),
            }
        }
    }

    /// Records a received event on its case's timeline (once, whatever the redeliveries),
    /// after its cause.
    pub async fn observe(&self, event: &BusEvent) -> Result<(), HandlerError> {
        let Some(case_id) = event.metadata.case_id else {
            return Ok(());
        };
        self.wait_for_cause(event).await?;
        let observed = proto::ObservedEvent {
            source: event.source.clone(),
            stream_id: event.stream_id.clone(),
            stream_version: event.version,
            event_id: event.event_id.to_string(),
            event_type: event.event_type.clone(),
            payload: event.payload.clone(),
            recorded_at: Some(to_timestamp(event.recorded_at)),
        };
        let record = NewEvent {
            event_id: Uuid::now_v7(),
            event_type: <proto::ObservedEvent as prost::Name>::full_name(),
            payload: observed.encode_to_vec(),
            // The original's metadata: who did it and when, not when listen-in heard of it.
            metadata: EventMetadata {
                causation_id: Some(event.event_id),
                ..event.metadata.clone()
            },
        };
        let append = Append::new(timeline_stream(case_id), ExpectedVersion::Any, vec![record])
            .idempotency_key(Self::observed_key(event.event_id))
            .local_only();
        match self.store.append(append).await {
            Ok(outcome) => {
                if !outcome.is_duplicate() {
                    let _ = self.live.send(Appended {
                        case_id,
                        sequence: outcome.appended().last_version,
                    });
                }
                Ok(())
            }
            Err(svcops_eventstore::Error::Unavailable(error)) => {
                Err(HandlerError::Unavailable(error.to_string()))
            }
            Err(svcops_eventstore::Error::Concurrency { .. }) => {
                Err(HandlerError::Unavailable("timeline contended".into()))
            }
            Err(error) => Err(HandlerError::Failed(error.to_string())),
        }
    }

    /// Puts a session start or end on the record (published, so it reaches every office).
    pub async fn record_session<M: prost::Message + prost::Name>(
        &self,
        context: &CommandContext,
        session_id: Uuid,
        case_id: Uuid,
        event: &M,
    ) -> Result<(), Error> {
        let append = Append::new(
            session_stream(session_id),
            ExpectedVersion::Any,
            vec![context.event(Some(case_id), event)],
        );
        self.store.append(append).await?;
        self.relay.notify_one();
        Ok(())
    }
}

fn decode_entry(recorded: &RecordedEvent) -> Result<Entry, Error> {
    let observed = proto::ObservedEvent::decode(recorded.payload.as_slice())?;
    Ok(Entry {
        sequence: recorded.version,
        source: observed.source,
        stream_id: observed.stream_id,
        stream_version: observed.stream_version,
        event_id: observed.event_id,
        event_type: observed.event_type,
        payload: observed.payload,
        actor_subject: recorded.metadata.actor_subject.clone(),
        actor_role: recorded.metadata.actor_role.clone(),
        occurred_at: recorded.metadata.occurred_at,
    })
}

/// Consumes every office's topic.
pub struct AllOffices(pub Arc<Timelines>);

#[async_trait]
impl Handler for AllOffices {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError> {
        self.0.observe(event).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use svcops_eventstore::SqliteStore;

    use super::*;

    fn bus_event(case_id: Uuid, causation_id: Option<Uuid>, source: &str) -> BusEvent {
        BusEvent {
            source: source.into(),
            stream_id: format!("x-{}", Uuid::now_v7()),
            version: 1,
            event_id: Uuid::now_v7(),
            event_type: "svcops.test.v1.Something".into(),
            payload: vec![],
            metadata: EventMetadata {
                case_id: Some(case_id),
                actor_subject: "a".into(),
                actor_role: "agent".into(),
                correlation_id: Uuid::now_v7(),
                causation_id,
                traceparent: None,
                occurred_at: OffsetDateTime::UNIX_EPOCH,
            },
            recorded_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    async fn timelines() -> (tempfile::TempDir, Arc<Timelines>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("listen.db"))
            .await
            .expect("store");
        let timelines = Timelines::new(Arc::new(store), Arc::new(tokio::sync::Notify::new()));
        (dir, Arc::new(timelines))
    }

    #[tokio::test]
    async fn an_effect_that_arrives_first_waits_for_its_cause() {
        let (_dir, timelines) = timelines().await;
        let case_id = Uuid::now_v7();
        let cause = bus_event(case_id, None, "svcops/front-office");
        let effect = bus_event(case_id, Some(cause.event_id), "svcops/middle-office");
        let waiting = tokio::spawn({
            let timelines = timelines.clone();
            async move { timelines.observe(&effect).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            timelines
                .read(case_id, 0, 10)
                .await
                .expect("read")
                .is_empty(),
            "effect held back"
        );
        timelines.observe(&cause).await.expect("cause");
        waiting.await.expect("join").expect("effect");
        let sources: Vec<String> = timelines
            .read(case_id, 0, 10)
            .await
            .expect("read")
            .into_iter()
            .map(|entry| entry.source)
            .collect();
        assert_eq!(sources, ["svcops/front-office", "svcops/middle-office"]);
    }

    #[tokio::test]
    async fn redelivery_records_an_event_once() {
        let (_dir, timelines) = timelines().await;
        let case_id = Uuid::now_v7();
        let event = bus_event(case_id, None, "svcops/front-office");
        timelines.observe(&event).await.expect("first");
        timelines.observe(&event).await.expect("again");
        assert_eq!(timelines.read(case_id, 0, 10).await.expect("read").len(), 1);
    }
}
