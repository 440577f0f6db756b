//! PostgreSQL adapter: one statement per append, so an append costs one round trip.

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Row, migrate::MigrateDatabase};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::group_commit::{EventColumns, GroupCommit, Pending};
use crate::types::ANY_VERSION_ATTEMPTS;
use crate::{
    Append, AppendOutcome, Appended, Error, EventMetadata, EventStore, ExpectedVersion,
    LogSnapshot, PersonalDataSecret, Position, RecordedEvent, StreamId,
};

/// Event store on PostgreSQL. Each service owns its own database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    group: GroupCommit,
}

/// Writer tasks of the group commit (each holds at most one connection at a time).
const GROUP_COMMIT_WRITERS: u32 = 8;

// Idempotency row, version guard, events, outbox: all in one statement, hence one implicit
// transaction. `$3` is the first version to write; the guard checks that the version before
// it exists, the unique (stream_id, version) constraint that nothing is already at it.
const APPEND: &str = r#"
WITH guard AS (
    SELECT ($3 = 1 OR EXISTS (SELECT 1 FROM events WHERE stream_id = $2 AND version = $3 - 1)) AS ok
), idem AS (
    -- Only an append that passes the guard claims the key: a rejected one must leave it
    -- free for the corrected retry.
    INSERT INTO idempotency (key, stream_id, first_version, last_version, request_hash)
    SELECT $1::text, $2, $3, $4, $16 WHERE $1::text IS NOT NULL AND (SELECT ok FROM guard)
    ON CONFLICT (key) DO NOTHING
    RETURNING 1
), ins AS (
    INSERT INTO events (stream_id, version, event_id, event_type, case_id, actor_subject,
                        actor_role, correlation_id, causation_id, traceparent, occurred_at, payload)
    SELECT $2, $3 + t.ord - 1, t.event_id, t.event_type, t.case_id, t.actor_subject,
           t.actor_role, t.correlation_id, t.causation_id, t.traceparent, t.occurred_at, t.payload
    FROM UNNEST($5::uuid[], $6::text[], $7::uuid[], $8::text[], $9::text[], $10::uuid[],
                $11::uuid[], $12::text[], $13::timestamptz[], $14::bytea[])
         WITH ORDINALITY AS t(event_id, event_type, case_id, actor_subject, actor_role,
                              correlation_id, causation_id, traceparent, occurred_at, payload, ord)
    WHERE ($1::text IS NULL OR EXISTS (SELECT 1 FROM idem)) AND (SELECT ok FROM guard)
    RETURNING position
), outbox_rows AS (
    INSERT INTO outbox (position) SELECT position FROM ins WHERE $15
)
SELECT count(*) FROM ins
"#;

// The fast path for the commonest append, one event without idempotency key: the same
// guard and the same unique constraint, but scalar parameters instead of arrays and no
// idempotency or counting steps, so PostgreSQL has fewer plan nodes to run per append.
// `$2` is the version to write. Affects one row (appended) or none (the guard failed).
macro_rules! append_one {
    ($tail:literal) => {
        concat!(
            "INSERT INTO events (stream_id, version, event_id, event_type, case_id, \
             actor_subject, actor_role, correlation_id, causation_id, traceparent, occurred_at, \
             payload) \
             SELECT $1::text, $2::bigint, $3::uuid, $4::text, $5::uuid, $6::text, $7::text, \
             $8::uuid, $9::uuid, $10::text, $11::timestamptz, $12::bytea \
             WHERE $2::bigint = 1 \
             OR EXISTS (SELECT 1 FROM events WHERE stream_id = $1 AND version = $2::bigint - 1)",
            $tail
        )
    };
}

/// One published event: events row and outbox row in one statement.
const APPEND_ONE_PUBLISHED: &str = concat!(
    "WITH ins AS (",
    append_one!(" RETURNING position"),
    ") INSERT INTO outbox (position) SELECT position FROM ins"
);

/// One local-only event.
const APPEND_ONE_LOCAL: &str = append_one!("");

// A macro rather than a const so the whole query stays a `&'static str` (sqlx audits
// dynamic SQL).
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

impl PostgresStore {
    /// Connects (creating the database if it does not exist) and applies migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, Error> {
        if !sqlx::Postgres::database_exists(url).await? {
            // Two processes may race to create it; losing that race is fine.
            if let Err(error) = sqlx::Postgres::create_database(url).await
                && !sqlx::Postgres::database_exists(url).await?
            {
                return Err(error.into());
            }
        }
        let pool = PgPoolOptions::new()
            // No ping (a round trip to the server) before every use; sqlx still pings each
            // connection when it goes back to the pool. A connection the server dropped
            // since then fails its next statement once, reported as unavailable and retried
            // by relays and consumers.
            .test_before_acquire(false)
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await?;
        Self::from_pool(pool).await
    }

    /// Wraps an existing pool and applies migrations.
    pub async fn from_pool(pool: PgPool) -> Result<Self, Error> {
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let writers = GROUP_COMMIT_WRITERS.min(pool.options().get_max_connections()) as usize;
        let group = GroupCommit::start(pool.clone(), writers, write_one);
        Ok(Self { pool, group })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn append_at(&self, append: &Append, first_version: u64) -> Result<AppendOutcome, Error> {
        let count = append.events.len();
        // A stream cannot be that long, so the caller's expectation cannot hold.
        let Some(last_version) = first_version
            .checked_add(count as u64 - 1)
            .filter(|last| i64::try_from(*last).is_ok())
        else {
            return Err(concurrency(append));
        };
        let appended = || {
            AppendOutcome::Appended(Appended {
                stream_id: append.stream_id.clone(),
                first_version,
                last_version,
            })
        };
        // An append retried after an ambiguous failure (committed, reply lost) finds its own
        // events: it is reported appended where they are, never refused or written twice.
        let own = |found: Option<(u64, u64)>| match found {
            Some((first, last))
                if append.expected == ExpectedVersion::Any || first == first_version =>
            {
                Ok(AppendOutcome::Appended(Appended {
                    stream_id: append.stream_id.clone(),
                    first_version: first,
                    last_version: last,
                }))
            }
            _ => Err(concurrency(append)),
        };
        if let ([event], None) = (append.events.as_slice(), &append.idempotency_key) {
            let (reply, answer) = tokio::sync::oneshot::channel();
            self.group
                .append(Pending {
                    stream_id: append.stream_id.as_str().to_owned(),
                    version: to_db_version(first_version),
                    event: event.clone(),
                    publish: append.publish,
                    reply,
                })
                .await?;
            let written_at = answer
                .await
                .map_err(|_| Error::Invalid("the event store is shutting down".into()))??;
            return own(
                written_at.map(|version| (from_db_version(version), from_db_version(version)))
            );
        }
        let columns = EventColumns::new(append.events.iter());
        let result = sqlx::query_scalar::<_, i64>(APPEND)
            .bind(append.idempotency_key.as_deref())
            .bind(append.stream_id.as_str())
            .bind(to_db_version(first_version))
            .bind(to_db_version(last_version))
            .bind(&columns.event_ids)
            .bind(&columns.event_types)
            .bind(&columns.case_ids)
            .bind(&columns.actor_subjects)
            .bind(&columns.actor_roles)
            .bind(&columns.correlation_ids)
            .bind(&columns.causation_ids)
            .bind(&columns.traceparents)
            .bind(&columns.occurred)
            .bind(&columns.payloads)
            .bind(append.publish)
            .bind(append.request_hash.as_deref())
            .fetch_one(&self.pool)
            .await;
        match result {
            Ok(inserted) if inserted as usize == count => return Ok(appended()),
            Ok(_) => {}
            Err(sqlx::Error::Database(database))
                if matches!(
                    database.constraint(),
                    Some("events_stream_version" | "events_event_id")
                ) => {}
            Err(error) => return Err(error.into()),
        }
        if let Some(key) = &append.idempotency_key
            && let Some((first, request_hash)) = self.lookup_idempotency(key).await?
        {
            return crate::types::duplicate(append, key, first, request_hash);
        }
        own(own_events(&self.pool, append.stream_id.as_str(), &columns.event_ids).await?)
    }

    /// The first result of the append that used `key`, and its request fingerprint.
    async fn lookup_idempotency(
        &self,
        key: &str,
    ) -> Result<Option<(Appended, Option<Vec<u8>>)>, Error> {
        let row = sqlx::query(
            "SELECT stream_id, first_version, last_version, request_hash FROM idempotency \
             WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let appended = Appended {
                stream_id: StreamId::parse(row.try_get::<String, _>(0)?)?,
                first_version: from_db_version(row.try_get(1)?),
                last_version: from_db_version(row.try_get(2)?),
            };
            Ok((appended, row.try_get(3)?))
        })
        .transpose()
    }

    async fn current_version(&self, stream_id: &StreamId) -> Result<u64, Error> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM events WHERE stream_id = $1")
                .bind(stream_id.as_str())
                .fetch_one(&self.pool)
                .await?;
        Ok(version.map_or(0, from_db_version))
    }
}

/// The personal-data key port on PostgreSQL, in the store's database.
#[derive(Clone)]
pub struct PostgresPersonalDataKeys {
    pool: PgPool,
    secret: PersonalDataSecret,
}

impl PostgresStore {
    /// The personal-data keys kept beside this store, hashed and wrapped with `secret`.
    /// Rows written before subjects were hashed and keys wrapped are rewritten now.
    pub async fn personal_data_keys(
        &self,
        secret: PersonalDataSecret,
    ) -> Result<PostgresPersonalDataKeys, Error> {
        let keys = PostgresPersonalDataKeys {
            pool: self.pool.clone(),
            secret,
        };
        keys.check_secret().await?;
        keys.protect_plain_rows().await?;
        Ok(keys)
    }
}

impl PostgresPersonalDataKeys {
    /// The live key a subject hash finds, if any.
    async fn subject_key(&self, subject_hash: &str) -> Result<Option<crate::SubjectKey>, Error> {
        let row: Option<(Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT k.key_id, k.wrapped_key FROM personal_data_subjects s \
             JOIN personal_data_keys k ON k.key_id = s.key_id \
             WHERE s.subject_hash = $1 AND k.wrapped_key IS NOT NULL",
        )
        .bind(subject_hash)
        .fetch_optional(&self.pool)
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
            "INSERT INTO personal_data_secret_check (id, fingerprint) VALUES (1, $1) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(self.secret.fingerprint())
        .execute(&self.pool)
        .await?;
        let stored: Vec<u8> =
            sqlx::query_scalar("SELECT fingerprint FROM personal_data_secret_check WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        if stored != self.secret.fingerprint() {
            return Err(crate::personal_data_secret::Error::Mismatch.into());
        }
        Ok(())
    }

    async fn protect_plain_rows(&self) -> Result<(), Error> {
        let rows = sqlx::query(
            "SELECT key_id, subject, key FROM personal_data_keys WHERE key IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let key_id: Uuid = row.try_get(0)?;
            let subject: Option<String> = row.try_get(1)?;
            let key: Vec<u8> = row.try_get(2)?;
            sqlx::query(
                "UPDATE personal_data_keys \
                 SET subject = NULL, key = NULL, subject_hash = $2, wrapped_key = $3 \
                 WHERE key_id = $1 AND key IS NOT NULL",
            )
            .bind(key_id)
            .bind(
                subject
                    .as_deref()
                    .map(|subject| self.secret.subject_hash(subject)),
            )
            .bind(self.secret.wrap(key_id, &key)?)
            .execute(&self.pool)
            .await?;
            if let Some(subject) = subject {
                sqlx::query(
                    "INSERT INTO personal_data_subjects (subject_hash, key_id) VALUES ($1, $2) \
                     ON CONFLICT (subject_hash) DO NOTHING",
                )
                .bind(self.secret.subject_hash(&subject))
                .bind(key_id)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl crate::PersonalDataKeys for PostgresPersonalDataKeys {
    async fn key_for_subject(
        &self,
        subject: &str,
        new_key: &[u8],
    ) -> Result<crate::SubjectKey, Error> {
        let subject_hash = self.secret.subject_hash(subject);
        // Found, or made by this call; else another call made it meanwhile, or erased it
        // (then look again and make a new one).
        for _ in 0..3 {
            if let Some(found) = self.subject_key(&subject_hash).await? {
                return Ok(found);
            }
            // The subject row is the claim: of two first uses, the second waits on the
            // first's row and then finds its key. A row left pointing at an erased key
            // (none should be) would block the subject for good: it goes first.
            let key_id = Uuid::now_v7();
            let mut transaction = self.pool.begin().await?;
            sqlx::query(
                "DELETE FROM personal_data_subjects s USING personal_data_keys k \
                 WHERE s.subject_hash = $1 AND k.key_id = s.key_id AND k.wrapped_key IS NULL",
            )
            .bind(&subject_hash)
            .execute(&mut *transaction)
            .await?;
            let claimed = sqlx::query(
                "INSERT INTO personal_data_subjects (subject_hash, key_id) VALUES ($1, $2) \
                 ON CONFLICT (subject_hash) DO NOTHING",
            )
            .bind(&subject_hash)
            .bind(key_id)
            .execute(&mut *transaction)
            .await?
            .rows_affected()
                == 1;
            if !claimed {
                transaction.rollback().await?;
                continue;
            }
            sqlx::query(
                "INSERT INTO personal_data_keys (key_id, subject_hash, wrapped_key) \
                 VALUES ($1, $2, $3)",
            )
            .bind(key_id)
            .bind(&subject_hash)
            .bind(self.secret.wrap(key_id, new_key)?)
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
            return Ok(crate::SubjectKey {
                key_id,
                key: new_key.to_vec(),
                created: true,
            });
        }
        Err(Error::Precondition(
            "a subject's key kept changing while it was looked up; try again".into(),
        ))
    }

    async fn add_subject(&self, key_id: Uuid, subject: &str) -> Result<crate::SubjectClaim, Error> {
        let subject_hash = self.secret.subject_hash(subject);
        // FOR SHARE waits on a destroy in flight (which locks the key row before it
        // deletes the key's subjects), then sees the key erased and claims nothing.
        let inserted = sqlx::query(
            "INSERT INTO personal_data_subjects (subject_hash, key_id) \
             SELECT $1, key_id FROM personal_data_keys \
             WHERE key_id = $2 AND wrapped_key IS NOT NULL FOR SHARE \
             ON CONFLICT (subject_hash) DO NOTHING",
        )
        .bind(&subject_hash)
        .bind(key_id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        let holder: Option<Uuid> =
            sqlx::query_scalar("SELECT key_id FROM personal_data_subjects WHERE subject_hash = $1")
                .bind(&subject_hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(crate::SubjectClaim::of(key_id, holder, inserted))
    }

    async fn remove_subject(&self, key_id: Uuid, subject: &str) -> Result<bool, Error> {
        let removed = sqlx::query(
            "DELETE FROM personal_data_subjects WHERE subject_hash = $1 AND key_id = $2",
        )
        .bind(self.secret.subject_hash(subject))
        .bind(key_id)
        .execute(&self.pool)
        .await?;
        Ok(removed.rows_affected() > 0)
    }

    async fn key(&self, key_id: Uuid) -> Result<crate::KeyState, Error> {
        let wrapped: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT wrapped_key FROM personal_data_keys WHERE key_id = $1")
                .bind(key_id)
                .fetch_optional(&self.pool)
                .await?;
        crate::KeyState::from_column(key_id, wrapped, &self.secret)
    }

    async fn keys(
        &self,
        key_ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, crate::KeyState>, Error> {
        let rows: Vec<(Uuid, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT key_id, wrapped_key FROM personal_data_keys WHERE key_id = ANY($1)",
        )
        .bind(key_ids)
        .fetch_all(&self.pool)
        .await?;
        let found: std::collections::HashMap<Uuid, Option<Vec<u8>>> = rows.into_iter().collect();
        crate::KeyState::of_each(key_ids, &found, &self.secret)
    }

    async fn subject_key_id(&self, subject: &str) -> Result<Option<Uuid>, Error> {
        Ok(
            sqlx::query_scalar("SELECT key_id FROM personal_data_subjects WHERE subject_hash = $1")
                .bind(self.secret.subject_hash(subject))
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn destroy_key(&self, key_id: Uuid) -> Result<bool, Error> {
        // The key row first: its lock holds off an `add_subject` in flight until the
        // subjects are gone and the key reads erased.
        let mut transaction = self.pool.begin().await?;
        let destroyed = sqlx::query(
            "UPDATE personal_data_keys \
             SET subject_hash = NULL, wrapped_key = NULL, erased_at = now() \
             WHERE key_id = $1 AND wrapped_key IS NOT NULL",
        )
        .bind(key_id)
        .execute(&mut *transaction)
        .await?;
        sqlx::query("DELETE FROM personal_data_subjects WHERE key_id = $1")
            .bind(key_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(destroyed.rows_affected() > 0)
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append(&self, append: Append) -> Result<AppendOutcome, Error> {
        append.validate()?;
        match append.expected {
            ExpectedVersion::NoStream => self.append_at(&append, 1).await,
            ExpectedVersion::Exact(version) => match version.checked_add(1) {
                Some(first_version) => self.append_at(&append, first_version).await,
                None => Err(concurrency(&append)),
            },
            ExpectedVersion::Any => {
                let mut attempt = 0;
                loop {
                    let current = self.current_version(&append.stream_id).await?;
                    match self.append_at(&append, current + 1).await {
                        Err(Error::Concurrency { .. }) if attempt < ANY_VERSION_ATTEMPTS => {
                            attempt += 1;
                        }
                        other => return other,
                    }
                }
            }
        }
    }

    async fn read_stream(
        &self,
        stream_id: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let rows = sqlx::query(select_events!(
            "FROM events e WHERE e.stream_id = $1 AND e.version >= $2 \
             ORDER BY e.version LIMIT $3"
        ))
        .bind(stream_id.as_str())
        .bind(to_db_version(from_version))
        .bind(db_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_row).collect()
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        let rows = sqlx::query(select_events!(
            "FROM events e WHERE e.position > $1 ORDER BY e.position LIMIT $2"
        ))
        .bind(after)
        .bind(db_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_row).collect()
    }

    async fn head(&self) -> Result<Position, Error> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0)::bigint FROM events")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn log_snapshot(&self) -> Result<LogSnapshot, Error> {
        // One statement: the head from its snapshot, and every writer then in progress. A
        // snapshot lists only running ids below its `xmax` (the newest *finished* id + 1),
        // so a writer with a higher id still running is missing from it; every writer holds
        // a lock on its own id until it ends, so `pg_locks`, read after the snapshot, has
        // it. Ids are compared in their 32-bit form (`pg_locks` has no epoch): a pending
        // snapshot lives for seconds, ids wrap after four billion.
        let (head, in_progress): (i64, Vec<i64>) = sqlx::query_as(
            "SELECT COALESCE(MAX(position), 0)::bigint,                  ARRAY(SELECT (id::text::bigint) % 4294967296                        FROM pg_snapshot_xip(pg_current_snapshot()) AS id                        UNION                        SELECT transactionid::text::bigint FROM pg_locks                        WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted)              FROM events",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(LogSnapshot {
            head,
            in_progress: in_progress.into_iter().map(|id| id as u64).collect(),
        })
    }

    async fn unpublished(&self, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        // The page of the outbox first, then each event by its key. A plain join lets the
        // planner pick a merge join that walks the events index from the start of the log
        // (outbox statistics lag far behind its churn): 19 ms per poll at 22,000 events,
        // growing with the log. LATERAL pins the nested loop: one index probe per row.
        let rows = sqlx::query(select_events!(
            "FROM (SELECT position FROM outbox ORDER BY position LIMIT $1) o \
             CROSS JOIN LATERAL (SELECT * FROM events WHERE events.position = o.position) e \
             ORDER BY o.position"
        ))
        .bind(db_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_row).collect()
    }

    async fn mark_published(&self, positions: &[Position]) -> Result<(), Error> {
        sqlx::query("DELETE FROM outbox WHERE position = ANY($1)")
            .bind(positions)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, Error> {
        Ok(
            sqlx::query_scalar("SELECT position FROM checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO checkpoints (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = now()",
        )
        .bind(name)
        .bind(position)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn idempotent_result(&self, key: &str) -> Result<Option<Appended>, Error> {
        Ok(self.lookup_idempotency(key).await?.map(|(first, _)| first))
    }

    async fn idempotent_retry(
        &self,
        key: &str,
        request_hash: Option<&[u8]>,
    ) -> Result<Option<Appended>, Error> {
        match self.lookup_idempotency(key).await? {
            Some((first, then)) => {
                crate::types::same_request(key, request_hash, then)?;
                Ok(Some(first))
            }
            None => Ok(None),
        }
    }

    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

fn concurrency(append: &Append) -> Error {
    Error::Concurrency {
        stream_id: append.stream_id.to_string(),
        expected: append.expected,
    }
}

/// Where these events already are in the stream, if all of them are there in a row: the
/// mark of an earlier attempt of the same append that committed.
pub(crate) async fn own_events(
    pool: &PgPool,
    stream_id: &str,
    event_ids: &[Uuid],
) -> Result<Option<(u64, u64)>, Error> {
    let versions: Vec<i64> = sqlx::query_scalar(
        "SELECT version FROM events WHERE stream_id = $1 AND event_id = ANY($2) ORDER BY version",
    )
    .bind(stream_id)
    .bind(event_ids)
    .fetch_all(pool)
    .await?;
    Ok(crate::types::consecutive(&versions, event_ids.len()))
}

/// Writes one queued append with the single-row statement and answers its caller with the
/// version its event is at: written now, or found there from an earlier attempt. A
/// collision with another event at that version is `None`: another append got there first.
fn write_one(pool: PgPool, pending: Pending) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let event = &pending.event;
        let sql = if pending.publish {
            APPEND_ONE_PUBLISHED
        } else {
            APPEND_ONE_LOCAL
        };
        let result = sqlx::query(sql)
            .bind(pending.stream_id.as_str())
            .bind(pending.version)
            .bind(event.event_id)
            .bind(event.event_type.as_str())
            .bind(event.metadata.case_id)
            .bind(event.metadata.actor_subject.as_str())
            .bind(event.metadata.actor_role.as_str())
            .bind(event.metadata.correlation_id)
            .bind(event.metadata.causation_id)
            .bind(event.metadata.traceparent.as_deref())
            .bind(event.metadata.occurred_at)
            .bind(event.payload.as_slice())
            .execute(&pool)
            .await;
        let answer = match result {
            Ok(done) if done.rows_affected() == 1 => Ok(Some(pending.version)),
            Ok(_) => own_event(&pool, &pending).await,
            Err(sqlx::Error::Database(database))
                if matches!(
                    database.constraint(),
                    Some("events_stream_version" | "events_event_id")
                ) =>
            {
                own_event(&pool, &pending).await
            }
            Err(error) => Err(error.into()),
        };
        let _ = pending.reply.send(answer);
    })
}

/// The version of a queued append's event if an earlier attempt wrote it.
async fn own_event(pool: &PgPool, pending: &Pending) -> Result<Option<i64>, Error> {
    let found = own_events(pool, &pending.stream_id, &[pending.event.event_id]).await?;
    Ok(found.map(|(version, _)| to_db_version(version)))
}

fn to_db_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

fn db_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn from_db_version(version: i64) -> u64 {
    u64::try_from(version).unwrap_or(0)
}

fn decode_row(row: &PgRow) -> Result<RecordedEvent, Error> {
    let position: i64 = row.try_get("position")?;
    let stream_id: String = row.try_get("stream_id")?;
    Ok(RecordedEvent {
        position,
        stream_id: StreamId::parse(stream_id).map_err(|error| Error::Corrupt {
            position,
            reason: error.to_string(),
        })?,
        version: from_db_version(row.try_get("version")?),
        event_id: row.try_get::<Uuid, _>("event_id")?,
        event_type: row.try_get("event_type")?,
        payload: row.try_get("payload")?,
        metadata: EventMetadata {
            case_id: row.try_get("case_id")?,
            actor_subject: row.try_get("actor_subject")?,
            actor_role: row.try_get("actor_role")?,
            correlation_id: row.try_get("correlation_id")?,
            causation_id: row.try_get("causation_id")?,
            traceparent: row.try_get("traceparent")?,
            occurred_at: row.try_get::<OffsetDateTime, _>("occurred_at")?,
        },
        recorded_at: row.try_get("recorded_at")?,
    })
}
