//! The ordering, event by event, in a small world of named events.

use super::*;

/// A small world: events named by a letter, each in a stream at a version.
struct World {
    aside: HeldAside<&'static str>,
    on_timeline: Vec<String>,
    ids: HashMap<&'static str, Uuid>,
    limits: Limits,
    now: OffsetDateTime,
}

fn given() -> World {
    World {
        aside: HeldAside::default(),
        on_timeline: Vec::new(),
        ids: HashMap::new(),
        limits: Limits::default(),
        now: OffsetDateTime::UNIX_EPOCH,
    }
}

impl World {
    fn id(&mut self, name: &'static str) -> Uuid {
        *self.ids.entry(name).or_insert_with(Uuid::now_v7)
    }

    fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// `name` arrives: version `version` of `stream`, caused by `cause`.
    fn when_arrives(
        &mut self,
        name: &'static str,
        stream: &str,
        version: u64,
        cause: Option<&'static str>,
    ) -> &mut Self {
        let arrival = Arrival {
            event_id: self.id(name),
            case_id: Uuid::nil(),
            stream_id: stream.to_owned(),
            version,
            cause: cause.map(|cause| self.id(cause)),
        };
        let cause_on_timeline =
            cause.is_none_or(|cause| self.on_timeline.iter().any(|name| name == cause));
        match self.aside.decide(&arrival, cause_on_timeline) {
            Decision::Record => {
                self.on_timeline.push(name.to_owned());
                let released = self.aside.recorded(arrival.event_id, &arrival.stream_id);
                self.record(released);
            }
            Decision::HoldAside => {
                self.aside.hold(arrival, cause_on_timeline, self.now, name);
                let released = self.aside.over_bound(self.now, &self.limits);
                self.record(released);
            }
        }
        self
    }

    fn when_time_passes(&mut self, duration: Duration) -> &mut Self {
        self.now += duration;
        let released = self.aside.over_bound(self.now, &self.limits);
        self.record(released);
        self
    }

    fn record(&mut self, released: Vec<Release<&'static str>>) {
        for release in released {
            let name = release.held.item;
            self.on_timeline.push(if release.cause_missing {
                format!("{name} (cause missing)")
            } else {
                name.to_owned()
            });
        }
    }

    fn then_timeline(&self, expected: &[&str]) {
        assert_eq!(self.on_timeline, expected);
    }
}

#[test]
fn an_event_without_a_cause_is_recorded_at_once() {
    let mut world = given();
    world.when_arrives("opened", "case-1", 1, None);
    world.then_timeline(&["opened"]);
    assert!(world.aside.is_empty());
}

#[test]
fn an_effect_before_its_cause_waits_aside_and_follows_it() {
    let mut world = given();
    world.when_arrives("work order", "workorder-1", 1, Some("opened"));
    world.then_timeline(&[]);
    assert_eq!(world.aside.len(), 1);
    world.when_arrives("opened", "case-1", 1, None);
    world.then_timeline(&["opened", "work order"]);
    assert!(world.aside.is_empty());
}

#[test]
fn a_chain_of_effects_is_released_cause_first() {
    let mut world = given();
    world
        .when_arrives("on-site target", "sla-1", 2, Some("work order"))
        .when_arrives("work order", "workorder-1", 1, Some("opened"))
        .when_arrives("opened", "case-1", 1, None);
    world.then_timeline(&["opened", "work order", "on-site target"]);
}

#[test]
fn a_later_event_of_the_stream_waits_behind_a_held_one() {
    let mut world = given();
    world
        .when_arrives("sla started", "sla-1", 1, Some("opened"))
        // No cause of its own, but its stream's first is held: it must not overtake.
        .when_arrives("sla paused", "sla-1", 2, None);
    world.then_timeline(&[]);
    world.when_arrives("opened", "case-1", 1, None);
    world.then_timeline(&["opened", "sla started", "sla paused"]);
}

#[test]
fn a_stream_successor_whose_own_cause_is_missing_keeps_waiting() {
    let mut world = given();
    world
        .when_arrives("first", "x-1", 1, Some("a"))
        .when_arrives("second", "x-1", 2, Some("b"))
        .when_arrives("a", "a-1", 1, None);
    world.then_timeline(&["a", "first"]);
    world.when_arrives("b", "b-1", 1, None);
    world.then_timeline(&["a", "first", "b", "second"]);
}

#[test]
fn an_effect_whose_cause_never_comes_is_recorded_at_the_age_bound_marked() {
    let mut world = given().limits(Limits {
        max_held: 100,
        max_age: Duration::from_secs(60),
    });
    world.when_arrives("flag", "case-1", 2, Some("dead-lettered"));
    world.when_time_passes(Duration::from_secs(59));
    world.then_timeline(&[]);
    world.when_time_passes(Duration::from_secs(1));
    world.then_timeline(&["flag (cause missing)"]);
    // The cause arriving later is recorded after its effect, not dropped.
    world.when_arrives("dead-lettered", "workorder-1", 1, None);
    world.then_timeline(&["flag (cause missing)", "dead-lettered"]);
}

#[test]
fn past_the_count_bound_the_oldest_goes_first_and_its_stream_follows() {
    let mut world = given().limits(Limits {
        max_held: 2,
        max_age: Duration::from_secs(3600),
    });
    world
        .when_arrives("effect", "x-1", 1, Some("never"))
        .when_arrives("next in stream", "x-1", 2, None)
        .when_arrives("other", "y-1", 1, Some("later"));
    world.then_timeline(&["effect (cause missing)", "next in stream"]);
    assert_eq!(world.aside.len(), 1);
}

#[test]
fn restored_releases_wait_again_as_they_were() {
    let mut world = given();
    world.when_arrives("effect", "x-1", 1, Some("cause"));
    let cause = world.id("cause");
    let released = world.aside.recorded(cause, "c-1");
    assert_eq!(released.len(), 1);
    // Recording failed: put back, and the next pass releases it again.
    world.aside.restore(released);
    assert!(world.aside.contains(world.ids["effect"]));
    let again = world.aside.ready();
    assert_eq!(
        again
            .into_iter()
            .map(|release| release.held.item)
            .collect::<Vec<_>>(),
        ["effect"]
    );
}
