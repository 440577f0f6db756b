//! Case timelines: every office's events of a case, causes before effects and each stream
//! in its own order, kept in listen-in's own store so a session can replay a case and then
//! follow it live; and the record of listen-in sessions.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prost::Message;
use svcops_bus::consumer::{Handler, HandlerError};
use svcops_bus::envelope::BusEvent;
use svcops_eventstore::{
    Append, EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamId,
    read_whole_stream,
};
use svcops_kit::events::{CommandContext, decode, from_timestamp, to_timestamp};
use svcops_kit::{ApiError, Principal, Role};
use svcops_proto::listenin::v1 as proto;
use time::OffsetDateTime;
use tokio::sync::{Mutex, broadcast};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{Arrival, Decision, HeldAside, Limits, Release};

/// `ce_source` of what listen-in itself publishes (session starts and ends).
pub const SOURCE: &str = "svcops/listen-in";

/// Events held aside right now, waiting for their cause (gauge).
pub const HELD_EVENTS: &str = "svcops_listen_in_held_events";
/// Events recorded at the bound without their cause on the timeline (counter).
pub const RECORDED_WITHOUT_CAUSE: &str = "svcops_listen_in_recorded_without_cause_total";

/// Capacity of the live feed; a listener further behind is told it lagged and re-reads
/// from the store, so a slow listener never holds anything up.
const LIVE_CAPACITY: usize = 4096;

/// Timeline entries looked at to tell whether any office recorded a case.
const KNOWN_CASE_PAGE: usize = 64;

/// Records read at once when restoring at start.
const PAGE: usize = 500;

/// Checkpoints: the parts of the local-only indexes already dealt with by an earlier start.
const HELD_CHECKPOINT: &str = "listen-in/held-aside";
const SESSIONS_CHECKPOINT: &str = "listen-in/sessions";

/// Why a session ended, as its end records it.
pub const ENDED_LISTENER_LEFT: &str = "listener left";
pub const ENDED_CAUGHT_UP: &str = "caught up";
pub const ENDED_SHUT_DOWN: &str = "listen-in shut down";
pub const ENDED_RESTARTED: &str = "listen-in restarted";

pub fn timeline_stream(case_id: Uuid) -> StreamId {
    StreamId::for_aggregate("timeline", case_id)
}

pub fn session_stream(session_id: Uuid) -> StreamId {
    StreamId::for_aggregate("listen", session_id)
}

/// Local-only: every event ever held aside, in the order it was (the durable side of
/// [`HeldAside`]; what is still waiting is what is not on its timeline).
fn held_stream() -> StreamId {
    StreamId::parse("listen_in_held").unwrap_or_else(|_| unreachable!("valid stream id"))
}

/// Local-only: every session started, so a start after a crash can end the ones left open.
fn sessions_stream() -> StreamId {
    StreamId::parse("listen_in_sessions").unwrap_or_else(|_| unreachable!("valid stream id"))
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

/// An event held aside, and where its durable copy is.
#[derive(Debug)]
struct HeldEvent {
    event: BusEvent,
    /// Version in [`held_stream`].
    held_version: u64,
}

/// What is held aside, in memory, with the bookkeeping of its durable copy.
#[derive(Debug, Default)]
struct Holding {
    aside: HeldAside<HeldEvent>,
    /// Last version of [`held_stream`] known.
    held_end: u64,
    /// [`HELD_CHECKPOINT`] as last saved.
    checkpoint: u64,
}

pub struct Timelines {
    store: Arc<dyn EventStore>,
    live: broadcast::Sender<Appended>,
    relay: Arc<tokio::sync::Notify>,
    limits: Limits,
    /// Also the ordering lock: deciding, holding and releasing happen one event at a time,
    /// so a cause recorded by one topic's consumer can never slip between another's check
    /// for it and the holding of its effect (which would then wait for nothing). Timeline
    /// appends are serialised by it; that is listen-in's throughput bound.
    holding: Mutex<Holding>,
}

fn observed_key(event_id: Uuid) -> String {
    format!("listen-in/observed/{event_id}")
}

fn held_key(event_id: Uuid) -> String {
    format!("listen-in/held/{event_id}")
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

/// The event a held-aside record keeps (its metadata is the original's).
fn held_event(record: &RecordedEvent) -> Result<BusEvent, String> {
    let observed =
        proto::ObservedEvent::decode(record.payload.as_slice()).map_err(|e| e.to_string())?;
    let event_id = Uuid::parse_str(&observed.event_id).map_err(|e| e.to_string())?;
    Ok(BusEvent {
        recorded_at: observed
            .recorded_at
            .as_ref()
            .and_then(from_timestamp)
            .unwrap_or(record.recorded_at),
        source: observed.source,
        stream_id: observed.stream_id,
        version: observed.stream_version,
        event_id,
        event_type: observed.event_type,
        payload: observed.payload,
        metadata: record.metadata.clone(),
    })
}

impl Timelines {
    /// Timelines over `store`, with what earlier runs held aside and did not release yet
    /// held aside again (and released now if its cause has landed meanwhile).
    pub async fn open(
        store: Arc<dyn EventStore>,
        relay: Arc<tokio::sync::Notify>,
        limits: Limits,
    ) -> Result<Self, svcops_eventstore::Error> {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let timelines = Self {
            store,
            live,
            relay,
            limits,
            holding: Mutex::new(Holding::default()),
        };
        timelines.restore_held().await?;
        Ok(timelines)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Appended> {
        self.live.subscribe()
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
    /// consumer moves on) and recorded when what it waits for is; see [`crate::domain`].
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
                if self.on_timeline(event.event_id).await? {
                    // A redelivery of what was recorded before: nothing to hold.
                    return Ok(());
                }
                let record = NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: <proto::ObservedEvent as prost::Name>::full_name(),
                    payload: observed(event, false).encode_to_vec(),
                    metadata: event.metadata.clone(),
                };
                let append = Append::new(held_stream(), ExpectedVersion::Any, vec![record])
                    .idempotency_key(held_key(event.event_id))
                    .local_only();
                let held_version = self.store.append(append).await?.appended().last_version;
                holding.held_end = holding.held_end.max(held_version);
                tracing::debug!(event_id = %event.event_id, cause = ?event.metadata.causation_id, "holding an event aside until its cause is on the timeline");
                holding.aside.hold(
                    arrival,
                    cause_on_timeline,
                    OffsetDateTime::now_utc(),
                    HeldEvent {
                        event: event.clone(),
                        held_version,
                    },
                );
                let released = holding
                    .aside
                    .over_bound(OffsetDateTime::now_utc(), &self.limits);
                let outcome = self.record_released(&mut holding, released).await;
                ::metrics::gauge!(HELD_EVENTS).set(holding.aside.len() as f64);
                outcome
            }
        }
    }

    /// Enforces the age bound and retries releases that failed; advances the checkpoint of
    /// the held-aside records. Run periodically ([`sweep_until`]).
    pub async fn sweep(&self, now: OffsetDateTime) -> Result<(), Error> {
        let mut holding = self.holding.lock().await;
        let mut released = holding.aside.ready();
        released.extend(holding.aside.over_bound(now, &self.limits));
        self.record_released(&mut holding, released).await?;
        ::metrics::gauge!(HELD_EVENTS).set(holding.aside.len() as f64);
        // Records before the oldest still held need not be read again at the next start.
        let checkpoint = holding
            .aside
            .oldest()
            .map_or(holding.held_end, |oldest| oldest.held_version - 1);
        if checkpoint != holding.checkpoint {
            self.store
                .save_checkpoint(
                    HELD_CHECKPOINT,
                    i64::try_from(checkpoint).unwrap_or(i64::MAX),
                )
                .await?;
            holding.checkpoint = checkpoint;
        }
        Ok(())
    }

    /// Holds aside again what earlier runs held and did not record.
    async fn restore_held(&self) -> Result<(), svcops_eventstore::Error> {
        let mut holding = self.holding.lock().await;
        let checkpoint = self
            .store
            .load_checkpoint(HELD_CHECKPOINT)
            .await?
            .map_or(0, |position| u64::try_from(position).unwrap_or(0));
        holding.checkpoint = checkpoint;
        holding.held_end = checkpoint;
        let mut from = checkpoint + 1;
        loop {
            let records = self.store.read_stream(&held_stream(), from, PAGE).await?;
            let done = records.len() < PAGE;
            for record in records {
                from = record.version + 1;
                holding.held_end = record.version;
                let event = match held_event(&record) {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::error!(version = record.version, %error, "undecodable held-aside record skipped");
                        continue;
                    }
                };
                let Some(case_id) = event.metadata.case_id else {
                    continue;
                };
                if holding.aside.contains(event.event_id)
                    || self.on_timeline(event.event_id).await?
                {
                    continue;
                }
                let cause_on_timeline = match event.metadata.causation_id {
                    Some(cause) => self.on_timeline(cause).await?,
                    None => true,
                };
                holding.aside.hold(
                    arrival(&event, case_id),
                    cause_on_timeline,
                    record.recorded_at,
                    HeldEvent {
                        event,
                        held_version: record.version,
                    },
                );
            }
            if done {
                break;
            }
        }
        if !holding.aside.is_empty() {
            tracing::info!(held = holding.aside.len(), "restored events held aside");
        }
        let released = holding.aside.ready();
        if let Err(error) = self.record_released(&mut holding, released).await {
            // What could not be recorded is held again; the sweep retries it.
            tracing::warn!(%error, "could not release restored events yet");
        }
        ::metrics::gauge!(HELD_EVENTS).set(holding.aside.len() as f64);
        Ok(())
    }

    /// Records `released` in order; what cannot be recorded goes back aside as it was.
    async fn record_released(
        &self,
        holding: &mut Holding,
        released: Vec<Release<HeldEvent>>,
    ) -> Result<(), Error> {
        let mut released = released.into_iter();
        while let Some(release) = released.next() {
            if let Err(error) = self
                .record(&release.held.item.event, release.cause_missing)
                .await
            {
                holding
                    .aside
                    .restore(std::iter::once(release).chain(released));
                return Err(error);
            }
        }
        Ok(())
    }

    /// Appends `event` to its case's timeline (once: the event id is the idempotency key).
    async fn record(&self, event: &BusEvent, cause_missing: bool) -> Result<(), Error> {
        let Some(case_id) = event.metadata.case_id else {
            return Ok(());
        };
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
        let outcome = self.store.append(append).await?;
        if !outcome.is_duplicate() {
            if cause_missing {
                tracing::warn!(event_id = %event.event_id, cause = ?event.metadata.causation_id, %case_id, "cause not on the timeline within the bound; recorded the effect marked cause missing");
                ::metrics::counter!(RECORDED_WITHOUT_CAUSE).increment(1);
            }
            let _ = self.live.send(Appended {
                case_id,
                sequence: outcome.appended().last_version,
            });
        }
        Ok(())
    }

    /// Whether any office has recorded `case_id`, as far as listen-in has heard: an entry
    /// of another office on its timeline, or one held aside. Listen-in's own session
    /// entries do not count (they are recorded only for known cases; older ones may not be).
    pub async fn case_known(&self, case_id: Uuid) -> Result<bool, Error> {
        if self.holding.lock().await.aside.holds_case(case_id) {
            return Ok(true);
        }
        let entries = self.read(case_id, 0, KNOWN_CASE_PAGE).await?;
        Ok(entries.iter().any(|entry| entry.source != SOURCE))
    }

    /// Waits until `deadline` at most for `case_id` to be known ([`Self::case_known`]).
    ///
    /// Offices talk to listen-in only through events, so a case opened a moment ago and a
    /// case no office ever recorded look the same until the case's first event has been
    /// relayed and consumed; waiting a bounded grace period is what tells them apart.
    pub async fn wait_for_case(
        &self,
        case_id: Uuid,
        deadline: tokio::time::Instant,
    ) -> Result<bool, Error> {
        // Subscribe before looking, so an entry appended in between still wakes us.
        let mut live = self.subscribe();
        loop {
            if self.case_known(case_id).await? {
                return Ok(true);
            }
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => return self.case_known(case_id).await,
                    wake = live.recv() => match wake {
                        Ok(appended) if appended.case_id != case_id => {}
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return self.case_known(case_id).await,
                    },
                }
            }
        }
    }

    /// Puts a session's start on the record (published, so it reaches every office).
    pub async fn start_session(
        &self,
        context: &CommandContext,
        session_id: Uuid,
        case_id: Uuid,
        mode: proto::ListenMode,
    ) -> Result<(), Error> {
        let started = proto::ListenSessionStarted {
            session_id: session_id.to_string(),
            case_id: case_id.to_string(),
            mode: mode.into(),
        };
        // The index first: a crash between the two leaves an indexed session without a
        // start, which the next start skips; the other order could leave a start no one ends.
        let index = Append::new(
            sessions_stream(),
            ExpectedVersion::Any,
            vec![context.event(Some(case_id), &started)],
        )
        .local_only();
        self.store.append(index).await?;
        let append = Append::new(
            session_stream(session_id),
            ExpectedVersion::NoStream,
            vec![context.event(Some(case_id), &started)],
        );
        self.store.append(append).await?;
        self.relay.notify_one();
        Ok(())
    }

    /// Puts a session's end on the record, once (a second end of a session appends nothing).
    pub async fn end_session(
        &self,
        context: &CommandContext,
        session_id: Uuid,
        case_id: Uuid,
        reason: &str,
    ) -> Result<(), Error> {
        let ended = proto::ListenSessionEnded {
            session_id: session_id.to_string(),
            case_id: case_id.to_string(),
            reason: reason.to_owned(),
        };
        let append = Append::new(
            session_stream(session_id),
            ExpectedVersion::Any,
            vec![context.event(Some(case_id), &ended)],
        )
        .idempotency_key(format!("listen-in/session-ended/{session_id}"));
        self.store.append(append).await?;
        self.relay.notify_one();
        Ok(())
    }

    /// Ends, with reason [`ENDED_RESTARTED`], every session an earlier process started and
    /// did not end (it was killed, or its graceful stop ran out of time). Call at start,
    /// before serving: every session indexed then belongs to an earlier process.
    pub async fn end_sessions_left_open(&self) -> Result<usize, svcops_eventstore::Error> {
        let checkpoint = self
            .store
            .load_checkpoint(SESSIONS_CHECKPOINT)
            .await?
            .map_or(0, |position| u64::try_from(position).unwrap_or(0));
        let mut from = checkpoint + 1;
        let mut last = checkpoint;
        let mut ended = 0;
        loop {
            let records = self
                .store
                .read_stream(&sessions_stream(), from, PAGE)
                .await?;
            let done = records.len() < PAGE;
            for record in records {
                from = record.version + 1;
                last = record.version;
                if self.end_left_open(&record).await? {
                    ended += 1;
                }
            }
            if done {
                break;
            }
        }
        if last != checkpoint {
            self.store
                .save_checkpoint(SESSIONS_CHECKPOINT, i64::try_from(last).unwrap_or(i64::MAX))
                .await?;
        }
        if ended > 0 {
            tracing::warn!(
                ended,
                "recorded the end of listen-in sessions a previous run left open"
            );
        }
        Ok(ended)
    }

    /// Ends the indexed session of `record` if it started and did not end.
    async fn end_left_open(
        &self,
        record: &RecordedEvent,
    ) -> Result<bool, svcops_eventstore::Error> {
        let started =
            match decode::<proto::ListenSessionStarted>(&record.event_type, &record.payload) {
                Ok(Some(started)) => started,
                Ok(None) | Err(_) => {
                    tracing::error!(
                        version = record.version,
                        "undecodable session index record skipped"
                    );
                    return Ok(false);
                }
            };
        let (Ok(session_id), Ok(case_id)) = (
            Uuid::parse_str(&started.session_id),
            Uuid::parse_str(&started.case_id),
        ) else {
            return Ok(false);
        };
        let session = read_whole_stream(self.store.as_ref(), &session_stream(session_id)).await?;
        let Some(start) = session.first() else {
            // Indexed, then the process died before the start was recorded.
            return Ok(false);
        };
        let ended_type = <proto::ListenSessionEnded as prost::Name>::full_name();
        if session.iter().any(|event| event.event_type == ended_type) {
            return Ok(false);
        }
        // Ended on behalf of the listener, in the same causal chain as the start.
        let context = CommandContext {
            actor: Principal {
                subject: start.metadata.actor_subject.clone(),
                role: start.metadata.actor_role.parse().unwrap_or(Role::Service),
            },
            correlation_id: start.metadata.correlation_id,
            causation_id: Some(start.event_id),
        };
        match self
            .end_session(&context, session_id, case_id, ENDED_RESTARTED)
            .await
        {
            Ok(()) => Ok(true),
            Err(Error::Store(error)) => Err(error),
            Err(Error::Corrupt(_)) => Ok(false),
        }
    }
}

/// Sweeps `timelines` ([`Timelines::sweep`]) until `shutdown`.
pub async fn sweep_until(timelines: Arc<Timelines>, shutdown: CancellationToken) {
    // Often enough that the age bound is kept to within a quarter of itself.
    let interval =
        (timelines.limits.max_age / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = timelines.sweep(OffsetDateTime::now_utc()).await {
            tracing::warn!(%error, "could not sweep events held aside; retrying");
        }
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
        cause_missing: observed.cause_missing,
    })
}

/// Consumes every office's topic.
pub struct AllOffices(pub Arc<Timelines>);

#[async_trait]
impl Handler for AllOffices {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError> {
        Ok(self.0.observe(event).await?)
    }
}

#[cfg(test)]
mod tests {
    use svcops_eventstore::SqliteStore;

    use super::*;

    /// An event of `stream_id` at `version` on `case_id`, caused by `causation_id`.
    fn event_in(
        case_id: Uuid,
        stream_id: &str,
        version: u64,
        causation_id: Option<Uuid>,
        source: &str,
    ) -> BusEvent {
        BusEvent {
            source: source.into(),
            stream_id: stream_id.into(),
            version,
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

    fn bus_event(case_id: Uuid, causation_id: Option<Uuid>, source: &str) -> BusEvent {
        event_in(
            case_id,
            &format!("x-{}", Uuid::now_v7()),
            1,
            causation_id,
            source,
        )
    }

    async fn open(path: &std::path::Path, limits: Limits) -> Arc<Timelines> {
        let store = SqliteStore::open(path).await.expect("store");
        Arc::new(
            Timelines::open(
                Arc::new(store),
                Arc::new(tokio::sync::Notify::new()),
                limits,
            )
            .await
            .expect("timelines"),
        )
    }

    async fn timelines_with(limits: Limits) -> (tempfile::TempDir, Arc<Timelines>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let timelines = open(&dir.path().join("listen.db"), limits).await;
        (dir, timelines)
    }

    async fn timelines() -> (tempfile::TempDir, Arc<Timelines>) {
        timelines_with(Limits::default()).await
    }

    /// Observes `event`, failing if that blocks: a consumer must never wait for a cause.
    async fn observe(timelines: &Timelines, event: &BusEvent) {
        tokio::time::timeout(Duration::from_secs(2), timelines.observe(event))
            .await
            .expect("observing never waits for a cause")
            .expect("observed");
    }

    async fn event_ids(timelines: &Timelines, case_id: Uuid) -> Vec<String> {
        timelines
            .read(case_id, 0, 100)
            .await
            .expect("read")
            .into_iter()
            .map(|entry| entry.event_id)
            .collect()
    }

    fn ids(events: &[&BusEvent]) -> Vec<String> {
        events
            .iter()
            .map(|event| event.event_id.to_string())
            .collect()
    }

    #[tokio::test]
    async fn an_effect_that_arrives_first_is_held_aside_without_blocking_and_follows_its_cause() {
        let (_dir, timelines) = timelines().await;
        let case_id = Uuid::now_v7();
        let cause = bus_event(case_id, None, "svcops/front-office");
        let effect = bus_event(case_id, Some(cause.event_id), "svcops/middle-office");
        observe(&timelines, &effect).await;
        assert!(
            event_ids(&timelines, case_id).await.is_empty(),
            "held aside"
        );
        observe(&timelines, &cause).await;
        assert_eq!(
            event_ids(&timelines, case_id).await,
            ids(&[&cause, &effect])
        );
    }

    #[tokio::test]
    async fn a_chain_arriving_backwards_is_recorded_cause_first() {
        let (_dir, timelines) = timelines().await;
        let case_id = Uuid::now_v7();
        let opened = bus_event(case_id, None, "svcops/front-office");
        let work_order = bus_event(case_id, Some(opened.event_id), "svcops/middle-office");
        let target = bus_event(case_id, Some(work_order.event_id), "svcops/back-office");
        observe(&timelines, &target).await;
        observe(&timelines, &work_order).await;
        observe(&timelines, &opened).await;
        assert_eq!(
            event_ids(&timelines, case_id).await,
            ids(&[&opened, &work_order, &target])
        );
    }

    #[tokio::test]
    async fn a_later_event_of_a_held_events_stream_does_not_overtake_it() {
        let (_dir, timelines) = timelines().await;
        let case_id = Uuid::now_v7();
        let cause = bus_event(case_id, None, "svcops/front-office");
        let first = event_in(
            case_id,
            "sla-1",
            1,
            Some(cause.event_id),
            "svcops/back-office",
        );
        let second = event_in(case_id, "sla-1", 2, None, "svcops/back-office");
        observe(&timelines, &first).await;
        observe(&timelines, &second).await;
        assert!(event_ids(&timelines, case_id).await.is_empty(), "both held");
        observe(&timelines, &cause).await;
        assert_eq!(
            event_ids(&timelines, case_id).await,
            ids(&[&cause, &first, &second])
        );
    }

    #[tokio::test]
    async fn held_effects_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("listen.db");
        let case_id = Uuid::now_v7();
        let cause = bus_event(case_id, None, "svcops/front-office");
        let effect = bus_event(case_id, Some(cause.event_id), "svcops/middle-office");
        let behind = event_in(case_id, &effect.stream_id, 2, None, "svcops/middle-office");
        {
            let timelines = open(&path, Limits::default()).await;
            observe(&timelines, &effect).await;
            observe(&timelines, &behind).await;
            // Acknowledged and gone from memory: only the store remembers.
        }
        let timelines = open(&path, Limits::default()).await;
        // A redelivery after the restart is harmless.
        observe(&timelines, &effect).await;
        assert!(event_ids(&timelines, case_id).await.is_empty());
        observe(&timelines, &cause).await;
        assert_eq!(
            event_ids(&timelines, case_id).await,
            ids(&[&cause, &effect, &behind])
        );
        let again = open(&path, Limits::default()).await;
        again.sweep(OffsetDateTime::now_utc()).await.expect("sweep");
        assert_eq!(event_ids(&again, case_id).await.len(), 3, "released once");
    }

    #[tokio::test]
    async fn past_the_age_bound_an_effect_is_recorded_marked_and_its_late_cause_follows() {
        let limits = Limits {
            max_held: 100,
            max_age: Duration::from_secs(60),
        };
        let (_dir, timelines) = timelines_with(limits).await;
        let case_id = Uuid::now_v7();
        let cause = bus_event(case_id, None, "svcops/middle-office");
        let flagged = bus_event(case_id, Some(cause.event_id), "svcops/front-office");
        observe(&timelines, &flagged).await;
        let now = OffsetDateTime::now_utc();
        timelines.sweep(now).await.expect("sweep");
        assert!(
            event_ids(&timelines, case_id).await.is_empty(),
            "within the bound"
        );
        timelines
            .sweep(now + Duration::from_secs(61))
            .await
            .expect("sweep");
        observe(&timelines, &cause).await;
        let entries = timelines.read(case_id, 0, 10).await.expect("read");
        assert_eq!(
            entries
                .iter()
                .map(|entry| (entry.event_id.clone(), entry.cause_missing))
                .collect::<Vec<_>>(),
            [
                (flagged.event_id.to_string(), true),
                (cause.event_id.to_string(), false)
            ]
        );
    }

    #[tokio::test]
    async fn past_the_count_bound_the_oldest_is_recorded_marked() {
        let limits = Limits {
            max_held: 1,
            max_age: Duration::from_secs(3600),
        };
        let (_dir, timelines) = timelines_with(limits).await;
        let case_id = Uuid::now_v7();
        let oldest = bus_event(case_id, Some(Uuid::now_v7()), "svcops/front-office");
        let newer = bus_event(case_id, Some(Uuid::now_v7()), "svcops/back-office");
        observe(&timelines, &oldest).await;
        observe(&timelines, &newer).await;
        let entries = timelines.read(case_id, 0, 10).await.expect("read");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].event_id, oldest.event_id.to_string());
        assert!(entries[0].cause_missing);
    }

    #[tokio::test]
    async fn redelivery_records_an_event_once() {
        let (_dir, timelines) = timelines().await;
        let case_id = Uuid::now_v7();
        let event = bus_event(case_id, None, "svcops/front-office");
        observe(&timelines, &event).await;
        observe(&timelines, &event).await;
        let effect = bus_event(case_id, Some(Uuid::now_v7()), "svcops/back-office");
        observe(&timelines, &effect).await;
        observe(&timelines, &effect).await;
        assert_eq!(timelines.read(case_id, 0, 10).await.expect("read").len(), 1);
    }

    #[tokio::test]
    async fn reading_after_the_last_possible_sequence_is_empty() {
        let (_dir, timelines) = timelines().await;
        let case_id = Uuid::now_v7();
        observe(&timelines, &bus_event(case_id, None, "svcops/front-office")).await;
        assert!(
            timelines
                .read(case_id, u64::MAX, 10)
                .await
                .expect("read")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_case_is_known_once_an_office_event_of_it_is_on_the_timeline_or_held() {
        let (_dir, timelines) = timelines().await;
        let case_id = Uuid::now_v7();
        assert!(!timelines.case_known(case_id).await.expect("known"));
        // Listen-in's own session events do not make a case known.
        observe(&timelines, &bus_event(case_id, None, SOURCE)).await;
        assert!(!timelines.case_known(case_id).await.expect("known"));
        let held = Uuid::now_v7();
        observe(
            &timelines,
            &bus_event(held, Some(Uuid::now_v7()), "svcops/back-office"),
        )
        .await;
        assert!(timelines.case_known(held).await.expect("known"));
        observe(&timelines, &bus_event(case_id, None, "svcops/front-office")).await;
        assert!(timelines.case_known(case_id).await.expect("known"));
    }

    #[tokio::test]
    async fn waiting_for_a_case_ends_when_its_first_event_lands_or_the_grace_runs_out() {
        let (_dir, timelines) = timelines().await;
        let unknown = Uuid::now_v7();
        assert!(
            !timelines
                .wait_for_case(
                    unknown,
                    tokio::time::Instant::now() + Duration::from_millis(100)
                )
                .await
                .expect("wait")
        );
        let opened_now = Uuid::now_v7();
        let waiting = tokio::spawn({
            let timelines = timelines.clone();
            async move {
                timelines
                    .wait_for_case(
                        opened_now,
                        tokio::time::Instant::now() + Duration::from_secs(30),
                    )
                    .await
            }
        });
        observe(
            &timelines,
            &bus_event(opened_now, None, "svcops/front-office"),
        )
        .await;
        let found = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by the entry, not the grace")
            .expect("join")
            .expect("wait");
        assert!(found);
    }

    async fn session_events(timelines: &Timelines, session_id: Uuid) -> Vec<RecordedEvent> {
        read_whole_stream(timelines.store.as_ref(), &session_stream(session_id))
            .await
            .expect("read")
    }

    fn end_reason(event: &RecordedEvent) -> Option<String> {
        decode::<proto::ListenSessionEnded>(&event.event_type, &event.payload)
            .expect("decode")
            .map(|ended| ended.reason)
    }

    #[tokio::test]
    async fn a_session_left_open_is_ended_at_the_next_start_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("listen.db");
        let listener = Principal {
            subject: "ceo".into(),
            role: Role::Executive,
        };
        let context = CommandContext::from_caller(listener);
        let (case_id, open_session, closed_session) =
            (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        {
            let timelines = open(&path, Limits::default()).await;
            for session in [open_session, closed_session] {
                timelines
                    .start_session(&context, session, case_id, proto::ListenMode::Observe)
                    .await
                    .expect("start");
            }
            timelines
                .end_session(&context, closed_session, case_id, ENDED_LISTENER_LEFT)
                .await
                .expect("end");
            // The process dies here: `open_session` has no end.
        }
        let timelines = open(&path, Limits::default()).await;
        assert_eq!(timelines.end_sessions_left_open().await.expect("ended"), 1);
        let events = session_events(&timelines, open_session).await;
        assert_eq!(events.len(), 2);
        assert_eq!(end_reason(&events[1]).as_deref(), Some(ENDED_RESTARTED));
        assert_eq!(events[1].metadata.actor_subject, "ceo");
        assert_eq!(events[1].metadata.causation_id, Some(events[0].event_id));
        let closed = session_events(&timelines, closed_session).await;
        assert_eq!(closed.len(), 2, "an ended session is not ended again");
        assert_eq!(end_reason(&closed[1]).as_deref(), Some(ENDED_LISTENER_LEFT));
        // The next start has nothing left to end.
        let again = open(&path, Limits::default()).await;
        assert_eq!(again.end_sessions_left_open().await.expect("ended"), 0);
    }
}

#[cfg(test)]
mod kept_payload_tests {
    use prost::Message;
    use svcops_bus::envelope::BusEvent;
    use svcops_eventstore::EventMetadata;
    use svcops_proto::frontoffice::v1::CaseOpened;
    use time::OffsetDateTime;
    use uuid::Uuid;

    #[test]
    fn a_plain_phone_from_before_sealing_is_not_kept() {
        let mut payload = CaseOpened {
            case_id: Uuid::now_v7().to_string(),
            summary: "lamp flickers".into(),
            ..Default::default()
        }
        .encode_to_vec();
        // Field 2 (reserved, once the plain phone), length-delimited: what an old event holds.
        let phone = b"+8613800001234";
        payload.extend([2 << 3 | 2, phone.len() as u8]);
        payload.extend(phone);
        let event = BusEvent {
            source: "svcops/front-office".into(),
            stream_id: "case-1".into(),
            version: 1,
            event_id: Uuid::now_v7(),
            event_type: <CaseOpened as prost::Name>::full_name(),
            payload,
            metadata: EventMetadata {
                case_id: None,
                actor_subject: "agent".into(),
                actor_role: "agent".into(),
                correlation_id: Uuid::now_v7(),
                causation_id: None,
                traceparent: None,
                occurred_at: OffsetDateTime::now_utc(),
            },
            recorded_at: OffsetDateTime::now_utc(),
        };
        let kept = super::kept_payload(&event);
        assert!(
            !kept.windows(phone.len()).any(|window| window == phone),
            "the plain phone is gone"
        );
        let decoded = CaseOpened::decode(kept.as_slice()).expect("still a CaseOpened");
        assert_eq!(decoded.summary, "lamp flickers");
    }
}
