//! The read-model port: tables beside the log, in the same database, written in
//! transactions that also move a projection's checkpoint (see [`crate::projection`]).
//!
//! Projections write portable SQL: `$1`-style parameters (SQLite reads `$N` as the N-th
//! argument too), `BIGINT`, `TEXT` and [`Dialect::blob`] columns, `INSERT … ON CONFLICT`.
//! Values cross the port as [`SqlValue`]s, each typed even when null, because PostgreSQL
//! types every parameter.
//!
//! A bound `LIMIT` is written `LIMIT +$N`: SQLite inlines a plain `LIMIT $N` into the
//! statement and marks it to be re-prepared whenever `$N` is bound again, i.e. on every
//! execution (it was 13 % of the embedded pipeline's CPU); the unary plus keeps the limit
//! an expression read at run time. PostgreSQL takes it as it is.

mod postgres;
mod sqlite;

use async_trait::async_trait;

use crate::Error;

/// The SQL dialect behind a [`ReadModels`], for the few words that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The column type for bytes.
    pub fn blob(self) -> &'static str {
        match self {
            Self::Postgres => "BYTEA",
            Self::Sqlite => "BLOB",
        }
    }
}

/// A parameter of a read-model statement, or a value read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    Integer(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
    /// A whole column of values, as one PostgreSQL array parameter (`UNNEST`): how
    /// [`BulkInsert`] writes many rows on PostgreSQL. SQLite refuses it.
    Array(SqlArray),
}

/// One column of values for [`SqlValue::Array`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlArray {
    Integers(Vec<Option<i64>>),
    Texts(Vec<Option<String>>),
    Blobs(Vec<Option<Vec<u8>>>),
}

impl SqlArray {
    /// The PostgreSQL array type, for the cast that names it in SQL.
    fn postgres_type(&self) -> &'static str {
        match self {
            Self::Integers(_) => "bigint[]",
            Self::Texts(_) => "text[]",
            Self::Blobs(_) => "bytea[]",
        }
    }

    /// An empty column of the type of `value`.
    fn of(value: &SqlValue, capacity: usize) -> Result<Self, Error> {
        Ok(match value {
            SqlValue::Integer(_) => Self::Integers(Vec::with_capacity(capacity)),
            SqlValue::Text(_) => Self::Texts(Vec::with_capacity(capacity)),
            SqlValue::Blob(_) => Self::Blobs(Vec::with_capacity(capacity)),
            SqlValue::Array(_) => {
                return Err(Error::ReadModel {
                    reason: "an array cannot be a column value".into(),
                });
            }
        })
    }

    fn push(&mut self, value: SqlValue) -> Result<(), Error> {
        match (self, value) {
            (Self::Integers(column), SqlValue::Integer(value)) => column.push(value),
            (Self::Texts(column), SqlValue::Text(value)) => column.push(value),
            (Self::Blobs(column), SqlValue::Blob(value)) => column.push(value),
            (column, value) => {
                return Err(Error::ReadModel {
                    reason: format!(
                        "a {} column got {value:?}: every row must give a column the same type",
                        column.postgres_type()
                    ),
                });
            }
        }
        Ok(())
    }
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        Self::Integer(Some(value))
    }
}

impl From<Option<i64>> for SqlValue {
    fn from(value: Option<i64>) -> Self {
        Self::Integer(value)
    }
}

impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        Self::Text(Some(value.to_owned()))
    }
}

impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        Self::Text(Some(value))
    }
}

impl From<Option<String>> for SqlValue {
    fn from(value: Option<String>) -> Self {
        Self::Text(value)
    }
}

impl From<uuid::Uuid> for SqlValue {
    /// As text (hyphenated, lower case): readable in both databases.
    fn from(value: uuid::Uuid) -> Self {
        Self::Text(Some(value.to_string()))
    }
}

impl From<time::OffsetDateTime> for SqlValue {
    /// As unix microseconds (both databases keep microseconds; see [`SqlRow::timestamp`]).
    fn from(value: time::OffsetDateTime) -> Self {
        Self::Integer(Some((value.unix_timestamp_nanos() / 1_000) as i64))
    }
}

impl From<Vec<u8>> for SqlValue {
    fn from(value: Vec<u8>) -> Self {
        Self::Blob(Some(value))
    }
}

/// One row read from a read model, its columns in `SELECT` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlRow(pub Vec<SqlValue>);

impl SqlRow {
    fn column(&self, index: usize) -> Result<&SqlValue, Error> {
        self.0.get(index).ok_or_else(|| Error::ReadModel {
            reason: format!("row has no column {index}"),
        })
    }

    fn mismatch(&self, index: usize, wanted: &str) -> Error {
        Error::ReadModel {
            reason: format!("column {index} is not {wanted}: {:?}", self.0.get(index)),
        }
    }

    pub fn optional_integer(&self, index: usize) -> Result<Option<i64>, Error> {
        match self.column(index)? {
            SqlValue::Integer(value) => Ok(*value),
            SqlValue::Text(None) | SqlValue::Blob(None) => Ok(None),
            _ => Err(self.mismatch(index, "an integer")),
        }
    }

    pub fn integer(&self, index: usize) -> Result<i64, Error> {
        self.optional_integer(index)?
            .ok_or_else(|| self.mismatch(index, "a non-null integer"))
    }

    pub fn optional_text(&self, index: usize) -> Result<Option<&str>, Error> {
        match self.column(index)? {
            SqlValue::Text(value) => Ok(value.as_deref()),
            SqlValue::Integer(None) | SqlValue::Blob(None) => Ok(None),
            _ => Err(self.mismatch(index, "text")),
        }
    }

    pub fn text(&self, index: usize) -> Result<&str, Error> {
        self.optional_text(index)?
            .ok_or_else(|| self.mismatch(index, "non-null text"))
    }

    pub fn blob(&self, index: usize) -> Result<&[u8], Error> {
        match self.column(index)? {
            SqlValue::Blob(Some(value)) => Ok(value),
            _ => Err(self.mismatch(index, "a non-null blob")),
        }
    }

    /// A time written as a [`time::OffsetDateTime`] value (unix microseconds), in UTC.
    pub fn timestamp(&self, index: usize) -> Result<time::OffsetDateTime, Error> {
        let micros = self.integer(index)?;
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).map_err(
            |error| Error::ReadModel {
                reason: format!("column {index} is not a time: {error}"),
            },
        )
    }

    pub fn uuid(&self, index: usize) -> Result<uuid::Uuid, Error> {
        uuid::Uuid::parse_str(self.text(index)?).map_err(|error| Error::ReadModel {
            reason: format!("column {index} is not a uuid: {error}"),
        })
    }
}

/// Splits the `page_size + 1` rows a page query asked for into the page and the token of the
/// next page (the `position_column` of its last row), if there is one.
pub fn page_of(
    mut rows: Vec<SqlRow>,
    page_size: usize,
    position_column: usize,
) -> Result<(Vec<SqlRow>, Option<i64>), Error> {
    if rows.len() <= page_size || page_size == 0 {
        return Ok((rows, None));
    }
    rows.truncate(page_size);
    let next = rows[page_size - 1].integer(position_column)?;
    Ok((rows, Some(next)))
}

/// Rows for one table, written with multi-row `INSERT`s: one statement per up to
/// [`BulkInsert::MAX_PARAMETERS`] values instead of one per row, which is what lets a
/// projection rebuild at database speed rather than at round-trip speed.
#[derive(Debug)]
pub struct BulkInsert {
    head: String,
    tail: String,
    columns: usize,
    values: Vec<SqlValue>,
    /// A row pushed with another number of values than columns: `flush` refuses the batch.
    misshapen: bool,
}

impl BulkInsert {
    /// Under both databases' limits on parameters per statement (PostgreSQL 65,535,
    /// SQLite 32,766).
    pub const MAX_PARAMETERS: usize = 30_000;

    /// `INSERT INTO <table> (<columns>) VALUES … <tail>`; `tail` may be empty or e.g.
    /// `ON CONFLICT (key) DO NOTHING`.
    pub fn new(table: &str, columns: &[&str], tail: &str) -> Self {
        Self {
            head: format!("INSERT INTO {table} ({}) VALUES ", columns.join(", ")),
            tail: tail.to_owned(),
            columns: columns.len(),
            values: Vec::new(),
            misshapen: false,
        }
    }

    /// Adds a row: one value per column, in the order the columns were named.
    pub fn push(&mut self, row: impl IntoIterator<Item = SqlValue>) {
        let before = self.values.len();
        self.values.extend(row);
        if self.values.len() - before != self.columns {
            self.misshapen = true;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn statement(&self, rows: usize, dialect: Dialect) -> String {
        // SQLite looks every `$N` or `?N` up among the parameters before it (quadratic:
        // 10,000 rows took 7 s); plain `?`s are numbered in order without a lookup.
        let numbered = dialect == Dialect::Postgres;
        let mut sql = self.head.clone();
        let mut parameter = 0;
        for row in 0..rows {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for column in 0..self.columns {
                if column > 0 {
                    sql.push_str(", ");
                }
                parameter += 1;
                if numbered {
                    sql.push('$');
                    sql.push_str(&parameter.to_string());
                } else {
                    sql.push('?');
                }
            }
            sql.push(')');
        }
        if !self.tail.is_empty() {
            sql.push(' ');
            sql.push_str(&self.tail);
        }
        sql
    }

    /// PostgreSQL: a column per array parameter, `INSERT … SELECT * FROM UNNEST(…)`: a short
    /// statement whatever the rows, bound in binary.
    async fn flush_as_arrays(
        &mut self,
        transaction: &mut dyn ReadModelTransaction,
    ) -> Result<u64, Error> {
        const ROWS_PER_STATEMENT: usize = 10_000;
        let values = std::mem::take(&mut self.values);
        let mut written = 0;
        for chunk in values.chunks(ROWS_PER_STATEMENT * self.columns) {
            let rows = chunk.len() / self.columns;
            let mut columns = chunk[..self.columns]
                .iter()
                .map(|value| SqlArray::of(value, rows))
                .collect::<Result<Vec<_>, _>>()?;
            for (index, value) in chunk.iter().enumerate() {
                columns[index % self.columns].push(value.clone())?;
            }
            let casts: Vec<String> = columns
                .iter()
                .enumerate()
                .map(|(index, column)| format!("${}::{}", index + 1, column.postgres_type()))
                .collect();
            let mut sql = self.head.trim_end_matches("VALUES ").to_owned();
            sql.push_str(&format!("SELECT * FROM UNNEST({})", casts.join(", ")));
            if !self.tail.is_empty() {
                sql.push(' ');
                sql.push_str(&self.tail);
            }
            let arguments: Vec<SqlValue> = columns.into_iter().map(SqlValue::Array).collect();
            written += transaction.execute(&sql, &arguments).await?;
        }
        Ok(written)
    }

    /// Writes every pushed row and empties the buffer; returns the rows written.
    pub async fn flush(
        &mut self,
        transaction: &mut dyn ReadModelTransaction,
    ) -> Result<u64, Error> {
        if self.misshapen {
            return Err(Error::ReadModel {
                reason: format!("a row for `{}` has not one value per column", self.head),
            });
        }
        if self.columns == 0 || self.values.is_empty() {
            return Ok(0);
        }
        if transaction.dialect() == Dialect::Postgres {
            return self.flush_as_arrays(transaction).await;
        }
        let rows_per_statement = (Self::MAX_PARAMETERS / self.columns).max(1);
        let values = std::mem::take(&mut self.values);
        let mut written = 0;
        let mut full: Option<String> = None;
        for chunk in values.chunks(rows_per_statement * self.columns) {
            let rows = chunk.len() / self.columns;
            let dialect = transaction.dialect();
            let sql = if rows == rows_per_statement {
                full.get_or_insert_with(|| self.statement(rows, dialect))
                    .clone()
            } else {
                self.statement(rows, dialect)
            };
            written += transaction.execute(&sql, chunk).await?;
        }
        Ok(written)
    }
}

/// One read-model transaction: everything in it commits together or not at all (dropping
/// it uncommitted rolls it back).
#[async_trait]
pub trait ReadModelTransaction: Send {
    fn dialect(&self) -> Dialect;

    /// Runs a statement; returns the rows it affected.
    async fn execute(&mut self, sql: &str, arguments: &[SqlValue]) -> Result<u64, Error>;

    /// Runs a query, reading every row.
    async fn query(&mut self, sql: &str, arguments: &[SqlValue]) -> Result<Vec<SqlRow>, Error>;

    async fn commit(self: Box<Self>) -> Result<(), Error>;
}

/// The port: read-model tables in the store's database.
#[async_trait]
pub trait ReadModels: Send + Sync + 'static {
    fn dialect(&self) -> Dialect;

    /// Starts a write transaction. On SQLite it holds the one writer until it ends, so keep
    /// it short (a projection batch).
    async fn begin(&self) -> Result<Box<dyn ReadModelTransaction>, Error>;

    /// Runs a read-only query outside any transaction.
    async fn query(&self, sql: &str, arguments: &[SqlValue]) -> Result<Vec<SqlRow>, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it is asked to run.
    struct Recording(Dialect, Vec<(String, usize)>);

    #[async_trait]
    impl ReadModelTransaction for Recording {
        fn dialect(&self) -> Dialect {
            self.0
        }

        async fn execute(&mut self, sql: &str, arguments: &[SqlValue]) -> Result<u64, Error> {
            // Rows: one per three values, or the length of the array columns.
            let rows = match arguments.first() {
                Some(SqlValue::Array(SqlArray::Integers(column))) => column.len(),
                _ => arguments.len() / 3,
            };
            self.1.push((sql.to_owned(), rows));
            Ok(rows as u64)
        }

        async fn query(&mut self, _: &str, _: &[SqlValue]) -> Result<Vec<SqlRow>, Error> {
            Ok(Vec::new())
        }

        async fn commit(self: Box<Self>) -> Result<(), Error> {
            Ok(())
        }
    }

    fn rows(count: usize) -> BulkInsert {
        let mut bulk = BulkInsert::new("t", &["a", "b", "c"], "ON CONFLICT (a) DO NOTHING");
        for n in 0..count {
            bulk.push([(n as i64).into(), "x".into(), SqlValue::Integer(None)]);
        }
        bulk
    }

    #[tokio::test]
    async fn postgres_gets_one_array_per_column() {
        let mut transaction = Recording(Dialect::Postgres, Vec::new());
        let mut bulk = rows(25_000);
        assert_eq!(bulk.flush(&mut transaction).await.expect("flush"), 25_000);
        let rows: Vec<usize> = transaction.1.iter().map(|(_, rows)| *rows).collect();
        assert_eq!(rows, [10_000, 10_000, 5_000]);
        assert_eq!(
            transaction.1[0].0,
            "INSERT INTO t (a, b, c) SELECT * FROM UNNEST($1::bigint[], $2::text[], \
             $3::bigint[]) ON CONFLICT (a) DO NOTHING"
        );
        assert!(bulk.is_empty(), "flushed rows are gone");
        assert_eq!(bulk.flush(&mut transaction).await.expect("flush"), 0);
        assert_eq!(transaction.1.len(), 3, "nothing to flush, nothing run");
    }

    #[tokio::test]
    async fn a_row_of_the_wrong_width_is_refused_not_shifted() {
        let mut transaction = Recording(Dialect::Postgres, Vec::new());
        let mut bulk = BulkInsert::new("t", &["a", "b"], "");
        bulk.push([1_i64.into(), 2_i64.into()]);
        bulk.push([3_i64.into()]);
        assert!(matches!(
            bulk.flush(&mut transaction).await,
            Err(Error::ReadModel { .. })
        ));
        assert!(transaction.1.is_empty(), "nothing written");
    }

    #[tokio::test]
    async fn a_column_keeps_one_type() {
        let mut transaction = Recording(Dialect::Postgres, Vec::new());
        let mut bulk = BulkInsert::new("t", &["a"], "");
        bulk.push([1_i64.into()]);
        bulk.push(["one".into()]);
        assert!(matches!(
            bulk.flush(&mut transaction).await,
            Err(Error::ReadModel { .. })
        ));
    }

    #[tokio::test]
    async fn sqlite_statements_stay_under_the_parameter_limit() {
        let mut transaction = Recording(Dialect::Sqlite, Vec::new());
        rows(25_000).flush(&mut transaction).await.expect("flush");
        let rows: Vec<usize> = transaction.1.iter().map(|(_, rows)| *rows).collect();
        assert_eq!(rows, [10_000, 10_000, 5_000]);
    }

    #[tokio::test]
    async fn sqlite_gets_plain_placeholders() {
        let mut transaction = Recording(Dialect::Sqlite, Vec::new());
        rows(2).flush(&mut transaction).await.expect("flush");
        assert_eq!(
            transaction.1[0].0,
            "INSERT INTO t (a, b, c) VALUES (?, ?, ?), (?, ?, ?) ON CONFLICT (a) DO NOTHING"
        );
    }
}
