//! Which received events a case timeline may record now, and which wait aside.
//!
//! Pure: no IO, no clock. `timeline` asks the store whether a cause is on the timeline, persists
//! what is held aside, and records what this module releases, in the order it releases it.
//!
//! An event waits aside while
//! - its cause (`causation_id`) is not on the timeline, or
//! - an earlier event of its own stream waits aside (a stream's order always holds).
//!
//! Recording an event releases, transitively, whatever waited only for it. The bound: at
//! most [`Limits::max_held`] events wait at once and none waits longer than
//! [`Limits::max_age`]; past either, the oldest is released marked "cause missing" (its
//! cause, if it ever comes, is recorded after it), and what waited behind it follows.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

/// How much may wait aside, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Events waiting at once, over every case.
    pub max_held: usize,
    /// Longest wait for a cause.
    pub max_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Offices' topics are normally seconds apart at worst; an effect still waiting
            // after minutes has a cause that is not coming (dead-lettered, or of no case).
            max_held: 10_000,
            max_age: Duration::from_secs(5 * 60),
        }
    }
}

/// What a received event is to the ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub event_id: Uuid,
    pub case_id: Uuid,
    pub stream_id: String,
    pub version: u64,
    pub cause: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Record,
    HoldAside,
}

/// An event waiting aside, with what `timeline` keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held<T> {
    /// Order of holding: the oldest first.
    order: u64,
    arrival: Arrival,
    /// The cause it still waits for, if any.
    waiting_for: Option<Uuid>,
    held_at: OffsetDateTime,
    pub item: T,
}

/// An event to record now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release<T> {
    pub held: Held<T>,
    /// Released by the bound while its cause was still not on the timeline.
    pub cause_missing: bool,
}

/// Events held aside, oldest first, indexed by what they wait for.
#[derive(Debug)]
pub struct HeldAside<T> {
    held: BTreeMap<u64, Held<T>>,
    next_order: u64,
    by_event: HashMap<Uuid, u64>,
    by_cause: HashMap<Uuid, Vec<u64>>,
    /// Held events of each stream by version: the first one blocks the rest.
    by_stream: HashMap<String, BTreeMap<u64, u64>>,
}

impl<T> Default for HeldAside<T> {
    fn default() -> Self {
        Self {
            held: BTreeMap::new(),
            next_order: 0,
            by_event: HashMap::new(),
            by_cause: HashMap::new(),
            by_stream: HashMap::new(),
        }
    }
}

impl<T> HeldAside<T> {
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn contains(&self, event_id: Uuid) -> bool {
        self.by_event.contains_key(&event_id)
    }

    pub fn holds_case(&self, case_id: Uuid) -> bool {
        self.held
            .values()
            .any(|held| held.arrival.case_id == case_id)
    }

    /// What waits longest.
    pub fn oldest(&self) -> Option<&T> {
        self.held.values().next().map(|held| &held.item)
    }

    /// Whether `arrival` may be recorded now; `cause_on_timeline` is whether its cause (if
    /// it names one) is already recorded.
    pub fn decide(&self, arrival: &Arrival, cause_on_timeline: bool) -> Decision {
        let stream_blocked = self
            .by_stream
            .get(&arrival.stream_id)
            .is_some_and(|versions| !versions.is_empty());
        if stream_blocked || (arrival.cause.is_some() && !cause_on_timeline) {
            Decision::HoldAside
        } else {
            Decision::Record
        }
    }

    /// Holds `arrival` aside (after [`Self::decide`] said so, or when restoring after a
    /// restart, in the order they were first held).
    pub fn hold(
        &mut self,
        arrival: Arrival,
        cause_on_timeline: bool,
        held_at: OffsetDateTime,
        item: T,
    ) {
        let order = self.next_order;
        self.next_order += 1;
        let waiting_for = arrival.cause.filter(|_| !cause_on_timeline);
        self.insert(Held {
            order,
            arrival,
            waiting_for,
            held_at,
            item,
        });
    }

    fn insert(&mut self, held: Held<T>) {
        let order = held.order;
        self.by_event.insert(held.arrival.event_id, order);
        if let Some(cause) = held.waiting_for {
            self.by_cause.entry(cause).or_default().push(order);
        }
        self.by_stream
            .entry(held.arrival.stream_id.clone())
            .or_default()
            .insert(held.arrival.version, order);
        self.held.insert(order, held);
    }

    fn take(&mut self, order: u64) -> Option<Held<T>> {
        let held = self.held.remove(&order)?;
        self.by_event.remove(&held.arrival.event_id);
        if let Some(cause) = held.waiting_for
            && let Some(waiting) = self.by_cause.get_mut(&cause)
        {
            waiting.retain(|other| *other != order);
            if waiting.is_empty() {
                self.by_cause.remove(&cause);
            }
        }
        if let Some(versions) = self.by_stream.get_mut(&held.arrival.stream_id) {
            versions.remove(&held.arrival.version);
            if versions.is_empty() {
                self.by_stream.remove(&held.arrival.stream_id);
            }
        }
        Some(held)
    }

    /// First held event of `stream_id`, which every later one of the stream waits behind.
    fn stream_front(&self, stream_id: &str) -> Option<u64> {
        self.by_stream
            .get(stream_id)
            .and_then(|versions| versions.values().next().copied())
    }

    fn releasable(&self, order: u64) -> bool {
        self.held.get(&order).is_some_and(|held| {
            held.waiting_for.is_none() && self.stream_front(&held.arrival.stream_id) == Some(order)
        })
    }

    /// `event_id` (of `stream_id`) is now on the timeline: everything that waited only for
    /// it, transitively, in the order to record it.
    pub fn recorded(&mut self, event_id: Uuid, stream_id: &str) -> Vec<Release<T>> {
        let mut released = Vec::new();
        let mut queue = VecDeque::from([(event_id, stream_id.to_owned())]);
        while let Some((event_id, stream_id)) = queue.pop_front() {
            let mut candidates = self.by_cause.remove(&event_id).unwrap_or_default();
            for order in &candidates {
                if let Some(held) = self.held.get_mut(order) {
                    held.waiting_for = None;
                }
            }
            candidates.extend(self.stream_front(&stream_id));
            candidates.sort_unstable();
            candidates.dedup();
            for order in candidates {
                if self.releasable(order)
                    && let Some(held) = self.take(order)
                {
                    queue.push_back((held.arrival.event_id, held.arrival.stream_id.clone()));
                    released.push(Release {
                        held,
                        cause_missing: false,
                    });
                }
            }
        }
        released
    }

    /// Whatever may be recorded already (after a restart, or after [`Self::restore`]).
    pub fn ready(&mut self) -> Vec<Release<T>> {
        let mut released = Vec::new();
        while let Some(order) = self
            .held
            .keys()
            .copied()
            .find(|order| self.releasable(*order))
        {
            if let Some(held) = self.take(order) {
                let (event_id, stream_id) = (held.arrival.event_id, held.arrival.stream_id.clone());
                released.push(Release {
                    held,
                    cause_missing: false,
                });
                released.extend(self.recorded(event_id, &stream_id));
            }
        }
        released
    }

    /// Enforces the bound at `now`: the oldest events past it are released marked "cause
    /// missing", each followed by what waited only for it.
    pub fn over_bound(&mut self, now: OffsetDateTime, limits: &Limits) -> Vec<Release<T>> {
        let max_age = time::Duration::try_from(limits.max_age).unwrap_or(time::Duration::MAX);
        let mut released = Vec::new();
        while let Some(oldest) = self.held.values().next() {
            let too_old = now - oldest.held_at >= max_age;
            if !too_old && self.held.len() <= limits.max_held {
                break;
            }
            // Streams are held in their order, so the oldest is its stream's first; should
            // it not be, the stream's first goes, keeping the stream's order.
            let order = self
                .stream_front(&oldest.arrival.stream_id)
                .unwrap_or(oldest.order);
            let Some(held) = self.take(order) else {
                break;
            };
            let (event_id, stream_id) = (held.arrival.event_id, held.arrival.stream_id.clone());
            let cause_missing = held.waiting_for.is_some();
            released.push(Release {
                held,
                cause_missing,
            });
            released.extend(self.recorded(event_id, &stream_id));
        }
        released
    }

    /// Puts back releases that could not be recorded, as they were.
    pub fn restore(&mut self, releases: impl IntoIterator<Item = Release<T>>) {
        for release in releases {
            let mut held = release.held;
            if release.cause_missing && held.waiting_for.is_none() {
                held.waiting_for = held.arrival.cause;
            }
            self.insert(held);
        }
    }
}
