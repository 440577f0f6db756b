//! Contacts around the aggregate: a contact starts only on a case that exists and records
//! which customer fields were on file; a customer's words that name a medium flag the case.

use std::sync::Arc;

use svcops_eventstore::projection::ReadModel;
use svcops_kit::aggregate::{ExecuteError, Executor, Idempotency};
use svcops_kit::events::CommandContext;
use uuid::Uuid;

use super::{Cases, Error, READ_YOUR_WRITES};
use crate::case::{self, CaseCommand, CaseError, Channel, CustomerPhone};
use crate::contact::{Contact, ContactCommand, ContactError, ContactView, CustomerField, Speaker};

pub struct Contacts {
    contacts: Executor<Contact>,
    cases: Arc<Cases>,
    list: ReadModel,
}

impl Contacts {
    pub fn new(
        store: Arc<dyn svcops_eventstore::EventStore>,
        relay: Arc<tokio::sync::Notify>,
        cases: Arc<Cases>,
        list: ReadModel,
    ) -> Self {
        Self {
            contacts: Executor::new(store, relay),
            cases,
            list,
        }
    }

    /// Starts a contact on `case_id`, noting which customer fields the case has on file.
    pub async fn start(
        &self,
        context: &CommandContext,
        request_id: Option<&str>,
        case_id: Uuid,
        channel: Channel,
        with_bot: bool,
    ) -> Result<ContactView, Error> {
        let case = self.cases.get(case_id).await?;
        let mut known_fields = Vec::new();
        if matches!(case.details.customer_phone, CustomerPhone::Known(_)) {
            known_fields.push(CustomerField::Phone);
            // The rest of what the customer's record holds (an erased one holds nothing).
            if let Some(customer_id) = case.customer_id {
                for field in self.cases.fields_on_file(customer_id).await? {
                    if !known_fields.contains(&field) {
                        known_fields.push(field);
                    }
                }
            }
        }
        let contact_id = Uuid::now_v7();
        let command = ContactCommand::Start {
            contact_id,
            case_id,
            channel,
            with_bot,
            known_fields,
        };
        let idempotency =
            Idempotency::of_caller(context, "front-office/start-contact", request_id, || {
                // The contact id is new on every call: the hash is of what was asked.
                command.request_hash(Uuid::nil())
            });
        let started = self
            .contacts
            .execute(contact_id, Some(case_id), context, command, idempotency)
            .await?;
        ContactView::of(started.state, started.version).ok_or(Error::ContactNotFound(contact_id))
    }

    /// Says something, hands off or ends. A customer's words naming a medium or a regulator
    /// flag the case (once; a closed case is left as it is).
    pub async fn change(
        &self,
        context: &CommandContext,
        contact_id: Uuid,
        request_id: Option<&str>,
        command: ContactCommand,
    ) -> Result<ContactView, Error> {
        let customer_words = match &command {
            ContactCommand::Say(utterance) if utterance.speaker == Speaker::Customer => {
                Some(utterance.text.clone())
            }
            _ => None,
        };
        let idempotency =
            Idempotency::of_caller(context, "front-office/change-contact", request_id, || {
                command.request_hash(contact_id)
            });
        let changed = self
            .contacts
            .execute_on_case(
                contact_id,
                |contact| contact.started.as_ref().map(|started| started.case_id),
                context,
                command,
                idempotency,
            )
            .await
            .map_err(|error| match error {
                ExecuteError::Domain(ContactError::NotStarted) => {
                    Error::ContactNotFound(contact_id)
                }
                other => Error::Contact(other),
            })?;
        let view = ContactView::of(changed.state, changed.version)
            .ok_or(Error::ContactNotFound(contact_id))?;
        if let Some(words) = customer_words
            && let Some(risk) = case::keyword_risk(&words, "the transcript")
            && let Some(said) = view.contact.transcript.last()
        {
            // After the utterance, under a key of the utterance (a retry answers with the
            // state its first attempt left, whose last utterance is this one): a retry
            // finishes a flag that failed, and nothing is flagged twice. The utterance is
            // recorded whatever happens to the flag: a failed flag is retried in the
            // background rather than failing a call whose words were kept.
            let key = format!(
                "front-office/transcript-risk/{contact_id}/{}",
                said.sequence
            );
            let case_id = view.contact.case_id;
            if let Err(error) = self
                .cases
                .raise_risk(context, case_id, risk.clone(), key.clone())
                .await
            {
                tracing::warn!(%case_id, %error, "flagging the case for the transcript failed; retrying");
                let (cases, context) = (self.cases.clone(), context.clone());
                tokio::spawn(async move {
                    let mut backoff = std::time::Duration::from_millis(200);
                    for _ in 0..8 {
                        tokio::time::sleep(backoff).await;
                        match cases
                            .raise_risk(&context, case_id, risk.clone(), key.clone())
                            .await
                        {
                            Ok(()) => return,
                            Err(error) => tracing::warn!(%case_id, %error, "flag still failing"),
                        }
                        backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
                    }
                    tracing::error!(%case_id, "gave up flagging the case for its transcript");
                });
            }
        }
        Ok(view)
    }

    /// One contact, from its stream.
    pub async fn get(&self, contact_id: Uuid) -> Result<ContactView, Error> {
        let (contact, version) = self.contacts.load(contact_id).await?;
        ContactView::of(contact, version).ok_or(Error::ContactNotFound(contact_id))
    }

    /// The case's contacts with their transcripts, oldest first (reads its own writes).
    pub async fn of_case(&self, case_id: Uuid) -> Result<Vec<ContactView>, Error> {
        let tables = self.list.caught_up(READ_YOUR_WRITES).await?;
        Ok(crate::contact_list::of_case(&self.list, &tables, case_id).await?)
    }
}

impl Cases {
    /// Raises a case's public-opinion risk for a rule outside the case, once per `key`; a
    /// closed case is left as it is.
    pub async fn raise_risk(
        &self,
        context: &CommandContext,
        case_id: Uuid,
        risk: case::Risk,
        key: String,
    ) -> Result<(), Error> {
        match self
            .cases
            .execute(
                case_id,
                Some(case_id),
                context,
                CaseCommand::RaiseRisk(risk),
                Idempotency::key(key),
            )
            .await
        {
            Ok(_) | Err(ExecuteError::Domain(CaseError::NotAllowed { .. })) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}
