//! The projection runner: one task per generation, reading the log after its checkpoint in
//! batches and applying each batch in the transaction that moves the checkpoint.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::horizon::settled_events;
use super::registry::{self, GenerationStatus, ProjectionStatus};
use super::{Horizon, Projection, Tables};
use crate::read_model::{ReadModels, SqlRow, SqlValue};
use crate::{Error, EventStore, Position};

/// How a runner paces itself.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Events per batch (one transaction each).
    pub batch_size: usize,
    /// How often an idle runner looks for new events written elsewhere (another replica);
    /// a reader in this process waiting for a position wakes it at once.
    pub idle_poll: Duration,
    /// How long a replaced generation's tables stay, for readers that resolved it just
    /// before the switch.
    pub drop_retired_after: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            batch_size: 1_000,
            idle_poll: Duration::from_millis(100),
            drop_retired_after: Duration::from_secs(5),
        }
    }
}

/// How soon a runner looks again when events wait beyond a position still being written.
const WAITING_POLL: Duration = Duration::from_millis(5);

struct Context {
    store: Arc<dyn EventStore>,
    read_models: Arc<dyn ReadModels>,
    projection: Arc<dyn Projection>,
    settings: RunnerSettings,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    /// The runner tasks, and the generations they run (one runner per generation here).
    tasks: Mutex<Vec<JoinHandle<()>>>,
    running: Mutex<HashSet<i64>>,
}

/// How often a live generation's runner looks for generations of this version it does not
/// run yet (a rebuild another replica started or finished).
const ADOPT_EVERY: Duration = Duration::from_secs(2);

/// A running projection: its runners, and the handle readers use.
pub struct Projector {
    context: Arc<Context>,
}

/// Starts a projection: records its first generation (or, if its version changed, a new
/// generation to build beside the live one) and runs every generation of this version.
/// Returns once the registry is prepared; catching up happens in the background.
pub async fn start(
    store: Arc<dyn EventStore>,
    read_models: Arc<dyn ReadModels>,
    projection: Arc<dyn Projection>,
    settings: RunnerSettings,
    shutdown: CancellationToken,
) -> Result<Projector, Error> {
    let context = Arc::new(Context {
        store,
        read_models,
        projection,
        settings,
        wake: Arc::new(Notify::new()),
        shutdown,
        tasks: Mutex::new(Vec::new()),
        running: Mutex::new(HashSet::new()),
    });
    let generations = prepare(&context).await?;
    for generation in generations {
        spawn(&context, generation);
    }
    Ok(Projector { context })
}

/// Runs `generation` here unless a runner here already does.
fn spawn(context: &Arc<Context>, generation: ProjectionStatus) {
    if !context.running.lock().insert(generation.generation) {
        return;
    }
    let number = generation.generation;
    let runner = context.clone();
    let task = tokio::spawn(async move {
        run(runner.clone(), generation).await;
        runner.running.lock().remove(&number);
    });
    let mut tasks = context.tasks.lock();
    tasks.retain(|task| !task.is_finished());
    tasks.push(task);
}

/// Starts runners for every live or building generation of this code's version that none
/// here runs: after a rebuild on another replica, this replica follows the new generation.
async fn adopt(context: &Arc<Context>) -> Result<(), Error> {
    if context.shutdown.is_cancelled() {
        return Ok(());
    }
    let projection = context.projection.as_ref();
    for generation in registry::projection_statuses(context.read_models.as_ref()).await? {
        if generation.name == projection.name() && generation.version == projection.version() {
            spawn(context, generation);
        }
    }
    Ok(())
}

/// Brings the registry in line with this code's version and returns the generations to run.
async fn prepare(context: &Context) -> Result<Vec<ProjectionStatus>, Error> {
    let projection = context.projection.as_ref();
    let version = projection.version();
    // Two replicas starting at once may both create a generation: one insert loses on the
    // primary key and tries again, finding the winner's.
    let mut attempt = 0;
    let generations = loop {
        attempt += 1;
        match prepare_once(context).await {
            Err(Error::Rejected(_)) if attempt < 3 => continue,
            other => break other?,
        }
    };
    // Readers on other replicas may still be on a generation retired moments ago.
    registry::drop_retired(
        context.read_models.as_ref(),
        projection,
        context.settings.drop_retired_after,
    )
    .await?;
    let mine: Vec<ProjectionStatus> = generations
        .into_iter()
        .filter(|generation| generation.version == version)
        .collect();
    if mine.is_empty() {
        tracing::warn!(
            projection = projection.name(),
            version,
            "a newer version of this projection is live; this process neither builds nor reads it"
        );
    }
    Ok(mine)
}

async fn prepare_once(context: &Context) -> Result<Vec<ProjectionStatus>, Error> {
    let projection = context.projection.as_ref();
    let version = projection.version();
    let dialect = context.read_models.dialect();
    let mut transaction = context.read_models.begin().await?;
    let mut generations = registry::current(&mut *transaction, projection.name()).await?;
    let live = generations
        .iter()
        .find(|generation| generation.status == GenerationStatus::Live)
        .cloned();
    match live {
        None => {
            // First start (or the registry lost its live row): build straight into live.
            let created = registry::create_generation(
                &mut *transaction,
                projection,
                dialect,
                GenerationStatus::Live,
            )
            .await?;
            generations.push(created);
        }
        Some(live) if live.version < version => {
            let building = generations.iter().find(|generation| {
                generation.status == GenerationStatus::Building && generation.version == version
            });
            if building.is_none() {
                tracing::info!(
                    projection = projection.name(),
                    from = live.version,
                    to = version,
                    "projection version changed: building a new generation beside the live one"
                );
                let created = registry::create_generation(
                    &mut *transaction,
                    projection,
                    dialect,
                    GenerationStatus::Building,
                )
                .await?;
                generations.push(created);
            }
        }
        Some(_) => {}
    }
    transaction.commit().await?;
    Ok(generations)
}

impl Projector {
    pub fn name(&self) -> &'static str {
        self.context.projection.name()
    }

    /// Its live and building generations, oldest first.
    pub async fn generations(&self) -> Result<Vec<ProjectionStatus>, Error> {
        let all = registry::projection_statuses(self.context.read_models.as_ref()).await?;
        Ok(all
            .into_iter()
            .filter(|generation| generation.name == self.name())
            .collect())
    }

    /// What readers use.
    pub fn read_model(&self) -> ReadModel {
        ReadModel {
            context: self.context.clone(),
        }
    }

    /// Rebuilds from position 0 into a new generation beside the live one; it becomes live
    /// once caught up. Returns the building generation (an existing one, if a rebuild is
    /// already under way).
    pub async fn rebuild(&self) -> Result<ProjectionStatus, Error> {
        let building = registry::request_rebuild(
            self.context.read_models.as_ref(),
            self.context.projection.as_ref(),
        )
        .await?;
        spawn(&self.context, building.clone());
        Ok(building)
    }

    /// Stops every runner at once, mid-batch if need be, as a crash would: an open batch
    /// rolls back. For tests of exactly that.
    pub fn abort(&self) {
        for task in self.context.tasks.lock().iter() {
            task.abort();
        }
    }

    /// Waits for every runner to stop (after shutdown).
    pub async fn stopped(&self) {
        loop {
            let tasks = std::mem::take(&mut *self.context.tasks.lock());
            if tasks.is_empty() {
                return;
            }
            for task in tasks {
                let _ = task.await;
            }
        }
    }
}

enum Step {
    /// A batch applied; whether it was a whole one (more may be waiting).
    Applied {
        full: bool,
    },
    /// Nothing after the checkpoint.
    Idle,
    /// Events after the checkpoint, but beyond a position still being written.
    Waiting,
    Replaced,
}

async fn run(context: Arc<Context>, mut generation: ProjectionStatus) {
    let name = context.projection.name();
    let mut horizon = Horizon::default();
    let mut prefetched = None;
    let tables = Tables::new(name, generation.generation, context.projection.tables());
    let mut failures = 0u32;
    let mut last_adopted = tokio::time::Instant::now();
    tracing::info!(
        projection = name,
        generation = generation.generation,
        status = generation.status.as_str(),
        checkpoint = generation.checkpoint,
        "projection runner started"
    );
    loop {
        if context.shutdown.is_cancelled() {
            return;
        }
        let step = step(
            &context,
            &tables,
            &mut generation,
            &mut horizon,
            &mut prefetched,
        )
        .await;
        let caught_up = match step {
            Ok(Step::Applied { full }) => !full,
            Ok(Step::Idle) => true,
            _ => false,
        };
        if caught_up && generation.status == GenerationStatus::Building {
            // At the tail of the log: switch over now, without waiting for a moment with
            // nothing new (which may never come under load); readers wait for what is left.
            match switch(&context, &mut generation).await {
                Ok(true) => {}
                Ok(false) => return replaced(&context, &generation).await,
                Err(error) => {
                    tracing::warn!(projection = name, %error, "switch-over failed; retrying")
                }
            }
        }
        match step {
            Ok(Step::Applied { .. }) => failures = 0,
            Ok(Step::Idle) => {
                failures = 0;
                if last_adopted.elapsed() >= ADOPT_EVERY {
                    last_adopted = tokio::time::Instant::now();
                    if let Err(error) = adopt(&context).await {
                        tracing::warn!(projection = name, %error, "could not look for new generations");
                    }
                }
                tokio::select! {
                    () = context.shutdown.cancelled() => return,
                    () = context.wake.notified() => {}
                    () = tokio::time::sleep(context.settings.idle_poll) => {}
                }
            }
            Ok(Step::Waiting) => {
                failures = 0;
                tokio::select! {
                    () = context.shutdown.cancelled() => return,
                    () = tokio::time::sleep(WAITING_POLL) => {}
                }
            }
            Ok(Step::Replaced) => return replaced(&context, &generation).await,
            Err(error) => {
                failures = failures.saturating_add(1);
                let backoff = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                tracing::warn!(projection = name, %error, ?backoff, "projection batch failed; retrying");
                metrics::counter!("svcops_projection_failures_total", "projection" => name)
                    .increment(1);
                tokio::select! {
                    () = context.shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}

async fn step(
    context: &Context,
    tables: &Tables,
    generation: &mut ProjectionStatus,
    horizon: &mut Horizon,
    prefetched: &mut Option<Prefetched>,
) -> Result<Step, Error> {
    let name = context.projection.name();
    // The batch read while the previous one was written, if it follows on from it (an empty
    // one is read again: events may have come since).
    let events = match prefetched.take() {
        Some(batch) if batch.after == generation.checkpoint && !batch.events.is_empty() => {
            batch.events
        }
        _ => {
            context
                .store
                .read_all(generation.checkpoint, context.settings.batch_size)
                .await?
        }
    };
    if events.is_empty() {
        return Ok(Step::Idle);
    }
    let events = settled_events(
        context.store.as_ref(),
        horizon,
        generation.checkpoint,
        context.settings.batch_size,
        events,
    )
    .await?;
    let Some(last) = events.last().map(|event| event.position) else {
        // Events wait beyond a gap: look again soon rather than after a whole idle poll.
        return Ok(Step::Waiting);
    };
    let started = std::time::Instant::now();
    let mut transaction = context.read_models.begin().await?;
    // The fence first: on PostgreSQL it also locks the row, so a second runner of this
    // generation waits here and then finds the checkpoint moved.
    if !registry::advance(
        &mut *transaction,
        name,
        generation.generation,
        generation.checkpoint,
        last,
    )
    .await?
    {
        drop(transaction);
        return match registry::generation(context.read_models.as_ref(), name, generation.generation)
            .await?
        {
            Some(now) if now.status != GenerationStatus::Retired => {
                // Another runner moved it (or promoted it): carry on from where it is.
                *generation = now;
                Ok(Step::Applied { full: true })
            }
            _ => Ok(Step::Replaced),
        };
    }
    // Write this batch and read the next one at once: a rebuild is then bound by the slower
    // of the two, not their sum.
    let write = async {
        context
            .projection
            .apply(&mut *transaction, tables, &events)
            .await?;
        transaction.commit().await
    };
    let read_next = context.store.read_all(last, context.settings.batch_size);
    let (written, next) = tokio::join!(write, read_next);
    written?;
    if let Ok(events) = next {
        *prefetched = Some(Prefetched {
            after: last,
            events,
        });
    }
    generation.checkpoint = last;
    metrics::counter!("svcops_projection_events_total", "projection" => name)
        .increment(events.len() as u64);
    metrics::gauge!("svcops_projection_checkpoint", "projection" => name).set(last as f64);
    metrics::histogram!("svcops_projection_batch_seconds", "projection" => name)
        .record(started.elapsed().as_secs_f64());
    Ok(Step::Applied {
        full: events.len() >= context.settings.batch_size,
    })
}

/// Promotes a caught-up building generation. `Ok(false)`: it is gone (replaced); if another
/// replica promoted it, it is carried on as live.
async fn switch(context: &Arc<Context>, generation: &mut ProjectionStatus) -> Result<bool, Error> {
    let name = context.projection.name();
    if registry::switch_over(
        context.read_models.as_ref(),
        name,
        generation.generation,
        generation.checkpoint,
    )
    .await?
    {
        tracing::info!(
            projection = name,
            generation = generation.generation,
            checkpoint = generation.checkpoint,
            "rebuilt generation caught up and is live"
        );
        generation.status = GenerationStatus::Live;
        tokio::spawn(drop_retired_later(context.clone()));
        return Ok(true);
    }
    // Not promoted at this checkpoint: another runner moved it on, or promoted it.
    match registry::generation(context.read_models.as_ref(), name, generation.generation).await? {
        Some(now) if now.status != GenerationStatus::Retired => {
            *generation = now;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A runner's generation was replaced: it stops, after making sure this replica runs the
/// one that replaced it.
async fn replaced(context: &Arc<Context>, generation: &ProjectionStatus) {
    let name = context.projection.name();
    tracing::info!(
        projection = name,
        generation = generation.generation,
        "generation replaced; its runner stops"
    );
    if let Err(error) = adopt(context).await {
        // A live runner's periodic look finds it later.
        tracing::warn!(projection = name, %error, "could not look for the new generation");
    }
}

/// A batch read ahead, while the one before it was being written.
struct Prefetched {
    /// The position it was read after.
    after: Position,
    events: Vec<crate::RecordedEvent>,
}

async fn drop_retired_later(context: Arc<Context>) {
    tokio::select! {
        () = context.shutdown.cancelled() => return,
        () = tokio::time::sleep(context.settings.drop_retired_after) => {}
    }
    if let Err(error) = registry::drop_retired(
        context.read_models.as_ref(),
        context.projection.as_ref(),
        Duration::ZERO,
    )
    .await
    {
        // The next start drops them.
        tracing::warn!(projection = context.projection.name(), %error, "could not drop a replaced generation's tables");
    }
}

/// The reading side of a projection: resolves the live generation's tables and waits, if
/// asked, until it has applied what a caller has written.
#[derive(Clone)]
pub struct ReadModel {
    context: Arc<Context>,
}

impl ReadModel {
    pub fn name(&self) -> &'static str {
        self.context.projection.name()
    }

    /// The live generation, if this code can read it (its version is this code's).
    pub async fn live(&self) -> Result<(Tables, Position), Error> {
        let projection = self.context.projection.as_ref();
        let live = registry::live(self.context.read_models.as_ref(), projection.name()).await?;
        match live {
            Some(live) if live.version == projection.version() => Ok((
                Tables::new(projection.name(), live.generation, projection.tables()),
                live.checkpoint,
            )),
            Some(live) => Err(Error::ReadModelNotReady {
                name: projection.name(),
                reason: format!(
                    "version {} is live and version {} is being built",
                    live.version,
                    projection.version()
                ),
            }),
            None => Err(Error::ReadModelNotReady {
                name: projection.name(),
                reason: "no generation is live yet".into(),
            }),
        }
    }

    /// The live generation once it has applied every event at or below `position`, waiting
    /// at most `timeout`.
    pub async fn applied(&self, position: Position, timeout: Duration) -> Result<Tables, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            // A new version still being built is waited for like a checkpoint behind.
            let reason = match self.live().await {
                Ok((tables, checkpoint)) if checkpoint >= position => return Ok(tables),
                Ok((_, checkpoint)) => format!(
                    "it has applied the log up to position {checkpoint}, not yet {position}"
                ),
                Err(Error::ReadModelNotReady { reason, .. }) => reason,
                Err(error) => return Err(error),
            };
            self.context.wake.notify_one();
            if tokio::time::Instant::now() + pause > deadline {
                return Err(Error::ReadModelNotReady {
                    name: self.name(),
                    reason,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// The live generation once it has applied everything committed before this call: a
    /// caller reads its own writes, whichever replica wrote them.
    pub async fn caught_up(&self, timeout: Duration) -> Result<Tables, Error> {
        let head = self.context.store.head().await?;
        self.applied(head, timeout).await
    }

    /// Runs a read-only query (a template, see [`Tables::sql`]) on `tables`.
    pub async fn query(
        &self,
        tables: &Tables,
        template: &str,
        arguments: &[SqlValue],
    ) -> Result<Vec<SqlRow>, Error> {
        self.context
            .read_models
            .query(&tables.sql(template), arguments)
            .await
    }
}
