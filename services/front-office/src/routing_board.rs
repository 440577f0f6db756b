//! The routing board: queues, agents, and which open cases each agent holds, for routing.
//! A persisted projection (`svcops_eventstore::projection`) of the queue, agent and case
//! events; the choices themselves are pure (`routing`).

use std::collections::HashMap;

use async_trait::async_trait;
use svcops_eventstore::projection::{Projection, ReadModel, Tables};
use svcops_eventstore::read_model::{Dialect, ReadModelTransaction, SqlRow, SqlValue};
use svcops_eventstore::{Error, RecordedEvent};
use svcops_kit::aggregate::DomainEvent;

use crate::agent::codec::{
    categories_from_proto, categories_to_proto, segments_from_proto, segments_to_proto,
};
use crate::agent::{AgentEvent, AgentProfile};
use crate::case::{AgentName, CaseEvent, QueueName};
use crate::queue::{QueueEvent, QueueRule};
use crate::routing::BoardAgent;

const VERSION: i64 = 1;

pub struct RoutingBoardProjection;

/// Wire numbers as `1,4,5` (read back in Rust; lists are short).
fn joined(values: &[i32]) -> String {
    values
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn split(text: &str) -> Vec<i32> {
    text.split(',')
        .filter_map(|value| value.trim().parse().ok())
        .collect()
}

#[async_trait]
impl Projection for RoutingBoardProjection {
    fn name(&self) -> &'static str {
        "routing_board"
    }

    fn version(&self) -> i64 {
        VERSION
    }

    fn tables(&self) -> &'static [&'static str] {
        &["queues", "agents", "assignments"]
    }

    fn schema(&self, _dialect: Dialect) -> Vec<String> {
        vec![
            "CREATE TABLE {queues} (
                queue TEXT PRIMARY KEY,
                categories TEXT NOT NULL,
                segments TEXT NOT NULL,
                rank BIGINT NOT NULL
            )"
            .into(),
            "CREATE TABLE {agents} (
                agent TEXT PRIMARY KEY,
                skills TEXT NOT NULL,
                segments TEXT NOT NULL,
                capacity BIGINT NOT NULL,
                available BIGINT NOT NULL
            )"
            .into(),
            // One row per case with an assignee; `active` while it is not resolved or closed.
            "CREATE TABLE {assignments} (
                case_id TEXT PRIMARY KEY,
                assignee TEXT NOT NULL,
                active BIGINT NOT NULL
            )"
            .into(),
            "CREATE INDEX {assignments}_by_assignee ON {assignments} (assignee, active)".into(),
        ]
    }

    async fn apply(
        &self,
        transaction: &mut dyn ReadModelTransaction,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), Error> {
        for recorded in events {
            let case_event = match CaseEvent::decode(&recorded.event_type, &recorded.payload) {
                Ok(event) => event,
                Err(error) => {
                    tracing::error!(%error, position = recorded.position, "routing board passes over an undecodable event");
                    continue;
                }
            };
            let (sql, parameters): (&str, Vec<SqlValue>) = if let Some(event) = case_event {
                match event {
                    CaseEvent::Assigned { case_id, assignee } => (
                        "INSERT INTO {assignments} (case_id, assignee, active) VALUES ($1, $2, 1) \
                         ON CONFLICT (case_id) DO UPDATE SET assignee = excluded.assignee, active = 1",
                        vec![case_id.into(), assignee.as_str().into()],
                    ),
                    // Triage sends a case back to a queue, without an assignee.
                    CaseEvent::Triaged { case_id, .. } => (
                        "DELETE FROM {assignments} WHERE case_id = $1",
                        vec![case_id.into()],
                    ),
                    CaseEvent::Resolved { case_id, .. } | CaseEvent::Closed { case_id } => (
                        "UPDATE {assignments} SET active = 0 WHERE case_id = $1",
                        vec![case_id.into()],
                    ),
                    CaseEvent::Reopened { case_id, .. } => (
                        "UPDATE {assignments} SET active = 1 WHERE case_id = $1",
                        vec![case_id.into()],
                    ),
                    _ => continue,
                }
            } else if let Ok(Some(event)) =
                AgentEvent::decode(&recorded.event_type, &recorded.payload)
            {
                match event {
                    AgentEvent::ProfileSet(profile) => (
                        "INSERT INTO {agents} (agent, skills, segments, capacity, available) \
                         VALUES ($1, $2, $3, $4, 0) ON CONFLICT (agent) DO UPDATE SET \
                         skills = excluded.skills, segments = excluded.segments, \
                         capacity = excluded.capacity",
                        vec![
                            profile.agent.as_str().into(),
                            joined(&categories_to_proto(&profile.skills)).into(),
                            joined(&segments_to_proto(&profile.segments)).into(),
                            i64::from(profile.capacity).into(),
                        ],
                    ),
                    AgentEvent::AvailabilitySet { agent, available } => (
                        "UPDATE {agents} SET available = $1 WHERE agent = $2",
                        vec![i64::from(available).into(), agent.as_str().into()],
                    ),
                }
            } else if let Ok(Some(QueueEvent::Defined(rule))) =
                QueueEvent::decode(&recorded.event_type, &recorded.payload)
            {
                (
                    "INSERT INTO {queues} (queue, categories, segments, rank) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (queue) DO UPDATE SET \
                     categories = excluded.categories, segments = excluded.segments, \
                     rank = excluded.rank",
                    vec![
                        rule.queue.as_str().into(),
                        joined(&categories_to_proto(&rule.categories)).into(),
                        joined(&segments_to_proto(&rule.segments)).into(),
                        i64::from(rule.rank).into(),
                    ],
                )
            } else {
                continue;
            };
            transaction.execute(&tables.sql(sql), &parameters).await?;
        }
        Ok(())
    }
}

fn unreadable(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::ReadModel {
        reason: format!("routing board: {what}: {detail}"),
    }
}

fn capacity(row: &SqlRow, column: usize) -> Result<u32, Error> {
    let value = row.integer(column)?;
    u32::try_from(value).map_err(|_| unreadable("number", value))
}

/// Every queue, in routing order (rank, then name).
pub async fn queues(board: &ReadModel, tables: &Tables) -> Result<Vec<QueueRule>, Error> {
    let rows = board
        .query(
            tables,
            "SELECT queue, categories, segments, rank FROM {queues} ORDER BY rank, queue",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(QueueRule {
                queue: QueueName::parse("queue", row.text(0)?)
                    .map_err(|error| unreadable("queue", error))?,
                categories: categories_from_proto(&split(row.text(1)?)),
                segments: segments_from_proto(&split(row.text(2)?)),
                rank: capacity(row, 3)?,
            })
        })
        .collect()
}

/// Every agent with their open cases, by name.
pub async fn agents(board: &ReadModel, tables: &Tables) -> Result<Vec<BoardAgent>, Error> {
    let loads = board
        .query(
            tables,
            "SELECT assignee, COUNT(*) FROM {assignments} WHERE active = 1 GROUP BY assignee",
            &[],
        )
        .await?;
    let mut open: HashMap<String, u32> = HashMap::new();
    for row in &loads {
        open.insert(row.text(0)?.to_owned(), capacity(row, 1)?);
    }
    let rows = board
        .query(
            tables,
            "SELECT agent, skills, segments, capacity, available FROM {agents} ORDER BY agent",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let agent = AgentName::parse("agent", row.text(0)?)
                .map_err(|error| unreadable("agent", error))?;
            Ok(BoardAgent {
                open_cases: open.get(agent.as_str()).copied().unwrap_or_default(),
                profile: AgentProfile {
                    agent,
                    skills: categories_from_proto(&split(row.text(1)?)),
                    segments: segments_from_proto(&split(row.text(2)?)),
                    capacity: capacity(row, 3)?,
                },
                available: row.integer(4)? != 0,
            })
        })
        .collect()
}
