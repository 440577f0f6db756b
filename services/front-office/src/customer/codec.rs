//! Customer events <-> protobuf.

use prost::{Message, Name};
use svcops_kit::aggregate::{DecodeError, DomainEvent};
use svcops_proto::frontoffice::v1 as proto;
use uuid::Uuid;

use super::CustomerEvent;

impl DomainEvent for CustomerEvent {
    fn encode(&self) -> (String, Vec<u8>) {
        match self {
            CustomerEvent::DataErased { key_id } => (
                proto::CustomerDataErased::full_name(),
                proto::CustomerDataErased {
                    key_id: key_id.to_string(),
                }
                .encode_to_vec(),
            ),
        }
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        if event_type != proto::CustomerDataErased::full_name() {
            return Ok(None);
        }
        let record = proto::CustomerDataErased::decode(payload)
            .map_err(|error| DecodeError::new(event_type, error))?;
        let key_id =
            Uuid::parse_str(&record.key_id).map_err(|error| DecodeError::new(event_type, error))?;
        Ok(Some(CustomerEvent::DataErased { key_id }))
    }
}
