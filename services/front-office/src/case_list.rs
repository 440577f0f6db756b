//! The case list: every case, newest first, for listing. A persisted projection
//! (`svcops_eventstore::projection`): tables in the office's own database, fed from its log.

use async_trait::async_trait;
use svcops_eventstore::projection::{Projection, ReadModel, Tables};
use svcops_eventstore::read_model::{BulkInsert, Dialect, ReadModelTransaction, SqlRow, SqlValue};
use svcops_eventstore::{Error, RecordedEvent};
use svcops_kit::aggregate::DomainEvent;
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as proto;
use uuid::Uuid;

use crate::case::{
    AgentName, CaseDetails, CaseEvent, CaseView, Category, CustomerPhone, EscalationLevel,
    FlagNote, Lifecycle, QueueName, Risk, RiskNote, Stage, WaitingOn, category_from_proto,
    channel_from_proto, flag_from_proto, priority_from_proto, risk_trigger_from_proto,
    waiting_on_from_proto,
};

/// Bump when the tables or what `apply` writes change: the list is rebuilt beside the live
/// one at the next start.
const VERSION: i64 = 4;

/// The columns of `{cases}` a view is read from, in [`view`]'s order.
const CASE_COLUMNS: &str = "case_id, position, version, customer_key_id, customer_phone_sealed, \
     category, priority, channel, summary, product, serial_number, opened_at, opened_by, \
     opened_by_role, state, waiting_on, queue, assignee, resolution, reopened_count, \
     escalation_level, escalation_reason, risk_trigger, risk_detail, risk_flagged_at, updated_at, \
     segment, project_id";

pub struct CaseListProjection;

#[async_trait]
impl Projection for CaseListProjection {
    fn name(&self) -> &'static str {
        "case_list"
    }

    fn version(&self) -> i64 {
        VERSION
    }

    fn tables(&self) -> &'static [&'static str] {
        &["cases", "flags"]
    }

    fn schema(&self, dialect: Dialect) -> Vec<String> {
        vec![
            // Enums by their protobuf wire numbers (stable, where names may change); times in
            // unix microseconds. `position` is the case's first event's: the listing order.
            format!(
                "CREATE TABLE {{cases}} (
                    case_id TEXT PRIMARY KEY,
                    position BIGINT NOT NULL,
                    version BIGINT NOT NULL,
                    customer_key_id TEXT,
                    customer_phone_sealed {blob},
                    category BIGINT NOT NULL,
                    priority BIGINT NOT NULL,
                    channel BIGINT NOT NULL,
                    summary TEXT NOT NULL,
                    product TEXT NOT NULL,
                    serial_number TEXT NOT NULL,
                    opened_at BIGINT NOT NULL,
                    opened_by TEXT NOT NULL,
                    opened_by_role TEXT NOT NULL,
                    state BIGINT NOT NULL,
                    waiting_on BIGINT NOT NULL,
                    queue TEXT,
                    assignee TEXT,
                    resolution TEXT,
                    reopened_count BIGINT NOT NULL,
                    escalation_level BIGINT NOT NULL,
                    escalation_reason TEXT,
                    risk_trigger BIGINT NOT NULL,
                    risk_detail TEXT,
                    risk_flagged_at BIGINT,
                    updated_at BIGINT NOT NULL,
                    segment BIGINT NOT NULL,
                    project_id TEXT
                )",
                blob = dialect.blob()
            ),
            "CREATE UNIQUE INDEX {cases}_by_position ON {cases} (position)".into(),
            // What lists are filtered by most, each newest first; and a customer's cases.
            "CREATE INDEX {cases}_by_state ON {cases} (state, position)".into(),
            "CREATE INDEX {cases}_by_assignee ON {cases} (assignee, position)".into(),
            "CREATE INDEX {cases}_by_queue ON {cases} (queue, position)".into(),
            "CREATE INDEX {cases}_by_customer ON {cases} (customer_key_id, opened_at)".into(),
            "CREATE INDEX {cases}_by_segment ON {cases} (segment, position)".into(),
            "CREATE INDEX {cases}_by_project ON {cases} (project_id, position)".into(),
            "CREATE TABLE {flags} (
                case_id TEXT NOT NULL,
                version BIGINT NOT NULL,
                flag BIGINT NOT NULL,
                detail TEXT NOT NULL,
                flagged_at BIGINT NOT NULL,
                PRIMARY KEY (case_id, version)
            )"
            .into(),
        ]
    }

    async fn apply(
        &self,
        transaction: &mut dyn ReadModelTransaction,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), Error> {
        let mut cases = BulkInsert::new(
            &tables.name("cases"),
            &[
                "case_id",
                "position",
                "version",
                "customer_key_id",
                "customer_phone_sealed",
                "category",
                "priority",
                "channel",
                "summary",
                "product",
                "serial_number",
                "opened_at",
                "opened_by",
                "opened_by_role",
                "state",
                "waiting_on",
                "queue",
                "assignee",
                "resolution",
                "reopened_count",
                "escalation_level",
                "escalation_reason",
                "risk_trigger",
                "risk_detail",
                "risk_flagged_at",
                "updated_at",
                "segment",
                "project_id",
            ],
            "",
        );
        let mut flags = BulkInsert::new(
            &tables.name("flags"),
            &["case_id", "version", "flag", "detail", "flagged_at"],
            "",
        );
        // Every later event moves its case's version and time: the newest per case, set
        // after the inserts.
        let mut versions = std::collections::HashMap::new();
        // Lifecycle changes, in event order, applied after the inserts (a case opened in
        // this batch is a row by then).
        let mut changes: Vec<(String, Vec<SqlValue>)> = Vec::new();
        for recorded in events {
            let event = match CaseEvent::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(%error, position = recorded.position, "case list passes over an undecodable event");
                    continue;
                }
            };
            let version = recorded.version as i64;
            match event {
                CaseEvent::Opened { case_id, details } => {
                    let (key_id, sealed) = match details.customer_phone {
                        CustomerPhone::Sealed { key_id, sealed } => {
                            (Some(key_id.to_string()), Some(sealed))
                        }
                        CustomerPhone::Known(_) | CustomerPhone::Erased => (None, None),
                    };
                    cases.push([
                        case_id.into(),
                        recorded.position.into(),
                        version.into(),
                        key_id.into(),
                        SqlValue::Blob(sealed),
                        i64::from(common::CaseCategory::from(details.category) as i32).into(),
                        i64::from(common::Priority::from(details.priority) as i32).into(),
                        i64::from(proto::Channel::from(details.channel) as i32).into(),
                        details.summary.into(),
                        details.product.into(),
                        details.serial_number.into(),
                        recorded.metadata.occurred_at.into(),
                        recorded.metadata.actor_subject.as_str().into(),
                        recorded.metadata.actor_role.as_str().into(),
                        state(Lifecycle::Open).into(),
                        0i64.into(),
                        None::<String>.into(),
                        None::<String>.into(),
                        None::<String>.into(),
                        0i64.into(),
                        0i64.into(),
                        None::<String>.into(),
                        0i64.into(),
                        None::<String>.into(),
                        None::<i64>.into(),
                        recorded.metadata.occurred_at.into(),
                        details
                            .segment
                            .map_or(0, |segment| {
                                i64::from(proto::CustomerSegment::from(segment) as i32)
                            })
                            .into(),
                        details.project_id.map(|id| id.to_string()).into(),
                    ]);
                }
                CaseEvent::Flagged {
                    case_id,
                    flag,
                    detail,
                } => {
                    flags.push([
                        case_id.into(),
                        version.into(),
                        i64::from(proto::CaseFlag::from(flag) as i32).into(),
                        detail.into(),
                        recorded.metadata.occurred_at.into(),
                    ]);
                    versions.insert(case_id, (version, recorded.metadata.occurred_at));
                }
                other => {
                    if let Some((case_id, change)) =
                        change(tables, other, recorded.metadata.occurred_at)
                    {
                        changes.push(change);
                        versions.insert(case_id, (version, recorded.metadata.occurred_at));
                    }
                }
            }
        }
        cases.flush(transaction).await?;
        flags.flush(transaction).await?;
        for (sql, parameters) in changes {
            transaction.execute(&sql, &parameters).await?;
        }
        let bump_version = tables.sql(
            "UPDATE {cases} SET version = $1, updated_at = $2 WHERE case_id = $3 AND version < $1",
        );
        for (case_id, (version, occurred_at)) in versions {
            transaction
                .execute(
                    &bump_version,
                    &[version.into(), occurred_at.into(), case_id.into()],
                )
                .await?;
        }
        Ok(())
    }
}

/// A lifecycle state as its protobuf wire number.
fn state(lifecycle: Lifecycle) -> i64 {
    let state = match lifecycle {
        Lifecycle::Open => proto::CaseState::Open,
        Lifecycle::Triaged => proto::CaseState::Triaged,
        Lifecycle::Assigned => proto::CaseState::Assigned,
        Lifecycle::Waiting(_) => proto::CaseState::Waiting,
        Lifecycle::Resolved => proto::CaseState::Resolved,
        Lifecycle::Closed => proto::CaseState::Closed,
    };
    i64::from(state as i32)
}

fn waiting_on(on: WaitingOn) -> i64 {
    i64::from(proto::WaitingOn::from(on) as i32)
}

/// The update a later event makes to its case's row; the same moves as the aggregate's
/// `apply` (a reassigned waiting case keeps waiting; a reopened one goes back to its
/// assignee, or is open without one).
fn change(
    tables: &Tables,
    event: CaseEvent,
    occurred_at: time::OffsetDateTime,
) -> Option<(Uuid, (String, Vec<SqlValue>))> {
    let (case_id, set, mut parameters): (Uuid, &str, Vec<SqlValue>) = match event {
        CaseEvent::Opened { .. } | CaseEvent::Flagged { .. } => return None,
        CaseEvent::Escalated {
            case_id,
            level,
            reason,
        } => (
            case_id,
            "escalation_level = $1, escalation_reason = $2",
            vec![i64::from(level.get()).into(), reason.into()],
        ),
        CaseEvent::RiskFlagged {
            case_id,
            risk,
            priority,
        } => (
            case_id,
            "risk_trigger = $1, risk_detail = $2, risk_flagged_at = $3, priority = $4",
            vec![
                i64::from(proto::RiskTrigger::from(risk.trigger) as i32).into(),
                risk.detail.into(),
                occurred_at.into(),
                i64::from(common::Priority::from(priority) as i32).into(),
            ],
        ),
        CaseEvent::RiskCleared { case_id, .. } => (
            case_id,
            "risk_trigger = 0, risk_detail = NULL, risk_flagged_at = NULL",
            vec![],
        ),
        CaseEvent::Triaged {
            case_id,
            queue,
            priority,
        } => (
            case_id,
            "state = $1, waiting_on = 0, queue = $2, priority = $3, assignee = NULL",
            vec![
                state(Lifecycle::Triaged).into(),
                queue.as_str().into(),
                i64::from(common::Priority::from(priority) as i32).into(),
            ],
        ),
        CaseEvent::Assigned { case_id, assignee } => (
            case_id,
            "assignee = $1, state = CASE WHEN state = $2 THEN state ELSE $3 END",
            vec![
                assignee.as_str().into(),
                state(Lifecycle::Waiting(WaitingOn::Customer)).into(),
                state(Lifecycle::Assigned).into(),
            ],
        ),
        CaseEvent::Waiting { case_id, on, .. } => (
            case_id,
            "state = $1, waiting_on = $2",
            vec![state(Lifecycle::Waiting(on)).into(), waiting_on(on).into()],
        ),
        CaseEvent::Resumed { case_id } => (
            case_id,
            "state = $1, waiting_on = 0",
            vec![state(Lifecycle::Assigned).into()],
        ),
        CaseEvent::Resolved {
            case_id,
            resolution,
        } => (
            case_id,
            "state = $1, waiting_on = 0, resolution = $2",
            vec![state(Lifecycle::Resolved).into(), resolution.into()],
        ),
        CaseEvent::Closed { case_id } => {
            (case_id, "state = $1", vec![state(Lifecycle::Closed).into()])
        }
        CaseEvent::Reopened { case_id, .. } => (
            case_id,
            "state = CASE WHEN assignee IS NULL THEN $1 ELSE $2 END, resolution = NULL, \
             reopened_count = reopened_count + 1",
            vec![
                state(Lifecycle::Open).into(),
                state(Lifecycle::Assigned).into(),
            ],
        ),
    };
    // SQLite numbers `$N` parameters in the order they first appear: the case id comes
    // last, after the SET clause's.
    let last = parameters.len() + 1;
    parameters.push(case_id.into());
    let sql = tables.sql(&format!(
        "UPDATE {{cases}} SET {set} WHERE case_id = ${last}"
    ));
    Some((case_id, (sql, parameters)))
}

fn unknown(what: &str, value: i64) -> Error {
    Error::ReadModel {
        reason: format!("unknown {what} {value} in the case list"),
    }
}

fn wire(column: usize, row: &SqlRow) -> Result<i32, Error> {
    let value = row.integer(column)?;
    i32::try_from(value).map_err(|_| unknown("enum value", value))
}

fn view(row: &SqlRow, flags: Vec<FlagNote>) -> Result<CaseView, Error> {
    let customer_phone = match row.optional_text(3)? {
        Some(key_id) => CustomerPhone::Sealed {
            key_id: Uuid::parse_str(key_id).map_err(|error| Error::ReadModel {
                reason: format!("customer key id: {error}"),
            })?,
            sealed: row.blob(4)?.to_vec(),
        },
        None => CustomerPhone::Erased,
    };
    let details = CaseDetails {
        customer_phone,
        category: category_from_proto(wire(5, row)?)
            .ok_or_else(|| unknown("category", row.integer(5).unwrap_or_default()))?,
        priority: priority_from_proto(wire(6, row)?)
            .flatten()
            .ok_or_else(|| unknown("priority", row.integer(6).unwrap_or_default()))?,
        channel: channel_from_proto(wire(7, row)?)
            .flatten()
            .ok_or_else(|| unknown("channel", row.integer(7).unwrap_or_default()))?,
        summary: row.text(8)?.to_owned(),
        product: row.text(9)?.to_owned(),
        serial_number: row.text(10)?.to_owned(),
        segment: crate::customer::segment_from_proto(wire(26, row)?).flatten(),
        project_id: row
            .optional_text(27)?
            .map(|id| {
                Uuid::parse_str(id).map_err(|error| Error::ReadModel {
                    reason: format!("project id: {error}"),
                })
            })
            .transpose()?,
    };
    let lifecycle = match proto::CaseState::try_from(wire(14, row)?) {
        Ok(proto::CaseState::Open) => Lifecycle::Open,
        Ok(proto::CaseState::Triaged) => Lifecycle::Triaged,
        Ok(proto::CaseState::Assigned) => Lifecycle::Assigned,
        Ok(proto::CaseState::Waiting) => Lifecycle::Waiting(
            waiting_on_from_proto(wire(15, row)?)
                .ok_or_else(|| unknown("waiting on", row.integer(15).unwrap_or_default()))?,
        ),
        Ok(proto::CaseState::Resolved) => Lifecycle::Resolved,
        Ok(proto::CaseState::Closed) => Lifecycle::Closed,
        Ok(proto::CaseState::Unspecified) | Err(_) => {
            return Err(unknown("state", row.integer(14).unwrap_or_default()));
        }
    };
    let unreadable = |error: crate::case::CaseError| Error::ReadModel {
        reason: format!("unreadable in the case list: {error}"),
    };
    let queue = row
        .optional_text(16)?
        .map(|text| QueueName::parse("queue", text))
        .transpose()
        .map_err(unreadable)?;
    let assignee = row
        .optional_text(17)?
        .map(|text| AgentName::parse("assignee", text))
        .transpose()
        .map_err(unreadable)?;
    let escalation = match row.integer(20)? {
        0 => None,
        level => Some((
            u32::try_from(level)
                .ok()
                .and_then(|level| EscalationLevel::parse("escalation_level", level).ok())
                .ok_or_else(|| unknown("escalation level", level))?,
            row.optional_text(21)?.unwrap_or_default().to_owned(),
        )),
    };
    let risk = match wire(22, row)? {
        0 => None,
        trigger => Some(RiskNote {
            risk: Risk {
                trigger: risk_trigger_from_proto(trigger)
                    .ok_or_else(|| unknown("risk trigger", i64::from(trigger)))?,
                detail: row.optional_text(23)?.unwrap_or_default().to_owned(),
            },
            flagged_at: row.timestamp(24)?,
        }),
    };
    Ok(CaseView {
        customer_id: details.customer_phone.key_id(),
        case_id: row.uuid(0)?,
        details,
        lifecycle,
        queue,
        assignee,
        resolution: row.optional_text(18)?.map(str::to_owned),
        reopened_count: u32::try_from(row.integer(19)?).unwrap_or(u32::MAX),
        opened_at: row.timestamp(11)?,
        opened_by: row.text(12)?.to_owned(),
        opened_by_role: row.text(13)?.to_owned(),
        flags,
        escalation,
        risk,
        updated_at: row.timestamp(25)?,
        version: row.integer(2)? as u64,
    })
}

/// Which cases a list shows; every part that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseFilter {
    pub stage: Option<Stage>,
    pub queue: Option<QueueName>,
    pub assignee: Option<AgentName>,
    pub category: Option<Category>,
    pub customer_key_id: Option<Uuid>,
    /// A customer and the duplicates merged into them: their cases, by key id.
    pub customer_ids: Vec<Uuid>,
    pub segment: Option<crate::customer::Segment>,
    pub project_id: Option<Uuid>,
    pub at_risk: Option<bool>,
    pub min_escalation: Option<EscalationLevel>,
    pub updated_since: Option<time::OffsetDateTime>,
}

impl CaseFilter {
    /// The filter as SQL conditions, numbering parameters from `$1` in the order they
    /// appear (as SQLite numbers them too).
    fn conditions(&self) -> (Vec<String>, Vec<SqlValue>) {
        let mut conditions = Vec::new();
        let mut parameters: Vec<SqlValue> = Vec::new();
        let mut add = |condition: &str, value: SqlValue| {
            parameters.push(value);
            conditions.push(condition.replace('?', &format!("${}", parameters.len())));
        };
        if let Some(stage) = self.stage {
            add("state = ?", stage_wire(stage).into());
        }
        if let Some(queue) = &self.queue {
            add("queue = ?", queue.as_str().into());
        }
        if let Some(assignee) = &self.assignee {
            add("assignee = ?", assignee.as_str().into());
        }
        if let Some(category) = self.category {
            add(
                "category = ?",
                i64::from(common::CaseCategory::from(category) as i32).into(),
            );
        }
        if let Some(key_id) = self.customer_key_id {
            add("customer_key_id = ?", key_id.into());
        }
        if let Some(segment) = self.segment {
            add(
                "segment = ?",
                i64::from(proto::CustomerSegment::from(segment) as i32).into(),
            );
        }
        if let Some(project_id) = self.project_id {
            add("project_id = ?", project_id.into());
        }
        match self.at_risk {
            Some(true) => add("risk_trigger <> ?", 0i64.into()),
            Some(false) => add("risk_trigger = ?", 0i64.into()),
            None => {}
        }
        if let Some(level) = self.min_escalation {
            add("escalation_level >= ?", i64::from(level.get()).into());
        }
        if let Some(since) = self.updated_since {
            add("updated_at >= ?", since.into());
        }
        if !self.customer_ids.is_empty() {
            let first = parameters.len() + 1;
            let placeholders: Vec<String> = (first..first + self.customer_ids.len())
                .map(|number| format!("${number}"))
                .collect();
            parameters.extend(self.customer_ids.iter().map(|id| SqlValue::from(*id)));
            conditions.push(format!("customer_key_id IN ({})", placeholders.join(", ")));
        }
        (conditions, parameters)
    }
}

fn stage_wire(stage: Stage) -> i64 {
    state(match stage {
        Stage::Open => Lifecycle::Open,
        Stage::Triaged => Lifecycle::Triaged,
        Stage::Assigned => Lifecycle::Assigned,
        Stage::Waiting => Lifecycle::Waiting(WaitingOn::Customer),
        Stage::Resolved => Lifecycle::Resolved,
        Stage::Closed => Lifecycle::Closed,
    })
}

/// One page of the cases `filter` lets through, newest first, with the position to pass
/// for the next page.
pub async fn page(
    list: &ReadModel,
    tables: &Tables,
    filter: &CaseFilter,
    page_size: usize,
    before: Option<i64>,
) -> Result<(Vec<CaseView>, Option<i64>), Error> {
    let page_size = page_size.clamp(1, 1_000);
    let (mut conditions, mut parameters) = filter.conditions();
    parameters.push(before.unwrap_or(i64::MAX).into());
    conditions.push(format!("position < ${}", parameters.len()));
    parameters.push((page_size as i64 + 1).into());
    let limit = parameters.len();
    let rows = list
        .query(
            tables,
            &format!(
                "SELECT {CASE_COLUMNS} FROM {{cases}} WHERE {} \
                 ORDER BY position DESC LIMIT +${limit}",
                conditions.join(" AND ")
            ),
            &parameters,
        )
        .await?;
    let (rows, next) = svcops_eventstore::read_model::page_of(rows, page_size, 1)?;
    let mut flags = flags_of(list, tables, &rows).await?;
    let views = rows
        .iter()
        .map(|row| {
            let case_flags = flags.remove(row.text(0)?).unwrap_or_default();
            view(row, case_flags)
        })
        .collect::<Result<_, _>>()?;
    Ok((views, next))
}

/// How many complaints the customer with `key_id` made at or after `since`.
pub async fn complaints_since(
    list: &ReadModel,
    tables: &Tables,
    key_id: Uuid,
    since: time::OffsetDateTime,
) -> Result<u32, Error> {
    let rows = list
        .query(
            tables,
            "SELECT COUNT(*) FROM {cases} \
             WHERE customer_key_id = $1 AND opened_at >= $2 AND category = $3",
            &[
                key_id.into(),
                since.into(),
                i64::from(common::CaseCategory::Complaint as i32).into(),
            ],
        )
        .await?;
    let count = match rows.first() {
        Some(row) => row.integer(0)?,
        None => 0,
    };
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// The flags of the cases in `rows`, by case id, oldest first.
async fn flags_of(
    list: &ReadModel,
    tables: &Tables,
    rows: &[SqlRow],
) -> Result<std::collections::HashMap<String, Vec<FlagNote>>, Error> {
    let mut flags = std::collections::HashMap::<String, Vec<FlagNote>>::new();
    if rows.is_empty() {
        return Ok(flags);
    }
    // Flags of the page's cases: one query, not one per case.
    let case_ids = rows
        .iter()
        .map(|row| row.text(0).map(SqlValue::from))
        .collect::<Result<Vec<_>, _>>()?;
    let placeholders = (1..=case_ids.len())
        .map(|number| format!("${number}"))
        .collect::<Vec<_>>()
        .join(", ");
    let flag_rows = list
        .query(
            tables,
            &format!(
                "SELECT case_id, flag, detail, flagged_at FROM {{flags}} \
                 WHERE case_id IN ({placeholders}) ORDER BY case_id, version"
            ),
            &case_ids,
        )
        .await?;
    for row in flag_rows {
        let flag = flag_from_proto(wire(1, &row)?)
            .ok_or_else(|| unknown("flag", row.integer(1).unwrap_or_default()))?;
        flags
            .entry(row.text(0)?.to_owned())
            .or_default()
            .push(FlagNote {
                flag,
                detail: row.text(2)?.to_owned(),
                flagged_at: row.timestamp(3)?,
            });
    }
    Ok(flags)
}
