//! Given/when/then on the listen session.

use svcops_kit::aggregate::DomainEvent;
use svcops_kit::aggregate::testkit::given;
use uuid::Uuid;

use super::*;

fn started() -> Started {
    Started {
        session_id: Uuid::now_v7(),
        case_id: Uuid::now_v7(),
        mode: Mode::Observe,
        served_by: "host/1/abcd".into(),
    }
}

fn ended(started: &Started, reason: &str) -> Ended {
    Ended {
        session_id: started.session_id,
        case_id: started.case_id,
        reason: reason.to_owned(),
    }
}

#[test]
fn given_nothing_when_start_then_started() {
    let started = started();
    given::<ListenSession>([])
        .when(Command::Start(started.clone()))
        .then_expect_events(vec![Event::Started(started)]);
}

#[test]
fn given_started_when_end_then_ended_once() {
    let started = started();
    let ended = ended(&started, "listener left");
    given::<ListenSession>([Event::Started(started)])
        .when(Command::End(ended.clone()))
        .then_expect_events(vec![Event::Ended(ended)]);
}

#[test]
fn given_ended_when_end_again_then_nothing_is_recorded() {
    let started = started();
    given::<ListenSession>([
        Event::Started(started.clone()),
        Event::Ended(ended(&started, "listener left")),
    ])
    .when(Command::End(ended(&started, "listen-in restarted")))
    .then_expect_events(vec![]);
}

#[test]
fn given_started_when_start_again_then_rejected() {
    let started = started();
    given::<ListenSession>([Event::Started(started.clone())])
        .when(Command::Start(started.clone()))
        .then_expect_error(Error::AlreadyStarted(started.session_id));
}

#[test]
fn given_nothing_when_end_then_rejected() {
    let started = started();
    given::<ListenSession>([])
        .when(Command::End(ended(&started, "caught up")))
        .then_expect_error(Error::NotStarted(started.session_id));
}

#[test]
fn events_round_trip_through_protobuf() {
    let started = started();
    for event in [
        Event::Started(started.clone()),
        Event::Ended(ended(&started, "caught up")),
    ] {
        let (event_type, payload) = event.encode();
        assert_eq!(Event::decode(&event_type, &payload), Ok(Some(event)));
    }
}

#[test]
fn an_unknown_listen_mode_is_a_decode_error() {
    let (event_type, _) = Event::Started(started()).encode();
    let payload = svcops_proto::listenin::v1::ListenSessionStarted {
        session_id: Uuid::now_v7().to_string(),
        case_id: Uuid::now_v7().to_string(),
        mode: 99,
        served_by: String::new(),
    };
    assert!(Event::decode(&event_type, &prost::Message::encode_to_vec(&payload)).is_err());
}
