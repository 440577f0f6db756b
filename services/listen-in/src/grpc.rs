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
use crate::session_log::{self, SessionLog};
use crate::timeline::{Entry, Timelines};

/// Entries read from the store at once.
const PAGE: usize = 500;

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
    /// shutdown, when sessions stop following). Whatever is left is aborted; the next
    /// start records those ends ([`SessionLog::end_sessions_left_open`]).
    pub async fn ended(&self, bound: Duration) {
        let mut set = std::mem::take(&mut *self.0.lock());
        let all = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(bound, all).await.is_err() {
            tracing::warn!(
                left = set.len(),
                "listen-in sessions did not record their end in time; the next start will"
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
}

impl ListenInGrpc {
    pub fn new(
        timelines: Arc<Timelines>,
        session_log: Arc<SessionLog>,
        shutdown: CancellationToken,
        sessions: Sessions,
        unknown_case_grace: UnknownCaseGrace,
    ) -> Self {
        Self {
            timelines,
            session_log,
            shutdown,
            sessions,
            unknown_case_grace,
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
/// or `None` when the listener has gone.
async fn send_from_store(
    timelines: &Timelines,
    case_id: Uuid,
    mut last: u64,
    sender: &Sender,
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
            sender.send(Ok(to_proto(entry))).await.ok()?;
        }
        if done {
            return Some(last);
        }
    }
}

/// Why a session stopped following, as its end records it.
fn end_reason(catch_up_only: bool, shut_down: bool) -> &'static str {
    if shut_down {
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
    shutdown: CancellationToken,
) {
    // Subscribe before the catch-up read, so nothing appended in between is missed.
    let mut live = timelines.subscribe();
    let Some(mut last) = send_from_store(&timelines, case_id, after, &sender).await else {
        return;
    };
    let caught_up = proto::WatchCaseResponse {
        kind: Some(proto::watch_case_response::Kind::CaughtUp(
            proto::CaughtUp {
                last_sequence: last,
            },
        )),
    };
    if sender.send(Ok(caught_up)).await.is_err() || catch_up_only {
        return;
    }
    loop {
        let wake = tokio::select! {
            () = shutdown.cancelled() => return,
            () = sender.closed() => return,
            wake = live.recv() => wake,
        };
        let behind = match wake {
            Ok(appended) => appended.case_id == case_id && appended.sequence > last,
            // Fell behind the live feed: the store has everything, read from there.
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                tracing::debug!(%case_id, skipped, "listener lagged; catching up from the store");
                true
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if behind {
            match send_from_store(&timelines, case_id, last, &sender).await {
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
            .start(&context, session_id, case_id, proto::ListenMode::Observe)
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?;
        tracing::info!(%case_id, %session_id, listener = %listener.subject, "listen-in session started");
        let catch_up_only = body.catch_up_only;
        self.sessions.spawn(async move {
            follow(
                timelines.clone(),
                case_id,
                body.after_sequence,
                catch_up_only,
                sender,
                shutdown.clone(),
            )
            .await;
            let reason = end_reason(catch_up_only, shutdown.is_cancelled());
            if let Err(error) = session_log
                .end(&context, session_id, case_id, reason)
                .await
            {
                tracing::warn!(%error, %session_id, "could not record the end of a listen-in session; the next start will");
            }
            tracing::info!(%case_id, %session_id, reason, "listen-in session ended");
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}

#[cfg(test)]
mod tests {
    use svcops_bus::envelope::BusEvent;
    use svcops_eventstore::{EventMetadata, EventStore, SqliteStore};
    use svcops_kit::{Principal, Role};
    use time::OffsetDateTime;
    use tokio_stream::StreamExt;

    use super::*;
    use crate::hold_aside::Limits;

    struct Harness {
        _dir: tempfile::TempDir,
        store: Arc<dyn EventStore>,
        timelines: Arc<Timelines>,
        shutdown: CancellationToken,
        sessions: Sessions,
        grpc: ListenInGrpc,
    }

    async fn harness(grace: Duration) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("listen.db"))
            .await
            .expect("store");
        let store: Arc<dyn EventStore> = Arc::new(store);
        let timelines = Arc::new(
            Timelines::open(store.clone(), Limits::default())
                .await
                .expect("timelines"),
        );
        let session_log = Arc::new(SessionLog::new(
            store.clone(),
            Arc::new(tokio::sync::Notify::new()),
        ));
        let shutdown = CancellationToken::new();
        let sessions = Sessions::default();
        let grace = UnknownCaseGrace {
            per_request: grace,
            not_before: tokio::time::Instant::now(),
        };
        let grpc = ListenInGrpc::new(
            timelines.clone(),
            session_log,
            shutdown.clone(),
            sessions.clone(),
            grace,
        );
        Harness {
            _dir: dir,
            store,
            timelines,
            shutdown,
            sessions,
            grpc,
        }
    }

    fn opened(case_id: Uuid) -> BusEvent {
        BusEvent {
            source: "svcops/front-office".into(),
            stream_id: format!("case-{case_id}"),
            version: 1,
            event_id: Uuid::now_v7(),
            event_type: "svcops.frontoffice.v1.CaseOpened".into(),
            payload: vec![],
            metadata: EventMetadata {
                case_id: Some(case_id),
                actor_subject: "agent".into(),
                actor_role: "agent".into(),
                correlation_id: Uuid::now_v7(),
                causation_id: None,
                traceparent: None,
                occurred_at: OffsetDateTime::UNIX_EPOCH,
            },
            recorded_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn watch(
        case_id: Uuid,
        after_sequence: u64,
        catch_up_only: bool,
    ) -> Request<proto::WatchCaseRequest> {
        let mut request = Request::new(proto::WatchCaseRequest {
            case_id: case_id.to_string(),
            catch_up_only,
            after_sequence,
        });
        request.extensions_mut().insert(Principal {
            subject: "ceo".into(),
            role: Role::Executive,
        });
        request
    }

    async fn responses(
        stream: <ListenInGrpc as ListenInService>::WatchCaseStream,
    ) -> Vec<proto::watch_case_response::Kind> {
        tokio::time::timeout(Duration::from_secs(5), stream.collect::<Vec<_>>())
            .await
            .expect("a catch-up-only stream ends")
            .into_iter()
            .map(|item| item.expect("item").kind.expect("kind"))
            .collect()
    }

    #[tokio::test]
    async fn a_case_no_office_recorded_is_not_found_after_the_grace() {
        let harness = harness(Duration::from_millis(100)).await;
        let status = harness
            .grpc
            .watch_case(watch(Uuid::now_v7(), 0, false))
            .await
            .err()
            .expect("not found");
        assert_eq!(status.code(), tonic::Code::NotFound);
    }

    #[tokio::test]
    async fn a_case_opened_a_moment_ago_is_watchable() {
        let harness = harness(Duration::from_secs(30)).await;
        let case_id = Uuid::now_v7();
        let watching = harness.grpc.watch_case(watch(case_id, 0, true));
        let relayed = async {
            tokio::task::yield_now().await;
            harness
                .timelines
                .observe(&opened(case_id))
                .await
                .expect("observe");
        };
        let (watched, ()) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(watching, relayed)
        })
        .await
        .expect("woken by the case's first entry, well within the grace");
        let kinds = responses(watched.expect("watch").into_inner()).await;
        assert!(
            matches!(&kinds[0], proto::watch_case_response::Kind::Entry(entry) if entry.event_type == "svcops.frontoffice.v1.CaseOpened"),
            "{kinds:?}"
        );
    }

    #[tokio::test]
    async fn after_the_last_possible_sequence_the_catch_up_is_empty() {
        let harness = harness(Duration::from_millis(100)).await;
        let case_id = Uuid::now_v7();
        harness
            .timelines
            .observe(&opened(case_id))
            .await
            .expect("observe");
        let stream = harness
            .grpc
            .watch_case(watch(case_id, u64::MAX, true))
            .await
            .expect("watch")
            .into_inner();
        let kinds = responses(stream).await;
        assert!(
            matches!(
                kinds.as_slice(),
                [proto::watch_case_response::Kind::CaughtUp(_)]
            ),
            "{kinds:?}"
        );
    }

    #[tokio::test]
    async fn a_graceful_stop_waits_for_the_sessions_to_record_their_end() {
        let harness = harness(Duration::from_millis(100)).await;
        let case_id = Uuid::now_v7();
        harness
            .timelines
            .observe(&opened(case_id))
            .await
            .expect("observe");
        let mut stream = harness
            .grpc
            .watch_case(watch(case_id, 0, false))
            .await
            .expect("watch")
            .into_inner();
        let _entry = stream.next().await.expect("entry").expect("ok");
        harness.shutdown.cancel();
        harness.sessions.ended(Duration::from_secs(5)).await;
        // Straight after: no task of the session is left to record anything.
        let ended: Vec<String> = harness
            .store
            .read_all(0, 1000)
            .await
            .expect("read")
            .iter()
            .filter(|event| event.metadata.case_id == Some(case_id))
            .filter_map(|event| {
                svcops_kit::events::decode::<proto::ListenSessionEnded>(
                    &event.event_type,
                    &event.payload,
                )
                .expect("decode")
            })
            .map(|ended| ended.reason)
            .collect();
        assert_eq!(ended, [session_log::ENDED_SHUT_DOWN]);
    }
}
