//! Domain <-> protobuf for the middle office's events, and reading the front office's.

use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::middleoffice::v1 as proto;
use uuid::Uuid;

use crate::domain::{CaseCategory, Event, Kind, WorkOrderDetails};

#[derive(Debug, thiserror::Error)]
#[error("cannot decode {event_type}: {reason}")]
pub struct Error {
    pub event_type: String,
    pub reason: String,
}

fn error(event_type: &str, reason: impl ToString) -> Error {
    Error {
        event_type: event_type.to_owned(),
        reason: reason.to_string(),
    }
}

pub fn kind_to_proto(kind: Kind) -> proto::WorkOrderKind {
    match kind {
        Kind::Repair => proto::WorkOrderKind::Repair,
        Kind::Installation => proto::WorkOrderKind::Installation,
    }
}

pub fn encode(event: &Event) -> proto::WorkOrderOpened {
    match event {
        Event::Opened(details) => proto::WorkOrderOpened {
            work_order_id: details.work_order_id.to_string(),
            case_id: details.case_id.to_string(),
            kind: kind_to_proto(details.kind).into(),
            product: details.product.clone(),
            serial_number: details.serial_number.clone(),
            summary: details.summary.clone(),
        },
    }
}

pub fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Event>, Error> {
    let Some(opened) = svcops_kit::events::decode::<proto::WorkOrderOpened>(event_type, payload)
        .map_err(|e| error(event_type, e))?
    else {
        return Ok(None);
    };
    let kind = match proto::WorkOrderKind::try_from(opened.kind) {
        Ok(proto::WorkOrderKind::Repair) => Kind::Repair,
        Ok(proto::WorkOrderKind::Installation) => Kind::Installation,
        _ => return Err(error(event_type, "unknown work order kind")),
    };
    Ok(Some(Event::Opened(WorkOrderDetails {
        work_order_id: Uuid::parse_str(&opened.work_order_id).map_err(|e| error(event_type, e))?,
        case_id: Uuid::parse_str(&opened.case_id).map_err(|e| error(event_type, e))?,
        kind,
        product: opened.product,
        serial_number: opened.serial_number,
        summary: opened.summary,
    })))
}

/// What the middle office needs of a front-office `CaseOpened`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOpened {
    pub case_id: Uuid,
    pub category: CaseCategory,
    pub product: String,
    pub serial_number: String,
    pub summary: String,
}

pub fn decode_case_opened(event_type: &str, payload: &[u8]) -> Result<Option<CaseOpened>, Error> {
    let Some(opened) = svcops_kit::events::decode::<front::CaseOpened>(event_type, payload)
        .map_err(|e| error(event_type, e))?
    else {
        return Ok(None);
    };
    // A category this build does not know (a newer front office) is an error: reading it
    // as "no field work" would silently drop a repair.
    let category = match common::CaseCategory::try_from(opened.category) {
        Ok(common::CaseCategory::Repair) => CaseCategory::Repair,
        Ok(common::CaseCategory::Installation) => CaseCategory::Installation,
        Ok(
            common::CaseCategory::Consultation
            | common::CaseCategory::Complaint
            | common::CaseCategory::Return,
        ) => CaseCategory::Other,
        Ok(common::CaseCategory::Unspecified) | Err(_) => {
            return Err(error(
                event_type,
                format!("unknown case category {}", opened.category),
            ));
        }
    };
    Ok(Some(CaseOpened {
        case_id: Uuid::parse_str(&opened.case_id).map_err(|e| error(event_type, e))?,
        category,
        product: opened.product,
        serial_number: opened.serial_number,
        summary: opened.summary,
    }))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn case_opened(category: i32) -> Vec<u8> {
        front::CaseOpened {
            case_id: Uuid::now_v7().to_string(),
            category,
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_category_from_a_newer_producer_is_an_error_not_other() {
        let event_type = <front::CaseOpened as prost::Name>::full_name();
        for unknown in [0, 42] {
            assert!(decode_case_opened(&event_type, &case_opened(unknown)).is_err());
        }
        let repair = decode_case_opened(
            &event_type,
            &case_opened(common::CaseCategory::Repair as i32),
        )
        .expect("decodes")
        .expect("a case opened");
        assert_eq!(repair.category, CaseCategory::Repair);
    }
}
