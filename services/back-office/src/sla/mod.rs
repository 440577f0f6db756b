//! The SLA clock of a case (stream `sla-<case>`): service-standard deadlines started by the
//! case's opening and extended by its work orders. Pure.

mod codec;

pub(crate) use codec::priority_from_proto;
#[cfg(test)]
mod tests;

use svcops_kit::aggregate::{Aggregate, NeverRefused, Recorded};
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

impl Aggregate for SlaClock {
    const KIND: &'static str = "sla";
    type Command = SlaCommand;
    type Event = SlaEvent;
    type Error = NeverRefused;

    fn decide(&self, command: SlaCommand) -> Result<Vec<SlaEvent>, NeverRefused> {
        Ok(self.decided(command))
    }

    fn apply(&mut self, recorded: &Recorded<SlaEvent>) {
        self.apply_event(&recorded.event);
    }
}

impl SlaClock {
    fn decided(&self, command: SlaCommand) -> Vec<SlaEvent> {
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

    fn apply_event(&mut self, event: &SlaEvent) {
        match event.clone() {
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
