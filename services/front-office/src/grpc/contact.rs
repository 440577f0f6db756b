//! The contact edge: conversations and their transcripts.

use std::sync::Arc;

use svcops_bus::lag::Backpressure;
use svcops_kit::Principal;
use svcops_kit::auth::{Role, authorize};
use svcops_kit::error::FieldViolation;
use svcops_kit::events::{CommandContext, to_timestamp};
use svcops_proto::frontoffice::v1 as proto;
use svcops_proto::frontoffice::v1::contact_service_server::ContactService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{collect, invalid, parse_request_id, status};
use crate::app::Contacts;
use crate::case::{self, QueueName};
use crate::contact::{Answering, ContactCommand, ContactError, ContactView, Speaker, Utterance};

/// Who holds conversations: telephony, chat platforms and the bot (service), and agents.
const CONVERSERS: &[Role] = &[Role::Service, Role::Agent];
/// Who reads them.
pub(crate) const READERS: &[Role] = &[
    Role::Service,
    Role::Agent,
    Role::Manager,
    Role::Qa,
    Role::Executive,
];

pub struct ContactGrpc {
    contacts: Arc<Contacts>,
    /// New contacts wait while the pipeline lags past its bound, like new cases.
    backpressure: Backpressure,
}

impl ContactGrpc {
    pub fn new(contacts: Arc<Contacts>, backpressure: Backpressure) -> Self {
        Self {
            contacts,
            backpressure,
        }
    }

    async fn change(
        &self,
        principal: Principal,
        contact_id: Uuid,
        request_id: Option<String>,
        command: ContactCommand,
    ) -> Result<Option<proto::Contact>, Status> {
        let context = CommandContext::from_caller(principal);
        let view = self
            .contacts
            .change(&context, contact_id, request_id.as_deref(), command)
            .await
            .map_err(status)?;
        Ok(Some(to_proto(view)))
    }
}

pub(crate) fn to_proto(view: ContactView) -> proto::Contact {
    let contact = view.contact;
    let (handed_off_to, hand_off_reason) = contact
        .hand_off
        .map(|(queue, reason)| (queue.as_str().to_owned(), reason))
        .unwrap_or_default();
    proto::Contact {
        contact_id: contact.contact_id.to_string(),
        case_id: contact.case_id.to_string(),
        channel: proto::Channel::from(contact.channel).into(),
        state: match contact.answering {
            Answering::Bot => proto::ContactState::WithBot,
            Answering::Person => proto::ContactState::WithPerson,
            Answering::Ended => proto::ContactState::Ended,
        }
        .into(),
        known_fields: contact
            .known_fields
            .into_iter()
            .map(|field| proto::CustomerField::from(field).into())
            .collect(),
        handed_off_to,
        hand_off_reason,
        transcript: contact
            .transcript
            .into_iter()
            .map(|utterance| proto::Utterance {
                sequence: utterance.sequence,
                speaker: proto::Speaker::from(utterance.speaker).into(),
                text: utterance.text,
                start_ms: utterance.start_ms,
                end_ms: utterance.end_ms,
            })
            .collect(),
        started_at: Some(to_timestamp(contact.started_at)),
        ended_at: contact.ended_at.map(to_timestamp),
        version: view.version,
    }
}

fn parse_id(field: &'static str, raw: &str, violations: &mut Vec<FieldViolation>) -> Option<Uuid> {
    let id = Uuid::parse_str(raw.trim()).ok();
    if id.is_none() {
        violations.push(FieldViolation::new(field, "must be a UUID"));
    }
    id
}

fn contact_violations(errors: Vec<ContactError>, violations: &mut Vec<FieldViolation>) {
    violations.extend(errors.iter().filter_map(ContactError::field_violation));
}

#[tonic::async_trait]
impl ContactService for ContactGrpc {
    async fn start_contact(
        &self,
        request: Request<proto::StartContactRequest>,
    ) -> Result<Response<proto::StartContactResponse>, Status> {
        let principal = authorize(&request, CONVERSERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let request_id = parse_request_id(&body.request_id, &mut violations);
        let case_id = parse_id("case_id", &body.case_id, &mut violations);
        let channel = case::channel_from_proto(body.channel).flatten();
        if channel.is_none() {
            violations.push(FieldViolation::new(
                "channel",
                "must be one of hotline, chat, bot, app, messaging, email",
            ));
        }
        let (Some(case_id), Some(channel), true) = (case_id, channel, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        self.backpressure.check().map_err(status)?;
        let context = CommandContext::from_caller(principal.clone());
        let view = self
            .contacts
            .start(
                &context,
                request_id.as_deref(),
                case_id,
                channel,
                body.with_bot,
            )
            .await
            .map_err(status)?;
        tracing::info!(contact_id = %view.contact.contact_id, %case_id, actor = %principal.subject, "contact started");
        Ok(Response::new(proto::StartContactResponse {
            contact: Some(to_proto(view)),
        }))
    }

    async fn append_utterance(
        &self,
        request: Request<proto::AppendUtteranceRequest>,
    ) -> Result<Response<proto::AppendUtteranceResponse>, Status> {
        let principal = authorize(&request, CONVERSERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let request_id = parse_request_id(&body.request_id, &mut violations);
        let contact_id = parse_id("contact_id", &body.contact_id, &mut violations);
        let speaker = crate::contact::speaker_from_proto(body.speaker);
        if speaker.is_none() {
            violations.push(FieldViolation::new(
                "speaker",
                "must be SPEAKER_CUSTOMER, SPEAKER_AGENT or SPEAKER_BOT",
            ));
        }
        let utterance = Utterance::parse(
            speaker.unwrap_or(Speaker::Customer),
            &body.text,
            body.start_ms,
            body.end_ms,
        )
        .map_err(|errors| contact_violations(errors, &mut violations))
        .ok();
        let (Some(contact_id), Some(utterance), true) =
            (contact_id, utterance, violations.is_empty())
        else {
            return Err(invalid(violations));
        };
        // An agent speaks for themselves; telephony, chat platforms and the bot transcribe
        // every side.
        if principal.role == Role::Agent && utterance.speaker != Speaker::Agent {
            return Err(Status::permission_denied(
                "an agent appends only what agents say (speaker SPEAKER_AGENT)",
            ));
        }
        let contact = self
            .change(
                principal,
                contact_id,
                request_id,
                ContactCommand::Say(utterance),
            )
            .await?;
        Ok(Response::new(proto::AppendUtteranceResponse { contact }))
    }

    async fn hand_off_contact(
        &self,
        request: Request<proto::HandOffContactRequest>,
    ) -> Result<Response<proto::HandOffContactResponse>, Status> {
        let principal = authorize(&request, CONVERSERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let request_id = parse_request_id(&body.request_id, &mut violations);
        let contact_id = parse_id("contact_id", &body.contact_id, &mut violations);
        let queue = collect(QueueName::parse("queue", &body.queue), &mut violations);
        let reason = collect(case::note("reason", &body.reason), &mut violations);
        let (Some(contact_id), Some(queue), Some(reason), true) =
            (contact_id, queue, reason, violations.is_empty())
        else {
            return Err(invalid(violations));
        };
        let contact = self
            .change(
                principal,
                contact_id,
                request_id,
                ContactCommand::HandOff { queue, reason },
            )
            .await?;
        Ok(Response::new(proto::HandOffContactResponse { contact }))
    }

    async fn end_contact(
        &self,
        request: Request<proto::EndContactRequest>,
    ) -> Result<Response<proto::EndContactResponse>, Status> {
        let principal = authorize(&request, CONVERSERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let request_id = parse_request_id(&body.request_id, &mut violations);
        let contact_id = parse_id("contact_id", &body.contact_id, &mut violations);
        let (Some(contact_id), true) = (contact_id, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        let contact = self
            .change(principal, contact_id, request_id, ContactCommand::End)
            .await?;
        Ok(Response::new(proto::EndContactResponse { contact }))
    }

    async fn get_contact(
        &self,
        request: Request<proto::GetContactRequest>,
    ) -> Result<Response<proto::GetContactResponse>, Status> {
        authorize(&request, READERS)?;
        let mut violations = Vec::new();
        let Some(contact_id) =
            parse_id("contact_id", &request.get_ref().contact_id, &mut violations)
        else {
            return Err(invalid(violations));
        };
        let view = self.contacts.get(contact_id).await.map_err(status)?;
        Ok(Response::new(proto::GetContactResponse {
            contact: Some(to_proto(view)),
        }))
    }
}
