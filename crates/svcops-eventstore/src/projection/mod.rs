//! Persisted projections: named read models kept in tables beside the log, fed in position
//! order by a runner whose checkpoint moves in the same transaction as each batch's rows.
//!
//! What holds (the contract suite proves it on both adapters):
//! - **Nothing skipped, nothing applied twice.** A batch's rows and its checkpoint commit
//!   together; a crash anywhere leaves both before or both after the batch. The checkpoint
//!   moves with a compare-and-set (`WHERE checkpoint = <what this runner read>`), so two
//!   runners on one generation never both apply a batch.
//! - **No event is passed over because its transaction committed late.** Transactions may
//!   commit out of position order on PostgreSQL; the runner reads only up to the settled
//!   [`Horizon`], below which nothing new can appear, so it never moves its checkpoint past
//!   a position still being written. Writers do not wait for it.
//! - **Generations.** A projection's tables are built per generation (`<name>__<table>__g<N>`).
//!   A projection whose [`Projection::version`] changed, or one asked to rebuild, gets a new
//!   generation built from position 0 beside the live one; when it has caught up it becomes
//!   live in one transaction and the old generation's tables are dropped. Readers only ever
//!   see a whole generation.

mod horizon;
mod registry;
mod runner;

pub use horizon::{Horizon, LogTail};

pub use registry::{GenerationStatus, ProjectionStatus, projection_statuses, request_rebuild};
pub use runner::{Projector, ReadModel, RunnerSettings, start};

use async_trait::async_trait;

use crate::read_model::{Dialect, ReadModelTransaction};
use crate::{Error, RecordedEvent};

/// A read model fed from the log. Implementations are pure functions of the events, written
/// as SQL: `apply` may read and write its own tables, nothing else.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Unique among the projections of one database: lower-case letters, digits and `_`.
    fn name(&self) -> &'static str;

    /// Bumped whenever `apply` or the tables change meaning: a new generation is then built
    /// beside the live one and replaces it once caught up.
    fn version(&self) -> i64;

    /// The logical names of its tables, each referred to as `{name}` in SQL templates.
    fn tables(&self) -> &'static [&'static str];

    /// Statements creating the tables and their indexes (templates, see [`Tables::sql`]).
    fn schema(&self, dialect: Dialect) -> Vec<String>;

    /// Applies one batch of events, in position order, inside the transaction that also
    /// moves the checkpoint past them. Events it has no use for are passed over; an event it
    /// cannot read is logged and passed over (the log is never rewritten, so stopping for
    /// it would stop the read model for good). An error rolls the batch back and the runner
    /// retries it.
    async fn apply(
        &self,
        transaction: &mut dyn ReadModelTransaction,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), Error>;
}

/// The physical tables of one generation of a projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    projection: &'static str,
    generation: i64,
    logical: &'static [&'static str],
}

impl Tables {
    pub(crate) fn new(
        projection: &'static str,
        generation: i64,
        logical: &'static [&'static str],
    ) -> Self {
        Self {
            projection,
            generation,
            logical,
        }
    }

    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// The physical name of a logical table.
    pub fn name(&self, logical: &str) -> String {
        format!("{}__{logical}__g{}", self.projection, self.generation)
    }

    /// `template` with every `{table}` replaced by that table's physical name.
    pub fn sql(&self, template: &str) -> String {
        let mut sql = template.to_owned();
        for logical in self.logical {
            sql = sql.replace(&format!("{{{logical}}}"), &self.name(logical));
        }
        sql
    }

    pub(crate) fn physical(&self) -> impl Iterator<Item = String> + '_ {
        self.logical.iter().map(|logical| self.name(logical))
    }
}

/// Whether `name` may name a projection or a table: it becomes part of SQL identifiers.
pub(crate) fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.contains("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_the_generation_tables() {
        let tables = Tables::new("case_list", 3, &["cases", "flags"]);
        assert_eq!(
            tables.sql("SELECT * FROM {cases} JOIN {flags} USING (case_id) -- {other}"),
            "SELECT * FROM case_list__cases__g3 JOIN case_list__flags__g3 USING (case_id) -- {other}"
        );
    }

    #[test]
    fn identifiers_are_plain() {
        assert!(valid_identifier("case_list"));
        assert!(valid_identifier("v2"));
        for bad in ["", "Case", "1st", "a-b", "a__b", "a;drop", &"x".repeat(41)] {
            assert!(!valid_identifier(bad), "{bad:?}");
        }
    }
}
