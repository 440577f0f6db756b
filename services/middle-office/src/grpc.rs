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

use crate::app::{WorkOrderView, WorkOrders};
use crate::work_order::Lifecycle;

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
    proto::WorkOrder {
        work_order_id: view.details.work_order_id.to_string(),
        case_id: view.details.case_id.to_string(),
        kind: proto::WorkOrderKind::from(view.details.kind).into(),
        state: match view.lifecycle {
            Lifecycle::Open => proto::WorkOrderState::Open,
        }
        .into(),
        product: view.details.product,
        serial_number: view.details.serial_number,
        summary: view.details.summary,
        opened_at: Some(to_timestamp(view.opened_at)),
        version: view.version,
    }
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
