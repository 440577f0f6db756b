//! Following timelines: the live feed of new entries, and telling a case no office recorded
//! from one opened a moment ago.

use tokio::sync::broadcast;
use uuid::Uuid;

use super::{Appended, Error, Timelines};
use crate::app::SOURCE;

/// Timeline entries looked at to tell whether any office recorded a case.
const KNOWN_CASE_PAGE: usize = 64;

impl Timelines {
    /// Every new entry, of every case, as it is appended.
    pub fn subscribe(&self) -> broadcast::Receiver<Appended> {
        self.live.subscribe()
    }

    /// Whether any office has recorded `case_id`, as far as listen-in has heard: an entry
    /// of another office on its timeline, or one held aside. Listen-in's own session
    /// entries do not count (they are recorded only for known cases; older ones may not be).
    pub async fn case_known(&self, case_id: Uuid) -> Result<bool, Error> {
        if self.holding.lock().await.aside.holds_case(case_id) {
            return Ok(true);
        }
        let entries = self.read(case_id, 0, KNOWN_CASE_PAGE).await?;
        Ok(entries.iter().any(|entry| entry.source != SOURCE))
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
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => return self.case_known(case_id).await,
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
