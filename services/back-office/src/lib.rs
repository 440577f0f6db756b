//! svcops back office: QA, closed loop, service standards and SLAs, analytics.
//!
//! Today: every case gets an SLA clock (with an on-site target once it has a work order)
//! and a closed-loop item. One folder per aggregate (`sla/`, `closed_loop/`: pure, on the
//! kit's `Aggregate` trait); `upstream` reads the other offices' events; `app` holds the
//! reactions (through the kit's executor) and queries; `case_tracking` is the persisted
//! projection statistics count over; `grpc` the edge.

pub mod app;
pub mod case_tracking;
pub mod closed_loop;
pub mod grpc;
pub mod sla;
pub mod upstream;

use std::sync::Arc;

use svcops_bus::relay::Relay;
use svcops_bus::{consumer, topics};
use svcops_kit::auth::Authenticator;
use svcops_kit::projections::ProjectionAdmin;
use svcops_kit::service::{Error, Office, Ports};
use svcops_proto::backoffice::v1::back_office_service_server::{
    BackOfficeServiceServer, SERVICE_NAME,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

/// Service name: consumer group, actor of the events it writes in reaction to others.
pub const SERVICE: &str = "back-office";

pub struct BackOfficeOffice {
    office: Arc<app::BackOffice>,
    projections: ProjectionAdmin,
    tasks: Vec<JoinHandle<()>>,
}

#[async_trait::async_trait]
impl Office for BackOfficeOffice {
    const NAME: &'static str = SERVICE;

    async fn start(ports: Ports, shutdown: CancellationToken) -> Result<Self, Error> {
        let tracking = ports
            .start_projection(Arc::new(case_tracking::CaseTrackingProjection), &shutdown)
            .await?;
        let relay = Relay::new(
            ports.store.clone(),
            ports.bus.clone(),
            topics::BACK_OFFICE,
            "svcops/back-office",
        );
        let office = Arc::new(app::BackOffice::new(
            ports.store.clone(),
            relay.waker(),
            tracking.read_model(),
        ));
        let tasks = vec![
            consumer::spawn(
                ports.bus.clone(),
                SERVICE,
                &[topics::FRONT_OFFICE, topics::MIDDLE_OFFICE],
                Arc::new(app::UpstreamEvents(office.clone())),
                shutdown.clone(),
            ),
            tokio::spawn(relay.run_leased(
                ports.read_models.clone(),
                svcops_kit::service::replica_id(),
                shutdown,
            )),
        ];
        Ok(Self {
            office,
            projections: ProjectionAdmin::new(ports.store.clone(), vec![Arc::new(tracking)]),
            tasks,
        })
    }

    fn add_routes(&self, routes: &mut RoutesBuilder, authenticator: &Authenticator) {
        routes.add_service(BackOfficeServiceServer::with_interceptor(
            grpc::BackOfficeGrpc::new(self.office.clone(), self.projections.clone()),
            authenticator.interceptor(),
        ));
    }

    fn service_names() -> Vec<String> {
        vec![SERVICE_NAME.to_owned()]
    }

    async fn stopped(self) {
        svcops_kit::service::join_all(self.tasks).await;
        self.projections.stopped().await;
    }
}
