//! svcops middle office: repair, on-site visits, inspection, return-to-factory, parts.
//!
//! Today: a work order is opened for every repair or installation case the front office
//! publishes. One folder per aggregate (`work_order/`: pure, on the kit's `Aggregate`
//! trait); `front_office_events` reads the front office's events; `app` holds the reaction
//! (through the kit's executor) and the queries; `work_order_list` is the persisted
//! projection lists read; `grpc` the edge.

pub mod app;
pub mod front_office_events;
pub mod grpc;
pub mod pricing;
pub mod rma;
pub mod work_order;
pub mod work_order_list;

use std::sync::Arc;

use svcops_bus::relay::Relay;
use svcops_bus::{consumer, topics};
use svcops_kit::auth::Authenticator;
use svcops_kit::projections::ProjectionAdmin;
use svcops_kit::service::{Error, Office, Ports};
use svcops_proto::middleoffice::v1::work_order_service_server::{
    SERVICE_NAME, WorkOrderServiceServer,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

/// Service name: consumer group, actor of the events it writes in reaction to others.
pub const SERVICE: &str = "middle-office";

pub struct MiddleOffice {
    orders: Arc<app::WorkOrders>,
    projections: ProjectionAdmin,
    tasks: Vec<JoinHandle<()>>,
}

#[async_trait::async_trait]
impl Office for MiddleOffice {
    const NAME: &'static str = SERVICE;

    async fn start(ports: Ports, shutdown: CancellationToken) -> Result<Self, Error> {
        let list = ports
            .start_projection(
                Arc::new(work_order_list::WorkOrderListProjection),
                &shutdown,
            )
            .await?;
        let relay = Relay::new(
            ports.store.clone(),
            ports.bus.clone(),
            topics::MIDDLE_OFFICE,
            "svcops/middle-office",
        );
        let orders = Arc::new(app::WorkOrders::new(
            ports.store.clone(),
            relay.waker(),
            list.read_model(),
        ));
        let tasks = vec![
            consumer::spawn(
                ports.bus.clone(),
                SERVICE,
                &[topics::FRONT_OFFICE],
                Arc::new(app::FrontOfficeEvents(orders.clone())),
                shutdown.clone(),
            ),
            tokio::spawn(relay.run_leased(
                ports.read_models.clone(),
                svcops_kit::service::replica_id(),
                shutdown,
            )),
        ];
        Ok(Self {
            orders,
            projections: ProjectionAdmin::new(ports.store.clone(), vec![Arc::new(list)]),
            tasks,
        })
    }

    fn add_routes(&self, routes: &mut RoutesBuilder, authenticator: &Authenticator) {
        routes.add_service(WorkOrderServiceServer::with_interceptor(
            grpc::WorkOrderGrpc::new(self.orders.clone(), self.projections.clone()),
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
