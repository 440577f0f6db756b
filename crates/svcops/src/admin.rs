//! `svcops admin`: the offices' projections (read models): list them with their lag, and
//! rebuild one with a progress bar.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::ValueEnum;
use svcops_proto::backoffice::v1 as back;
use svcops_proto::backoffice::v1::back_office_service_client::BackOfficeServiceClient;
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::frontoffice::v1::case_service_client::CaseServiceClient;
use svcops_proto::middleoffice::v1 as middle;
use svcops_proto::middleoffice::v1::work_order_service_client::WorkOrderServiceClient;

use crate::Output;
use crate::client::Client;

/// An office with projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Office {
    #[value(name = "front-office")]
    Front,
    #[value(name = "middle-office")]
    Middle,
    #[value(name = "back-office")]
    Back,
}

impl Office {
    const ALL: [Office; 3] = [Office::Front, Office::Middle, Office::Back];

    fn name(self) -> &'static str {
        match self {
            Office::Front => "front-office",
            Office::Middle => "middle-office",
            Office::Back => "back-office",
        }
    }
}

async fn report(client: &Client, office: Office) -> anyhow::Result<common::ProjectionReport> {
    let report = match office {
        Office::Front => {
            CaseServiceClient::new(client.channel())
                .list_projections(client.request(front::ListProjectionsRequest {}))
                .await?
                .into_inner()
                .report
        }
        Office::Middle => {
            WorkOrderServiceClient::new(client.channel())
                .list_projections(client.request(middle::ListProjectionsRequest {}))
                .await?
                .into_inner()
                .report
        }
        Office::Back => {
            BackOfficeServiceClient::new(client.channel())
                .list_projections(client.request(back::ListProjectionsRequest {}))
                .await?
                .into_inner()
                .report
        }
    };
    report.ok_or_else(|| anyhow!("{} sent no projection report", office.name()))
}

async fn rebuild(
    client: &Client,
    office: Office,
    name: &str,
) -> anyhow::Result<common::ProjectionGeneration> {
    let name = name.to_owned();
    let building = match office {
        Office::Front => {
            CaseServiceClient::new(client.channel())
                .rebuild_projection(client.request(front::RebuildProjectionRequest { name }))
                .await?
                .into_inner()
                .building
        }
        Office::Middle => {
            WorkOrderServiceClient::new(client.channel())
                .rebuild_projection(client.request(middle::RebuildProjectionRequest { name }))
                .await?
                .into_inner()
                .building
        }
        Office::Back => {
            BackOfficeServiceClient::new(client.channel())
                .rebuild_projection(client.request(back::RebuildProjectionRequest { name }))
                .await?
                .into_inner()
                .building
        }
    };
    building.ok_or_else(|| anyhow!("{} sent no building generation", office.name()))
}

fn status_name(status: i32) -> &'static str {
    match common::ProjectionStatus::try_from(status) {
        Ok(common::ProjectionStatus::Live) => "live",
        Ok(common::ProjectionStatus::Building) => "building",
        _ => "unknown",
    }
}

/// `svcops admin projections`: every projection of every office, with its lag.
pub async fn list(client: &Client, output: Output) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for office in Office::ALL {
        let report = report(client, office)
            .await
            .with_context(|| format!("listing the projections of {}", office.name()))?;
        for generation in report.generations {
            rows.push((office, report.head, generation));
        }
    }
    match output {
        Output::Json => {
            let rows: Vec<_> = rows
                .iter()
                .map(|(office, head, generation)| {
                    serde_json::json!({
                        "office": office.name(),
                        "name": generation.name,
                        "generation": generation.generation,
                        "version": generation.version,
                        "status": status_name(generation.status),
                        "checkpoint": generation.checkpoint,
                        "head": head,
                        "lag": head - generation.checkpoint,
                    })
                })
                .collect();
            println!("{}", serde_json::json!({ "projections": rows }));
        }
        Output::Table => {
            println!(
                "{:<14}  {:<18}  {:>4}  {:>7}  {:<8}  {:>12}  {:>12}  {:>10}",
                "OFFICE", "PROJECTION", "GEN", "VERSION", "STATUS", "CHECKPOINT", "HEAD", "LAG"
            );
            for (office, head, generation) in &rows {
                println!(
                    "{:<14}  {:<18}  {:>4}  {:>7}  {:<8}  {:>12}  {:>12}  {:>10}",
                    office.name(),
                    generation.name,
                    generation.generation,
                    generation.version,
                    status_name(generation.status),
                    generation.checkpoint,
                    head,
                    head - generation.checkpoint,
                );
            }
        }
    }
    Ok(())
}

/// `svcops admin projection rebuild OFFICE NAME`: starts the rebuild and follows it until the
/// new generation is live, with a progress bar (events/s, ETA) on a terminal.
pub async fn rebuild_and_follow(
    client: &Client,
    office: Office,
    name: &str,
    output: Output,
) -> anyhow::Result<()> {
    let building = rebuild(client, office, name).await?;
    let started = Instant::now();
    let show_progress = output == Output::Table && std::io::stderr().is_terminal();
    let mut last = (Instant::now(), building.checkpoint);
    let mut rate = 0.0_f64;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let report = report(client, office).await?;
        let Some(now) = report.generations.iter().find(|generation| {
            generation.name == name && generation.generation == building.generation
        }) else {
            return Err(anyhow!(
                "generation {} of {name} is gone: a newer rebuild replaced it",
                building.generation
            ));
        };
        let elapsed = last.0.elapsed().as_secs_f64();
        if elapsed > 0.0 {
            let recent = (now.checkpoint - last.1).max(0) as f64 / elapsed;
            rate = if rate == 0.0 {
                recent
            } else {
                0.7 * rate + 0.3 * recent
            };
        }
        last = (Instant::now(), now.checkpoint);
        let live = status_name(now.status) == "live";
        if show_progress {
            let total = report.head.max(1);
            let done = now.checkpoint.min(total);
            let filled = (done * 30 / total) as usize;
            let eta = if rate > 0.0 {
                format!("{:.0}s", (total - done) as f64 / rate)
            } else {
                "?".into()
            };
            eprint!(
                "\r{name} g{}: [{}{}] {done}/{total} events  {:.0} events/s  ETA {eta}   ",
                building.generation,
                "#".repeat(filled),
                "-".repeat(30 - filled),
                rate,
            );
            let _ = std::io::stderr().flush();
        }
        if live {
            if show_progress {
                eprintln!();
            }
            let seconds = started.elapsed().as_secs_f64();
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({
                        "office": office.name(),
                        "name": name,
                        "generation": building.generation,
                        "status": "live",
                        "checkpoint": now.checkpoint,
                        "seconds": seconds,
                    })
                ),
                Output::Table => println!(
                    "{} {name}: generation {} is live at position {} ({seconds:.1} s)",
                    office.name(),
                    building.generation,
                    now.checkpoint
                ),
            }
            return Ok(());
        }
    }
}
