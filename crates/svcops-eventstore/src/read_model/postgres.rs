//! [`ReadModels`] on PostgreSQL: the store's own pool, so read models and the log share one
//! database and one transaction can hold both a batch's rows and its checkpoint.

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Column, Postgres, Row, Transaction, TypeInfo};

use super::{Dialect, ReadModelTransaction, ReadModels, SqlArray, SqlRow, SqlValue};
use crate::{Error, PostgresStore};

fn bound<'q>(sql: &str, arguments: &[SqlValue]) -> Query<'q, Postgres, PgArguments> {
    let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()));
    for argument in arguments {
        query = match argument.clone() {
            SqlValue::Integer(value) => query.bind(value),
            SqlValue::Text(value) => query.bind(value),
            SqlValue::Blob(value) => query.bind(value),
            SqlValue::Array(SqlArray::Integers(values)) => query.bind(values),
            SqlValue::Array(SqlArray::Texts(values)) => query.bind(values),
            SqlValue::Array(SqlArray::Blobs(values)) => query.bind(values),
        };
    }
    query
}

fn read_row(row: &PgRow) -> Result<SqlRow, Error> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let value = match column.type_info().name() {
            "INT8" => SqlValue::Integer(row.try_get::<Option<i64>, _>(index)?),
            "INT4" => SqlValue::Integer(row.try_get::<Option<i32>, _>(index)?.map(i64::from)),
            "INT2" => SqlValue::Integer(row.try_get::<Option<i16>, _>(index)?.map(i64::from)),
            "BOOL" => SqlValue::Integer(row.try_get::<Option<bool>, _>(index)?.map(i64::from)),
            "TEXT" | "VARCHAR" | "NAME" | "BPCHAR" => SqlValue::Text(row.try_get(index)?),
            "UUID" => SqlValue::Text(
                row.try_get::<Option<uuid::Uuid>, _>(index)?
                    .map(|id| id.to_string()),
            ),
            "BYTEA" => SqlValue::Blob(row.try_get(index)?),
            other => {
                return Err(Error::ReadModel {
                    reason: format!(
                        "column {:?} has type {other}, which read models do not use \
                         (cast it to BIGINT or TEXT)",
                        column.name()
                    ),
                });
            }
        };
        values.push(value);
    }
    Ok(SqlRow(values))
}

struct PostgresTransaction(Transaction<'static, Postgres>);

#[async_trait]
impl ReadModelTransaction for PostgresTransaction {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn execute(&mut self, sql: &str, arguments: &[SqlValue]) -> Result<u64, Error> {
        let done = bound(sql, arguments).execute(&mut *self.0).await?;
        Ok(done.rows_affected())
    }

    async fn query(&mut self, sql: &str, arguments: &[SqlValue]) -> Result<Vec<SqlRow>, Error> {
        let rows = bound(sql, arguments).fetch_all(&mut *self.0).await?;
        rows.iter().map(read_row).collect()
    }

    async fn commit(self: Box<Self>) -> Result<(), Error> {
        self.0.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl ReadModels for PostgresStore {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn begin(&self) -> Result<Box<dyn ReadModelTransaction>, Error> {
        Ok(Box::new(PostgresTransaction(self.pool().begin().await?)))
    }

    async fn query(&self, sql: &str, arguments: &[SqlValue]) -> Result<Vec<SqlRow>, Error> {
        let rows = bound(sql, arguments).fetch_all(self.pool()).await?;
        rows.iter().map(read_row).collect()
    }
}
