//! svcops front office: contact intake, customers and cases.
//!
//! - `case`, `customer`: the aggregates, a folder each (pure state, commands, events; the
//!   codec to protobuf; given/when/then tests on the kit's testkit);
//! - `app`: what is not an aggregate: personal-data sealing around the commands (which all
//!   go through the kit's executor), the dead-letter handler;
//! - `case_list`: the read model of every case, for listing;
//! - `grpc`: the gRPC edge.

pub mod app;
pub mod case;
pub mod case_list;
pub mod customer;
pub mod grpc;

use std::sync::Arc;

use svcops_bus::relay::Relay;
use svcops_bus::{consumer, topics};
use svcops_kit::auth::Authenticator;
use svcops_kit::service::{Error, Office, Ports};
use svcops_proto::frontoffice::v1::case_service_server::{CaseServiceServer, SERVICE_NAME};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

/// Service name: consumer group, actor of the events it writes in reaction to others.
pub const SERVICE: &str = "front-office";

pub struct FrontOffice {
    cases: Arc<app::Cases>,
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
        let list = Arc::new(case_list::CaseList::default());
        let erasures = app::ErasureRecords::default();
        svcops_bus::relay::replay(
            ports.store.as_ref(),
            &app::Taps(&[list.as_ref(), &erasures]),
        )
        .await?;
        tracing::info!(cases = list.len(), "case list rebuilt");
        let relay = Relay::new(
            ports.store.clone(),
            ports.bus.clone(),
            topics::FRONT_OFFICE,
            "svcops/front-office",
        )
        .with_tap(list.clone());
        let cases = Arc::new(app::Cases::new(
            ports.store.clone(),
            keys,
            relay.waker(),
            list,
        ));
        let finished = cases.finish_erasures(&erasures.take()).await?;
        if finished > 0 {
            tracing::warn!(
                finished,
                "finished erasures that failed after their record and were never retried"
            );
        }
        let tasks = vec![
            consumer::spawn_dead_letters(
                ports.bus.clone(),
                format!("{SERVICE}.dead-letters"),
                &topics::ALL,
                Arc::new(app::DeadLetters(cases.clone())),
                shutdown.clone(),
            ),
            tokio::spawn(relay.run(shutdown)),
        ];
        Ok(Self { cases, tasks })
    }

    fn add_routes(&self, routes: &mut RoutesBuilder, authenticator: &Authenticator) {
        routes.add_service(CaseServiceServer::with_interceptor(
            grpc::CaseGrpc::new(self.cases.clone()),
            authenticator.interceptor(),
        ));
    }

    fn service_names() -> Vec<String> {
        vec![SERVICE_NAME.to_owned()]
    }

    async fn stopped(self) {
        svcops_kit::service::join_all(self.tasks).await;
    }
}
