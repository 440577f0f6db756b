//! The admin side of an office's projections, shared by every office's gRPC edge: list them
//! with their checkpoints against the log's head, and rebuild one beside the live one.

use std::sync::Arc;

use svcops_eventstore::EventStore;
use svcops_eventstore::projection::{GenerationStatus, ProjectionStatus, Projector};
use svcops_proto::common::v1 as common;

use crate::ApiError;
use crate::events::to_timestamp;

/// An office's projections, for its admin RPCs.
#[derive(Clone)]
pub struct ProjectionAdmin {
    store: Arc<dyn EventStore>,
    projectors: Vec<Arc<Projector>>,
}

fn generation(status: ProjectionStatus) -> common::ProjectionGeneration {
    common::ProjectionGeneration {
        name: status.name,
        generation: status.generation,
        version: status.version,
        status: match status.status {
            GenerationStatus::Building => common::ProjectionStatus::Building,
            GenerationStatus::Live => common::ProjectionStatus::Live,
            // Never listed: retired generations are on their way out.
            GenerationStatus::Retired => common::ProjectionStatus::Unspecified,
        }
        .into(),
        checkpoint: status.checkpoint,
        updated_at: Some(to_timestamp(status.updated_at)),
    }
}

impl ProjectionAdmin {
    pub fn new(store: Arc<dyn EventStore>, projectors: Vec<Arc<Projector>>) -> Self {
        Self { store, projectors }
    }

    /// Every live or building generation of the office's projections, and the log's head.
    pub async fn report(&self) -> Result<common::ProjectionReport, ApiError> {
        let mut generations = Vec::new();
        for projector in &self.projectors {
            generations.extend(projector.generations().await?.into_iter().map(generation));
        }
        Ok(common::ProjectionReport {
            head: self.store.head().await?,
            generations,
        })
    }

    /// Starts rebuilding `name`; NOT_FOUND for a name the office does not have.
    pub async fn rebuild(&self, name: &str) -> Result<common::ProjectionGeneration, ApiError> {
        let projector = self
            .projectors
            .iter()
            .find(|projector| projector.name() == name)
            .ok_or_else(|| ApiError::NotFound {
                resource: "projection",
                id: name.to_owned(),
            })?;
        let building = projector.rebuild().await?;
        tracing::info!(
            projection = name,
            generation = building.generation,
            "rebuild started"
        );
        Ok(generation(building))
    }

    /// `ListProjections`, for any office: admins only.
    pub async fn list<T>(
        &self,
        request: &tonic::Request<T>,
    ) -> Result<common::ProjectionReport, tonic::Status> {
        crate::auth::authorize(request, &[crate::auth::Role::Admin])?;
        Ok(self.report().await?)
    }

    /// `RebuildProjection`, for any office: admins only.
    pub async fn rebuild_named<T>(
        &self,
        request: &tonic::Request<T>,
        name: &str,
    ) -> Result<common::ProjectionGeneration, tonic::Status> {
        crate::auth::authorize(request, &[crate::auth::Role::Admin])?;
        let name = name.trim();
        if name.is_empty() {
            return Err(ApiError::invalid("name", "must name a projection").into());
        }
        Ok(self.rebuild(name).await?)
    }

    /// Waits for every projector to stop (after shutdown).
    pub async fn stopped(&self) {
        for projector in &self.projectors {
            projector.stopped().await;
        }
    }
}
