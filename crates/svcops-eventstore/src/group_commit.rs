//! Group commit for the commonest PostgreSQL append: one event, no idempotency key.
//!
//! Concurrent appends queue here; a few writer tasks each take whatever is queued (never
//! waiting for more) and write it with one multi-row statement in one transaction. Each
//! append keeps its own guard (expected version) and the unique `(stream_id, version)`
//! constraint, with `ON CONFLICT DO NOTHING` so one append losing its race does not fail the
//! others; whether it went in is read back by event id. Alone, an append takes the
//! single-row statement, so a lone caller pays nothing for this.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use crate::{Error, NewEvent};

/// Most appends written by one statement.
const MAX_BATCH: usize = 256;
/// Appends that may wait in the queue before callers wait to enqueue.
const QUEUE: usize = 4096;

/// One queued append.
pub(crate) struct Pending {
    pub stream_id: String,
    pub version: i64,
    pub event: NewEvent,
    pub publish: bool,
    /// `Ok(Some(version))` the event is in the stream at `version` (appended now, or by an
    /// earlier attempt of the same append); `Ok(None)` the expected version did not hold.
    pub reply: oneshot::Sender<Result<Option<i64>, Error>>,
}

/// Writes one pending append on its own and answers its caller.
pub(crate) type WriteOne =
    fn(PgPool, Pending) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

const APPEND_MANY: &str = r#"
WITH input AS (
    SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::uuid[],
                         $6::text[], $7::text[], $8::uuid[], $9::uuid[], $10::text[],
                         $11::timestamptz[], $12::bytea[], $13::bool[])
         WITH ORDINALITY AS t(stream_id, version, event_id, event_type, case_id, actor_subject,
                              actor_role, correlation_id, causation_id, traceparent,
                              occurred_at, payload, publish, ord)
), ins AS (
    INSERT INTO events (stream_id, version, event_id, event_type, case_id, actor_subject,
                        actor_role, correlation_id, causation_id, traceparent, occurred_at, payload)
    SELECT i.stream_id, i.version, i.event_id, i.event_type, i.case_id, i.actor_subject,
           i.actor_role, i.correlation_id, i.causation_id, i.traceparent, i.occurred_at, i.payload
    FROM input i
    WHERE i.version = 1
       OR EXISTS (SELECT 1 FROM events e WHERE e.stream_id = i.stream_id AND e.version = i.version - 1)
    ORDER BY i.ord
    ON CONFLICT DO NOTHING
    RETURNING position, event_id
), outbox_rows AS (
    INSERT INTO outbox (position)
    SELECT ins.position FROM ins JOIN input i ON i.event_id = ins.event_id WHERE i.publish
)
SELECT event_id FROM ins
"#;

/// Events as PostgreSQL arrays, one per column, for `UNNEST`-based multi-row inserts.
pub(crate) struct EventColumns<'a> {
    pub event_ids: Vec<Uuid>,
    pub event_types: Vec<&'a str>,
    pub case_ids: Vec<Option<Uuid>>,
    pub actor_subjects: Vec<&'a str>,
    pub actor_roles: Vec<&'a str>,
    pub correlation_ids: Vec<Uuid>,
    pub causation_ids: Vec<Option<Uuid>>,
    pub traceparents: Vec<Option<&'a str>>,
    pub occurred: Vec<time::OffsetDateTime>,
    pub payloads: Vec<&'a [u8]>,
}

impl<'a> EventColumns<'a> {
    pub(crate) fn new(events: impl ExactSizeIterator<Item = &'a NewEvent>) -> Self {
        let count = events.len();
        let mut columns = Self {
            event_ids: Vec::with_capacity(count),
            event_types: Vec::with_capacity(count),
            case_ids: Vec::with_capacity(count),
            actor_subjects: Vec::with_capacity(count),
            actor_roles: Vec::with_capacity(count),
            correlation_ids: Vec::with_capacity(count),
            causation_ids: Vec::with_capacity(count),
            traceparents: Vec::with_capacity(count),
            occurred: Vec::with_capacity(count),
            payloads: Vec::with_capacity(count),
        };
        for event in events {
            columns.event_ids.push(event.event_id);
            columns.event_types.push(event.event_type.as_str());
            columns.case_ids.push(event.metadata.case_id);
            columns
                .actor_subjects
                .push(event.metadata.actor_subject.as_str());
            columns.actor_roles.push(event.metadata.actor_role.as_str());
            columns.correlation_ids.push(event.metadata.correlation_id);
            columns.causation_ids.push(event.metadata.causation_id);
            columns
                .traceparents
                .push(event.metadata.traceparent.as_deref());
            columns.occurred.push(event.metadata.occurred_at);
            columns.payloads.push(event.payload.as_slice());
        }
        columns
    }
}

impl GroupCommit {
    /// Starts `writers` writer tasks on `pool`. They stop when every handle is dropped.
    pub(crate) fn start(pool: PgPool, writers: usize, write_one: WriteOne) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..writers.max(1) {
            tokio::spawn(writer(pool.clone(), receiver.clone(), write_one));
        }
        Self { queue }
    }

    pub(crate) async fn append(&self, pending: Pending) -> Result<(), Error> {
        self.queue
            .send(pending)
            .await
            .map_err(|_| Error::Invalid("the event store is shutting down".into()))
    }
}

async fn writer(pool: PgPool, receiver: Arc<Mutex<mpsc::Receiver<Pending>>>, write_one: WriteOne) {
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(pending) => batch.push(pending),
                    Err(_) => break,
                }
            }
            batch
        };
        if batch.len() == 1 {
            for pending in batch {
                write_one(pool.clone(), pending).await;
            }
        } else {
            write_many(&pool, batch, write_one).await;
        }
    }
}

/// Answers appends the batch statement did not write: each either lost its race, or finds
/// its own event already in its stream (an earlier attempt committed).
async fn answer_refused(pool: &PgPool, refused: Vec<Pending>, write_one: WriteOne) {
    let event_ids: Vec<Uuid> = refused
        .iter()
        .map(|pending| pending.event.event_id)
        .collect();
    let found = sqlx::query_as::<_, (Uuid, String, i64)>(
        "SELECT event_id, stream_id, version FROM events WHERE event_id = ANY($1)",
    )
    .bind(&event_ids)
    .fetch_all(pool)
    .await;
    match found {
        Ok(rows) => {
            let found: HashMap<Uuid, (String, i64)> = rows
                .into_iter()
                .map(|(event_id, stream_id, version)| (event_id, (stream_id, version)))
                .collect();
            for pending in refused {
                let at = found
                    .get(&pending.event.event_id)
                    .filter(|(stream_id, _)| *stream_id == pending.stream_id)
                    .map(|(_, version)| *version);
                let _ = pending.reply.send(Ok(at));
            }
        }
        Err(error) => {
            tracing::debug!(%error, "reading back a group append failed; answering one by one");
            for pending in refused {
                write_one(pool.clone(), pending).await;
            }
        }
    }
}

async fn write_many(pool: &PgPool, batch: Vec<Pending>, write_one: WriteOne) {
    let count = batch.len();
    let stream_ids: Vec<&str> = batch
        .iter()
        .map(|pending| pending.stream_id.as_str())
        .collect();
    let versions: Vec<i64> = batch.iter().map(|pending| pending.version).collect();
    let publish: Vec<bool> = batch.iter().map(|pending| pending.publish).collect();
    let columns = EventColumns::new(batch.iter().map(|pending| &pending.event));
    let result = sqlx::query_scalar::<_, Uuid>(APPEND_MANY)
        .bind(&stream_ids)
        .bind(&versions)
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
        .bind(&publish)
        .fetch_all(pool)
        .await;
    drop((stream_ids, columns));
    match result {
        Ok(inserted) => {
            let inserted: HashSet<Uuid> = inserted.into_iter().collect();
            let (written, refused): (Vec<Pending>, Vec<Pending>) = batch
                .into_iter()
                .partition(|pending| inserted.contains(&pending.event.event_id));
            for pending in written {
                let _ = pending.reply.send(Ok(Some(pending.version)));
            }
            if !refused.is_empty() {
                answer_refused(pool, refused, write_one).await;
            }
        }
        Err(error) => {
            // Nothing of the batch was written (one statement): let each append try alone, so
            // each caller gets its own precise answer.
            tracing::debug!(%error, count, "group append failed; retrying one by one");
            for pending in batch {
                write_one(pool.clone(), pending).await;
            }
        }
    }
}
