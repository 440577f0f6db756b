//! The data keys erasure records name: a persisted projection, read at start to finish any
//! erasure whose key outlived its record (see `Cases::finish_erasures`).

use async_trait::async_trait;
use svcops_eventstore::projection::{Projection, ReadModel, Tables};
use svcops_eventstore::read_model::{Dialect, ReadModelTransaction};
use svcops_eventstore::{Error, RecordedEvent};
use svcops_kit::aggregate::DomainEvent;
use uuid::Uuid;

use crate::customer::CustomerEvent;

pub struct ErasureRecordsProjection;

#[async_trait]
impl Projection for ErasureRecordsProjection {
    fn name(&self) -> &'static str {
        "erasure_records"
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["erasures"]
    }

    fn schema(&self, _dialect: Dialect) -> Vec<String> {
        vec!["CREATE TABLE {erasures} (key_id TEXT PRIMARY KEY, position BIGINT NOT NULL)".into()]
    }

    async fn apply(
        &self,
        transaction: &mut dyn ReadModelTransaction,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), Error> {
        let insert = tables.sql(
            "INSERT INTO {erasures} (key_id, position) VALUES ($1, $2) \
             ON CONFLICT (key_id) DO NOTHING",
        );
        for recorded in events {
            match CustomerEvent::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(CustomerEvent::DataErased { key_id })) => {
                    transaction
                        .execute(&insert, &[key_id.into(), recorded.position.into()])
                        .await?;
                }
                Ok(Some(_) | None) => {}
                Err(error) => {
                    tracing::error!(%error, position = recorded.position, "undecodable erasure record");
                }
            }
        }
        Ok(())
    }
}

/// Every data key an erasure record names.
pub async fn erased_key_ids(records: &ReadModel, tables: &Tables) -> Result<Vec<Uuid>, Error> {
    let rows = records
        .query(
            tables,
            "SELECT key_id FROM {erasures} ORDER BY position",
            &[],
        )
        .await?;
    rows.iter().map(|row| row.uuid(0)).collect()
}
