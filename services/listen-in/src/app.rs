//! What binds listen-in to the bus: the consumer of every office's topic.

use std::sync::Arc;

use async_trait::async_trait;
use svcops_bus::consumer::{Handler, HandlerError};
use svcops_bus::envelope::BusEvent;

use crate::timeline::Timelines;

/// `ce_source` of what listen-in itself publishes (session starts and ends).
pub const SOURCE: &str = "svcops/listen-in";

/// Consumes every office's topic into the case timelines.
pub struct AllOffices(pub Arc<Timelines>);

#[async_trait]
impl Handler for AllOffices {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError> {
        Ok(self.0.observe(event).await?)
    }
}
