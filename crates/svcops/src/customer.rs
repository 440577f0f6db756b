//! `svcops customer …`: consumers and business accounts, their projects and stakeholders,
//! merges and erasure.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use svcops_kit::events::from_timestamp;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::frontoffice::v1::case_service_client::CaseServiceClient;
use svcops_proto::frontoffice::v1::customer_identity::Identity;
use svcops_proto::frontoffice::v1::customer_service_client::CustomerServiceClient;
use time::format_description::well_known::Rfc3339;

use crate::Output;
use crate::client::{Client, parse_enum};

/// One way to name a customer: exactly one of the three.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct IdentityArgs {
    #[arg(long)]
    phone: Option<String>,
    #[arg(long)]
    email: Option<String>,
    /// A business account's number.
    #[arg(long)]
    account: Option<String>,
}

impl IdentityArgs {
    fn into_proto(self) -> Option<front::CustomerIdentity> {
        let identity = match (self.phone, self.email, self.account) {
            (Some(phone), _, _) => Identity::Phone(phone),
            (_, Some(email), _) => Identity::Email(email),
            (_, _, Some(account)) => Identity::AccountNumber(account),
            (None, None, None) => return None,
        };
        Some(front::CustomerIdentity {
            identity: Some(identity),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Register a customer; each phone, email and account number names one customer only.
    Register {
        /// consumer, real-estate, hotel, retail-chain, government-enterprise or other.
        #[arg(long, default_value = "consumer")]
        segment: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Repeat for several.
        #[arg(long = "phone")]
        phones: Vec<String>,
        /// Repeat for several.
        #[arg(long = "email")]
        emails: Vec<String>,
        #[arg(long, default_value = "")]
        account: String,
        #[arg(long, default_value = "")]
        address: String,
        /// Repeat for several.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// given or refused (consent to recording).
        #[arg(long)]
        consent: Option<String>,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Find the customer a phone, email or account number names, or register them.
    Identify {
        #[command(flatten)]
        identity: IdentityArgs,
        /// For a new customer.
        #[arg(long, default_value = "consumer")]
        segment: String,
        /// For a new customer.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// The customer a phone, email or account number names.
    Find {
        #[command(flatten)]
        identity: IdentityArgs,
    },
    /// A customer with their projects and stakeholders.
    Show { customer_id: String },
    /// Customers, newest first.
    List {
        #[arg(long)]
        segment: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long, default_value_t = 0)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Add a phone or an email.
    AddContact {
        customer_id: String,
        #[arg(long, group = "contact", required = true)]
        phone: Option<String>,
        #[arg(long, group = "contact")]
        email: Option<String>,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Change the name or the address.
    Update {
        customer_id: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, default_value = "")]
        address: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    Tag {
        customer_id: String,
        tag: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    Untag {
        customer_id: String,
        tag: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Record consent to recording: given or refused.
    Consent {
        customer_id: String,
        consent: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Add a project to a business account; prints its id.
    AddProject {
        customer_id: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        site: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Add a stakeholder to a project; prints their id.
    AddStakeholder {
        customer_id: String,
        #[arg(long)]
        project: String,
        /// owner, designer, contractor, property-manager, purchaser or other.
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        phone: String,
        #[arg(long, default_value = "")]
        email: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Merge a duplicate into the customer who stays.
    Merge {
        merged_id: String,
        #[arg(long = "into")]
        survivor_id: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Erase a customer's personal data (destroys their data key; cannot be undone).
    Erase {
        #[arg(long, group = "who", required = true)]
        phone: Option<String>,
        #[arg(long = "id", group = "who")]
        customer_id: Option<String>,
    },
}

fn segment(raw: &str) -> anyhow::Result<i32> {
    parse_enum(
        "segment",
        &raw.replace('-', "_"),
        "CUSTOMER_SEGMENT_",
        |name| front::CustomerSegment::from_str_name(name).map(Into::into),
    )
}

fn consent(raw: &str) -> anyhow::Result<i32> {
    parse_enum("consent", raw, "RECORDING_CONSENT_", |name| {
        front::RecordingConsent::from_str_name(name).map(Into::into)
    })
}

fn missing() -> anyhow::Error {
    anyhow!("the server returned no customer")
}

pub async fn run(client: &Client, command: CustomerCommand, output: Output) -> anyhow::Result<()> {
    let mut customers = CustomerServiceClient::new(client.channel());
    let customer = match command {
        CustomerCommand::Register {
            segment: raw_segment,
            name,
            phones,
            emails,
            account,
            address,
            tags,
            consent: raw_consent,
            request_id,
        } => customers
            .register_customer(
                client.request(front::RegisterCustomerRequest {
                    request_id,
                    segment: segment(&raw_segment)?,
                    name,
                    phones,
                    emails,
                    account_number: account,
                    address,
                    tags,
                    recording_consent: raw_consent
                        .as_deref()
                        .map(consent)
                        .transpose()?
                        .unwrap_or(0),
                }),
            )
            .await?
            .into_inner()
            .customer
            .ok_or_else(missing)?,
        CustomerCommand::Identify {
            identity,
            segment: raw_segment,
            name,
        } => {
            let identified = customers
                .identify_customer(client.request(front::IdentifyCustomerRequest {
                    request_id: String::new(),
                    identity: identity.into_proto(),
                    segment: segment(&raw_segment)?,
                    name,
                }))
                .await?
                .into_inner();
            if output == Output::Table {
                println!(
                    "{}",
                    if identified.registered {
                        "registered"
                    } else {
                        "found"
                    }
                );
            }
            identified.customer.ok_or_else(missing)?
        }
        CustomerCommand::Find { identity } => customers
            .find_customer(client.request(front::FindCustomerRequest {
                identity: identity.into_proto(),
            }))
            .await?
            .into_inner()
            .customer
            .ok_or_else(missing)?,
        CustomerCommand::Show { customer_id } => customers
            .get_customer(client.request(front::GetCustomerRequest { customer_id }))
            .await?
            .into_inner()
            .customer
            .ok_or_else(missing)?,
        CustomerCommand::List {
            segment: raw_segment,
            tag,
            page_size,
            page_token,
        } => {
            let response = customers
                .list_customers(
                    client.request(front::ListCustomersRequest {
                        page_size,
                        page_token,
                        segment: raw_segment
                            .as_deref()
                            .map(segment)
                            .transpose()?
                            .unwrap_or(0),
                        tag: tag.unwrap_or_default(),
                    }),
                )
                .await?
                .into_inner();
            print_list(&response, output);
            return Ok(());
        }
        CustomerCommand::AddContact {
            customer_id,
            phone,
            email,
            request_id,
        } => {
            let contact = match (phone, email) {
                (Some(phone), _) => Identity::Phone(phone),
                (_, Some(email)) => Identity::Email(email),
                (None, None) => return Err(anyhow!("give --phone or --email")),
            };
            customers
                .add_customer_contact(client.request(front::AddCustomerContactRequest {
                    customer_id,
                    request_id,
                    contact: Some(front::CustomerIdentity {
                        identity: Some(contact),
                    }),
                }))
                .await?
                .into_inner()
                .customer
                .ok_or_else(missing)?
        }
        CustomerCommand::Update {
            customer_id,
            name,
            address,
            request_id,
        } => customers
            .update_customer(client.request(front::UpdateCustomerRequest {
                customer_id,
                request_id,
                name,
                address,
            }))
            .await?
            .into_inner()
            .customer
            .ok_or_else(missing)?,
        CustomerCommand::Tag {
            customer_id,
            tag,
            request_id,
        } => customers
            .tag_customer(client.request(front::TagCustomerRequest {
                customer_id,
                request_id,
                tag,
            }))
            .await?
            .into_inner()
            .customer
            .ok_or_else(missing)?,
        CustomerCommand::Untag {
            customer_id,
            tag,
            request_id,
        } => customers
            .untag_customer(client.request(front::UntagCustomerRequest {
                customer_id,
                request_id,
                tag,
            }))
            .await?
            .into_inner()
            .customer
            .ok_or_else(missing)?,
        CustomerCommand::Consent {
            customer_id,
            consent: raw,
            request_id,
        } => customers
            .record_consent(client.request(front::RecordConsentRequest {
                customer_id,
                request_id,
                recording_consent: consent(&raw)?,
            }))
            .await?
            .into_inner()
            .customer
            .ok_or_else(missing)?,
        CustomerCommand::AddProject {
            customer_id,
            name,
            site,
            request_id,
        } => {
            let added = customers
                .add_project(client.request(front::AddProjectRequest {
                    customer_id,
                    request_id,
                    name,
                    site,
                }))
                .await?
                .into_inner();
            if output == Output::Table {
                println!("{}", added.project_id);
                return Ok(());
            }
            added.customer.ok_or_else(missing)?
        }
        CustomerCommand::AddStakeholder {
            customer_id,
            project,
            role,
            name,
            phone,
            email,
            request_id,
        } => {
            let role = parse_enum(
                "role",
                &role.replace('-', "_"),
                "STAKEHOLDER_ROLE_",
                |name| front::StakeholderRole::from_str_name(name).map(Into::into),
            )?;
            let added = customers
                .add_stakeholder(client.request(front::AddStakeholderRequest {
                    customer_id,
                    request_id,
                    project_id: project,
                    role,
                    name,
                    phone,
                    email,
                }))
                .await?
                .into_inner();
            if output == Output::Table {
                println!("{}", added.stakeholder_id);
                return Ok(());
            }
            added.customer.ok_or_else(missing)?
        }
        CustomerCommand::Merge {
            merged_id,
            survivor_id,
            request_id,
        } => customers
            .merge_customers(client.request(front::MergeCustomersRequest {
                request_id,
                merged_id,
                survivor_id,
            }))
            .await?
            .into_inner()
            .survivor
            .ok_or_else(missing)?,
        CustomerCommand::Erase { phone, customer_id } => {
            let response = CaseServiceClient::new(client.channel())
                .erase_customer_data(client.request(front::EraseCustomerDataRequest {
                    customer_phone: phone.unwrap_or_default(),
                    customer_id: customer_id.unwrap_or_default(),
                }))
                .await?
                .into_inner();
            match output {
                Output::Json => {
                    println!("{}", serde_json::json!({ "erased": response.erased }));
                }
                Output::Table if response.erased => println!("erased"),
                Output::Table => println!("nothing to erase"),
            }
            return Ok(());
        }
    };
    print(&customer, output);
    Ok(())
}

fn name(value: Option<&str>, prefix: &str) -> String {
    value
        .map(|name| {
            name.trim_start_matches(prefix)
                .to_lowercase()
                .replace('_', "-")
        })
        .unwrap_or_default()
}

fn segment_name(customer: &front::Customer) -> String {
    name(
        front::CustomerSegment::try_from(customer.segment)
            .ok()
            .map(|s| s.as_str_name()),
        "CUSTOMER_SEGMENT_",
    )
}

/// A customer as JSON.
pub fn customer_json(customer: &front::Customer) -> serde_json::Value {
    serde_json::json!({
        "customer_id": customer.customer_id,
        "segment": segment_name(customer),
        "name": customer.name,
        "phones": customer.phones,
        "emails": customer.emails,
        "account_number": customer.account_number,
        "address": customer.address,
        "tags": customer.tags,
        "recording_consent": name(front::RecordingConsent::try_from(customer.recording_consent).ok().map(|c| c.as_str_name()), "RECORDING_CONSENT_"),
        "merged_ids": customer.merged_ids,
        "personal_data_erased": customer.personal_data_erased,
        "registered_at": customer.registered_at.as_ref().and_then(from_timestamp).and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default(),
        "version": customer.version,
        "projects": customer.projects.iter().map(|project| serde_json::json!({
            "project_id": project.project_id,
            "name": project.name,
            "site": project.site,
            "stakeholders": project.stakeholders.iter().map(|stakeholder| serde_json::json!({
                "stakeholder_id": stakeholder.stakeholder_id,
                "role": name(front::StakeholderRole::try_from(stakeholder.role).ok().map(|r| r.as_str_name()), "STAKEHOLDER_ROLE_"),
                "name": stakeholder.name,
                "phone": stakeholder.phone,
                "email": stakeholder.email,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn print(customer: &front::Customer, output: Output) {
    let json = customer_json(customer);
    match output {
        Output::Json => println!("{json}"),
        Output::Table => {
            println!(
                "customer {} ({}){}",
                customer.customer_id,
                segment_name(customer),
                if customer.personal_data_erased {
                    ", personal data erased"
                } else {
                    ""
                }
            );
            let lines = [
                ("name", customer.name.clone()),
                ("phones", customer.phones.join(", ")),
                ("emails", customer.emails.join(", ")),
                ("account", customer.account_number.clone()),
                ("address", customer.address.clone()),
                ("tags", customer.tags.join(", ")),
                (
                    "consent",
                    match json["recording_consent"].as_str().unwrap_or("") {
                        "unspecified" => "not asked".to_owned(),
                        other => other.to_owned(),
                    },
                ),
                ("merged", customer.merged_ids.join(", ")),
            ];
            for (label, value) in lines {
                if !value.is_empty() {
                    println!("  {label:<8} {value}");
                }
            }
            for project in &customer.projects {
                println!(
                    "  project {} {} ({})",
                    project.project_id, project.name, project.site
                );
                for stakeholder in &project.stakeholders {
                    println!(
                        "    {:<16} {:<20} {} {}",
                        name(
                            front::StakeholderRole::try_from(stakeholder.role)
                                .ok()
                                .map(|r| r.as_str_name()),
                            "STAKEHOLDER_ROLE_"
                        ),
                        stakeholder.name,
                        stakeholder.phone,
                        stakeholder.email
                    );
                }
            }
        }
    }
}

fn print_list(response: &front::ListCustomersResponse, output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "customers": response.customers.iter().map(customer_json).collect::<Vec<_>>(),
                "next_page_token": response.next_page_token,
            })
        ),
        Output::Table => {
            println!(
                "{:<36}  {:<22}  {:<20}  {:<16}  TAGS",
                "CUSTOMER", "SEGMENT", "NAME", "PHONE"
            );
            for customer in &response.customers {
                println!(
                    "{:<36}  {:<22}  {:<20}  {:<16}  {}",
                    customer.customer_id,
                    segment_name(customer),
                    if customer.personal_data_erased {
                        "(erased)"
                    } else {
                        &customer.name
                    },
                    customer.phones.first().map(String::as_str).unwrap_or(""),
                    customer.tags.join(",")
                );
            }
            if !response.next_page_token.is_empty() {
                println!("more: --page-token {}", response.next_page_token);
            }
        }
    }
}
