//! Agent events <-> protobuf.

use std::sync::LazyLock;

use prost::{Message, Name};
use svcops_kit::aggregate::{DecodeError, DomainEvent, EventDecoders};
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as proto;

use super::{AgentEvent, AgentProfile};
use crate::case::{AgentName, Category, category_from_proto};
use crate::customer::{Segment, segment_from_proto};

pub fn categories_to_proto(categories: &[Category]) -> Vec<i32> {
    categories
        .iter()
        .map(|category| common::CaseCategory::from(*category).into())
        .collect()
}

pub fn segments_to_proto(segments: &[Segment]) -> Vec<i32> {
    segments
        .iter()
        .map(|segment| proto::CustomerSegment::from(*segment).into())
        .collect()
}

/// Known values only (a value a newer version names is left out); in order, once each.
pub fn categories_from_proto(values: &[i32]) -> Vec<Category> {
    let mut categories = Vec::new();
    for category in values
        .iter()
        .filter_map(|value| category_from_proto(*value))
    {
        if !categories.contains(&category) {
            categories.push(category);
        }
    }
    categories
}

pub fn segments_from_proto(values: &[i32]) -> Vec<Segment> {
    let mut segments = Vec::new();
    for segment in values
        .iter()
        .filter_map(|value| segment_from_proto(*value).flatten())
    {
        if !segments.contains(&segment) {
            segments.push(segment);
        }
    }
    segments
}

fn agent(event_type: &str, raw: &str) -> Result<AgentName, DecodeError> {
    AgentName::parse("agent", raw).map_err(|error| DecodeError::new(event_type, error))
}

static DECODERS: LazyLock<EventDecoders<AgentEvent>> = LazyLock::new(|| {
    EventDecoders::new()
        .on::<proto::AgentProfileSet>(|event_type, e| {
            Ok(AgentEvent::ProfileSet(AgentProfile {
                agent: agent(event_type, &e.agent)?,
                skills: categories_from_proto(&e.skills),
                segments: segments_from_proto(&e.segments),
                capacity: e.capacity,
            }))
        })
        .on::<proto::AgentAvailabilitySet>(|event_type, e| {
            Ok(AgentEvent::AvailabilitySet {
                agent: agent(event_type, &e.agent)?,
                available: e.available,
            })
        })
});

impl DomainEvent for AgentEvent {
    fn encode(&self) -> (String, Vec<u8>) {
        match self {
            AgentEvent::ProfileSet(profile) => (
                proto::AgentProfileSet::full_name(),
                proto::AgentProfileSet {
                    agent: profile.agent.as_str().to_owned(),
                    skills: categories_to_proto(&profile.skills),
                    segments: segments_to_proto(&profile.segments),
                    capacity: profile.capacity,
                }
                .encode_to_vec(),
            ),
            AgentEvent::AvailabilitySet { agent, available } => (
                proto::AgentAvailabilitySet::full_name(),
                proto::AgentAvailabilitySet {
                    agent: agent.as_str().to_owned(),
                    available: *available,
                }
                .encode_to_vec(),
            ),
        }
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        DECODERS.decode(event_type, payload)
    }
}
