//! The customer edge: registration, find-or-create, lists, changes and merges.

use std::collections::BTreeSet;
use std::sync::Arc;

use svcops_kit::Principal;
use svcops_kit::auth::{Role, authorize};
use svcops_kit::error::FieldViolation;
use svcops_kit::events::{CommandContext, to_timestamp};
use svcops_kit::paging;
use svcops_kit::personal_data::{mask_email, mask_name, mask_phone, mask_text};
use svcops_proto::frontoffice::v1 as proto;
use svcops_proto::frontoffice::v1::customer_service_server::CustomerService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{invalid, parse_request_id, status};
use crate::app::{Changed, CustomerChange, Customers, NewCustomer, NewStakeholder};
use crate::customer::{
    self, AccountNumber, CustomerError, CustomerView, EmailAddress, Identity, Personal, Segment,
    Tag,
};
use crate::customer_list::CustomerFilter;

/// Who reads customers: everyone who serves them (technicians need the address of a
/// visit), and those who oversee.
pub(crate) const CUSTOMER_READERS: &[Role] = &[
    Role::Agent,
    Role::Technician,
    Role::Service,
    Role::Manager,
    Role::Qa,
    Role::Executive,
];
/// Who registers and changes customers: agents, managers, and systems (telephony, CRM sync).
pub(crate) const CUSTOMER_KEEPERS: &[Role] = &[Role::Agent, Role::Manager, Role::Service];
/// Who merges duplicates: people, who can tell two records are one customer.
pub(crate) const CUSTOMER_MERGERS: &[Role] = &[Role::Agent, Role::Manager];

pub struct CustomerGrpc {
    customers: Arc<Customers>,
}

impl CustomerGrpc {
    pub fn new(customers: Arc<Customers>) -> Self {
        Self { customers }
    }

    async fn change(
        &self,
        principal: Principal,
        customer_id: Uuid,
        request_id: Option<String>,
        request_hash: Vec<u8>,
        change: CustomerChange,
    ) -> Result<(proto::Customer, Option<Uuid>), Status> {
        let context = CommandContext::from_caller(principal.clone());
        let Changed { customer, created } = self
            .customers
            .change(
                &context,
                customer_id,
                request_id.as_deref(),
                request_hash,
                change,
            )
            .await
            .map_err(status)?;
        Ok((to_proto(customer, &principal), created))
    }
}

/// Registering or adding a phone or an email answers whose it is (ALREADY_EXISTS names the
/// customer, find-or-create returns them): only for roles that see personal data.
fn may_name_by(principal: &Principal, identity_kind: &str) -> Result<(), Status> {
    if principal.role.sees_personal_data() {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "role {} may not name customers by {identity_kind}",
        principal.role
    )))
}

/// A personal field as the caller's role may see it.
fn shown(field: &Personal, principal: &Principal, mask: fn(&str) -> String) -> String {
    match field {
        Personal::Known(text) if principal.role.sees_personal_data() => text.clone(),
        Personal::Known(text) => mask(text),
        Personal::Erased => String::new(),
    }
}

fn shown_optional(
    field: Option<&Personal>,
    principal: &Principal,
    mask: fn(&str) -> String,
) -> String {
    field
        .map(|field| shown(field, principal, mask))
        .unwrap_or_default()
}

pub(crate) fn to_proto(view: CustomerView, principal: &Principal) -> proto::Customer {
    proto::Customer {
        customer_id: view.customer_id.to_string(),
        segment: proto::CustomerSegment::from(view.segment).into(),
        name: shown_optional(view.name.as_ref(), principal, mask_name),
        phones: view
            .phones
            .iter()
            .map(|phone| shown(phone, principal, mask_phone))
            .filter(|phone| !phone.is_empty())
            .collect(),
        emails: view
            .emails
            .iter()
            .map(|email| shown(email, principal, mask_email))
            .filter(|email| !email.is_empty())
            .collect(),
        account_number: view
            .account_number
            .map(|number| number.as_str().to_owned())
            .unwrap_or_default(),
        address: shown_optional(view.address.as_ref(), principal, mask_text),
        tags: view
            .tags
            .iter()
            .map(|tag| tag.as_str().to_owned())
            .collect(),
        recording_consent: proto::RecordingConsent::from(view.consent).into(),
        projects: view
            .projects
            .into_iter()
            .map(|project| proto::Project {
                project_id: project.project_id.to_string(),
                name: project.name,
                site: project.site,
                stakeholders: project
                    .stakeholders
                    .into_iter()
                    .map(|stakeholder| proto::Stakeholder {
                        stakeholder_id: stakeholder.stakeholder_id.to_string(),
                        role: proto::StakeholderRole::from(stakeholder.role).into(),
                        name: shown(&stakeholder.name, principal, mask_name),
                        phone: shown_optional(stakeholder.phone.as_ref(), principal, mask_phone),
                        email: shown_optional(stakeholder.email.as_ref(), principal, mask_email),
                    })
                    .collect(),
            })
            .collect(),
        merged_ids: view.merged_ids.iter().map(Uuid::to_string).collect(),
        personal_data_erased: view.erased,
        registered_at: Some(to_timestamp(view.registered_at)),
        version: view.version,
    }
}

fn collect<T>(parsed: Result<T, CustomerError>, violations: &mut Vec<FieldViolation>) -> Option<T> {
    parsed
        .map_err(|error| violations.extend(error.field_violation()))
        .ok()
}

fn parse_id(field: &'static str, raw: &str, violations: &mut Vec<FieldViolation>) -> Option<Uuid> {
    let id = Uuid::parse_str(raw.trim()).ok();
    if id.is_none() {
        violations.push(FieldViolation::new(field, "must be a UUID"));
    }
    id
}

fn parse_segment(
    field: &'static str,
    raw: i32,
    default: Option<Segment>,
    violations: &mut Vec<FieldViolation>,
) -> Option<Segment> {
    match customer::segment_from_proto(raw) {
        Some(Some(segment)) => Some(segment),
        Some(None) if default.is_some() => default,
        _ => {
            violations.push(FieldViolation::new(
                field,
                "must be one of consumer, real estate, hotel, retail chain, \
                 government/enterprise, other",
            ));
            None
        }
    }
}

/// A phone, email or account number; `what` names the field in violations.
fn parse_identity(
    field: &'static str,
    identity: Option<&proto::CustomerIdentity>,
    violations: &mut Vec<FieldViolation>,
) -> Option<Identity> {
    use proto::customer_identity::Identity as Given;
    match identity.and_then(|identity| identity.identity.as_ref()) {
        Some(Given::Phone(raw)) => {
            collect(customer::phone(field, raw), violations).map(Identity::Phone)
        }
        Some(Given::Email(raw)) => {
            collect(EmailAddress::parse(field, raw), violations).map(Identity::Email)
        }
        Some(Given::AccountNumber(raw)) => {
            collect(AccountNumber::parse(field, raw), violations).map(Identity::Account)
        }
        None => {
            violations.push(FieldViolation::new(
                field,
                "give one of phone, email or account_number",
            ));
            None
        }
    }
}

/// Optional free text: empty is `None`.
fn optional_text(
    field: &'static str,
    raw: &str,
    max_chars: usize,
    violations: &mut Vec<FieldViolation>,
) -> Option<String> {
    collect(customer::text(field, raw, false, max_chars), violations)
        .filter(|text| !text.is_empty())
}

fn parse_register(request: &proto::RegisterCustomerRequest) -> Result<NewCustomer, Status> {
    let mut violations = Vec::new();
    let segment = parse_segment("segment", request.segment, None, &mut violations);
    let name = optional_text("name", &request.name, 200, &mut violations);
    let mut phones: Vec<_> = request
        .phones
        .iter()
        .filter_map(|raw| collect(customer::phone("phones", raw), &mut violations))
        .collect();
    let mut emails: Vec<_> = request
        .emails
        .iter()
        .filter_map(|raw| collect(EmailAddress::parse("emails", raw), &mut violations))
        .collect();
    // The same phone twice (written two ways) is one phone.
    let mut seen = std::collections::HashSet::new();
    phones.retain(|phone| seen.insert(phone.clone()));
    let mut seen = std::collections::HashSet::new();
    emails.retain(|email| seen.insert(email.clone()));
    if phones.len() > customer::MAX_CONTACTS || emails.len() > customer::MAX_CONTACTS {
        violations.push(FieldViolation::new(
            "phones",
            format!(
                "at most {} phones and {} emails",
                customer::MAX_CONTACTS,
                customer::MAX_CONTACTS
            ),
        ));
    }
    let account_number = (!request.account_number.trim().is_empty())
        .then(|| {
            collect(
                AccountNumber::parse("account_number", &request.account_number),
                &mut violations,
            )
        })
        .flatten();
    let address = optional_text("address", &request.address, 500, &mut violations);
    let tags: BTreeSet<Tag> = request
        .tags
        .iter()
        .filter_map(|raw| collect(Tag::parse("tags", raw), &mut violations))
        .collect();
    if tags.len() > customer::MAX_TAGS {
        violations.push(FieldViolation::new(
            "tags",
            format!("at most {}", customer::MAX_TAGS),
        ));
    }
    let consent = customer::consent_from_proto(request.recording_consent);
    if consent.is_none() {
        violations.push(FieldViolation::new(
            "recording_consent",
            "must be given, refused or unspecified",
        ));
    }
    if request.phones.is_empty() && request.emails.is_empty() && request.account_number.is_empty() {
        violations.push(FieldViolation::new(
            "phones",
            "give at least one phone, email or account number",
        ));
    }
    let (Some(segment), Some(consent), true) = (segment, consent, violations.is_empty()) else {
        return Err(invalid(violations));
    };
    Ok(NewCustomer {
        segment,
        name,
        phones,
        emails,
        account_number,
        address,
        tags,
        consent,
    })
}

/// Parses the customer id and request id of a change, and whatever `parse` needs.
fn parse_change<T>(
    customer_id: &str,
    request_id: &str,
    parse: impl FnOnce(&mut Vec<FieldViolation>) -> Option<T>,
) -> Result<(Uuid, Option<String>, T), Status> {
    let mut violations = Vec::new();
    let customer_id = parse_id("customer_id", customer_id, &mut violations);
    let request_id = parse_request_id(request_id, &mut violations);
    let parsed = parse(&mut violations);
    match (customer_id, parsed, violations.is_empty()) {
        (Some(customer_id), Some(parsed), true) => Ok((customer_id, request_id, parsed)),
        _ => Err(invalid(violations)),
    }
}

#[tonic::async_trait]
impl CustomerService for CustomerGrpc {
    async fn register_customer(
        &self,
        request: Request<proto::RegisterCustomerRequest>,
    ) -> Result<Response<proto::RegisterCustomerResponse>, Status> {
        let principal = authorize(&request, CUSTOMER_KEEPERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let request_id = parse_request_id(&body.request_id, &mut violations);
        if !violations.is_empty() {
            return Err(invalid(violations));
        }
        let new = parse_register(body)?;
        if !new.phones.is_empty() || !new.emails.is_empty() {
            may_name_by(&principal, "phone or email")?;
        }
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let context = CommandContext::from_caller(principal.clone());
        let view = self
            .customers
            .register(&context, request_id.as_deref(), hash, new)
            .await
            .map_err(status)?;
        tracing::info!(customer_id = %view.customer_id, actor = %principal.subject, "customer registered");
        Ok(Response::new(proto::RegisterCustomerResponse {
            customer: Some(to_proto(view, &principal)),
        }))
    }

    async fn identify_customer(
        &self,
        request: Request<proto::IdentifyCustomerRequest>,
    ) -> Result<Response<proto::IdentifyCustomerResponse>, Status> {
        let principal = authorize(&request, CUSTOMER_KEEPERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        parse_request_id(&body.request_id, &mut violations);
        let identity = parse_identity("identity", body.identity.as_ref(), &mut violations);
        let segment = parse_segment(
            "segment",
            body.segment,
            Some(Segment::Consumer),
            &mut violations,
        );
        let name = optional_text("name", &body.name, 200, &mut violations);
        let (Some(identity), Some(segment), true) = (identity, segment, violations.is_empty())
        else {
            return Err(invalid(violations));
        };
        if !matches!(identity, Identity::Account(_)) {
            may_name_by(&principal, identity.kind())?;
        }
        let context = CommandContext::from_caller(principal.clone());
        let (view, registered) = self
            .customers
            .identify(&context, &identity, segment, name.as_deref())
            .await
            .map_err(status)?;
        Ok(Response::new(proto::IdentifyCustomerResponse {
            customer: Some(to_proto(view, &principal)),
            registered,
        }))
    }

    async fn find_customer(
        &self,
        request: Request<proto::FindCustomerRequest>,
    ) -> Result<Response<proto::FindCustomerResponse>, Status> {
        let principal = authorize(&request, CUSTOMER_READERS)?;
        // Finding by a phone or email would tell a role that sees them masked whose they
        // are; account numbers are business identifiers.
        let mut violations = Vec::new();
        let identity = parse_identity(
            "identity",
            request.get_ref().identity.as_ref(),
            &mut violations,
        );
        let Some(identity) = identity else {
            return Err(invalid(violations));
        };
        if !matches!(identity, Identity::Account(_)) && !principal.role.sees_personal_data() {
            return Err(Status::permission_denied(format!(
                "role {} may not find customers by {}",
                principal.role,
                identity.kind()
            )));
        }
        let view = self.customers.find(&identity).await.map_err(status)?;
        Ok(Response::new(proto::FindCustomerResponse {
            customer: Some(to_proto(view, &principal)),
        }))
    }

    async fn get_customer(
        &self,
        request: Request<proto::GetCustomerRequest>,
    ) -> Result<Response<proto::GetCustomerResponse>, Status> {
        let principal = authorize(&request, CUSTOMER_READERS)?;
        let mut violations = Vec::new();
        let Some(customer_id) = parse_id(
            "customer_id",
            &request.get_ref().customer_id,
            &mut violations,
        ) else {
            return Err(invalid(violations));
        };
        let view = self.customers.get(customer_id).await.map_err(status)?;
        Ok(Response::new(proto::GetCustomerResponse {
            customer: Some(to_proto(view, &principal)),
        }))
    }

    async fn list_customers(
        &self,
        request: Request<proto::ListCustomersRequest>,
    ) -> Result<Response<proto::ListCustomersResponse>, Status> {
        let principal = authorize(&request, CUSTOMER_READERS)?;
        let body = request.get_ref();
        let (size, after) = paging::parse(body.page_size, &body.page_token)?;
        let mut violations = Vec::new();
        let segment = match customer::segment_from_proto(body.segment) {
            Some(segment) => segment,
            None => {
                parse_segment("segment", body.segment, None, &mut violations);
                None
            }
        };
        let tag = (!body.tag.trim().is_empty())
            .then(|| collect(Tag::parse("tag", &body.tag), &mut violations))
            .flatten();
        if !violations.is_empty() {
            return Err(invalid(violations));
        }
        let (views, next) = self
            .customers
            .list(&CustomerFilter { segment, tag }, size, after)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ListCustomersResponse {
            customers: views
                .into_iter()
                .map(|view| to_proto(view, &principal))
                .collect(),
            next_page_token: paging::token(next),
        }))
    }

    async fn add_customer_contact(
        &self,
        request: Request<proto::AddCustomerContactRequest>,
    ) -> Result<Response<proto::AddCustomerContactResponse>, Status> {
        let principal = authorize(&request, CUSTOMER_KEEPERS)?;
        let body = request.get_ref();
        let (customer_id, request_id, identity) =
            parse_change(&body.customer_id, &body.request_id, |violations| {
                let identity = parse_identity("contact", body.contact.as_ref(), violations)?;
                if matches!(identity, Identity::Account(_)) {
                    violations.push(FieldViolation::new(
                        "contact",
                        "must be a phone or an email",
                    ));
                    return None;
                }
                Some(identity)
            })?;
        may_name_by(&principal, identity.kind())?;
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let (customer, _) = self
            .change(
                principal,
                customer_id,
                request_id,
                hash,
                CustomerChange::AddContact(identity),
            )
            .await?;
        Ok(Response::new(proto::AddCustomerContactResponse {
            customer: Some(customer),
        }))
    }

    async fn update_customer(
        &self,
        request: Request<proto::UpdateCustomerRequest>,
    ) -> Result<Response<proto::UpdateCustomerResponse>, Status> {
        let principal = authorize(&request, CUSTOMER_KEEPERS)?;
        let body = request.get_ref();
        let (customer_id, request_id, (name, address)) =
            parse_change(&body.customer_id, &body.request_id, |violations| {
                let name = optional_text("name", &body.name, 200, violations);
                let address = optional_text("address", &body.address, 500, violations);
                Some((name, address))
            })?;
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let (customer, _) = self
            .change(
                principal,
                customer_id,
                request_id,
                hash,
                CustomerChange::Details { name, address },
            )
            .await?;
        Ok(Response::new(proto::UpdateCustomerResponse {
            customer: Some(customer),
        }))
    }

    async fn tag_customer(
        &self,
        request: Request<proto::TagCustomerRequest>,
    ) -> Result<Response<proto::TagCustomerResponse>, Status> {
        let principal = authorize(&request, CUSTOMER_KEEPERS)?;
        let body = request.get_ref();
        let (customer_id, request_id, tag) =
            parse_change(&body.customer_id, &body.request_id, |violations| {
                collect(Tag::parse("tag", &body.tag), violations)
            })?;
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let (customer, _) = self
            .change(
                principal,
                customer_id,
                request_id,
                hash,
                CustomerChange::Tag(tag),
            )
            .await?;
        Ok(Response::new(proto::TagCustomerResponse {
            customer: Some(customer),
        }))
    }

    async fn untag_customer(
        &self,
        request: Request<proto::UntagCustomerRequest>,
    ) -> Result<Response<proto::UntagCustomerResponse>, Status> {
        let principal = authorize(&request, CUSTOMER_KEEPERS)?;
        let body = request.get_ref();
        let (customer_id, request_id, tag) =
            parse_change(&body.customer_id, &body.request_id, |violations| {
                collect(Tag::parse("tag", &body.tag), violations)
            })?;
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let (customer, _) = self
            .change(
                principal,
                customer_id,
                request_id,
                hash,
                CustomerChange::Untag(tag),
            )
            .await?;
        Ok(Response::new(proto::UntagCustomerResponse {
            customer: Some(customer),
        }))
    }

    async fn record_consent(
        &self,
        request: Request<proto::RecordConsentRequest>,
    ) -> Result<Response<proto::RecordConsentResponse>, Status> {
        let principal = authorize(&request, CUSTOMER_KEEPERS)?;
        let body = request.get_ref();
        let (customer_id, request_id, consent) =
            parse_change(&body.customer_id, &body.request_id, |violations| {
                match customer::consent_from_proto(body.recording_consent) {
                    Some(crate::customer::RecordingConsent::Unknown) | None => {
                        violations.push(FieldViolation::new(
                            "recording_consent",
                            "must be given or refused",
                        ));
                        None
                    }
                    consent => consent,
                }
            })?;
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let (customer, _) = self
            .change(
                principal,
                customer_id,
                request_id,
                hash,
                CustomerChange::Consent(consent),
            )
            .await?;
        Ok(Response::new(proto::RecordConsentResponse {
            customer: Some(customer),
        }))
    }

    async fn add_project(
        &self,
        request: Request<proto::AddProjectRequest>,
    ) -> Result<Response<proto::AddProjectResponse>, Status> {
        let principal = authorize(&request, CUSTOMER_KEEPERS)?;
        let body = request.get_ref();
        let (customer_id, request_id, (name, site)) =
            parse_change(&body.customer_id, &body.request_id, |violations| {
                let name = collect(customer::text("name", &body.name, true, 200), violations);
                let site = collect(customer::text("site", &body.site, false, 500), violations);
                Some((name?, site?))
            })?;
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let (customer, created) = self
            .change(
                principal,
                customer_id,
                request_id,
                hash,
                CustomerChange::AddProject { name, site },
            )
            .await?;
        Ok(Response::new(proto::AddProjectResponse {
            customer: Some(customer),
            project_id: created.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    async fn add_stakeholder(
        &self,
        request: Request<proto::AddStakeholderRequest>,
    ) -> Result<Response<proto::AddStakeholderResponse>, Status> {
        let principal = authorize(&request, CUSTOMER_KEEPERS)?;
        let body = request.get_ref();
        let (customer_id, request_id, (project_id, stakeholder)) =
            parse_change(&body.customer_id, &body.request_id, |violations| {
                let project_id = parse_id("project_id", &body.project_id, violations);
                let role = customer::stakeholder_role_from_proto(body.role);
                if role.is_none() {
                    violations.push(FieldViolation::new(
                        "role",
                        "must be one of owner, designer, contractor, property manager, \
                         purchaser, other",
                    ));
                }
                let name = collect(customer::text("name", &body.name, true, 200), violations);
                let phone = (!body.phone.trim().is_empty())
                    .then(|| collect(customer::phone("phone", &body.phone), violations))
                    .flatten();
                let email = (!body.email.trim().is_empty())
                    .then(|| collect(EmailAddress::parse("email", &body.email), violations))
                    .flatten();
                if body.phone.trim().is_empty() && body.email.trim().is_empty() {
                    violations.push(FieldViolation::new(
                        "phone",
                        "give a phone or an email to reach the stakeholder by",
                    ));
                }
                Some((
                    project_id?,
                    NewStakeholder {
                        role: role?,
                        name: name?,
                        phone,
                        email,
                    },
                ))
            })?;
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let (customer, created) = self
            .change(
                principal,
                customer_id,
                request_id,
                hash,
                CustomerChange::AddStakeholder {
                    project_id,
                    stakeholder,
                },
            )
            .await?;
        Ok(Response::new(proto::AddStakeholderResponse {
            customer: Some(customer),
            stakeholder_id: created.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    async fn merge_customers(
        &self,
        request: Request<proto::MergeCustomersRequest>,
    ) -> Result<Response<proto::MergeCustomersResponse>, Status> {
        let principal = authorize(&request, CUSTOMER_MERGERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let request_id = parse_request_id(&body.request_id, &mut violations);
        let merged_id = parse_id("merged_id", &body.merged_id, &mut violations);
        let survivor_id = parse_id("survivor_id", &body.survivor_id, &mut violations);
        let (Some(merged_id), Some(survivor_id), true) =
            (merged_id, survivor_id, violations.is_empty())
        else {
            return Err(invalid(violations));
        };
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let context = CommandContext::from_caller(principal.clone());
        let survivor = self
            .customers
            .merge(
                &context,
                request_id.as_deref(),
                hash,
                merged_id,
                survivor_id,
            )
            .await
            .map_err(status)?;
        tracing::info!(%merged_id, %survivor_id, actor = %principal.subject, "customers merged");
        Ok(Response::new(proto::MergeCustomersResponse {
            survivor: Some(to_proto(survivor, &principal)),
        }))
    }
}
