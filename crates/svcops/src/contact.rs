//! `svcops contact …`: conversations about cases, as telephony, a chat platform or an agent
//! desktop would hold them.

use anyhow::anyhow;
use clap::Subcommand;
use svcops_kit::events::from_timestamp;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::frontoffice::v1::contact_service_client::ContactServiceClient;
use time::format_description::well_known::Rfc3339;

use crate::Output;
use crate::client::{Client, parse_enum};

#[derive(Debug, Subcommand)]
pub enum ContactCommand {
    /// Start a contact on a case; prints its id.
    Start {
        #[arg(long = "case")]
        case_id: String,
        /// hotline, chat, bot, app, messaging or email.
        #[arg(long, default_value = "hotline")]
        channel: String,
        /// A bot answers first (until `contact hand-off`).
        #[arg(long)]
        bot: bool,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Append what someone said.
    Say {
        contact_id: String,
        /// customer, agent or bot.
        #[arg(long)]
        speaker: String,
        #[arg(long)]
        text: String,
        /// Offsets from the contact's start, in milliseconds.
        #[arg(long, default_value_t = 0)]
        start_ms: u32,
        #[arg(long, default_value_t = 0)]
        end_ms: u32,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// The bot hands the conversation to a human queue.
    HandOff {
        contact_id: String,
        #[arg(long)]
        queue: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// End the conversation.
    End {
        contact_id: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Show a contact with its transcript.
    Show { contact_id: String },
}

pub async fn run(client: &Client, command: ContactCommand, output: Output) -> anyhow::Result<()> {
    let mut contacts = ContactServiceClient::new(client.channel());
    let contact = match command {
        ContactCommand::Start {
            case_id,
            channel,
            bot,
            request_id,
        } => {
            let channel = parse_enum("channel", &channel, "CHANNEL_", |name| {
                front::Channel::from_str_name(name).map(Into::into)
            })?;
            let contact = contacts
                .start_contact(client.request(front::StartContactRequest {
                    request_id,
                    case_id,
                    channel,
                    with_bot: bot,
                }))
                .await?
                .into_inner()
                .contact
                .ok_or_else(|| anyhow!("the server returned no contact"))?;
            if output == Output::Table {
                println!("{}", contact.contact_id);
                return Ok(());
            }
            contact
        }
        ContactCommand::Say {
            contact_id,
            speaker,
            text,
            start_ms,
            end_ms,
            request_id,
        } => {
            let speaker = parse_enum("speaker", &speaker, "SPEAKER_", |name| {
                front::Speaker::from_str_name(name).map(Into::into)
            })?;
            contacts
                .append_utterance(client.request(front::AppendUtteranceRequest {
                    request_id,
                    contact_id,
                    speaker,
                    text,
                    start_ms,
                    end_ms: end_ms.max(start_ms),
                }))
                .await?
                .into_inner()
                .contact
                .ok_or_else(|| anyhow!("the server returned no contact"))?
        }
        ContactCommand::HandOff {
            contact_id,
            queue,
            reason,
            request_id,
        } => contacts
            .hand_off_contact(client.request(front::HandOffContactRequest {
                request_id,
                contact_id,
                queue,
                reason,
            }))
            .await?
            .into_inner()
            .contact
            .ok_or_else(|| anyhow!("the server returned no contact"))?,
        ContactCommand::End {
            contact_id,
            request_id,
        } => contacts
            .end_contact(client.request(front::EndContactRequest {
                request_id,
                contact_id,
            }))
            .await?
            .into_inner()
            .contact
            .ok_or_else(|| anyhow!("the server returned no contact"))?,
        ContactCommand::Show { contact_id } => contacts
            .get_contact(client.request(front::GetContactRequest { contact_id }))
            .await?
            .into_inner()
            .contact
            .ok_or_else(|| anyhow!("the server returned no contact"))?,
    };
    print(&contact, output);
    Ok(())
}

fn name(value: Option<&str>, prefix: &str) -> String {
    value
        .map(|name| name.trim_start_matches(prefix).to_lowercase())
        .unwrap_or_default()
}

fn time(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(from_timestamp)
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A contact and its transcript as JSON.
pub fn contact_json(contact: &front::Contact) -> serde_json::Value {
    serde_json::json!({
        "contact_id": contact.contact_id,
        "case_id": contact.case_id,
        "channel": name(front::Channel::try_from(contact.channel).ok().map(|c| c.as_str_name()), "CHANNEL_"),
        "state": name(front::ContactState::try_from(contact.state).ok().map(|s| s.as_str_name()), "CONTACT_STATE_"),
        "known_fields": contact.known_fields.iter().map(|field| name(front::CustomerField::try_from(*field).ok().map(|f| f.as_str_name()), "CUSTOMER_FIELD_")).collect::<Vec<_>>(),
        "handed_off_to": contact.handed_off_to,
        "hand_off_reason": contact.hand_off_reason,
        "started_at": time(contact.started_at.as_ref()),
        "ended_at": time(contact.ended_at.as_ref()),
        "version": contact.version,
        "transcript": contact.transcript.iter().map(|utterance| serde_json::json!({
            "sequence": utterance.sequence,
            "speaker": name(front::Speaker::try_from(utterance.speaker).ok().map(|s| s.as_str_name()), "SPEAKER_"),
            "text": utterance.text,
            "start_ms": utterance.start_ms,
            "end_ms": utterance.end_ms,
        })).collect::<Vec<_>>(),
    })
}

/// A contact as a few lines: what it is, then its transcript.
pub fn print(contact: &front::Contact, output: Output) {
    let json = contact_json(contact);
    match output {
        Output::Json => println!("{json}"),
        Output::Table => {
            println!(
                "contact {} on case {} via {}, {}{}",
                contact.contact_id,
                contact.case_id,
                json["channel"].as_str().unwrap_or(""),
                json["state"].as_str().unwrap_or("").replace('_', " "),
                if contact.handed_off_to.is_empty() {
                    String::new()
                } else {
                    format!(" (handed off to {})", contact.handed_off_to)
                }
            );
            for utterance in &contact.transcript {
                let speaker = name(
                    front::Speaker::try_from(utterance.speaker)
                        .ok()
                        .map(|s| s.as_str_name()),
                    "SPEAKER_",
                );
                println!(
                    "  {:>4}  {:>8.1}s  {speaker:<8}  {}",
                    utterance.sequence,
                    f64::from(utterance.start_ms) / 1000.0,
                    utterance.text
                );
            }
        }
    }
}
