//! Customers: who they are is found through the key store (a phone, email or account number
//! names one data key, and a customer's id is their key's id), what they are is their
//! stream. Personal fields are sealed with the customer's key here, before any command.

use std::collections::BTreeSet;
use std::sync::Arc;

use svcops_eventstore::projection::ReadModel;
use svcops_eventstore::{EventStore, KeyState, PersonalDataKeys, SubjectClaim};
use svcops_kit::aggregate::{Aggregate, ExecuteError, Executed, Executor, Idempotency};
use svcops_kit::events::CommandContext;
use svcops_kit::personal_data;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Error, READ_YOUR_WRITES};
use crate::case::PhoneNumber;
use crate::customer::{
    AccountNumber, ContactPoint, Customer, CustomerCommand, CustomerError, CustomerView,
    EmailAddress, Identity, Personal, Profile, RecordingConsent, Sealed, Segment, Stakeholder,
    StakeholderRole, Tag,
};
use crate::customer_list::{CustomerFilter, ListedCustomer};

/// How many merges are followed from an id to its survivor before it is called a fault: a
/// survivor merged away later makes a chain, but never one this long in practice.
pub(crate) const MAX_MERGE_HOPS: usize = 64;

/// A customer to register, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomer {
    pub segment: Segment,
    pub name: Option<String>,
    pub phones: Vec<PhoneNumber>,
    pub emails: Vec<EmailAddress>,
    pub account_number: Option<AccountNumber>,
    pub address: Option<String>,
    pub tags: BTreeSet<Tag>,
    pub consent: RecordingConsent,
}

impl NewCustomer {
    fn identities(&self) -> Vec<Identity> {
        let mut identities: Vec<Identity> =
            self.phones.iter().cloned().map(Identity::Phone).collect();
        identities.extend(self.emails.iter().cloned().map(Identity::Email));
        identities.extend(self.account_number.clone().map(Identity::Account));
        let mut seen = std::collections::HashSet::new();
        identities.retain(|identity| seen.insert(identity.subject()));
        identities
    }
}

/// A stakeholder to add, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStakeholder {
    pub role: StakeholderRole,
    pub name: String,
    pub phone: Option<PhoneNumber>,
    pub email: Option<EmailAddress>,
}

/// A change to a registered customer, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerChange {
    /// A phone or an email.
    AddContact(Identity),
    Details {
        name: Option<String>,
        address: Option<String>,
    },
    Tag(Tag),
    Untag(Tag),
    Consent(RecordingConsent),
    AddProject {
        name: String,
        site: String,
    },
    AddStakeholder {
        project_id: Uuid,
        stakeholder: NewStakeholder,
    },
}

/// A changed customer, and the id of what the change created (a project, a stakeholder).
pub struct Changed {
    pub customer: CustomerView,
    pub created: Option<Uuid>,
}

pub struct Customers {
    customers: Executor<Customer>,
    keys: Arc<dyn PersonalDataKeys>,
    list: ReadModel,
}

fn taken(identity: &Identity, holder: Uuid) -> Error {
    Error::IdentityTaken {
        kind: identity.kind(),
        customer_id: holder,
    }
}

impl Customers {
    pub fn new(
        store: Arc<dyn EventStore>,
        keys: Arc<dyn PersonalDataKeys>,
        relay: Arc<Notify>,
        list: ReadModel,
    ) -> Self {
        Self {
            customers: Executor::new(store, relay),
            keys,
            list,
        }
    }

    /// The live data key of a customer; `None` once erased.
    async fn key(&self, customer_id: Uuid) -> Result<Option<Vec<u8>>, Error> {
        Ok(match self.keys.key(customer_id).await? {
            KeyState::Active(key) => Some(key),
            KeyState::Erased | KeyState::Unknown => None,
        })
    }

    async fn live_key(&self, customer_id: Uuid) -> Result<Vec<u8>, Error> {
        self.key(customer_id)
            .await?
            .ok_or(Error::Customer(ExecuteError::Domain(CustomerError::Erased)))
    }

    fn seal(key: &[u8], text: &str) -> Result<Sealed, Error> {
        personal_data::seal(key, text)
            .map(Sealed)
            .map_err(|error| Error::Sealing(error.to_string()))
    }

    async fn view(&self, customer: &Customer, version: u64) -> Result<CustomerView, Error> {
        let customer_id = customer
            .customer_id
            .ok_or(Error::CustomerNotFound(Uuid::nil()))?;
        let key = if customer.erased {
            None
        } else {
            self.key(customer_id).await?
        };
        CustomerView::of(customer, version, key.as_deref())
            .map_err(|error| Error::Sealing(error.to_string()))?
            .ok_or(Error::CustomerNotFound(customer_id))
    }

    async fn view_of(&self, executed: Executed<Customer>) -> Result<CustomerView, Error> {
        self.view(&executed.state, executed.version).await
    }

    /// A registered customer by id, following merges to the survivor.
    async fn resolve(&self, customer_id: Uuid) -> Result<(Customer, u64), Error> {
        let mut id = customer_id;
        let mut seen = std::collections::HashSet::new();
        while seen.insert(id) && seen.len() <= MAX_MERGE_HOPS {
            let (customer, version) = self.customers.load(id).await?;
            match (customer.merged_into, customer.customer_id) {
                (Some(survivor_id), _) => id = survivor_id,
                (None, Some(_)) => return Ok((customer, version)),
                (None, None) => return Err(Error::CustomerNotFound(customer_id)),
            }
        }
        Err(Error::MergeChain(customer_id))
    }

    /// Takes back subjects this call claimed before a write that failed, so they find no
    /// customer who does not list them. Best effort: a claim left behind is logged.
    async fn release(&self, customer_id: Uuid, subjects: &[String]) {
        for subject in subjects {
            if let Err(error) = self.keys.remove_subject(customer_id, subject).await {
                tracing::warn!(%customer_id, %error, "a claimed identity could not be released");
            }
        }
    }

    pub async fn get(&self, customer_id: Uuid) -> Result<CustomerView, Error> {
        let (customer, version) = self.resolve(customer_id).await?;
        self.view(&customer, version).await
    }

    /// The customer a phone, email or account number names.
    pub async fn find(&self, identity: &Identity) -> Result<CustomerView, Error> {
        let Some(key_id) = self.keys.subject_key_id(&identity.subject()).await? else {
            return Err(Error::NoCustomerFor(identity.kind()));
        };
        match self.resolve(key_id).await {
            Err(Error::CustomerNotFound(_)) => Err(Error::NoCustomerFor(identity.kind())),
            other => {
                let (customer, version) = other?;
                self.view(&customer, version).await
            }
        }
    }

    /// Registers a customer under every identity given; one already held by a registered
    /// customer is refused. A key made for a phone before customers were registered (a
    /// case's) becomes the customer: their cases are theirs.
    pub async fn register(
        &self,
        context: &CommandContext,
        request_id: Option<&str>,
        request_hash: Vec<u8>,
        new: NewCustomer,
    ) -> Result<CustomerView, Error> {
        let idempotency = Idempotency::of_caller(
            context,
            "front-office/register-customer",
            request_id,
            || request_hash,
        );
        if let Some(first) = self.customers.first_result(&idempotency).await? {
            return self.view_of(first).await;
        }
        let identities = new.identities();
        let Some(first_identity) = identities.first() else {
            return Err(CustomerError::Invalid {
                field: "phones",
                reason: "give at least one phone, email or account number".into(),
            }
            .into());
        };
        // Who holds each identity now; an unregistered holder can be adopted.
        let mut adopt = None;
        for identity in &identities {
            if let Some(holder) = self.keys.subject_key_id(&identity.subject()).await? {
                let (customer, _) = self.customers.load(holder).await?;
                if customer.customer_id.is_some() || customer.erased {
                    return Err(taken(identity, holder));
                }
                match adopt {
                    Some(adopted) if adopted != holder => return Err(taken(identity, holder)),
                    _ => adopt = Some(holder),
                }
            }
        }
        let (customer_id, key) = match adopt {
            Some(key_id) => (key_id, self.live_key(key_id).await?),
            None => {
                let made = self
                    .keys
                    .key_for_subject(&first_identity.subject(), &personal_data::new_key())
                    .await?;
                if !made.created {
                    // Someone registered the same identity meanwhile.
                    return Err(taken(first_identity, made.key_id));
                }
                (made.key_id, made.key)
            }
        };
        // Claimed by this call: released again if anything after fails. (A key this call
        // made keeps its first subject: like an intake's, it is adopted later. It is never
        // destroyed here: an intake may have sealed with it meanwhile.)
        let mut claimed = Vec::new();
        let registered = async {
            for identity in &identities {
                let subject = identity.subject();
                match self.keys.add_subject(customer_id, &subject).await? {
                    SubjectClaim::Claimed => claimed.push(subject),
                    SubjectClaim::AlreadyHeld => {}
                    SubjectClaim::HeldBy(holder) => return Err(taken(identity, holder)),
                    SubjectClaim::NoKey => return Err(CustomerError::Erased.into()),
                }
            }
            let profile = Self::profile(&key, new)?;
            let registered = self
                .customers
                .execute(
                    customer_id,
                    None,
                    context,
                    CustomerCommand::Register {
                        customer_id,
                        profile,
                    },
                    idempotency,
                )
                .await?;
            self.view_of(registered).await
        }
        .await;
        if registered.is_err() {
            self.release(customer_id, &claimed).await;
        }
        registered
    }

    /// A new customer's profile, its personal fields sealed with `key`.
    fn profile(key: &[u8], new: NewCustomer) -> Result<Profile, Error> {
        Ok(Profile {
            segment: new.segment,
            name: new
                .name
                .as_deref()
                .map(|name| Self::seal(key, name))
                .transpose()?,
            phones: new
                .phones
                .iter()
                .map(|phone| Self::seal(key, phone.as_str()))
                .collect::<Result<_, _>>()?,
            emails: new
                .emails
                .iter()
                .map(|email| Self::seal(key, email.as_str()))
                .collect::<Result<_, _>>()?,
            account_number: new.account_number,
            address: new
                .address
                .as_deref()
                .map(|address| Self::seal(key, address))
                .transpose()?,
            tags: new.tags,
            consent: new.consent,
        })
    }

    /// Find-or-create by one identity: the customer it names, or a new one with just it.
    /// Returns whether this call registered them.
    pub async fn identify(
        &self,
        context: &CommandContext,
        identity: &Identity,
        segment: Segment,
        name: Option<&str>,
    ) -> Result<(CustomerView, bool), Error> {
        let found = self
            .keys
            .key_for_subject(&identity.subject(), &personal_data::new_key())
            .await?;
        let (customer, _) = self.customers.load(found.key_id).await?;
        if customer.customer_id.is_some() || customer.merged_into.is_some() {
            return Ok((self.get(found.key_id).await?, false));
        }
        let seal = |text: &str| Self::seal(&found.key, text);
        let (phones, emails, account_number) = match identity {
            Identity::Phone(phone) => (vec![seal(phone.as_str())?], vec![], None),
            Identity::Email(email) => (vec![], vec![seal(email.as_str())?], None),
            Identity::Account(number) => (vec![], vec![], Some(number.clone())),
        };
        let profile = Profile {
            segment,
            name: name.map(seal).transpose()?,
            phones,
            emails,
            account_number,
            address: None,
            tags: BTreeSet::new(),
            consent: RecordingConsent::Unknown,
        };
        // Of two calls identifying the same new customer, the first registers them and
        // the second gets the first's result.
        let registered = self
            .customers
            .execute(
                found.key_id,
                None,
                context,
                CustomerCommand::Register {
                    customer_id: found.key_id,
                    profile,
                },
                Idempotency::key(format!("front-office/register-customer/{}", found.key_id)),
            )
            .await;
        match registered {
            Ok(executed) => {
                let appended = executed.appended;
                Ok((self.view_of(executed).await?, appended))
            }
            Err(ExecuteError::Domain(CustomerError::AlreadyRegistered(_))) => {
                Ok((self.get(found.key_id).await?, false))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Changes a customer (a merged id changes its survivor). With a request id, a retry
    /// answers with the first result.
    pub async fn change(
        &self,
        context: &CommandContext,
        customer_id: Uuid,
        request_id: Option<&str>,
        request_hash: Vec<u8>,
        change: CustomerChange,
    ) -> Result<Changed, Error> {
        let idempotency =
            Idempotency::of_caller(context, "front-office/change-customer", request_id, || {
                request_hash
            });
        if let Some(first) = self.customers.first_result(&idempotency).await? {
            let created = created_by(&first.state, &change);
            return Ok(Changed {
                customer: self.view_of(first).await?,
                created,
            });
        }
        let (customer, _) = self.resolve(customer_id).await?;
        let customer_id = customer
            .customer_id
            .ok_or(Error::CustomerNotFound(customer_id))?;
        let asked = change.clone();
        let mut created = None;
        // A contact is claimed in the key store before it is recorded, so a recorded
        // contact always finds its customer; the claim is taken back if recording fails.
        let mut claimed = None;
        let command = match change {
            CustomerChange::Tag(tag) => CustomerCommand::Tag(tag),
            CustomerChange::Untag(tag) => CustomerCommand::Untag(tag),
            CustomerChange::Consent(consent) => CustomerCommand::RecordConsent(consent),
            CustomerChange::AddProject { name, site } => {
                let project_id = Uuid::now_v7();
                created = Some(project_id);
                CustomerCommand::AddProject {
                    project_id,
                    name,
                    site,
                }
            }
            CustomerChange::Details { name, address } => {
                let key = self.live_key(customer_id).await?;
                CustomerCommand::ChangeDetails {
                    name: name
                        .as_deref()
                        .map(|name| Self::seal(&key, name))
                        .transpose()?,
                    address: address
                        .as_deref()
                        .map(|address| Self::seal(&key, address))
                        .transpose()?,
                }
            }
            CustomerChange::AddStakeholder {
                project_id,
                stakeholder,
            } => {
                let key = self.live_key(customer_id).await?;
                let stakeholder_id = Uuid::now_v7();
                created = Some(stakeholder_id);
                CustomerCommand::AddStakeholder {
                    project_id,
                    stakeholder: Stakeholder {
                        stakeholder_id,
                        role: stakeholder.role,
                        name: Self::seal(&key, &stakeholder.name)?,
                        phone: stakeholder
                            .phone
                            .map(|phone| Self::seal(&key, phone.as_str()))
                            .transpose()?,
                        email: stakeholder
                            .email
                            .map(|email| Self::seal(&key, email.as_str()))
                            .transpose()?,
                    },
                }
            }
            CustomerChange::AddContact(identity) => {
                let key = self.live_key(customer_id).await?;
                let command = CustomerCommand::AddContact(match &identity {
                    Identity::Phone(phone) => {
                        ContactPoint::Phone(Self::seal(&key, phone.as_str())?)
                    }
                    Identity::Email(email) => {
                        ContactPoint::Email(Self::seal(&key, email.as_str())?)
                    }
                    Identity::Account(_) => {
                        return Err(CustomerError::Invalid {
                            field: "contact",
                            reason: "must be a phone or an email".into(),
                        }
                        .into());
                    }
                });
                // The aggregate's rules first (one contact too many), then the claim.
                customer.decide(command.clone())?;
                let subject = identity.subject();
                match self.keys.add_subject(customer_id, &subject).await? {
                    SubjectClaim::Claimed => claimed = Some(subject),
                    // Already this customer's: nothing to add.
                    SubjectClaim::AlreadyHeld => {
                        let (customer, version) = self.customers.load(customer_id).await?;
                        return Ok(Changed {
                            customer: self.view(&customer, version).await?,
                            created: None,
                        });
                    }
                    SubjectClaim::HeldBy(holder) => return Err(taken(&identity, holder)),
                    SubjectClaim::NoKey => return Err(CustomerError::Erased.into()),
                }
                command
            }
        };
        let changed = match self
            .customers
            .execute(customer_id, None, context, command, idempotency)
            .await
        {
            Ok(changed) => changed,
            Err(error) => {
                if let Some(subject) = claimed {
                    self.release(customer_id, &[subject]).await;
                }
                return Err(error.into());
            }
        };
        // A concurrent retry of the same request appended first: what it created.
        if !changed.appended {
            created = created_by(&changed.state, &asked);
        }
        Ok(Changed {
            customer: self.view_of(changed).await?,
            created,
        })
    }

    /// Merges `merged_id` into `survivor_id`: the survivor records it first, so erasing the
    /// survivor always finds it; then the duplicate points at the survivor. A failure
    /// between the two is finished by a retry (each write is idempotent).
    pub async fn merge(
        &self,
        context: &CommandContext,
        request_id: Option<&str>,
        request_hash: Vec<u8>,
        merged_id: Uuid,
        survivor_id: Uuid,
    ) -> Result<CustomerView, Error> {
        let idempotency =
            Idempotency::of_caller(context, "front-office/merge-customers", request_id, || {
                request_hash
            });
        if let Some(first) = self.customers.first_result(&idempotency).await? {
            // The survivor recorded it: make sure the duplicate did too.
            let survivor_id = first.state.customer_id.unwrap_or(survivor_id);
            self.customers
                .execute(
                    merged_id,
                    None,
                    context,
                    CustomerCommand::MergeInto { survivor_id },
                    Idempotency::none(),
                )
                .await?;
            return self.view_of(first).await;
        }
        if merged_id == survivor_id {
            return Err(CustomerError::MergeWithItself.into());
        }
        let (survivor, _) = self.resolve(survivor_id).await?;
        let survivor_id = survivor
            .customer_id
            .ok_or(Error::CustomerNotFound(survivor_id))?;
        let (merged, _) = self.customers.load(merged_id).await?;
        if merged.customer_id.is_none() {
            return Err(Error::CustomerNotFound(merged_id));
        }
        if merged.erased {
            return Err(CustomerError::Erased.into());
        }
        if let Some(into) = merged.merged_into
            && into != survivor_id
        {
            return Err(CustomerError::Merged(into).into());
        }
        let segments = (
            merged.profile.as_ref().map(|profile| profile.segment),
            survivor.profile.as_ref().map(|profile| profile.segment),
        );
        if let (Some(a), Some(b)) = segments
            && a.is_business() != b.is_business()
        {
            return Err(Error::Customer(ExecuteError::Domain(
                CustomerError::Invalid {
                    field: "merged_id",
                    reason: "a consumer and a business account cannot be merged".into(),
                },
            )));
        }
        let absorbed = self
            .customers
            .execute(
                survivor_id,
                None,
                context,
                CustomerCommand::Absorb { merged_id },
                idempotency,
            )
            .await?;
        self.customers
            .execute(
                merged_id,
                None,
                context,
                CustomerCommand::MergeInto { survivor_id },
                Idempotency::none(),
            )
            .await?;
        self.view_of(absorbed).await
    }

    /// Customers, newest first, with their names and first phones opened.
    pub async fn list(
        &self,
        filter: &CustomerFilter,
        page_size: usize,
        after: Option<i64>,
    ) -> Result<(Vec<CustomerView>, Option<i64>), Error> {
        let tables = self.list.caught_up(READ_YOUR_WRITES).await?;
        let (listed, next) =
            crate::customer_list::page(&self.list, &tables, filter, page_size, after).await?;
        let ids: Vec<Uuid> = listed.iter().map(|customer| customer.customer_id).collect();
        let keys = if ids.is_empty() {
            Default::default()
        } else {
            self.keys.keys(&ids).await?
        };
        let views = listed
            .into_iter()
            .map(|customer| {
                let key = match keys.get(&customer.customer_id) {
                    Some(KeyState::Active(key)) if !customer.erased => Some(key.as_slice()),
                    _ => None,
                };
                listed_view(customer, key)
            })
            .collect::<Result<_, _>>()?;
        Ok((views, next))
    }
}

/// What a retried change had created, read back from the first result.
fn created_by(customer: &Customer, change: &CustomerChange) -> Option<Uuid> {
    match change {
        CustomerChange::AddProject { .. } => customer.projects.last().map(|p| p.project_id),
        CustomerChange::AddStakeholder { project_id, .. } => customer
            .project(*project_id)
            .and_then(|project| project.stakeholders.last())
            .map(|stakeholder| stakeholder.stakeholder_id),
        _ => None,
    }
}

fn listed_view(customer: ListedCustomer, key: Option<&[u8]>) -> Result<CustomerView, Error> {
    let opener = crate::customer::Opener(key);
    let open = |sealed: Option<Sealed>| -> Result<Option<Personal>, Error> {
        sealed
            .map(|sealed| opener.open(&sealed))
            .transpose()
            .map_err(|error| Error::Sealing(error.to_string()))
    };
    let erased_or = |field: Option<Personal>| {
        if customer.erased {
            Some(Personal::Erased)
        } else {
            field
        }
    };
    Ok(CustomerView {
        customer_id: customer.customer_id,
        segment: customer.segment,
        name: erased_or(open(customer.name)?),
        phones: erased_or(open(customer.phone)?).into_iter().collect(),
        emails: Vec::new(),
        account_number: customer.account_number,
        address: None,
        tags: customer.tags,
        consent: customer.consent,
        projects: Vec::new(),
        merged_ids: Vec::new(),
        erased: customer.erased,
        registered_at: customer.registered_at,
        version: customer.version,
    })
}
