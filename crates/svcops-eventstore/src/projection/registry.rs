//! The `projections` table (migration 0005): one row per generation of each projection,
//! with its status and checkpoint. Portable SQL over the read-model port.

use time::OffsetDateTime;

use super::{Projection, Tables, valid_identifier};
use crate::read_model::{ReadModelTransaction, ReadModels, SqlRow};
use crate::{Error, Position};

/// Where a generation of a projection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationStatus {
    /// Being built from position 0 beside the live generation; readers do not see it.
    Building,
    /// What readers read.
    Live,
    /// Replaced; its tables are dropped shortly after.
    Retired,
}

impl GenerationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Building => "building",
            Self::Live => "live",
            Self::Retired => "retired",
        }
    }

    fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "building" => Ok(Self::Building),
            "live" => Ok(Self::Live),
            "retired" => Ok(Self::Retired),
            other => Err(Error::ReadModel {
                reason: format!("unknown projection status {other:?}"),
            }),
        }
    }
}

/// One generation of one projection, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStatus {
    pub name: String,
    pub generation: i64,
    /// The projection code version that builds it.
    pub version: i64,
    pub status: GenerationStatus,
    /// Every event at or below this position is applied.
    pub checkpoint: Position,
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "name, generation, version, status, checkpoint, updated_at";

fn read(row: &SqlRow) -> Result<ProjectionStatus, Error> {
    let updated_at_ms = row.integer(5)?;
    Ok(ProjectionStatus {
        name: row.text(0)?.to_owned(),
        generation: row.integer(1)?,
        version: row.integer(2)?,
        status: GenerationStatus::parse(row.text(3)?)?,
        checkpoint: row.integer(4)?,
        updated_at: OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(updated_at_ms) * 1_000_000,
        )
        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    })
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Every generation of every projection that is live or being built, by name and generation.
pub async fn projection_statuses(
    read_models: &dyn ReadModels,
) -> Result<Vec<ProjectionStatus>, Error> {
    let rows = read_models
        .query(
            &format!(
                "SELECT {COLUMNS} FROM projections WHERE status <> 'retired' \
                 ORDER BY name, generation"
            ),
            &[],
        )
        .await?;
    rows.iter().map(read).collect()
}

/// The generations of `name` that are live or building, oldest first.
pub(crate) async fn current(
    transaction: &mut dyn ReadModelTransaction,
    name: &str,
) -> Result<Vec<ProjectionStatus>, Error> {
    let rows = transaction
        .query(
            &format!(
                "SELECT {COLUMNS} FROM projections WHERE name = $1 AND status <> 'retired' \
                 ORDER BY generation"
            ),
            &[name.into()],
        )
        .await?;
    rows.iter().map(read).collect()
}

pub(crate) async fn live(
    read_models: &dyn ReadModels,
    name: &str,
) -> Result<Option<ProjectionStatus>, Error> {
    let rows = read_models
        .query(
            &format!("SELECT {COLUMNS} FROM projections WHERE name = $1 AND status = 'live'"),
            &[name.into()],
        )
        .await?;
    rows.first().map(read).transpose()
}

pub(crate) async fn generation(
    read_models: &dyn ReadModels,
    name: &str,
    generation: i64,
) -> Result<Option<ProjectionStatus>, Error> {
    let rows = read_models
        .query(
            &format!("SELECT {COLUMNS} FROM projections WHERE name = $1 AND generation = $2"),
            &[name.into(), generation.into()],
        )
        .await?;
    rows.first().map(read).transpose()
}

/// Records a new generation and creates its tables, in the caller's transaction.
pub(crate) async fn create_generation(
    transaction: &mut dyn ReadModelTransaction,
    projection: &dyn Projection,
    dialect: crate::read_model::Dialect,
    status: GenerationStatus,
) -> Result<ProjectionStatus, Error> {
    let name = projection.name();
    if !valid_identifier(name) || !projection.tables().iter().all(|t| valid_identifier(t)) {
        return Err(Error::ReadModel {
            reason: format!(
                "projection {name:?} or one of its tables {:?} is not a plain identifier",
                projection.tables()
            ),
        });
    }
    let latest = transaction
        .query(
            "SELECT COALESCE(MAX(generation), 0) FROM projections WHERE name = $1",
            &[name.into()],
        )
        .await?;
    let generation = latest.first().map_or(Ok(0), |row| row.integer(0))? + 1;
    let updated_at = now_ms();
    transaction
        .execute(
            &format!("INSERT INTO projections ({COLUMNS}) VALUES ($1, $2, $3, $4, 0, $5)"),
            &[
                name.into(),
                generation.into(),
                projection.version().into(),
                status.as_str().into(),
                updated_at.into(),
            ],
        )
        .await?;
    let tables = Tables::new(name, generation, projection.tables());
    for physical in tables.physical() {
        // Left over by a generation whose creation rolled back on SQLite before DDL was
        // transactional for it, or by hand: a generation always starts empty.
        transaction
            .execute(&format!("DROP TABLE IF EXISTS {physical}"), &[])
            .await?;
    }
    for statement in projection.schema(dialect) {
        transaction.execute(&tables.sql(&statement), &[]).await?;
    }
    Ok(ProjectionStatus {
        name: name.to_owned(),
        generation,
        version: projection.version(),
        status,
        checkpoint: 0,
        updated_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(updated_at) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    })
}

/// Moves a generation's checkpoint from `from` to `to`, if it is still at `from` and not
/// retired. `false`: another runner moved it, or the generation was replaced.
pub(crate) async fn advance(
    transaction: &mut dyn ReadModelTransaction,
    name: &str,
    generation: i64,
    from: Position,
    to: Position,
) -> Result<bool, Error> {
    let moved = transaction
        .execute(
            "UPDATE projections SET checkpoint = $1, updated_at = $2 \
             WHERE name = $3 AND generation = $4 AND checkpoint = $5 AND status <> 'retired'",
            &[
                to.into(),
                now_ms().into(),
                name.into(),
                generation.into(),
                from.into(),
            ],
        )
        .await?;
    Ok(moved == 1)
}

/// Makes a caught-up building generation live and retires the one it replaces, atomically.
/// `false` if it is no longer building at `checkpoint` (it moved on, or was replaced).
pub(crate) async fn switch_over(
    read_models: &dyn ReadModels,
    name: &str,
    generation: i64,
    checkpoint: Position,
) -> Result<bool, Error> {
    let mut transaction = read_models.begin().await?;
    // Retire first: at most one generation is live (a unique index).
    transaction
        .execute(
            "UPDATE projections SET status = 'retired', updated_at = $1 \
             WHERE name = $2 AND generation < $3 AND status <> 'retired'",
            &[now_ms().into(), name.into(), generation.into()],
        )
        .await?;
    let promoted = transaction
        .execute(
            "UPDATE projections SET status = 'live', updated_at = $1 \
             WHERE name = $2 AND generation = $3 AND status = 'building' AND checkpoint = $4",
            &[
                now_ms().into(),
                name.into(),
                generation.into(),
                checkpoint.into(),
            ],
        )
        .await?;
    if promoted != 1 {
        // Rolled back on drop: the retirement above does not happen either.
        return Ok(false);
    }
    transaction.commit().await?;
    Ok(true)
}

/// Drops the tables of every generation of `projection` retired at least `retired_for` ago,
/// and forgets it.
pub(crate) async fn drop_retired(
    read_models: &dyn ReadModels,
    projection: &dyn Projection,
    retired_for: std::time::Duration,
) -> Result<(), Error> {
    let name = projection.name();
    let before = now_ms() - i64::try_from(retired_for.as_millis()).unwrap_or(i64::MAX);
    let retired = read_models
        .query(
            "SELECT generation FROM projections \
             WHERE name = $1 AND status = 'retired' AND updated_at <= $2",
            &[name.into(), before.into()],
        )
        .await?;
    for row in retired {
        let generation = row.integer(0)?;
        let mut transaction = read_models.begin().await?;
        for physical in Tables::new(name, generation, projection.tables()).physical() {
            transaction
                .execute(&format!("DROP TABLE IF EXISTS {physical}"), &[])
                .await?;
        }
        transaction
            .execute(
                "DELETE FROM projections WHERE name = $1 AND generation = $2 AND status = 'retired'",
                &[name.into(), generation.into()],
            )
            .await?;
        transaction.commit().await?;
    }
    Ok(())
}

/// Asks for `projection` to be rebuilt from position 0 into a new generation of its
/// version. Returns the building generation; one of this version already building is
/// returned as is. Refused while another version is live or building (a deploy under way):
/// one generation is only ever built by one version's code.
pub async fn request_rebuild(
    read_models: &dyn ReadModels,
    projection: &dyn Projection,
) -> Result<ProjectionStatus, Error> {
    let mut transaction = read_models.begin().await?;
    let generations = current(&mut *transaction, projection.name()).await?;
    if let Some(other) = generations
        .iter()
        .find(|generation| generation.version != projection.version())
    {
        return Err(Error::Precondition(format!(
            "projection {} has version {} {}; this replica runs version {}: rebuild from a \
             replica of that version, or once the deploy is done",
            projection.name(),
            other.version,
            other.status.as_str(),
            projection.version()
        )));
    }
    if let Some(building) = generations
        .iter()
        .find(|generation| generation.status == GenerationStatus::Building)
    {
        return Ok(building.clone());
    }
    let building = create_generation(
        &mut *transaction,
        projection,
        read_models.dialect(),
        GenerationStatus::Building,
    )
    .await?;
    transaction.commit().await?;
    Ok(building)
}
