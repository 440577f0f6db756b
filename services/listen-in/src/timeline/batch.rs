//! Recording a batch of received events: the same decisions as [`Timelines::observe`] one
//! event at a time, with the timeline entries of each run of recordable events written by
//! one [`EventStore::append_all`](svcops_eventstore::EventStore::append_all) (one commit on
//! SQLite) instead of one commit each.

use std::collections::HashSet;

use svcops_bus::envelope::BusEvent;
use svcops_eventstore::Append;
use uuid::Uuid;

use super::held::Holding;
use super::{Error, Timelines, arrival, timeline_append};
use crate::hold_aside::Decision;

/// Timeline entries decided and not written yet.
#[derive(Default)]
struct Pending {
    entries: Vec<(Uuid, Append, BusEvent, bool)>,
    /// Events decided for the timeline in this batch (written or pending).
    recorded: HashSet<Uuid>,
}

impl Pending {
    fn record(&mut self, event: &BusEvent, cause_missing: bool) {
        self.recorded.insert(event.event_id);
        if let Some((case_id, append)) = timeline_append(event, cause_missing) {
            self.entries
                .push((case_id, append, event.clone(), cause_missing));
        }
    }
}

impl Timelines {
    /// Records a batch of received events, in order, as [`Self::observe`] would one by one.
    /// On an error what is held aside in memory is restored from the durable record (some
    /// decisions may have been made on entries that were not written), and the caller may
    /// observe the events again one by one.
    pub async fn observe_batch(&self, events: &[BusEvent]) -> Result<(), Error> {
        let mut holding = self.holding.lock().await;
        let outcome = self.observe_all(&mut holding, events).await;
        if outcome.is_err()
            && let Err(error) = self.restore(&mut holding).await
        {
            tracing::warn!(%error, "could not restore the events held aside after a failed batch");
        }
        outcome
    }

    async fn observe_all(&self, holding: &mut Holding, events: &[BusEvent]) -> Result<(), Error> {
        let mut pending = Pending::default();
        for event in events {
            let Some(case_id) = event.metadata.case_id else {
                continue;
            };
            if holding.aside.contains(event.event_id) || pending.recorded.contains(&event.event_id)
            {
                continue;
            }
            let cause_on_timeline = match event.metadata.causation_id {
                Some(cause) => pending.recorded.contains(&cause) || self.on_timeline(cause).await?,
                None => true,
            };
            let arrival = arrival(event, case_id);
            match holding.aside.decide(&arrival, cause_on_timeline) {
                Decision::Record => {
                    pending.record(event, false);
                    for release in holding.aside.recorded(event.event_id, &event.stream_id) {
                        pending.record(&release.held.item.event, release.cause_missing);
                    }
                }
                Decision::HoldAside => {
                    // Rare (an effect before its cause): what is decided so far is written
                    // first, then the event is held aside as on its own.
                    self.write(&mut pending).await?;
                    self.hold_aside(holding, event, arrival, cause_on_timeline)
                        .await?;
                }
            }
        }
        self.write(&mut pending).await
    }

    /// Writes the pending entries with one `append_all`; the first failure is returned
    /// after the others have been looked at.
    async fn write(&self, pending: &mut Pending) -> Result<(), Error> {
        if pending.entries.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut pending.entries);
        let (appends, followers): (Vec<Append>, Vec<_>) = entries
            .into_iter()
            .map(|(case_id, append, event, cause_missing)| {
                (append, (case_id, event, cause_missing))
            })
            .unzip();
        let outcomes = self.store.append_all(appends).await;
        let mut failure = None;
        for (outcome, (case_id, event, cause_missing)) in outcomes.into_iter().zip(&followers) {
            match outcome {
                Ok(outcome) => self.recorded(*case_id, &outcome, event, *cause_missing),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }
}
