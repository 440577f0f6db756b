//! Read model: every case, newest first, for listing. Rebuilt from the log at start, then
//! kept current by the relay tap.

use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};

use svcops_bus::relay::Tap;
use svcops_eventstore::RecordedEvent;
use svcops_kit::aggregate::{Aggregate, DomainEvent, Recorded};
use uuid::Uuid;

use crate::case::{Case, CaseEvent, CaseView, FlagNote};

/// Read model: every case, newest first. Rebuilt from the log at start, then kept current
/// by the relay tap (which sees each event before it is published).
#[derive(Default)]
pub struct CaseList {
    // Keyed by the position of the case's first event: stable and newest-last.
    cases: RwLock<BTreeMap<i64, CaseView>>,
    positions: RwLock<HashMap<Uuid, i64>>,
}

impl CaseList {
    pub(crate) fn page(
        &self,
        page_size: usize,
        before: Option<i64>,
    ) -> (Vec<CaseView>, Option<i64>) {
        let page_size = page_size.max(1);
        let cases = self.cases.read();
        let range = match before {
            Some(position) => cases.range(..position),
            None => cases.range(..),
        };
        let page: Vec<(i64, CaseView)> = range
            .rev()
            .take(page_size + 1)
            .map(|(position, view)| (*position, view.clone()))
            .collect();
        let next = (page.len() > page_size).then(|| page[page_size - 1].0);
        (
            page.into_iter()
                .take(page_size)
                .map(|(_, view)| view)
                .collect(),
            next,
        )
    }

    pub fn len(&self) -> usize {
        self.cases.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Tap for CaseList {
    fn observe(&self, events: &[RecordedEvent]) {
        let mut cases = self.cases.write();
        let mut positions = self.positions.write();
        for recorded in events {
            let event = match CaseEvent::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(event)) => Recorded::new(event, recorded),
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(%error, position = recorded.position, "case list skips an undecodable event");
                    continue;
                }
            };
            match &event.event {
                CaseEvent::Opened { case_id, .. } => {
                    if positions.contains_key(case_id) {
                        continue; // seen already (rebuild and tap overlap, or a re-published batch)
                    }
                    let mut case = Case::default();
                    case.apply(&event);
                    if let Some(view) = CaseView::of(case, recorded.version) {
                        positions.insert(*case_id, recorded.position);
                        cases.insert(recorded.position, view);
                    }
                }
                CaseEvent::Flagged {
                    case_id,
                    flag,
                    detail,
                } => {
                    let Some(view) = positions
                        .get(case_id)
                        .and_then(|position| cases.get_mut(position))
                    else {
                        continue;
                    };
                    if recorded.version <= view.version {
                        continue;
                    }
                    view.version = recorded.version;
                    view.flags.push(FlagNote {
                        flag: *flag,
                        detail: detail.clone(),
                        flagged_at: event.occurred_at,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use svcops_eventstore::{EventMetadata, RecordedEvent};
    use svcops_kit::events::CommandContext;
    use time::OffsetDateTime;

    use super::*;
    use crate::case::{CaseDetails, Category, Channel, CustomerPhone, Priority};

    fn opened_at(position: i64) -> RecordedEvent {
        let case_id = Uuid::now_v7();
        let mut details = CaseDetails::parse(
            "+8613800001234",
            Category::Repair,
            Priority::Normal,
            Channel::Hotline,
            &format!("case {position}"),
            "",
            "",
        )
        .expect("valid");
        details.customer_phone = CustomerPhone::Sealed {
            key_id: Uuid::now_v7(),
            sealed: vec![1, 2, 3],
        };
        let context = CommandContext::from_caller(svcops_kit::Principal {
            subject: "alice".into(),
            role: svcops_kit::Role::Agent,
        });
        let (event_type, payload) = CaseEvent::Opened { case_id, details }.encode();
        let event = context.new_event(Some(case_id), event_type, payload);
        RecordedEvent {
            position,
            stream_id: Case::stream(case_id),
            version: 1,
            event_id: event.event_id,
            event_type: event.event_type,
            payload: event.payload,
            metadata: EventMetadata {
                occurred_at: OffsetDateTime::UNIX_EPOCH,
                ..event.metadata
            },
            recorded_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn summaries(views: &[CaseView]) -> Vec<&str> {
        views
            .iter()
            .map(|view| view.details.summary.as_str())
            .collect()
    }

    #[test]
    fn pages_run_newest_first_without_gaps_or_repeats() {
        let list = CaseList::default();
        let events: Vec<_> = (1..=5).map(opened_at).collect();
        list.observe(&events);
        // Replayed again (rebuild and tap overlap): nothing doubles.
        list.observe(&events);
        assert_eq!(list.len(), 5);

        let (first, next) = list.page(2, None);
        assert_eq!(summaries(&first), ["case 5", "case 4"]);
        let (second, next) = list.page(2, next);
        assert_eq!(summaries(&second), ["case 3", "case 2"]);
        let (third, next) = list.page(2, next);
        assert_eq!(summaries(&third), ["case 1"]);
        assert_eq!(next, None);

        let (all, next) = list.page(5, None);
        assert_eq!(all.len(), 5);
        assert_eq!(next, None, "an exactly full page has no next page");
        let (one, _) = list.page(0, None);
        assert_eq!(one.len(), 1, "a zero page size is treated as one");
    }
}
