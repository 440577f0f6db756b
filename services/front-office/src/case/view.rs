//! A case as callers see it: the state of an opened case with its stream version.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    AgentName, Case, CaseDetails, EscalationLevel, FlagNote, Lifecycle, QueueName, RiskNote,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseView {
    pub case_id: Uuid,
    /// The customer whose phone opened it (their data key's id), kept when the phone is
    /// opened or erased.
    pub customer_id: Option<Uuid>,
    pub details: CaseDetails,
    pub lifecycle: Lifecycle,
    pub opened_at: OffsetDateTime,
    pub opened_by: String,
    pub opened_by_role: String,
    pub flags: Vec<FlagNote>,
    pub queue: Option<QueueName>,
    pub assignee: Option<AgentName>,
    pub resolution: Option<String>,
    pub reopened_count: u32,
    pub escalation: Option<(EscalationLevel, String)>,
    pub risk: Option<RiskNote>,
    pub updated_at: OffsetDateTime,
    pub version: u64,
}

impl CaseView {
    /// The view of a case at `version`; `None` while it is not opened.
    pub fn of(case: Case, version: u64) -> Option<Self> {
        let opened = case.opened?;
        Some(Self {
            case_id: opened.case_id,
            customer_id: opened.details.customer_phone.key_id(),
            details: opened.details,
            lifecycle: opened.lifecycle,
            opened_at: opened.opened_at,
            opened_by: opened.opened_by,
            opened_by_role: opened.opened_by_role,
            flags: opened.flags,
            queue: opened.queue,
            assignee: opened.assignee,
            resolution: opened.resolution,
            reopened_count: opened.reopened_count,
            escalation: opened.escalation,
            risk: opened.risk,
            updated_at: opened.updated_at,
            version,
        })
    }
}
