//! Embedded adapter: a durable log in one SQLite file, for running svcops as one process.
//!
//! - Every topic lives in one table; a message's offset is a global, increasing
//!   `AUTOINCREMENT` position (partition is always 0). A publish is all or nothing.
//! - A consumer group's progress is the last acknowledged offset per topic, written on
//!   [`Subscription::ack`].
//! - One writer task writes: publishes and acknowledgements queued at the same time (from
//!   every office of the process) share one commit.
//! - Subscriptions read in offset order, in batches, and wait for a wake-up from a publish in
//!   this process when caught up; a slow poll also picks up messages written by another
//!   process sharing the file.
//! - One member per group: two live subscriptions of the same group would each receive every
//!   message and overwrite each other's offsets. Embedded mode runs one consumer per group, so
//!   no group coordination is implemented.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Acquire, AssertSqlSafe, Row};
use tokio::sync::{mpsc, oneshot, watch};

use crate::envelope::CORRUPT_HEADER;
use crate::{Bus, Delivery, Error, Message, Subscription};

/// Messages fetched per query by a subscription.
const FETCH_BATCH: usize = 256;
/// How often a caught-up subscription looks for messages nobody woke it for (another process).
const POLL: Duration = Duration::from_secs(1);

/// Bus in one SQLite file (WAL, `synchronous=FULL`: a published message survives power loss).
pub struct EmbeddedBus {
    shared: Arc<Shared>,
}

struct Shared {
    /// To the writer task, which owns the one writing connection (SQLite has one writer at
    /// a time anyway) and commits whatever is queued together.
    writes: mpsc::Sender<Write>,
    readers: SqlitePool,
    /// Highest offset published by this process; subscriptions wait for it to move.
    head: watch::Sender<i64>,
}

impl EmbeddedBus {
    /// Opens (creating if missing) the bus file and applies migrations.
    ///
    /// The file may be shared with other svcops tables (e.g. the embedded event store): the
    /// bus's tables are prefixed `bus_` and its migrations are tracked in their own table.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            // A local file does not hang up: no ping (a round trip to the connection's
            // worker thread) before every use.
            .test_before_acquire(false)
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let mut migrator = sqlx::migrate!("./migrations/embedded");
        // Not `_sqlx_migrations`: that table belongs to whatever else shares the file, and
        // sqlx refuses to run when it finds versions it does not know.
        migrator.dangerous_set_table_name("_svcops_bus_migrations");
        migrator.run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            // A local file does not hang up: no ping (a round trip to the connection's
            // worker thread) before every use.
            .test_before_acquire(false)
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let head: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM bus_messages")
            .fetch_one(&readers)
            .await?;
        let (head, _) = watch::channel(head.unwrap_or(0));
        // The task ends when the bus (and so the last sender) is dropped.
        let (writes, queue) = mpsc::channel(1024);
        tokio::spawn(write_queued(writer, queue));
        Ok(Self {
            shared: Arc::new(Shared {
                writes,
                readers,
                head,
            }),
        })
    }
}

impl Shared {
    /// Queues a write for the writer task and waits for its commit.
    async fn write<T>(
        &self,
        write: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Write,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(write(reply))
            .await
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

/// Most messages and acknowledgements one commit of the writer task takes.
const MAX_GROUP: usize = 1024;

/// A write waiting for the writer task.
enum Write {
    Publish {
        topic: String,
        messages: Vec<Message>,
        /// The offset of the last message.
        reply: oneshot::Sender<Result<i64, Error>>,
    },
    Ack {
        group: String,
        /// Per topic, the offset acknowledged.
        offsets: Vec<(String, i64)>,
        reply: oneshot::Sender<Result<(), Error>>,
    },
}

impl Write {
    fn size(&self) -> usize {
        match self {
            Self::Publish { messages, .. } => messages.len(),
            Self::Ack { offsets, .. } => offsets.len(),
        }
    }

    /// Runs the write's statements on `connection` (a transaction already open on it, or
    /// a single statement that is its own); for a publish, the offset of its last message.
    async fn apply(&self, connection: &mut SqliteConnection) -> Result<i64, Error> {
        match self {
            Self::Publish {
                topic, messages, ..
            } => {
                let mut last = 0;
                for message in messages {
                    last = sqlx::query_scalar(
                        "INSERT INTO bus_messages (topic, key, headers, payload) \
                         VALUES (?1, ?2, ?3, ?4) RETURNING position",
                    )
                    .bind(topic)
                    .bind(&message.key)
                    .bind(encode_headers(&message.headers))
                    .bind(&message.payload)
                    .fetch_one(&mut *connection)
                    .await?;
                }
                Ok(last)
            }
            Self::Ack { group, offsets, .. } => {
                for (topic, offset) in offsets {
                    sqlx::query(
                        "INSERT INTO bus_consumer_offsets (group_id, topic, position) \
                         VALUES (?1, ?2, ?3) ON CONFLICT (group_id, topic) \
                         DO UPDATE SET position = excluded.position",
                    )
                    .bind(group)
                    .bind(topic)
                    .bind(offset)
                    .execute(&mut *connection)
                    .await?;
                }
                Ok(0)
            }
        }
    }

    /// Applies the write in a transaction of its own (none for a single statement).
    async fn apply_alone(&self, writer: &SqlitePool) -> Result<i64, Error> {
        let mut connection = writer.acquire().await?;
        if self.size() == 1 {
            return self.apply(&mut connection).await;
        }
        let mut transaction = connection.begin().await?;
        let last = self.apply(&mut transaction).await?;
        transaction.commit().await?;
        Ok(last)
    }

    fn answer(self, result: Result<i64, Error>) {
        match self {
            Self::Publish { reply, .. } => {
                let _ = reply.send(result);
            }
            Self::Ack { reply, .. } => {
                let _ = reply.send(result.map(|_| ()));
            }
        }
    }
}

/// The writer task: each round commits everything queued (publishes and acknowledgements
/// of every office) together, so concurrent relays and consumers share one commit and its
/// fsync. If the shared commit fails, each write is tried again alone, so one bad write
/// fails only its own caller.
async fn write_queued(writer: SqlitePool, mut queue: mpsc::Receiver<Write>) {
    while let Some(first) = queue.recv().await {
        let mut size = first.size();
        let mut group = vec![first];
        while size < MAX_GROUP
            && let Ok(next) = queue.try_recv()
        {
            size += next.size();
            group.push(next);
        }
        if group.len() == 1 {
            let write = group.remove(0);
            let result = write.apply_alone(&writer).await;
            write.answer(result);
            continue;
        }
        match write_together(&writer, &group).await {
            Ok(lasts) => {
                for (write, last) in group.into_iter().zip(lasts) {
                    write.answer(Ok(last));
                }
            }
            Err(_) => {
                for write in group {
                    let result = write.apply_alone(&writer).await;
                    write.answer(result);
                }
            }
        }
    }
}

/// Every write of `group` in one transaction; per write, what it returned.
async fn write_together(writer: &SqlitePool, group: &[Write]) -> Result<Vec<i64>, Error> {
    let mut transaction = writer.begin().await?;
    let mut lasts = Vec::with_capacity(group.len());
    for write in group {
        lasts.push(write.apply(&mut transaction).await?);
    }
    transaction.commit().await?;
    Ok(lasts)
}

/// The writer task is gone (the runtime is shutting down).
fn writer_gone() -> Error {
    Error::Embedded(sqlx::Error::PoolClosed)
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), Error> {
        if messages.is_empty() {
            return Ok(());
        }
        let topic = topic.to_owned();
        let last = self
            .shared
            .write(|reply| Write::Publish {
                topic,
                messages,
                reply,
            })
            .await?;
        self.shared.head.send_if_modified(|head| {
            let moved = last > *head;
            *head = (*head).max(last);
            moved
        });
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, Error> {
        let mut names: Vec<String> = topics.iter().map(|topic| (*topic).to_owned()).collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(Error::Config("subscribe needs at least one topic".into()));
        }
        let mut floors = HashMap::with_capacity(names.len());
        for topic in &names {
            let acked: Option<i64> = sqlx::query_scalar(
                "SELECT position FROM bus_consumer_offsets WHERE group_id = ?1 AND topic = ?2",
            )
            .bind(group)
            .bind(topic)
            .fetch_optional(&self.shared.readers)
            .await?;
            floors.insert(topic.clone(), acked.unwrap_or(0));
        }
        // One cursor over the global log, starting at the least advanced topic; messages of
        // more advanced topics below their own acknowledged offset are skipped while reading.
        let cursor = floors.values().copied().min().unwrap_or(0);
        // Only the placeholders are dynamic (one per topic); topic names are bound.
        let placeholders: Vec<String> = (2..names.len() + 2).map(|i| format!("?{i}")).collect();
        let fetch: Arc<str> = format!(
            "SELECT position, topic, key, headers, payload FROM bus_messages \
             WHERE position > ?1 AND topic IN ({}) ORDER BY position LIMIT {FETCH_BATCH}",
            placeholders.join(", ")
        )
        .into();
        Ok(Box::new(EmbeddedSubscription {
            head: self.shared.head.subscribe(),
            shared: self.shared.clone(),
            group: group.to_owned(),
            topics: names,
            fetch,
            cursor,
            floors,
            buffer: VecDeque::new(),
        }))
    }

    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1")
            .execute(&self.shared.readers)
            .await?;
        Ok(())
    }
}

struct EmbeddedSubscription {
    shared: Arc<Shared>,
    head: watch::Receiver<i64>,
    group: String,
    topics: Vec<String>,
    fetch: Arc<str>,
    /// Offset of the last message read from the table.
    cursor: i64,
    /// Per topic, the group's acknowledged offset when the subscription started.
    floors: HashMap<String, i64>,
    buffer: VecDeque<Delivery>,
}

impl EmbeddedSubscription {
    async fn fill(&mut self) -> Result<(), Error> {
        let mut query = sqlx::query(AssertSqlSafe(self.fetch.clone())).bind(self.cursor);
        for topic in &self.topics {
            query = query.bind(topic);
        }
        let rows = query.fetch_all(&self.shared.readers).await?;
        for row in rows {
            let offset: i64 = row.try_get("position")?;
            let topic: String = row.try_get("topic")?;
            let acknowledged = self
                .floors
                .get(&topic)
                .is_some_and(|floor| offset <= *floor);
            if !acknowledged {
                self.buffer.push_back(Delivery {
                    topic,
                    partition: 0,
                    offset,
                    message: message(&row),
                });
            }
            // Only now, with the row delivered (or skipped as acknowledged): a row that
            // failed to read is never passed over.
            self.cursor = offset;
        }
        Ok(())
    }
}

/// The row's message; one that cannot be read back is delivered marked with
/// [`CORRUPT_HEADER`], so the consumer dead-letters it with the reason and moves on instead
/// of the subscription failing on it forever or skipping it unseen.
fn message(row: &SqliteRow) -> Message {
    let read = || -> Result<Message, String> {
        let headers: Vec<u8> = row.try_get("headers").map_err(|error| error.to_string())?;
        Ok(Message {
            key: row.try_get("key").map_err(|error| error.to_string())?,
            headers: decode_headers(&headers)?,
            payload: row.try_get("payload").map_err(|error| error.to_string())?,
        })
    };
    read().unwrap_or_else(|reason| Message {
        key: row.try_get("key").unwrap_or_default(),
        headers: vec![(CORRUPT_HEADER.to_owned(), reason.into_bytes())],
        payload: row.try_get("payload").unwrap_or_default(),
    })
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next(&mut self) -> Result<Delivery, Error> {
        loop {
            if let Some(delivery) = self.buffer.pop_front() {
                return Ok(delivery);
            }
            // Mark the current head seen before reading, so a publish committed after the
            // read below still wakes us.
            self.head.borrow_and_update();
            self.fill().await?;
            if self.buffer.is_empty() {
                // The sender lives in `shared`, which we hold: `changed` cannot fail.
                let _ = tokio::time::timeout(POLL, self.head.changed()).await;
            }
        }
    }

    fn try_next(&mut self) -> Option<Result<Delivery, Error>> {
        self.buffer.pop_front().map(Ok)
    }

    async fn ack_all(&mut self, deliveries: &[Delivery]) -> Result<(), Error> {
        // One offset per topic, of its last delivery: offsets only grow within a topic.
        let mut offsets: Vec<(String, i64)> = Vec::new();
        for delivery in deliveries {
            match offsets
                .iter_mut()
                .find(|(topic, _)| *topic == delivery.topic)
            {
                Some((_, offset)) => *offset = (*offset).max(delivery.offset),
                None => offsets.push((delivery.topic.clone(), delivery.offset)),
            }
        }
        if offsets.is_empty() {
            return Ok(());
        }
        self.write(offsets).await
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.write(vec![(delivery.topic.clone(), delivery.offset)])
            .await
    }
}

impl EmbeddedSubscription {
    /// Records the group's offsets through the bus's writer task.
    async fn write(&self, offsets: Vec<(String, i64)>) -> Result<(), Error> {
        let group = self.group.clone();
        self.shared
            .write(|reply| Write::Ack {
                group,
                offsets,
                reply,
            })
            .await
    }
}

/// Headers as a blob: for each pair, name length (u32 LE), name, value length, value.
fn encode_headers(headers: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size = headers
        .iter()
        .map(|(name, value)| 8 + name.len() + value.len())
        .sum();
    let mut blob = Vec::with_capacity(size);
    for (name, value) in headers {
        for part in [name.as_bytes(), value.as_slice()] {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            blob.extend_from_slice(&len.to_le_bytes());
            blob.extend_from_slice(part);
        }
    }
    blob
}

fn decode_headers(mut blob: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    fn part<'a>(blob: &mut &'a [u8]) -> Result<&'a [u8], String> {
        let (len, rest) = blob
            .split_first_chunk::<4>()
            .ok_or("header blob truncated in a length")?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err("header blob truncated in a value".into());
        }
        let (value, rest) = rest.split_at(len);
        *blob = rest;
        Ok(value)
    }
    let mut headers = Vec::new();
    while !blob.is_empty() {
        let name = String::from_utf8(part(&mut blob)?.to_vec())
            .map_err(|_| "header name is not UTF-8".to_owned())?;
        headers.push((name, part(&mut blob)?.to_vec()));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let headers = vec![
            ("ce_id".to_owned(), b"abc".to_vec()),
            ("empty".to_owned(), Vec::new()),
            (String::new(), vec![0, 255, 1]),
        ];
        assert_eq!(decode_headers(&encode_headers(&headers)), Ok(headers));
        assert_eq!(decode_headers(&[]), Ok(Vec::new()));
    }

    #[test]
    fn truncated_headers_are_an_error() {
        let blob = encode_headers(&[("name".to_owned(), b"value".to_vec())]);
        assert!(decode_headers(&blob[..blob.len() - 1]).is_err());
        assert!(decode_headers(&blob[..2]).is_err());
    }
}
