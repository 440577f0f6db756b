//! svcops-kit: the plumbing every svcops service shares, so each service crate holds only
//! its domain, its handlers and its gRPC edge.

pub mod aggregate;
pub mod auth;
pub mod config;
pub mod error;
pub mod events;
pub mod metrics;
pub mod paging;
pub mod personal_data;
pub mod projections;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod telemetry;

pub use auth::{Principal, Role};
pub use error::ApiError;
