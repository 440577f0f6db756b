//! Group commit for the commonest PostgreSQL append: one event, no idempotency key.
//!
//! Concurrent appends queue here; a few writer tasks each take whatever is queued (never
//! waiting for more) and write it with one multi-row statement in one transaction. Each
//! append keeps its own guard (expected version) and the unique `(stream_id, version)`
//! constraint, with `ON CONFLICT DO NOTHING` so one append losing its race does not fail the
//! others; whether it went in is read back by event id. Alone, an append takes the
//! single-row statement, so a lone caller pays nothing for this.

use std::collections::HashSet;
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
    /// `Ok(true)` appended, `Ok(false)` the expected version did not hold.
    pub reply: oneshot::Sender<Result<bool, Error>>,
}

/// Writes one pending append on its own; `Ok(false)` when the guard or constraint refused.
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
    ON CONFLICT (stream_id, version) DO NOTHING
    RETURNING position, event_id
), outbox_rows AS (
    INSERT INTO outbox (position)
    SELECT ins.position FROM ins JOIN input i ON i.event_id = ins.event_id WHERE i.publish
)
SELECT event_id FROM ins
"#;

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

async fn write_many(pool: &PgPool, batch: Vec<Pending>, write_one: WriteOne) {
    let count = batch.len();
    let mut stream_ids = Vec::with_capacity(count);
    let mut versions = Vec::with_capacity(count);
    let mut event_ids = Vec::with_capacity(count);
    let mut event_types = Vec::with_capacity(count);
    let mut case_ids = Vec::with_capacity(count);
    let mut actor_subjects = Vec::with_capacity(count);
    let mut actor_roles = Vec::with_capacity(count);
    let mut correlation_ids = Vec::with_capacity(count);
    let mut causation_ids = Vec::with_capacity(count);
    let mut traceparents = Vec::with_capacity(count);
    let mut occurred = Vec::with_capacity(count);
    let mut payloads = Vec::with_capacity(count);
    let mut publish = Vec::with_capacity(count);
    for pending in &batch {
        let event = &pending.event;
        stream_ids.push(pending.stream_id.as_str());
        versions.push(pending.version);
        event_ids.push(event.event_id);
        event_types.push(event.event_type.as_str());
        case_ids.push(event.metadata.case_id);
        actor_subjects.push(event.metadata.actor_subject.as_str());
        actor_roles.push(event.metadata.actor_role.as_str());
        correlation_ids.push(event.metadata.correlation_id);
        causation_ids.push(event.metadata.causation_id);
        traceparents.push(event.metadata.traceparent.as_deref());
        occurred.push(event.metadata.occurred_at);
        payloads.push(event.payload.as_slice());
        publish.push(pending.publish);
    }
    let result = sqlx::query_scalar::<_, Uuid>(APPEND_MANY)
        .bind(&stream_ids)
        .bind(&versions)
        .bind(&event_ids)
        .bind(&event_types)
        .bind(&case_ids)
        .bind(&actor_subjects)
        .bind(&actor_roles)
        .bind(&correlation_ids)
        .bind(&causation_ids)
        .bind(&traceparents)
        .bind(&occurred)
        .bind(&payloads)
        .bind(&publish)
        .fetch_all(pool)
        .await;
    drop((
        stream_ids,
        event_types,
        actor_subjects,
        actor_roles,
        traceparents,
        payloads,
    ));
    match result {
        Ok(inserted) => {
            let inserted: HashSet<Uuid> = inserted.into_iter().collect();
            for pending in batch {
                let appended = inserted.contains(&pending.event.event_id);
                let _ = pending.reply.send(Ok(appended));
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
