//! The gRPC edge of the back office.

use std::sync::Arc;

use svcops_kit::ApiError;
use svcops_kit::auth::{Role, authorize};
use svcops_kit::events::to_timestamp;
use svcops_kit::projections::ProjectionAdmin;
use svcops_proto::backoffice::v1 as proto;
use svcops_proto::backoffice::v1::back_office_service_server::BackOfficeService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::app::BackOffice;
use crate::closed_loop::ClosedLoop;

pub struct BackOfficeGrpc {
    office: Arc<BackOffice>,
    projections: ProjectionAdmin,
}

impl BackOfficeGrpc {
    pub fn new(office: Arc<BackOffice>, projections: ProjectionAdmin) -> Self {
        Self {
            office,
            projections,
        }
    }
}

const READERS: &[Role] = &[
    Role::Qa,
    Role::Manager,
    Role::Executive,
    Role::Service,
    Role::Agent,
];

#[tonic::async_trait]
impl BackOfficeService for BackOfficeGrpc {
    async fn get_case_tracking(
        &self,
        request: Request<proto::GetCaseTrackingRequest>,
    ) -> Result<Response<proto::GetCaseTrackingResponse>, Status> {
        authorize(&request, READERS)?;
        let case_id = Uuid::parse_str(request.get_ref().case_id.trim())
            .map_err(|_| Status::from(ApiError::invalid("case_id", "must be a UUID")))?;
        let tracking = self
            .office
            .tracking(case_id)
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?;
        let started = tracking.sla.started.as_ref();
        Ok(Response::new(proto::GetCaseTrackingResponse {
            tracking: Some(proto::CaseTracking {
                case_id: case_id.to_string(),
                sla_policy: started.map(|s| s.policy.clone()).unwrap_or_default(),
                sla_started_at: started.map(|s| to_timestamp(s.started_at)),
                first_response_due: started.map(|s| to_timestamp(s.first_response_due)),
                resolution_due: started.map(|s| to_timestamp(s.resolution_due)),
                on_site_due: tracking.sla.on_site_due.map(to_timestamp),
                closed_loop_state: match tracking.closed_loop {
                    ClosedLoop::NotTracked => proto::ClosedLoopState::Unspecified,
                    ClosedLoop::Open => proto::ClosedLoopState::Open,
                }
                .into(),
                work_order_ids: tracking
                    .sla
                    .work_orders
                    .iter()
                    .map(Uuid::to_string)
                    .collect(),
            }),
        }))
    }

    async fn get_service_stats(
        &self,
        request: Request<proto::GetServiceStatsRequest>,
    ) -> Result<Response<proto::GetServiceStatsResponse>, Status> {
        authorize(&request, READERS)?;
        let stats = self
            .office
            .stats()
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?;
        Ok(Response::new(proto::GetServiceStatsResponse {
            cases_tracked: stats.cases_tracked,
            closed_loop_open: stats.closed_loop_open,
            work_orders_tracked: stats.work_orders_tracked,
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
