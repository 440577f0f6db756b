//! The routing edge: agents' profiles and availability, queues.

use std::sync::Arc;

use svcops_kit::auth::{Role, authorize};
use svcops_kit::error::FieldViolation;
use svcops_kit::events::CommandContext;
use svcops_proto::frontoffice::v1 as proto;
use svcops_proto::frontoffice::v1::routing_service_server::RoutingService;
use tonic::{Request, Response, Status};

use super::{collect, invalid, parse_request_id, status};
use crate::agent::codec::{
    categories_from_proto, categories_to_proto, segments_from_proto, segments_to_proto,
};
use crate::agent::{AgentProfile, MAX_CAPACITY};
use crate::app::Routing;
use crate::case::{self, AgentName, QueueName};
use crate::customer;
use crate::queue::QueueRule;
use crate::routing::BoardAgent;

/// Who sets up routing: managers (and admins).
const ROUTING_KEEPERS: &[Role] = &[Role::Manager];
/// Who comes on and off: agents (themselves) and managers (anyone).
const AVAILABILITY_SETTERS: &[Role] = &[Role::Agent, Role::Manager];
/// Who reads the board.
const BOARD_READERS: &[Role] = &[
    Role::Agent,
    Role::Manager,
    Role::Qa,
    Role::Executive,
    Role::Service,
];

pub struct RoutingGrpc {
    routing: Arc<Routing>,
}

impl RoutingGrpc {
    pub fn new(routing: Arc<Routing>) -> Self {
        Self { routing }
    }
}

fn agent_to_proto(agent: BoardAgent) -> proto::Agent {
    proto::Agent {
        agent: agent.profile.agent.as_str().to_owned(),
        skills: categories_to_proto(&agent.profile.skills),
        segments: segments_to_proto(&agent.profile.segments),
        capacity: agent.profile.capacity,
        available: agent.available,
        open_cases: agent.open_cases,
    }
}

fn queue_to_proto(rule: QueueRule) -> proto::Queue {
    proto::Queue {
        queue: rule.queue.as_str().to_owned(),
        categories: categories_to_proto(&rule.categories),
        segments: segments_to_proto(&rule.segments),
        rank: rule.rank,
    }
}

/// Every value must be known: an unknown one is a violation, not silently left out.
fn check_known(
    field: &'static str,
    values: &[i32],
    known: impl Fn(i32) -> bool,
    violations: &mut Vec<FieldViolation>,
) {
    if values.iter().any(|value| !known(*value)) {
        violations.push(FieldViolation::new(field, "holds an unknown value"));
    }
}

fn check_lists(
    categories_field: &'static str,
    categories: &[i32],
    segments: &[i32],
    violations: &mut Vec<FieldViolation>,
) {
    check_known(
        categories_field,
        categories,
        |value| case::category_from_proto(value).is_some(),
        violations,
    );
    check_known(
        "segments",
        segments,
        |value| customer::segment_from_proto(value).flatten().is_some(),
        violations,
    );
}

#[tonic::async_trait]
impl RoutingService for RoutingGrpc {
    async fn set_agent_profile(
        &self,
        request: Request<proto::SetAgentProfileRequest>,
    ) -> Result<Response<proto::SetAgentProfileResponse>, Status> {
        let principal = authorize(&request, ROUTING_KEEPERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let request_id = parse_request_id(&body.request_id, &mut violations);
        let agent = collect(AgentName::parse("agent", &body.agent), &mut violations);
        check_lists("skills", &body.skills, &body.segments, &mut violations);
        if body.capacity == 0 || body.capacity > MAX_CAPACITY {
            violations.push(FieldViolation::new(
                "capacity",
                format!("must be 1 to {MAX_CAPACITY}"),
            ));
        }
        let (Some(agent), true) = (agent, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        let profile = AgentProfile {
            agent,
            skills: categories_from_proto(&body.skills),
            segments: segments_from_proto(&body.segments),
            capacity: body.capacity,
        };
        let context = CommandContext::from_caller(principal);
        let agent = self
            .routing
            .set_profile(
                &context,
                request_id.as_deref(),
                svcops_kit::events::message_hash(body, |body| body.request_id.clear()),
                profile,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(proto::SetAgentProfileResponse {
            agent: Some(agent_to_proto(agent)),
        }))
    }

    async fn set_agent_availability(
        &self,
        request: Request<proto::SetAgentAvailabilityRequest>,
    ) -> Result<Response<proto::SetAgentAvailabilityResponse>, Status> {
        let principal = authorize(&request, AVAILABILITY_SETTERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let request_id = parse_request_id(&body.request_id, &mut violations);
        let named = if body.agent.trim().is_empty() {
            principal.subject.as_str()
        } else {
            body.agent.as_str()
        };
        let agent = collect(AgentName::parse("agent", named), &mut violations);
        let (Some(agent), true) = (agent, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        if principal.role == Role::Agent && agent.as_str() != principal.subject {
            return Err(Status::permission_denied(
                "an agent sets their own availability only",
            ));
        }
        let context = CommandContext::from_caller(principal);
        let agent = self
            .routing
            .set_availability(
                &context,
                request_id.as_deref(),
                svcops_kit::events::message_hash(body, |body| body.request_id.clear()),
                agent,
                body.available,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(proto::SetAgentAvailabilityResponse {
            agent: Some(agent_to_proto(agent)),
        }))
    }

    async fn define_queue(
        &self,
        request: Request<proto::DefineQueueRequest>,
    ) -> Result<Response<proto::DefineQueueResponse>, Status> {
        let principal = authorize(&request, ROUTING_KEEPERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let request_id = parse_request_id(&body.request_id, &mut violations);
        let queue = collect(QueueName::parse("queue", &body.queue), &mut violations);
        check_lists(
            "categories",
            &body.categories,
            &body.segments,
            &mut violations,
        );
        let (Some(queue), true) = (queue, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        let rule = QueueRule {
            queue,
            categories: categories_from_proto(&body.categories),
            segments: segments_from_proto(&body.segments),
            rank: body.rank,
        };
        let context = CommandContext::from_caller(principal);
        let defined = self
            .routing
            .define_queue(
                &context,
                request_id.as_deref(),
                svcops_kit::events::message_hash(body, |body| body.request_id.clear()),
                rule,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(proto::DefineQueueResponse {
            queue: Some(queue_to_proto(defined)),
        }))
    }

    async fn list_agents(
        &self,
        request: Request<proto::ListAgentsRequest>,
    ) -> Result<Response<proto::ListAgentsResponse>, Status> {
        authorize(&request, BOARD_READERS)?;
        let agents = self.routing.agents().await.map_err(status)?;
        Ok(Response::new(proto::ListAgentsResponse {
            agents: agents.into_iter().map(agent_to_proto).collect(),
        }))
    }

    async fn list_queues(
        &self,
        request: Request<proto::ListQueuesRequest>,
    ) -> Result<Response<proto::ListQueuesResponse>, Status> {
        authorize(&request, BOARD_READERS)?;
        let queues = self.routing.queues().await.map_err(status)?;
        Ok(Response::new(proto::ListQueuesResponse {
            queues: queues.into_iter().map(queue_to_proto).collect(),
        }))
    }
}
