//! The case aggregate (stream `case-<case id>`): a customer's request as the front office
//! took it, and the flags that ask a person to look at it. Pure: no IO, no protobuf.

mod codec;
mod values;
mod view;

#[cfg(test)]
mod tests;

pub use codec::{category_from_proto, channel_from_proto, flag_from_proto, priority_from_proto};
pub use values::{CaseDetails, Category, Channel, CustomerPhone, PhoneNumber, Priority};
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
    /// A bug: personal data must be sealed before it is written.
    #[error("refusing to write an unsealed customer phone")]
    Unsealed,
}

impl CaseError {
    /// The field an invalid value was given for, and why it is invalid.
    pub fn field_violation(&self) -> Option<FieldViolation> {
        match self {
            CaseError::Invalid { field, reason } => Some(FieldViolation::new(*field, reason)),
            CaseError::AlreadyOpened(_) | CaseError::NotOpened | CaseError::Unsealed => None,
        }
    }
}

impl ErrorStatus for CaseError {
    fn api_error(&self) -> ApiError {
        match self {
            CaseError::Invalid { field, reason } => ApiError::invalid(*field, reason),
            CaseError::AlreadyOpened(_) | CaseError::NotOpened => {
                ApiError::FailedPrecondition(self.to_string())
            }
            CaseError::Unsealed => ApiError::Internal(self.to_string()),
        }
    }
}

impl From<CaseError> for ApiError {
    fn from(error: CaseError) -> Self {
        error.api_error()
    }
}

/// Where a case is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Open,
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
    /// Opens the case; the customer's phone must be sealed already.
    Open {
        case_id: Uuid,
        details: CaseDetails,
    },
    Flag {
        flag: Flag,
        detail: String,
    },
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
}

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
}

impl Aggregate for Case {
    const KIND: &'static str = "case";
    type Command = CaseCommand;
    type Event = CaseEvent;
    type Error = CaseError;

    fn decide(&self, command: CaseCommand) -> Result<Vec<CaseEvent>, CaseError> {
        match command {
            CaseCommand::Open { case_id, details } => {
                if self.opened.is_some() {
                    return Err(CaseError::AlreadyOpened(case_id));
                }
                if !matches!(details.customer_phone, CustomerPhone::Sealed { .. }) {
                    return Err(CaseError::Unsealed);
                }
                Ok(vec![CaseEvent::Opened { case_id, details }])
            }
            CaseCommand::Flag { flag, detail } => {
                let opened = self.opened.as_ref().ok_or(CaseError::NotOpened)?;
                Ok(vec![CaseEvent::Flagged {
                    case_id: opened.case_id,
                    flag,
                    detail,
                }])
            }
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
        }
    }
}
