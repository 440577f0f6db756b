//! The front office served over gRPC on port 0 as in a process of its own: a SQLite store,
//! the embedded bus, the health service, tokens from a fresh secret.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use svcops_bus::lag::Backpressure;
use svcops_eventstore::{PersonalDataSecret, SqliteStore};
use svcops_kit::auth::{Authenticator, Role};
use svcops_kit::service::{Office, Ports};
use svcops_proto::common::v1 as types;
use svcops_proto::frontoffice::v1 as proto;
use svcops_proto::frontoffice::v1::case_service_client::CaseServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use uuid::Uuid;

pub struct Served {
    pub address: SocketAddr,
    pub authenticator: Authenticator,
    shutdown: CancellationToken,
    office: front_office::FrontOffice,
    serving: tokio::task::JoinHandle<Result<(), svcops_kit::server::Error>>,
    _dir: tempfile::TempDir,
}

impl Served {
    pub async fn start(backpressure: Backpressure) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("front-office.db"))
            .await
            .unwrap();
        let secret = PersonalDataSecret::new(
            format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()).as_bytes(),
        )
        .unwrap();
        let keys = Arc::new(store.personal_data_keys(secret).await.unwrap());
        let bus = svcops_bus::EmbeddedBus::open(&dir.path().join("bus.db"))
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let office = front_office::FrontOffice::start(
            Ports {
                store: Arc::new(store.clone()),
                read_models: Arc::new(store),
                keys: Some(keys),
                bus: Arc::new(bus),
                backpressure,
            },
            shutdown.clone(),
        )
        .await
        .unwrap();
        let authenticator =
            Authenticator::new(Uuid::new_v4().simple().to_string().as_bytes()).unwrap();
        let mut routes = tonic::service::RoutesBuilder::default();
        office.add_routes(&mut routes, &authenticator);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let serving = {
            let (authenticator, shutdown) = (authenticator.clone(), shutdown.clone());
            tokio::spawn(async move {
                svcops_kit::server::serve(
                    routes.routes(),
                    front_office::FrontOffice::service_names(),
                    Vec::new(),
                    &authenticator,
                    listener,
                    shutdown,
                )
                .await
            })
        };
        Self {
            address,
            authenticator,
            shutdown,
            office,
            serving,
            _dir: dir,
        }
    }

    pub async fn contacts(
        &self,
    ) -> svcops_proto::frontoffice::v1::contact_service_client::ContactServiceClient<Channel> {
        svcops_proto::frontoffice::v1::contact_service_client::ContactServiceClient::connect(
            format!("http://{}", self.address),
        )
        .await
        .unwrap()
    }

    pub async fn customers(
        &self,
    ) -> svcops_proto::frontoffice::v1::customer_service_client::CustomerServiceClient<Channel>
    {
        svcops_proto::frontoffice::v1::customer_service_client::CustomerServiceClient::connect(
            format!("http://{}", self.address),
        )
        .await
        .unwrap()
    }

    pub async fn routing(
        &self,
    ) -> svcops_proto::frontoffice::v1::routing_service_client::RoutingServiceClient<Channel> {
        svcops_proto::frontoffice::v1::routing_service_client::RoutingServiceClient::connect(
            format!("http://{}", self.address),
        )
        .await
        .unwrap()
    }

    pub async fn cases(&self) -> CaseServiceClient<Channel> {
        CaseServiceClient::connect(format!("http://{}", self.address))
            .await
            .unwrap()
    }

    /// `message` with a bearer token of `role` (subject `<role>-1`).
    pub fn request<T>(&self, role: Role, message: T) -> tonic::Request<T> {
        let token = self
            .authenticator
            .issue(&format!("{role}-1"), role, Duration::from_secs(600))
            .unwrap();
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    }

    /// Shuts down as the process would: serving stops, then the office.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.serving.await.unwrap().unwrap();
        self.office.stopped().await;
    }
}

/// A served front office with a client: what the gRPC tests drive.
pub struct FrontOffice {
    pub cases: CaseServiceClient<Channel>,
    pub served: Served,
}

impl FrontOffice {
    pub async fn start() -> Self {
        let served = Served::start(Backpressure { max_lag: None }).await;
        Self {
            cases: served.cases().await,
            served,
        }
    }

    pub fn request<T>(&self, role: Role, message: T) -> tonic::Request<T> {
        self.served.request(role, message)
    }

    /// Opens a case as an agent.
    pub async fn open(
        &mut self,
        phone: &str,
        category: types::CaseCategory,
        summary: &str,
    ) -> proto::Case {
        let request = self.request(
            Role::Agent,
            proto::OpenCaseRequest {
                customer_phone: phone.into(),
                category: category.into(),
                summary: summary.into(),
                ..Default::default()
            },
        );
        self.cases
            .open_case(request)
            .await
            .unwrap()
            .into_inner()
            .case
            .unwrap()
    }
}

/// The fields an INVALID_ARGUMENT names, in order.
pub fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|violation| violation.field.clone())
        .collect()
}
