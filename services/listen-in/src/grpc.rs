//! The gRPC edge: `WatchCase` replays a case's timeline, then follows it live.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use svcops_kit::ApiError;
use svcops_kit::auth::{Role, authorize};
use svcops_kit::events::{CommandContext, to_timestamp};
use svcops_proto::common::v1 as common;
use svcops_proto::listenin::v1 as proto;
use svcops_proto::listenin::v1::listen_in_service_server::ListenInService;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::describe::describe;
use crate::replica::Registration;
use crate::session;
use crate::session_log::{self, SessionLog};
use crate::timeline::{Entry, Timelines};

/// Entries read from the store at once.
const PAGE: usize = 500;

/// How long `WatchCase` waits for this replica to be registered (just after a start).
const REGISTRATION_WAIT: Duration = Duration::from_secs(2);

/// How often a follower reads its case's timeline without being woken: wakes come from
/// the log and a missed one (an entry whose write was in flight when this replica started
/// following the log) would otherwise hold the listener back until the case's next entry.
const REREAD_EVERY: Duration = Duration::from_secs(2);

/// The running sessions, so a graceful stop can wait for their ends to be recorded.
#[derive(Clone, Default)]
pub struct Sessions(Arc<parking_lot::Mutex<JoinSet<()>>>);

impl Sessions {
    fn spawn(&self, session: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.0.lock();
        // Forget the finished ones, so the set only ever holds running sessions.
        while set.try_join_next().is_some() {}
        set.spawn(session);
    }

    /// Waits, at most `bound`, for every session to end and record its end (call after
    /// shutdown, when sessions stop following). Whatever is left is aborted; the replica
    /// recording timelines records those ends once this one's registration has lapsed
    /// ([`SessionLog::end_sessions_of_gone_replicas`]).
    pub async fn ended(&self, bound: Duration) {
        let mut set = std::mem::take(&mut *self.0.lock());
        let all = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(bound, all).await.is_err() {
            tracing::warn!(
                left = set.len(),
                "listen-in sessions did not record their end in time; the recording replica will"
            );
        }
    }
}

/// How long `WatchCase` waits for the first event of a case listen-in has not heard of
/// before answering NOT_FOUND: a case opened a moment ago is still being relayed, one that
/// no office recorded never arrives, and only waiting tells them apart (offices talk to
/// listen-in through events alone).
#[derive(Debug, Clone, Copy)]
pub struct UnknownCaseGrace {
    /// From the request: the relay-and-consume delay of a warm cluster, with room to spare.
    pub per_request: Duration,
    /// And not before this: after a start, listen-in's consumers are still joining their
    /// groups (seconds on Kafka) and nothing arrives meanwhile.
    pub not_before: tokio::time::Instant,
}

impl UnknownCaseGrace {
    fn deadline(&self) -> tokio::time::Instant {
        (tokio::time::Instant::now() + self.per_request).max(self.not_before)
    }
}

pub struct ListenInGrpc {
    timelines: Arc<Timelines>,
    session_log: Arc<SessionLog>,
    shutdown: CancellationToken,
    sessions: Sessions,
    unknown_case_grace: UnknownCaseGrace,
    registration: Registration,
}

impl ListenInGrpc {
    pub fn new(
        timelines: Arc<Timelines>,
        session_log: Arc<SessionLog>,
        shutdown: CancellationToken,
        sessions: Sessions,
        unknown_case_grace: UnknownCaseGrace,
        registration: Registration,
    ) -> Self {
        Self {
            timelines,
            session_log,
            shutdown,
            sessions,
            unknown_case_grace,
            registration,
        }
    }
}

fn office(source: &str) -> common::Office {
    match source.rsplit('/').next() {
        Some("front-office") => common::Office::Front,
        Some("middle-office") => common::Office::Middle,
        Some("back-office") => common::Office::Back,
        Some("listen-in") => common::Office::ListenIn,
        _ => common::Office::Unspecified,
    }
}

fn to_proto(entry: Entry) -> proto::WatchCaseResponse {
    let description = describe(&entry.event_type, &entry.payload, &entry.actor_subject);
    proto::WatchCaseResponse {
        kind: Some(proto::watch_case_response::Kind::Entry(
            proto::TimelineEntry {
                sequence: entry.sequence,
                event_id: entry.event_id,
                office: office(&entry.source).into(),
                event_type: entry.event_type,
                occurred_at: Some(to_timestamp(entry.occurred_at)),
                actor: Some(common::Actor {
                    subject: entry.actor_subject,
                    role: entry.actor_role,
                }),
                description,
                stream_id: entry.stream_id,
                stream_version: entry.stream_version,
                cause_missing: entry.cause_missing,
            },
        )),
    }
}

type Sender = mpsc::Sender<Result<proto::WatchCaseResponse, Status>>;

/// Sends entries after `last` until the store has no more; returns the new last sequence,
/// or `None` when the listener has gone or a stop came (a slow listener never keeps a
/// session streaming past its end).
async fn send_from_store(
    timelines: &Timelines,
    case_id: Uuid,
    mut last: u64,
    sender: &Sender,
    stops: &[CancellationToken; 2],
) -> Option<u64> {
    loop {
        let entries = match timelines.read(case_id, last, PAGE).await {
            Ok(entries) => entries,
            Err(error) => {
                let _ = sender.send(Err(ApiError::from(error).into())).await;
                return None;
            }
        };
        let done = entries.len() < PAGE;
        for entry in entries {
            last = entry.sequence;
            tokio::select! {
                sent = sender.send(Ok(to_proto(entry))) => sent.ok()?,
                () = stops[0].cancelled() => return None,
                () = stops[1].cancelled() => return None,
            }
        }
        if done {
            return Some(last);
        }
    }
}

/// Why a session stopped following, as its end records it.
fn end_reason(catch_up_only: bool, shut_down: bool, lapsed: bool) -> &'static str {
    if lapsed {
        session_log::ENDED_REPLICA_LOST
    } else if shut_down {
        session_log::ENDED_SHUT_DOWN
    } else if catch_up_only {
        session_log::ENDED_CAUGHT_UP
    } else {
        session_log::ENDED_LISTENER_LEFT
    }
}

async fn follow(
    timelines: Arc<Timelines>,
    case_id: Uuid,
    after: u64,
    catch_up_only: bool,
    sender: Sender,
    stops: &[CancellationToken; 2],
) {
    // Subscribe before the catch-up read, so nothing appended in between is missed.
    let mut live = timelines.subscribe();
    let Some(mut last) = send_from_store(&timelines, case_id, after, &sender, stops).await else {
        return;
    };
    let caught_up = proto::WatchCaseResponse {
        kind: Some(proto::watch_case_response::Kind::CaughtUp(
            proto::CaughtUp {
                last_sequence: last,
            },
        )),
    };
    let sent = tokio::select! {
        sent = sender.send(Ok(caught_up)) => sent.is_ok(),
        () = stops[0].cancelled() => false,
        () = stops[1].cancelled() => false,
    };
    if !sent || catch_up_only {
        return;
    }
    let mut reread = tokio::time::interval(REREAD_EVERY);
    reread.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reread.reset();
    loop {
        let wake = tokio::select! {
            () = stops[0].cancelled() => return,
            () = stops[1].cancelled() => return,
            () = sender.closed() => return,
            _ = reread.tick() => Ok(None),
            wake = live.recv() => wake.map(Some),
        };
        let behind = match wake {
            Ok(None) => true,
            Ok(Some(appended)) => appended.case_id == case_id && appended.sequence > last,
            // Fell behind the live feed: the store has everything, read from there.
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                tracing::debug!(%case_id, skipped, "listener lagged; catching up from the store");
                true
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if behind {
            match send_from_store(&timelines, case_id, last, &sender, stops).await {
                Some(new_last) => last = new_last,
                None => return,
            }
        }
    }
}

#[tonic::async_trait]
impl ListenInService for ListenInGrpc {
    type WatchCaseStream =
        Pin<Box<dyn Stream<Item = Result<proto::WatchCaseResponse, Status>> + Send + 'static>>;

    async fn watch_case(
        &self,
        request: Request<proto::WatchCaseRequest>,
    ) -> Result<Response<Self::WatchCaseStream>, Status> {
        let listener = authorize(&request, &[Role::Executive, Role::Manager, Role::Qa])?;
        let body = request.into_inner();
        let case_id = Uuid::parse_str(body.case_id.trim())
            .map_err(|_| Status::from(ApiError::invalid("case_id", "must be a UUID")))?;
        // A session names its replica; one not registered could not be ended by another.
        let Some(hold) = self.registration.registered(REGISTRATION_WAIT).await else {
            return Err(ApiError::Unavailable(
                "this listen-in replica is not registered (its database is unreachable); retry"
                    .into(),
            )
            .into());
        };
        // A case no office has recorded would otherwise be followed forever, empty.
        if !self
            .timelines
            .wait_for_case(case_id, self.unknown_case_grace.deadline())
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?
        {
            return Err(ApiError::NotFound {
                resource: "case",
                id: case_id.to_string(),
            }
            .into());
        }
        let session_id = Uuid::now_v7();
        let context = CommandContext::from_caller(listener.clone());
        let (sender, receiver) = mpsc::channel(256);
        let timelines = self.timelines.clone();
        let session_log = self.session_log.clone();
        let shutdown = self.shutdown.clone();
        // Every listen is on the record: start before the first entry, end when it stops.
        session_log
            .start(
                &context,
                session_id,
                case_id,
                session::Mode::Observe,
                &hold.served_by,
            )
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?;
        tracing::info!(%case_id, %session_id, listener = %listener.subject, "listen-in session started");
        let catch_up_only = body.catch_up_only;
        self.sessions.spawn(async move {
            // Stopped by a shutdown, or when this replica's registration lapses.
            let lapsed = hold.lapsed;
            let stops = [shutdown.clone(), lapsed.clone()];
            follow(
                timelines.clone(),
                case_id,
                body.after_sequence,
                catch_up_only,
                sender,
                &stops,
            )
            .await;
            let reason = end_reason(catch_up_only, shutdown.is_cancelled(), lapsed.is_cancelled());
            if let Err(error) = session_log
                .end(&context, session_id, case_id, reason)
                .await
            {
                tracing::warn!(%error, %session_id, "could not record the end of a listen-in session; the recording replica will once this registration is gone");
            }
            tracing::info!(%case_id, %session_id, reason, "listen-in session ended");
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}

#[cfg(test)]
mod tests;
