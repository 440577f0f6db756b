//! The contact aggregate (stream `contact-<contact id>`): one conversation about a case on
//! one channel, with its transcript. A bot may answer first and hand the conversation to a
//! human queue. Pure: no IO, no protobuf.

mod codec;

#[cfg(test)]
mod tests;

pub use codec::{customer_field_from_proto, speaker_from_proto};

use svcops_kit::ApiError;
use svcops_kit::aggregate::{Aggregate, ErrorStatus, Recorded};
use svcops_kit::error::FieldViolation;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::case::{Channel, QueueName};

/// The longest a contact's offsets may reach: a day.
pub const MAX_OFFSET_MS: u32 = 24 * 60 * 60 * 1000;
/// The longest utterance text, in characters.
pub const MAX_UTTERANCE_CHARS: usize = 4000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("contact {0} already exists")]
    AlreadyStarted(Uuid),
    #[error("the contact is not started")]
    NotStarted,
    #[error("cannot {action} a contact that is {state}")]
    NotAllowed {
        action: &'static str,
        state: &'static str,
    },
}

impl ContactError {
    pub fn field_violation(&self) -> Option<FieldViolation> {
        match self {
            ContactError::Invalid { field, reason } => Some(FieldViolation::new(*field, reason)),
            ContactError::AlreadyStarted(_)
            | ContactError::NotStarted
            | ContactError::NotAllowed { .. } => None,
        }
    }
}

impl ErrorStatus for ContactError {
    fn api_error(&self) -> ApiError {
        match self {
            ContactError::Invalid { field, reason } => ApiError::invalid(*field, reason),
            ContactError::AlreadyStarted(_)
            | ContactError::NotStarted
            | ContactError::NotAllowed { .. } => ApiError::FailedPrecondition(self.to_string()),
        }
    }
}

impl From<ContactError> for ApiError {
    fn from(error: ContactError) -> Self {
        error.api_error()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Speaker {
    Customer,
    Agent,
    Bot,
}

/// A customer field svcops can hold: named, never its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CustomerField {
    Phone,
    Name,
    Email,
    Address,
    AccountNumber,
}

/// What was said, by whom, and when within the contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    pub sequence: u32,
    pub speaker: Speaker,
    pub text: String,
    pub start_ms: u32,
    pub end_ms: u32,
}

impl Utterance {
    /// Parses what a caller says was said; `sequence` is the contact's to give.
    pub fn parse(
        speaker: Speaker,
        text: &str,
        start_ms: u32,
        end_ms: u32,
    ) -> Result<Self, Vec<ContactError>> {
        let mut errors = Vec::new();
        let text = text.trim();
        if text.is_empty() {
            errors.push(invalid("text", "must not be empty"));
        } else if text.chars().count() > MAX_UTTERANCE_CHARS {
            errors.push(invalid(
                "text",
                format!("must be at most {MAX_UTTERANCE_CHARS} characters"),
            ));
        } else if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            errors.push(invalid("text", "must not contain control characters"));
        }
        if end_ms < start_ms {
            errors.push(invalid("end_ms", "must not be before start_ms"));
        } else if end_ms > MAX_OFFSET_MS {
            errors.push(invalid(
                "end_ms",
                "must be within 24 hours of the contact's start",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            sequence: 0,
            speaker,
            text: text.to_owned(),
            start_ms,
            end_ms,
        })
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ContactError {
    ContactError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Who answers the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answering {
    Bot,
    Person,
    Ended,
}

impl Answering {
    pub fn name(self) -> &'static str {
        match self {
            Answering::Bot => "with the bot",
            Answering::Person => "with a person",
            Answering::Ended => "ended",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactCommand {
    Start {
        contact_id: Uuid,
        case_id: Uuid,
        channel: Channel,
        with_bot: bool,
        known_fields: Vec<CustomerField>,
    },
    Say(Utterance),
    HandOff {
        queue: QueueName,
        reason: String,
    },
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactEvent {
    Started {
        contact_id: Uuid,
        case_id: Uuid,
        channel: Channel,
        with_bot: bool,
        known_fields: Vec<CustomerField>,
    },
    Said {
        contact_id: Uuid,
        case_id: Uuid,
        utterance: Utterance,
    },
    HandedOff {
        contact_id: Uuid,
        case_id: Uuid,
        queue: QueueName,
        reason: String,
        utterances: u32,
    },
    Ended {
        contact_id: Uuid,
        case_id: Uuid,
    },
}

/// State of one contact, folded from its events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contact {
    pub started: Option<StartedContact>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedContact {
    pub contact_id: Uuid,
    pub case_id: Uuid,
    pub channel: Channel,
    pub answering: Answering,
    pub known_fields: Vec<CustomerField>,
    /// The queue and the reason of the bot's hand-off.
    pub hand_off: Option<(QueueName, String)>,
    pub transcript: Vec<Utterance>,
    pub started_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
}

impl StartedContact {
    fn refuse(&self, action: &'static str) -> ContactError {
        ContactError::NotAllowed {
            action,
            state: self.answering.name(),
        }
    }

    fn decide_on_started(
        &self,
        command: ContactCommand,
    ) -> Result<Vec<ContactEvent>, ContactError> {
        let (contact_id, case_id) = (self.contact_id, self.case_id);
        let event = match command {
            ContactCommand::Start { contact_id, .. } => {
                return Err(ContactError::AlreadyStarted(contact_id));
            }
            ContactCommand::Say(mut utterance) => {
                // The bot speaks only before its hand-off; an agent only once a person answers.
                match (self.answering, utterance.speaker) {
                    (Answering::Ended, _) => return Err(self.refuse("add to")),
                    (Answering::Person, Speaker::Bot) => {
                        return Err(self.refuse("let the bot speak in"));
                    }
                    (Answering::Bot, Speaker::Agent) => {
                        return Err(self.refuse("let an agent speak in"));
                    }
                    _ => {}
                }
                utterance.sequence = u32::try_from(self.transcript.len())
                    .unwrap_or(u32::MAX)
                    .saturating_add(1);
                ContactEvent::Said {
                    contact_id,
                    case_id,
                    utterance,
                }
            }
            ContactCommand::HandOff { queue, reason } => {
                if self.answering != Answering::Bot {
                    return Err(self.refuse("hand off"));
                }
                ContactEvent::HandedOff {
                    contact_id,
                    case_id,
                    queue,
                    reason,
                    utterances: u32::try_from(self.transcript.len()).unwrap_or(u32::MAX),
                }
            }
            ContactCommand::End => {
                if self.answering == Answering::Ended {
                    return Ok(Vec::new());
                }
                ContactEvent::Ended {
                    contact_id,
                    case_id,
                }
            }
        };
        Ok(vec![event])
    }
}

impl Aggregate for Contact {
    const KIND: &'static str = "contact";
    type Command = ContactCommand;
    type Event = ContactEvent;
    type Error = ContactError;

    fn decide(&self, command: ContactCommand) -> Result<Vec<ContactEvent>, ContactError> {
        match (&self.started, command) {
            (
                None,
                ContactCommand::Start {
                    contact_id,
                    case_id,
                    channel,
                    with_bot,
                    mut known_fields,
                },
            ) => {
                known_fields.sort();
                known_fields.dedup();
                Ok(vec![ContactEvent::Started {
                    contact_id,
                    case_id,
                    channel,
                    with_bot,
                    known_fields,
                }])
            }
            (None, _) => Err(ContactError::NotStarted),
            (Some(started), command) => started.decide_on_started(command),
        }
    }

    fn apply(&mut self, recorded: &Recorded<ContactEvent>) {
        match &recorded.event {
            ContactEvent::Started {
                contact_id,
                case_id,
                channel,
                with_bot,
                known_fields,
            } => {
                self.started = Some(StartedContact {
                    contact_id: *contact_id,
                    case_id: *case_id,
                    channel: *channel,
                    answering: if *with_bot {
                        Answering::Bot
                    } else {
                        Answering::Person
                    },
                    known_fields: known_fields.clone(),
                    hand_off: None,
                    transcript: Vec::new(),
                    started_at: recorded.occurred_at,
                    ended_at: None,
                });
            }
            ContactEvent::Said { utterance, .. } => {
                if let Some(started) = &mut self.started {
                    started.transcript.push(utterance.clone());
                }
            }
            ContactEvent::HandedOff { queue, reason, .. } => {
                if let Some(started) = &mut self.started {
                    started.answering = Answering::Person;
                    started.hand_off = Some((queue.clone(), reason.clone()));
                }
            }
            ContactEvent::Ended { .. } => {
                if let Some(started) = &mut self.started {
                    started.answering = Answering::Ended;
                    started.ended_at = Some(recorded.occurred_at);
                }
            }
        }
    }
}

/// A contact as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactView {
    pub contact: StartedContact,
    pub version: u64,
}

impl ContactView {
    pub fn of(contact: Contact, version: u64) -> Option<Self> {
        Some(Self {
            contact: contact.started?,
            version,
        })
    }
}
