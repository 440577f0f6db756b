//! The customer list: every registered customer not merged away, newest first, filtered by
//! segment and tag. A persisted projection (`svcops_eventstore::projection`). Personal
//! fields stay sealed here as in the log: they are opened per page with the customers'
//! keys, so an erased customer reads as erased in the list too (and erasure also clears
//! them from the row).

use std::collections::HashMap;

use async_trait::async_trait;
use svcops_eventstore::projection::{Projection, ReadModel, Tables};
use svcops_eventstore::read_model::{Dialect, ReadModelTransaction, SqlRow, SqlValue};
use svcops_eventstore::{Error, RecordedEvent};
use svcops_kit::aggregate::DomainEvent;
use svcops_proto::frontoffice::v1 as proto;
use uuid::Uuid;

use crate::customer::{
    AccountNumber, ContactPoint, CustomerEvent, RecordingConsent, Sealed, Segment, Tag,
};

/// Bump when the tables or what `apply` writes change: the list is rebuilt beside the live
/// one at the next start.
const VERSION: i64 = 1;

const COLUMNS: &str = "customer_id, position, version, segment, account_number, name_sealed, \
     phone_sealed, consent, erased, registered_at";

pub struct CustomerListProjection;

/// A customer as the list holds them: personal fields sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedCustomer {
    pub customer_id: Uuid,
    pub version: u64,
    pub segment: Segment,
    pub account_number: Option<AccountNumber>,
    pub name: Option<Sealed>,
    /// The first phone on file.
    pub phone: Option<Sealed>,
    pub tags: Vec<Tag>,
    pub consent: RecordingConsent,
    pub erased: bool,
    pub registered_at: time::OffsetDateTime,
}

/// Which customers a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFilter {
    pub segment: Option<Segment>,
    pub tag: Option<Tag>,
}

fn segment_wire(segment: Segment) -> i64 {
    i64::from(proto::CustomerSegment::from(segment) as i32)
}

#[async_trait]
impl Projection for CustomerListProjection {
    fn name(&self) -> &'static str {
        "customer_list"
    }

    fn version(&self) -> i64 {
        VERSION
    }

    fn tables(&self) -> &'static [&'static str] {
        &["customers", "tags"]
    }

    fn schema(&self, dialect: Dialect) -> Vec<String> {
        vec![
            format!(
                "CREATE TABLE {{customers}} (
                    customer_id TEXT PRIMARY KEY,
                    position BIGINT NOT NULL,
                    version BIGINT NOT NULL,
                    segment BIGINT NOT NULL,
                    account_number TEXT,
                    name_sealed {blob},
                    phone_sealed {blob},
                    consent BIGINT NOT NULL,
                    merged_into TEXT,
                    erased BIGINT NOT NULL,
                    registered_at BIGINT NOT NULL
                )",
                blob = dialect.blob()
            ),
            "CREATE UNIQUE INDEX {customers}_by_position ON {customers} (position)".into(),
            "CREATE INDEX {customers}_by_segment ON {customers} (segment, position)".into(),
            "CREATE TABLE {tags} (
                customer_id TEXT NOT NULL,
                tag TEXT NOT NULL,
                PRIMARY KEY (customer_id, tag)
            )"
            .into(),
            "CREATE INDEX {tags}_by_tag ON {tags} (tag, customer_id)".into(),
        ]
    }

    async fn apply(
        &self,
        transaction: &mut dyn ReadModelTransaction,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), Error> {
        for recorded in events {
            let event = match CustomerEvent::decode(&recorded.event_type, &recorded.payload) {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(%error, position = recorded.position, "customer list passes over an undecodable event");
                    continue;
                }
            };
            let version = recorded.version as i64;
            let (customer_id, sql, parameters): (Uuid, &str, Vec<SqlValue>) = match event {
                CustomerEvent::Registered {
                    customer_id,
                    profile,
                } => {
                    for tag in &profile.tags {
                        transaction
                            .execute(
                                &tables.sql(
                                    "INSERT INTO {tags} (customer_id, tag) VALUES ($1, $2) \
                                     ON CONFLICT (customer_id, tag) DO NOTHING",
                                ),
                                &[customer_id.into(), tag.as_str().into()],
                            )
                            .await?;
                    }
                    transaction
                        .execute(
                            &tables.sql(&format!(
                                "INSERT INTO {{customers}} ({COLUMNS}) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9) \
                                 ON CONFLICT (customer_id) DO NOTHING"
                            )),
                            &[
                                customer_id.into(),
                                recorded.position.into(),
                                version.into(),
                                segment_wire(profile.segment).into(),
                                profile
                                    .account_number
                                    .map(|number| number.as_str().to_owned())
                                    .into(),
                                SqlValue::Blob(profile.name.map(|name| name.0)),
                                SqlValue::Blob(profile.phones.into_iter().next().map(|p| p.0)),
                                consent_wire(profile.consent).into(),
                                recorded.metadata.occurred_at.into(),
                            ],
                        )
                        .await?;
                    continue;
                }
                CustomerEvent::ContactAdded {
                    customer_id,
                    contact: ContactPoint::Phone(phone),
                } => (
                    customer_id,
                    "phone_sealed = COALESCE(phone_sealed, $1)",
                    vec![SqlValue::Blob(Some(phone.0))],
                ),
                CustomerEvent::DetailsChanged {
                    customer_id,
                    name: Some(name),
                    ..
                } => (
                    customer_id,
                    "name_sealed = $1",
                    vec![SqlValue::Blob(Some(name.0))],
                ),
                CustomerEvent::Tagged { customer_id, tag } => {
                    transaction
                        .execute(
                            &tables.sql(
                                "INSERT INTO {tags} (customer_id, tag) VALUES ($1, $2) \
                                 ON CONFLICT (customer_id, tag) DO NOTHING",
                            ),
                            &[customer_id.into(), tag.as_str().into()],
                        )
                        .await?;
                    (customer_id, "", vec![])
                }
                CustomerEvent::Untagged { customer_id, tag } => {
                    transaction
                        .execute(
                            &tables.sql("DELETE FROM {tags} WHERE customer_id = $1 AND tag = $2"),
                            &[customer_id.into(), tag.as_str().into()],
                        )
                        .await?;
                    (customer_id, "", vec![])
                }
                CustomerEvent::ConsentRecorded {
                    customer_id,
                    consent,
                } => (
                    customer_id,
                    "consent = $1",
                    vec![consent_wire(consent).into()],
                ),
                CustomerEvent::Merged {
                    customer_id,
                    survivor_id,
                } => (customer_id, "merged_into = $1", vec![survivor_id.into()]),
                CustomerEvent::DataErased { key_id } => (
                    key_id,
                    "erased = 1, name_sealed = NULL, phone_sealed = NULL",
                    vec![],
                ),
                CustomerEvent::ContactAdded { customer_id, .. }
                | CustomerEvent::DetailsChanged { customer_id, .. }
                | CustomerEvent::ProjectAdded { customer_id, .. }
                | CustomerEvent::StakeholderAdded { customer_id, .. }
                | CustomerEvent::Absorbed { customer_id, .. } => (customer_id, "", vec![]),
            };
            // Every event moves its customer's version; SQLite numbers `$N` in the order
            // they first appear, so the version and the id come after the SET clause's.
            let mut parameters = parameters;
            let set = if sql.is_empty() {
                String::new()
            } else {
                format!("{sql}, ")
            };
            parameters.push(version.into());
            let version_parameter = parameters.len();
            parameters.push(customer_id.into());
            let id_parameter = parameters.len();
            transaction
                .execute(
                    &tables.sql(&format!(
                        "UPDATE {{customers}} SET {set}version = ${version_parameter} \
                         WHERE customer_id = ${id_parameter}"
                    )),
                    &parameters,
                )
                .await?;
        }
        Ok(())
    }
}

fn consent_wire(consent: RecordingConsent) -> i64 {
    i64::from(proto::RecordingConsent::from(consent) as i32)
}

fn unreadable(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::ReadModel {
        reason: format!("customer list: {what}: {detail}"),
    }
}

fn listed(row: &SqlRow, tags: Vec<Tag>) -> Result<ListedCustomer, Error> {
    let wire = |column: usize| -> Result<i32, Error> {
        let value = row.integer(column)?;
        i32::try_from(value).map_err(|_| unreadable("enum value", value))
    };
    let sealed = |column: usize| -> Result<Option<Sealed>, Error> {
        Ok(match row.0.get(column) {
            Some(SqlValue::Blob(Some(bytes))) => Some(Sealed(bytes.clone())),
            _ => None,
        })
    };
    Ok(ListedCustomer {
        customer_id: row.uuid(0)?,
        version: u64::try_from(row.integer(2)?).unwrap_or_default(),
        segment: crate::customer::segment_from_proto(wire(3)?)
            .flatten()
            .ok_or_else(|| unreadable("segment", row.integer(3).unwrap_or_default()))?,
        account_number: row
            .optional_text(4)?
            .map(|number| AccountNumber::parse("account_number", number))
            .transpose()
            .map_err(|error| unreadable("account number", error))?,
        name: sealed(5)?,
        phone: sealed(6)?,
        tags,
        consent: crate::customer::consent_from_proto(wire(7)?).unwrap_or_default(),
        erased: row.integer(8)? != 0,
        registered_at: row.timestamp(9)?,
    })
}

/// One page of the customers `filter` lets through, newest first, with the position to
/// pass for the next page. Merged customers are left out: their survivor stands for them.
pub async fn page(
    list: &ReadModel,
    tables: &Tables,
    filter: &CustomerFilter,
    page_size: usize,
    before: Option<i64>,
) -> Result<(Vec<ListedCustomer>, Option<i64>), Error> {
    let page_size = page_size.clamp(1, 1_000);
    let mut conditions = vec!["merged_into IS NULL".to_owned()];
    let mut parameters: Vec<SqlValue> = Vec::new();
    if let Some(segment) = filter.segment {
        parameters.push(segment_wire(segment).into());
        conditions.push(format!("segment = ${}", parameters.len()));
    }
    if let Some(tag) = &filter.tag {
        parameters.push(tag.as_str().into());
        conditions.push(format!(
            "customer_id IN (SELECT customer_id FROM {{tags}} WHERE tag = ${})",
            parameters.len()
        ));
    }
    parameters.push(before.unwrap_or(i64::MAX).into());
    conditions.push(format!("position < ${}", parameters.len()));
    parameters.push((page_size as i64 + 1).into());
    let limit = parameters.len();
    let rows = list
        .query(
            tables,
            &format!(
                "SELECT {COLUMNS} FROM {{customers}} WHERE {} \
                 ORDER BY position DESC LIMIT +${limit}",
                conditions.join(" AND ")
            ),
            &parameters,
        )
        .await?;
    let (rows, next) = svcops_eventstore::read_model::page_of(rows, page_size, 1)?;
    let mut tags = tags_of(list, tables, &rows).await?;
    let customers = rows
        .iter()
        .map(|row| listed(row, tags.remove(row.text(0)?).unwrap_or_default()))
        .collect::<Result<_, _>>()?;
    Ok((customers, next))
}

/// The tags of the customers in `rows`, by customer id, in order.
async fn tags_of(
    list: &ReadModel,
    tables: &Tables,
    rows: &[SqlRow],
) -> Result<HashMap<String, Vec<Tag>>, Error> {
    let mut tags = HashMap::<String, Vec<Tag>>::new();
    if rows.is_empty() {
        return Ok(tags);
    }
    let customer_ids = rows
        .iter()
        .map(|row| row.text(0).map(SqlValue::from))
        .collect::<Result<Vec<_>, _>>()?;
    let placeholders = (1..=customer_ids.len())
        .map(|number| format!("${number}"))
        .collect::<Vec<_>>()
        .join(", ");
    let tag_rows = list
        .query(
            tables,
            &format!(
                "SELECT customer_id, tag FROM {{tags}} \
                 WHERE customer_id IN ({placeholders}) ORDER BY customer_id, tag"
            ),
            &customer_ids,
        )
        .await?;
    for row in tag_rows {
        let tag = Tag::parse("tag", row.text(1)?).map_err(|error| unreadable("tag", error))?;
        tags.entry(row.text(0)?.to_owned()).or_default().push(tag);
    }
    Ok(tags)
}
