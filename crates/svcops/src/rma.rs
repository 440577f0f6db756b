//! `svcops rma …`: return-to-factory repairs.

use anyhow::anyhow;
use clap::Subcommand;
use svcops_proto::middleoffice::v1 as middle;
use svcops_proto::middleoffice::v1::work_order_service_client::WorkOrderServiceClient;

use crate::Output;
use crate::client::{Client, parse_enum};

#[derive(Debug, Subcommand)]
pub enum RmaCommand {
    /// Authorise the return of a work order whose visit found it needs factory repair.
    Authorize {
        work_order_id: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Record the next step: shipped-by-customer (--tracking), received-at-factory,
    /// repaired or replaced (--note), shipped-back (--tracking), delivered.
    Step {
        rma_id: String,
        step: String,
        #[arg(long, default_value = "")]
        tracking: String,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    Show {
        rma_id: String,
    },
}

fn print(rma: &middle::Return, output: Output) {
    let state = middle::ReturnState::try_from(rma.state)
        .ok()
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("RETURN_STATE_")
                .to_lowercase()
                .replace('_', "-")
        })
        .unwrap_or_default();
    let json = serde_json::json!({
        "rma_id": rma.rma_id,
        "work_order_id": rma.work_order_id,
        "case_id": rma.case_id,
        "state": state,
        "product": rma.product,
        "serial_number": rma.serial_number,
        "inbound_tracking": rma.inbound_tracking,
        "outbound_tracking": rma.outbound_tracking,
        "factory_note": rma.factory_note,
        "version": rma.version,
    });
    match output {
        Output::Json => println!("{json}"),
        Output::Table => {
            if let Some(object) = json.as_object() {
                for (key, value) in object {
                    let value = value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned);
                    if !value.is_empty() {
                        println!("{key:<18} {value}");
                    }
                }
            }
        }
    }
}

pub async fn run(client: &Client, command: RmaCommand, output: Output) -> anyhow::Result<()> {
    let mut orders = WorkOrderServiceClient::new(client.channel());
    let rma = match command {
        RmaCommand::Authorize {
            work_order_id,
            request_id,
        } => {
            orders
                .authorize_return(client.request(middle::AuthorizeReturnRequest {
                    work_order_id,
                    request_id,
                }))
                .await?
                .into_inner()
                .rma
        }
        RmaCommand::Step {
            rma_id,
            step,
            tracking,
            note,
            request_id,
        } => {
            let step = parse_enum("step", &step.replace('-', "_"), "RETURN_STEP_", |name| {
                middle::ReturnStep::from_str_name(name).map(Into::into)
            })?;
            orders
                .advance_return(client.request(middle::AdvanceReturnRequest {
                    rma_id,
                    request_id,
                    step,
                    tracking_number: tracking,
                    note,
                }))
                .await?
                .into_inner()
                .rma
        }
        RmaCommand::Show { rma_id } => {
            orders
                .get_return(client.request(middle::GetReturnRequest { rma_id }))
                .await?
                .into_inner()
                .rma
        }
    };
    let rma = rma.ok_or_else(|| anyhow!("the server returned no return"))?;
    print(&rma, output);
    Ok(())
}
