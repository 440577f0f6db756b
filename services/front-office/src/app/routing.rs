//! Routing: agents' profiles and availability, queues, and the choices routing makes for a
//! case (its queue, its agent, whether a named agent has room), read from the
//! `routing_board` projection.

use std::sync::Arc;

use svcops_eventstore::EventStore;
use svcops_eventstore::projection::ReadModel;
use svcops_kit::aggregate::{Executor, Idempotency};
use svcops_kit::events::CommandContext;
use tokio::sync::Notify;

use super::{Error, READ_YOUR_WRITES};
use crate::agent::{Agent, AgentCommand, AgentError, AgentProfile, agent_id};
use crate::case::{AgentName, CaseCommand, CaseView, Priority, QueueName};
use crate::queue::{Queue, QueueCommand, QueueRule, queue_id};
use crate::routing::{self, BoardAgent};

pub struct Routing {
    agents: Executor<Agent>,
    queues: Executor<Queue>,
    board: ReadModel,
}

/// A case as routing words it in an error.
fn described(case: &CaseView) -> String {
    let category = format!("{:?}", case.details.category).to_lowercase();
    match case.details.segment {
        Some(segment) => format!("{category} cases of {segment:?} customers").to_lowercase(),
        None => format!("{category} cases"),
    }
}

impl Routing {
    pub fn new(store: Arc<dyn EventStore>, relay: Arc<Notify>, board: ReadModel) -> Self {
        Self {
            agents: Executor::new(store.clone(), relay.clone()),
            queues: Executor::new(store, relay),
            board,
        }
    }

    /// Every agent, with their open cases (read your writes).
    pub async fn agents(&self) -> Result<Vec<BoardAgent>, Error> {
        let tables = self.board.caught_up(READ_YOUR_WRITES).await?;
        Ok(crate::routing_board::agents(&self.board, &tables).await?)
    }

    /// Every queue, in routing order (read your writes).
    pub async fn queues(&self) -> Result<Vec<QueueRule>, Error> {
        let tables = self.board.caught_up(READ_YOUR_WRITES).await?;
        Ok(crate::routing_board::queues(&self.board, &tables).await?)
    }

    async fn agent(&self, agent: &AgentName) -> Result<BoardAgent, Error> {
        self.agents()
            .await?
            .into_iter()
            .find(|known| &known.profile.agent == agent)
            .ok_or_else(|| {
                Error::Agent(svcops_kit::aggregate::ExecuteError::Domain(
                    AgentError::NotEnrolled(agent.as_str().to_owned()),
                ))
            })
    }

    pub async fn set_profile(
        &self,
        context: &CommandContext,
        request_id: Option<&str>,
        request_hash: Vec<u8>,
        profile: AgentProfile,
    ) -> Result<BoardAgent, Error> {
        let agent = profile.agent.clone();
        let idempotency =
            Idempotency::of_caller(context, "front-office/agent-profile", request_id, || {
                request_hash
            });
        self.agents
            .execute(
                agent_id(&agent),
                None,
                context,
                AgentCommand::SetProfile(profile),
                idempotency,
            )
            .await?;
        self.agent(&agent).await
    }

    pub async fn set_availability(
        &self,
        context: &CommandContext,
        request_id: Option<&str>,
        request_hash: Vec<u8>,
        agent: AgentName,
        available: bool,
    ) -> Result<BoardAgent, Error> {
        let idempotency = Idempotency::of_caller(
            context,
            "front-office/agent-availability",
            request_id,
            || request_hash,
        );
        self.agents
            .execute(
                agent_id(&agent),
                None,
                context,
                AgentCommand::SetAvailability(available),
                idempotency,
            )
            .await
            .map_err(|error| match error {
                svcops_kit::aggregate::ExecuteError::Domain(AgentError::NotEnrolled(_)) => {
                    Error::Agent(svcops_kit::aggregate::ExecuteError::Domain(
                        AgentError::NotEnrolled(agent.as_str().to_owned()),
                    ))
                }
                other => Error::Agent(other),
            })?;
        self.agent(&agent).await
    }

    pub async fn define_queue(
        &self,
        context: &CommandContext,
        request_id: Option<&str>,
        request_hash: Vec<u8>,
        rule: QueueRule,
    ) -> Result<QueueRule, Error> {
        let idempotency =
            Idempotency::of_caller(context, "front-office/define-queue", request_id, || {
                request_hash
            });
        let defined = self
            .queues
            .execute(
                queue_id(&rule.queue),
                None,
                context,
                QueueCommand::Define(rule.clone()),
                idempotency,
            )
            .await?;
        Ok(defined.state.rule.unwrap_or(rule))
    }

    /// Triage without a queue: the queue that takes the case.
    pub async fn triage(
        &self,
        case: &CaseView,
        priority: Option<Priority>,
    ) -> Result<CaseCommand, Error> {
        let queues = self.queues().await?;
        let queue: QueueName =
            routing::pick_queue(&queues, case.details.category, case.details.segment)
                .map(|rule| rule.queue.clone())
                .ok_or_else(|| Error::NoQueue(described(case)))?;
        Ok(CaseCommand::Triage { queue, priority })
    }

    /// Assignment without an assignee: the agent who gets the case.
    pub async fn assign_next(&self, case: &CaseView) -> Result<CaseCommand, Error> {
        let agents = self.agents().await?;
        let assignee = routing::pick_agent(&agents, case.details.category, case.details.segment)
            .map(|agent| agent.profile.agent.clone())
            .ok_or_else(|| Error::NoAgent(described(case)))?;
        Ok(CaseCommand::Assign { assignee })
    }

    /// Assignment to a named agent, who must have room (unless the case is theirs already;
    /// an agent routing does not know is not limited).
    pub async fn assign_to(
        &self,
        case: &CaseView,
        assignee: AgentName,
    ) -> Result<CaseCommand, Error> {
        if case.assignee.as_ref() != Some(&assignee) {
            let agents = self.agents().await?;
            if let Some(capacity) = routing::refuse_over_capacity(&agents, &assignee) {
                return Err(Error::AtCapacity {
                    agent: assignee.as_str().to_owned(),
                    capacity,
                });
            }
        }
        Ok(CaseCommand::Assign { assignee })
    }
}
