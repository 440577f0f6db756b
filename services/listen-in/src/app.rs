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

    /// Records a received event on its case's timeline (once, whatever the redeliveries).
    pub async fn observe(&self, event: &BusEvent) -> Result<(), HandlerError> {
        let Some(case_id) = event.metadata.case_id else {
            return Ok(());
        };
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
            .idempotency_key(format!("listen-in/observed/{}", event.event_id))
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
