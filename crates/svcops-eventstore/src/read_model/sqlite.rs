//! [`ReadModels`] on SQLite: writes through the store's one writer connection (so a
//! projection batch and appends take turns, as SQLite would make them anyway), reads through
//! its readers.

use async_trait::async_trait;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction, TypeInfo, ValueRef};

use super::{Dialect, ReadModelTransaction, ReadModels, SqlRow, SqlValue};
use crate::{Error, SqliteStore};

fn bound<'q>(
    sql: &str,
    arguments: &[SqlValue],
) -> Result<Query<'q, Sqlite, SqliteArguments>, Error> {
    let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()));
    for argument in arguments {
        query = match argument.clone() {
            SqlValue::Integer(value) => query.bind(value),
            SqlValue::Text(value) => query.bind(value),
            SqlValue::Blob(value) => query.bind(value),
            SqlValue::Array(_) => {
                return Err(Error::ReadModel {
                    reason: "SQLite has no array parameters".into(),
                });
            }
        };
    }
    Ok(query)
}

fn read_row(row: &SqliteRow) -> Result<SqlRow, Error> {
    let mut values = Vec::with_capacity(row.len());
    for index in 0..row.len() {
        // SQLite types values, not columns: ask each value what it holds. A NULL in a typed
        // column reports the column's declared type, so ask for NULL first (it read as an
        // empty string before).
        let raw = row.try_get_raw(index)?;
        if raw.is_null() {
            values.push(SqlValue::Integer(None));
            continue;
        }
        let storage = raw.type_info().name().to_owned();
        let value = match storage.as_str() {
            "NULL" => SqlValue::Integer(None),
            "INTEGER" | "BOOLEAN" => SqlValue::Integer(Some(row.try_get::<i64, _>(index)?)),
            "TEXT" => SqlValue::Text(Some(row.try_get(index)?)),
            "BLOB" => SqlValue::Blob(Some(row.try_get(index)?)),
            other => {
                return Err(Error::ReadModel {
                    reason: format!("column {index} holds {other}, which read models do not use"),
                });
            }
        };
        values.push(value);
    }
    Ok(SqlRow(values))
}

struct SqliteTransaction(Transaction<'static, Sqlite>);

#[async_trait]
impl ReadModelTransaction for SqliteTransaction {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn execute(&mut self, sql: &str, arguments: &[SqlValue]) -> Result<u64, Error> {
        let done = bound(sql, arguments)?.execute(&mut *self.0).await?;
        Ok(done.rows_affected())
    }

    async fn query(&mut self, sql: &str, arguments: &[SqlValue]) -> Result<Vec<SqlRow>, Error> {
        let rows = bound(sql, arguments)?.fetch_all(&mut *self.0).await?;
        rows.iter().map(read_row).collect()
    }

    async fn commit(self: Box<Self>) -> Result<(), Error> {
        self.0.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl ReadModels for SqliteStore {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn begin(&self) -> Result<Box<dyn ReadModelTransaction>, Error> {
        Ok(Box::new(SqliteTransaction(self.writer().begin().await?)))
    }

    async fn query(&self, sql: &str, arguments: &[SqlValue]) -> Result<Vec<SqlRow>, Error> {
        let rows = bound(sql, arguments)?.fetch_all(self.readers()).await?;
        rows.iter().map(read_row).collect()
    }
}
