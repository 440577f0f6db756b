//! The gRPC edge of the middle office.

use std::sync::Arc;

use svcops_kit::ApiError;
use svcops_kit::auth::{Role, authorize};
use svcops_kit::events::to_timestamp;
use svcops_kit::paging;
use svcops_kit::projections::ProjectionAdmin;
use svcops_proto::middleoffice::v1 as proto;
use svcops_proto::middleoffice::v1::work_order_service_server::WorkOrderService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use svcops_kit::Principal;
use svcops_kit::error::FieldViolation;
use svcops_kit::events::{CommandContext, from_timestamp};

use crate::app::{WorkOrderView, WorkOrders};
use crate::pricing::{self, Requested};
use crate::rma::{self, Rma};

fn return_to_proto(rma: Rma, version: u64) -> proto::Return {
    let authorised = rma.authorised.unwrap_or_else(|| rma::Authorised {
        rma_id: Uuid::nil(),
        work_order_id: Uuid::nil(),
        case_id: Uuid::nil(),
        product: String::new(),
        serial_number: String::new(),
    });
    proto::Return {
        rma_id: authorised.rma_id.to_string(),
        work_order_id: authorised.work_order_id.to_string(),
        case_id: authorised.case_id.to_string(),
        state: match rma.state {
            None => proto::ReturnState::Unspecified,
            Some(rma::State::Authorised) => proto::ReturnState::Authorised,
            Some(rma::State::ShippedByCustomer) => proto::ReturnState::ShippedByCustomer,
            Some(rma::State::AtFactory) => proto::ReturnState::AtFactory,
            Some(rma::State::Repaired) => proto::ReturnState::Repaired,
            Some(rma::State::Replaced) => proto::ReturnState::Replaced,
            Some(rma::State::ShippedBack) => proto::ReturnState::ShippedBack,
            Some(rma::State::Delivered) => proto::ReturnState::Delivered,
        }
        .into(),
        product: authorised.product,
        serial_number: authorised.serial_number,
        inbound_tracking: rma.inbound_tracking.unwrap_or_default(),
        outbound_tracking: rma.outbound_tracking.unwrap_or_default(),
        factory_note: rma.factory_note.unwrap_or_default(),
        version,
    }
}
use crate::work_order::codec::{line_to_proto, outcome_from_proto, punctuality_to_proto};
use crate::work_order::{Command, Lifecycle, Window};

/// Who agrees visits with customers: agents on the phone, the technical department, and
/// systems (a booking page).
const SCHEDULERS: &[Role] = &[Role::Agent, Role::Manager, Role::Service];
/// Who dispatches: the technical department.
const DISPATCHERS: &[Role] = &[Role::Manager];
/// Who records a return's steps: the department (the factory's steps are theirs only), and
/// the front office or a carrier's system (the customer's shipping, the delivery).
const RETURN_STEPPERS: &[Role] = &[Role::Manager, Role::Agent, Role::Service];
/// Who reports from the field: technicians (their own work orders) and the department.
const FIELD: &[Role] = &[Role::Technician, Role::Manager];

pub struct WorkOrderGrpc {
    orders: Arc<WorkOrders>,
    projections: ProjectionAdmin,
}

impl WorkOrderGrpc {
    pub fn new(orders: Arc<WorkOrders>, projections: ProjectionAdmin) -> Self {
        Self {
            orders,
            projections,
        }
    }
}

const READERS: &[Role] = &[
    Role::Technician,
    Role::Agent,
    Role::Manager,
    Role::Qa,
    Role::Executive,
    Role::Service,
];

fn parse_uuid(field: &str, raw: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid(field, "must be a UUID").into())
}

fn to_proto(view: WorkOrderView) -> proto::WorkOrder {
    let visit = view.visit;
    let charged_total_cents = visit.charged_total();
    let charges = visit.charges.iter().map(line_to_proto).collect();
    let (punctuality, punctuality_minutes) = visit
        .arrival
        .map(|(_, punctuality)| punctuality_to_proto(punctuality))
        .map_or((proto::Punctuality::Unspecified, 0), |(p, m)| (p, m));
    let (outcome, outcome_note) = visit
        .outcome
        .map(|(outcome, note)| (proto::VisitOutcome::from(outcome), note))
        .unwrap_or((proto::VisitOutcome::Unspecified, String::new()));
    proto::WorkOrder {
        work_order_id: view.details.work_order_id.to_string(),
        case_id: view.details.case_id.to_string(),
        kind: proto::WorkOrderKind::from(view.details.kind).into(),
        state: match view.lifecycle {
            Lifecycle::Open => proto::WorkOrderState::Open,
            Lifecycle::Scheduled => proto::WorkOrderState::Scheduled,
            Lifecycle::Dispatched => proto::WorkOrderState::Dispatched,
            Lifecycle::EnRoute => proto::WorkOrderState::EnRoute,
            Lifecycle::OnSite => proto::WorkOrderState::OnSite,
            Lifecycle::Completed => proto::WorkOrderState::Completed,
        }
        .into(),
        product: view.details.product,
        serial_number: view.details.serial_number,
        summary: view.details.summary,
        opened_at: Some(to_timestamp(view.opened_at)),
        version: view.version,
        window_start: visit.window.map(|window| to_timestamp(window.start)),
        window_end: visit.window.map(|window| to_timestamp(window.end)),
        reschedules: visit.reschedules,
        technician: visit.technician.unwrap_or_default(),
        eta: visit.eta.map(to_timestamp),
        arrived_at: visit.arrival.map(|(at, _)| to_timestamp(at)),
        punctuality: punctuality.into(),
        punctuality_minutes,
        outcome: outcome.into(),
        outcome_note,
        charged_total_cents,
        charges,
    }
}

fn invalid(violations: Vec<FieldViolation>) -> Status {
    ApiError::InvalidArgument(violations).into()
}

fn request_id(raw: &str, violations: &mut Vec<FieldViolation>) -> Option<String> {
    let raw = raw.trim();
    if raw.len() > 128 || raw.chars().any(char::is_control) {
        violations.push(FieldViolation::new(
            "request_id",
            "must be at most 128 characters, no control characters",
        ));
    }
    (!raw.is_empty()).then(|| raw.to_owned())
}

/// A time within a week before and eight weeks after now (a visit is agreed for the coming
/// weeks; a window may be recorded after the fact), to the microsecond the store keeps.
fn time(
    field: &'static str,
    timestamp: Option<&prost_types::Timestamp>,
    violations: &mut Vec<FieldViolation>,
) -> Option<time::OffsetDateTime> {
    let parsed = timestamp.and_then(from_timestamp).map(|time| {
        time.replace_nanosecond(time.nanosecond() / 1_000 * 1_000)
            .unwrap_or(time)
    });
    let now = svcops_kit::events::now_micros();
    let earliest = now - time::Duration::days(7);
    let latest = now + time::Duration::weeks(8);
    match parsed {
        Some(time) if (earliest..=latest).contains(&time) => Some(time),
        Some(_) => {
            violations.push(FieldViolation::new(
                field,
                "must be within a week before and eight weeks after now",
            ));
            None
        }
        None => {
            violations.push(FieldViolation::new(field, "must be a valid time"));
            None
        }
    }
}

/// Who reports a field step: a technician for themselves; the department for anyone.
fn reporter(principal: &Principal) -> Option<String> {
    (principal.role == Role::Technician).then(|| principal.subject.clone())
}

/// A technician's subject: 1 to 128 characters, no spaces or control characters.
fn technician(raw: &str, violations: &mut Vec<FieldViolation>) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty()
        || raw.chars().count() > 128
        || raw.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        violations.push(FieldViolation::new(
            "technician",
            "must be 1 to 128 characters without spaces",
        ));
        return None;
    }
    Some(raw.to_owned())
}

impl WorkOrderGrpc {
    /// Runs a step for its caller: a technician only on their own work orders.
    async fn step(
        &self,
        principal: Principal,
        work_order_id: uuid::Uuid,
        request_id: Option<String>,
        hash: Vec<u8>,
        command: Command,
    ) -> Result<Option<proto::WorkOrder>, Status> {
        let context = CommandContext::from_caller(principal);
        let view = self
            .orders
            .change(
                &context,
                work_order_id,
                request_id.as_deref(),
                hash,
                command,
            )
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?;
        tracing::info!(work_order_id = %view.details.work_order_id, state = view.lifecycle.name(), "work order changed");
        Ok(Some(to_proto(view)))
    }
}

fn work_order_id(raw: &str, violations: &mut Vec<FieldViolation>) -> Option<Uuid> {
    let id = Uuid::parse_str(raw.trim()).ok();
    if id.is_none() {
        violations.push(FieldViolation::new("work_order_id", "must be a UUID"));
    }
    id
}

#[tonic::async_trait]
impl WorkOrderService for WorkOrderGrpc {
    async fn get_work_order(
        &self,
        request: Request<proto::GetWorkOrderRequest>,
    ) -> Result<Response<proto::GetWorkOrderResponse>, Status> {
        authorize(&request, READERS)?;
        let id = parse_uuid("work_order_id", &request.get_ref().work_order_id)?;
        let view = self
            .orders
            .get(id)
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?;
        Ok(Response::new(proto::GetWorkOrderResponse {
            work_order: Some(to_proto(view)),
        }))
    }

    async fn list_work_orders(
        &self,
        request: Request<proto::ListWorkOrdersRequest>,
    ) -> Result<Response<proto::ListWorkOrdersResponse>, Status> {
        authorize(&request, READERS)?;
        let body = request.get_ref();
        let (size, before) = paging::parse(body.page_size, &body.page_token)?;
        let case_id = if body.case_id.is_empty() {
            None
        } else {
            Some(parse_uuid("case_id", &body.case_id)?)
        };
        let (views, next) = self
            .orders
            .list(case_id, size, before)
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?;
        Ok(Response::new(proto::ListWorkOrdersResponse {
            work_orders: views.into_iter().map(to_proto).collect(),
            next_page_token: paging::token(next),
        }))
    }

    async fn schedule_visit(
        &self,
        request: Request<proto::ScheduleVisitRequest>,
    ) -> Result<Response<proto::ScheduleVisitResponse>, Status> {
        let principal = authorize(&request, SCHEDULERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let id = work_order_id(&body.work_order_id, &mut violations);
        let request_id = request_id(&body.request_id, &mut violations);
        let start = time("window_start", body.window_start.as_ref(), &mut violations);
        let end = time("window_end", body.window_end.as_ref(), &mut violations);
        let window = match (start, end) {
            (Some(start), Some(end)) => match Window::new(start, end) {
                Ok(window) => Some(window),
                Err(crate::work_order::Error::Invalid { field, reason }) => {
                    violations.push(FieldViolation::new(field, reason));
                    None
                }
                Err(_) => None,
            },
            _ => None,
        };
        let (Some(id), Some(window), true) = (id, window, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let work_order = self
            .step(principal, id, request_id, hash, Command::Schedule(window))
            .await?;
        Ok(Response::new(proto::ScheduleVisitResponse { work_order }))
    }

    async fn dispatch_technician(
        &self,
        request: Request<proto::DispatchTechnicianRequest>,
    ) -> Result<Response<proto::DispatchTechnicianResponse>, Status> {
        let principal = authorize(&request, DISPATCHERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let id = work_order_id(&body.work_order_id, &mut violations);
        let request_id = request_id(&body.request_id, &mut violations);
        let technician = technician(&body.technician, &mut violations);
        let (Some(id), Some(technician), true) = (id, technician, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let work_order = self
            .step(
                principal,
                id,
                request_id,
                hash,
                Command::Dispatch { technician },
            )
            .await?;
        Ok(Response::new(proto::DispatchTechnicianResponse {
            work_order,
        }))
    }

    async fn report_en_route(
        &self,
        request: Request<proto::ReportEnRouteRequest>,
    ) -> Result<Response<proto::ReportEnRouteResponse>, Status> {
        let principal = authorize(&request, FIELD)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let id = work_order_id(&body.work_order_id, &mut violations);
        let request_id = request_id(&body.request_id, &mut violations);
        let eta = time("eta", body.eta.as_ref(), &mut violations);
        let (Some(id), Some(eta), true) = (id, eta, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let by = reporter(&principal);
        let work_order = self
            .step(
                principal,
                id,
                request_id,
                hash,
                Command::EnRoute { eta, by },
            )
            .await?;
        Ok(Response::new(proto::ReportEnRouteResponse { work_order }))
    }

    async fn record_arrival(
        &self,
        request: Request<proto::RecordArrivalRequest>,
    ) -> Result<Response<proto::RecordArrivalResponse>, Status> {
        let principal = authorize(&request, FIELD)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let id = work_order_id(&body.work_order_id, &mut violations);
        let request_id = request_id(&body.request_id, &mut violations);
        let (Some(id), true) = (id, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let at = svcops_kit::events::now_micros();
        let by = reporter(&principal);
        let work_order = self
            .step(principal, id, request_id, hash, Command::Arrive { at, by })
            .await?;
        Ok(Response::new(proto::RecordArrivalResponse { work_order }))
    }

    async fn complete_work_order(
        &self,
        request: Request<proto::CompleteWorkOrderRequest>,
    ) -> Result<Response<proto::CompleteWorkOrderResponse>, Status> {
        let principal = authorize(&request, FIELD)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let id = work_order_id(&body.work_order_id, &mut violations);
        let request_id = request_id(&body.request_id, &mut violations);
        let outcome = outcome_from_proto(body.outcome);
        if outcome.is_none() {
            violations.push(FieldViolation::new(
                "outcome",
                "must be fixed on site, needs parts, needs factory repair or not a product fault",
            ));
        }
        let note = body.note.trim().to_owned();
        if note.chars().count() > 2000 || note.chars().any(|c| c.is_control() && c != '\n') {
            violations.push(FieldViolation::new(
                "note",
                "must be at most 2000 characters, no control characters",
            ));
        }
        let (Some(id), Some(outcome), true) = (id, outcome, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let by = reporter(&principal);
        let work_order = self
            .step(
                principal,
                id,
                request_id,
                hash,
                Command::Complete { outcome, note, by },
            )
            .await?;
        Ok(Response::new(proto::CompleteWorkOrderResponse {
            work_order,
        }))
    }

    async fn charge_work_order(
        &self,
        request: Request<proto::ChargeWorkOrderRequest>,
    ) -> Result<Response<proto::ChargeWorkOrderResponse>, Status> {
        let principal = authorize(&request, FIELD)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let id = work_order_id(&body.work_order_id, &mut violations);
        let request_id = request_id(&body.request_id, &mut violations);
        // A charge always adds: only a request id makes a retry safe.
        if request_id.is_none() {
            violations.push(FieldViolation::new(
                "request_id",
                "is required: a retry without one would charge twice",
            ));
        }
        if body.lines.is_empty() || body.lines.len() > 50 {
            violations.push(FieldViolation::new("lines", "give 1 to 50 lines"));
        }
        let requested: Vec<Requested> = body
            .lines
            .iter()
            .map(|line| Requested {
                code: line.item_code.trim().to_ascii_uppercase(),
                quantity: line.quantity,
                unit_price: (line.unit_price_cents != 0).then_some(line.unit_price_cents),
            })
            .collect();
        let (Some(id), true) = (id, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let by = reporter(&principal);
        // A manager's charge stands as their approval of any deviation in it (only a
        // manager's: an admin operates svcops, it does not approve prices).
        let approved_by = (principal.role == Role::Manager).then(|| principal.subject.clone());
        let work_order = self
            .step(
                principal,
                id,
                request_id,
                hash,
                Command::Charge {
                    requested,
                    list: pricing::seeded(),
                    approved_by,
                    by,
                },
            )
            .await?;
        Ok(Response::new(proto::ChargeWorkOrderResponse { work_order }))
    }

    async fn get_price_list(
        &self,
        request: Request<proto::GetPriceListRequest>,
    ) -> Result<Response<proto::GetPriceListResponse>, Status> {
        authorize(&request, READERS)?;
        let list = pricing::seeded();
        Ok(Response::new(proto::GetPriceListResponse {
            version: list.version.to_owned(),
            items: list
                .items
                .iter()
                .map(|item| proto::PriceListItem {
                    item_code: item.code.to_owned(),
                    name: item.name.to_owned(),
                    unit_price_cents: item.unit_price,
                    free_units: item.free_units,
                })
                .collect(),
        }))
    }

    async fn authorize_return(
        &self,
        request: Request<proto::AuthorizeReturnRequest>,
    ) -> Result<Response<proto::AuthorizeReturnResponse>, Status> {
        let principal = authorize(&request, DISPATCHERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let id = work_order_id(&body.work_order_id, &mut violations);
        let request_id = request_id(&body.request_id, &mut violations);
        let (Some(id), true) = (id, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let context = CommandContext::from_caller(principal);
        let (rma, version) = self
            .orders
            .authorize_return(&context, id, request_id.as_deref(), hash)
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?;
        Ok(Response::new(proto::AuthorizeReturnResponse {
            rma: Some(return_to_proto(rma, version)),
        }))
    }

    async fn advance_return(
        &self,
        request: Request<proto::AdvanceReturnRequest>,
    ) -> Result<Response<proto::AdvanceReturnResponse>, Status> {
        let principal = authorize(&request, RETURN_STEPPERS)?;
        let body = request.get_ref();
        let mut violations = Vec::new();
        let rma_id = match Uuid::parse_str(body.rma_id.trim()) {
            Ok(id) => Some(id),
            Err(_) => {
                violations.push(FieldViolation::new("rma_id", "must be a UUID"));
                None
            }
        };
        let request_id = request_id(&body.request_id, &mut violations);
        let tracking = body.tracking_number.trim().to_ascii_uppercase();
        let note = body.note.trim().to_owned();
        let step = rma::step_from_proto(body.step, tracking.clone(), note.clone());
        let uses_tracking = matches!(
            step,
            Some(rma::Step::ShippedByCustomer { .. } | rma::Step::ShippedBack { .. })
        );
        let uses_note = matches!(
            step,
            Some(rma::Step::Repaired { .. } | rma::Step::Replaced { .. })
        );
        if !uses_tracking && !tracking.is_empty() {
            violations.push(FieldViolation::new(
                "tracking_number",
                "only for shipped by customer and shipped back",
            ));
        }
        if uses_note && note.is_empty() {
            violations.push(FieldViolation::new(
                "note",
                "say what the factory repaired or replaced",
            ));
        }
        if !uses_note && step.is_some() && !note.is_empty() {
            violations.push(FieldViolation::new(
                "note",
                "only for repaired and replaced",
            ));
        }
        match &step {
            None => violations.push(FieldViolation::new(
                "step",
                "must be shipped by customer, received at factory, repaired, replaced, \
                 shipped back or delivered",
            )),
            Some(rma::Step::ShippedByCustomer { .. } | rma::Step::ShippedBack { .. })
                if !(4..=40).contains(&tracking.len())
                    || !tracking
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-') =>
            {
                violations.push(FieldViolation::new(
                    "tracking_number",
                    "must be 4 to 40 letters, digits or '-'",
                ));
            }
            _ => {}
        }
        if note.chars().count() > 2000 || note.chars().any(|c| c.is_control() && c != '\n') {
            violations.push(FieldViolation::new(
                "note",
                "must be at most 2000 characters, no control characters",
            ));
        }
        let (Some(rma_id), Some(step), true) = (rma_id, step, violations.is_empty()) else {
            return Err(invalid(violations));
        };
        // The factory's own steps are the technical department's; the customer's shipping
        // and the delivery may come from the front office or a carrier's system.
        let factory_step = matches!(
            step,
            rma::Step::ReceivedAtFactory
                | rma::Step::Repaired { .. }
                | rma::Step::Replaced { .. }
                | rma::Step::ShippedBack { .. }
        );
        if factory_step && principal.role != Role::Manager && principal.role != Role::Admin {
            return Err(Status::permission_denied(
                "the factory's steps are the technical department's",
            ));
        }
        let hash = svcops_kit::events::message_hash(body, |body| body.request_id.clear());
        let context = CommandContext::from_caller(principal);
        let (rma, version) = self
            .orders
            .advance_return(&context, rma_id, request_id.as_deref(), hash, step)
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?;
        Ok(Response::new(proto::AdvanceReturnResponse {
            rma: Some(return_to_proto(rma, version)),
        }))
    }

    async fn get_return(
        &self,
        request: Request<proto::GetReturnRequest>,
    ) -> Result<Response<proto::GetReturnResponse>, Status> {
        authorize(&request, READERS)?;
        let rma_id = parse_uuid("rma_id", &request.get_ref().rma_id)?;
        let (rma, version) = self
            .orders
            .get_return(rma_id)
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?;
        Ok(Response::new(proto::GetReturnResponse {
            rma: Some(return_to_proto(rma, version)),
        }))
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
