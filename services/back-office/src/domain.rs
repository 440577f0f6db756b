//! Service standards (the SLA clock of a case) and closed-loop tracking. Pure.

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

/// Targets of one priority under a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    pub first_response: Duration,
    pub on_site: Duration,
    pub resolution: Duration,
}

/// The policy in force until versioned policies on business calendars arrive: wall-clock
/// targets by priority.
pub const DEFAULT_POLICY: &str = "default/v1";

pub fn default_targets(priority: Priority) -> Targets {
    let (first_response, on_site, resolution) = match priority {
        Priority::Urgent => (
            Duration::minutes(15),
            Duration::hours(4),
            Duration::hours(24),
        ),
        Priority::High => (Duration::hours(1), Duration::hours(8), Duration::hours(48)),
        Priority::Normal => (Duration::hours(4), Duration::hours(24), Duration::hours(72)),
        Priority::Low => (
            Duration::hours(8),
            Duration::hours(72),
            Duration::hours(168),
        ),
    };
    Targets {
        first_response,
        on_site,
        resolution,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaCommand {
    Start {
        case_id: Uuid,
        priority: Priority,
        at: OffsetDateTime,
    },
    SetOnSiteTarget {
        case_id: Uuid,
        work_order_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaEvent {
    Started {
        case_id: Uuid,
        policy: String,
        /// `None` only in clocks recorded before the priority was: inferred from the dues.
        priority: Option<Priority>,
        started_at: OffsetDateTime,
        first_response_due: OffsetDateTime,
        resolution_due: OffsetDateTime,
    },
    OnSiteTargetSet {
        case_id: Uuid,
        work_order_id: Uuid,
        on_site_due: OffsetDateTime,
    },
    WorkOrderAwaitingCase {
        case_id: Uuid,
        work_order_id: Uuid,
    },
}

/// The SLA clock of one case.
///
/// The front and middle offices' events reach the back office in no particular order
/// between them, yet every deadline is a function of the events alone: a work order that
/// arrives before its case waits (recorded, without a deadline) and gets its on-site target
/// when the case arrives, computed exactly as if the case had come first — from the case's
/// opening time and priority. Repeating a command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlaClock {
    pub started: Option<Started>,
    pub on_site_due: Option<OffsetDateTime>,
    /// Work orders with an on-site target.
    pub work_orders: Vec<Uuid>,
    /// Work orders waiting for the case to arrive.
    pub awaiting_case: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub policy: String,
    pub started_at: OffsetDateTime,
    pub first_response_due: OffsetDateTime,
    pub resolution_due: OffsetDateTime,
    pub priority_targets: Option<Targets>,
}

impl Started {
    /// When a work order of this case is due on site.
    fn on_site_due(&self) -> OffsetDateTime {
        let targets = self
            .priority_targets
            .unwrap_or_else(|| default_targets(Priority::Normal));
        self.started_at + targets.on_site
    }
}

impl SlaClock {
    pub fn decide(&self, command: SlaCommand) -> Vec<SlaEvent> {
        match command {
            SlaCommand::Start {
                case_id,
                priority,
                at,
            } => {
                if self.started.is_some() {
                    return vec![];
                }
                let targets = default_targets(priority);
                let mut events = vec![SlaEvent::Started {
                    case_id,
                    policy: DEFAULT_POLICY.to_owned(),
                    priority: Some(priority),
                    started_at: at,
                    first_response_due: at + targets.first_response,
                    resolution_due: at + targets.resolution,
                }];
                events.extend(self.awaiting_case.iter().map(|work_order_id| {
                    SlaEvent::OnSiteTargetSet {
                        case_id,
                        work_order_id: *work_order_id,
                        on_site_due: at + targets.on_site,
                    }
                }));
                events
            }
            SlaCommand::SetOnSiteTarget {
                case_id,
                work_order_id,
            } => {
                if self.work_orders.contains(&work_order_id)
                    || self.awaiting_case.contains(&work_order_id)
                {
                    return vec![];
                }
                match &self.started {
                    Some(started) => vec![SlaEvent::OnSiteTargetSet {
                        case_id,
                        work_order_id,
                        on_site_due: started.on_site_due(),
                    }],
                    None => vec![SlaEvent::WorkOrderAwaitingCase {
                        case_id,
                        work_order_id,
                    }],
                }
            }
        }
    }

    pub fn apply(&mut self, event: SlaEvent) {
        match event {
            SlaEvent::Started {
                policy,
                priority,
                started_at,
                first_response_due,
                resolution_due,
                ..
            } => {
                let priority_targets = match priority {
                    Some(priority) => Some(default_targets(priority)),
                    // Recorded before the priority was: infer it back from the dues.
                    None => {
                        let first_response = first_response_due - started_at;
                        [
                            Priority::Urgent,
                            Priority::High,
                            Priority::Normal,
                            Priority::Low,
                        ]
                        .into_iter()
                        .map(default_targets)
                        .find(|targets| targets.first_response == first_response)
                    }
                };
                self.started = Some(Started {
                    policy,
                    started_at,
                    first_response_due,
                    resolution_due,
                    priority_targets,
                });
            }
            SlaEvent::OnSiteTargetSet {
                work_order_id,
                on_site_due,
                ..
            } => {
                self.awaiting_case
                    .retain(|waiting| *waiting != work_order_id);
                self.work_orders.push(work_order_id);
                self.on_site_due = Some(match self.on_site_due {
                    Some(due) => due.min(on_site_due),
                    None => on_site_due,
                });
            }
            SlaEvent::WorkOrderAwaitingCase { work_order_id, .. } => {
                self.awaiting_case.push(work_order_id);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoopEvent {
    Opened { case_id: Uuid },
}

/// Closed-loop tracking of a case: open until the customer confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClosedLoop {
    #[default]
    NotTracked,
    Open,
}

impl ClosedLoop {
    pub fn open(self, case_id: Uuid) -> Vec<LoopEvent> {
        match self {
            ClosedLoop::NotTracked => vec![LoopEvent::Opened { case_id }],
            ClosedLoop::Open => vec![],
        }
    }

    pub fn apply(&mut self, event: LoopEvent) {
        match event {
            LoopEvent::Opened { .. } => *self = ClosedLoop::Open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid")
    }

    /// Given events, when a command is decided, then these events (cqrs-es style).
    fn given(events: Vec<SlaEvent>) -> SlaClock {
        let mut clock = SlaClock::default();
        for event in events {
            clock.apply(event);
        }
        clock
    }

    /// Applies what a command decided and returns it.
    fn when(clock: &mut SlaClock, command: SlaCommand) -> Vec<SlaEvent> {
        let events = clock.decide(command);
        for event in events.clone() {
            clock.apply(event);
        }
        events
    }

    fn start(case_id: Uuid, priority: Priority) -> SlaCommand {
        SlaCommand::Start {
            case_id,
            priority,
            at: at(),
        }
    }

    #[test]
    fn given_no_clock_when_started_then_targets_follow_priority() {
        let case_id = Uuid::now_v7();
        let events = given(vec![]).decide(start(case_id, Priority::Urgent));
        assert_eq!(
            events,
            vec![SlaEvent::Started {
                case_id,
                policy: DEFAULT_POLICY.into(),
                priority: Some(Priority::Urgent),
                started_at: at(),
                first_response_due: at() + Duration::minutes(15),
                resolution_due: at() + Duration::hours(24),
            }]
        );
    }

    #[test]
    fn given_a_started_clock_when_started_again_then_nothing_happens() {
        let case_id = Uuid::now_v7();
        let mut clock = given(vec![]);
        when(&mut clock, start(case_id, Priority::Normal));
        assert!(clock.decide(start(case_id, Priority::Normal)).is_empty());
    }

    #[test]
    fn on_site_target_counts_from_case_opening_with_its_priority() {
        let case_id = Uuid::now_v7();
        let work_order_id = Uuid::now_v7();
        let mut clock = given(vec![]);
        when(&mut clock, start(case_id, Priority::High));
        let command = SlaCommand::SetOnSiteTarget {
            case_id,
            work_order_id,
        };
        assert_eq!(
            when(&mut clock, command.clone()),
            vec![SlaEvent::OnSiteTargetSet {
                case_id,
                work_order_id,
                on_site_due: at() + Duration::hours(8),
            }]
        );
        assert!(clock.decide(command).is_empty());
    }

    #[test]
    fn the_on_site_deadline_is_the_same_whichever_office_is_heard_first() {
        for priority in [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Urgent,
        ] {
            let case_id = Uuid::now_v7();
            let work_order_id = Uuid::now_v7();
            let on_site = SlaCommand::SetOnSiteTarget {
                case_id,
                work_order_id,
            };

            let mut case_first = given(vec![]);
            when(&mut case_first, start(case_id, priority));
            when(&mut case_first, on_site.clone());

            let mut work_order_first = given(vec![]);
            assert_eq!(
                when(&mut work_order_first, on_site.clone()),
                vec![SlaEvent::WorkOrderAwaitingCase {
                    case_id,
                    work_order_id
                }],
                "no deadline before the case is known"
            );
            assert_eq!(work_order_first.on_site_due, None);
            let started = when(&mut work_order_first, start(case_id, priority));
            assert!(started.contains(&SlaEvent::OnSiteTargetSet {
                case_id,
                work_order_id,
                on_site_due: at() + default_targets(priority).on_site,
            }));
            // A redelivered work order changes nothing once its target is set.
            assert!(work_order_first.decide(on_site).is_empty());

            assert_eq!(
                work_order_first.on_site_due,
                Some(at() + default_targets(priority).on_site)
            );
            assert_eq!(work_order_first.on_site_due, case_first.on_site_due);
            assert_eq!(work_order_first.work_orders, case_first.work_orders);
            assert!(work_order_first.awaiting_case.is_empty());
        }
    }

    #[test]
    fn a_clock_recorded_without_its_priority_infers_it_from_the_dues() {
        let case_id = Uuid::now_v7();
        let work_order_id = Uuid::now_v7();
        let clock = given(vec![SlaEvent::Started {
            case_id,
            policy: DEFAULT_POLICY.into(),
            priority: None,
            started_at: at(),
            first_response_due: at() + Duration::hours(1),
            resolution_due: at() + Duration::hours(48),
        }]);
        assert_eq!(
            clock.decide(SlaCommand::SetOnSiteTarget {
                case_id,
                work_order_id
            }),
            vec![SlaEvent::OnSiteTargetSet {
                case_id,
                work_order_id,
                on_site_due: at() + Duration::hours(8),
            }]
        );
    }

    #[test]
    fn closed_loop_opens_once() {
        let case_id = Uuid::now_v7();
        let mut item = ClosedLoop::default();
        let events = item.open(case_id);
        assert_eq!(events, vec![LoopEvent::Opened { case_id }]);
        for event in events {
            item.apply(event);
        }
        assert!(item.open(case_id).is_empty());
    }
}
