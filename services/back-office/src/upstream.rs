//! What the back office reads of the other offices' events.

use std::sync::LazyLock;

use svcops_kit::aggregate::{DecodeError, EventDecoders};
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::middleoffice::v1 as middle;
use uuid::Uuid;

use crate::sla::Priority;

/// What the back office reacts to from the other offices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    CaseOpened { case_id: Uuid, priority: Priority },
    WorkOrderOpened { case_id: Uuid, work_order_id: Uuid },
}

impl Upstream {
    pub fn case_id(&self) -> Uuid {
        match self {
            Upstream::CaseOpened { case_id, .. } | Upstream::WorkOrderOpened { case_id, .. } => {
                *case_id
            }
        }
    }
}

fn uuid(event_type: &str, raw: &str) -> Result<Uuid, DecodeError> {
    Uuid::parse_str(raw).map_err(|error| DecodeError::new(event_type, error))
}

static DECODERS: LazyLock<EventDecoders<Upstream>> = LazyLock::new(|| {
    EventDecoders::new()
        .on::<front::CaseOpened>(|event_type, opened| {
            let priority = crate::sla::priority_from_proto(event_type, opened.priority)?
                .unwrap_or(Priority::Normal);
            Ok(Upstream::CaseOpened {
                case_id: uuid(event_type, &opened.case_id)?,
                priority,
            })
        })
        .on::<middle::WorkOrderOpened>(|event_type, opened| {
            Ok(Upstream::WorkOrderOpened {
                case_id: uuid(event_type, &opened.case_id)?,
                work_order_id: uuid(event_type, &opened.work_order_id)?,
            })
        })
});

/// What the back office reacts to in another office's event; `Ok(None)` for types it does
/// not read.
pub fn decode_upstream(event_type: &str, payload: &[u8]) -> Result<Option<Upstream>, DecodeError> {
    DECODERS.decode(event_type, payload)
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use svcops_proto::common::v1 as common;

    use super::*;

    fn case_opened(priority: i32) -> Vec<u8> {
        front::CaseOpened {
            case_id: Uuid::now_v7().to_string(),
            priority,
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_priority_from_a_newer_producer_is_an_error_not_normal() {
        let event_type = <front::CaseOpened as prost::Name>::full_name();
        assert!(decode_upstream(&event_type, &case_opened(99)).is_err());
        assert!(matches!(
            decode_upstream(&event_type, &case_opened(common::Priority::Urgent as i32)),
            Ok(Some(Upstream::CaseOpened {
                priority: Priority::Urgent,
                ..
            }))
        ));
    }
}
