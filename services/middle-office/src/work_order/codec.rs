//! Work order events <-> protobuf.

use std::sync::LazyLock;

use prost::Message;
use svcops_kit::aggregate::{DecodeError, DomainEvent, EventDecoders};
use svcops_proto::middleoffice::v1 as proto;
use uuid::Uuid;

use super::{Event, Kind, WorkOrderDetails};

impl From<Kind> for proto::WorkOrderKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Repair => proto::WorkOrderKind::Repair,
            Kind::Installation => proto::WorkOrderKind::Installation,
        }
    }
}

static DECODERS: LazyLock<EventDecoders<Event>> = LazyLock::new(|| {
    EventDecoders::new().on::<proto::WorkOrderOpened>(|event_type, opened| {
        let corrupt = |reason: &dyn std::fmt::Display| DecodeError::new(event_type, reason);
        let kind = match proto::WorkOrderKind::try_from(opened.kind) {
            Ok(proto::WorkOrderKind::Repair) => Kind::Repair,
            Ok(proto::WorkOrderKind::Installation) => Kind::Installation,
            _ => return Err(corrupt(&"unknown work order kind")),
        };
        Ok(Event::Opened(WorkOrderDetails {
            work_order_id: Uuid::parse_str(&opened.work_order_id).map_err(|e| corrupt(&e))?,
            case_id: Uuid::parse_str(&opened.case_id).map_err(|e| corrupt(&e))?,
            kind,
            product: opened.product,
            serial_number: opened.serial_number,
            summary: opened.summary,
        }))
    })
});

impl DomainEvent for Event {
    fn encode(&self) -> (String, Vec<u8>) {
        match self {
            Event::Opened(details) => (
                <proto::WorkOrderOpened as prost::Name>::full_name(),
                proto::WorkOrderOpened {
                    work_order_id: details.work_order_id.to_string(),
                    case_id: details.case_id.to_string(),
                    kind: proto::WorkOrderKind::from(details.kind).into(),
                    product: details.product.clone(),
                    serial_number: details.serial_number.clone(),
                    summary: details.summary.clone(),
                }
                .encode_to_vec(),
            ),
        }
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        DECODERS.decode(event_type, payload)
    }
}
