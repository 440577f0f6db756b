//! The work order aggregate (stream `workorder-<id>`): field work a case needs. Pure.

mod codec;
#[cfg(test)]
mod tests;

use svcops_kit::ApiError;
use svcops_kit::aggregate::{Aggregate, ErrorStatus, Recorded};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("work order {0} already exists")]
    AlreadyOpened(Uuid),
}

impl ErrorStatus for Error {
    fn api_error(&self) -> ApiError {
        match self {
            Error::AlreadyOpened(_) => ApiError::FailedPrecondition(self.to_string()),
        }
    }
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Opened(WorkOrderDetails),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Open,
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
}

impl Aggregate for WorkOrder {
    const KIND: &'static str = "workorder";
    type Command = Command;
    type Event = Event;
    type Error = Error;

    fn decide(&self, command: Command) -> Result<Vec<Event>, Error> {
        match command {
            Command::Open(details) => {
                if self.opened.is_some() {
                    return Err(Error::AlreadyOpened(details.work_order_id));
                }
                Ok(vec![Event::Opened(details)])
            }
        }
    }

    fn apply(&mut self, recorded: &Recorded<Event>) {
        match &recorded.event {
            Event::Opened(details) => {
                self.opened = Some(OpenedWorkOrder {
                    details: details.clone(),
                    lifecycle: Lifecycle::Open,
                    opened_at: recorded.occurred_at,
                });
            }
        }
    }
}
