//! The gRPC edge: `WatchCase` replays a case's timeline, then follows it live.

use std::pin::Pin;
use std::sync::Arc;

use svcops_kit::ApiError;
use svcops_kit::auth::{Role, authorize};
use svcops_kit::events::{CommandContext, to_timestamp};
use svcops_proto::common::v1 as common;
use svcops_proto::listenin::v1 as proto;
use svcops_proto::listenin::v1::listen_in_service_server::ListenInService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::app::{Entry, Error, Timelines};
use crate::describe::describe;

/// Entries read from the store at once.
const PAGE: usize = 500;

pub struct ListenInGrpc {
    timelines: Arc<Timelines>,
    shutdown: CancellationToken,
}

impl ListenInGrpc {
    pub fn new(timelines: Arc<Timelines>, shutdown: CancellationToken) -> Self {
        Self {
            timelines,
            shutdown,
        }
    }
}

fn to_status(error: Error) -> Status {
    match error {
        Error::Store(error) => ApiError::from(error),
        Error::Corrupt(error) => ApiError::Internal(error.to_string()),
    }
    .into()
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
                let _ = sender.send(Err(to_status(error))).await;
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
        let session_id = Uuid::now_v7();
        let context = CommandContext::from_caller(listener.clone());
        let (sender, receiver) = mpsc::channel(256);
        let timelines = self.timelines.clone();
        let shutdown = self.shutdown.clone();
        // Every listen is on the record: start before the first entry, end when it stops.
        timelines
            .record_session(
                &context,
                session_id,
                case_id,
                &proto::ListenSessionStarted {
                    session_id: session_id.to_string(),
                    case_id: case_id.to_string(),
                    mode: proto::ListenMode::Observe.into(),
                },
            )
            .await
            .map_err(to_status)?;
        tracing::info!(%case_id, %session_id, listener = %listener.subject, "listen-in session started");
        tokio::spawn(async move {
            follow(
                timelines.clone(),
                case_id,
                body.after_sequence,
                body.catch_up_only,
                sender,
                shutdown,
            )
            .await;
            let ended = proto::ListenSessionEnded {
                session_id: session_id.to_string(),
                case_id: case_id.to_string(),
            };
            if let Err(error) = timelines
                .record_session(&context, session_id, case_id, &ended)
                .await
            {
                tracing::warn!(%error, %session_id, "could not record the end of a listen-in session");
            }
            tracing::info!(%case_id, %session_id, "listen-in session ended");
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}
