//! Following timelines: the live feed of new entries (what this replica records, and what
//! the log shows another replica recorded), and telling a case no office recorded from one
//! opened a moment ago.

use std::sync::Arc;
use std::time::Duration;

use svcops_eventstore::projection::LogTail;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Appended, Error, Timelines, timeline_case};
use crate::app::SOURCE;

/// Timeline entries looked at to tell whether any office recorded a case.
const KNOWN_CASE_PAGE: usize = 64;

/// How often the log is looked at for entries another replica recorded.
const TAIL_POLL: Duration = Duration::from_millis(20);

/// Log records read at once by the tail.
const TAIL_BATCH: usize = 1_000;

/// How often a wait for an unknown case looks again without being woken (a case held aside
/// on another replica wakes nothing here).
const UNKNOWN_CASE_POLL: Duration = Duration::from_millis(100);

/// Feeds [`Timelines::subscribe`] with the entries the log shows, whichever replica recorded
/// them, until `shutdown`. The replica recording also feeds it directly, at once; a listener
/// told twice of one entry has nothing to read the second time.
pub async fn follow_log(timelines: Arc<Timelines>, shutdown: CancellationToken) {
    let mut tail = loop {
        match LogTail::from_head(timelines.store.clone(), TAIL_BATCH).await {
            Ok(tail) => break tail,
            Err(error) => {
                tracing::warn!(%error, "could not start following the log; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        match tail.next_batch().await {
            Ok(events) if !events.is_empty() => {
                for event in &events {
                    if let Some(case_id) = timeline_case(event.stream_id.as_str()) {
                        let _ = timelines.live.send(Appended {
                            case_id,
                            sequence: event.version,
                        });
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not follow the log; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(TAIL_POLL) => {}
        }
    }
}

impl Timelines {
    /// Every new entry, of every case, as it is appended.
    pub fn subscribe(&self) -> broadcast::Receiver<Appended> {
        self.live.subscribe()
    }

    /// Whether any office has recorded `case_id`, as far as listen-in has heard: an entry
    /// of another office on its timeline, or one held aside (here, or by whichever replica
    /// records, as the index has it). Listen-in's own session entries do not count (they
    /// are recorded only for known cases; older ones may not be).
    pub async fn case_known(&self, case_id: Uuid) -> Result<bool, Error> {
        if self.holding.lock().await.aside.holds_case(case_id) {
            return Ok(true);
        }
        let entries = self.read(case_id, 0, KNOWN_CASE_PAGE).await?;
        if entries.iter().any(|entry| entry.source != SOURCE) {
            return Ok(true);
        }
        match &self.index {
            Some(index) => match crate::index::held_aside(index, case_id).await {
                Ok(held) => Ok(held),
                // Not built yet (first start): the timeline alone answers.
                Err(svcops_eventstore::Error::ReadModelNotReady { .. }) => Ok(false),
                Err(error) => Err(error.into()),
            },
            None => Ok(false),
        }
    }

    /// Waits until `deadline` at most for `case_id` to be known ([`Self::case_known`]).
    ///
    /// Offices talk to listen-in only through events, so a case opened a moment ago and a
    /// case no office ever recorded look the same until the case's first event has been
    /// relayed and consumed; waiting a bounded grace period is what tells them apart.
    pub async fn wait_for_case(
        &self,
        case_id: Uuid,
        deadline: tokio::time::Instant,
    ) -> Result<bool, Error> {
        // Subscribe before looking, so an entry appended in between still wakes us.
        let mut live = self.subscribe();
        loop {
            if self.case_known(case_id).await? {
                return Ok(true);
            }
            let look_again = tokio::time::Instant::now() + UNKNOWN_CASE_POLL;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => return self.case_known(case_id).await,
                    () = tokio::time::sleep_until(look_again) => break,
                    wake = live.recv() => match wake {
                        Ok(appended) if appended.case_id != case_id => {}
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return self.case_known(case_id).await,
                    },
                }
            }
        }
    }
}
