//! Contacts over gRPC, as in a process of its own on a real store: a bot answers a chat and
//! hands the conversation to a person with the transcript so far; the customer's words flag
//! the case; the case comes back with its contacts; refusals, field violations, retries and
//! who may do what.

use svcops_kit::auth::Role;
use svcops_proto::common::v1 as types;
use svcops_proto::frontoffice::v1 as proto;
use svcops_proto::frontoffice::v1::contact_service_client::ContactServiceClient;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::common::{FrontOffice, fields};

async fn say(
    office: &FrontOffice,
    contacts: &mut ContactServiceClient<Channel>,
    role: Role,
    contact_id: &str,
    speaker: proto::Speaker,
    text: &str,
    at_ms: u32,
) -> Result<proto::Contact, tonic::Status> {
    let request = office.request(
        role,
        proto::AppendUtteranceRequest {
            request_id: format!("{contact_id}/{at_ms}"),
            contact_id: contact_id.into(),
            speaker: speaker.into(),
            text: text.into(),
            start_ms: at_ms,
            end_ms: at_ms + 1_500,
        },
    );
    Ok(contacts
        .append_utterance(request)
        .await?
        .into_inner()
        .contact
        .unwrap())
}

#[tokio::test]
async fn a_bot_hands_a_chat_to_a_person_and_the_customer_s_words_flag_the_case() {
    let mut office = FrontOffice::start().await;
    let mut contacts = office.served.contacts().await;
    let case = office
        .open(
            "+8613800005555",
            types::CaseCategory::Complaint,
            "hotel lobby lights failing",
        )
        .await;
    assert!(case.risk.is_none());

    let request = office.request(
        Role::Service,
        proto::StartContactRequest {
            request_id: "chat-81".into(),
            case_id: case.case_id.clone(),
            channel: proto::Channel::Chat.into(),
            with_bot: true,
        },
    );
    let started = contacts
        .start_contact(request)
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(started.state, proto::ContactState::WithBot as i32);
    assert_eq!(
        started.known_fields,
        [proto::CustomerField::Phone as i32],
        "the phone was on file: an agent need not ask for it"
    );
    let id = started.contact_id.clone();

    let bot = |text| (Role::Service, proto::Speaker::Bot, text);
    let customer = |text| (Role::Service, proto::Speaker::Customer, text);
    for (at, (role, speaker, text)) in [
        bot("您好，请问有什么可以帮您？"),
        customer("大堂的灯又坏了"),
        bot("请提供产品序列号"),
    ]
    .into_iter()
    .enumerate()
    {
        say(
            &office,
            &mut contacts,
            role,
            &id,
            speaker,
            text,
            at as u32 * 2_000,
        )
        .await
        .unwrap();
    }
    // The bot's turn: no agent speaks yet.
    let early = say(
        &office,
        &mut contacts,
        Role::Agent,
        &id,
        proto::Speaker::Agent,
        "hello",
        7_000,
    )
    .await
    .unwrap_err();
    assert_eq!(early.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        early.message(),
        "cannot let an agent speak in a contact that is with the bot"
    );

    let request = office.request(
        Role::Service,
        proto::HandOffContactRequest {
            request_id: "hand-off".into(),
            contact_id: id.clone(),
            queue: "complaints.b2b".into(),
            reason: "customer asks for a person".into(),
        },
    );
    let handed = contacts
        .hand_off_contact(request)
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(handed.state, proto::ContactState::WithPerson as i32);
    assert_eq!(handed.handed_off_to, "complaints.b2b");
    assert_eq!(
        handed.transcript.len(),
        3,
        "the transcript so far goes with it"
    );

    say(
        &office,
        &mut contacts,
        Role::Agent,
        &id,
        proto::Speaker::Agent,
        "您好，我是客服小王",
        8_000,
    )
    .await
    .unwrap();
    // Talking over the agent, and naming a medium: the case is flagged.
    let last = say(
        &office,
        &mut contacts,
        Role::Service,
        &id,
        proto::Speaker::Customer,
        "第三次了，再不修我就发微博",
        8_500,
    )
    .await
    .unwrap();
    assert_eq!(last.transcript.len(), 5);
    assert_eq!(
        last.transcript
            .iter()
            .map(|utterance| utterance.sequence)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    // A retry of the same utterance appends nothing.
    let again = say(
        &office,
        &mut contacts,
        Role::Service,
        &id,
        proto::Speaker::Customer,
        "第三次了，再不修我就发微博",
        8_500,
    )
    .await
    .unwrap();
    assert_eq!(again.version, last.version);

    let request = office.request(
        Role::Agent,
        proto::EndContactRequest {
            contact_id: id.clone(),
            ..Default::default()
        },
    );
    let ended = contacts
        .end_contact(request)
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(ended.state, proto::ContactState::Ended as i32);
    assert!(ended.ended_at.is_some());

    // The case with its contacts, as an executive reads it.
    let request = office.request(
        Role::Executive,
        proto::GetCaseRequest {
            case_id: case.case_id.clone(),
        },
    );
    let read = office.cases.get_case(request).await.unwrap().into_inner();
    let flagged = read.case.unwrap();
    let risk = flagged.risk.expect("flagged by the customer's words");
    assert_eq!(risk.trigger, proto::RiskTrigger::Keyword as i32);
    assert_eq!(risk.detail, "\"微博\" in the transcript");
    assert_eq!(flagged.priority, types::Priority::Urgent as i32);
    assert_eq!(read.contacts.len(), 1);
    let request = office.request(
        Role::Technician,
        proto::GetCaseRequest {
            case_id: case.case_id.clone(),
        },
    );
    let for_technician = office.cases.get_case(request).await.unwrap().into_inner();
    assert!(for_technician.case.is_some());
    assert!(
        for_technician.contacts.is_empty(),
        "a technician gets the case without its conversations"
    );
    let listed = &read.contacts[0];
    let request = office.request(
        Role::Qa,
        proto::GetContactRequest {
            contact_id: id.clone(),
        },
    );
    let from_stream = contacts
        .get_contact(request)
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(listed, &from_stream, "the case's contact is the contact");
    assert_eq!(listed.transcript[4].start_ms, 8_500);
    assert_eq!(
        listed.transcript[3].end_ms, 9_500,
        "offsets kept: the customer started before the agent had finished"
    );

    office.served.stop().await;
}

#[tokio::test]
async fn contact_requests_are_validated_and_authorised() {
    let mut office = FrontOffice::start().await;
    let mut contacts = office.served.contacts().await;
    let case = office
        .open(
            "+8613800006666",
            types::CaseCategory::Repair,
            "lamp flickers",
        )
        .await;

    let request = office.request(
        Role::Service,
        proto::StartContactRequest {
            case_id: "nope".into(),
            channel: 0,
            ..Default::default()
        },
    );
    let invalid = contacts.start_contact(request).await.unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert_eq!(fields(&invalid), ["case_id", "channel"]);

    let request = office.request(
        Role::Service,
        proto::StartContactRequest {
            case_id: Uuid::now_v7().to_string(),
            channel: proto::Channel::Hotline.into(),
            ..Default::default()
        },
    );
    let missing = contacts.start_contact(request).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let request = office.request(
        Role::Service,
        proto::AppendUtteranceRequest {
            contact_id: "x".into(),
            speaker: 9,
            text: "\u{7}".into(),
            start_ms: 10,
            end_ms: 5,
            ..Default::default()
        },
    );
    let invalid = contacts.append_utterance(request).await.unwrap_err();
    assert_eq!(
        fields(&invalid),
        ["contact_id", "speaker", "text", "end_ms"]
    );

    let request = office.request(
        Role::Service,
        proto::AppendUtteranceRequest {
            contact_id: Uuid::now_v7().to_string(),
            speaker: proto::Speaker::Customer.into(),
            text: "hello".into(),
            ..Default::default()
        },
    );
    let missing = contacts.append_utterance(request).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // Executives, managers, QA and technicians listen and read; they do not converse.
    let request = office.request(
        Role::Agent,
        proto::StartContactRequest {
            case_id: case.case_id.clone(),
            channel: proto::Channel::Hotline.into(),
            ..Default::default()
        },
    );
    let contact = contacts
        .start_contact(request)
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    for role in [Role::Executive, Role::Manager, Role::Qa, Role::Technician] {
        let denied = say(
            &office,
            &mut contacts,
            role,
            &contact.contact_id,
            proto::Speaker::Agent,
            "x",
            0,
        )
        .await
        .unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{role}");
    }
    let request = office.request(
        Role::Technician,
        proto::GetContactRequest {
            contact_id: contact.contact_id.clone(),
        },
    );
    let denied = contacts.get_contact(request).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // A person answered from the start: there is nothing to hand off.
    let request = office.request(
        Role::Agent,
        proto::HandOffContactRequest {
            contact_id: contact.contact_id.clone(),
            queue: "repair".into(),
            reason: "x".into(),
            ..Default::default()
        },
    );
    let refused = contacts.hand_off_contact(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        "cannot hand off a contact that is with a person"
    );

    office.served.stop().await;
}
