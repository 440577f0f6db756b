//! The record of listen-in sessions: every listen is started and ended on the record
//! (published, so it reaches every office), and a local-only index of the started ones
//! lets a start after a crash end those an earlier process left open.

use std::sync::Arc;

use svcops_eventstore::{
    Append, EventStore, ExpectedVersion, RecordedEvent, StreamId, read_whole_stream,
};
use svcops_kit::events::{CommandContext, decode};
use svcops_kit::{ApiError, Principal, Role};
use svcops_proto::listenin::v1 as proto;
use tokio::sync::Notify;
use uuid::Uuid;

/// Why a session ended, as its end records it.
pub const ENDED_LISTENER_LEFT: &str = "listener left";
pub const ENDED_CAUGHT_UP: &str = "caught up";
pub const ENDED_SHUT_DOWN: &str = "listen-in shut down";
pub const ENDED_RESTARTED: &str = "listen-in restarted";

/// Checkpoint: the part of [`index_stream`] already dealt with by an earlier start.
const SESSIONS_CHECKPOINT: &str = "listen-in/sessions";

/// Index records read at once at start.
const PAGE: usize = 500;

pub fn session_stream(session_id: Uuid) -> StreamId {
    StreamId::for_aggregate("listen", session_id)
}

/// Local-only: every session started, so a start after a crash can end the ones left open.
fn index_stream() -> StreamId {
    StreamId::parse("listen_in_sessions").unwrap_or_else(|_| unreachable!("valid stream id"))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] svcops_eventstore::Error),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Store(error) => error.into(),
        }
    }
}

/// Starts and ends listen sessions on the record.
pub struct SessionLog {
    store: Arc<dyn EventStore>,
    relay: Arc<Notify>,
}

impl SessionLog {
    /// `relay` is woken after every start and end, so they are published at once.
    pub fn new(store: Arc<dyn EventStore>, relay: Arc<Notify>) -> Self {
        Self { store, relay }
    }

    /// Puts a session's start on the record.
    pub async fn start(
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
            index_stream(),
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
    pub async fn end(
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
            let records = self.store.read_stream(&index_stream(), from, PAGE).await?;
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
            .end(&context, session_id, case_id, ENDED_RESTARTED)
            .await
        {
            Ok(()) => Ok(true),
            Err(Error::Store(error)) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use svcops_eventstore::SqliteStore;

    use super::*;

    async fn open(path: &Path) -> SessionLog {
        let store = SqliteStore::open(path).await.expect("store");
        SessionLog::new(Arc::new(store), Arc::new(Notify::new()))
    }

    async fn session_events(log: &SessionLog, session_id: Uuid) -> Vec<RecordedEvent> {
        read_whole_stream(log.store.as_ref(), &session_stream(session_id))
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
            let log = open(&path).await;
            for session in [open_session, closed_session] {
                log.start(&context, session, case_id, proto::ListenMode::Observe)
                    .await
                    .expect("start");
            }
            log.end(&context, closed_session, case_id, ENDED_LISTENER_LEFT)
                .await
                .expect("end");
            // The process dies here: `open_session` has no end.
        }
        let log = open(&path).await;
        assert_eq!(log.end_sessions_left_open().await.expect("ended"), 1);
        let events = session_events(&log, open_session).await;
        assert_eq!(events.len(), 2);
        assert_eq!(end_reason(&events[1]).as_deref(), Some(ENDED_RESTARTED));
        assert_eq!(events[1].metadata.actor_subject, "ceo");
        assert_eq!(events[1].metadata.causation_id, Some(events[0].event_id));
        let closed = session_events(&log, closed_session).await;
        assert_eq!(closed.len(), 2, "an ended session is not ended again");
        assert_eq!(end_reason(&closed[1]).as_deref(), Some(ENDED_LISTENER_LEFT));
        // The next start has nothing left to end.
        let again = open(&path).await;
        assert_eq!(again.end_sessions_left_open().await.expect("ended"), 0);
    }
}
