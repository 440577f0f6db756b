//! The record of listen-in sessions: every listen is started and ended on the record
//! (published, so it reaches every office). Each start names the replica serving it; a
//! session whose replica is gone without recording its end (killed, or its graceful stop
//! ran out of time) is ended on its behalf by the replica recording timelines
//! ([`SessionLog::end_sessions_of_gone_replicas`]), from the index of open sessions.

use std::collections::HashMap;
use std::sync::Arc;

use svcops_eventstore::lease;
use svcops_eventstore::projection::ReadModel;
use svcops_eventstore::read_model::ReadModels;
use svcops_eventstore::{EventStore, StreamId, read_whole_stream};
use svcops_kit::aggregate::{Aggregate, ExecuteError, Executor, Idempotency, fold};
use svcops_kit::events::CommandContext;
use svcops_kit::{ApiError, Principal, Role};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::index::{self, OpenSession};
use crate::replica;
use crate::session::{self, Command, Ended, Lifecycle, ListenSession, Mode, Started};

/// Why a session ended, as its end records it.
pub const ENDED_LISTENER_LEFT: &str = "listener left";
pub const ENDED_CAUGHT_UP: &str = "caught up";
pub const ENDED_SHUT_DOWN: &str = "listen-in shut down";
/// The replica serving it stopped without recording the end (recorded by another, or by the
/// next start).
pub const ENDED_RESTARTED: &str = "listen-in restarted";
/// The replica serving it lost its registration (it may already be ended as restarted).
pub const ENDED_REPLICA_LOST: &str = "listen-in replica lost its registration";

pub fn session_stream(session_id: Uuid) -> StreamId {
    ListenSession::stream(session_id)
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

    /// Puts a session's start on the record, served under the registration hold
    /// `served_by` ([`crate::replica::Hold`]).
    pub async fn start(
        &self,
        context: &CommandContext,
        session_id: Uuid,
        case_id: Uuid,
        mode: Mode,
        served_by: &str,
    ) -> Result<(), Error> {
        let started = Started {
            session_id,
            case_id,
            mode,
            served_by: served_by.to_owned(),
        };
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

    /// Ends, with reason [`ENDED_RESTARTED`], every open session (as `index` has them)
    /// whose registration hold is not the current one ([`crate::replica`]: the replica is
    /// gone, or registered again since, after its sessions stopped), and forgets
    /// registrations lapsed long ago. Only an outage stops it; a session that cannot be
    /// ended is logged and skipped.
    pub async fn end_sessions_of_gone_replicas(
        &self,
        index: &ReadModel,
        read_models: &dyn ReadModels,
    ) -> Result<usize, svcops_eventstore::Error> {
        let open = index::open_sessions(index).await?;
        let mut registered: HashMap<&str, bool> = HashMap::new();
        let mut ended = 0;
        for session in &open {
            let alive = match registered.get(session.served_by.as_str()) {
                Some(alive) => *alive,
                None => {
                    // Sessions from before replicas name none: their process is gone.
                    let alive = match replica::parse_served_by(&session.served_by) {
                        Some((id, token)) => {
                            lease::current_hold(read_models, &replica::lease_name(id))
                                .await?
                                .is_some_and(|(holder, current)| holder == id && current == token)
                        }
                        None => false,
                    };
                    registered.insert(&session.served_by, alive);
                    alive
                }
            };
            if !alive && self.end_left_open(session).await? {
                ended += 1;
            }
        }
        if ended > 0 {
            tracing::warn!(
                ended,
                "recorded the end of listen-in sessions whose replica is gone"
            );
        }
        lease::forget_expired(read_models, replica::LEASE_PREFIX, replica::FORGET_AFTER).await?;
        Ok(ended)
    }

    /// Ends `open` on behalf of its listener if it started and did not end.
    async fn end_left_open(&self, open: &OpenSession) -> Result<bool, svcops_eventstore::Error> {
        let session_id = open.session_id;
        let stored = read_whole_stream(self.store.as_ref(), &session_stream(session_id)).await?;
        let session = match fold::<ListenSession>(&stored) {
            Ok((session, _)) => session,
            Err(error) => {
                tracing::error!(%session_id, %error, "undecodable listen session skipped");
                return Ok(false);
            }
        };
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
            .end(&context, session_id, open.case_id, ENDED_RESTARTED)
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
    use std::time::Duration;

    use svcops_eventstore::lease::LeaseSettings;
    use svcops_eventstore::projection::{self, RunnerSettings};
    use svcops_eventstore::{RecordedEvent, SqliteStore};
    use svcops_kit::events::decode;
    use svcops_proto::listenin::v1 as proto;
    use tokio_util::sync::CancellationToken;

    use super::*;

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
    async fn only_the_sessions_of_a_replica_whose_registration_lapsed_are_ended_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = SqliteStore::open(&dir.path().join("listen.db"))
            .await
            .expect("store");
        let store: Arc<dyn EventStore> = Arc::new(sqlite.clone());
        let read_models: Arc<dyn ReadModels> = Arc::new(sqlite);
        let shutdown = CancellationToken::new();
        let index = projection::start(
            store.clone(),
            read_models.clone(),
            Arc::new(crate::index::ListenInIndex),
            RunnerSettings::default(),
            shutdown.clone(),
        )
        .await
        .expect("index")
        .read_model();
        let short = LeaseSettings {
            ttl: Duration::from_millis(300),
            margin: Duration::from_millis(100),
            ..LeaseSettings::default()
        };
        let (alive, gone, again) = ("host/1/alive", "host/2/gone", "host/3/again");
        let mut holds = std::collections::HashMap::new();
        for (replica, settings) in [
            (alive, LeaseSettings::default()),
            (gone, short.clone()),
            (again, short.clone()),
        ] {
            let held = lease::try_acquire(
                read_models.as_ref(),
                &replica::lease_name(replica),
                replica,
                &settings,
            )
            .await
            .expect("register")
            .expect("free");
            holds.insert(replica, replica::served_by(replica, held.token));
        }
        let log = SessionLog::new(store.clone(), Arc::new(Notify::new()));
        let listener = Principal {
            subject: "ceo".into(),
            role: Role::Executive,
        };
        let context = CommandContext::from_caller(listener);
        let case_id = Uuid::now_v7();
        let (on_alive, on_gone, closed_on_gone, on_again) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        for (session, replica) in [
            (on_alive, alive),
            (on_gone, gone),
            (closed_on_gone, gone),
            (on_again, again),
        ] {
            log.start(&context, session, case_id, Mode::Observe, &holds[replica])
                .await
                .expect("start");
        }
        log.end(&context, closed_on_gone, case_id, ENDED_LISTENER_LEFT)
            .await
            .expect("end");
        // `gone` was killed: its registration lapses; `alive`'s lasts; `again` lapsed (its
        // sessions stopped) and registered again, under a new hold.
        tokio::time::sleep(Duration::from_millis(350)).await;
        lease::try_acquire(
            read_models.as_ref(),
            &replica::lease_name(again),
            again,
            &LeaseSettings::default(),
        )
        .await
        .expect("register again")
        .expect("lapsed");
        index
            .caught_up(Duration::from_secs(10))
            .await
            .expect("index caught up");

        let sweeper = log;
        assert_eq!(
            sweeper
                .end_sessions_of_gone_replicas(&index, read_models.as_ref())
                .await
                .expect("swept"),
            2
        );
        let again_events = session_events(&sweeper, on_again).await;
        assert_eq!(
            end_reason(&again_events[1]).as_deref(),
            Some(ENDED_RESTARTED),
            "a session of an earlier hold is ended though its replica runs"
        );
        let events = session_events(&sweeper, on_gone).await;
        assert_eq!(events.len(), 2);
        assert_eq!(end_reason(&events[1]).as_deref(), Some(ENDED_RESTARTED));
        assert_eq!(events[1].metadata.actor_subject, "ceo");
        assert_eq!(events[1].metadata.causation_id, Some(events[0].event_id));
        let closed = session_events(&sweeper, closed_on_gone).await;
        assert_eq!(closed.len(), 2, "an ended session is not ended again");
        assert_eq!(end_reason(&closed[1]).as_deref(), Some(ENDED_LISTENER_LEFT));
        assert_eq!(
            session_events(&sweeper, on_alive).await.len(),
            1,
            "a registered replica's session goes on"
        );
        // Once the index has the end, nothing is left to end.
        index
            .caught_up(Duration::from_secs(10))
            .await
            .expect("index caught up");
        assert_eq!(
            sweeper
                .end_sessions_of_gone_replicas(&index, read_models.as_ref())
                .await
                .expect("swept"),
            0
        );
        shutdown.cancel();
    }
}
