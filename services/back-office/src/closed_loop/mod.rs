//! Closed-loop tracking of a case (stream `closedloop-<case>`): open until the customer
//! confirms. Pure.

use std::sync::LazyLock;

use prost::Message;
use svcops_kit::aggregate::{
    Aggregate, DecodeError, DomainEvent, EventDecoders, NeverRefused, Recorded,
};
use svcops_proto::backoffice::v1 as proto;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopCommand {
    Open { case_id: Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoopEvent {
    Opened { case_id: Uuid },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClosedLoop {
    #[default]
    NotTracked,
    Open,
}

impl Aggregate for ClosedLoop {
    const KIND: &'static str = "closedloop";
    type Command = LoopCommand;
    type Event = LoopEvent;
    type Error = NeverRefused;

    fn decide(&self, command: LoopCommand) -> Result<Vec<LoopEvent>, NeverRefused> {
        Ok(match (command, self) {
            (LoopCommand::Open { case_id }, ClosedLoop::NotTracked) => {
                vec![LoopEvent::Opened { case_id }]
            }
            (LoopCommand::Open { .. }, ClosedLoop::Open) => vec![],
        })
    }

    fn apply(&mut self, recorded: &Recorded<LoopEvent>) {
        match recorded.event {
            LoopEvent::Opened { .. } => *self = ClosedLoop::Open,
        }
    }
}

impl DomainEvent for LoopEvent {
    fn encode(&self) -> (String, Vec<u8>) {
        match self {
            LoopEvent::Opened { case_id } => {
                let message = proto::ClosedLoopItemOpened {
                    case_id: case_id.to_string(),
                };
                (
                    <proto::ClosedLoopItemOpened as prost::Name>::full_name(),
                    message.encode_to_vec(),
                )
            }
        }
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        DECODERS.decode(event_type, payload)
    }
}

static DECODERS: LazyLock<EventDecoders<LoopEvent>> = LazyLock::new(|| {
    EventDecoders::new().on::<proto::ClosedLoopItemOpened>(|event_type, opened| {
        let case_id = Uuid::parse_str(&opened.case_id)
            .map_err(|error| DecodeError::new(event_type, error))?;
        Ok(LoopEvent::Opened { case_id })
    })
});

#[cfg(test)]
mod tests {
    use svcops_kit::aggregate::testkit::given;

    use super::*;

    #[test]
    fn given_nothing_when_opened_then_tracked() {
        let case_id = Uuid::now_v7();
        given::<ClosedLoop>([])
            .when(LoopCommand::Open { case_id })
            .then_expect_events(vec![LoopEvent::Opened { case_id }]);
    }

    #[test]
    fn given_open_when_opened_again_then_nothing_happens() {
        let case_id = Uuid::now_v7();
        given::<ClosedLoop>([LoopEvent::Opened { case_id }])
            .when(LoopCommand::Open { case_id })
            .then_expect_events(vec![]);
    }

    #[test]
    fn events_round_trip_through_protobuf() {
        let event = LoopEvent::Opened {
            case_id: Uuid::now_v7(),
        };
        let (event_type, payload) = event.encode();
        assert_eq!(LoopEvent::decode(&event_type, &payload), Ok(Some(event)));
    }
}
