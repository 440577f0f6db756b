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
        at: OffsetDateTime,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaEvent {
    Started {
        case_id: Uuid,
        policy: String,
        started_at: OffsetDateTime,
        first_response_due: OffsetDateTime,
        resolution_due: OffsetDateTime,
    },
    OnSiteTargetSet {
        case_id: Uuid,
        work_order_id: Uuid,
        on_site_due: OffsetDateTime,
    },
}

/// The SLA clock of one case. Events from the front and middle office may arrive in either
/// order, so each command is valid on its own and repeating one changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlaClock {
    pub started: Option<Started>,
    pub on_site_due: Option<OffsetDateTime>,
    pub work_orders: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub policy: String,
    pub started_at: OffsetDateTime,
    pub first_response_due: OffsetDateTime,
    pub resolution_due: OffsetDateTime,
    pub priority_targets: Option<Targets>,
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
                vec![SlaEvent::Started {
                    case_id,
                    policy: DEFAULT_POLICY.to_owned(),
                    started_at: at,
                    first_response_due: at + targets.first_response,
                    resolution_due: at + targets.resolution,
                }]
            }
            SlaCommand::SetOnSiteTarget {
                case_id,
                work_order_id,
                at,
            } => {
                if self.work_orders.contains(&work_order_id) {
                    return vec![];
                }
                // Measured from when the case was opened when known, else from the work order.
                let from = self
                    .started
                    .as_ref()
                    .map_or(at, |started| started.started_at);
                let on_site = self
                    .started
                    .as_ref()
                    .and_then(|started| started.priority_targets)
                    .unwrap_or_else(|| default_targets(Priority::Normal))
                    .on_site;
                vec![SlaEvent::OnSiteTargetSet {
                    case_id,
                    work_order_id,
                    on_site_due: from + on_site,
                }]
            }
        }
    }

    pub fn apply(&mut self, event: SlaEvent) {
        match event {
            SlaEvent::Started {
                policy,
                started_at,
                first_response_due,
                resolution_due,
                ..
            } => {
                // Infer the priority's targets back from the dues for later on-site targets.
                let first_response = first_response_due - started_at;
                let priority_targets = [
                    Priority::Urgent,
                    Priority::High,
                    Priority::Normal,
                    Priority::Low,
                ]
                .into_iter()
                .map(default_targets)
                .find(|targets| targets.first_response == first_response);
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
                self.work_orders.push(work_order_id);
                self.on_site_due = Some(match self.on_site_due {
                    Some(due) => due.min(on_site_due),
                    None => on_site_due,
                });
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

    #[test]
    fn given_no_clock_when_started_then_targets_follow_priority() {
        let case_id = Uuid::now_v7();
        let events = SlaClock::default().decide(SlaCommand::Start {
            case_id,
            priority: Priority::Urgent,
            at: at(),
        });
        assert_eq!(
            events,
            vec![SlaEvent::Started {
                case_id,
                policy: DEFAULT_POLICY.into(),
                started_at: at(),
                first_response_due: at() + Duration::minutes(15),
                resolution_due: at() + Duration::hours(24),
            }]
        );
    }

    #[test]
    fn given_a_started_clock_when_started_again_then_nothing_happens() {
        let case_id = Uuid::now_v7();
        let mut clock = SlaClock::default();
        for event in clock.decide(SlaCommand::Start {
            case_id,
            priority: Priority::Normal,
            at: at(),
        }) {
            clock.apply(event);
        }
        assert!(
            clock
                .decide(SlaCommand::Start {
                    case_id,
                    priority: Priority::Normal,
                    at: at(),
                })
                .is_empty()
        );
    }

    #[test]
    fn on_site_target_counts_from_case_opening_with_its_priority() {
        let case_id = Uuid::now_v7();
        let work_order_id = Uuid::now_v7();
        let mut clock = SlaClock::default();
        for event in clock.decide(SlaCommand::Start {
            case_id,
            priority: Priority::High,
            at: at(),
        }) {
            clock.apply(event);
        }
        let events = clock.decide(SlaCommand::SetOnSiteTarget {
            case_id,
            work_order_id,
            at: at() + Duration::minutes(5),
        });
        assert_eq!(
            events,
            vec![SlaEvent::OnSiteTargetSet {
                case_id,
                work_order_id,
                on_site_due: at() + Duration::hours(8),
            }]
        );
        for event in events {
            clock.apply(event);
        }
        assert!(
            clock
                .decide(SlaCommand::SetOnSiteTarget {
                    case_id,
                    work_order_id,
                    at: at(),
                })
                .is_empty()
        );
    }

    #[test]
    fn a_work_order_before_the_case_still_gets_a_target() {
        let events = SlaClock::default().decide(SlaCommand::SetOnSiteTarget {
            case_id: Uuid::now_v7(),
            work_order_id: Uuid::now_v7(),
            at: at(),
        });
        assert!(matches!(
            events.as_slice(),
            [SlaEvent::OnSiteTargetSet { on_site_due, .. }] if *on_site_due == at() + Duration::hours(24)
        ));
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
