//! Reacting to the other offices, tracking queries, and the statistics read model.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use svcops_bus::consumer::{Handler, HandlerError};
use svcops_bus::envelope::BusEvent;
use svcops_bus::relay::Tap;
use svcops_eventstore::{
    Append, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamId, read_whole_stream,
};
use svcops_kit::events::CommandContext;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::codec::{self, Encoded, Upstream};
use crate::domain::{ClosedLoop, SlaClock, SlaCommand};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("case {0} is not tracked")]
    NotFound(Uuid),
    #[error(transparent)]
    Store(#[from] svcops_eventstore::Error),
    #[error(transparent)]
    Corrupt(#[from] codec::Error),
}

/// How often a reaction re-reads and retries when another writer won the race.
const CONFLICT_RETRIES: usize = 5;

pub fn sla_stream(case_id: Uuid) -> StreamId {
    StreamId::for_aggregate("sla", case_id)
}

pub fn closed_loop_stream(case_id: Uuid) -> StreamId {
    StreamId::for_aggregate("closedloop", case_id)
}

fn expected(version: u64) -> ExpectedVersion {
    if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    }
}

fn encoded_event(context: &CommandContext, case_id: Uuid, encoded: &Encoded) -> NewEvent {
    match encoded {
        Encoded::Started(message) => context.event(Some(case_id), message),
        Encoded::OnSite(message) => context.event(Some(case_id), message),
        Encoded::Awaiting(message) => context.event(Some(case_id), message),
        Encoded::Loop(message) => context.event(Some(case_id), message),
    }
}

/// What the back office knows about one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    pub case_id: Uuid,
    pub sla: SlaClock,
    pub closed_loop: ClosedLoop,
}

pub struct BackOffice {
    store: Arc<dyn EventStore>,
    relay: Arc<Notify>,
    stats: Arc<Stats>,
}

impl BackOffice {
    pub fn new(store: Arc<dyn EventStore>, relay: Arc<Notify>, stats: Arc<Stats>) -> Self {
        Self {
            store,
            relay,
            stats,
        }
    }

    async fn load_sla(&self, case_id: Uuid) -> Result<(SlaClock, u64), Error> {
        let events = read_whole_stream(self.store.as_ref(), &sla_stream(case_id)).await?;
        let mut clock = SlaClock::default();
        for recorded in &events {
            if let Some(event) = codec::decode_sla(&recorded.event_type, &recorded.payload)? {
                clock.apply(event);
            }
        }
        Ok((clock, events.last().map_or(0, |event| event.version)))
    }

    async fn load_loop(&self, case_id: Uuid) -> Result<(ClosedLoop, u64), Error> {
        let events = read_whole_stream(self.store.as_ref(), &closed_loop_stream(case_id)).await?;
        let mut item = ClosedLoop::default();
        for recorded in &events {
            if let Some(event) = codec::decode_loop(&recorded.event_type, &recorded.payload)? {
                item.apply(event);
            }
        }
        Ok((item, events.last().map_or(0, |event| event.version)))
    }

    pub async fn tracking(&self, case_id: Uuid) -> Result<Tracking, Error> {
        let (sla, sla_version) = self.load_sla(case_id).await?;
        let (closed_loop, loop_version) = self.load_loop(case_id).await?;
        if sla_version == 0 && loop_version == 0 {
            return Err(Error::NotFound(case_id));
        }
        Ok(Tracking {
            case_id,
            sla,
            closed_loop,
        })
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// What a reaction would append now, to which stream, at which version.
    async fn decide(
        &self,
        reaction: &Reaction,
        context: &CommandContext,
    ) -> Result<(StreamId, Vec<NewEvent>, u64), Error> {
        Ok(match *reaction {
            Reaction::StartSla {
                case_id,
                priority,
                at,
            } => {
                let (clock, version) = self.load_sla(case_id).await?;
                let events = clock.decide(SlaCommand::Start {
                    case_id,
                    priority,
                    at,
                });
                let events = events
                    .iter()
                    .map(|event| encoded_event(context, case_id, &codec::encode_sla(event)))
                    .collect();
                (sla_stream(case_id), events, version)
            }
            Reaction::OpenClosedLoop { case_id } => {
                let (item, version) = self.load_loop(case_id).await?;
                let events = item
                    .open(case_id)
                    .iter()
                    .map(|event| encoded_event(context, case_id, &codec::encode_loop(event)))
                    .collect();
                (closed_loop_stream(case_id), events, version)
            }
            Reaction::SetOnSiteTarget {
                case_id,
                work_order_id,
            } => {
                let (clock, version) = self.load_sla(case_id).await?;
                let events = clock.decide(SlaCommand::SetOnSiteTarget {
                    case_id,
                    work_order_id,
                });
                let events = events
                    .iter()
                    .map(|event| encoded_event(context, case_id, &codec::encode_sla(event)))
                    .collect();
                (sla_stream(case_id), events, version)
            }
        })
    }

    /// One reaction: load, decide, append with the cause's id in the idempotency key; re-read
    /// and retry if a concurrent reaction on the same stream won.
    async fn react(
        &self,
        cause: &BusEvent,
        reaction: Reaction,
        context: &CommandContext,
    ) -> Result<(), HandlerError> {
        let key = format!("back-office/{}/{}", reaction.name(), cause.event_id);
        for _ in 0..CONFLICT_RETRIES {
            let (stream, events, version) = self
                .decide(&reaction, context)
                .await
                .map_err(handler_error)?;
            if events.is_empty() {
                return Ok(());
            }
            let append =
                Append::new(stream, expected(version), events).idempotency_key(key.clone());
            match self.store.append(append).await {
                Ok(_) => {
                    self.relay.notify_one();
                    return Ok(());
                }
                Err(svcops_eventstore::Error::Concurrency { .. }) => continue,
                Err(error) => return Err(handler_error(error.into())),
            }
        }
        Err(HandlerError::Unavailable(format!(
            "{key}: too many concurrent writers"
        )))
    }

    pub async fn on_upstream(&self, cause: &BusEvent) -> Result<(), HandlerError> {
        let upstream = codec::decode_upstream(&cause.event_type, &cause.payload)
            .map_err(|error| HandlerError::Failed(error.to_string()))?;
        // The payload's case must be the one the envelope names (and the message was keyed
        // and ordered by): a mismatch is a broken producer, not something to guess about.
        if let Some(upstream) = &upstream
            && cause.metadata.case_id != Some(upstream.case_id())
        {
            return Err(HandlerError::Failed(format!(
                "payload case {} differs from the envelope's case {:?}",
                upstream.case_id(),
                cause.metadata.case_id
            )));
        }
        let context = CommandContext::reacting_to(crate::SERVICE, cause);
        let at = cause.metadata.occurred_at;
        match upstream {
            None => Ok(()),
            Some(Upstream::CaseOpened { case_id, priority }) => {
                self.react(
                    cause,
                    Reaction::StartSla {
                        case_id,
                        priority,
                        at,
                    },
                    &context,
                )
                .await?;
                self.react(cause, Reaction::OpenClosedLoop { case_id }, &context)
                    .await
            }
            Some(Upstream::WorkOrderOpened {
                case_id,
                work_order_id,
            }) => {
                self.react(
                    cause,
                    Reaction::SetOnSiteTarget {
                        case_id,
                        work_order_id,
                    },
                    &context,
                )
                .await
            }
        }
    }
}

/// Something the back office does in reaction to another office's event.
enum Reaction {
    StartSla {
        case_id: Uuid,
        priority: crate::domain::Priority,
        at: time::OffsetDateTime,
    },
    OpenClosedLoop {
        case_id: Uuid,
    },
    SetOnSiteTarget {
        case_id: Uuid,
        work_order_id: Uuid,
    },
}

impl Reaction {
    fn name(&self) -> &'static str {
        match self {
            Reaction::StartSla { .. } => "sla-start",
            Reaction::OpenClosedLoop { .. } => "closed-loop",
            Reaction::SetOnSiteTarget { .. } => "on-site",
        }
    }
}

fn handler_error(error: Error) -> HandlerError {
    match error {
        Error::Store(svcops_eventstore::Error::Unavailable(error)) => {
            HandlerError::Unavailable(error.to_string())
        }
        other => HandlerError::Failed(other.to_string()),
    }
}

/// Consumes the front and middle offices' topics.
pub struct UpstreamEvents(pub Arc<BackOffice>);

#[async_trait]
impl Handler for UpstreamEvents {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError> {
        self.0.on_upstream(event).await
    }
}

/// Read model: exact counters, because each comes from an event in the log and each event
/// counts once (by stream and version).
#[derive(Default)]
pub struct Stats {
    inner: Mutex<StatsInner>,
}

#[derive(Default)]
struct StatsInner {
    seen: HashSet<(String, u64)>,
    cases_tracked: u64,
    closed_loop_open: u64,
    work_orders_tracked: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub cases_tracked: u64,
    pub closed_loop_open: u64,
    pub work_orders_tracked: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        StatsSnapshot {
            cases_tracked: inner.cases_tracked,
            closed_loop_open: inner.closed_loop_open,
            work_orders_tracked: inner.work_orders_tracked,
        }
    }
}

impl Tap for Stats {
    fn observe(&self, events: &[RecordedEvent]) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for recorded in events {
            if !inner
                .seen
                .insert((recorded.stream_id.to_string(), recorded.version))
            {
                continue;
            }
            match codec::decode_sla(&recorded.event_type, &recorded.payload) {
                Ok(Some(crate::domain::SlaEvent::Started { .. })) => inner.cases_tracked += 1,
                Ok(Some(crate::domain::SlaEvent::OnSiteTargetSet { .. })) => {
                    inner.work_orders_tracked += 1;
                }
                Ok(None | Some(crate::domain::SlaEvent::WorkOrderAwaitingCase { .. })) => {}
                Err(error) => tracing::error!(%error, "stats skip an undecodable event"),
            }
            if let Ok(Some(crate::domain::LoopEvent::Opened { .. })) =
                codec::decode_loop(&recorded.event_type, &recorded.payload)
            {
                inner.closed_loop_open += 1;
            }
        }
    }
}
