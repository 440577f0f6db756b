//! What is not an aggregate: sealing and unsealing personal data around the case commands,
//! erasure's second write (destroying the data key), the dead-letter handler, and reading
//! cases (one case from its stream, pages from the case list read model). Every command
//! goes through the kit's executor.

mod contacts;
mod customers;
mod routing;

pub use contacts::Contacts;
pub use customers::{Changed, CustomerChange, Customers, NewCustomer, NewStakeholder};
pub use routing::Routing;

use std::sync::Arc;

use svcops_bus::consumer::{DeadLetter, DeadLetterHandler, HandlerError};
use svcops_eventstore::projection::ReadModel;
use svcops_eventstore::{EventStore, KeyState, PersonalDataKeys};
use svcops_kit::aggregate::{ExecuteError, Executor, Idempotency};
use svcops_kit::events::CommandContext;
use svcops_kit::{ApiError, personal_data};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::case::{
    Case, CaseCommand, CaseDetails, CaseError, CaseView, Category, CustomerPhone, Flag, PhoneNumber,
};
use crate::case_list::CaseFilter;
use crate::customer::{Customer, CustomerCommand, CustomerError};

/// How long a list waits for the case list to apply what was written before it was asked
/// (read your writes), before answering UNAVAILABLE.
const READ_YOUR_WRITES: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Case(#[from] ExecuteError<CaseError>),
    #[error(transparent)]
    Customer(#[from] ExecuteError<crate::customer::CustomerError>),
    #[error(transparent)]
    Contact(#[from] ExecuteError<crate::contact::ContactError>),
    #[error("case {0} not found")]
    NotFound(Uuid),
    #[error("contact {0} not found")]
    ContactNotFound(Uuid),
    #[error("customer {0} not found")]
    CustomerNotFound(Uuid),
    #[error("no customer has this {0}")]
    NoCustomerFor(&'static str),
    #[error("customer {0} is merged in a chain too long or circular to follow")]
    MergeChain(Uuid),
    #[error("no queue takes {0}: define one, or name the queue")]
    NoQueue(String),
    #[error("no available agent fits {0} with room for it: name the agent, or free one up")]
    NoAgent(String),
    #[error("{agent} is at capacity ({capacity} open cases)")]
    AtCapacity { agent: String, capacity: u32 },
    #[error(transparent)]
    Agent(#[from] ExecuteError<crate::agent::AgentError>),
    /// Of an aggregate that never refuses (a queue, a case's progress).
    #[error(transparent)]
    Record(#[from] ExecuteError<svcops_kit::aggregate::NeverRefused>),
    #[error("this {kind} is on file for customer {customer_id}: merge them, or use that customer")]
    IdentityTaken {
        kind: &'static str,
        customer_id: Uuid,
    },
    #[error(transparent)]
    Store(#[from] svcops_eventstore::Error),
    #[error("personal data: {0}")]
    Sealing(String),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Case(error) => error.into(),
            Error::Customer(error) => error.into(),
            Error::Contact(error) => error.into(),
            Error::NotFound(case_id) => ApiError::NotFound {
                resource: "case",
                id: case_id.to_string(),
            },
            Error::ContactNotFound(contact_id) => ApiError::NotFound {
                resource: "contact",
                id: contact_id.to_string(),
            },
            Error::CustomerNotFound(customer_id) => ApiError::NotFound {
                resource: "customer",
                id: customer_id.to_string(),
            },
            Error::NoCustomerFor(kind) => ApiError::NotFound {
                resource: "customer with this",
                id: kind.to_owned(),
            },
            error @ Error::IdentityTaken { .. } => ApiError::AlreadyExists(error.to_string()),
            error @ (Error::MergeChain(_)
            | Error::NoQueue(_)
            | Error::NoAgent(_)
            | Error::AtCapacity { .. }) => ApiError::FailedPrecondition(error.to_string()),
            Error::Agent(error) => error.into(),
            Error::Record(error) => error.into(),
            Error::Store(error) => error.into(),
            Error::Sealing(error) => ApiError::Internal(error),
        }
    }
}

impl From<crate::customer::CustomerError> for Error {
    fn from(error: crate::customer::CustomerError) -> Self {
        Error::Customer(ExecuteError::Domain(error))
    }
}

/// Handles case commands and queries.
pub struct Cases {
    cases: Executor<Case>,
    customers: Executor<Customer>,
    progress: Executor<crate::progress::Progress>,
    keys: Arc<dyn PersonalDataKeys>,
    list: ReadModel,
}

impl Cases {
    pub fn new(
        store: Arc<dyn EventStore>,
        keys: Arc<dyn PersonalDataKeys>,
        relay: Arc<Notify>,
        list: ReadModel,
    ) -> Self {
        Self {
            cases: Executor::new(store.clone(), relay.clone()),
            customers: Executor::new(store.clone(), relay.clone()),
            progress: Executor::new(store, relay),
            keys,
            list,
        }
    }

    /// Seals a known phone with its customer's data key. A phone svcops has never seen
    /// makes a new customer (find-or-create on intake): a consumer known by that phone.
    /// Also says whether this call registered that consumer.
    async fn seal(
        &self,
        context: &CommandContext,
        phone: CustomerPhone,
    ) -> Result<(CustomerPhone, bool), Error> {
        let CustomerPhone::Known(phone) = phone else {
            return Ok((phone, false));
        };
        let svcops_eventstore::SubjectKey {
            key_id,
            key,
            created,
        } = self
            .keys
            .key_for_subject(phone.as_str(), &personal_data::new_key())
            .await?;
        let sealed = personal_data::seal(&key, phone.as_str())
            .map_err(|error| Error::Sealing(error.to_string()))?;
        if created {
            let profile = crate::customer::Profile {
                segment: crate::customer::Segment::Consumer,
                name: None,
                phones: vec![crate::customer::Sealed(sealed.clone())],
                emails: Vec::new(),
                account_number: None,
                address: None,
                tags: Default::default(),
                consent: crate::customer::RecordingConsent::Unknown,
            };
            // The same key as `Customers::identify` registers under: whichever comes first.
            let registered = self
                .customers
                .execute(
                    key_id,
                    None,
                    context,
                    CustomerCommand::Register {
                        customer_id: key_id,
                        profile,
                    },
                    Idempotency::key(format!("front-office/register-customer/{key_id}")),
                )
                .await;
            match registered {
                // Registered by this call: a consumer. Else someone (`IdentifyCustomer`)
                // registered the key first, perhaps as an account: look it up.
                Ok(executed) if executed.appended => {
                    return Ok((CustomerPhone::Sealed { key_id, sealed }, true));
                }
                Ok(_) | Err(ExecuteError::Domain(CustomerError::AlreadyRegistered(_))) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok((CustomerPhone::Sealed { key_id, sealed }, false))
    }

    /// A registered customer by id, following merges to the survivor (a seen set stops a
    /// cycle); `None` for an id that names no registered customer.
    async fn survivor(&self, customer_id: Uuid) -> Result<Option<Customer>, Error> {
        let mut id = customer_id;
        let mut seen = std::collections::HashSet::new();
        while seen.insert(id) && seen.len() <= customers::MAX_MERGE_HOPS {
            let (customer, _) = self.customers.load(id).await?;
            match customer.merged_into {
                Some(next) => id = next,
                None if customer.customer_id.is_some() => return Ok(Some(customer)),
                None => return Ok(None),
            }
        }
        Err(Error::MergeChain(customer_id))
    }

    /// Which of a customer's fields svcops has on file (none once erased).
    pub async fn fields_on_file(
        &self,
        customer_id: Uuid,
    ) -> Result<Vec<crate::contact::CustomerField>, Error> {
        use crate::contact::CustomerField;
        let Some(customer) = self.survivor(customer_id).await? else {
            return Ok(Vec::new());
        };
        let Some(profile) = customer.profile.filter(|_| !customer.erased) else {
            return Ok(Vec::new());
        };
        let held = [
            (CustomerField::Phone, !profile.phones.is_empty()),
            (CustomerField::Name, profile.name.is_some()),
            (CustomerField::Email, !profile.emails.is_empty()),
            (CustomerField::Address, profile.address.is_some()),
            (
                CustomerField::AccountNumber,
                profile.account_number.is_some(),
            ),
        ];
        Ok(held
            .into_iter()
            .filter_map(|(field, held)| held.then_some(field))
            .collect())
    }

    /// A customer and every duplicate merged into them, survivor first: up to the
    /// survivor, then down every duplicate merged into the one that absorbed it, or not yet
    /// into anyone (a merge half done). A stale absorption (the duplicate went to another
    /// survivor in a race) is not followed: that is someone else.
    pub async fn family(&self, customer_id: Uuid) -> Result<Vec<Uuid>, Error> {
        let mut survivor = customer_id;
        let mut seen = std::collections::HashSet::new();
        while seen.insert(survivor) && seen.len() <= customers::MAX_MERGE_HOPS {
            match self.customers.load(survivor).await?.0.merged_into {
                Some(next) => survivor = next,
                None => break,
            }
        }
        let mut pending = vec![(survivor, None)];
        let mut family = Vec::new();
        while let Some((id, absorbed_by)) = pending.pop() {
            if family.contains(&id) {
                continue;
            }
            let (customer, _) = self.customers.load(id).await?;
            if let Some(absorbed_by) = absorbed_by
                && customer.merged_into.is_some_and(|into| into != absorbed_by)
            {
                continue;
            }
            pending.extend(customer.merged_ids.iter().map(|merged| (*merged, Some(id))));
            family.push(id);
        }
        Ok(family)
    }

    /// Opens a sealed phone with its key's state, or says it was erased.
    fn open_with(phone: CustomerPhone, key: &KeyState) -> Result<CustomerPhone, Error> {
        let CustomerPhone::Sealed { sealed, .. } = phone else {
            return Ok(phone);
        };
        match key {
            KeyState::Active(key) => {
                let text = personal_data::open(key, &sealed)
                    .map_err(|error| Error::Sealing(error.to_string()))?;
                let phone = PhoneNumber::parse("customer_phone", &text)
                    .map_err(|error| Error::Sealing(error.to_string()))?;
                Ok(CustomerPhone::Known(phone))
            }
            KeyState::Erased | KeyState::Unknown => Ok(CustomerPhone::Erased),
        }
    }

    async fn unseal_view(&self, view: CaseView) -> Result<CaseView, Error> {
        let mut views = self.unseal_views(vec![view]).await?;
        Ok(views.remove(0))
    }

    /// Opens the phones of many cases with one lookup of their keys.
    async fn unseal_views(&self, mut views: Vec<CaseView>) -> Result<Vec<CaseView>, Error> {
        let key_ids: Vec<Uuid> = views
            .iter()
            .filter_map(|view| match &view.details.customer_phone {
                CustomerPhone::Sealed { key_id, .. } => Some(*key_id),
                CustomerPhone::Known(_) | CustomerPhone::Erased => None,
            })
            .collect();
        if key_ids.is_empty() {
            return Ok(views);
        }
        let keys = self.keys.keys(&key_ids).await?;
        for view in &mut views {
            let phone = std::mem::replace(&mut view.details.customer_phone, CustomerPhone::Erased);
            let key = match &phone {
                CustomerPhone::Sealed { key_id, .. } => {
                    keys.get(key_id).unwrap_or(&KeyState::Unknown)
                }
                CustomerPhone::Known(_) | CustomerPhone::Erased => &KeyState::Unknown,
            };
            view.details.customer_phone = Self::open_with(phone, key)?;
        }
        Ok(views)
    }

    /// Erases a customer's personal data: records that it happens (without the data), then
    /// destroys their data key. Returns false when there was nothing to erase.
    ///
    /// Two writes to two tables, so the order makes a failure between them safe: the record
    /// is appended under an idempotency key of the data key, so a retry finds the key still
    /// there, appends nothing new and finishes destroying it; without a retry, the next
    /// start does ([`Cases::finish_erasures`]). Destroying first would leave no way to find
    /// the key again, and no record.
    pub async fn erase_customer(
        &self,
        context: &CommandContext,
        phone: &PhoneNumber,
    ) -> Result<bool, Error> {
        let Some(key_id) = self.keys.subject_key_id(phone.as_str()).await? else {
            return Ok(false);
        };
        self.erase_customer_id(context, key_id).await
    }

    /// [`Cases::erase_customer`] by customer id. A merged customer is the same person as
    /// their survivor: the survivor is erased, and with them every customer merged into
    /// them. Returns false when svcops held nothing of the customer.
    pub async fn erase_customer_id(
        &self,
        context: &CommandContext,
        customer_id: Uuid,
    ) -> Result<bool, Error> {
        let mut erased = false;
        for key_id in self.family(customer_id).await? {
            let (_, version) = self.customers.load(key_id).await?;
            let known = version > 0 || self.keys.key(key_id).await? != KeyState::Unknown;
            if known {
                self.erase_key(context, key_id).await?;
                erased = true;
            }
        }
        Ok(erased)
    }

    /// Records one data key's erasure, then destroys the key.
    async fn erase_key(&self, context: &CommandContext, key_id: Uuid) -> Result<(), Error> {
        self.customers
            .execute(
                key_id,
                None,
                context,
                CustomerCommand::Erase { key_id },
                Idempotency::key(format!("front-office/erase-customer/{key_id}")),
            )
            .await?;
        if let Err(error) = self.keys.destroy_key(key_id).await {
            // The record says "erased": the key must not outlive it until someone retries or
            // the office restarts. Keep trying in the background (the caller hears the error
            // and may retry too; destroying twice is harmless).
            let keys = self.keys.clone();
            tokio::spawn(async move {
                let mut backoff = std::time::Duration::from_millis(200);
                loop {
                    tokio::time::sleep(backoff).await;
                    match keys.destroy_key(key_id).await {
                        Ok(_) => {
                            tracing::info!(%key_id, "erasure finished after a failed attempt");
                            return;
                        }
                        Err(error) => {
                            tracing::warn!(%key_id, %error, "erasure still unfinished; retrying");
                        }
                    }
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
                }
            });
            return Err(error.into());
        }
        Ok(())
    }

    /// Destroys the keys that erasure records name, for erasures that failed after their
    /// record and were never retried. Returns how many keys were still there.
    pub async fn finish_erasures(
        &self,
        key_ids: &[Uuid],
    ) -> Result<usize, svcops_eventstore::Error> {
        let mut finished = 0;
        for key_id in key_ids {
            if self.keys.destroy_key(*key_id).await? {
                finished += 1;
            }
        }
        Ok(finished)
    }

    /// Opens a case. With a request id, a retry returns the case the first call opened.
    pub async fn open(
        &self,
        context: &CommandContext,
        request_id: Option<&str>,
        details: CaseDetails,
    ) -> Result<CaseView, Error> {
        self.open_for(context, request_id, details, None).await
    }

    /// Opens a case for `customer` (a B2B account whose stakeholder calls: the phone is the
    /// caller's, sealed under that customer), or without one for the customer the phone
    /// names, made if svcops has never seen it. The case takes the customer's segment, and
    /// a project of theirs if `details` names one.
    pub async fn open_for(
        &self,
        context: &CommandContext,
        request_id: Option<&str>,
        mut details: CaseDetails,
        customer: Option<Uuid>,
    ) -> Result<CaseView, Error> {
        let case_id = Uuid::now_v7();
        let phone = details.customer_phone.clone();
        match customer {
            Some(customer_id) => {
                let survivor = self
                    .survivor(customer_id)
                    .await?
                    .ok_or(Error::CustomerNotFound(customer_id))?;
                let (Some(survivor_id), Some(profile)) =
                    (survivor.customer_id, survivor.profile.as_ref())
                else {
                    return Err(Error::CustomerNotFound(customer_id));
                };
                if let Some(project_id) = details.project_id
                    && survivor.project(project_id).is_none()
                {
                    return Err(CustomerError::UnknownProject(project_id).into());
                }
                let KeyState::Active(key) = self.keys.key(survivor_id).await? else {
                    return Err(CustomerError::Erased.into());
                };
                details.segment = Some(profile.segment);
                details.customer_phone = match &details.customer_phone {
                    CustomerPhone::Known(phone) => CustomerPhone::Sealed {
                        key_id: survivor_id,
                        sealed: personal_data::seal(&key, phone.as_str())
                            .map_err(|error| Error::Sealing(error.to_string()))?,
                    },
                    other => other.clone(),
                };
            }
            None => {
                let (sealed, created) = self.seal(context, details.customer_phone).await?;
                details.customer_phone = sealed;
                details.segment = match (&details.customer_phone, created) {
                    (_, true) => Some(crate::customer::Segment::Consumer),
                    (CustomerPhone::Sealed { key_id, .. }, false) => self
                        .survivor(*key_id)
                        .await?
                        .and_then(|customer| customer.profile.map(|profile| profile.segment)),
                    _ => None,
                };
            }
        }
        let sealed_with = match &details.customer_phone {
            CustomerPhone::Sealed { key_id, .. } => Some(*key_id),
            CustomerPhone::Known(_) | CustomerPhone::Erased => None,
        };
        let earlier_complaints = self.earlier_complaints(&details).await;
        let idempotency =
            Idempotency::of_caller(context, "front-office/open-case", request_id, || {
                details.request_hash()
            });
        let opened = self
            .cases
            .execute(
                case_id,
                Some(case_id),
                context,
                CaseCommand::Open {
                    case_id,
                    details,
                    earlier_complaints,
                },
                idempotency,
            )
            .await?;
        let mut view =
            CaseView::of(opened.state, opened.version).ok_or(Error::NotFound(case_id))?;
        // The caller gave the phone: no need to look its key up again to open it. (A retry
        // answers with the first call's case, sealed with the same customer's key, which
        // the request hash covers.)
        match &view.details.customer_phone {
            CustomerPhone::Sealed { key_id, .. } if Some(*key_id) == sealed_with => {
                view.details.customer_phone = phone;
                Ok(view)
            }
            _ => self.unseal_view(view).await,
        }
    }

    /// The customer's complaints within the repeated-complaints window, for the risk rule;
    /// 0 for a case that is no complaint. Read from the case list as it is (without waiting
    /// for it to catch up): a rule that sees a complaint a moment late is better than an
    /// intake that waits. A list that cannot answer counts none, and says so.
    async fn earlier_complaints(&self, details: &CaseDetails) -> u32 {
        let (Category::Complaint, CustomerPhone::Sealed { key_id, .. }) =
            (details.category, &details.customer_phone)
        else {
            return 0;
        };
        let since = time::OffsetDateTime::now_utc()
            - time::Duration::days(crate::case::REPEATED_COMPLAINTS_WINDOW_DAYS);
        let counted = match self.list.live().await {
            Ok((tables, _)) => {
                crate::case_list::complaints_since(&self.list, &tables, *key_id, since).await
            }
            Err(error) => Err(error),
        };
        counted.unwrap_or_else(|error| {
            tracing::warn!(%error, "the repeated-complaints rule could not count; counting none");
            0
        })
    }

    /// Moves a case along its lifecycle (triage, assign, wait, resume, resolve, close,
    /// reopen). With a request id, a retry returns the case as the first call left it.
    pub async fn change(
        &self,
        context: &CommandContext,
        case_id: Uuid,
        request_id: Option<&str>,
        command: CaseCommand,
    ) -> Result<CaseView, Error> {
        let idempotency =
            Idempotency::of_caller(context, "front-office/change-case", request_id, || {
                command.request_hash(case_id)
            });
        let changed = self
            .cases
            .execute(case_id, Some(case_id), context, command, idempotency)
            .await
            .map_err(|error| match error {
                ExecuteError::Domain(CaseError::NotOpened) => Error::NotFound(case_id),
                other => Error::Case(other),
            })?;
        let view = CaseView::of(changed.state, changed.version).ok_or(Error::NotFound(case_id))?;
        self.unseal_view(view).await
    }

    /// A lifecycle move whose command is worked out from the case (routing: the queue that
    /// takes it, the agent who gets it). `asked` is the request's hash as the caller asked
    /// it, so a retry answers with the first result even if routing would choose another
    /// way now.
    pub async fn change_worked_out(
        &self,
        context: &CommandContext,
        case_id: Uuid,
        request_id: Option<&str>,
        asked: Vec<u8>,
        work_out: impl AsyncFnOnce(&CaseView) -> Result<CaseCommand, Error>,
    ) -> Result<CaseView, Error> {
        let idempotency =
            Idempotency::of_caller(context, "front-office/change-case", request_id, || asked);
        if let Some(first) = self.cases.first_result(&idempotency).await? {
            let view = CaseView::of(first.state, first.version).ok_or(Error::NotFound(case_id))?;
            return self.unseal_view(view).await;
        }
        let (case, version) = self.cases.load(case_id).await?;
        let current = CaseView::of(case, version).ok_or(Error::NotFound(case_id))?;
        let command = work_out(&current).await?;
        let changed = self
            .cases
            .execute(case_id, Some(case_id), context, command, idempotency)
            .await
            .map_err(|error| match error {
                ExecuteError::Domain(CaseError::NotOpened) => Error::NotFound(case_id),
                other => Error::Case(other),
            })?;
        let view = CaseView::of(changed.state, changed.version).ok_or(Error::NotFound(case_id))?;
        self.unseal_view(view).await
    }

    /// A case with its field work's progress. With `phone` (self-service), only if the
    /// case was opened with that phone: anyone else's case reads as not found.
    pub async fn progress(
        &self,
        case_id: Uuid,
        phone: Option<&PhoneNumber>,
    ) -> Result<(CaseView, crate::progress::Progress), Error> {
        // The case and its progress are read side by side: two round trips' latency in one.
        let (case, progress) = tokio::join!(self.get(case_id), self.progress.load(case_id));
        let case = case?;
        if let Some(phone) = phone {
            let theirs = case
                .details
                .customer_phone
                .known()
                .is_some_and(|known| known == phone);
            if !theirs {
                return Err(Error::NotFound(case_id));
            }
        }
        let (progress, _) = progress?;
        Ok((case, progress))
    }

    pub async fn get(&self, case_id: Uuid) -> Result<CaseView, Error> {
        let (case, version) = self.cases.load(case_id).await?;
        let view = CaseView::of(case, version).ok_or(Error::NotFound(case_id))?;
        self.unseal_view(view).await
    }

    /// Flags the case of a dead-lettered event, once per dead letter. Dead letters of no
    /// case, or of a case this office does not know, are only logged.
    pub async fn flag_dead_letter(&self, dead_letter: &DeadLetter) -> Result<(), HandlerError> {
        let Some(case_id) = dead_letter.case_id else {
            tracing::warn!(key = %dead_letter.key(), error = %dead_letter.error, "dead letter without a case");
            return Ok(());
        };
        let detail = format!(
            "{} could not process {} ({} at {}/{}/{}): {}",
            dead_letter.group,
            dead_letter.event_type.as_deref().unwrap_or("a message"),
            dead_letter.event_id.as_deref().unwrap_or("no id"),
            dead_letter.origin_topic,
            dead_letter.origin_partition,
            dead_letter.origin_offset,
            dead_letter.error,
        );
        let context = CommandContext {
            actor: svcops_kit::Principal {
                subject: crate::SERVICE.to_owned(),
                role: svcops_kit::Role::Service,
            },
            correlation_id: Uuid::now_v7(),
            causation_id: dead_letter
                .event_id
                .as_deref()
                .and_then(|id| Uuid::parse_str(id).ok()),
        };
        let flagged = self
            .cases
            .execute(
                case_id,
                Some(case_id),
                &context,
                CaseCommand::Flag {
                    flag: Flag::ProcessingFailed,
                    detail: detail.clone(),
                },
                Idempotency::key(format!("front-office/dead-letter/{}", dead_letter.key())),
            )
            .await;
        match flagged {
            Ok(_) => {
                tracing::warn!(%case_id, %detail, "case flagged: processing failed");
                Ok(())
            }
            Err(ExecuteError::Domain(CaseError::NotOpened)) => {
                tracing::warn!(%case_id, "dead letter of an unknown case");
                Ok(())
            }
            Err(error) => Err(error.into_handler_error()),
        }
    }

    /// The cases `filter` and `customer` let through, newest first, `page_size` at a time,
    /// after the page token's position. A customer is found by their phone's data key, which
    /// is looked up, never created.
    pub async fn list(
        &self,
        mut filter: CaseFilter,
        customer: Option<&PhoneNumber>,
        page_size: usize,
        after: Option<i64>,
    ) -> Result<(Vec<CaseView>, Option<i64>), Error> {
        if let Some(phone) = customer {
            match self.keys.subject_key_id(phone.as_str()).await? {
                Some(key_id) => filter.customer_key_id = Some(key_id),
                None => return Ok((Vec::new(), None)),
            }
        }
        // A customer's cases are also those of every duplicate merged into them.
        let mut ids = Vec::new();
        for customer_id in std::mem::take(&mut filter.customer_ids) {
            ids.extend(self.family(customer_id).await?);
        }
        filter.customer_ids = ids;
        let tables = self.list.caught_up(READ_YOUR_WRITES).await?;
        let (views, next) =
            crate::case_list::page(&self.list, &tables, &filter, page_size, after).await?;
        Ok((self.unseal_views(views).await?, next))
    }
}

/// Flags the cases of dead-lettered events, from every office's dead-letter topic.
pub struct DeadLetters(pub Arc<Cases>);

#[async_trait::async_trait]
impl DeadLetterHandler for DeadLetters {
    async fn handle(&self, dead_letter: &DeadLetter) -> Result<(), HandlerError> {
        self.0.flag_dead_letter(dead_letter).await
    }
}
