//! The work order aggregate (stream `workorder-<id>`): field work a case needs. Pure.

pub mod codec;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use svcops_kit::ApiError;
use svcops_kit::aggregate::{Aggregate, ErrorStatus, Recorded};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::pricing::{self, Cents, ChargedLine, PriceList, PricingError, Requested};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("work order {0} already exists")]
    AlreadyOpened(Uuid),
    #[error("the work order is not open")]
    NotOpened,
    #[error("cannot {action} a work order that is {state}")]
    NotAllowed {
        action: &'static str,
        state: &'static str,
    },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("this work order is not dispatched to {0}")]
    NotTheirs(String),
    #[error("{0}")]
    Deviation(String),
}

impl ErrorStatus for Error {
    fn api_error(&self) -> ApiError {
        match self {
            Error::Invalid { field, reason } => ApiError::invalid(*field, reason),
            Error::NotOpened => ApiError::NotFound {
                resource: "work order",
                id: String::new(),
            },
            Error::AlreadyOpened(_) | Error::NotAllowed { .. } => {
                ApiError::FailedPrecondition(self.to_string())
            }
            Error::NotTheirs(_) => ApiError::PermissionDenied(self.to_string()),
            Error::Deviation(_) => ApiError::FailedPrecondition(self.to_string()),
        }
    }
}

/// The appointment window agreed with the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

/// Longest window a customer is asked to wait in.
pub const MAX_WINDOW: time::Duration = time::Duration::hours(12);

impl Window {
    pub fn new(start: OffsetDateTime, end: OffsetDateTime) -> Result<Self, Error> {
        if end <= start {
            return Err(Error::Invalid {
                field: "window_end",
                reason: "must be after window_start".into(),
            });
        }
        if end - start > MAX_WINDOW {
            return Err(Error::Invalid {
                field: "window_end",
                reason: "must be at most 12 hours after window_start".into(),
            });
        }
        Ok(Self { start, end })
    }
}

/// How an arrival stood against the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Punctuality {
    /// Before the window opened, by this many whole minutes.
    Early(u32),
    OnTime,
    /// After the window closed, by this many whole minutes (at least 1).
    Late(u32),
}

/// Classifies an arrival: before the window is early, within it on time, after it late;
/// in whole minutes begun (30 s early is 1 minute early, 61 s late 2 minutes late).
pub fn punctuality(window: Window, arrived_at: OffsetDateTime) -> Punctuality {
    let minutes_begun = |duration: time::Duration| {
        let seconds = duration.whole_seconds().max(0);
        u32::try_from((seconds + 59) / 60)
            .unwrap_or(u32::MAX)
            .max(1)
    };
    if arrived_at < window.start {
        Punctuality::Early(minutes_begun(window.start - arrived_at))
    } else if arrived_at <= window.end {
        Punctuality::OnTime
    } else {
        Punctuality::Late(minutes_begun(arrived_at - window.end))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    FixedOnSite,
    NeedsParts,
    NeedsFactoryRepair,
    NotAProductFault,
}

/// Field work a case needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Repair,
    Installation,
}

/// Namespace of work order ids derived from case ids.
const WORK_ORDER_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_7a4e_2b1d_4c3a_9e8f_1a2b_3c4d_5e6f);

/// The work order opened for a case. Derived, so that however often the case is delivered,
/// it can only ever map to one work-order stream.
pub fn work_order_id(case_id: Uuid) -> Uuid {
    Uuid::new_v5(&WORK_ORDER_NAMESPACE, case_id.as_bytes())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkOrderDetails {
    pub work_order_id: Uuid,
    pub case_id: Uuid,
    pub kind: Kind,
    pub product: String,
    pub serial_number: String,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Open(WorkOrderDetails),
    Schedule(Window),
    Dispatch {
        technician: String,
    },
    /// `by`: the technician reporting it, who must be the one dispatched; `None`: the
    /// technical department, for anyone.
    EnRoute {
        eta: OffsetDateTime,
        by: Option<String>,
    },
    Arrive {
        at: OffsetDateTime,
        by: Option<String>,
    },
    Complete {
        outcome: Outcome,
        note: String,
        by: Option<String>,
    },
    /// Parts and labour at the visit, priced from `list` (the one in force); a deviation
    /// only with `approved_by` (a manager).
    Charge {
        requested: Vec<Requested>,
        list: PriceList,
        approved_by: Option<String>,
        by: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Opened(WorkOrderDetails),
    Scheduled {
        work_order_id: Uuid,
        case_id: Uuid,
        window: Window,
        previous: Option<Window>,
    },
    Dispatched {
        work_order_id: Uuid,
        case_id: Uuid,
        technician: String,
    },
    EnRoute {
        work_order_id: Uuid,
        case_id: Uuid,
        technician: String,
        eta: OffsetDateTime,
    },
    Arrived {
        work_order_id: Uuid,
        case_id: Uuid,
        technician: String,
        at: OffsetDateTime,
        punctuality: Punctuality,
    },
    Completed {
        work_order_id: Uuid,
        case_id: Uuid,
        outcome: Outcome,
        note: String,
    },
    Charged {
        work_order_id: Uuid,
        case_id: Uuid,
        list_version: String,
        lines: Vec<ChargedLine>,
        approved_by: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Open,
    Scheduled,
    Dispatched,
    EnRoute,
    OnSite,
    Completed,
}

impl Lifecycle {
    pub fn name(self) -> &'static str {
        match self {
            Lifecycle::Open => "open",
            Lifecycle::Scheduled => "scheduled",
            Lifecycle::Dispatched => "dispatched",
            Lifecycle::EnRoute => "en route",
            Lifecycle::OnSite => "on site",
            Lifecycle::Completed => "completed",
        }
    }
}

/// The visit as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Visit {
    pub window: Option<Window>,
    pub reschedules: u32,
    pub technician: Option<String>,
    pub eta: Option<OffsetDateTime>,
    pub arrival: Option<(OffsetDateTime, Punctuality)>,
    pub outcome: Option<(Outcome, String)>,
    /// Every line charged, in order.
    pub charges: Vec<ChargedLine>,
}

impl Visit {
    pub fn charged_total(&self) -> Cents {
        self.charges.iter().map(|line| line.amount).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkOrder {
    pub opened: Option<OpenedWorkOrder>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedWorkOrder {
    pub details: WorkOrderDetails,
    pub lifecycle: Lifecycle,
    pub opened_at: OffsetDateTime,
    pub visit: Visit,
}

impl Aggregate for WorkOrder {
    const KIND: &'static str = "workorder";
    type Command = Command;
    type Event = Event;
    type Error = Error;

    fn decide(&self, command: Command) -> Result<Vec<Event>, Error> {
        if let Command::Open(details) = command {
            if self.opened.is_some() {
                return Err(Error::AlreadyOpened(details.work_order_id));
            }
            return Ok(vec![Event::Opened(details)]);
        }
        let opened = self.opened.as_ref().ok_or(Error::NotOpened)?;
        let (work_order_id, case_id) = (opened.details.work_order_id, opened.details.case_id);
        let state = opened.lifecycle;
        let refuse = |action: &'static str| Error::NotAllowed {
            action,
            state: state.name(),
        };
        let visit = &opened.visit;
        // Decided on the state the append is checked against, so a re-dispatch in between
        // cannot let the previous technician report for the new one.
        let theirs = |by: &Option<String>| match by {
            Some(by) if visit.technician.as_deref() != Some(by.as_str()) => {
                Err(Error::NotTheirs(by.clone()))
            }
            _ => Ok(()),
        };
        let event = match command {
            Command::Open(_) => unreachable!("decided above"),
            Command::Schedule(window) => {
                // Moved only before the technician sets out.
                if !matches!(
                    state,
                    Lifecycle::Open | Lifecycle::Scheduled | Lifecycle::Dispatched
                ) {
                    return Err(refuse("schedule"));
                }
                if visit.window == Some(window) {
                    return Ok(vec![]);
                }
                Event::Scheduled {
                    work_order_id,
                    case_id,
                    window,
                    previous: visit.window,
                }
            }
            Command::Dispatch { technician } => {
                if !matches!(state, Lifecycle::Scheduled | Lifecycle::Dispatched) {
                    return Err(refuse("dispatch"));
                }
                if visit.technician.as_deref() == Some(technician.as_str()) {
                    return Ok(vec![]);
                }
                Event::Dispatched {
                    work_order_id,
                    case_id,
                    technician,
                }
            }
            Command::EnRoute { eta, by } => {
                theirs(&by)?;
                if !matches!(state, Lifecycle::Dispatched | Lifecycle::EnRoute) {
                    return Err(refuse("set out on"));
                }
                if visit.eta == Some(eta) {
                    return Ok(vec![]);
                }
                Event::EnRoute {
                    work_order_id,
                    case_id,
                    technician: visit.technician.clone().unwrap_or_default(),
                    eta,
                }
            }
            Command::Arrive { at, by } => {
                theirs(&by)?;
                if !matches!(state, Lifecycle::Dispatched | Lifecycle::EnRoute) {
                    return Err(refuse("arrive at"));
                }
                let window = visit.window.ok_or_else(|| refuse("arrive at"))?;
                Event::Arrived {
                    work_order_id,
                    case_id,
                    technician: visit.technician.clone().unwrap_or_default(),
                    at,
                    punctuality: punctuality(window, at),
                }
            }
            Command::Complete { outcome, note, by } => {
                theirs(&by)?;
                if state != Lifecycle::OnSite {
                    return Err(refuse("complete"));
                }
                if outcome == Outcome::NotAProductFault && note.trim().is_empty() {
                    return Err(Error::Invalid {
                        field: "note",
                        reason: "say why it is not a product fault".into(),
                    });
                }
                Event::Completed {
                    work_order_id,
                    case_id,
                    outcome,
                    note,
                }
            }
            Command::Charge {
                requested,
                list,
                approved_by,
                by,
            } => {
                theirs(&by)?;
                if !matches!(state, Lifecycle::OnSite | Lifecycle::Completed) {
                    return Err(refuse("charge"));
                }
                let mut before: HashMap<String, u32> = HashMap::new();
                for line in &visit.charges {
                    let units = before.entry(line.code.clone()).or_default();
                    *units = units.saturating_add(line.quantity);
                }
                let lines = pricing::charge(&list, &before, &requested, approved_by.is_some())
                    .map_err(|error| match error {
                        PricingError::DeviationNeedsApproval(..) => {
                            Error::Deviation(error.to_string())
                        }
                        other => Error::Invalid {
                            field: "lines",
                            reason: other.to_string().trim_start_matches("lines: ").to_owned(),
                        },
                    })?;
                let deviates = lines.iter().any(|line| line.standard_amount.is_some());
                Event::Charged {
                    work_order_id,
                    case_id,
                    list_version: list.version.to_owned(),
                    lines,
                    approved_by: approved_by.filter(|_| deviates),
                }
            }
        };
        Ok(vec![event])
    }

    fn apply(&mut self, recorded: &Recorded<Event>) {
        if let Event::Opened(details) = &recorded.event {
            self.opened = Some(OpenedWorkOrder {
                details: details.clone(),
                lifecycle: Lifecycle::Open,
                opened_at: recorded.occurred_at,
                visit: Visit::default(),
            });
            return;
        }
        let Some(opened) = self.opened.as_mut() else {
            return;
        };
        let visit = &mut opened.visit;
        match &recorded.event {
            Event::Opened(_) => {}
            Event::Scheduled {
                window, previous, ..
            } => {
                visit.window = Some(*window);
                if previous.is_some() {
                    visit.reschedules += 1;
                }
                if opened.lifecycle == Lifecycle::Open {
                    opened.lifecycle = Lifecycle::Scheduled;
                }
            }
            Event::Dispatched { technician, .. } => {
                visit.technician = Some(technician.clone());
                opened.lifecycle = Lifecycle::Dispatched;
            }
            Event::EnRoute { eta, .. } => {
                visit.eta = Some(*eta);
                opened.lifecycle = Lifecycle::EnRoute;
            }
            Event::Arrived {
                at, punctuality, ..
            } => {
                visit.arrival = Some((*at, *punctuality));
                opened.lifecycle = Lifecycle::OnSite;
            }
            Event::Completed { outcome, note, .. } => {
                visit.outcome = Some((*outcome, note.clone()));
                opened.lifecycle = Lifecycle::Completed;
            }
            Event::Charged { lines, .. } => visit.charges.extend(lines.iter().cloned()),
        }
    }
}
