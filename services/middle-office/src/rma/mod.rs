//! The return-to-factory aggregate (stream `rma-<id>`, the id derived from the work
//! order's): authorised → shipped by the customer → received at the factory → repaired or
//! replaced → shipped back → delivered, with tracking numbers both ways. Every step names
//! the case, so the case's timeline follows it. Pure.

use std::sync::LazyLock;

use prost::{Message, Name};
use svcops_kit::ApiError;
use svcops_kit::aggregate::{
    Aggregate, DecodeError, DomainEvent, ErrorStatus, EventDecoders, Recorded,
};
use svcops_proto::middleoffice::v1 as proto;
use uuid::Uuid;

const RMA_NAMESPACE: Uuid = Uuid::from_u128(0x8d3e_2f1a_4b5c_4d6e_9f70_8192_a3b4_c5d6);

/// The return of a work order: one per work order, found without a lookup.
pub fn rma_id(work_order_id: Uuid) -> Uuid {
    Uuid::new_v5(&RMA_NAMESPACE, work_order_id.as_bytes())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Authorised,
    ShippedByCustomer,
    AtFactory,
    Repaired,
    Replaced,
    ShippedBack,
    Delivered,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Authorised => "authorised",
            State::ShippedByCustomer => "shipped by the customer",
            State::AtFactory => "at the factory",
            State::Repaired => "repaired",
            State::Replaced => "replaced",
            State::ShippedBack => "shipped back",
            State::Delivered => "delivered",
        }
    }
}

/// A step a return takes, with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    ShippedByCustomer { tracking: String },
    ReceivedAtFactory,
    Repaired { note: String },
    Replaced { note: String },
    ShippedBack { tracking: String },
    Delivered,
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Step::ShippedByCustomer { .. } => "record as shipped by the customer",
            Step::ReceivedAtFactory => "receive",
            Step::Repaired { .. } => "record as repaired",
            Step::Replaced { .. } => "record as replaced",
            Step::ShippedBack { .. } => "ship back",
            Step::Delivered => "record as delivered",
        }
    }

    /// The state it leads to, and the state it must come from.
    fn moves(&self) -> (State, &'static [State]) {
        match self {
            Step::ShippedByCustomer { .. } => (State::ShippedByCustomer, &[State::Authorised]),
            Step::ReceivedAtFactory => (State::AtFactory, &[State::ShippedByCustomer]),
            Step::Repaired { .. } => (State::Repaired, &[State::AtFactory]),
            Step::Replaced { .. } => (State::Replaced, &[State::AtFactory]),
            Step::ShippedBack { .. } => (State::ShippedBack, &[State::Repaired, State::Replaced]),
            Step::Delivered => (State::Delivered, &[State::ShippedBack]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the return is not authorised")]
    NotAuthorised,
    #[error("return {0} is already authorised")]
    AlreadyAuthorised(Uuid),
    #[error("cannot {action} a return that is {state}")]
    NotAllowed {
        action: &'static str,
        state: &'static str,
    },
}

impl ErrorStatus for Error {
    fn api_error(&self) -> ApiError {
        match self {
            Error::NotAuthorised => ApiError::NotFound {
                resource: "return",
                id: String::new(),
            },
            Error::AlreadyAuthorised(_) | Error::NotAllowed { .. } => {
                ApiError::FailedPrecondition(self.to_string())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorised {
    pub rma_id: Uuid,
    pub work_order_id: Uuid,
    pub case_id: Uuid,
    pub product: String,
    pub serial_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Authorise(Authorised),
    Advance(Step),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Authorised(Authorised),
    Advanced {
        rma_id: Uuid,
        case_id: Uuid,
        step: Step,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rma {
    pub authorised: Option<Authorised>,
    pub state: Option<State>,
    pub inbound_tracking: Option<String>,
    pub outbound_tracking: Option<String>,
    pub factory_note: Option<String>,
}

impl Aggregate for Rma {
    const KIND: &'static str = "rma";
    type Command = Command;
    type Event = Event;
    type Error = Error;

    fn decide(&self, command: Command) -> Result<Vec<Event>, Error> {
        match command {
            Command::Authorise(authorised) => {
                if self.authorised.is_some() {
                    return Err(Error::AlreadyAuthorised(authorised.rma_id));
                }
                Ok(vec![Event::Authorised(authorised)])
            }
            Command::Advance(step) => {
                let (Some(authorised), Some(state)) = (&self.authorised, self.state) else {
                    return Err(Error::NotAuthorised);
                };
                let (_, from) = step.moves();
                if !from.contains(&state) {
                    return Err(Error::NotAllowed {
                        action: step.name(),
                        state: state.name(),
                    });
                }
                Ok(vec![Event::Advanced {
                    rma_id: authorised.rma_id,
                    case_id: authorised.case_id,
                    step,
                }])
            }
        }
    }

    fn apply(&mut self, recorded: &Recorded<Event>) {
        match &recorded.event {
            Event::Authorised(authorised) => {
                self.authorised = Some(authorised.clone());
                self.state = Some(State::Authorised);
            }
            Event::Advanced { step, .. } => {
                self.state = Some(step.moves().0);
                match step {
                    Step::ShippedByCustomer { tracking } => {
                        self.inbound_tracking = Some(tracking.clone());
                    }
                    Step::ShippedBack { tracking } => {
                        self.outbound_tracking = Some(tracking.clone());
                    }
                    Step::Repaired { note } | Step::Replaced { note } => {
                        self.factory_note = Some(note.clone());
                    }
                    Step::ReceivedAtFactory | Step::Delivered => {}
                }
            }
        }
    }
}

pub fn step_to_proto(step: &Step) -> (proto::ReturnStep, String, String) {
    match step {
        Step::ShippedByCustomer { tracking } => (
            proto::ReturnStep::ShippedByCustomer,
            tracking.clone(),
            String::new(),
        ),
        Step::ReceivedAtFactory => (
            proto::ReturnStep::ReceivedAtFactory,
            String::new(),
            String::new(),
        ),
        Step::Repaired { note } => (proto::ReturnStep::Repaired, String::new(), note.clone()),
        Step::Replaced { note } => (proto::ReturnStep::Replaced, String::new(), note.clone()),
        Step::ShippedBack { tracking } => (
            proto::ReturnStep::ShippedBack,
            tracking.clone(),
            String::new(),
        ),
        Step::Delivered => (proto::ReturnStep::Delivered, String::new(), String::new()),
    }
}

/// `None` for an unknown or unspecified step.
pub fn step_from_proto(step: i32, tracking: String, note: String) -> Option<Step> {
    Some(match proto::ReturnStep::try_from(step).ok()? {
        proto::ReturnStep::Unspecified => return None,
        proto::ReturnStep::ShippedByCustomer => Step::ShippedByCustomer { tracking },
        proto::ReturnStep::ReceivedAtFactory => Step::ReceivedAtFactory,
        proto::ReturnStep::Repaired => Step::Repaired { note },
        proto::ReturnStep::Replaced => Step::Replaced { note },
        proto::ReturnStep::ShippedBack => Step::ShippedBack { tracking },
        proto::ReturnStep::Delivered => Step::Delivered,
    })
}

static DECODERS: LazyLock<EventDecoders<Event>> = LazyLock::new(|| {
    EventDecoders::new()
        .on::<proto::ReturnAuthorised>(|event_type, e| {
            let uuid = |raw: &str| {
                Uuid::parse_str(raw).map_err(|error| DecodeError::new(event_type, error))
            };
            Ok(Event::Authorised(Authorised {
                rma_id: uuid(&e.rma_id)?,
                work_order_id: uuid(&e.work_order_id)?,
                case_id: uuid(&e.case_id)?,
                product: e.product,
                serial_number: e.serial_number,
            }))
        })
        .on::<proto::ReturnAdvanced>(|event_type, e| {
            let uuid = |raw: &str| {
                Uuid::parse_str(raw).map_err(|error| DecodeError::new(event_type, error))
            };
            Ok(Event::Advanced {
                rma_id: uuid(&e.rma_id)?,
                case_id: uuid(&e.case_id)?,
                step: step_from_proto(e.step, e.tracking_number, e.note)
                    .ok_or_else(|| DecodeError::new(event_type, "unknown step"))?,
            })
        })
});

impl DomainEvent for Event {
    fn encode(&self) -> (String, Vec<u8>) {
        match self {
            Event::Authorised(authorised) => (
                proto::ReturnAuthorised::full_name(),
                proto::ReturnAuthorised {
                    rma_id: authorised.rma_id.to_string(),
                    work_order_id: authorised.work_order_id.to_string(),
                    case_id: authorised.case_id.to_string(),
                    product: authorised.product.clone(),
                    serial_number: authorised.serial_number.clone(),
                }
                .encode_to_vec(),
            ),
            Event::Advanced {
                rma_id,
                case_id,
                step,
            } => {
                let (step, tracking_number, note) = step_to_proto(step);
                (
                    proto::ReturnAdvanced::full_name(),
                    proto::ReturnAdvanced {
                        rma_id: rma_id.to_string(),
                        case_id: case_id.to_string(),
                        step: step.into(),
                        tracking_number,
                        note,
                    }
                    .encode_to_vec(),
                )
            }
        }
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        DECODERS.decode(event_type, payload)
    }
}

#[cfg(test)]
mod tests {
    use svcops_kit::aggregate::testkit::given;

    use super::*;

    fn authorised() -> Authorised {
        let work_order_id = Uuid::now_v7();
        Authorised {
            rma_id: rma_id(work_order_id),
            work_order_id,
            case_id: Uuid::now_v7(),
            product: "WM-8".into(),
            serial_number: "WM8-1".into(),
        }
    }

    fn advanced(authorised: &Authorised, step: Step) -> Event {
        Event::Advanced {
            rma_id: authorised.rma_id,
            case_id: authorised.case_id,
            step,
        }
    }

    #[test]
    fn a_return_goes_out_repaired_and_comes_back_in_order() {
        let rma = authorised();
        let mut history = vec![Event::Authorised(rma.clone())];
        for step in [
            Step::ShippedByCustomer {
                tracking: "SF1234567".into(),
            },
            Step::ReceivedAtFactory,
            Step::Repaired {
                note: "new motor".into(),
            },
            Step::ShippedBack {
                tracking: "SF7654321".into(),
            },
            Step::Delivered,
        ] {
            given::<Rma>(history.clone())
                .when(Command::Advance(step.clone()))
                .then_expect_events(vec![advanced(&rma, step.clone())]);
            history.push(advanced(&rma, step));
        }
    }

    #[test]
    fn a_step_out_of_order_names_the_state() {
        let rma = authorised();
        given::<Rma>([Event::Authorised(rma.clone())])
            .when(Command::Advance(Step::ReceivedAtFactory))
            .then_expect_error(Error::NotAllowed {
                action: "receive",
                state: "authorised",
            });
        given::<Rma>([])
            .when(Command::Advance(Step::Delivered))
            .then_expect_error(Error::NotAuthorised);
        given::<Rma>([Event::Authorised(rma.clone())])
            .when(Command::Authorise(rma.clone()))
            .then_expect_error(Error::AlreadyAuthorised(rma.rma_id));
    }

    #[test]
    fn events_survive_their_protobuf_round_trip() {
        let rma = authorised();
        for event in [
            Event::Authorised(rma.clone()),
            advanced(
                &rma,
                Step::ShippedBack {
                    tracking: "SF1".into(),
                },
            ),
            advanced(
                &rma,
                Step::Replaced {
                    note: "swapped".into(),
                },
            ),
        ] {
            let (event_type, payload) = event.encode();
            assert_eq!(Event::decode(&event_type, &payload), Ok(Some(event)));
        }
    }
}
