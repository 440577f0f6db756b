//! SQLite adapter for embedded mode: one writer connection (SQLite has one writer at a time
//! anyway), several readers, WAL journal, synchronous=FULL so a commit survives power loss.
//!
//! Group commit: appends queue for one writer task, which takes whatever is queued (never
//! waiting for more) and writes it in one transaction, each append inside a savepoint of its
//! own (one refused rolls back to its savepoint and the others go on), so concurrent commands
//! share one commit and one fsync instead of paying one each.

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Append, AppendOutcome, Appended, Error, EventMetadata, EventStore, ExpectedVersion,
    LogSnapshot, PersonalDataSecret, Position, RecordedEvent, StreamId,
};

/// Event store in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    appends: mpsc::Sender<PendingWrites>,
}

/// Most appends written in one shared transaction.
const MAX_GROUP: usize = 512;

/// Writes of one caller waiting for the writer task: appends, in its order, and outbox
/// rows published since (the relay's), removed in the same commit.
struct PendingWrites {
    appends: Vec<Append>,
    published: Vec<Position>,
    /// Per append, its outcome; `Err` if the shared commit failed (nothing written).
    reply: oneshot::Sender<Result<Vec<Result<AppendOutcome, Error>>, Error>>,
}

/// The writer task: each round writes everything queued in one transaction.
async fn write_appends(writer: SqlitePool, mut queue: mpsc::Receiver<PendingWrites>) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        let mut count = group[0].appends.len() + group[0].published.len();
        while count < MAX_GROUP
            && let Ok(next) = queue.try_recv()
        {
            count += next.appends.len() + next.published.len();
            group.push(next);
        }
        let appends: Vec<&Append> = group.iter().flat_map(|pending| &pending.appends).collect();
        let published: Vec<Position> = group
            .iter()
            .flat_map(|pending| pending.published.iter().copied())
            .collect();
        match write_group(&writer, &appends, &published).await {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for pending in group {
                    let mine = outcomes.by_ref().take(pending.appends.len()).collect();
                    let _ = pending.reply.send(Ok(mine));
                }
            }
            Err(error) => {
                // Nothing of the group was committed: every caller hears it.
                let reason = error.to_string();
                for pending in group {
                    let _ = pending
                        .reply
                        .send(Err(Error::Unavailable(sqlx::Error::Protocol(format!(
                            "the shared commit failed: {reason}"
                        )))));
                }
            }
        }
    }
}

/// Writes `appends` in one transaction, each in a savepoint of its own, and removes the
/// `published` outbox rows. `Err` when the transaction itself failed (nothing written).
async fn write_group(
    writer: &SqlitePool,
    appends: &[&Append],
    published: &[Position],
) -> Result<Vec<Result<AppendOutcome, Error>>, Error> {
    if !published.is_empty() {
        let mut transaction = writer.begin().await?;
        remove_published(&mut transaction, published).await?;
        let outcomes = append_each_in_savepoint(&mut transaction, appends).await?;
        transaction.commit().await?;
        return Ok(outcomes);
    }
    let mut transaction = writer.begin().await?;
    if let [append] = appends {
        // Alone, an append is the transaction: a refusal rolls it all back, no savepoint
        // needed (two statements fewer).
        let outcome = SqliteStore::append_in(&mut transaction, append).await;
        if outcome
            .as_ref()
            .is_ok_and(|outcome| !outcome.is_duplicate())
        {
            transaction.commit().await?;
        } else {
            // Nothing of it was written; dropping the transaction rolls back anyway.
            let _ = transaction.rollback().await;
        }
        return Ok(vec![outcome]);
    }
    let outcomes = append_each_in_savepoint(&mut transaction, appends).await?;
    transaction.commit().await?;
    Ok(outcomes)
}

/// Each append inside a savepoint of its own: a refused one leaves no trace, the others go
/// on.
async fn append_each_in_savepoint(
    transaction: &mut Transaction<'static, Sqlite>,
    appends: &[&Append],
) -> Result<Vec<Result<AppendOutcome, Error>>, Error> {
    let mut outcomes = Vec::with_capacity(appends.len());
    for append in appends {
        sqlx::query("SAVEPOINT append")
            .execute(&mut **transaction)
            .await?;
        let outcome = SqliteStore::append_in(transaction, append).await;
        if outcome.is_err() {
            sqlx::query("ROLLBACK TO SAVEPOINT append")
                .execute(&mut **transaction)
                .await?;
        }
        sqlx::query("RELEASE SAVEPOINT append")
            .execute(&mut **transaction)
            .await?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Removes outbox rows in one statement however many (the positions go as a JSON array).
async fn remove_published(
    transaction: &mut Transaction<'static, Sqlite>,
    positions: &[Position],
) -> Result<(), Error> {
    let list = format!(
        "[{}]",
        positions
            .iter()
            .map(Position::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    sqlx::query("DELETE FROM outbox WHERE position IN (SELECT value FROM json_each(?1))")
        .bind(list)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

// A macro rather than a const so the whole query stays a `&'static str` (sqlx audits
// dynamic SQL). Limits are bound as `LIMIT +?N`: a plain `LIMIT ?N` makes SQLite re-prepare
// the statement on every execution (see `read_model`'s module notes).
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT e.position, e.stream_id, e.version, e.event_id, e.event_type, e.case_id, \
             e.actor_subject, e.actor_role, e.correlation_id, e.causation_id, e.traceparent, \
             e.occurred_at, e.recorded_at, e.payload ",
            $rest
        )
    };
}

impl SqliteStore {
    /// Opens (creating if missing) the store file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(true)
            // Freed space is zeroed, so a deleted or overwritten row (a destroyed data key)
            // does not linger in free pages.
            .pragma("secure_delete", "ON");
        let writer = SqlitePoolOptions::new()
            // A local file does not hang up: no ping (a round trip to the connection's
            // worker thread) before every use.
            .test_before_acquire(false)
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            // A local file does not hang up: no ping (a round trip to the connection's
            // worker thread) before every use.
            .test_before_acquire(false)
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        // The task ends when the last clone of the store (and its sender) is dropped.
        let (appends, queue) = mpsc::channel(4096);
        tokio::spawn(write_appends(writer.clone(), queue));
        Ok(Self {
            writer,
            readers,
            appends,
        })
    }

    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    pub(crate) fn readers(&self) -> &SqlitePool {
        &self.readers
    }

    /// Closes every connection (the last one checkpoints and removes the WAL file).
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }

    async fn append_in(
        transaction: &mut Transaction<'static, Sqlite>,
        append: &Append,
    ) -> Result<AppendOutcome, Error> {
        if let Some(key) = &append.idempotency_key
            && let Some((first, request_hash)) = idempotent_result(&mut *transaction, key).await?
        {
            return crate::types::duplicate(append, key, first, request_hash);
        }
        let current: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM events WHERE stream_id = ?1")
                .bind(append.stream_id.as_str())
                .fetch_one(&mut **transaction)
                .await?;
        let current = current.map_or(0, |version| version as u64);
        let matches = match append.expected {
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(version) => current == version,
            ExpectedVersion::Any => true,
        };
        if !matches || append.expected == ExpectedVersion::Any {
            // A retry of an append that committed finds its own events: reported appended
            // where they are, never refused or written twice.
            if let Some((first_version, last_version)) = own_events(transaction, append).await?
                && (append.expected == ExpectedVersion::Any
                    || append.expected == ExpectedVersion::Exact(first_version - 1)
                    || (append.expected == ExpectedVersion::NoStream && first_version == 1))
            {
                return Ok(AppendOutcome::Appended(Appended {
                    stream_id: append.stream_id.clone(),
                    first_version,
                    last_version,
                }));
            }
        }
        if !matches {
            return Err(Error::Concurrency {
                stream_id: append.stream_id.to_string(),
                expected: append.expected,
            });
        }
        let first_version = current + 1;
        let last_version = current + append.events.len() as u64;
        let recorded_at = format_time(OffsetDateTime::now_utc())?;
        for (offset, event) in append.events.iter().enumerate() {
            let position: i64 = sqlx::query_scalar(
                "INSERT INTO events (stream_id, version, event_id, event_type, case_id, \
                 actor_subject, actor_role, correlation_id, causation_id, traceparent, \
                 occurred_at, recorded_at, payload) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING position",
            )
            .bind(append.stream_id.as_str())
            .bind((first_version + offset as u64) as i64)
            .bind(event.event_id)
            .bind(&event.event_type)
            .bind(event.metadata.case_id)
            .bind(&event.metadata.actor_subject)
            .bind(&event.metadata.actor_role)
            .bind(event.metadata.correlation_id)
            .bind(event.metadata.causation_id)
            .bind(&event.metadata.traceparent)
            .bind(format_time(event.metadata.occurred_at)?)
            .bind(&recorded_at)
            .bind(&event.payload)
            .fetch_one(&mut **transaction)
            .await?;
            if append.publish {
                sqlx::query("INSERT INTO outbox (position) VALUES (?1)")
                    .bind(position)
                    .execute(&mut **transaction)
                    .await?;
            }
        }
        if let Some(key) = &append.idempotency_key {
            sqlx::query(
                "INSERT INTO idempotency (key, stream_id, first_version, last_version, recorded_at, \
                 request_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .bind(key)
            .bind(append.stream_id.as_str())
            .bind(first_version as i64)
            .bind(last_version as i64)
            .bind(&recorded_at)
            .bind(append.request_hash.as_deref())
            .execute(&mut **transaction)
            .await?;
        }
        Ok(AppendOutcome::Appended(Appended {
            stream_id: append.stream_id.clone(),
            first_version,
            last_version,
        }))
    }

    async fn fetch_events(
        &self,
        sql: &'static str,
        bind: impl FnOnce(
            sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments>,
        ) -> sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let rows = bind(sqlx::query(sql)).fetch_all(&self.readers).await?;
        rows.iter().map(decode_row).collect()
    }
}

/// The writer task is gone (the runtime is shutting down).
fn writer_gone() -> Error {
    Error::Unavailable(sqlx::Error::PoolClosed)
}

/// The first result of the append that used `key`, and its request fingerprint.
async fn idempotent_result(
    connection: &mut sqlx::SqliteConnection,
    key: &str,
) -> Result<Option<(Appended, Option<Vec<u8>>)>, Error> {
    let row = sqlx::query(
        "SELECT stream_id, first_version, last_version, request_hash FROM idempotency \
         WHERE key = ?1",
    )
    .bind(key)
    .fetch_optional(&mut *connection)
    .await?;
    row.map(|row| {
        let appended = Appended {
            stream_id: StreamId::parse(row.try_get::<String, _>(0)?)?,
            first_version: row.try_get::<i64, _>(1)? as u64,
            last_version: row.try_get::<i64, _>(2)? as u64,
        };
        Ok((appended, row.try_get(3)?))
    })
    .transpose()
}

/// Where the append's events already are in its stream, if all of them are, in a row.
async fn own_events(
    transaction: &mut Transaction<'static, Sqlite>,
    append: &Append,
) -> Result<Option<(u64, u64)>, Error> {
    let mut versions = Vec::with_capacity(append.events.len());
    for event in &append.events {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM events WHERE stream_id = ?1 AND event_id = ?2")
                .bind(append.stream_id.as_str())
                .bind(event.event_id)
                .fetch_optional(&mut **transaction)
                .await?;
        let Some(version) = version else {
            return Ok(None);
        };
        versions.push(version);
    }
    versions.sort_unstable();
    Ok(crate::types::consecutive(&versions, append.events.len()))
}

/// The personal-data key port on SQLite, in the store's file.
#[derive(Clone)]
pub struct SqlitePersonalDataKeys {
    writer: SqlitePool,
    readers: SqlitePool,
    secret: PersonalDataSecret,
}

impl SqliteStore {
    /// The personal-data keys kept beside this store, hashed and wrapped with `secret`.
    /// Rows written before subjects were hashed and keys wrapped are rewritten now.
    pub async fn personal_data_keys(
        &self,
        secret: PersonalDataSecret,
    ) -> Result<SqlitePersonalDataKeys, Error> {
        let keys = SqlitePersonalDataKeys {
            writer: self.writer.clone(),
            readers: self.readers.clone(),
            secret,
        };
        keys.check_secret().await?;
        keys.protect_plain_rows().await?;
        Ok(keys)
    }
}

impl SqlitePersonalDataKeys {
    /// The live key a subject hash finds, if any.
    async fn subject_key<'c, E>(
        &self,
        subject_hash: &str,
        executor: E,
    ) -> Result<Option<crate::SubjectKey>, Error>
    where
        E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
    {
        let row: Option<(uuid::Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT k.key_id, k.wrapped_key FROM personal_data_subjects s \
             JOIN personal_data_keys k ON k.key_id = s.key_id \
             WHERE s.subject_hash = ?1 AND k.wrapped_key IS NOT NULL",
        )
        .bind(subject_hash)
        .fetch_optional(executor)
        .await?;
        row.map(|(key_id, wrapped)| {
            Ok(crate::SubjectKey {
                key_id,
                key: self.secret.unwrap_key(key_id, &wrapped)?,
                created: false,
            })
        })
        .transpose()
    }

    /// Records the secret's fingerprint on first use; refuses any other secret after.
    async fn check_secret(&self) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO personal_data_secret_check (id, fingerprint) VALUES (1, ?1) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(self.secret.fingerprint())
        .execute(&self.writer)
        .await?;
        let stored: Vec<u8> =
            sqlx::query_scalar("SELECT fingerprint FROM personal_data_secret_check WHERE id = 1")
                .fetch_one(&self.writer)
                .await?;
        if stored != self.secret.fingerprint() {
            return Err(crate::personal_data_secret::Error::Mismatch.into());
        }
        Ok(())
    }

    async fn protect_plain_rows(&self) -> Result<(), Error> {
        let mut transaction = self.writer.begin().await?;
        let rows = sqlx::query(
            "SELECT key_id, subject, key FROM personal_data_keys WHERE key IS NOT NULL",
        )
        .fetch_all(&mut *transaction)
        .await?;
        for row in rows {
            let key_id: uuid::Uuid = row.try_get(0)?;
            let subject: Option<String> = row.try_get(1)?;
            let key: Vec<u8> = row.try_get(2)?;
            sqlx::query(
                "UPDATE personal_data_keys \
                 SET subject = NULL, key = NULL, subject_hash = ?2, wrapped_key = ?3 \
                 WHERE key_id = ?1",
            )
            .bind(key_id)
            .bind(
                subject
                    .as_deref()
                    .map(|subject| self.secret.subject_hash(subject)),
            )
            .bind(self.secret.wrap(key_id, &key)?)
            .execute(&mut *transaction)
            .await?;
            if let Some(subject) = subject {
                sqlx::query(
                    "INSERT INTO personal_data_subjects (subject_hash, key_id) VALUES (?1, ?2) \
                     ON CONFLICT (subject_hash) DO NOTHING",
                )
                .bind(self.secret.subject_hash(&subject))
                .bind(key_id)
                .execute(&mut *transaction)
                .await?;
            }
        }
        transaction.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl crate::PersonalDataKeys for SqlitePersonalDataKeys {
    async fn key_for_subject(
        &self,
        subject: &str,
        new_key: &[u8],
    ) -> Result<crate::SubjectKey, Error> {
        let subject_hash = self.secret.subject_hash(subject);
        if let Some(found) = self.subject_key(&subject_hash, &self.readers).await? {
            return Ok(found);
        }
        // One writer: the look-up and the claim in one transaction cannot race.
        let mut transaction = self.writer.begin().await?;
        if let Some(found) = self.subject_key(&subject_hash, &mut *transaction).await? {
            transaction.commit().await?;
            return Ok(found);
        }
        let key_id = uuid::Uuid::now_v7();
        sqlx::query("INSERT INTO personal_data_subjects (subject_hash, key_id) VALUES (?1, ?2)")
            .bind(&subject_hash)
            .bind(key_id)
            .execute(&mut *transaction)
            .await?;
        sqlx::query(
            "INSERT INTO personal_data_keys (key_id, subject_hash, wrapped_key, created_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(key_id)
        .bind(&subject_hash)
        .bind(self.secret.wrap(key_id, new_key)?)
        .bind(format_time(OffsetDateTime::now_utc())?)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(crate::SubjectKey {
            key_id,
            key: new_key.to_vec(),
            created: true,
        })
    }

    async fn add_subject(
        &self,
        key_id: uuid::Uuid,
        subject: &str,
    ) -> Result<crate::SubjectClaim, Error> {
        let subject_hash = self.secret.subject_hash(subject);
        let mut transaction = self.writer.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO personal_data_subjects (subject_hash, key_id) \
             SELECT ?1, key_id FROM personal_data_keys \
             WHERE key_id = ?2 AND wrapped_key IS NOT NULL \
             ON CONFLICT (subject_hash) DO NOTHING",
        )
        .bind(&subject_hash)
        .bind(key_id)
        .execute(&mut *transaction)
        .await?
        .rows_affected()
            == 1;
        let holder: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT key_id FROM personal_data_subjects WHERE subject_hash = ?1")
                .bind(&subject_hash)
                .fetch_optional(&mut *transaction)
                .await?;
        transaction.commit().await?;
        Ok(crate::SubjectClaim::of(key_id, holder, inserted))
    }

    async fn remove_subject(&self, key_id: uuid::Uuid, subject: &str) -> Result<bool, Error> {
        let removed = sqlx::query(
            "DELETE FROM personal_data_subjects WHERE subject_hash = ?1 AND key_id = ?2",
        )
        .bind(self.secret.subject_hash(subject))
        .bind(key_id)
        .execute(&self.writer)
        .await?;
        Ok(removed.rows_affected() > 0)
    }

    async fn key(&self, key_id: uuid::Uuid) -> Result<crate::KeyState, Error> {
        let wrapped: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT wrapped_key FROM personal_data_keys WHERE key_id = ?1")
                .bind(key_id)
                .fetch_optional(&self.readers)
                .await?;
        crate::KeyState::from_column(key_id, wrapped, &self.secret)
    }

    async fn keys(
        &self,
        key_ids: &[uuid::Uuid],
    ) -> Result<std::collections::HashMap<uuid::Uuid, crate::KeyState>, Error> {
        let mut found: std::collections::HashMap<uuid::Uuid, Option<Vec<u8>>> =
            std::collections::HashMap::new();
        // Under SQLite's 32,766 parameters per statement.
        for chunk in key_ids.chunks(10_000) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT key_id, wrapped_key FROM personal_data_keys WHERE key_id IN ({placeholders})"
            );
            let mut query =
                sqlx::query_as::<_, (uuid::Uuid, Option<Vec<u8>>)>(sqlx::AssertSqlSafe(sql));
            for key_id in chunk {
                query = query.bind(*key_id);
            }
            found.extend(query.fetch_all(&self.readers).await?);
        }
        crate::KeyState::of_each(key_ids, &found, &self.secret)
    }

    async fn subject_key_id(&self, subject: &str) -> Result<Option<uuid::Uuid>, Error> {
        Ok(
            sqlx::query_scalar("SELECT key_id FROM personal_data_subjects WHERE subject_hash = ?1")
                .bind(self.secret.subject_hash(subject))
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    async fn destroy_key(&self, key_id: uuid::Uuid) -> Result<bool, Error> {
        let mut transaction = self.writer.begin().await?;
        sqlx::query("DELETE FROM personal_data_subjects WHERE key_id = ?1")
            .bind(key_id)
            .execute(&mut *transaction)
            .await?;
        let destroyed = sqlx::query(
            "UPDATE personal_data_keys \
             SET subject_hash = NULL, wrapped_key = NULL, erased_at = ?2 \
             WHERE key_id = ?1 AND wrapped_key IS NOT NULL",
        )
        .bind(key_id)
        .bind(format_time(OffsetDateTime::now_utc())?)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(destroyed.rows_affected() > 0)
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, append: Append) -> Result<AppendOutcome, Error> {
        self.append_all(vec![append])
            .await
            .pop()
            .unwrap_or_else(|| Err(writer_gone()))
    }

    async fn append_all(&self, appends: Vec<Append>) -> Vec<Result<AppendOutcome, Error>> {
        let mut outcomes: Vec<Option<Result<AppendOutcome, Error>>> = Vec::new();
        let mut valid = Vec::with_capacity(appends.len());
        for append in appends {
            match append.validate() {
                Ok(()) => {
                    outcomes.push(None);
                    valid.push(append);
                }
                Err(error) => outcomes.push(Some(Err(error))),
            }
        }
        let count = valid.len();
        let mut written = if count == 0 {
            Vec::new()
        } else {
            let (reply, answer) = oneshot::channel();
            let pending = PendingWrites {
                appends: valid,
                published: Vec::new(),
                reply,
            };
            match self.appends.send(pending).await {
                Ok(()) => match answer.await {
                    Ok(Ok(outcomes)) => outcomes,
                    Ok(Err(error)) => {
                        let reason = error.to_string();
                        (0..count)
                            .map(|_| Err(Error::Unavailable(sqlx::Error::Protocol(reason.clone()))))
                            .collect()
                    }
                    Err(_) => Vec::new(),
                },
                Err(_) => Vec::new(),
            }
        };
        written.resize_with(count, || Err(writer_gone()));
        let mut written = written.into_iter();
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| written.next().unwrap_or_else(|| Err(writer_gone())))
            })
            .collect()
    }

    async fn read_stream(
        &self,
        stream_id: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let sql = select_events!(
            "FROM events e WHERE e.stream_id = ?1 AND e.version >= ?2 \
             ORDER BY e.version LIMIT +?3"
        );
        self.fetch_events(sql, |query| {
            query
                .bind(stream_id.as_str())
                .bind(i64::try_from(from_version).unwrap_or(i64::MAX))
                .bind(db_limit(limit))
        })
        .await
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        let sql =
            select_events!("FROM events e WHERE e.position > ?1 ORDER BY e.position LIMIT +?2");
        self.fetch_events(sql, |query| query.bind(after).bind(db_limit(limit)))
            .await
    }

    async fn head(&self) -> Result<Position, Error> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                .fetch_one(&self.readers)
                .await?,
        )
    }

    async fn log_snapshot(&self) -> Result<LogSnapshot, Error> {
        // One writer: whatever it has not committed lies above every committed position.
        Ok(LogSnapshot {
            head: self.head().await?,
            in_progress: Vec::new(),
        })
    }

    async fn unpublished(&self, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        let sql = select_events!(
            "FROM outbox o JOIN events e ON e.position = o.position \
             ORDER BY o.position LIMIT +?1"
        );
        self.fetch_events(sql, |query| query.bind(db_limit(limit)))
            .await
    }

    async fn mark_published(&self, positions: &[Position]) -> Result<(), Error> {
        if positions.is_empty() {
            return Ok(());
        }
        // Through the writer task: the removal shares a commit with appends queued beside it.
        let (reply, answer) = oneshot::channel();
        let pending = PendingWrites {
            appends: Vec::new(),
            published: positions.to_vec(),
            reply,
        };
        self.appends
            .send(pending)
            .await
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?.map(|_| ())
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, Error> {
        Ok(
            sqlx::query_scalar("SELECT position FROM checkpoints WHERE name = ?1")
                .bind(name)
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO checkpoints (name, position, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(position)
        .bind(format_time(OffsetDateTime::now_utc())?)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn idempotent_result(&self, key: &str) -> Result<Option<Appended>, Error> {
        let mut connection = self.readers.acquire().await?;
        Ok(idempotent_result(&mut connection, key)
            .await?
            .map(|(first, _)| first))
    }

    async fn idempotent_retry(
        &self,
        key: &str,
        request_hash: Option<&[u8]>,
    ) -> Result<Option<Appended>, Error> {
        let mut connection = self.readers.acquire().await?;
        match idempotent_result(&mut connection, key).await? {
            Some((first, then)) => {
                crate::types::same_request(key, request_hash, then)?;
                Ok(Some(first))
            }
            None => Ok(None),
        }
    }

    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }
}

/// RFC 3339 in UTC. RFC 3339 cannot express offsets with seconds (which `time` allows), so
/// the instant is stored in UTC; a year outside 0..=9999 is refused rather than stored as a
/// string that could never be read back.
fn format_time(time: OffsetDateTime) -> Result<String, Error> {
    time.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|error| Error::Invalid(format!("timestamp {time} cannot be stored: {error}")))
}

fn db_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn parse_time(position: i64, text: &str) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|error| Error::Corrupt {
        position,
        reason: format!("bad timestamp {text:?}: {error}"),
    })
}

fn decode_row(row: &SqliteRow) -> Result<RecordedEvent, Error> {
    let position: i64 = row.try_get("position")?;
    let stream_id: String = row.try_get("stream_id")?;
    let occurred_at: String = row.try_get("occurred_at")?;
    let recorded_at: String = row.try_get("recorded_at")?;
    Ok(RecordedEvent {
        position,
        stream_id: StreamId::parse(stream_id).map_err(|error| Error::Corrupt {
            position,
            reason: error.to_string(),
        })?,
        version: row.try_get::<i64, _>("version")? as u64,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        payload: row.try_get("payload")?,
        metadata: EventMetadata {
            case_id: row.try_get("case_id")?,
            actor_subject: row.try_get("actor_subject")?,
            actor_role: row.try_get("actor_role")?,
            correlation_id: row.try_get("correlation_id")?,
            causation_id: row.try_get("causation_id")?,
            traceparent: row.try_get("traceparent")?,
            occurred_at: parse_time(position, &occurred_at)?,
        },
        recorded_at: parse_time(position, &recorded_at)?,
    })
}
