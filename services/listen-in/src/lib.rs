//! svcops listen-in: executives follow live cases across every office.
//!
//! It consumes all four topics into per-case timelines in its own store (`app`), and
//! `WatchCase` (`grpc`) replays a timeline and then follows it. `describe` renders events
//! for people, masking personal data by role.

pub mod app;
pub mod describe;
pub mod domain;
pub mod grpc;

use std::sync::Arc;

use svcops_bus::relay::Relay;
use svcops_bus::{consumer, topics};
use svcops_kit::auth::Authenticator;
use svcops_kit::service::{Error, Office, Ports};
use svcops_proto::listenin::v1::listen_in_service_server::{ListenInServiceServer, SERVICE_NAME};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

pub const SERVICE: &str = "listen-in";

pub struct ListenIn {
    timelines: Arc<app::Timelines>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

#[async_trait::async_trait]
impl Office for ListenIn {
    const NAME: &'static str = SERVICE;

    async fn start(ports: Ports, shutdown: CancellationToken) -> Result<Self, Error> {
        let relay = Relay::new(
            ports.store.clone(),
            ports.bus.clone(),
            topics::LISTEN_IN,
            "svcops/listen-in",
        );
        let timelines = Arc::new(app::Timelines::new(ports.store.clone(), relay.waker()));
        let handler: Arc<dyn consumer::Handler> = Arc::new(app::AllOffices(timelines.clone()));
        let mut tasks = vec![tokio::spawn(relay.run(shutdown.clone()))];
        // One consumer per topic: an effect waiting for its cause from another office's
        // topic must not hold up the delivery of that cause.
        for topic in topics::ALL {
            tasks.push(consumer::spawn(
                ports.bus.clone(),
                format!("{SERVICE}.{topic}"),
                &[topic],
                handler.clone(),
                shutdown.clone(),
            ));
        }
        Ok(Self {
            timelines,
            shutdown,
            tasks,
        })
    }

    fn add_routes(&self, routes: &mut RoutesBuilder, authenticator: &Authenticator) {
        routes.add_service(ListenInServiceServer::with_interceptor(
            grpc::ListenInGrpc::new(self.timelines.clone(), self.shutdown.clone()),
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
