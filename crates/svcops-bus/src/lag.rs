//! How far behind the pipeline of this process is: the relay of each outbox and each
//! consumer group report the age of what they are working through (0 once caught up), so
//! the front door can refuse new work before lag grows without bound
//! ([`Backpressure`]). Process-wide, like the `metrics` facade: in embedded mode every
//! office's relay and consumers are in the one process; in a cluster each process sees its
//! own.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A report not refreshed for this long no longer counts (its task ended or went idle after
/// reporting it was caught up).
const STALE_AFTER: Duration = Duration::from_secs(30);

static BOARD: LazyLock<Mutex<HashMap<String, (f64, Instant)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Reports that `source` (e.g. `relay:front-office`, `consumer:back-office`) is `seconds`
/// behind: the age of the oldest event it has not finished with; 0 when caught up.
pub fn report(source: &str, seconds: f64) {
    let mut board = BOARD.lock();
    match board.get_mut(source) {
        Some(entry) => *entry = (seconds, Instant::now()),
        None => {
            board.insert(source.to_owned(), (seconds, Instant::now()));
        }
    }
}

/// The source furthest behind now and how far, if any is behind at all.
pub fn worst() -> Option<(String, f64)> {
    let board = BOARD.lock();
    board
        .iter()
        .filter(|(_, (seconds, at))| *seconds > 0.0 && at.elapsed() < STALE_AFTER)
        .max_by(|(_, (left, _)), (_, (right, _))| left.total_cmp(right))
        .map(|(source, (seconds, _))| (source.clone(), *seconds))
}

/// Refuses new work while some part of the pipeline is further behind than a bound.
#[derive(Debug, Clone, Copy)]
pub struct Backpressure {
    /// `None`: never refuse.
    pub max_lag: Option<Duration>,
}

/// New work refused: `source` is `lag` behind, over the bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Overloaded {
    pub source: String,
    pub lag: Duration,
    pub max_lag: Duration,
    /// When to try again: about the time the lag over the bound takes to work off.
    pub retry_after: Duration,
}

impl Backpressure {
    pub const OFF: Self = Self { max_lag: None };

    /// `Err` when new work must wait.
    pub fn check(&self) -> Result<(), Overloaded> {
        let Some(max_lag) = self.max_lag else {
            return Ok(());
        };
        match worst() {
            Some((source, seconds)) if seconds > max_lag.as_secs_f64() => {
                let lag = Duration::from_secs_f64(seconds);
                Err(Overloaded {
                    source,
                    lag,
                    max_lag,
                    retry_after: (lag - max_lag)
                        .clamp(Duration::from_secs(1), Duration::from_secs(30)),
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_work_is_refused_only_past_the_bound_and_only_while_behind() {
        let source = format!("consumer:test-{}", uuid::Uuid::new_v4());
        let bound = Backpressure {
            max_lag: Some(Duration::from_secs(3600)),
        };
        report(&source, 7_200.0);
        let refused = bound.check().expect_err("two hours behind");
        assert_eq!(refused.source, source);
        assert!(refused.retry_after <= Duration::from_secs(30));
        assert!(Backpressure::OFF.check().is_ok(), "off never refuses");
        report(&source, 0.0);
        assert!(bound.check().is_ok(), "caught up");
    }
}
