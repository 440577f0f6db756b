//! The case aggregate (stream `case-<case id>`): a customer's request as the front office
//! took it, and the flags that ask a person to look at it. Pure: no IO, no protobuf.

mod codec;
mod lifecycle;
mod risk;
mod values;
mod view;

#[cfg(test)]
mod tests;

pub use codec::{
    category_from_proto, channel_from_proto, flag_from_proto, priority_from_proto,
    risk_trigger_from_proto, waiting_on_from_proto,
};
pub use lifecycle::{Lifecycle, Move, Stage, WaitingOn};
pub use risk::{
    EscalationLevel, REPEATED_COMPLAINTS, REPEATED_COMPLAINTS_WINDOW_DAYS, Risk, RiskTrigger,
    keyword_risk,
};
pub use values::{
    AgentName, CaseDetails, Category, Channel, CustomerPhone, PhoneNumber, Priority, QueueName,
    note,
};
pub use view::CaseView;

use svcops_kit::ApiError;
use svcops_kit::aggregate::{Aggregate, ErrorStatus, Recorded};
use svcops_kit::error::FieldViolation;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("case {0} already exists")]
    AlreadyOpened(Uuid),
    #[error("the case is not open")]
    NotOpened,
    #[error("cannot {action} a case that is {state}")]
    NotAllowed {
        action: &'static str,
        state: &'static str,
    },
    #[error("the case is already at escalation level {}", .0.get())]
    EscalatedHigher(EscalationLevel),
    /// A bug: personal data must be sealed before it is written.
    #[error("refusing to write an unsealed customer phone")]
    Unsealed,
}

impl CaseError {
    /// The field an invalid value was given for, and why it is invalid.
    pub fn field_violation(&self) -> Option<FieldViolation> {
        match self {
            CaseError::Invalid { field, reason } => Some(FieldViolation::new(*field, reason)),
            CaseError::AlreadyOpened(_)
            | CaseError::NotOpened
            | CaseError::NotAllowed { .. }
            | CaseError::EscalatedHigher(_)
            | CaseError::Unsealed => None,
        }
    }
}

impl ErrorStatus for CaseError {
    fn api_error(&self) -> ApiError {
        match self {
            CaseError::Invalid { field, reason } => ApiError::invalid(*field, reason),
            CaseError::AlreadyOpened(_)
            | CaseError::NotOpened
            | CaseError::NotAllowed { .. }
            | CaseError::EscalatedHigher(_) => ApiError::FailedPrecondition(self.to_string()),
            CaseError::Unsealed => ApiError::Internal(self.to_string()),
        }
    }
}

impl From<CaseError> for ApiError {
    fn from(error: CaseError) -> Self {
        error.api_error()
    }
}

/// Why a case needs a person's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Some office could not process one of the case's events (it was dead-lettered).
    ProcessingFailed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagNote {
    pub flag: Flag,
    pub detail: String,
    pub flagged_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseCommand {
    /// Opens the case; the customer's phone must be sealed already. `earlier_complaints`
    /// counts the customer's complaints within the repeated-complaints window before this
    /// one (for the risk rule; 0 when the case is no complaint).
    Open {
        case_id: Uuid,
        details: CaseDetails,
        earlier_complaints: u32,
    },
    Flag {
        flag: Flag,
        detail: String,
    },
    /// Routes the case to a queue; `priority` `None` keeps the case's.
    Triage {
        queue: QueueName,
        priority: Option<Priority>,
    },
    Assign {
        assignee: AgentName,
    },
    Wait {
        on: WaitingOn,
        reason: String,
    },
    Resume,
    Resolve {
        resolution: String,
    },
    /// The customer confirmed the resolution.
    Close,
    Reopen {
        reason: String,
    },
    /// Escalates the complaint; to the top level it also raises the public-opinion risk.
    Escalate {
        level: EscalationLevel,
        reason: String,
    },
    /// A person raises the public-opinion risk flag.
    FlagRisk {
        reason: String,
    },
    ClearRisk {
        reason: String,
    },
    /// A rule outside the case (a customer's words in a contact) raises the flag.
    RaiseRisk(Risk),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseEvent {
    Opened {
        case_id: Uuid,
        details: CaseDetails,
    },
    Flagged {
        case_id: Uuid,
        flag: Flag,
        detail: String,
    },
    Triaged {
        case_id: Uuid,
        queue: QueueName,
        priority: Priority,
    },
    Assigned {
        case_id: Uuid,
        assignee: AgentName,
    },
    Waiting {
        case_id: Uuid,
        on: WaitingOn,
        reason: String,
    },
    Resumed {
        case_id: Uuid,
    },
    Resolved {
        case_id: Uuid,
        resolution: String,
    },
    Closed {
        case_id: Uuid,
    },
    Reopened {
        case_id: Uuid,
        reason: String,
    },
    Escalated {
        case_id: Uuid,
        level: EscalationLevel,
        reason: String,
    },
    /// Raises the case's priority to `priority`.
    RiskFlagged {
        case_id: Uuid,
        risk: Risk,
        priority: Priority,
    },
    RiskCleared {
        case_id: Uuid,
        reason: String,
    },
}

/// A public-opinion risk a case carries, since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskNote {
    pub risk: Risk,
    pub flagged_at: OffsetDateTime,
}

/// The priority a case at public-opinion risk is worked at.
pub const RISK_PRIORITY: Priority = Priority::Urgent;

/// State of one case, folded from its events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Case {
    pub opened: Option<OpenedCase>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedCase {
    pub case_id: Uuid,
    pub details: CaseDetails,
    pub lifecycle: Lifecycle,
    pub opened_at: OffsetDateTime,
    pub opened_by: String,
    pub opened_by_role: String,
    pub flags: Vec<FlagNote>,
    pub queue: Option<QueueName>,
    pub assignee: Option<AgentName>,
    pub resolution: Option<String>,
    pub reopened_count: u32,
    /// The level and the reason of the last escalation.
    pub escalation: Option<(EscalationLevel, String)>,
    pub risk: Option<RiskNote>,
    pub updated_at: OffsetDateTime,
}

impl OpenedCase {
    /// The state `step` leads to, or why the case's state does not allow it.
    fn after(&self, step: Move) -> Result<Lifecycle, CaseError> {
        self.lifecycle.after(step, self.assignee.is_some())
    }

    /// The events of a lifecycle command: none when it changes nothing (the same queue and
    /// priority, the same assignee, the same wait), so a repeat is not a second event.
    fn decide_on_opened(&self, command: CaseCommand) -> Result<Vec<CaseEvent>, CaseError> {
        // Words given with the command that may report what the customer threatens, which
        // the keyword rule reads. Not a resolution: it says how the case ended ("withdrew
        // the 12315 complaint"), and must not undo a manager's clearing.
        let words = match &command {
            CaseCommand::Wait { reason, .. }
            | CaseCommand::Reopen { reason }
            | CaseCommand::Escalate { reason, .. } => Some((reason.clone(), "the reason")),
            _ => None,
        };
        let mut events = self.decide_move(command)?;
        if !events.is_empty()
            && let Some((text, where_found)) = words
            && let Some(risk) = risk::keyword_risk(&text, where_found)
        {
            self.raise(&mut events, risk);
        }
        Ok(events)
    }

    /// Appends the flag to `events` unless the case (or an event before it) already carries
    /// one: a case is flagged once, by whatever rule or person came first.
    fn raise(&self, events: &mut Vec<CaseEvent>, risk: Risk) {
        let flagged = self.risk.is_some()
            || events
                .iter()
                .any(|event| matches!(event, CaseEvent::RiskFlagged { .. }));
        if !flagged {
            events.push(CaseEvent::RiskFlagged {
                case_id: self.case_id,
                risk,
                priority: RISK_PRIORITY,
            });
        }
    }

    /// A finished case takes no escalation or flag: reopen it first.
    fn not_closed(&self, action: &'static str) -> Result<(), CaseError> {
        if self.lifecycle == Lifecycle::Closed {
            return Err(CaseError::NotAllowed {
                action,
                state: self.lifecycle.name(),
            });
        }
        Ok(())
    }

    fn decide_move(&self, command: CaseCommand) -> Result<Vec<CaseEvent>, CaseError> {
        let case_id = self.case_id;
        let event = match command {
            CaseCommand::Open { .. } => return Err(CaseError::AlreadyOpened(case_id)),
            CaseCommand::Flag { flag, detail } => CaseEvent::Flagged {
                case_id,
                flag,
                detail,
            },
            CaseCommand::Triage { queue, priority } => {
                self.after(Move::Triage)?;
                let priority = priority.unwrap_or(self.details.priority);
                if self.lifecycle == Lifecycle::Triaged
                    && self.queue.as_ref() == Some(&queue)
                    && self.details.priority == priority
                {
                    return Ok(Vec::new());
                }
                CaseEvent::Triaged {
                    case_id,
                    queue,
                    priority,
                }
            }
            CaseCommand::Assign { assignee } => {
                self.after(Move::Assign)?;
                if self.assignee.as_ref() == Some(&assignee) {
                    return Ok(Vec::new());
                }
                CaseEvent::Assigned { case_id, assignee }
            }
            CaseCommand::Wait { on, reason } => {
                self.after(Move::Wait(on))?;
                if self.lifecycle == Lifecycle::Waiting(on) {
                    return Ok(Vec::new());
                }
                CaseEvent::Waiting {
                    case_id,
                    on,
                    reason,
                }
            }
            CaseCommand::Resume => {
                self.after(Move::Resume)?;
                CaseEvent::Resumed { case_id }
            }
            CaseCommand::Resolve { resolution } => {
                self.after(Move::Resolve)?;
                CaseEvent::Resolved {
                    case_id,
                    resolution,
                }
            }
            CaseCommand::Close => {
                self.after(Move::Close)?;
                CaseEvent::Closed { case_id }
            }
            CaseCommand::Reopen { reason } => {
                self.after(Move::Reopen)?;
                CaseEvent::Reopened { case_id, reason }
            }
            CaseCommand::Escalate { level, reason } => {
                self.not_closed("escalate")?;
                let current = self.escalation.as_ref().map(|(level, _)| *level);
                if current.is_some_and(|current| level < current) {
                    return Err(CaseError::EscalatedHigher(current.unwrap_or(level)));
                }
                if current == Some(level) {
                    return Ok(Vec::new());
                }
                let mut events = vec![CaseEvent::Escalated {
                    case_id,
                    level,
                    reason: reason.clone(),
                }];
                if level == EscalationLevel::TOP {
                    self.raise(
                        &mut events,
                        Risk {
                            trigger: RiskTrigger::TopEscalation,
                            detail: format!("escalated to level {}: {reason}", level.get()),
                        },
                    );
                }
                return Ok(events);
            }
            CaseCommand::FlagRisk { reason } => {
                self.not_closed("flag")?;
                let mut events = Vec::new();
                self.raise(
                    &mut events,
                    Risk {
                        trigger: RiskTrigger::Person,
                        detail: reason,
                    },
                );
                return Ok(events);
            }
            CaseCommand::RaiseRisk(risk) => {
                self.not_closed("flag")?;
                let mut events = Vec::new();
                self.raise(&mut events, risk);
                return Ok(events);
            }
            CaseCommand::ClearRisk { reason } => {
                if self.risk.is_none() {
                    return Ok(Vec::new());
                }
                CaseEvent::RiskCleared { case_id, reason }
            }
        };
        Ok(vec![event])
    }

    /// Moves the state for a lifecycle event. Events are facts: a move the table would not
    /// allow (an event from a newer version of the rules) still lands where it says.
    fn apply_lifecycle(&mut self, event: &CaseEvent) {
        let step = match event {
            CaseEvent::Opened { .. }
            | CaseEvent::Flagged { .. }
            | CaseEvent::Escalated { .. }
            | CaseEvent::RiskFlagged { .. }
            | CaseEvent::RiskCleared { .. } => return,
            CaseEvent::Triaged {
                queue, priority, ..
            } => {
                self.queue = Some(queue.clone());
                self.details.priority = *priority;
                self.assignee = None;
                Move::Triage
            }
            CaseEvent::Assigned { assignee, .. } => {
                self.assignee = Some(assignee.clone());
                Move::Assign
            }
            CaseEvent::Waiting { on, .. } => Move::Wait(*on),
            CaseEvent::Resumed { .. } => Move::Resume,
            CaseEvent::Resolved { resolution, .. } => {
                self.resolution = Some(resolution.clone());
                Move::Resolve
            }
            CaseEvent::Closed { .. } => Move::Close,
            CaseEvent::Reopened { .. } => {
                self.reopened_count = self.reopened_count.saturating_add(1);
                self.resolution = None;
                Move::Reopen
            }
        };
        self.lifecycle = self
            .lifecycle
            .after(step, self.assignee.is_some())
            .unwrap_or_else(|_| fallback(step, self.assignee.is_some(), self.lifecycle));
    }
}

/// Where a recorded move lands when the current rules would not allow it from here.
fn fallback(step: Move, has_assignee: bool, current: Lifecycle) -> Lifecycle {
    match step {
        Move::Triage => Lifecycle::Triaged,
        Move::Assign => Lifecycle::Assigned,
        Move::Wait(on) => Lifecycle::Waiting(on),
        Move::Resume => Lifecycle::Assigned,
        Move::Resolve => Lifecycle::Resolved,
        Move::Close => Lifecycle::Closed,
        Move::Reopen if has_assignee => Lifecycle::Assigned,
        Move::Reopen if current.is_finished() => Lifecycle::Open,
        Move::Reopen => current,
    }
}

impl Aggregate for Case {
    const KIND: &'static str = "case";
    type Command = CaseCommand;
    type Event = CaseEvent;
    type Error = CaseError;

    fn decide(&self, command: CaseCommand) -> Result<Vec<CaseEvent>, CaseError> {
        match command {
            CaseCommand::Open {
                case_id,
                details,
                earlier_complaints,
            } => {
                if self.opened.is_some() {
                    return Err(CaseError::AlreadyOpened(case_id));
                }
                if !matches!(details.customer_phone, CustomerPhone::Sealed { .. }) {
                    return Err(CaseError::Unsealed);
                }
                let risk = risk::keyword_risk(&details.summary, "the summary").or_else(|| {
                    (details.category == Category::Complaint)
                        .then(|| risk::repeated_complaints_risk(earlier_complaints))
                        .flatten()
                });
                let mut events = vec![CaseEvent::Opened { case_id, details }];
                if let Some(risk) = risk {
                    events.push(CaseEvent::RiskFlagged {
                        case_id,
                        risk,
                        priority: RISK_PRIORITY,
                    });
                }
                Ok(events)
            }
            command => self
                .opened
                .as_ref()
                .ok_or(CaseError::NotOpened)?
                .decide_on_opened(command),
        }
    }

    fn apply(&mut self, recorded: &Recorded<CaseEvent>) {
        match &recorded.event {
            CaseEvent::Opened { case_id, details } => {
                self.opened = Some(OpenedCase {
                    case_id: *case_id,
                    details: details.clone(),
                    lifecycle: Lifecycle::Open,
                    opened_at: recorded.occurred_at,
                    opened_by: recorded.actor_subject.clone(),
                    opened_by_role: recorded.actor_role.clone(),
                    flags: Vec::new(),
                    queue: None,
                    assignee: None,
                    resolution: None,
                    reopened_count: 0,
                    escalation: None,
                    risk: None,
                    updated_at: recorded.occurred_at,
                });
            }
            CaseEvent::Flagged { flag, detail, .. } => {
                if let Some(opened) = &mut self.opened {
                    opened.flags.push(FlagNote {
                        flag: *flag,
                        detail: detail.clone(),
                        flagged_at: recorded.occurred_at,
                    });
                }
            }
            CaseEvent::Escalated { level, reason, .. } => {
                if let Some(opened) = &mut self.opened {
                    opened.escalation = Some((*level, reason.clone()));
                }
            }
            CaseEvent::RiskFlagged { risk, priority, .. } => {
                if let Some(opened) = &mut self.opened {
                    opened.details.priority = *priority;
                    opened.risk = Some(RiskNote {
                        risk: risk.clone(),
                        flagged_at: recorded.occurred_at,
                    });
                }
            }
            CaseEvent::RiskCleared { .. } => {
                if let Some(opened) = &mut self.opened {
                    opened.risk = None;
                }
            }
            event => {
                if let Some(opened) = &mut self.opened {
                    opened.apply_lifecycle(event);
                }
            }
        }
        if let Some(opened) = &mut self.opened {
            opened.updated_at = recorded.occurred_at;
        }
    }
}
