//! The gRPC edge: protobuf in, parsed domain values to the handlers, protobuf out. Cases
//! here, contacts in `contact`.

mod contact;
mod customer;
mod routing;

pub use contact::ContactGrpc;
pub use customer::CustomerGrpc;
pub use routing::RoutingGrpc;

use std::sync::Arc;

use svcops_bus::lag::Backpressure;
use svcops_kit::auth::{Role, authorize};
use svcops_kit::error::FieldViolation;
use svcops_kit::events::{CommandContext, to_timestamp};
use svcops_kit::paging;
use svcops_kit::projections::ProjectionAdmin;
use svcops_kit::{ApiError, Principal};
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as proto;
use svcops_proto::frontoffice::v1::case_service_server::CaseService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::app::{Cases, Contacts, Routing};
use crate::case::{
    self, AgentName, CaseCommand, CaseDetails, CaseError, CaseView, Category, Channel,
    CustomerPhone, EscalationLevel, Lifecycle, PhoneNumber, Priority, QueueName, Stage,
};
use crate::case_list::CaseFilter;

/// Who works cases through their lifecycle.
const CASE_WORKERS: &[Role] = &[Role::Agent, Role::Manager];
/// Closing and reopening also come from systems: the back office's callback confirms or
/// reopens.
const CASE_CONFIRMERS: &[Role] = &[Role::Agent, Role::Manager, Role::Service];
/// Who judges a public-opinion risk past.
const RISK_CLEARERS: &[Role] = &[Role::Manager];
/// Who reads lists of cases.
const CASE_LISTERS: &[Role] = &[
    Role::Agent,
    Role::Service,
    Role::Manager,
    Role::Qa,
    Role::Executive,
];

pub struct CaseGrpc {
    cases: Arc<Cases>,
    contacts: Arc<Contacts>,
    routing: Arc<Routing>,
    projections: ProjectionAdmin,
    /// New cases wait while the pipeline behind the front door lags past its bound.
    backpressure: Backpressure,
}

impl CaseGrpc {
    pub fn new(
        cases: Arc<Cases>,
        contacts: Arc<Contacts>,
        routing: Arc<Routing>,
        projections: ProjectionAdmin,
        backpressure: Backpressure,
    ) -> Self {
        Self {
            cases,
            contacts,
            routing,
            projections,
            backpressure,
        }
    }
}

/// Every error of the handlers says its own status (`From<…> for ApiError`).
pub(crate) fn status(error: impl Into<ApiError>) -> Status {
    error.into().into()
}

pub fn parse_case_id(field: &str, raw: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid(field, "must be a UUID").into())
}

fn to_proto(view: CaseView, principal: &Principal) -> proto::Case {
    let phone = view.details.customer_phone.known().map(|phone| {
        if principal.role.sees_personal_data() {
            phone.as_str().to_owned()
        } else {
            svcops_kit::personal_data::mask_phone(phone.as_str())
        }
    });
    proto::Case {
        case_id: view.case_id.to_string(),
        customer_id: view
            .customer_id
            .map(|customer_id| customer_id.to_string())
            .unwrap_or_default(),
        segment: view
            .details
            .segment
            .map(|segment| proto::CustomerSegment::from(segment).into())
            .unwrap_or_default(),
        project_id: view
            .details
            .project_id
            .map(|project_id| project_id.to_string())
            .unwrap_or_default(),
        customer_data_erased: matches!(view.details.customer_phone, CustomerPhone::Erased),
        customer_phone: phone.unwrap_or_default(),
        category: common::CaseCategory::from(view.details.category).into(),
        priority: common::Priority::from(view.details.priority).into(),
        channel: proto::Channel::from(view.details.channel).into(),
        summary: view.details.summary,
        product: view.details.product,
        serial_number: view.details.serial_number,
        state: match view.lifecycle {
            Lifecycle::Open => proto::CaseState::Open,
            Lifecycle::Triaged => proto::CaseState::Triaged,
            Lifecycle::Assigned => proto::CaseState::Assigned,
            Lifecycle::Waiting(_) => proto::CaseState::Waiting,
            Lifecycle::Resolved => proto::CaseState::Resolved,
            Lifecycle::Closed => proto::CaseState::Closed,
        }
        .into(),
        waiting_on: match view.lifecycle {
            Lifecycle::Waiting(on) => proto::WaitingOn::from(on).into(),
            _ => proto::WaitingOn::Unspecified.into(),
        },
        queue: view
            .queue
            .map(|queue| queue.as_str().to_owned())
            .unwrap_or_default(),
        assignee: view
            .assignee
            .map(|assignee| assignee.as_str().to_owned())
            .unwrap_or_default(),
        resolution: view.resolution.unwrap_or_default(),
        reopened_count: view.reopened_count,
        escalation_level: view
            .escalation
            .as_ref()
            .map_or(0, |(level, _)| u32::from(level.get())),
        escalation_reason: view
            .escalation
            .map(|(_, reason)| reason)
            .unwrap_or_default(),
        risk: view.risk.map(|note| proto::PublicOpinionRisk {
            trigger: proto::RiskTrigger::from(note.risk.trigger).into(),
            detail: note.risk.detail,
            flagged_at: Some(to_timestamp(note.flagged_at)),
        }),
        updated_at: Some(to_timestamp(view.updated_at)),
        opened_at: Some(to_timestamp(view.opened_at)),
        opened_by: Some(common::Actor {
            subject: view.opened_by,
            role: view.opened_by_role,
        }),
        version: view.version,
        flags: view
            .flags
            .into_iter()
            .map(|note| proto::CaseFlagNote {
                flag: proto::CaseFlag::from(note.flag).into(),
                detail: note.detail,
                flagged_at: Some(to_timestamp(note.flagged_at)),
            })
            .collect(),
    }
}

/// The request id, `None` when empty; a bad one is a violation.
pub(crate) fn parse_request_id(raw: &str, violations: &mut Vec<FieldViolation>) -> Option<String> {
    let request_id = raw.trim();
    if request_id.len() > 128 {
        violations.push(FieldViolation::new(
            "request_id",
            "must be at most 128 characters",
        ));
    } else if request_id.chars().any(char::is_control) {
        violations.push(FieldViolation::new(
            "request_id",
            "must not contain control characters",
        ));
    }
    (!request_id.is_empty()).then(|| request_id.to_owned())
}

/// The case a lifecycle request is about, and its request id.
struct Target {
    case_id: Uuid,
    request_id: Option<String>,
}

impl Target {
    /// `None` when either is bad (its violation recorded).
    fn parse(
        case_id: &str,
        request_id: &str,
        violations: &mut Vec<FieldViolation>,
    ) -> Option<Self> {
        let before = violations.len();
        let case_id = Uuid::parse_str(case_id.trim()).ok();
        if case_id.is_none() {
            violations.push(FieldViolation::new("case_id", "must be a UUID"));
        }
        let request_id = parse_request_id(request_id, violations);
        Some(Self {
            case_id: case_id?,
            request_id,
        })
        .filter(|_| violations.len() == before)
    }
}

/// A request about one case that gives words of a person's (`field`: a reason, a
/// resolution): the case and the words, or every violation.
fn parse_worded(
    case_id: &str,
    request_id: &str,
    field: &'static str,
    words: &str,
) -> Result<(Target, String), Status> {
    let mut violations = Vec::new();
    let target = Target::parse(case_id, request_id, &mut violations);
    let words = collect(case::note(field, words), &mut violations);
    match (target, words) {
        (Some(target), Some(words)) => Ok((target, words)),
        _ => Err(invalid(violations)),
    }
}

/// A domain value, or its violation recorded.
pub(crate) fn collect<T>(
    parsed: Result<T, CaseError>,
    violations: &mut Vec<FieldViolation>,
) -> Option<T> {
    parsed
        .map_err(|error| violations.extend(error.field_violation()))
        .ok()
}

pub(crate) fn invalid(violations: Vec<FieldViolation>) -> Status {
    ApiError::InvalidArgument(violations).into()
}

/// An open request, parsed: its request id, the case, and the customer it is for if the
/// caller named one.
type ParsedOpen = (Option<String>, CaseDetails, Option<Uuid>);

fn parse_open(request: &proto::OpenCaseRequest) -> Result<ParsedOpen, Status> {
    let mut violations = Vec::new();
    let request_id = parse_request_id(&request.request_id, &mut violations);
    let category = case::category_from_proto(request.category);
    if category.is_none() {
        violations.push(FieldViolation::new(
            "category",
            "must be one of consultation, complaint, repair, installation, return",
        ));
    }
    let priority = case::priority_from_proto(request.priority);
    if priority.is_none() {
        violations.push(FieldViolation::new("priority", "unknown priority"));
    }
    let channel = case::channel_from_proto(request.channel);
    if channel.is_none() {
        violations.push(FieldViolation::new("channel", "unknown channel"));
    }
    let mut uuid_of = |field: &'static str, raw: &str| {
        let raw = raw.trim();
        if raw.is_empty() {
            return None;
        }
        let id = Uuid::parse_str(raw).ok();
        if id.is_none() {
            violations.push(FieldViolation::new(field, "must be a UUID"));
        }
        id
    };
    let customer_id = uuid_of("customer_id", &request.customer_id);
    let project_id = uuid_of("project_id", &request.project_id);
    if !request.project_id.trim().is_empty() && request.customer_id.trim().is_empty() {
        violations.push(FieldViolation::new(
            "project_id",
            "needs the customer_id of the account it belongs to",
        ));
    }
    let details = CaseDetails::parse(
        &request.customer_phone,
        category.unwrap_or(Category::Consultation),
        priority.flatten().unwrap_or(Priority::Normal),
        channel.flatten().unwrap_or(Channel::Hotline),
        &request.summary,
        &request.product,
        &request.serial_number,
    );
    match details {
        Ok(mut details) if violations.is_empty() => {
            details.project_id = project_id;
            Ok((request_id, details, customer_id))
        }
        Ok(_) => Err(ApiError::InvalidArgument(violations).into()),
        Err(errors) => {
            violations.extend(errors.iter().filter_map(CaseError::field_violation));
            Err(ApiError::InvalidArgument(violations).into())
        }
    }
}

/// A list request's filters; every bad one is a violation.
fn parse_filter(
    request: &proto::ListCasesRequest,
) -> Result<(CaseFilter, Option<PhoneNumber>), Status> {
    let mut violations = Vec::new();
    let stage = match proto::CaseState::try_from(request.state) {
        Ok(proto::CaseState::Unspecified) => None,
        Ok(proto::CaseState::Open) => Some(Stage::Open),
        Ok(proto::CaseState::Triaged) => Some(Stage::Triaged),
        Ok(proto::CaseState::Assigned) => Some(Stage::Assigned),
        Ok(proto::CaseState::Waiting) => Some(Stage::Waiting),
        Ok(proto::CaseState::Resolved) => Some(Stage::Resolved),
        Ok(proto::CaseState::Closed) => Some(Stage::Closed),
        Err(_) => {
            violations.push(FieldViolation::new("state", "unknown state"));
            None
        }
    };
    fn optional(raw: &str) -> Option<&str> {
        Some(raw.trim()).filter(|text| !text.is_empty())
    }
    let queue = optional(&request.queue)
        .and_then(|raw| collect(QueueName::parse("queue", raw), &mut violations));
    let assignee = optional(&request.assignee)
        .and_then(|raw| collect(AgentName::parse("assignee", raw), &mut violations));
    let category = match request.category {
        0 => None,
        value => {
            let category = case::category_from_proto(value);
            if category.is_none() {
                violations.push(FieldViolation::new("category", "unknown category"));
            }
            category
        }
    };
    let customer = optional(&request.customer_phone)
        .and_then(|raw| collect(PhoneNumber::parse("customer_phone", raw), &mut violations));
    let segment = match crate::customer::segment_from_proto(request.segment) {
        Some(segment) => segment,
        None => {
            violations.push(FieldViolation::new("segment", "unknown segment"));
            None
        }
    };
    let mut uuid_of = |field: &'static str, raw: &str| {
        optional(raw).and_then(|raw| match Uuid::parse_str(raw) {
            Ok(id) => Some(id),
            Err(_) => {
                violations.push(FieldViolation::new(field, "must be a UUID"));
                None
            }
        })
    };
    let customer_id = uuid_of("customer_id", &request.customer_id);
    let project_id = uuid_of("project_id", &request.project_id);
    let min_escalation = match request.min_escalation_level {
        0 => None,
        level => collect(
            EscalationLevel::parse("min_escalation_level", level),
            &mut violations,
        ),
    };
    let updated_since = match &request.updated_since {
        None => None,
        Some(timestamp) => {
            let since = svcops_kit::events::from_timestamp(timestamp);
            if since.is_none() {
                violations.push(FieldViolation::new("updated_since", "not a valid time"));
            }
            since
        }
    };
    if !violations.is_empty() {
        return Err(invalid(violations));
    }
    let filter = CaseFilter {
        stage,
        queue,
        assignee,
        category,
        customer_key_id: None,
        customer_ids: customer_id.into_iter().collect(),
        segment,
        project_id,
        at_risk: request.at_risk,
        min_escalation,
        updated_since,
    };
    Ok((filter, customer))
}

impl CaseGrpc {
    /// Runs a lifecycle command for its caller; the case as it now is.
    async fn change(
        &self,
        principal: Principal,
        target: Target,
        command: CaseCommand,
    ) -> Result<Option<proto::Case>, Status> {
        self.backpressure.check().map_err(status)?;
        let context = CommandContext::from_caller(principal.clone());
        let view = self
            .cases
            .change(
                &context,
                target.case_id,
                target.request_id.as_deref(),
                command,
            )
            .await
            .map_err(status)?;
        tracing::info!(
            case_id = %view.case_id,
            state = view.lifecycle.name(),
            actor = %principal.subject,
            "case changed"
        );
        Ok(Some(to_proto(view, &principal)))
    }

    /// A lifecycle move routing works out from the case; `asked` is what the caller asked
    /// (hashed for idempotency).
    async fn change_routed(
        &self,
        principal: Principal,
        target: Target,
        asked: Vec<u8>,
        work_out: impl AsyncFnOnce(&Routing, &CaseView) -> Result<CaseCommand, crate::app::Error>,
    ) -> Result<Option<proto::Case>, Status> {
        self.backpressure.check().map_err(status)?;
        let context = CommandContext::from_caller(principal.clone());
        let routing = self.routing.clone();
        let view = self
            .cases
            .change_worked_out(
                &context,
                target.case_id,
                target.request_id.as_deref(),
                asked,
                async move |case: &CaseView| work_out(&routing, case).await,
            )
            .await
            .map_err(status)?;
        tracing::info!(
            case_id = %view.case_id,
            state = view.lifecycle.name(),
            queue = view.queue.as_ref().map(QueueName::as_str),
            assignee = view.assignee.as_ref().map(AgentName::as_str),
            actor = %principal.subject,
            "case routed"
        );
        Ok(Some(to_proto(view, &principal)))
    }
}

#[tonic::async_trait]
impl CaseService for CaseGrpc {
    async fn triage_case(
        &self,
        request: Request<proto::TriageCaseRequest>,
    ) -> Result<Response<proto::TriageCaseResponse>, Status> {
        let principal = authorize(&request, CASE_WORKERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let target = Target::parse(&body.case_id, &body.request_id, &mut violations);
        // No queue: routing picks the one that takes the case.
        let queue = if body.queue.trim().is_empty() {
            Some(None)
        } else {
            collect(QueueName::parse("queue", &body.queue), &mut violations).map(Some)
        };
        let priority = case::priority_from_proto(body.priority);
        if priority.is_none() {
            violations.push(FieldViolation::new("priority", "unknown priority"));
        }
        let (Some(target), Some(queue), Some(priority)) = (target, queue, priority) else {
            return Err(invalid(violations));
        };
        let case = match queue {
            Some(queue) => {
                self.change(principal, target, CaseCommand::Triage { queue, priority })
                    .await?
            }
            None => {
                let asked = svcops_kit::events::request_hash(&[
                    target.case_id.to_string().as_bytes(),
                    b"triage-routed",
                    &body.priority.to_le_bytes(),
                ]);
                self.change_routed(
                    principal,
                    target,
                    asked,
                    async move |routing: &Routing, case: &CaseView| {
                        routing.triage(case, priority).await
                    },
                )
                .await?
            }
        };
        Ok(Response::new(proto::TriageCaseResponse { case }))
    }

    async fn assign_case(
        &self,
        request: Request<proto::AssignCaseRequest>,
    ) -> Result<Response<proto::AssignCaseResponse>, Status> {
        let principal = authorize(&request, CASE_WORKERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let target = Target::parse(&body.case_id, &body.request_id, &mut violations);
        // No assignee: routing picks the agent who gets the case.
        let assignee = if body.assignee.trim().is_empty() {
            Some(None)
        } else {
            collect(
                AgentName::parse("assignee", &body.assignee),
                &mut violations,
            )
            .map(Some)
        };
        let (Some(target), Some(assignee)) = (target, assignee) else {
            return Err(invalid(violations));
        };
        let case = match assignee {
            Some(assignee) => {
                // Hashed as an assignment always was.
                let asked = CaseCommand::Assign {
                    assignee: assignee.clone(),
                }
                .request_hash(target.case_id);
                self.change_routed(
                    principal,
                    target,
                    asked,
                    async move |routing: &Routing, case: &CaseView| {
                        routing.assign_to(case, assignee).await
                    },
                )
                .await?
            }
            None => {
                let asked = svcops_kit::events::request_hash(&[
                    target.case_id.to_string().as_bytes(),
                    b"assign-next",
                ]);
                self.change_routed(
                    principal,
                    target,
                    asked,
                    async move |routing: &Routing, case: &CaseView| routing.assign_next(case).await,
                )
                .await?
            }
        };
        Ok(Response::new(proto::AssignCaseResponse { case }))
    }

    async fn set_case_waiting(
        &self,
        request: Request<proto::SetCaseWaitingRequest>,
    ) -> Result<Response<proto::SetCaseWaitingResponse>, Status> {
        let principal = authorize(&request, CASE_WORKERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let target = Target::parse(&body.case_id, &body.request_id, &mut violations);
        let on = case::waiting_on_from_proto(body.waiting_on);
        if on.is_none() {
            violations.push(FieldViolation::new(
                "waiting_on",
                "must be WAITING_ON_CUSTOMER or WAITING_ON_MIDDLE_OFFICE",
            ));
        }
        let reason = collect(case::note("reason", &body.reason), &mut violations);
        let (Some(target), Some(on), Some(reason)) = (target, on, reason) else {
            return Err(invalid(violations));
        };
        let case = self
            .change(principal, target, CaseCommand::Wait { on, reason })
            .await?;
        Ok(Response::new(proto::SetCaseWaitingResponse { case }))
    }

    async fn resume_case(
        &self,
        request: Request<proto::ResumeCaseRequest>,
    ) -> Result<Response<proto::ResumeCaseResponse>, Status> {
        let principal = authorize(&request, CASE_WORKERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let Some(target) = Target::parse(&body.case_id, &body.request_id, &mut violations) else {
            return Err(invalid(violations));
        };
        let case = self.change(principal, target, CaseCommand::Resume).await?;
        Ok(Response::new(proto::ResumeCaseResponse { case }))
    }

    async fn resolve_case(
        &self,
        request: Request<proto::ResolveCaseRequest>,
    ) -> Result<Response<proto::ResolveCaseResponse>, Status> {
        let principal = authorize(&request, CASE_WORKERS)?;
        let body = request.get_ref();
        let (target, resolution) = parse_worded(
            &body.case_id,
            &body.request_id,
            "resolution",
            &body.resolution,
        )?;
        let case = self
            .change(principal, target, CaseCommand::Resolve { resolution })
            .await?;
        Ok(Response::new(proto::ResolveCaseResponse { case }))
    }

    async fn close_case(
        &self,
        request: Request<proto::CloseCaseRequest>,
    ) -> Result<Response<proto::CloseCaseResponse>, Status> {
        let principal = authorize(&request, CASE_CONFIRMERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let Some(target) = Target::parse(&body.case_id, &body.request_id, &mut violations) else {
            return Err(invalid(violations));
        };
        let case = self.change(principal, target, CaseCommand::Close).await?;
        Ok(Response::new(proto::CloseCaseResponse { case }))
    }

    async fn reopen_case(
        &self,
        request: Request<proto::ReopenCaseRequest>,
    ) -> Result<Response<proto::ReopenCaseResponse>, Status> {
        let principal = authorize(&request, CASE_CONFIRMERS)?;
        let body = request.get_ref();
        let (target, reason) =
            parse_worded(&body.case_id, &body.request_id, "reason", &body.reason)?;
        let case = self
            .change(principal, target, CaseCommand::Reopen { reason })
            .await?;
        Ok(Response::new(proto::ReopenCaseResponse { case }))
    }

    async fn escalate_case(
        &self,
        request: Request<proto::EscalateCaseRequest>,
    ) -> Result<Response<proto::EscalateCaseResponse>, Status> {
        let principal = authorize(&request, CASE_WORKERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let target = Target::parse(&body.case_id, &body.request_id, &mut violations);
        let level = collect(EscalationLevel::parse("level", body.level), &mut violations);
        let reason = collect(case::note("reason", &body.reason), &mut violations);
        let (Some(target), Some(level), Some(reason)) = (target, level, reason) else {
            return Err(invalid(violations));
        };
        let case = self
            .change(principal, target, CaseCommand::Escalate { level, reason })
            .await?;
        Ok(Response::new(proto::EscalateCaseResponse { case }))
    }

    async fn flag_case_risk(
        &self,
        request: Request<proto::FlagCaseRiskRequest>,
    ) -> Result<Response<proto::FlagCaseRiskResponse>, Status> {
        let principal = authorize(&request, CASE_WORKERS)?;
        let body = request.get_ref();
        let (target, reason) =
            parse_worded(&body.case_id, &body.request_id, "reason", &body.reason)?;
        let case = self
            .change(principal, target, CaseCommand::FlagRisk { reason })
            .await?;
        Ok(Response::new(proto::FlagCaseRiskResponse { case }))
    }

    async fn clear_case_risk(
        &self,
        request: Request<proto::ClearCaseRiskRequest>,
    ) -> Result<Response<proto::ClearCaseRiskResponse>, Status> {
        let principal = authorize(&request, RISK_CLEARERS)?;
        let body = request.get_ref();
        let (target, reason) =
            parse_worded(&body.case_id, &body.request_id, "reason", &body.reason)?;
        let case = self
            .change(principal, target, CaseCommand::ClearRisk { reason })
            .await?;
        Ok(Response::new(proto::ClearCaseRiskResponse { case }))
    }

    async fn open_case(
        &self,
        request: Request<proto::OpenCaseRequest>,
    ) -> Result<Response<proto::OpenCaseResponse>, Status> {
        let principal = authorize(&request, &[Role::Agent, Role::Service, Role::Manager])?;
        let (request_id, details, customer) = parse_open(request.get_ref())?;
        self.backpressure.check().map_err(status)?;
        let context = CommandContext::from_caller(principal.clone());
        let view = self
            .cases
            .open_for(&context, request_id.as_deref(), details, customer)
            .await
            .map_err(status)?;
        tracing::info!(case_id = %view.case_id, actor = %principal.subject, "case opened");
        Ok(Response::new(proto::OpenCaseResponse {
            case: Some(to_proto(view, &principal)),
        }))
    }

    async fn get_case_progress(
        &self,
        request: Request<proto::GetCaseProgressRequest>,
    ) -> Result<Response<proto::GetCaseProgressResponse>, Status> {
        let principal = authorize(&request, &[Role::Service, Role::Agent, Role::Manager])?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let case_id = Uuid::parse_str(body.case_id.trim()).ok();
        if case_id.is_none() {
            violations.push(FieldViolation::new("case_id", "must be a UUID"));
        }
        let phone = if body.customer_phone.trim().is_empty() {
            if principal.role == Role::Service {
                // A self-service channel answers a customer: only about their own cases.
                violations.push(FieldViolation::new(
                    "customer_phone",
                    "self-service must give the phone the case was opened with",
                ));
            }
            None
        } else {
            collect(
                PhoneNumber::parse("customer_phone", &body.customer_phone),
                &mut violations,
            )
        };
        let (Some(case_id), true) = (case_id, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        let (case, progress) = self
            .cases
            .progress(case_id, phone.as_ref())
            .await
            .map_err(status)?;
        let state = to_proto(case.clone(), &principal).state;
        Ok(Response::new(proto::GetCaseProgressResponse {
            case_id: case.case_id.to_string(),
            state,
            updated_at: Some(to_timestamp(
                progress
                    .updated_at
                    .map_or(case.updated_at, |at| at.max(case.updated_at)),
            )),
            visits: progress
                .visits
                .into_iter()
                .map(|visit| proto::VisitProgress {
                    work_order_id: visit.work_order_id.to_string(),
                    stage: proto::VisitStage::from(visit.stage).into(),
                    window_start: visit.window.map(|(start, _)| to_timestamp(start)),
                    window_end: visit.window.map(|(_, end)| to_timestamp(end)),
                    eta: visit.eta.map(to_timestamp),
                    arrived_at: visit.arrived_at.map(to_timestamp),
                    outcome: visit.outcome.unwrap_or_default(),
                    technician_assigned: visit.technician.is_some(),
                })
                .collect(),
        }))
    }

    async fn get_case(
        &self,
        request: Request<proto::GetCaseRequest>,
    ) -> Result<Response<proto::GetCaseResponse>, Status> {
        let principal = authorize(
            &request,
            &[
                Role::Agent,
                Role::Service,
                Role::Manager,
                Role::Qa,
                Role::Executive,
                Role::Technician,
            ],
        )?;
        let case_id = parse_case_id("case_id", &request.get_ref().case_id)?;
        let view = self.cases.get(case_id).await.map_err(status)?;
        // Conversations go to those who may read contacts (a technician gets the case
        // without its transcripts, which can hold what a customer said about themselves).
        let contacts =
            if contact::READERS.contains(&principal.role) || principal.role == Role::Admin {
                self.contacts.of_case(case_id).await.map_err(status)?
            } else {
                Vec::new()
            };
        Ok(Response::new(proto::GetCaseResponse {
            case: Some(to_proto(view, &principal)),
            contacts: contacts.into_iter().map(contact::to_proto).collect(),
        }))
    }

    async fn list_cases(
        &self,
        request: Request<proto::ListCasesRequest>,
    ) -> Result<Response<proto::ListCasesResponse>, Status> {
        let principal = authorize(&request, CASE_LISTERS)?;
        let (size, after) =
            paging::parse(request.get_ref().page_size, &request.get_ref().page_token)?;
        let (filter, customer) = parse_filter(request.get_ref())?;
        // Listing by phone would tell a role that sees phones masked whether a number is a
        // customer's.
        if customer.is_some() && !principal.role.sees_personal_data() {
            return Err(Status::permission_denied(format!(
                "role {} may not list cases by customer phone",
                principal.role
            )));
        }
        let (views, next) = self
            .cases
            .list(filter, customer.as_ref(), size, after)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ListCasesResponse {
            cases: views
                .into_iter()
                .map(|view| to_proto(view, &principal))
                .collect(),
            next_page_token: paging::token(next),
        }))
    }

    async fn erase_customer_data(
        &self,
        request: Request<proto::EraseCustomerDataRequest>,
    ) -> Result<Response<proto::EraseCustomerDataResponse>, Status> {
        let principal = authorize(&request, &[Role::Manager])?;
        let body = request.get_ref();
        let context = CommandContext::from_caller(principal.clone());
        let erased = match (body.customer_phone.trim(), body.customer_id.trim()) {
            (phone, "") if !phone.is_empty() => {
                let phone = PhoneNumber::parse("customer_phone", phone).map_err(status)?;
                self.cases.erase_customer(&context, &phone).await
            }
            ("", customer_id) if !customer_id.is_empty() => {
                let customer_id = parse_case_id("customer_id", customer_id)?;
                self.cases.erase_customer_id(&context, customer_id).await
            }
            _ => {
                return Err(invalid(vec![FieldViolation::new(
                    "customer_phone",
                    "give exactly one of customer_phone and customer_id",
                )]));
            }
        }
        .map_err(status)?;
        tracing::info!(erased, actor = %principal.subject, "customer data erasure requested");
        Ok(Response::new(proto::EraseCustomerDataResponse { erased }))
    }

    async fn list_projections(
        &self,
        request: Request<proto::ListProjectionsRequest>,
    ) -> Result<Response<proto::ListProjectionsResponse>, Status> {
        Ok(Response::new(proto::ListProjectionsResponse {
            report: Some(self.projections.list(&request).await?),
        }))
    }

    async fn rebuild_projection(
        &self,
        request: Request<proto::RebuildProjectionRequest>,
    ) -> Result<Response<proto::RebuildProjectionResponse>, Status> {
        let name = request.get_ref().name.clone();
        Ok(Response::new(proto::RebuildProjectionResponse {
            building: Some(self.projections.rebuild_named(&request, &name).await?),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_requests_report_every_bad_field() {
        let status = parse_open(&proto::OpenCaseRequest {
            customer_phone: "x".into(),
            category: 0,
            summary: String::new(),
            ..Default::default()
        })
        .expect_err("invalid");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        use tonic_types::StatusExt;
        let details = status.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .expect("violations")
            .field_violations
            .iter()
            .map(|violation| violation.field.clone())
            .collect();
        assert_eq!(fields, ["category", "customer_phone", "summary"]);
    }
}
