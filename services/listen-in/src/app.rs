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

impl AllOffices {
    /// What this process wrote after its recorder lease was lost is not acknowledged: the
    /// replica recording now receives it again and finds what was written (everything is
    /// keyed by the event id), so nothing acknowledged here can be missing from its view.
    fn still_recording(&self) -> Result<(), HandlerError> {
        if self.0.lost_recording() {
            return Err(HandlerError::Unavailable(
                "this replica lost the recorder lease".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Handler for AllOffices {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError> {
        self.0.observe(event).await?;
        self.still_recording()
    }

    async fn handle_batch(&self, events: &[BusEvent]) -> Option<Result<(), HandlerError>> {
        let observed = self
            .0
            .observe_batch(events)
            .await
            .map_err(HandlerError::from);
        Some(observed.and_then(|()| self.still_recording()))
    }
}
