//! The work order aggregate. Pure: no IO, no protobuf.

use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("work order {0} already exists")]
    AlreadyOpened(Uuid),
}

/// Field work a case needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Repair,
    Installation,
}

/// Case categories as the middle office cares about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseCategory {
    Repair,
    Installation,
    Other,
}

/// Which cases get a work order: repairs and installations.
pub fn work_needed(category: CaseCategory) -> Option<Kind> {
    match category {
        CaseCategory::Repair => Some(Kind::Repair),
        CaseCategory::Installation => Some(Kind::Installation),
        CaseCategory::Other => None,
    }
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

impl WorkOrder {
    pub fn decide(&self, command: Command) -> Result<Vec<Event>, Error> {
        match command {
            Command::Open(details) => {
                if self.opened.is_some() {
                    return Err(Error::AlreadyOpened(details.work_order_id));
                }
                Ok(vec![Event::Opened(details)])
            }
        }
    }

    pub fn apply(&mut self, event: Event, at: OffsetDateTime) {
        match event {
            Event::Opened(details) => {
                self.opened = Some(OpenedWorkOrder {
                    details,
                    lifecycle: Lifecycle::Open,
                    opened_at: at,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> WorkOrderDetails {
        let case_id = Uuid::now_v7();
        WorkOrderDetails {
            work_order_id: work_order_id(case_id),
            case_id,
            kind: Kind::Repair,
            product: "PL-200".into(),
            serial_number: "SN1".into(),
            summary: "flickers".into(),
        }
    }

    #[test]
    fn only_repairs_and_installations_need_field_work() {
        assert_eq!(work_needed(CaseCategory::Repair), Some(Kind::Repair));
        assert_eq!(
            work_needed(CaseCategory::Installation),
            Some(Kind::Installation)
        );
        assert_eq!(work_needed(CaseCategory::Other), None);
    }

    #[test]
    fn a_case_always_maps_to_the_same_work_order() {
        let case_id = Uuid::now_v7();
        assert_eq!(work_order_id(case_id), work_order_id(case_id));
        assert_ne!(work_order_id(case_id), work_order_id(Uuid::now_v7()));
    }

    #[test]
    fn given_nothing_when_open_then_opened() {
        let details = details();
        assert_eq!(
            WorkOrder::default().decide(Command::Open(details.clone())),
            Ok(vec![Event::Opened(details)])
        );
    }

    #[test]
    fn given_opened_when_open_then_rejected() {
        let details = details();
        let mut order = WorkOrder::default();
        order.apply(Event::Opened(details.clone()), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(
            order.decide(Command::Open(details.clone())),
            Err(Error::AlreadyOpened(details.work_order_id))
        );
    }
}
