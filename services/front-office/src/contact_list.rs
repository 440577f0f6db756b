//! Contacts by case, with their transcripts: a persisted projection, read by `GetCase`
//! (a case with its conversations) without folding every contact stream.

use async_trait::async_trait;
use svcops_eventstore::projection::{Projection, ReadModel, Tables};
use svcops_eventstore::read_model::{BulkInsert, Dialect, ReadModelTransaction, SqlRow, SqlValue};
use svcops_eventstore::{Error, RecordedEvent};
use svcops_kit::aggregate::DomainEvent;
use svcops_proto::frontoffice::v1 as proto;
use uuid::Uuid;

use crate::case::{QueueName, channel_from_proto};
use crate::contact::{
    Answering, ContactEvent, ContactView, StartedContact, Utterance, customer_field_from_proto,
    speaker_from_proto,
};

/// Bump when the tables or what `apply` writes change.
const VERSION: i64 = 1;

pub struct ContactListProjection;

#[async_trait]
impl Projection for ContactListProjection {
    fn name(&self) -> &'static str {
        "contact_list"
    }

    fn version(&self) -> i64 {
        VERSION
    }

    fn tables(&self) -> &'static [&'static str] {
        &["contacts", "utterances"]
    }

    fn schema(&self, _dialect: Dialect) -> Vec<String> {
        vec![
            // Enums by their protobuf wire numbers; `known_fields` as a comma-separated list
            // of them; times in unix microseconds.
            "CREATE TABLE {contacts} (
                contact_id TEXT PRIMARY KEY,
                case_id TEXT NOT NULL,
                position BIGINT NOT NULL,
                version BIGINT NOT NULL,
                channel BIGINT NOT NULL,
                with_bot BIGINT NOT NULL,
                answering BIGINT NOT NULL,
                known_fields TEXT NOT NULL,
                handed_off_to TEXT,
                hand_off_reason TEXT,
                started_at BIGINT NOT NULL,
                ended_at BIGINT
            )"
            .into(),
            "CREATE INDEX {contacts}_by_case ON {contacts} (case_id, position)".into(),
            "CREATE TABLE {utterances} (
                contact_id TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                speaker BIGINT NOT NULL,
                text TEXT NOT NULL,
                start_ms BIGINT NOT NULL,
                end_ms BIGINT NOT NULL,
                PRIMARY KEY (contact_id, sequence)
            )"
            .into(),
        ]
    }

    async fn apply(
        &self,
        transaction: &mut dyn ReadModelTransaction,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), Error> {
        let mut contacts = BulkInsert::new(
            &tables.name("contacts"),
            &[
                "contact_id",
                "case_id",
                "position",
                "version",
                "channel",
                "with_bot",
                "answering",
                "known_fields",
                "handed_off_to",
                "hand_off_reason",
                "started_at",
                "ended_at",
            ],
            "",
        );
        let mut utterances = BulkInsert::new(
            &tables.name("utterances"),
            &[
                "contact_id",
                "sequence",
                "speaker",
                "text",
                "start_ms",
                "end_ms",
            ],
            "",
        );
        // Changes to contacts (possibly started in this batch), in event order, after the
        // inserts.
        let mut changes: Vec<(String, Vec<SqlValue>)> = Vec::new();
        for recorded in events {
            let event = match ContactEvent::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(%error, position = recorded.position, "contact list passes over an undecodable event");
                    continue;
                }
            };
            let version = recorded.version as i64;
            match event {
                ContactEvent::Started {
                    contact_id,
                    case_id,
                    channel,
                    with_bot,
                    known_fields,
                } => {
                    let known = known_fields
                        .iter()
                        .map(|field| (proto::CustomerField::from(*field) as i32).to_string())
                        .collect::<Vec<_>>()
                        .join(",");
                    let answering = if with_bot {
                        Answering::Bot
                    } else {
                        Answering::Person
                    };
                    contacts.push([
                        contact_id.into(),
                        case_id.into(),
                        recorded.position.into(),
                        version.into(),
                        i64::from(proto::Channel::from(channel) as i32).into(),
                        i64::from(with_bot).into(),
                        answering_wire(answering).into(),
                        known.into(),
                        None::<String>.into(),
                        None::<String>.into(),
                        recorded.metadata.occurred_at.into(),
                        None::<i64>.into(),
                    ]);
                }
                ContactEvent::Said {
                    contact_id,
                    utterance,
                    ..
                } => {
                    utterances.push([
                        contact_id.into(),
                        i64::from(utterance.sequence).into(),
                        i64::from(proto::Speaker::from(utterance.speaker) as i32).into(),
                        utterance.text.into(),
                        i64::from(utterance.start_ms).into(),
                        i64::from(utterance.end_ms).into(),
                    ]);
                    changes.push(version_of(tables, contact_id, version));
                }
                ContactEvent::HandedOff {
                    contact_id,
                    queue,
                    reason,
                    ..
                } => changes.push((
                    tables.sql(
                        "UPDATE {contacts} SET answering = $1, handed_off_to = $2, \
                         hand_off_reason = $3, version = $4 WHERE contact_id = $5",
                    ),
                    vec![
                        answering_wire(Answering::Person).into(),
                        queue.as_str().into(),
                        reason.into(),
                        version.into(),
                        contact_id.into(),
                    ],
                )),
                ContactEvent::Ended { contact_id, .. } => changes.push((
                    tables.sql(
                        "UPDATE {contacts} SET answering = $1, ended_at = $2, version = $3 \
                         WHERE contact_id = $4",
                    ),
                    vec![
                        answering_wire(Answering::Ended).into(),
                        recorded.metadata.occurred_at.into(),
                        version.into(),
                        contact_id.into(),
                    ],
                )),
            }
        }
        contacts.flush(transaction).await?;
        utterances.flush(transaction).await?;
        for (sql, parameters) in changes {
            transaction.execute(&sql, &parameters).await?;
        }
        Ok(())
    }
}

fn version_of(tables: &Tables, contact_id: Uuid, version: i64) -> (String, Vec<SqlValue>) {
    (
        tables.sql("UPDATE {contacts} SET version = $1 WHERE contact_id = $2 AND version < $1"),
        vec![version.into(), contact_id.into()],
    )
}

fn answering_wire(answering: Answering) -> i64 {
    let state = match answering {
        Answering::Bot => proto::ContactState::WithBot,
        Answering::Person => proto::ContactState::WithPerson,
        Answering::Ended => proto::ContactState::Ended,
    };
    i64::from(state as i32)
}

fn unreadable(what: &str, value: impl std::fmt::Display) -> Error {
    Error::ReadModel {
        reason: format!("unreadable {what} {value} in the contact list"),
    }
}

fn small(row: &SqlRow, column: usize) -> Result<u32, Error> {
    let value = row.integer(column)?;
    u32::try_from(value).map_err(|_| unreadable("number", value))
}

fn wire(row: &SqlRow, column: usize) -> Result<i32, Error> {
    let value = row.integer(column)?;
    i32::try_from(value).map_err(|_| unreadable("enum value", value))
}

/// The case's contacts with their transcripts, oldest first.
pub async fn of_case(
    list: &ReadModel,
    tables: &Tables,
    case_id: Uuid,
) -> Result<Vec<ContactView>, Error> {
    let rows = list
        .query(
            tables,
            "SELECT contact_id, case_id, version, channel, answering, known_fields, \
             handed_off_to, hand_off_reason, started_at, ended_at FROM {contacts} \
             WHERE case_id = $1 ORDER BY position",
            &[case_id.into()],
        )
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let said = list
        .query(
            tables,
            "SELECT u.contact_id, u.sequence, u.speaker, u.text, u.start_ms, u.end_ms \
             FROM {utterances} u JOIN {contacts} c ON c.contact_id = u.contact_id \
             WHERE c.case_id = $1 ORDER BY u.contact_id, u.sequence",
            &[case_id.into()],
        )
        .await?;
    let mut transcripts = std::collections::HashMap::<String, Vec<Utterance>>::new();
    for row in &said {
        let speaker = wire(row, 2)?;
        transcripts
            .entry(row.text(0)?.to_owned())
            .or_default()
            .push(Utterance {
                sequence: small(row, 1)?,
                speaker: speaker_from_proto(speaker)
                    .ok_or_else(|| unreadable("speaker", speaker))?,
                text: row.text(3)?.to_owned(),
                start_ms: small(row, 4)?,
                end_ms: small(row, 5)?,
            });
    }
    rows.iter()
        .map(|row| {
            let channel = wire(row, 3)?;
            let answering = match proto::ContactState::try_from(wire(row, 4)?) {
                Ok(proto::ContactState::WithBot) => Answering::Bot,
                Ok(proto::ContactState::WithPerson) => Answering::Person,
                Ok(proto::ContactState::Ended) => Answering::Ended,
                Ok(proto::ContactState::Unspecified) | Err(_) => {
                    return Err(unreadable("state", row.integer(4)?));
                }
            };
            let known_fields = row
                .text(5)?
                .split(',')
                .filter(|field| !field.is_empty())
                .map(|field| {
                    field
                        .parse::<i32>()
                        .ok()
                        .and_then(customer_field_from_proto)
                        .ok_or_else(|| unreadable("customer field", field))
                })
                .collect::<Result<_, _>>()?;
            let hand_off = match (row.optional_text(6)?, row.optional_text(7)?) {
                (Some(queue), reason) => Some((
                    QueueName::parse("queue", queue).map_err(|error| unreadable("queue", error))?,
                    reason.unwrap_or_default().to_owned(),
                )),
                (None, _) => None,
            };
            let contact_id = row.text(0)?;
            Ok(ContactView {
                contact: StartedContact {
                    contact_id: row.uuid(0)?,
                    case_id: row.uuid(1)?,
                    channel: channel_from_proto(channel)
                        .flatten()
                        .ok_or_else(|| unreadable("channel", channel))?,
                    answering,
                    known_fields,
                    hand_off,
                    transcript: transcripts.remove(contact_id).unwrap_or_default(),
                    started_at: row.timestamp(8)?,
                    ended_at: row
                        .optional_integer(9)?
                        .map(|_| row.timestamp(9))
                        .transpose()?,
                },
                version: row.integer(2)? as u64,
            })
        })
        .collect()
}
