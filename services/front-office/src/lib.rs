//! svcops front office: contact intake, customers and cases.
//!
//! - `case`, `contact`, `customer`: the aggregates, a folder each (pure state, commands, events; the
//!   codec to protobuf; given/when/then tests on the kit's testkit);
//! - `app`: what is not an aggregate: personal-data sealing around the commands (which all
//!   go through the kit's executor), the dead-letter handler;
//! - `agent`, `queue`: routing's aggregates; `routing`: its choices, pure;
//! - `case_list`, `contact_list`, `customer_list`, `routing_board`, `erasure_records`: persisted projections (read models in the office's
//!   database, fed from its log);
//! - `grpc`: the gRPC edge.

pub mod agent;
pub mod app;
pub mod case;
pub mod case_list;
pub mod contact;
pub mod contact_list;
pub mod customer;
pub mod customer_list;
pub mod erasure_records;
pub mod grpc;
pub mod middle_office_events;
pub mod progress;
pub mod queue;
pub mod routing;
pub mod routing_board;

use std::sync::Arc;

use svcops_bus::relay::Relay;
use svcops_bus::{consumer, topics};
use svcops_eventstore::projection::ReadModel;
use svcops_kit::auth::Authenticator;
use svcops_kit::projections::ProjectionAdmin;
use svcops_kit::service::{Error, Office, Ports};
use svcops_proto::frontoffice::v1::case_service_server::{
    CaseServiceServer, SERVICE_NAME as CASE_SERVICE_NAME,
};
use svcops_proto::frontoffice::v1::contact_service_server::{
    ContactServiceServer, SERVICE_NAME as CONTACT_SERVICE_NAME,
};
use svcops_proto::frontoffice::v1::customer_service_server::{
    CustomerServiceServer, SERVICE_NAME as CUSTOMER_SERVICE_NAME,
};
use svcops_proto::frontoffice::v1::routing_service_server::{
    RoutingServiceServer, SERVICE_NAME as ROUTING_SERVICE_NAME,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

/// Service name: consumer group, actor of the events it writes in reaction to others.
pub const SERVICE: &str = "front-office";

pub struct FrontOffice {
    cases: Arc<app::Cases>,
    contacts: Arc<app::Contacts>,
    customers: Arc<app::Customers>,
    routing: Arc<app::Routing>,
    projections: ProjectionAdmin,
    backpressure: svcops_bus::lag::Backpressure,
    tasks: Vec<JoinHandle<()>>,
}

#[async_trait::async_trait]
impl Office for FrontOffice {
    const NAME: &'static str = SERVICE;
    const HOLDS_PERSONAL_DATA: bool = true;

    async fn start(ports: Ports, shutdown: CancellationToken) -> Result<Self, Error> {
        let keys = ports
            .keys
            .clone()
            .ok_or(Error::NoPersonalDataKeys(SERVICE))?;
        let list = ports
            .start_projection(Arc::new(case_list::CaseListProjection), &shutdown)
            .await?;
        let contact_list = ports
            .start_projection(Arc::new(contact_list::ContactListProjection), &shutdown)
            .await?;
        let customer_list = ports
            .start_projection(Arc::new(customer_list::CustomerListProjection), &shutdown)
            .await?;
        let routing_board = ports
            .start_projection(Arc::new(routing_board::RoutingBoardProjection), &shutdown)
            .await?;
        let erasures = ports
            .start_projection(
                Arc::new(erasure_records::ErasureRecordsProjection),
                &shutdown,
            )
            .await?;
        let relay = Relay::new(
            ports.store.clone(),
            ports.bus.clone(),
            topics::FRONT_OFFICE,
            "svcops/front-office",
        );
        let customers = Arc::new(app::Customers::new(
            ports.store.clone(),
            keys.clone(),
            relay.waker(),
            customer_list.read_model(),
        ));
        let routing = Arc::new(app::Routing::new(
            ports.store.clone(),
            relay.waker(),
            routing_board.read_model(),
        ));
        let cases = Arc::new(app::Cases::new(
            ports.store.clone(),
            keys,
            relay.waker(),
            list.read_model(),
        ));
        let contacts = Arc::new(app::Contacts::new(
            ports.store.clone(),
            relay.waker(),
            cases.clone(),
            contact_list.read_model(),
        ));
        let tasks = vec![
            consumer::spawn_dead_letters(
                ports.bus.clone(),
                format!("{SERVICE}.dead-letters"),
                &topics::ALL,
                Arc::new(app::DeadLetters(cases.clone())),
                shutdown.clone(),
            ),
            consumer::spawn(
                ports.bus.clone(),
                SERVICE,
                &[topics::MIDDLE_OFFICE],
                Arc::new(middle_office_events::MiddleOfficeEvents::new(
                    ports.store.clone(),
                    relay.waker(),
                )),
                shutdown.clone(),
            ),
            tokio::spawn(finish_erasures(
                cases.clone(),
                erasures.read_model(),
                shutdown.clone(),
            )),
            tokio::spawn(relay.run_leased(
                ports.read_models.clone(),
                svcops_kit::service::replica_id(),
                shutdown,
            )),
        ];
        Ok(Self {
            cases,
            contacts,
            customers,
            routing,
            backpressure: ports.backpressure,
            projections: ProjectionAdmin::new(
                ports.store.clone(),
                vec![
                    Arc::new(list),
                    Arc::new(contact_list),
                    Arc::new(customer_list),
                    Arc::new(routing_board),
                    Arc::new(erasures),
                ],
            ),
            tasks,
        })
    }

    fn add_routes(&self, routes: &mut RoutesBuilder, authenticator: &Authenticator) {
        routes.add_service(CaseServiceServer::with_interceptor(
            grpc::CaseGrpc::new(
                self.cases.clone(),
                self.contacts.clone(),
                self.routing.clone(),
                self.projections.clone(),
                self.backpressure,
            ),
            authenticator.interceptor(),
        ));
        routes.add_service(CustomerServiceServer::with_interceptor(
            grpc::CustomerGrpc::new(self.customers.clone()),
            authenticator.interceptor(),
        ));
        routes.add_service(RoutingServiceServer::with_interceptor(
            grpc::RoutingGrpc::new(self.routing.clone()),
            authenticator.interceptor(),
        ));
        routes.add_service(ContactServiceServer::with_interceptor(
            grpc::ContactGrpc::new(self.contacts.clone(), self.backpressure),
            authenticator.interceptor(),
        ));
    }

    fn service_names() -> Vec<String> {
        vec![
            CASE_SERVICE_NAME.to_owned(),
            CONTACT_SERVICE_NAME.to_owned(),
            CUSTOMER_SERVICE_NAME.to_owned(),
            ROUTING_SERVICE_NAME.to_owned(),
        ]
    }

    async fn stopped(self) {
        svcops_kit::service::join_all(self.tasks).await;
        self.projections.stopped().await;
    }
}

/// Finishes every erasure whose record was written but whose key survived (a failure
/// between the two writes, with no retry), once the erasure records are caught up. In the
/// background: start-up does not wait on it.
async fn finish_erasures(cases: Arc<app::Cases>, records: ReadModel, shutdown: CancellationToken) {
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        let attempt = async {
            let tables = records
                .caught_up(std::time::Duration::from_secs(30))
                .await?;
            let key_ids = erasure_records::erased_key_ids(&records, &tables).await?;
            cases.finish_erasures(&key_ids).await
        };
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = attempt => outcome,
        };
        match outcome {
            Ok(0) => return,
            Ok(finished) => {
                tracing::warn!(
                    finished,
                    "finished erasures that failed after their record and were never retried"
                );
                return;
            }
            Err(error) => tracing::warn!(%error, "could not finish pending erasures yet; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(std::time::Duration::from_secs(10));
    }
}
