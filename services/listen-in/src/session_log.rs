//! The record of listen-in sessions: every listen is started and ended on the record
//! (published, so it reaches every office), and a local-only index of the started ones
//! lets a start after a crash end those an earlier process left open.

use std::sync::Arc;

use svcops_eventstore::{
    Append, EventStore, ExpectedVersion, RecordedEvent, StreamId, read_whole_stream,
};
use svcops_kit::aggregate::{Aggregate, DomainEvent, ExecuteError, Executor, Idempotency, fold};
use svcops_kit::events::CommandContext;
use svcops_kit::{ApiError, Principal, Role};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::session::{self, Command, Ended, Event, Lifecycle, ListenSession, Mode, Started};

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
    ListenSession::stream(session_id)
}

/// Local-only: every session started, so a start after a crash can end the ones left open.
fn index_stream() -> StreamId {
    StreamId::parse("listen_in_sessions").unwrap_or_else(|_| unreachable!("valid stream id"))
}

/// The idempotency key of a session's end (as ever: existing ends keep it).
fn ended_key(session_id: Uuid) -> String {
    format!("listen-in/session-ended/{session_id}")
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the index.
    #[error(transparent)]
    Store(#[from] svcops_eventstore::Error),
    #[error(transparent)]
    Session(#[from] ExecuteError<session::Error>),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Store(error) => error.into(),
            Error::Session(error) => error.into(),
        }
    }
}

/// Starts and ends listen sessions on the record, through the executor.
pub struct SessionLog {
    store: Arc<dyn EventStore>,
    sessions: Executor<ListenSession>,
}

impl SessionLog {
    /// `relay` is woken after every start and end, so they are published at once.
    pub fn new(store: Arc<dyn EventStore>, relay: Arc<Notify>) -> Self {
        Self {
            sessions: Executor::new(store.clone(), relay),
            store,
        }
    }

    /// Puts a session's start on the record.
    pub async fn start(
        &self,
        context: &CommandContext,
        session_id: Uuid,
        case_id: Uuid,
        mode: Mode,
    ) -> Result<(), Error> {
        let started = Started {
            session_id,
            case_id,
            mode,
        };
        // The index first: a crash between the two leaves an indexed session without a
        // start, which the next start skips; the other order could leave a start no one ends.
        let (event_type, payload) = Event::Started(started.clone()).encode();
        let index = Append::new(
            index_stream(),
            ExpectedVersion::Any,
            vec![context.new_event(Some(case_id), event_type, payload)],
        )
        .local_only();
        self.store.append(index).await?;
        self.sessions
            .execute(
                session_id,
                Some(case_id),
                context,
                Command::Start(started),
                Idempotency::none(),
            )
            .await?;
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
        let ended = Ended {
            session_id,
            case_id,
            reason: reason.to_owned(),
        };
        self.sessions
            .execute(
                session_id,
                Some(case_id),
                context,
                Command::End(ended),
                Idempotency::key(ended_key(session_id)),
            )
            .await?;
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

    /// Ends the indexed session of `record` if it started and did not end. Only an outage
    /// stops the start; a session that cannot be ended is logged and skipped.
    async fn end_left_open(
        &self,
        record: &RecordedEvent,
    ) -> Result<bool, svcops_eventstore::Error> {
        let Ok(Some(Event::Started(indexed))) = Event::decode(&record.event_type, &record.payload)
        else {
            tracing::error!(
                version = record.version,
                "undecodable session index record skipped"
            );
            return Ok(false);
        };
        let session_id = indexed.session_id;
        let stored = read_whole_stream(self.store.as_ref(), &session_stream(session_id)).await?;
        let session = match fold::<ListenSession>(&stored) {
            Ok((session, _)) => session,
            Err(error) => {
                tracing::error!(%session_id, %error, "undecodable listen session skipped");
                return Ok(false);
            }
        };
        // Not started: indexed, then the process died before the start was recorded.
        let (Lifecycle::Listening, Some(start)) = (session.lifecycle, stored.first()) else {
            return Ok(false);
        };
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
            .end(&context, session_id, indexed.case_id, ENDED_RESTARTED)
            .await
        {
            Ok(()) => Ok(true),
            Err(Error::Store(error) | Error::Session(ExecuteError::Store(error))) => Err(error),
            Err(error) => {
                tracing::error!(%session_id, %error, "could not end a listen session left open");
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use svcops_eventstore::SqliteStore;
    use svcops_kit::events::decode;
    use svcops_proto::listenin::v1 as proto;

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
                log.start(&context, session, case_id, Mode::Observe)
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
