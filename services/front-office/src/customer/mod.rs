//! The customer aggregate (stream `customer-<customer id>`, the id being the customer's data
//! key's): a consumer or a business account, how to reach them, tags, consent to
//! recording, a business account's projects and their stakeholders, merges of duplicates,
//! and erasure. Pure: personal fields arrive sealed (see `app::customers`) and stay so.

mod codec;
mod values;
mod view;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use svcops_kit::ApiError;
use svcops_kit::aggregate::{Aggregate, ErrorStatus, Recorded};
use svcops_kit::error::FieldViolation;
use time::OffsetDateTime;
use uuid::Uuid;

pub use codec::{consent_from_proto, segment_from_proto, stakeholder_role_from_proto};
pub use values::{
    AccountNumber, EmailAddress, Identity, RecordingConsent, Sealed, Segment, StakeholderRole, Tag,
    phone, text,
};
pub use view::{CustomerView, Opener, Personal, ProjectView, StakeholderView};

/// Most tags, phones, emails, projects and stakeholders a customer holds: enough for any
/// real account, and a bound on what one stream folds.
pub const MAX_TAGS: usize = 20;
pub const MAX_CONTACTS: usize = 5;
pub const MAX_PROJECTS: usize = 200;
pub const MAX_STAKEHOLDERS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("customer {0} is already registered")]
    AlreadyRegistered(Uuid),
    #[error("the customer is not registered")]
    NotRegistered,
    #[error("the customer was merged into {0}")]
    Merged(Uuid),
    #[error("the customer's personal data was erased")]
    Erased,
    #[error("a customer cannot be merged with itself")]
    MergeWithItself,
    #[error("customer {0} was merged into this one: merging this one into it would make a cycle")]
    MergeCycle(Uuid),
    #[error("only business accounts have projects; this customer is a consumer")]
    ProjectsNeedAnAccount,
    #[error("project {0} not found")]
    UnknownProject(Uuid),
    #[error("a customer holds at most {max} {what}")]
    TooMany { what: &'static str, max: usize },
}

impl CustomerError {
    pub fn field_violation(&self) -> Option<FieldViolation> {
        match self {
            CustomerError::Invalid { field, reason } => Some(FieldViolation::new(*field, reason)),
            _ => None,
        }
    }
}

impl ErrorStatus for CustomerError {
    fn api_error(&self) -> ApiError {
        match self {
            CustomerError::Invalid { field, reason } => ApiError::invalid(*field, reason),
            CustomerError::NotRegistered => ApiError::NotFound {
                resource: "customer",
                id: String::new(),
            },
            CustomerError::UnknownProject(project_id) => ApiError::NotFound {
                resource: "project",
                id: project_id.to_string(),
            },
            CustomerError::AlreadyRegistered(_)
            | CustomerError::Merged(_)
            | CustomerError::Erased
            | CustomerError::MergeWithItself
            | CustomerError::MergeCycle(_)
            | CustomerError::ProjectsNeedAnAccount
            | CustomerError::TooMany { .. } => ApiError::FailedPrecondition(self.to_string()),
        }
    }
}

impl From<CustomerError> for ApiError {
    fn from(error: CustomerError) -> Self {
        error.api_error()
    }
}

/// Who a customer is and how to reach them, as registered and changed since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub segment: Segment,
    pub name: Option<Sealed>,
    pub phones: Vec<Sealed>,
    pub emails: Vec<Sealed>,
    pub account_number: Option<AccountNumber>,
    pub address: Option<Sealed>,
    pub tags: BTreeSet<Tag>,
    pub consent: RecordingConsent,
}

/// A way to reach a customer, sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactPoint {
    Phone(Sealed),
    Email(Sealed),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stakeholder {
    pub stakeholder_id: Uuid,
    pub role: StakeholderRole,
    pub name: Sealed,
    pub phone: Option<Sealed>,
    pub email: Option<Sealed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub project_id: Uuid,
    pub name: String,
    pub site: String,
    pub stakeholders: Vec<Stakeholder>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerCommand {
    Register {
        customer_id: Uuid,
        profile: Profile,
    },
    AddContact(ContactPoint),
    /// `None` keeps the field.
    ChangeDetails {
        name: Option<Sealed>,
        address: Option<Sealed>,
    },
    Tag(Tag),
    Untag(Tag),
    RecordConsent(RecordingConsent),
    AddProject {
        project_id: Uuid,
        name: String,
        site: String,
    },
    AddStakeholder {
        project_id: Uuid,
        stakeholder: Stakeholder,
    },
    /// On the survivor: it takes a duplicate in.
    Absorb {
        merged_id: Uuid,
    },
    /// On the duplicate: it now stands for the survivor.
    MergeInto {
        survivor_id: Uuid,
    },
    /// Records that the customer's data key is being destroyed.
    Erase {
        key_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerEvent {
    Registered {
        customer_id: Uuid,
        profile: Profile,
    },
    ContactAdded {
        customer_id: Uuid,
        contact: ContactPoint,
    },
    DetailsChanged {
        customer_id: Uuid,
        name: Option<Sealed>,
        address: Option<Sealed>,
    },
    Tagged {
        customer_id: Uuid,
        tag: Tag,
    },
    Untagged {
        customer_id: Uuid,
        tag: Tag,
    },
    ConsentRecorded {
        customer_id: Uuid,
        consent: RecordingConsent,
    },
    ProjectAdded {
        customer_id: Uuid,
        project_id: Uuid,
        name: String,
        site: String,
    },
    StakeholderAdded {
        customer_id: Uuid,
        project_id: Uuid,
        stakeholder: Stakeholder,
    },
    Absorbed {
        customer_id: Uuid,
        merged_id: Uuid,
    },
    Merged {
        customer_id: Uuid,
        survivor_id: Uuid,
    },
    DataErased {
        key_id: Uuid,
    },
}

/// A customer, folded from their stream. A stream may hold only `DataErased` (a customer
/// known by a phone on cases, erased before customers were registered).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Customer {
    pub customer_id: Option<Uuid>,
    pub profile: Option<Profile>,
    pub projects: Vec<Project>,
    /// Duplicates merged into this customer, in merge order.
    pub merged_ids: Vec<Uuid>,
    pub merged_into: Option<Uuid>,
    pub erased: bool,
    pub registered_at: Option<OffsetDateTime>,
    pub updated_at: Option<OffsetDateTime>,
}

impl Customer {
    /// The profile of a customer that may still change: registered, not merged away, not
    /// erased.
    fn live(&self) -> Result<(Uuid, &Profile), CustomerError> {
        if self.erased {
            return Err(CustomerError::Erased);
        }
        if let Some(survivor_id) = self.merged_into {
            return Err(CustomerError::Merged(survivor_id));
        }
        match (self.customer_id, &self.profile) {
            (Some(customer_id), Some(profile)) => Ok((customer_id, profile)),
            _ => Err(CustomerError::NotRegistered),
        }
    }

    pub fn project(&self, project_id: Uuid) -> Option<&Project> {
        self.projects
            .iter()
            .find(|project| project.project_id == project_id)
    }
}

fn too_many(what: &'static str, max: usize) -> CustomerError {
    CustomerError::TooMany { what, max }
}

impl Aggregate for Customer {
    const KIND: &'static str = "customer";
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = CustomerError;

    fn decide(&self, command: CustomerCommand) -> Result<Vec<CustomerEvent>, CustomerError> {
        if let CustomerCommand::Erase { key_id } = command {
            // Erasing twice records once: a retry after the key outlived its record only
            // has the key left to destroy.
            return Ok(if self.erased {
                vec![]
            } else {
                vec![CustomerEvent::DataErased { key_id }]
            });
        }
        if let CustomerCommand::Register {
            customer_id,
            profile,
        } = command
        {
            if self.erased {
                return Err(CustomerError::Erased);
            }
            if let Some(existing) = self.customer_id {
                return Err(CustomerError::AlreadyRegistered(existing));
            }
            if profile.tags.len() > MAX_TAGS {
                return Err(too_many("tags", MAX_TAGS));
            }
            if profile.phones.len() > MAX_CONTACTS || profile.emails.len() > MAX_CONTACTS {
                return Err(too_many("phones and emails each", MAX_CONTACTS));
            }
            return Ok(vec![CustomerEvent::Registered {
                customer_id,
                profile,
            }]);
        }
        if let CustomerCommand::MergeInto { survivor_id } = command {
            // Merged already into the same survivor: a retry, nothing new.
            if self.merged_into == Some(survivor_id) {
                return Ok(vec![]);
            }
        }
        let (customer_id, profile) = self.live()?;
        let events = match command {
            CustomerCommand::Register { .. } | CustomerCommand::Erase { .. } => {
                unreachable!("decided above")
            }
            CustomerCommand::AddContact(contact) => {
                let held = match &contact {
                    ContactPoint::Phone(_) => profile.phones.len(),
                    ContactPoint::Email(_) => profile.emails.len(),
                };
                if held >= MAX_CONTACTS {
                    return Err(too_many("phones and emails each", MAX_CONTACTS));
                }
                vec![CustomerEvent::ContactAdded {
                    customer_id,
                    contact,
                }]
            }
            CustomerCommand::ChangeDetails { name, address } => {
                if name.is_none() && address.is_none() {
                    return Ok(vec![]);
                }
                vec![CustomerEvent::DetailsChanged {
                    customer_id,
                    name,
                    address,
                }]
            }
            CustomerCommand::Tag(tag) => {
                if profile.tags.contains(&tag) {
                    return Ok(vec![]);
                }
                if profile.tags.len() >= MAX_TAGS {
                    return Err(too_many("tags", MAX_TAGS));
                }
                vec![CustomerEvent::Tagged { customer_id, tag }]
            }
            CustomerCommand::Untag(tag) => {
                if !profile.tags.contains(&tag) {
                    return Ok(vec![]);
                }
                vec![CustomerEvent::Untagged { customer_id, tag }]
            }
            CustomerCommand::RecordConsent(consent) => {
                if profile.consent == consent {
                    return Ok(vec![]);
                }
                vec![CustomerEvent::ConsentRecorded {
                    customer_id,
                    consent,
                }]
            }
            CustomerCommand::AddProject {
                project_id,
                name,
                site,
            } => {
                if !profile.segment.is_business() {
                    return Err(CustomerError::ProjectsNeedAnAccount);
                }
                if self.projects.len() >= MAX_PROJECTS {
                    return Err(too_many("projects", MAX_PROJECTS));
                }
                vec![CustomerEvent::ProjectAdded {
                    customer_id,
                    project_id,
                    name,
                    site,
                }]
            }
            CustomerCommand::AddStakeholder {
                project_id,
                stakeholder,
            } => {
                let project = self
                    .project(project_id)
                    .ok_or(CustomerError::UnknownProject(project_id))?;
                if project.stakeholders.len() >= MAX_STAKEHOLDERS {
                    return Err(too_many("stakeholders per project", MAX_STAKEHOLDERS));
                }
                vec![CustomerEvent::StakeholderAdded {
                    customer_id,
                    project_id,
                    stakeholder,
                }]
            }
            CustomerCommand::Absorb { merged_id } => {
                if merged_id == customer_id {
                    return Err(CustomerError::MergeWithItself);
                }
                if self.merged_ids.contains(&merged_id) {
                    return Ok(vec![]);
                }
                vec![CustomerEvent::Absorbed {
                    customer_id,
                    merged_id,
                }]
            }
            CustomerCommand::MergeInto { survivor_id } => {
                if survivor_id == customer_id {
                    return Err(CustomerError::MergeWithItself);
                }
                // Two merges asked the other way round at once: the second must not close
                // a loop.
                if self.merged_ids.contains(&survivor_id) {
                    return Err(CustomerError::MergeCycle(survivor_id));
                }
                vec![CustomerEvent::Merged {
                    customer_id,
                    survivor_id,
                }]
            }
        };
        Ok(events)
    }

    fn apply(&mut self, recorded: &Recorded<CustomerEvent>) {
        self.updated_at = Some(recorded.occurred_at);
        match &recorded.event {
            CustomerEvent::Registered {
                customer_id,
                profile,
            } => {
                self.customer_id = Some(*customer_id);
                self.profile = Some(profile.clone());
                self.registered_at = Some(recorded.occurred_at);
            }
            CustomerEvent::ContactAdded { contact, .. } => {
                if let Some(profile) = self.profile.as_mut() {
                    match contact {
                        ContactPoint::Phone(phone) => profile.phones.push(phone.clone()),
                        ContactPoint::Email(email) => profile.emails.push(email.clone()),
                    }
                }
            }
            CustomerEvent::DetailsChanged { name, address, .. } => {
                if let Some(profile) = self.profile.as_mut() {
                    if let Some(name) = name {
                        profile.name = Some(name.clone());
                    }
                    if let Some(address) = address {
                        profile.address = Some(address.clone());
                    }
                }
            }
            CustomerEvent::Tagged { tag, .. } => {
                if let Some(profile) = self.profile.as_mut() {
                    profile.tags.insert(tag.clone());
                }
            }
            CustomerEvent::Untagged { tag, .. } => {
                if let Some(profile) = self.profile.as_mut() {
                    profile.tags.remove(tag);
                }
            }
            CustomerEvent::ConsentRecorded { consent, .. } => {
                if let Some(profile) = self.profile.as_mut() {
                    profile.consent = *consent;
                }
            }
            CustomerEvent::ProjectAdded {
                project_id,
                name,
                site,
                ..
            } => self.projects.push(Project {
                project_id: *project_id,
                name: name.clone(),
                site: site.clone(),
                stakeholders: Vec::new(),
            }),
            CustomerEvent::StakeholderAdded {
                project_id,
                stakeholder,
                ..
            } => {
                if let Some(project) = self
                    .projects
                    .iter_mut()
                    .find(|project| project.project_id == *project_id)
                {
                    project.stakeholders.push(stakeholder.clone());
                }
            }
            CustomerEvent::Absorbed { merged_id, .. } => self.merged_ids.push(*merged_id),
            CustomerEvent::Merged { survivor_id, .. } => self.merged_into = Some(*survivor_id),
            CustomerEvent::DataErased { .. } => self.erased = true,
        }
    }
}
