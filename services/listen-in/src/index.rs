//! What every listen-in replica needs to know of listen-in's own log, as tables: the
//! sessions started and not ended (and the replica serving each), and the cases with an
//! event held aside. A persisted projection (`svcops_eventstore::projection`) in listen-in's
//! database, so a replica that does not record timelines still answers from it, and a
//! replica that takes over recording finds the sessions a gone replica left open.

use async_trait::async_trait;
use svcops_eventstore::projection::{Projection, ReadModel, Tables};
use svcops_eventstore::read_model::{Dialect, ReadModelTransaction};
use svcops_eventstore::{Error, RecordedEvent};
use svcops_kit::aggregate::DomainEvent;
use uuid::Uuid;

use svcops_kit::aggregate::Aggregate;

use crate::session::{Event, ListenSession};
use crate::timeline::HELD_STREAM;

pub struct ListenInIndex;

#[async_trait]
impl Projection for ListenInIndex {
    fn name(&self) -> &'static str {
        "listen_in_index"
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["open_sessions", "cases_held_aside"]
    }

    fn schema(&self, _dialect: Dialect) -> Vec<String> {
        vec![
            "CREATE TABLE {open_sessions} (
                session_id TEXT PRIMARY KEY,
                case_id TEXT NOT NULL,
                served_by TEXT NOT NULL,
                position BIGINT NOT NULL
            )"
            .into(),
            "CREATE TABLE {cases_held_aside} (case_id TEXT PRIMARY KEY, position BIGINT NOT NULL)"
                .into(),
        ]
    }

    async fn apply(
        &self,
        transaction: &mut dyn ReadModelTransaction,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), Error> {
        // Sessions and held events are few beside timeline entries: a statement each, in
        // order (a session may start and end within one batch).
        let held = tables.sql(
            "INSERT INTO {cases_held_aside} (case_id, position) VALUES ($1, $2) \
             ON CONFLICT (case_id) DO NOTHING",
        );
        let started = tables.sql(
            "INSERT INTO {open_sessions} (session_id, case_id, served_by, position) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (session_id) DO NOTHING",
        );
        let ended = tables.sql("DELETE FROM {open_sessions} WHERE session_id = $1");
        for recorded in events {
            if recorded.stream_id.as_str() == HELD_STREAM {
                if let Some(case_id) = recorded.metadata.case_id {
                    transaction
                        .execute(&held, &[case_id.into(), recorded.position.into()])
                        .await?;
                }
                continue;
            }
            // Session events of session streams only: the index stream of earlier versions
            // (`listen_in_sessions`) repeats starts that may never have happened.
            if !recorded
                .stream_id
                .as_str()
                .starts_with(&format!("{}-", ListenSession::KIND))
            {
                continue;
            }
            match Event::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(Event::Started(session))) => {
                    transaction
                        .execute(
                            &started,
                            &[
                                session.session_id.into(),
                                session.case_id.into(),
                                session.served_by.into(),
                                recorded.position.into(),
                            ],
                        )
                        .await?;
                }
                Ok(Some(Event::Ended(session))) => {
                    transaction
                        .execute(&ended, &[session.session_id.into()])
                        .await?;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%error, position = recorded.position, "listen-in index passes over an undecodable session event");
                }
            }
        }
        Ok(())
    }
}

/// A session started and not ended, as the index has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    pub session_id: Uuid,
    pub case_id: Uuid,
    pub served_by: String,
}

/// Every session started and not ended (as far as the index has applied the log).
pub async fn open_sessions(index: &ReadModel) -> Result<Vec<OpenSession>, Error> {
    let (tables, _) = index.live().await?;
    let rows = index
        .query(
            &tables,
            "SELECT session_id, case_id, served_by FROM {open_sessions} ORDER BY position",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(OpenSession {
                session_id: row.uuid(0)?,
                case_id: row.uuid(1)?,
                served_by: row.text(2)?.to_owned(),
            })
        })
        .collect()
}

/// Whether an event of `case_id` was ever held aside.
pub async fn held_aside(index: &ReadModel, case_id: Uuid) -> Result<bool, Error> {
    let (tables, _) = index.live().await?;
    let rows = index
        .query(
            &tables,
            "SELECT 1 FROM {cases_held_aside} WHERE case_id = $1",
            &[case_id.into()],
        )
        .await?;
    Ok(!rows.is_empty())
}
