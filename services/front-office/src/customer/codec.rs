//! Customer events <-> protobuf.

use std::sync::LazyLock;

use prost::{Message, Name};
use svcops_kit::aggregate::{DecodeError, DomainEvent, EventDecoders};
use svcops_proto::frontoffice::v1 as proto;
use uuid::Uuid;

use super::CustomerEvent;

static DECODERS: LazyLock<EventDecoders<CustomerEvent>> = LazyLock::new(|| {
    EventDecoders::new().on::<proto::CustomerDataErased>(|event_type, record| {
        let key_id =
            Uuid::parse_str(&record.key_id).map_err(|error| DecodeError::new(event_type, error))?;
        Ok(CustomerEvent::DataErased { key_id })
    })
});

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
        DECODERS.decode(event_type, payload)
    }
}
