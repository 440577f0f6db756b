//! Given/when/then on the agent.

use svcops_kit::aggregate::DomainEvent;
use svcops_kit::aggregate::testkit::given;

use super::*;

fn profile(capacity: u32) -> AgentProfile {
    AgentProfile {
        agent: AgentName::parse("agent", "agent-7").expect("agent"),
        skills: vec![Category::Repair, Category::Complaint],
        segments: vec![Segment::Hotel],
        capacity,
    }
}

#[test]
fn given_nothing_when_a_profile_is_set_then_enrolled_and_setting_it_again_is_nothing() {
    given::<Agent>([])
        .when(AgentCommand::SetProfile(profile(5)))
        .then_expect_events(vec![AgentEvent::ProfileSet(profile(5))]);
    given::<Agent>([AgentEvent::ProfileSet(profile(5))])
        .when(AgentCommand::SetProfile(profile(5)))
        .then_expect_events(vec![]);
    given::<Agent>([AgentEvent::ProfileSet(profile(5))])
        .when(AgentCommand::SetProfile(profile(8)))
        .then_expect_events(vec![AgentEvent::ProfileSet(profile(8))]);
}

#[test]
fn a_capacity_outside_1_to_100_is_refused() {
    for capacity in [0, MAX_CAPACITY + 1] {
        given::<Agent>([])
            .when(AgentCommand::SetProfile(profile(capacity)))
            .then_expect_error(AgentError::Invalid {
                field: "capacity",
                reason: format!("must be 1 to {MAX_CAPACITY}"),
            });
    }
}

#[test]
fn availability_needs_a_profile_and_changes_once() {
    given::<Agent>([])
        .when(AgentCommand::SetAvailability(true))
        .then_expect_error(AgentError::NotEnrolled(String::new()));
    let agent = profile(5).agent;
    given::<Agent>([AgentEvent::ProfileSet(profile(5))])
        .when(AgentCommand::SetAvailability(true))
        .then_expect_events(vec![AgentEvent::AvailabilitySet {
            agent: agent.clone(),
            available: true,
        }]);
    given::<Agent>([
        AgentEvent::ProfileSet(profile(5)),
        AgentEvent::AvailabilitySet {
            agent,
            available: true,
        },
    ])
    .when(AgentCommand::SetAvailability(true))
    .then_expect_events(vec![]);
}

#[test]
fn an_agent_fits_cases_of_their_skills_and_segments() {
    let agent = profile(5);
    assert!(agent.fits(Category::Repair, Some(Segment::Hotel)));
    assert!(
        !agent.fits(Category::Repair, None),
        "a case of no known segment is not for a segment's desk"
    );
    assert!(!agent.fits(Category::Installation, Some(Segment::Hotel)));
    assert!(!agent.fits(Category::Repair, Some(Segment::Consumer)));
    let generalist = AgentProfile {
        skills: vec![],
        segments: vec![],
        ..profile(5)
    };
    assert!(generalist.fits(Category::Return, Some(Segment::RetailChain)));
    assert!(generalist.fits(Category::Return, None));
}

#[test]
fn events_survive_their_protobuf_round_trip() {
    for event in [
        AgentEvent::ProfileSet(profile(5)),
        AgentEvent::AvailabilitySet {
            agent: profile(5).agent,
            available: false,
        },
    ] {
        let (event_type, payload) = event.encode();
        assert_eq!(AgentEvent::decode(&event_type, &payload), Ok(Some(event)));
    }
}
