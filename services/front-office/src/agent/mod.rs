//! The agent aggregate (stream `agent-<UUIDv5 of the agent's subject>`): what an agent
//! handles (case categories, customer segments), how many open cases at once, and whether
//! they are on. Routing reads agents from the `routing_board` projection. Pure.

pub(crate) mod codec;

#[cfg(test)]
mod tests;

use svcops_kit::ApiError;
use svcops_kit::aggregate::{Aggregate, ErrorStatus, Recorded};
use uuid::Uuid;

use crate::case::{AgentName, Category};
use crate::customer::Segment;

/// Most open cases an agent may be given at once.
pub const MAX_CAPACITY: u32 = 100;

const AGENT_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_1c1e_9a5e_4f43_8a0e_7d2b_a6e1_0a01);

/// The stream id of an agent: one per subject, found without a lookup.
pub fn agent_id(agent: &AgentName) -> Uuid {
    Uuid::new_v5(&AGENT_NAMESPACE, agent.as_str().as_bytes())
}

/// What an agent handles; an empty list handles everything of its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentProfile {
    pub agent: AgentName,
    pub skills: Vec<Category>,
    pub segments: Vec<Segment>,
    pub capacity: u32,
}

impl AgentProfile {
    /// Whether this agent handles a case of `category` for a customer of `segment` (a case
    /// of no known segment fits any agent).
    pub fn fits(&self, category: Category, segment: Option<Segment>) -> bool {
        (self.skills.is_empty() || self.skills.contains(&category))
            && match segment {
                Some(segment) => self.segments.is_empty() || self.segments.contains(&segment),
                // A case of no known segment (from before segments) only goes where any
                // segment does, never to a segment's desk.
                None => self.segments.is_empty(),
            }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("agent {0} has no profile: set one first")]
    NotEnrolled(String),
}

impl ErrorStatus for AgentError {
    fn api_error(&self) -> ApiError {
        match self {
            AgentError::Invalid { field, reason } => ApiError::invalid(*field, reason),
            AgentError::NotEnrolled(_) => ApiError::FailedPrecondition(self.to_string()),
        }
    }
}

impl From<AgentError> for ApiError {
    fn from(error: AgentError) -> Self {
        error.api_error()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCommand {
    SetProfile(AgentProfile),
    SetAvailability(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    ProfileSet(AgentProfile),
    AvailabilitySet { agent: AgentName, available: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Agent {
    pub profile: Option<AgentProfile>,
    pub available: bool,
}

impl Aggregate for Agent {
    const KIND: &'static str = "agent";
    type Command = AgentCommand;
    type Event = AgentEvent;
    type Error = AgentError;

    fn decide(&self, command: AgentCommand) -> Result<Vec<AgentEvent>, AgentError> {
        match command {
            AgentCommand::SetProfile(profile) => {
                if profile.capacity == 0 || profile.capacity > MAX_CAPACITY {
                    return Err(AgentError::Invalid {
                        field: "capacity",
                        reason: format!("must be 1 to {MAX_CAPACITY}"),
                    });
                }
                if self.profile.as_ref() == Some(&profile) {
                    return Ok(vec![]);
                }
                Ok(vec![AgentEvent::ProfileSet(profile)])
            }
            AgentCommand::SetAvailability(available) => {
                let Some(profile) = &self.profile else {
                    return Err(AgentError::NotEnrolled(String::new()));
                };
                if self.available == available {
                    return Ok(vec![]);
                }
                Ok(vec![AgentEvent::AvailabilitySet {
                    agent: profile.agent.clone(),
                    available,
                }])
            }
        }
    }

    fn apply(&mut self, recorded: &Recorded<AgentEvent>) {
        match &recorded.event {
            AgentEvent::ProfileSet(profile) => self.profile = Some(profile.clone()),
            AgentEvent::AvailabilitySet { available, .. } => self.available = *available,
        }
    }
}
