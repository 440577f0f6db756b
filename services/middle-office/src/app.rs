//! Reacting to the front office, and work-order queries (one from its stream, pages from
//! the work-order list projection).

use std::sync::Arc;

use async_trait::async_trait;
use svcops_bus::consumer::{Handler, HandlerError};
use svcops_bus::envelope::BusEvent;
use svcops_eventstore::EventStore;
use svcops_eventstore::projection::ReadModel;
use svcops_kit::ApiError;
use svcops_kit::aggregate::{ExecuteError, Executor, Idempotency};
use svcops_kit::events::CommandContext;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::front_office_events::{self, work_needed};
use crate::rma::{Authorised, Command as RmaCommand, Rma, Step, rma_id};
use crate::work_order::{
    self, Command, Lifecycle, Visit, WorkOrder, WorkOrderDetails, work_order_id,
};

/// How long a list waits for the work-order list to apply what was written before it was
/// asked, before answering UNAVAILABLE.
const READ_YOUR_WRITES: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("work order {0} not found")]
    NotFound(Uuid),
    #[error(transparent)]
    Load(#[from] ExecuteError<work_order::Error>),
    #[error(transparent)]
    ReadModel(#[from] svcops_eventstore::Error),
    #[error(transparent)]
    Return(#[from] ExecuteError<crate::rma::Error>),
    #[error("return {0} not found")]
    ReturnNotFound(Uuid),
    #[error("work order {0}'s visit did not find that it needs factory repair")]
    NotForFactory(Uuid),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotFound(id) => ApiError::NotFound {
                resource: "work order",
                id: id.to_string(),
            },
            Error::Load(error) => error.into(),
            Error::ReadModel(error) => error.into(),
            Error::Return(error) => error.into(),
            Error::ReturnNotFound(id) => ApiError::NotFound {
                resource: "return",
                id: id.to_string(),
            },
            error @ Error::NotForFactory(_) => ApiError::FailedPrecondition(error.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkOrderView {
    pub details: WorkOrderDetails,
    pub lifecycle: Lifecycle,
    pub opened_at: OffsetDateTime,
    pub version: u64,
    pub visit: Visit,
}

pub struct WorkOrders {
    orders: Executor<WorkOrder>,
    returns: Executor<Rma>,
    list: ReadModel,
}

impl WorkOrders {
    pub fn new(store: Arc<dyn EventStore>, relay: Arc<Notify>, list: ReadModel) -> Self {
        Self {
            orders: Executor::new(store.clone(), relay.clone()),
            returns: Executor::new(store, relay),
            list,
        }
    }

    pub async fn get(&self, work_order_id: Uuid) -> Result<WorkOrderView, Error> {
        let (order, version) = self.orders.load(work_order_id).await?;
        let opened = order.opened.ok_or(Error::NotFound(work_order_id))?;
        Ok(WorkOrderView {
            details: opened.details,
            lifecycle: opened.lifecycle,
            opened_at: opened.opened_at,
            version,
            visit: opened.visit,
        })
    }

    /// A step of the visit (a technician's steps carry who reports them, which the work
    /// order checks). With a request id, a retry answers with the first result.
    pub async fn change(
        &self,
        context: &CommandContext,
        work_order_id: Uuid,
        request_id: Option<&str>,
        request_hash: Vec<u8>,
        command: Command,
    ) -> Result<WorkOrderView, Error> {
        let idempotency =
            Idempotency::of_caller(context, "middle-office/work-order", request_id, || {
                request_hash
            });
        let case_of =
            |order: &WorkOrder| order.opened.as_ref().map(|opened| opened.details.case_id);
        let changed = self
            .orders
            .execute_on_case(work_order_id, case_of, context, command, idempotency)
            .await
            .map_err(|error| match error {
                ExecuteError::Domain(work_order::Error::NotOpened) => {
                    Error::NotFound(work_order_id)
                }
                other => Error::Load(other),
            })?;
        let opened = changed.state.opened.ok_or(Error::NotFound(work_order_id))?;
        Ok(WorkOrderView {
            details: opened.details,
            lifecycle: opened.lifecycle,
            opened_at: opened.opened_at,
            version: changed.version,
            visit: opened.visit,
        })
    }

    /// Authorises the return of a work order whose visit found it needs factory repair.
    pub async fn authorize_return(
        &self,
        context: &CommandContext,
        work_order_id: Uuid,
        request_id: Option<&str>,
        request_hash: Vec<u8>,
    ) -> Result<(Rma, u64), Error> {
        let (order, _) = self.orders.load(work_order_id).await?;
        let opened = order.opened.ok_or(Error::NotFound(work_order_id))?;
        if !matches!(
            opened.visit.outcome,
            Some((work_order::Outcome::NeedsFactoryRepair, _))
        ) {
            return Err(Error::NotForFactory(work_order_id));
        }
        let authorised = Authorised {
            rma_id: rma_id(work_order_id),
            work_order_id,
            case_id: opened.details.case_id,
            product: opened.details.product,
            serial_number: opened.details.serial_number,
        };
        let executed = self
            .returns
            .execute(
                authorised.rma_id,
                Some(authorised.case_id),
                context,
                RmaCommand::Authorise(authorised),
                Idempotency::of_caller(context, "middle-office/return", request_id, || {
                    request_hash
                }),
            )
            .await?;
        Ok((executed.state, executed.version))
    }

    pub async fn advance_return(
        &self,
        context: &CommandContext,
        rma_id: Uuid,
        request_id: Option<&str>,
        request_hash: Vec<u8>,
        step: Step,
    ) -> Result<(Rma, u64), Error> {
        let case_of = |rma: &Rma| rma.authorised.as_ref().map(|authorised| authorised.case_id);
        let executed = self
            .returns
            .execute_on_case(
                rma_id,
                case_of,
                context,
                RmaCommand::Advance(step),
                Idempotency::of_caller(context, "middle-office/return", request_id, || {
                    request_hash
                }),
            )
            .await
            .map_err(|error| match error {
                ExecuteError::Domain(crate::rma::Error::NotAuthorised) => {
                    Error::ReturnNotFound(rma_id)
                }
                other => Error::Return(other),
            })?;
        Ok((executed.state, executed.version))
    }

    pub async fn get_return(&self, rma_id: Uuid) -> Result<(Rma, u64), Error> {
        let (rma, version) = self.returns.load(rma_id).await?;
        if rma.authorised.is_none() {
            return Err(Error::ReturnNotFound(rma_id));
        }
        Ok((rma, version))
    }

    /// Newest first, after the caller's own writes (read your writes, up to 5 s).
    pub async fn list(
        &self,
        case_id: Option<Uuid>,
        page_size: usize,
        before: Option<i64>,
    ) -> Result<(Vec<WorkOrderView>, Option<i64>), Error> {
        let tables = self.list.caught_up(READ_YOUR_WRITES).await?;
        Ok(crate::work_order_list::page(&self.list, &tables, case_id, page_size, before).await?)
    }

    /// Opens the case's work order if the case needs field work. Idempotent twice over: the
    /// source event id is the idempotency key, and the work order id derives from the case.
    pub async fn on_case_opened(&self, cause: &BusEvent) -> Result<(), HandlerError> {
        let opened = front_office_events::decode_case_opened(&cause.event_type, &cause.payload)
            .map_err(|error| HandlerError::Failed(error.to_string()))?;
        let Some(opened) = opened else {
            return Ok(());
        };
        // The payload's case must be the one the envelope names (and keyed the message by).
        if cause.metadata.case_id != Some(opened.case_id) {
            return Err(HandlerError::Failed(format!(
                "payload case {} differs from the envelope's case {:?}",
                opened.case_id, cause.metadata.case_id
            )));
        }
        let Some(kind) = work_needed(opened.category) else {
            return Ok(());
        };
        let details = WorkOrderDetails {
            work_order_id: work_order_id(opened.case_id),
            case_id: opened.case_id,
            kind,
            product: opened.product,
            serial_number: opened.serial_number,
            summary: opened.summary,
        };
        let context = CommandContext::reacting_to(crate::SERVICE, cause);
        let executed = self
            .orders
            .execute(
                details.work_order_id,
                Some(opened.case_id),
                &context,
                Command::Open(details),
                Idempotency::key(format!("middle-office/case-opened/{}", cause.event_id)),
            )
            .await;
        match executed {
            Ok(executed) => {
                if executed.appended {
                    tracing::info!(case_id = %opened.case_id, ?kind, "work order opened");
                }
                Ok(())
            }
            // The case's work order exists already: this delivery's work was done.
            Err(ExecuteError::Domain(work_order::Error::AlreadyOpened(_))) => Ok(()),
            Err(error) => Err(error.into_handler_error()),
        }
    }
}

/// Consumes the front office's topic.
pub struct FrontOfficeEvents(pub Arc<WorkOrders>);

#[async_trait]
impl Handler for FrontOfficeEvents {
    async fn handle(&self, event: &BusEvent) -> Result<(), HandlerError> {
        self.0.on_case_opened(event).await
    }
}
