//! Leases: work that must run on exactly one replica at a time (the relay of an outbox,
//! later timers and automatic rules) runs while its replica holds the lease, a row in the
//! office's database (`leases`, migration 0006) with a holder, an expiry and a fencing token.
//!
//! - **At most one holder.** A lease is taken only when free or expired, in one statement;
//!   every take increments its token, so a later holder always has a higher token.
//! - **Database time.** Expiry is the database's clock, so replicas' clocks never disagree
//!   about it. A holder counts its lease as lost on its *own* monotonic clock at
//!   `ttl - margin` after it asked for it (before the database set the expiry), so it stops
//!   before anyone else can start, whatever the network delay.
//! - **Takeover.** A holder renews every `renew_every`; when it dies, another replica takes
//!   the lease once it expires (at most `ttl` later) on its next try (`retry_every`).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::read_model::{Dialect, ReadModels, SqlValue};

/// Timing of a lease.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// How long a take or renewal holds the lease (database clock).
    pub ttl: Duration,
    /// How much sooner than `ttl` the holder counts it lost (its own clock).
    pub margin: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// How often a replica without the lease tries to take it.
    pub retry_every: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(5),
            margin: Duration::from_secs(1),
            renew_every: Duration::from_secs(1),
            retry_every: Duration::from_millis(500),
        }
    }
}

/// The database's clock in unix milliseconds, as SQL.
fn now_ms(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint",
        Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

fn millis(duration: Duration) -> SqlValue {
    i64::try_from(duration.as_millis())
        .unwrap_or(i64::MAX)
        .into()
}

/// Runs one writing statement with `RETURNING` in a transaction of its own (reads go to
/// read-only connections on SQLite).
async fn write(
    read_models: &dyn ReadModels,
    sql: &str,
    arguments: &[SqlValue],
) -> Result<Vec<crate::read_model::SqlRow>, Error> {
    let mut transaction = read_models.begin().await?;
    let rows = transaction.query(sql, arguments).await?;
    transaction.commit().await?;
    Ok(rows)
}

/// A lease this replica holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub name: String,
    pub holder: String,
    /// Increases with every take: a fencing token.
    pub token: i64,
    /// When this replica counts the lease lost unless renewed (its own clock).
    pub deadline: Instant,
}

/// Takes `name` for `holder` if it is free or expired.
pub async fn try_acquire(
    read_models: &dyn ReadModels,
    name: &str,
    holder: &str,
    settings: &LeaseSettings,
) -> Result<Option<Held>, Error> {
    let asked = Instant::now();
    let now = now_ms(read_models.dialect());
    let rows = write(
        read_models,
        &format!(
            "INSERT INTO leases (name, holder, token, expires_at) VALUES ($1, $2, 1, {now} + $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 token = leases.token + 1, expires_at = excluded.expires_at \
                 WHERE leases.expires_at < {now} \
                 RETURNING token"
        ),
        &[name.into(), holder.into(), millis(settings.ttl)],
    )
    .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(Held {
        name: name.to_owned(),
        holder: holder.to_owned(),
        token: row.integer(0)?,
        deadline: asked + settings.ttl.saturating_sub(settings.margin),
    }))
}

/// Extends a held lease; `false` if it was lost (expired and taken, or released).
pub async fn renew(
    read_models: &dyn ReadModels,
    held: &mut Held,
    settings: &LeaseSettings,
) -> Result<bool, Error> {
    let asked = Instant::now();
    let now = now_ms(read_models.dialect());
    let rows = write(
        read_models,
        &format!(
            "UPDATE leases SET expires_at = {now} + $1 \
                 WHERE name = $2 AND holder = $3 AND token = $4 AND expires_at >= {now} \
                 RETURNING token"
        ),
        &[
            millis(settings.ttl),
            held.name.as_str().into(),
            held.holder.as_str().into(),
            held.token.into(),
        ],
    )
    .await?;
    if rows.is_empty() {
        return Ok(false);
    }
    held.deadline = asked + settings.ttl.saturating_sub(settings.margin);
    Ok(true)
}

/// Gives a held lease up, so another replica can take it at once.
pub async fn release(read_models: &dyn ReadModels, held: &Held) -> Result<(), Error> {
    write(
        read_models,
        "UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2 AND token = $3 \
             RETURNING token",
        &[
            held.name.as_str().into(),
            held.holder.as_str().into(),
            held.token.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Who holds `name` now and under which fencing token, if anyone (an expired or released
/// lease has no holder). A holder that lost the lease and took it again has a new token.
pub async fn current_hold(
    read_models: &dyn ReadModels,
    name: &str,
) -> Result<Option<(String, i64)>, Error> {
    let now = now_ms(read_models.dialect());
    let rows = read_models
        .query(
            &format!("SELECT holder, token FROM leases WHERE name = $1 AND expires_at >= {now}"),
            &[name.into()],
        )
        .await?;
    rows.first()
        .map(|row| Ok((row.text(0)?.to_owned(), row.integer(1)?)))
        .transpose()
}

/// Deletes the rows of leases named `prefix…` that expired more than `older_than` ago: leases
/// named after a replica (one per process) would otherwise pile up.
pub async fn forget_expired(
    read_models: &dyn ReadModels,
    prefix: &str,
    older_than: Duration,
) -> Result<u64, Error> {
    let now = now_ms(read_models.dialect());
    let rows = write(
        read_models,
        &format!(
            "DELETE FROM leases WHERE substr(name, 1, length($1)) = $1 \
                 AND expires_at < {now} - $2 RETURNING name"
        ),
        &[prefix.into(), millis(older_than)],
    )
    .await?;
    Ok(rows.len() as u64)
}

/// What work running under a lease is told.
#[derive(Debug, Clone)]
pub struct LeaseGuard {
    /// Cancelled when the work must stop: shutdown, or the lease is lost.
    pub stop: CancellationToken,
    /// Cancelled only when the lease is lost (or about to be): then nothing more may be
    /// done in its name, not even a last flush.
    pub lost: CancellationToken,
    /// The fencing token of this hold.
    pub token: i64,
}

impl LeaseGuard {
    pub fn is_held(&self) -> bool {
        !self.lost.is_cancelled()
    }
}

/// Runs `work` whenever this replica holds `name`, until `shutdown`: takes the lease when it
/// can, renews it while `work` runs, stops `work` (through its guard) when the lease is
/// lost, and releases the lease when `work` returns. `work` is started again on every new
/// hold.
pub async fn run_while_held<F, Fut>(
    read_models: std::sync::Arc<dyn ReadModels>,
    name: String,
    holder: String,
    settings: LeaseSettings,
    shutdown: CancellationToken,
    mut work: F,
) where
    F: FnMut(LeaseGuard) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let held = match try_acquire(read_models.as_ref(), &name, &holder, &settings).await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(lease = %name, %error, "could not try the lease");
                None
            }
        };
        let Some(held) = held else {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(settings.retry_every) => continue,
            }
        };
        tracing::info!(lease = %name, token = held.token, "lease taken");
        metrics::gauge!("svcops_lease_held", "lease" => name.clone()).set(1.0);
        let lost = CancellationToken::new();
        let guard = LeaseGuard {
            stop: shutdown.child_token(),
            lost: lost.clone(),
            token: held.token,
        };
        let stop = guard.stop.clone();
        // Renewing runs beside the work in this same task (not spawned), so whatever ends
        // this task (a crash, an abort) ends the renewals with it.
        let renewing = async {
            let mut held = held.clone();
            loop {
                let next = (Instant::now() + settings.renew_every).min(held.deadline);
                tokio::select! {
                    () = tokio::time::sleep_until(held.deadline) => break,
                    () = tokio::time::sleep_until(next) => {}
                }
                // A renewal still unanswered at the deadline is a lost lease: the database
                // may already have given it to another replica.
                let deadline = held.deadline;
                let renewed = tokio::select! {
                    renewed = renew(read_models.as_ref(), &mut held, &settings) => renewed,
                    () = tokio::time::sleep_until(deadline) => break,
                };
                match renewed {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(error) => {
                        tracing::warn!(lease = %name, %error, "could not renew the lease")
                    }
                }
                if Instant::now() >= held.deadline {
                    break;
                }
            }
            tracing::warn!(lease = %name, "lease lost");
            lost.cancel();
            stop.cancel();
        };
        let work = work(guard);
        tokio::pin!(renewing, work);
        let mut renewing_ended = false;
        loop {
            tokio::select! {
                () = &mut work => break,
                () = &mut renewing, if !renewing_ended => renewing_ended = true,
            }
        }
        metrics::gauge!("svcops_lease_held", "lease" => name.clone()).set(0.0);
        if !lost.is_cancelled()
            && let Err(error) = release(read_models.as_ref(), &held).await
        {
            tracing::warn!(lease = %name, %error, "could not release the lease; it expires");
        }
    }
}
