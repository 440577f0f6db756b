//! The listen session aggregate (stream `listen-<session>`): one executive's listen to one
//! case, started and ended on the record. Pure.

mod codec;
#[cfg(test)]
mod tests;

use svcops_kit::ApiError;
use svcops_kit::aggregate::{Aggregate, ErrorStatus, Recorded};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("listen session {0} has already started")]
    AlreadyStarted(Uuid),
    #[error("listen session {0} never started")]
    NotStarted(Uuid),
}

impl ErrorStatus for Error {
    fn api_error(&self) -> ApiError {
        match self {
            Error::AlreadyStarted(_) | Error::NotStarted(_) => {
                ApiError::FailedPrecondition(self.to_string())
            }
        }
    }
}

/// How the listener takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Silent.
    Observe,
    /// Speaks to the agent only.
    Whisper,
    /// Speaks into the conversation with the customer.
    Barge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub session_id: Uuid,
    pub case_id: Uuid,
    pub mode: Mode,
    /// The replica serving the session ([`crate::replica`]); empty before replicas.
    pub served_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub session_id: Uuid,
    pub case_id: Uuid,
    /// Why: one of [`crate::session_log`]'s `ENDED_*`; empty on ends recorded before
    /// reasons existed.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start(Started),
    /// Ends the session; ending an ended session changes nothing.
    End(Ended),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started(Started),
    Ended(Ended),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lifecycle {
    #[default]
    NotStarted,
    Listening,
    Ended,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListenSession {
    pub lifecycle: Lifecycle,
}

impl Aggregate for ListenSession {
    const KIND: &'static str = "listen";
    type Command = Command;
    type Event = Event;
    type Error = Error;

    fn decide(&self, command: Command) -> Result<Vec<Event>, Error> {
        match command {
            Command::Start(started) => match self.lifecycle {
                Lifecycle::NotStarted => Ok(vec![Event::Started(started)]),
                Lifecycle::Listening | Lifecycle::Ended => {
                    Err(Error::AlreadyStarted(started.session_id))
                }
            },
            Command::End(ended) => match self.lifecycle {
                Lifecycle::NotStarted => Err(Error::NotStarted(ended.session_id)),
                Lifecycle::Listening => Ok(vec![Event::Ended(ended)]),
                Lifecycle::Ended => Ok(vec![]),
            },
        }
    }

    fn apply(&mut self, recorded: &Recorded<Event>) {
        self.lifecycle = match recorded.event {
            Event::Started(_) => Lifecycle::Listening,
            Event::Ended(_) => Lifecycle::Ended,
        };
    }
}
