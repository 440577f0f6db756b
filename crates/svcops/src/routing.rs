//! `svcops agent …` and `svcops queue …`: what routing works from.

use clap::Subcommand;
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::frontoffice::v1::routing_service_client::RoutingServiceClient;

use crate::Output;
use crate::client::{Client, parse_enum};

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Enrol an agent or change their profile (set whole).
    Set {
        /// The agent's subject, as in their token.
        agent: String,
        /// A case category they handle (repeat); none: every category.
        #[arg(long = "skill")]
        skills: Vec<String>,
        /// A customer segment they serve (repeat); none: every segment.
        #[arg(long = "segment")]
        segments: Vec<String>,
        /// Most open cases at once.
        #[arg(long)]
        capacity: u32,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// An agent comes on (default: the caller).
    On { agent: Option<String> },
    /// An agent goes off (default: the caller).
    Off { agent: Option<String> },
    /// Every agent with their open cases.
    List,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Define a queue or change what it takes (set whole).
    Define {
        queue: String,
        /// A case category it takes (repeat); none: every category.
        #[arg(long = "category")]
        categories: Vec<String>,
        /// A customer segment it takes (repeat); none: every segment.
        #[arg(long = "segment")]
        segments: Vec<String>,
        /// Among queues that take a case, the lowest rank wins.
        #[arg(long, default_value_t = 0)]
        rank: u32,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Every queue, in routing order.
    List,
}

fn categories(raw: &[String]) -> anyhow::Result<Vec<i32>> {
    raw.iter()
        .map(|category| {
            parse_enum("category", category, "CASE_CATEGORY_", |name| {
                common::CaseCategory::from_str_name(name).map(Into::into)
            })
        })
        .collect()
}

fn segments(raw: &[String]) -> anyhow::Result<Vec<i32>> {
    raw.iter()
        .map(|segment| {
            parse_enum(
                "segment",
                &segment.replace('-', "_"),
                "CUSTOMER_SEGMENT_",
                |name| front::CustomerSegment::from_str_name(name).map(Into::into),
            )
        })
        .collect()
}

fn names(values: &[i32], name: impl Fn(i32) -> Option<&'static str>, prefix: &str) -> String {
    let names: Vec<String> = values
        .iter()
        .filter_map(|value| name(*value))
        .map(|name| {
            name.trim_start_matches(prefix)
                .to_lowercase()
                .replace('_', "-")
        })
        .collect();
    if names.is_empty() {
        "any".to_owned()
    } else {
        names.join(",")
    }
}

fn category_names(values: &[i32]) -> String {
    names(
        values,
        |value| {
            common::CaseCategory::try_from(value)
                .ok()
                .map(|c| c.as_str_name())
        },
        "CASE_CATEGORY_",
    )
}

fn segment_names(values: &[i32]) -> String {
    names(
        values,
        |value| {
            front::CustomerSegment::try_from(value)
                .ok()
                .map(|s| s.as_str_name())
        },
        "CUSTOMER_SEGMENT_",
    )
}

fn agent_json(agent: &front::Agent) -> serde_json::Value {
    serde_json::json!({
        "agent": agent.agent,
        "skills": category_names(&agent.skills),
        "segments": segment_names(&agent.segments),
        "capacity": agent.capacity,
        "available": agent.available,
        "open_cases": agent.open_cases,
    })
}

fn print_agents(agents: &[front::Agent], output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::Value::Array(agents.iter().map(agent_json).collect())
        ),
        Output::Table => {
            println!(
                "{:<20}  {:<4}  {:>9}  {:<30}  SEGMENTS",
                "AGENT", "ON", "OPEN/CAP", "SKILLS"
            );
            for agent in agents {
                println!(
                    "{:<20}  {:<4}  {:>9}  {:<30}  {}",
                    agent.agent,
                    if agent.available { "on" } else { "off" },
                    format!("{}/{}", agent.open_cases, agent.capacity),
                    category_names(&agent.skills),
                    segment_names(&agent.segments)
                );
            }
        }
    }
}

fn print_queues(queues: &[front::Queue], output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::Value::Array(
                queues
                    .iter()
                    .map(|queue| serde_json::json!({
                        "queue": queue.queue,
                        "categories": category_names(&queue.categories),
                        "segments": segment_names(&queue.segments),
                        "rank": queue.rank,
                    }))
                    .collect()
            )
        ),
        Output::Table => {
            println!(
                "{:<24}  {:>4}  {:<30}  SEGMENTS",
                "QUEUE", "RANK", "CATEGORIES"
            );
            for queue in queues {
                println!(
                    "{:<24}  {:>4}  {:<30}  {}",
                    queue.queue,
                    queue.rank,
                    category_names(&queue.categories),
                    segment_names(&queue.segments)
                );
            }
        }
    }
}

pub async fn agent(client: &Client, command: AgentCommand, output: Output) -> anyhow::Result<()> {
    let mut routing = RoutingServiceClient::new(client.channel());
    let agent = match command {
        AgentCommand::Set {
            agent,
            skills,
            segments: raw_segments,
            capacity,
            request_id,
        } => {
            routing
                .set_agent_profile(client.request(front::SetAgentProfileRequest {
                    request_id,
                    agent,
                    skills: categories(&skills)?,
                    segments: segments(&raw_segments)?,
                    capacity,
                }))
                .await?
                .into_inner()
                .agent
        }
        AgentCommand::On { agent } => {
            routing
                .set_agent_availability(client.request(front::SetAgentAvailabilityRequest {
                    request_id: String::new(),
                    agent: agent.unwrap_or_default(),
                    available: true,
                }))
                .await?
                .into_inner()
                .agent
        }
        AgentCommand::Off { agent } => {
            routing
                .set_agent_availability(client.request(front::SetAgentAvailabilityRequest {
                    request_id: String::new(),
                    agent: agent.unwrap_or_default(),
                    available: false,
                }))
                .await?
                .into_inner()
                .agent
        }
        AgentCommand::List => {
            let agents = routing
                .list_agents(client.request(front::ListAgentsRequest {}))
                .await?
                .into_inner()
                .agents;
            print_agents(&agents, output);
            return Ok(());
        }
    };
    print_agents(&agent.into_iter().collect::<Vec<_>>(), output);
    Ok(())
}

pub async fn queue(client: &Client, command: QueueCommand, output: Output) -> anyhow::Result<()> {
    let mut routing = RoutingServiceClient::new(client.channel());
    match command {
        QueueCommand::Define {
            queue,
            categories: raw_categories,
            segments: raw_segments,
            rank,
            request_id,
        } => {
            let defined = routing
                .define_queue(client.request(front::DefineQueueRequest {
                    request_id,
                    queue,
                    categories: categories(&raw_categories)?,
                    segments: segments(&raw_segments)?,
                    rank,
                }))
                .await?
                .into_inner()
                .queue;
            print_queues(&defined.into_iter().collect::<Vec<_>>(), output);
        }
        QueueCommand::List => {
            let queues = routing
                .list_queues(client.request(front::ListQueuesRequest {}))
                .await?
                .into_inner()
                .queues;
            print_queues(&queues, output);
        }
    }
    Ok(())
}
