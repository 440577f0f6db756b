//! The durable side of holding aside: every held event is also appended to a local-only
//! stream, so an acknowledged delivery is never lost, and a start holds aside again what an
//! earlier run held and did not record. The ordering itself is [`crate::hold_aside`].

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use svcops_bus::envelope::BusEvent;
use svcops_eventstore::{Append, ExpectedVersion, NewEvent, RecordedEvent, StreamId};
use svcops_kit::events::from_timestamp;
use svcops_proto::listenin::v1 as proto;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Error, Timelines, arrival, observed};
use crate::hold_aside::{Arrival, HeldAside, Release};

/// Events held aside right now, waiting for their cause (gauge).
pub const HELD_EVENTS: &str = "svcops_listen_in_held_events";

/// Checkpoint: the part of [`held_stream`] already dealt with by an earlier start.
const HELD_CHECKPOINT: &str = "listen-in/held-aside";

/// Records read at once when restoring at start.
const PAGE: usize = 500;

/// Local-only: every event ever held aside, in the order it was (the durable side of
/// [`HeldAside`]; what is still waiting is what is not on its timeline).
pub const HELD_STREAM: &str = "listen_in_held";

fn held_stream() -> StreamId {
    StreamId::parse(HELD_STREAM).unwrap_or_else(|_| unreachable!("valid stream id"))
}

fn held_key(event_id: Uuid) -> String {
    format!("listen-in/held/{event_id}")
}

/// An event held aside, and where its durable copy is.
#[derive(Debug)]
pub(super) struct HeldEvent {
    pub(super) event: BusEvent,
    /// Version in [`held_stream`].
    held_version: u64,
}

/// What is held aside, in memory, with the bookkeeping of its durable copy.
#[derive(Debug, Default)]
pub(super) struct Holding {
    pub(super) aside: HeldAside<HeldEvent>,
    /// Last version of [`held_stream`] known.
    held_end: u64,
    /// [`HELD_CHECKPOINT`] as last saved.
    checkpoint: u64,
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
    /// Holds `event` aside, durably first, then releases whatever is over the bound.
    pub(super) async fn hold_aside(
        &self,
        holding: &mut Holding,
        event: &BusEvent,
        arrival: Arrival,
        cause_on_timeline: bool,
    ) -> Result<(), Error> {
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
        let outcome = self.record_released(holding, released).await;
        ::metrics::gauge!(HELD_EVENTS).set(holding.aside.len() as f64);
        outcome
    }

    /// Enforces the age bound and retries releases that failed; advances the checkpoint of
    /// the held-aside records. Run periodically ([`sweep_until`]).
    pub async fn sweep(&self, now: OffsetDateTime) -> Result<(), Error> {
        let mut holding = self.holding.lock().await;
        // What another process held aside past what this one knows (a recorder that lost
        // its lease finishing a write) is taken in before the checkpoint can pass it.
        let from = holding.held_end + 1;
        self.pick_up(&mut holding, from).await?;
        let mut released = holding.aside.ready();
        released.extend(holding.aside.over_bound(now, &self.limits));
        self.record_released(&mut holding, released).await?;
        ::metrics::gauge!(HELD_EVENTS).set(holding.aside.len() as f64);
        if self.lost_recording() {
            // Another replica records now; the checkpoint is its to move.
            return Ok(());
        }
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

    /// Holds aside again what earlier runs (or another replica, until it stopped recording)
    /// held and did not record: call on taking over the recording.
    pub async fn take_over(&self) -> Result<(), svcops_eventstore::Error> {
        let mut holding = self.holding.lock().await;
        self.restore(&mut holding).await
    }

    /// Replaces what `holding` has with what the durable record holds aside.
    pub(super) async fn restore(
        &self,
        holding: &mut Holding,
    ) -> Result<(), svcops_eventstore::Error> {
        *holding = Holding::default();
        let checkpoint = self
            .store
            .load_checkpoint(HELD_CHECKPOINT)
            .await?
            .map_or(0, |position| u64::try_from(position).unwrap_or(0));
        holding.checkpoint = checkpoint;
        holding.held_end = checkpoint;
        self.pick_up(holding, checkpoint + 1).await?;
        if !holding.aside.is_empty() {
            tracing::info!(held = holding.aside.len(), "restored events held aside");
        }
        let released = holding.aside.ready();
        if let Err(error) = self.record_released(holding, released).await {
            // What could not be recorded is held again; the sweep retries it.
            tracing::warn!(%error, "could not release restored events yet");
        }
        ::metrics::gauge!(HELD_EVENTS).set(holding.aside.len() as f64);
        Ok(())
    }

    /// Holds aside the records of the held-aside stream from version `from` on that are not
    /// on their timeline (nor held here already).
    async fn pick_up(
        &self,
        holding: &mut Holding,
        mut from: u64,
    ) -> Result<(), svcops_eventstore::Error> {
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
                return Ok(());
            }
        }
    }

    /// Forgets what is held aside in memory (it stays durable): call on handing the
    /// recording over, so whoever records next restores it.
    pub async fn step_down(&self) {
        *self.holding.lock().await = Holding::default();
        ::metrics::gauge!(HELD_EVENTS).set(0.0);
    }

    /// Records `released` in order; what cannot be recorded goes back aside as it was.
    pub(super) async fn record_released(
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
