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
use std::sync::Arc;

use crate::{Error, EventStore, LogSnapshot, Position, RecordedEvent};

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

/// How many of `events` (in position order) follow `after` without a gap.
fn contiguous(events: &[RecordedEvent], after: Position) -> usize {
    events
        .iter()
        .zip(after + 1..)
        .take_while(|(event, expected)| event.position == *expected)
        .count()
}

/// Of `events` (just read after `after`, at most `limit`), those that can be taken without
/// passing over a position still being written: the gap-free run after `after` as it is;
/// past a gap, what `horizon` settles, read again after a fresh snapshot. Empty when events
/// wait beyond a gap.
pub(crate) async fn settled_events(
    store: &dyn EventStore,
    horizon: &mut Horizon,
    after: Position,
    limit: usize,
    events: Vec<RecordedEvent>,
) -> Result<Vec<RecordedEvent>, Error> {
    // Positions right after `after` with no gap are settled: each position belongs to one
    // event, and these are all visible.
    if contiguous(&events, after) == events.len() {
        return Ok(events);
    }
    // The horizon comes from a snapshot taken *before* the events it may release are read:
    // a position it calls settled was final before the read, so the read has it. (Releasing
    // events read earlier could pass over one committed in between.)
    let settled = horizon.advance(store.log_snapshot().await?);
    let mut events = store.read_all(after, limit).await?;
    let gap_free = after + contiguous(&events, after) as Position;
    let safe = settled.max(gap_free);
    events.retain(|event| event.position <= safe);
    Ok(events)
}

/// Follows the log from a position on, in position order, without a checkpoint: for work
/// that only reacts to what is written (waking readers on this replica to what another
/// replica wrote) and can start again from the head after a restart. It never passes over
/// an event committed late (it reads up to the [`Horizon`]); events whose transactions were
/// in flight when it started at the head may be missed, so reactions that must not miss
/// anything also look again from time to time.
pub struct LogTail {
    store: Arc<dyn EventStore>,
    horizon: Horizon,
    after: Position,
    limit: usize,
}

impl LogTail {
    /// A tail that reports what is appended after the log's current head.
    pub async fn from_head(store: Arc<dyn EventStore>, limit: usize) -> Result<Self, Error> {
        let after = store.head().await?;
        Ok(Self::after(store, after, limit))
    }

    /// A tail that reports every event after `after`.
    pub fn after(store: Arc<dyn EventStore>, after: Position, limit: usize) -> Self {
        Self {
            store,
            horizon: Horizon::default(),
            after,
            limit: limit.max(1),
        }
    }

    /// The last position reported.
    pub fn position(&self) -> Position {
        self.after
    }

    /// The next settled events (at most the limit), or none if nothing new is settled.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, Error> {
        let events = self.store.read_all(self.after, self.limit).await?;
        if events.is_empty() {
            return Ok(events);
        }
        let events = settled_events(
            self.store.as_ref(),
            &mut self.horizon,
            self.after,
            self.limit,
            events,
        )
        .await?;
        if let Some(last) = events.last() {
            self.after = last.position;
        }
        Ok(events)
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
