//! The CLI's gRPC calls and how their results are printed.

use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use svcops_kit::auth::{Authenticator, Role};
use svcops_kit::events::from_timestamp;
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::frontoffice::v1::case_service_client::CaseServiceClient;
use svcops_proto::listenin::v1 as listen;
use svcops_proto::listenin::v1::listen_in_service_client::ListenInServiceClient;
use time::format_description::well_known::Rfc3339;
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::{Global, Output};

/// Reduces an error chain to one line; a gRPC status shows its message and field violations.
pub fn one_line(error: &anyhow::Error) -> String {
    if let Some(status) = error.downcast_ref::<tonic::Status>() {
        use tonic_types::StatusExt;
        let details = status.get_error_details();
        if let Some(bad_request) = details.bad_request() {
            let fields: Vec<String> = bad_request
                .field_violations
                .iter()
                .map(|violation| format!("{}: {}", violation.field, violation.description))
                .collect();
            return format!("invalid request: {}", fields.join("; "));
        }
        return format!("{:?}: {}", status.code(), status.message());
    }
    format!("{error:#}").replace('\n', " ")
}

/// Signs a token with `secret`.
pub fn mint(secret: &str, role: &str, name: &str, hours: u64) -> anyhow::Result<String> {
    let role: Role = role.parse()?;
    let authenticator = Authenticator::new(secret.as_bytes())?;
    Ok(authenticator.issue(name, role, Duration::from_secs(hours.saturating_mul(3600)))?)
}

#[derive(Debug, Args)]
pub struct OpenCase {
    /// Customer phone number.
    #[arg(long)]
    phone: String,
    /// consultation, complaint, repair, installation or return.
    #[arg(long)]
    category: String,
    /// What the customer reports.
    #[arg(long)]
    summary: String,
    /// low, normal, high or urgent.
    #[arg(long, default_value = "normal")]
    priority: String,
    /// hotline, chat, bot, app, messaging or email.
    #[arg(long, default_value = "hotline")]
    channel: String,
    #[arg(long, default_value = "")]
    product: String,
    #[arg(long, default_value = "")]
    serial: String,
    /// The customer it is for (a B2B account whose stakeholder calls); default: the
    /// customer the phone names.
    #[arg(long = "customer")]
    customer_id: Option<String>,
    /// A project of that customer's.
    #[arg(long = "project")]
    project_id: Option<String>,
    /// Idempotency key: retrying with the same one opens nothing new.
    #[arg(long, default_value = "")]
    request_id: String,
}

/// The idempotency key of a command.
#[derive(Debug, Args)]
pub struct RequestId {
    /// Idempotency key: retrying with the same one changes nothing more.
    #[arg(long, default_value = "")]
    request_id: String,
}

/// Which cases `svcops case list` shows; every filter given must match.
#[derive(Debug, Args)]
pub struct ListFilter {
    /// open, triaged, assigned, waiting, resolved or closed.
    #[arg(long)]
    state: Option<String>,
    #[arg(long)]
    queue: Option<String>,
    /// The agent's subject.
    #[arg(long)]
    assignee: Option<String>,
    /// consultation, complaint, repair, installation or return.
    #[arg(long)]
    category: Option<String>,
    /// The customer's phone, as their cases were opened with.
    #[arg(long)]
    customer_phone: Option<String>,
    /// true: only cases at public-opinion risk; false: only cases without.
    #[arg(long)]
    at_risk: Option<bool>,
    /// Only cases escalated to at least this level (1 to 3).
    #[arg(long)]
    min_escalation: Option<u32>,
    /// Only cases changed since this time (RFC 3339, e.g. 2026-11-27T08:00:00Z).
    #[arg(long)]
    updated_since: Option<String>,
    /// consumer, real-estate, hotel, retail-chain, government-enterprise or other.
    #[arg(long)]
    segment: Option<String>,
    /// The customer's id: their cases and their merged duplicates'.
    #[arg(long = "customer")]
    customer_id: Option<String>,
    /// A B2B project's id.
    #[arg(long = "project")]
    project_id: Option<String>,
}

impl ListFilter {
    fn into_request(
        self,
        page_size: i32,
        page_token: String,
    ) -> anyhow::Result<front::ListCasesRequest> {
        let state = match &self.state {
            Some(state) => parse_enum("state", state, "CASE_STATE_", |name| {
                front::CaseState::from_str_name(name).map(Into::into)
            })?,
            None => 0,
        };
        let category = match &self.category {
            Some(category) => parse_enum("category", category, "CASE_CATEGORY_", |name| {
                common::CaseCategory::from_str_name(name).map(Into::into)
            })?,
            None => 0,
        };
        let updated_since = match &self.updated_since {
            Some(since) => Some(svcops_kit::events::to_timestamp(
                time::OffsetDateTime::parse(since, &Rfc3339)
                    .map_err(|_| anyhow!("--updated-since: not an RFC 3339 time: {since:?}"))?,
            )),
            None => None,
        };
        Ok(front::ListCasesRequest {
            page_size,
            page_token,
            state,
            queue: self.queue.unwrap_or_default(),
            assignee: self.assignee.unwrap_or_default(),
            category,
            customer_phone: self.customer_phone.unwrap_or_default(),
            at_risk: self.at_risk,
            min_escalation_level: self.min_escalation.unwrap_or_default(),
            updated_since,
            segment: match &self.segment {
                Some(segment) => parse_enum(
                    "segment",
                    &segment.replace('-', "_"),
                    "CUSTOMER_SEGMENT_",
                    |name| front::CustomerSegment::from_str_name(name).map(Into::into),
                )?,
                None => 0,
            },
            customer_id: self.customer_id.unwrap_or_default(),
            project_id: self.project_id.unwrap_or_default(),
        })
    }
}

/// A move along a case's lifecycle, as the CLI asks for it.
pub enum Change {
    Triage { queue: String, priority: i32 },
    Assign(String),
    Wait { on: i32, reason: String },
    Resume,
    Resolve(String),
    Close,
    Reopen(String),
    Escalate { level: u32, reason: String },
    FlagRisk(String),
    ClearRisk(String),
}

impl Change {
    pub fn triage(queue: String, priority: Option<&str>) -> anyhow::Result<Self> {
        let priority = match priority {
            Some(priority) => parse_enum("priority", priority, "PRIORITY_", |name| {
                common::Priority::from_str_name(name).map(Into::into)
            })?,
            None => common::Priority::Unspecified.into(),
        };
        Ok(Self::Triage { queue, priority })
    }

    pub fn wait(on: &str, reason: String) -> anyhow::Result<Self> {
        let on = parse_enum("on", &on.replace('-', "_"), "WAITING_ON_", |name| {
            front::WaitingOn::from_str_name(name).map(Into::into)
        })?;
        Ok(Self::Wait { on, reason })
    }
}

pub(crate) fn parse_enum(
    field: &str,
    value: &str,
    prefix: &str,
    lookup: impl Fn(&str) -> Option<i32>,
) -> anyhow::Result<i32> {
    lookup(&format!("{prefix}{}", value.trim().to_uppercase()))
        .filter(|value| *value != 0)
        .ok_or_else(|| anyhow!("--{field}: unknown value {value:?}"))
}

pub struct Client {
    channel: Channel,
    token: MetadataValue<tonic::metadata::Ascii>,
}

impl Client {
    pub async fn connect(global: &Global) -> anyhow::Result<Self> {
        let token = match &global.token {
            Some(token) => token.clone(),
            None => {
                let secret = crate::embedded::secret(&global.data_dir, false)
                    .context("no --token given and no embedded secret to mint one")?;
                mint(&secret, "admin", "svcops-cli", 1)?
            }
        };
        let token = format!("Bearer {token}")
            .parse()
            .map_err(|_| anyhow!("the token contains characters not allowed in a header"))?;
        let channel = Channel::from_shared(global.addr.clone())
            .map_err(|_| anyhow!("--addr: not a valid URL: {}", global.addr))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| {
                format!(
                    "cannot reach svcops at {} (is `svcops up` running?)",
                    global.addr
                )
            })?;
        Ok(Self { channel, token })
    }

    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.token.clone());
        request
    }

    pub async fn open_case(&mut self, open: OpenCase, output: Output) -> anyhow::Result<()> {
        let request = front::OpenCaseRequest {
            request_id: open.request_id,
            customer_phone: open.phone,
            category: parse_enum("category", &open.category, "CASE_CATEGORY_", |name| {
                common::CaseCategory::from_str_name(name).map(Into::into)
            })?,
            priority: parse_enum("priority", &open.priority, "PRIORITY_", |name| {
                common::Priority::from_str_name(name).map(Into::into)
            })?,
            channel: parse_enum("channel", &open.channel, "CHANNEL_", |name| {
                front::Channel::from_str_name(name).map(Into::into)
            })?,
            summary: open.summary,
            product: open.product,
            serial_number: open.serial,
            customer_id: open.customer_id.unwrap_or_default(),
            project_id: open.project_id.unwrap_or_default(),
        };
        let response = CaseServiceClient::new(self.channel.clone())
            .open_case(self.request(request))
            .await?
            .into_inner();
        let case = response
            .case
            .ok_or_else(|| anyhow!("the server returned no case"))?;
        match output {
            Output::Table => println!("{}", case.case_id),
            Output::Json => println!("{}", case_json(&case)),
        }
        Ok(())
    }

    /// One case with its contacts and their transcripts.
    pub async fn show_case(&mut self, case_id: &str, output: Output) -> anyhow::Result<()> {
        let response = CaseServiceClient::new(self.channel.clone())
            .get_case(self.request(front::GetCaseRequest {
                case_id: case_id.to_owned(),
            }))
            .await?
            .into_inner();
        let case = response
            .case
            .ok_or_else(|| anyhow!("the server returned no case"))?;
        match output {
            Output::Json => {
                let mut json = case_json(&case);
                json["contacts"] = response
                    .contacts
                    .iter()
                    .map(crate::contact::contact_json)
                    .collect();
                println!("{json}");
            }
            Output::Table => {
                print_case(Some(case), output)?;
                for contact in &response.contacts {
                    println!();
                    crate::contact::print(contact, output);
                }
            }
        }
        Ok(())
    }

    /// Moves a case along its lifecycle and shows it as it now is.
    pub async fn change_case(
        &mut self,
        case_id: String,
        request: RequestId,
        change: Change,
        output: Output,
    ) -> anyhow::Result<()> {
        let mut cases = CaseServiceClient::new(self.channel.clone());
        let request_id = request.request_id;
        let case = match change {
            Change::Triage { queue, priority } => {
                cases
                    .triage_case(self.request(front::TriageCaseRequest {
                        case_id,
                        request_id,
                        queue,
                        priority,
                    }))
                    .await?
                    .into_inner()
                    .case
            }
            Change::Assign(assignee) => {
                cases
                    .assign_case(self.request(front::AssignCaseRequest {
                        case_id,
                        request_id,
                        assignee,
                    }))
                    .await?
                    .into_inner()
                    .case
            }
            Change::Wait { on, reason } => {
                cases
                    .set_case_waiting(self.request(front::SetCaseWaitingRequest {
                        case_id,
                        request_id,
                        waiting_on: on,
                        reason,
                    }))
                    .await?
                    .into_inner()
                    .case
            }
            Change::Resume => {
                cases
                    .resume_case(self.request(front::ResumeCaseRequest {
                        case_id,
                        request_id,
                    }))
                    .await?
                    .into_inner()
                    .case
            }
            Change::Resolve(resolution) => {
                cases
                    .resolve_case(self.request(front::ResolveCaseRequest {
                        case_id,
                        request_id,
                        resolution,
                    }))
                    .await?
                    .into_inner()
                    .case
            }
            Change::Close => {
                cases
                    .close_case(self.request(front::CloseCaseRequest {
                        case_id,
                        request_id,
                    }))
                    .await?
                    .into_inner()
                    .case
            }
            Change::Reopen(reason) => {
                cases
                    .reopen_case(self.request(front::ReopenCaseRequest {
                        case_id,
                        request_id,
                        reason,
                    }))
                    .await?
                    .into_inner()
                    .case
            }
            Change::Escalate { level, reason } => {
                cases
                    .escalate_case(self.request(front::EscalateCaseRequest {
                        case_id,
                        request_id,
                        level,
                        reason,
                    }))
                    .await?
                    .into_inner()
                    .case
            }
            Change::FlagRisk(reason) => {
                cases
                    .flag_case_risk(self.request(front::FlagCaseRiskRequest {
                        case_id,
                        request_id,
                        reason,
                    }))
                    .await?
                    .into_inner()
                    .case
            }
            Change::ClearRisk(reason) => {
                cases
                    .clear_case_risk(self.request(front::ClearCaseRiskRequest {
                        case_id,
                        request_id,
                        reason,
                    }))
                    .await?
                    .into_inner()
                    .case
            }
        };
        print_case(case, output)
    }

    pub async fn list_cases(
        &mut self,
        page_size: i32,
        page_token: String,
        filter: ListFilter,
        output: Output,
    ) -> anyhow::Result<()> {
        let request = filter.into_request(page_size, page_token)?;
        let response = CaseServiceClient::new(self.channel.clone())
            .list_cases(self.request(request))
            .await?
            .into_inner();
        match output {
            Output::Json => println!(
                "{}",
                serde_json::json!({
                    "cases": response.cases.iter().map(case_json).collect::<Vec<_>>(),
                    "next_page_token": response.next_page_token,
                })
            ),
            Output::Table => {
                println!(
                    "{:<36}  {:<20}  {:<12}  {:<8}  {:<8}  {:<4}  {:<4}  SUMMARY",
                    "CASE", "OPENED", "CATEGORY", "PRIORITY", "STATE", "ESC", "RISK"
                );
                for case in &response.cases {
                    let json = case_json(case);
                    println!(
                        "{:<36}  {:<20}  {:<12}  {:<8}  {:<8}  {:<4}  {:<4}  {}",
                        case.case_id,
                        json["opened_at"]
                            .as_str()
                            .unwrap_or("")
                            .chars()
                            .take(20)
                            .collect::<String>(),
                        json["category"].as_str().unwrap_or(""),
                        json["priority"].as_str().unwrap_or(""),
                        json["state"].as_str().unwrap_or(""),
                        match case.escalation_level {
                            0 => "-".to_owned(),
                            level => level.to_string(),
                        },
                        if case.risk.is_some() { "yes" } else { "-" },
                        case.summary
                    );
                }
                if !response.next_page_token.is_empty() {
                    println!("more: --page-token {}", response.next_page_token);
                }
            }
        }
        Ok(())
    }

    pub async fn listen(
        &mut self,
        case_id: &str,
        follow: bool,
        output: Output,
    ) -> anyhow::Result<()> {
        let mut stream = ListenInServiceClient::new(self.channel.clone())
            .watch_case(self.request(listen::WatchCaseRequest {
                case_id: case_id.to_owned(),
                catch_up_only: !follow,
                after_sequence: 0,
            }))
            .await?
            .into_inner();
        while let Some(message) = stream.next().await {
            let message = message?;
            match message.kind {
                Some(listen::watch_case_response::Kind::Entry(entry)) => {
                    let office = common::Office::try_from(entry.office)
                        .map(|office| {
                            office
                                .as_str_name()
                                .trim_start_matches("OFFICE_")
                                .to_lowercase()
                        })
                        .unwrap_or_default();
                    let at = entry
                        .occurred_at
                        .as_ref()
                        .and_then(from_timestamp)
                        .and_then(|t| t.format(&Rfc3339).ok())
                        .unwrap_or_default();
                    let actor = entry
                        .actor
                        .as_ref()
                        .map(|a| format!("{} ({})", a.subject, a.role))
                        .unwrap_or_default();
                    match output {
                        Output::Json => println!(
                            "{}",
                            serde_json::json!({
                                "sequence": entry.sequence,
                                "office": office,
                                "type": entry.event_type,
                                "occurred_at": at,
                                "actor": actor,
                                "description": entry.description,
                                "cause_missing": entry.cause_missing,
                            })
                        ),
                        Output::Table => println!(
                            "{:>4}  {at}  {office:<9} {actor:<28} {}{}",
                            entry.sequence,
                            entry.description,
                            // Recorded past the hold bound, before its cause (if it ever comes).
                            if entry.cause_missing {
                                " [cause not yet seen]"
                            } else {
                                ""
                            }
                        ),
                    }
                }
                Some(listen::watch_case_response::Kind::CaughtUp(_))
                    if follow && output == Output::Table =>
                {
                    println!("---- live ----");
                }
                Some(listen::watch_case_response::Kind::CaughtUp(_)) => {}
                None => {}
            }
        }
        Ok(())
    }
}

/// One case as a table of fields, or as JSON.
fn print_case(case: Option<front::Case>, output: Output) -> anyhow::Result<()> {
    let case = case.ok_or_else(|| anyhow!("the server returned no case"))?;
    match output {
        Output::Json => println!("{}", case_json(&case)),
        Output::Table => {
            let json = case_json(&case);
            if let Some(object) = json.as_object() {
                for (key, value) in object {
                    let value = value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned);
                    println!("{key:<21} {value}");
                }
            }
        }
    }
    Ok(())
}

fn case_json(case: &front::Case) -> serde_json::Value {
    let name = |name: Option<&str>, prefix: &str| {
        name.map(|name| name.trim_start_matches(prefix).to_lowercase())
            .unwrap_or_default()
    };
    serde_json::json!({
        "case_id": case.case_id,
        "state": name(front::CaseState::try_from(case.state).ok().map(|s| s.as_str_name()), "CASE_STATE_"),
        "category": name(common::CaseCategory::try_from(case.category).ok().map(|c| c.as_str_name()), "CASE_CATEGORY_"),
        "priority": name(common::Priority::try_from(case.priority).ok().map(|p| p.as_str_name()), "PRIORITY_"),
        "channel": name(front::Channel::try_from(case.channel).ok().map(|c| c.as_str_name()), "CHANNEL_"),
        "customer_id": case.customer_id,
        "customer_phone": case.customer_phone,
        "customer_data_erased": case.customer_data_erased,
        "segment": name(front::CustomerSegment::try_from(case.segment).ok().filter(|s| *s != front::CustomerSegment::Unspecified).map(|s| s.as_str_name()), "CUSTOMER_SEGMENT_").replace('_', "-"),
        "project_id": case.project_id,
        "summary": case.summary,
        "product": case.product,
        "serial_number": case.serial_number,
        "opened_at": case.opened_at.as_ref().and_then(from_timestamp).and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default(),
        "opened_by": case.opened_by.as_ref().map(|a| a.subject.clone()).unwrap_or_default(),
        "queue": case.queue,
        "assignee": case.assignee,
        "waiting_on": name(front::WaitingOn::try_from(case.waiting_on).ok().filter(|on| *on != front::WaitingOn::Unspecified).map(|on| on.as_str_name()), "WAITING_ON_"),
        "resolution": case.resolution,
        "reopened_count": case.reopened_count,
        "escalation_level": case.escalation_level,
        "escalation_reason": case.escalation_reason,
        "risk": case.risk.as_ref().map(|risk| serde_json::json!({
            "trigger": name(front::RiskTrigger::try_from(risk.trigger).ok().map(|t| t.as_str_name()), "RISK_TRIGGER_"),
            "detail": risk.detail,
            "flagged_at": risk.flagged_at.as_ref().and_then(from_timestamp).and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default(),
        })),
        "updated_at": case.updated_at.as_ref().and_then(from_timestamp).and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default(),
        "version": case.version,
        "flags": case.flags.iter().map(|note| serde_json::json!({
            "flag": name(front::CaseFlag::try_from(note.flag).ok().map(|f| f.as_str_name()), "CASE_FLAG_"),
            "detail": note.detail,
            "flagged_at": note.flagged_at.as_ref().and_then(from_timestamp).and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default(),
        })).collect::<Vec<_>>(),
    })
}
