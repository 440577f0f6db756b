//! The queue aggregate (stream `queue-<UUIDv5 of its name>`): which cases a queue takes
//! (case categories, customer segments) and its rank among queues that take the same case.
//! Routing reads queues from the `routing_board` projection. Pure.

use std::sync::LazyLock;

use prost::{Message, Name};
use svcops_kit::aggregate::{
    Aggregate, DecodeError, DomainEvent, EventDecoders, NeverRefused, Recorded,
};
use svcops_proto::frontoffice::v1 as proto;
use uuid::Uuid;

use crate::agent::codec::{
    categories_from_proto, categories_to_proto, segments_from_proto, segments_to_proto,
};
use crate::case::{Category, QueueName};
use crate::customer::Segment;

const QUEUE_NAMESPACE: Uuid = Uuid::from_u128(0x2b7e_4c1d_6f0a_4e8b_9c3d_1a5f_7e2b_0c02);

pub fn queue_id(queue: &QueueName) -> Uuid {
    Uuid::new_v5(&QUEUE_NAMESPACE, queue.as_str().as_bytes())
}

/// What a queue takes; an empty list takes everything of its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRule {
    pub queue: QueueName,
    pub categories: Vec<Category>,
    pub segments: Vec<Segment>,
    pub rank: u32,
}

impl QueueRule {
    /// Whether it takes a case of `category` for a customer of `segment` (a case of no
    /// known segment is taken by queues of any segment).
    pub fn takes(&self, category: Category, segment: Option<Segment>) -> bool {
        (self.categories.is_empty() || self.categories.contains(&category))
            && match segment {
                Some(segment) => self.segments.is_empty() || self.segments.contains(&segment),
                // A case of no known segment (from before segments) only goes where any
                // segment does, never to a segment's desk.
                None => self.segments.is_empty(),
            }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueCommand {
    Define(QueueRule),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueEvent {
    Defined(QueueRule),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Queue {
    pub rule: Option<QueueRule>,
}

impl Aggregate for Queue {
    const KIND: &'static str = "queue";
    type Command = QueueCommand;
    type Event = QueueEvent;
    type Error = NeverRefused;

    fn decide(&self, command: QueueCommand) -> Result<Vec<QueueEvent>, NeverRefused> {
        let QueueCommand::Define(rule) = command;
        if self.rule.as_ref() == Some(&rule) {
            return Ok(vec![]);
        }
        Ok(vec![QueueEvent::Defined(rule)])
    }

    fn apply(&mut self, recorded: &Recorded<QueueEvent>) {
        let QueueEvent::Defined(rule) = &recorded.event;
        self.rule = Some(rule.clone());
    }
}

static DECODERS: LazyLock<EventDecoders<QueueEvent>> = LazyLock::new(|| {
    EventDecoders::new().on::<proto::QueueDefined>(|event_type, e| {
        Ok(QueueEvent::Defined(QueueRule {
            queue: QueueName::parse("queue", &e.queue)
                .map_err(|error| DecodeError::new(event_type, error))?,
            categories: categories_from_proto(&e.categories),
            segments: segments_from_proto(&e.segments),
            rank: e.rank,
        }))
    })
});

impl DomainEvent for QueueEvent {
    fn encode(&self) -> (String, Vec<u8>) {
        let QueueEvent::Defined(rule) = self;
        (
            proto::QueueDefined::full_name(),
            proto::QueueDefined {
                queue: rule.queue.as_str().to_owned(),
                categories: categories_to_proto(&rule.categories),
                segments: segments_to_proto(&rule.segments),
                rank: rule.rank,
            }
            .encode_to_vec(),
        )
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        DECODERS.decode(event_type, payload)
    }
}

#[cfg(test)]
mod tests {
    use svcops_kit::aggregate::testkit::given;

    use super::*;

    fn rule(rank: u32) -> QueueRule {
        QueueRule {
            queue: QueueName::parse("queue", "complaints-b2b").expect("queue"),
            categories: vec![Category::Complaint],
            segments: vec![Segment::Hotel, Segment::RealEstate],
            rank,
        }
    }

    #[test]
    fn given_a_queue_when_defined_the_same_then_nothing_and_a_change_is_recorded() {
        given::<Queue>([])
            .when(QueueCommand::Define(rule(1)))
            .then_expect_events(vec![QueueEvent::Defined(rule(1))]);
        given::<Queue>([QueueEvent::Defined(rule(1))])
            .when(QueueCommand::Define(rule(1)))
            .then_expect_events(vec![]);
        given::<Queue>([QueueEvent::Defined(rule(1))])
            .when(QueueCommand::Define(rule(2)))
            .then_expect_events(vec![QueueEvent::Defined(rule(2))]);
    }

    #[test]
    fn a_queue_takes_cases_of_its_categories_and_segments() {
        let queue = rule(1);
        assert!(queue.takes(Category::Complaint, Some(Segment::Hotel)));
        assert!(!queue.takes(Category::Complaint, None));
        assert!(!queue.takes(Category::Complaint, Some(Segment::Consumer)));
        assert!(!queue.takes(Category::Repair, Some(Segment::Hotel)));
    }

    #[test]
    fn the_event_survives_its_protobuf_round_trip() {
        let event = QueueEvent::Defined(rule(3));
        let (event_type, payload) = event.encode();
        assert_eq!(QueueEvent::decode(&event_type, &payload), Ok(Some(event)));
    }
}
