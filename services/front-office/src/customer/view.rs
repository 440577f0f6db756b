//! A customer as callers see it: their sealed fields opened with their data key (or read
//! as erased once it is destroyed), with the stream version.

use svcops_kit::personal_data;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AccountNumber, Customer, RecordingConsent, Sealed, Segment, StakeholderRole, Tag};

/// A personal field as read: its text, or erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Personal {
    Known(String),
    Erased,
}

impl Personal {
    pub fn known(&self) -> Option<&str> {
        match self {
            Personal::Known(text) => Some(text),
            Personal::Erased => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StakeholderView {
    pub stakeholder_id: Uuid,
    pub role: StakeholderRole,
    pub name: Personal,
    pub phone: Option<Personal>,
    pub email: Option<Personal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectView {
    pub project_id: Uuid,
    pub name: String,
    pub site: String,
    pub stakeholders: Vec<StakeholderView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerView {
    pub customer_id: Uuid,
    pub segment: Segment,
    pub name: Option<Personal>,
    pub phones: Vec<Personal>,
    pub emails: Vec<Personal>,
    pub account_number: Option<AccountNumber>,
    pub address: Option<Personal>,
    pub tags: Vec<Tag>,
    pub consent: RecordingConsent,
    pub projects: Vec<ProjectView>,
    pub merged_ids: Vec<Uuid>,
    pub erased: bool,
    pub registered_at: OffsetDateTime,
    pub version: u64,
}

/// Opens sealed fields with one key, or reads them all as erased without one.
pub struct Opener<'k>(pub Option<&'k [u8]>);

impl Opener<'_> {
    pub fn open(&self, sealed: &Sealed) -> Result<Personal, personal_data::Error> {
        match self.0 {
            Some(key) => personal_data::open(key, &sealed.0).map(Personal::Known),
            None => Ok(Personal::Erased),
        }
    }

    fn open_optional(
        &self,
        sealed: Option<&Sealed>,
    ) -> Result<Option<Personal>, personal_data::Error> {
        sealed.map(|sealed| self.open(sealed)).transpose()
    }
}

impl CustomerView {
    /// The view of a registered customer at `version`, opened with their key (`None` once
    /// it is destroyed); `None` while they are not registered.
    pub fn of(
        customer: &Customer,
        version: u64,
        key: Option<&[u8]>,
    ) -> Result<Option<Self>, personal_data::Error> {
        let (Some(customer_id), Some(profile), Some(registered_at)) = (
            customer.customer_id,
            customer.profile.as_ref(),
            customer.registered_at,
        ) else {
            return Ok(None);
        };
        let opener = Opener(if customer.erased { None } else { key });
        let projects = customer
            .projects
            .iter()
            .map(|project| {
                let stakeholders = project
                    .stakeholders
                    .iter()
                    .map(|stakeholder| {
                        Ok(StakeholderView {
                            stakeholder_id: stakeholder.stakeholder_id,
                            role: stakeholder.role,
                            name: opener.open(&stakeholder.name)?,
                            phone: opener.open_optional(stakeholder.phone.as_ref())?,
                            email: opener.open_optional(stakeholder.email.as_ref())?,
                        })
                    })
                    .collect::<Result<_, personal_data::Error>>()?;
                Ok(ProjectView {
                    project_id: project.project_id,
                    name: project.name.clone(),
                    site: project.site.clone(),
                    stakeholders,
                })
            })
            .collect::<Result<_, personal_data::Error>>()?;
        Ok(Some(Self {
            customer_id,
            segment: profile.segment,
            name: opener.open_optional(profile.name.as_ref())?,
            phones: profile
                .phones
                .iter()
                .map(|phone| opener.open(phone))
                .collect::<Result<_, _>>()?,
            emails: profile
                .emails
                .iter()
                .map(|email| opener.open(email))
                .collect::<Result<_, _>>()?,
            account_number: profile.account_number.clone(),
            address: opener.open_optional(profile.address.as_ref())?,
            tags: profile.tags.iter().cloned().collect(),
            consent: profile.consent,
            projects,
            merged_ids: customer.merged_ids.clone(),
            erased: customer.erased,
            registered_at,
            version,
        }))
    }
}
