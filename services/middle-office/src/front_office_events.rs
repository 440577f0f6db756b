//! What the middle office reads of the front office's events, and which cases need field
//! work.

use std::sync::LazyLock;

use svcops_kit::aggregate::{DecodeError, EventDecoders};
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use uuid::Uuid;

use crate::work_order::Kind;

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

fn error(event_type: &str, reason: impl ToString) -> DecodeError {
    DecodeError::new(event_type, reason.to_string())
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

static DECODERS: LazyLock<EventDecoders<CaseOpened>> = LazyLock::new(|| {
    EventDecoders::new().on::<front::CaseOpened>(|event_type, opened| {
        // A category this build does not know (a newer front office) is an error: reading
        // it as "no field work" would silently drop a repair.
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
        Ok(CaseOpened {
            case_id: Uuid::parse_str(&opened.case_id).map_err(|e| error(event_type, e))?,
            category,
            product: opened.product,
            serial_number: opened.serial_number,
            summary: opened.summary,
        })
    })
});

/// What the middle office needs of a front-office event; `Ok(None)` for every type but
/// `CaseOpened`.
pub fn decode_case_opened(
    event_type: &str,
    payload: &[u8],
) -> Result<Option<CaseOpened>, DecodeError> {
    DECODERS.decode(event_type, payload)
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
    fn only_repairs_and_installations_need_field_work() {
        assert_eq!(work_needed(CaseCategory::Repair), Some(Kind::Repair));
        assert_eq!(
            work_needed(CaseCategory::Installation),
            Some(Kind::Installation)
        );
        assert_eq!(work_needed(CaseCategory::Other), None);
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
