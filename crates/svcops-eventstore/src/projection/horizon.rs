//! How far the log is settled: the highest position at or below which every event is either
//! visible or never will be. Projections read up to it and no further, so an event whose
//! transaction commits after one with a higher position is never passed over.
//!
//! Why it holds (PostgreSQL; SQLite's one writer always writes above the head): positions
//! are drawn in increasing order (a sequence with CACHE 1), and a transaction has its id
//! before it draws one (migration 0005). Take a snapshot with head `H` (the newest visible
//! position) and the transactions `T` then running with an id. Every position at or below
//! `H` was drawn before `H` was, so before the snapshot, by a transaction that was committed
//! (and is visible), rolled back (and never will be), or in `T`. Once every transaction of
//! `T` has ended, nothing more can appear at or below `H`. The horizon is therefore the head
//! of the newest snapshot whose running transactions have all ended since. `T` must be every
//! running writer: PostgreSQL's snapshot lists only ids below its `xmax`, so
//! `PostgresStore::log_snapshot` adds the ids `pg_locks` shows locked (a transaction that
//! took its id, then a position, and is still running after a later-started one finished
//! would otherwise be missing, and its position passed over). Writers never wait for the
//! horizon: it trails the head by about one poll while writes are in flight. The runner
//! reads the events it releases *after* the snapshot.

use std::collections::VecDeque;

use crate::{LogSnapshot, Position};

/// Snapshots waiting for their in-progress transactions to end; older ones are dropped
/// beyond this (which only delays the horizon, never moves it wrongly).
const PENDING: usize = 64;

#[derive(Debug, Default)]
pub struct Horizon {
    settled: Position,
    pending: VecDeque<LogSnapshot>,
}

impl Horizon {
    /// Takes a new snapshot into account and returns the settled position.
    pub fn advance(&mut self, now: LogSnapshot) -> Position {
        let ended = |snapshot: &LogSnapshot| {
            snapshot
                .in_progress
                .iter()
                .all(|transaction| !now.in_progress.contains(transaction))
        };
        if let Some(settled) = self
            .pending
            .iter()
            .filter(|snapshot| ended(snapshot))
            .map(|snapshot| snapshot.head)
            .max()
        {
            self.settled = self.settled.max(settled);
        }
        if now.in_progress.is_empty() {
            self.settled = self.settled.max(now.head);
        } else if now.head > self.settled {
            if self.pending.len() == PENDING {
                self.pending.pop_front();
            }
            self.pending.push_back(now);
        }
        let settled = self.settled;
        self.pending.retain(|snapshot| snapshot.head > settled);
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(head: Position, in_progress: &[u64]) -> LogSnapshot {
        LogSnapshot {
            head,
            in_progress: in_progress.to_vec(),
        }
    }

    #[test]
    fn with_no_writer_in_progress_the_head_is_settled() {
        let mut horizon = Horizon::default();
        assert_eq!(horizon.advance(snapshot(7, &[])), 7);
        assert_eq!(horizon.advance(snapshot(9, &[])), 9);
    }

    #[test]
    fn a_head_waits_for_the_writers_in_progress_when_it_was_seen() {
        let mut horizon = Horizon::default();
        assert_eq!(horizon.advance(snapshot(5, &[])), 5);
        // Transaction 100 may hold position 6 while 7 is visible.
        assert_eq!(horizon.advance(snapshot(7, &[100])), 5);
        // 100 still runs; 101 has started since.
        assert_eq!(horizon.advance(snapshot(9, &[100, 101])), 5);
        // 100 ended: 7 is settled, 9 still waits for 101.
        assert_eq!(horizon.advance(snapshot(12, &[101, 102])), 7);
        assert_eq!(horizon.advance(snapshot(12, &[102])), 9);
        assert_eq!(horizon.advance(snapshot(12, &[])), 12);
    }

    #[test]
    fn it_never_moves_back() {
        let mut horizon = Horizon::default();
        assert_eq!(horizon.advance(snapshot(10, &[])), 10);
        // A snapshot from a replica lagging behind, or a reused connection: harmless.
        assert_eq!(horizon.advance(snapshot(8, &[1])), 10);
        assert_eq!(horizon.advance(snapshot(8, &[])), 10);
    }

    #[test]
    fn under_constant_writes_it_trails_the_head_by_one_snapshot() {
        let mut horizon = Horizon::default();
        let mut settled = Vec::new();
        for step in 1..=5u64 {
            // A new writer each time; the previous one has ended.
            settled.push(horizon.advance(snapshot(step as Position * 10, &[step])));
        }
        assert_eq!(settled, [0, 10, 20, 30, 40]);
    }

    #[test]
    fn the_pending_snapshots_are_bounded() {
        let mut horizon = Horizon::default();
        for step in 1..=1_000 {
            horizon.advance(snapshot(step, &[1]));
        }
        assert!(horizon.pending.len() <= PENDING);
        assert_eq!(horizon.advance(snapshot(1_000, &[])), 1_000);
    }
}
