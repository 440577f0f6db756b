//! Given/when/then on the contact.

use svcops_kit::aggregate::DomainEvent;
use svcops_kit::aggregate::testkit::given;
use uuid::Uuid;

use super::*;

fn started(with_bot: bool) -> (Uuid, Uuid, ContactEvent) {
    let (contact_id, case_id) = (Uuid::now_v7(), Uuid::now_v7());
    let event = ContactEvent::Started {
        contact_id,
        case_id,
        channel: Channel::Chat,
        with_bot,
        known_fields: vec![CustomerField::Phone],
    };
    (contact_id, case_id, event)
}

fn say(speaker: Speaker, text: &str, start_ms: u32, end_ms: u32) -> ContactCommand {
    ContactCommand::Say(Utterance::parse(speaker, text, start_ms, end_ms).expect("valid"))
}

fn said(
    contact_id: Uuid,
    case_id: Uuid,
    sequence: u32,
    speaker: Speaker,
    text: &str,
) -> ContactEvent {
    ContactEvent::Said {
        contact_id,
        case_id,
        utterance: Utterance {
            sequence,
            speaker,
            text: text.into(),
            start_ms: 0,
            end_ms: 1000,
        },
    }
}

fn queue(name: &str) -> QueueName {
    QueueName::parse("queue", name).expect("valid")
}

#[test]
fn given_no_contact_when_started_then_its_known_fields_are_kept_once_each() {
    let (contact_id, case_id) = (Uuid::now_v7(), Uuid::now_v7());
    given::<Contact>([])
        .when(ContactCommand::Start {
            contact_id,
            case_id,
            channel: Channel::Hotline,
            with_bot: false,
            known_fields: vec![
                CustomerField::Email,
                CustomerField::Phone,
                CustomerField::Email,
            ],
        })
        .then_expect_events(vec![ContactEvent::Started {
            contact_id,
            case_id,
            channel: Channel::Hotline,
            with_bot: false,
            known_fields: vec![CustomerField::Phone, CustomerField::Email],
        }]);
}

#[test]
fn given_no_contact_when_something_is_said_then_not_started() {
    given::<Contact>([])
        .when(say(Speaker::Customer, "hello", 0, 10))
        .then_expect_error(ContactError::NotStarted);
}

#[test]
fn given_a_contact_when_utterances_are_appended_then_they_are_numbered_in_order() {
    let (contact_id, case_id, start) = started(false);
    given::<Contact>([start.clone()])
        .when(say(Speaker::Customer, "my lamp flickers", 0, 1000))
        .then_expect_events(vec![said(
            contact_id,
            case_id,
            1,
            Speaker::Customer,
            "my lamp flickers",
        )]);
    let history = [
        start,
        said(
            contact_id,
            case_id,
            1,
            Speaker::Customer,
            "my lamp flickers",
        ),
    ];
    // Overlapping offsets are kept as they are: talking over each other is what QA looks for.
    let events = given::<Contact>(history)
        .when(say(Speaker::Agent, "which model?", 500, 1500))
        .events();
    assert_eq!(
        events,
        vec![ContactEvent::Said {
            contact_id,
            case_id,
            utterance: Utterance {
                sequence: 2,
                speaker: Speaker::Agent,
                text: "which model?".into(),
                start_ms: 500,
                end_ms: 1500,
            }
        }]
    );
}

#[test]
fn given_a_bot_contact_when_handed_off_then_a_person_answers_and_the_bot_is_done() {
    let (contact_id, case_id, start) = started(true);
    let history = vec![
        start,
        said(contact_id, case_id, 1, Speaker::Bot, "how can I help?"),
    ];
    given::<Contact>(history.clone())
        .when(say(Speaker::Agent, "hello", 0, 10))
        .then_expect_error(ContactError::NotAllowed {
            action: "let an agent speak in",
            state: "with the bot",
        });
    let handed_off = ContactEvent::HandedOff {
        contact_id,
        case_id,
        queue: queue("repair"),
        reason: "asks for a person".into(),
        utterances: 1,
    };
    given::<Contact>(history.clone())
        .when(ContactCommand::HandOff {
            queue: queue("repair"),
            reason: "asks for a person".into(),
        })
        .then_expect_events(vec![handed_off.clone()]);
    let mut after = history;
    after.push(handed_off);
    let state = given::<Contact>(after.clone())
        .state
        .started
        .expect("started");
    assert_eq!(state.answering, Answering::Person);
    assert_eq!(
        state.hand_off,
        Some((queue("repair"), "asks for a person".to_owned()))
    );
    given::<Contact>(after.clone())
        .when(say(Speaker::Bot, "still here", 0, 10))
        .then_expect_error(ContactError::NotAllowed {
            action: "let the bot speak in",
            state: "with a person",
        });
    given::<Contact>(after)
        .when(ContactCommand::HandOff {
            queue: queue("repair"),
            reason: "again".into(),
        })
        .then_expect_error(ContactError::NotAllowed {
            action: "hand off",
            state: "with a person",
        });
}

#[test]
fn given_an_ended_contact_when_more_is_said_then_refused_and_ending_again_changes_nothing() {
    let (contact_id, case_id, start) = started(false);
    let history = [
        start,
        ContactEvent::Ended {
            contact_id,
            case_id,
        },
    ];
    given::<Contact>(history.clone())
        .when(say(Speaker::Customer, "one more thing", 0, 10))
        .then_expect_error(ContactError::NotAllowed {
            action: "add to",
            state: "ended",
        });
    given::<Contact>(history)
        .when(ContactCommand::End)
        .then_expect_events(vec![]);
}

#[test]
fn utterances_are_checked_field_by_field() {
    let errors = Utterance::parse(Speaker::Customer, "  ", 10, 5).expect_err("invalid");
    let fields: Vec<_> = errors
        .iter()
        .filter_map(ContactError::field_violation)
        .map(|violation| violation.field)
        .collect();
    assert_eq!(fields, ["text", "end_ms"]);
    assert!(Utterance::parse(Speaker::Customer, "bell\u{7}", 0, 1).is_err());
    assert!(Utterance::parse(Speaker::Customer, &"字".repeat(4001), 0, 1).is_err());
    assert!(Utterance::parse(Speaker::Customer, "ok", 0, MAX_OFFSET_MS + 1).is_err());
    assert!(Utterance::parse(Speaker::Customer, &"字".repeat(4000), 0, MAX_OFFSET_MS).is_ok());
}

#[test]
fn contact_events_round_trip() {
    let (contact_id, case_id, start) = started(true);
    for event in [
        start,
        said(contact_id, case_id, 1, Speaker::Bot, "您好"),
        ContactEvent::HandedOff {
            contact_id,
            case_id,
            queue: queue("complaints.vip"),
            reason: "angry".into(),
            utterances: 1,
        },
        ContactEvent::Ended {
            contact_id,
            case_id,
        },
    ] {
        let (event_type, payload) = event.encode();
        assert_eq!(ContactEvent::decode(&event_type, &payload), Ok(Some(event)));
    }
}
