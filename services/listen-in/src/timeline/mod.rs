//! Case timelines: every office's events of a case, causes before effects and each stream
//! in its own order, kept in listen-in's own store so a session can replay a case and then
//! follow it live.
//!
//! A timeline is not an aggregate on [`svcops_kit::aggregate::Executor`], on purpose: an
//! entry's only rule is "once per observed event" (the event id is the idempotency key), so
//! it is appended at `Any` version, with nothing to load and decide; the ordering decisions
//! are made under one lock over what is held aside ([`held`]), across every case at once.
//! Appending at an exact version instead would add conflicts and re-reads and change none
//! of the decisions.

mod batch;
mod held;
mod live;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use prost::Message;
use svcops_bus::consumer::HandlerError;
use svcops_bus::envelope::BusEvent;
use svcops_eventstore::projection::ReadModel;
use svcops_eventstore::{
    Append, AppendOutcome, EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
    StreamId,
};
use svcops_kit::ApiError;
use svcops_kit::events::to_timestamp;
use svcops_proto::listenin::v1 as proto;
use time::OffsetDateTime;
use tokio::sync::{Mutex, broadcast};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::hold_aside::{Arrival, Decision, Limits};

use held::Holding;
pub use held::{HELD_EVENTS, HELD_STREAM, sweep_until};
pub use live::follow_log;

/// Events recorded at the bound without their cause on the timeline (counter).
pub const RECORDED_WITHOUT_CAUSE: &str = "svcops_listen_in_recorded_without_cause_total";

/// Capacity of the live feed; a listener further behind is told it lagged and re-reads
/// from the store, so a slow listener never holds anything up.
const LIVE_CAPACITY: usize = 4096;

pub fn timeline_stream(case_id: Uuid) -> StreamId {
    StreamId::for_aggregate("timeline", case_id)
}

/// The case of a timeline stream id (`timeline-<case>`).
fn timeline_case(stream_id: &str) -> Option<Uuid> {
    Uuid::parse_str(stream_id.strip_prefix("timeline-")?).ok()
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
    pub cause_missing: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] svcops_eventstore::Error),
    #[error("corrupt timeline entry: {0}")]
    Corrupt(#[from] prost::DecodeError),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Store(error) => error.into(),
            Error::Corrupt(error) => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<Error> for HandlerError {
    /// An outage is waited out; so is a lost race for a timeline's next version (appends
    /// there are at `Any` version, so a retry simply lands after the winner). Anything
    /// else is dead-lettered after the consumer's bounded retries.
    fn from(error: Error) -> Self {
        match error {
            Error::Store(error)
                if error.is_transient()
                    || matches!(error, svcops_eventstore::Error::Concurrency { .. }) =>
            {
                HandlerError::Unavailable(error.to_string())
            }
            other => HandlerError::Failed(other.to_string()),
        }
    }
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
    limits: Limits,
    /// Also the ordering lock: deciding, holding and releasing happen one event at a time,
    /// so a cause recorded by one topic's consumer can never slip between another's check
    /// for it and the holding of its effect (which would then wait for nothing). Timeline
    /// appends are serialised by it; that is listen-in's throughput bound. Only the replica
    /// recording timelines holds anything here ([`Timelines::take_over`]).
    holding: Mutex<Holding>,
    /// The cases with an event held aside, for replicas that do not record
    /// ([`crate::index`]); without it, only this process's holding is looked at.
    index: Option<ReadModel>,
    /// While recording under a lease: cancelled once it is lost, after which nothing this
    /// process still finishes may be acknowledged or move the held-aside checkpoint.
    recording: parking_lot::Mutex<Option<CancellationToken>>,
}

fn observed_key(event_id: Uuid) -> String {
    format!("listen-in/observed/{event_id}")
}

fn arrival(event: &BusEvent, case_id: Uuid) -> Arrival {
    Arrival {
        event_id: event.event_id,
        case_id,
        stream_id: event.stream_id.clone(),
        version: event.version,
        cause: event.metadata.causation_id,
    }
}

fn observed(event: &BusEvent, cause_missing: bool) -> proto::ObservedEvent {
    proto::ObservedEvent {
        source: event.source.clone(),
        stream_id: event.stream_id.clone(),
        stream_version: event.version,
        event_id: event.event_id.to_string(),
        event_type: event.event_type.clone(),
        payload: kept_payload(event),
        recorded_at: Some(to_timestamp(event.recorded_at)),
        cause_missing,
    }
}

/// The payload listen-in keeps of an event. A `CaseOpened` from before phones were sealed
/// carries the phone in plain text in a field now reserved: decoding and re-encoding drops
/// it (prost keeps no unknown fields), so listen-in never stores what erasure cannot reach.
fn kept_payload(event: &BusEvent) -> Vec<u8> {
    use svcops_proto::frontoffice::v1::CaseOpened;
    match svcops_kit::events::decode::<CaseOpened>(&event.event_type, &event.payload) {
        Ok(Some(opened)) => opened.encode_to_vec(),
        Ok(None) | Err(_) => event.payload.clone(),
    }
}

impl Timelines {
    /// Timelines over `store`, read-only until this replica takes over the recording
    /// ([`Self::take_over`]).
    pub fn new(store: Arc<dyn EventStore>, limits: Limits, index: Option<ReadModel>) -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        Self {
            store,
            live,
            limits,
            holding: Mutex::new(Holding::default()),
            index,
            recording: parking_lot::Mutex::new(None),
        }
    }

    /// Takes over the recording while a lease is held: `lost` is cancelled when it is lost.
    pub async fn take_over_until(
        &self,
        lost: CancellationToken,
    ) -> Result<(), svcops_eventstore::Error> {
        *self.recording.lock() = Some(lost);
        self.take_over().await
    }

    /// Whether the lease this process recorded under is lost.
    pub fn lost_recording(&self) -> bool {
        self.recording
            .lock()
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// Timelines that record at once, with what earlier runs held aside and did not release
    /// yet held aside again (and released now if its cause has landed meanwhile).
    pub async fn open(
        store: Arc<dyn EventStore>,
        limits: Limits,
    ) -> Result<Self, svcops_eventstore::Error> {
        let timelines = Self::new(store, limits, None);
        timelines.take_over().await?;
        Ok(timelines)
    }

    /// Entries of a case after `after`, at most `limit`; none past the last possible one.
    pub async fn read(&self, case_id: Uuid, after: u64, limit: usize) -> Result<Vec<Entry>, Error> {
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let events = self
            .store
            .read_stream(&timeline_stream(case_id), from, limit)
            .await?;
        events.iter().map(decode_entry).collect()
    }

    async fn on_timeline(&self, event_id: Uuid) -> Result<bool, svcops_eventstore::Error> {
        Ok(self
            .store
            .idempotent_result(&observed_key(event_id))
            .await?
            .is_some())
    }

    /// Records a received event on its case's timeline (once, whatever the redeliveries),
    /// after its cause and after the earlier events of its stream. An event that cannot be
    /// recorded yet is held aside durably (so the delivery can be acknowledged and the
    /// consumer moves on) and recorded when what it waits for is; see [`crate::hold_aside`].
    pub async fn observe(&self, event: &BusEvent) -> Result<(), Error> {
        let Some(case_id) = event.metadata.case_id else {
            return Ok(());
        };
        let mut holding = self.holding.lock().await;
        if holding.aside.contains(event.event_id) {
            // Redelivered while held aside: already durable.
            return Ok(());
        }
        let cause_on_timeline = match event.metadata.causation_id {
            Some(cause) => self.on_timeline(cause).await?,
            None => true,
        };
        let arrival = arrival(event, case_id);
        match holding.aside.decide(&arrival, cause_on_timeline) {
            Decision::Record => {
                self.record(event, false).await?;
                let released = holding.aside.recorded(event.event_id, &event.stream_id);
                self.record_released(&mut holding, released).await
            }
            Decision::HoldAside => {
                self.hold_aside(&mut holding, event, arrival, cause_on_timeline)
                    .await
            }
        }
    }

    /// Appends `event` to its case's timeline (once: the event id is the idempotency key).
    async fn record(&self, event: &BusEvent, cause_missing: bool) -> Result<(), Error> {
        let Some((case_id, append)) = timeline_append(event, cause_missing) else {
            return Ok(());
        };
        let outcome = self.store.append(append).await?;
        self.recorded(case_id, &outcome, event, cause_missing);
        Ok(())
    }

    /// What follows a timeline append: the live feed, and the count of entries recorded
    /// without their cause.
    fn recorded(
        &self,
        case_id: Uuid,
        outcome: &AppendOutcome,
        event: &BusEvent,
        cause_missing: bool,
    ) {
        if outcome.is_duplicate() {
            return;
        }
        if cause_missing {
            tracing::warn!(event_id = %event.event_id, cause = ?event.metadata.causation_id, %case_id, "cause not on the timeline within the bound; recorded the effect marked cause missing");
            ::metrics::counter!(RECORDED_WITHOUT_CAUSE).increment(1);
        }
        let _ = self.live.send(Appended {
            case_id,
            sequence: outcome.appended().last_version,
        });
    }
}

/// The append that puts `event` on its case's timeline, if it has a case.
fn timeline_append(event: &BusEvent, cause_missing: bool) -> Option<(Uuid, Append)> {
    let case_id = event.metadata.case_id?;
    let record = NewEvent {
        event_id: Uuid::now_v7(),
        event_type: <proto::ObservedEvent as prost::Name>::full_name(),
        payload: observed(event, cause_missing).encode_to_vec(),
        // The original's metadata: who did it and when, not when listen-in heard of it.
        metadata: EventMetadata {
            causation_id: Some(event.event_id),
            ..event.metadata.clone()
        },
    };
    let append = Append::new(timeline_stream(case_id), ExpectedVersion::Any, vec![record])
        .idempotency_key(observed_key(event.event_id))
        .local_only();
    Some((case_id, append))
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
        cause_missing: observed.cause_missing,
    })
}
