//! `svcops workorder …`: the middle office's visits, for dispatchers and technicians; and
//! `svcops case progress`, what self-service tells a customer.

use anyhow::anyhow;
use clap::Subcommand;
use svcops_kit::events::{from_timestamp, to_timestamp};
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::frontoffice::v1::case_service_client::CaseServiceClient;
use svcops_proto::middleoffice::v1 as middle;
use svcops_proto::middleoffice::v1::work_order_service_client::WorkOrderServiceClient;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Output;
use crate::client::{Client, parse_enum};

#[derive(Debug, Subcommand)]
pub enum WorkOrderCommand {
    /// Work orders, newest first (of one case with --case).
    List {
        #[arg(long = "case")]
        case_id: Option<String>,
    },
    Show {
        work_order_id: String,
    },
    /// Agree the visit's window (RFC 3339 times), or move it.
    Schedule {
        work_order_id: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Give the visit to a technician (their token's subject).
    Dispatch {
        work_order_id: String,
        #[arg(long = "to")]
        technician: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// The technician sets out; ETA as RFC 3339, or minutes from now (`+25`).
    EnRoute {
        work_order_id: String,
        #[arg(long)]
        eta: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// The technician is on site now.
    Arrived {
        work_order_id: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Charge parts and labour at the visit: `--line CODE:QTY` (list price) or
    /// `--line CODE:QTY:CENTS` (a deviation, managers only); repeat. Pass --request-id to
    /// retry safely (one is made up otherwise).
    Charge {
        work_order_id: String,
        #[arg(long = "line", required = true)]
        lines: Vec<String>,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// The standard price list in force.
    Prices,
    /// The visit is done: fixed-on-site, needs-parts, needs-factory-repair or
    /// not-a-product-fault (with --note saying why).
    Complete {
        work_order_id: String,
        #[arg(long)]
        outcome: String,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
}

fn instant(field: &str, raw: &str) -> anyhow::Result<prost_types::Timestamp> {
    let time = match raw.strip_prefix('+') {
        Some(minutes) => {
            let minutes: i64 = minutes
                .parse()
                .ok()
                .filter(|minutes| (0..=60 * 24 * 56).contains(minutes))
                .ok_or_else(|| {
                    anyhow!("--{field}: not a number of minutes up to 8 weeks: {raw:?}")
                })?;
            OffsetDateTime::now_utc() + time::Duration::minutes(minutes)
        }
        None => OffsetDateTime::parse(raw, &Rfc3339)
            .map_err(|_| anyhow!("--{field}: not an RFC 3339 time: {raw:?}"))?,
    };
    Ok(to_timestamp(time))
}

fn time(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(from_timestamp)
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_default()
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

fn work_order_json(order: &middle::WorkOrder) -> serde_json::Value {
    serde_json::json!({
        "work_order_id": order.work_order_id,
        "case_id": order.case_id,
        "state": name(middle::WorkOrderState::try_from(order.state).ok().map(|s| s.as_str_name()), "WORK_ORDER_STATE_"),
        "kind": name(middle::WorkOrderKind::try_from(order.kind).ok().map(|k| k.as_str_name()), "WORK_ORDER_KIND_"),
        "product": order.product,
        "window_start": time(order.window_start.as_ref()),
        "window_end": time(order.window_end.as_ref()),
        "reschedules": order.reschedules,
        "technician": order.technician,
        "eta": time(order.eta.as_ref()),
        "arrived_at": time(order.arrived_at.as_ref()),
        "punctuality": name(middle::Punctuality::try_from(order.punctuality).ok().filter(|p| *p != middle::Punctuality::Unspecified).map(|p| p.as_str_name()), "PUNCTUALITY_"),
        "punctuality_minutes": order.punctuality_minutes,
        "outcome": name(middle::VisitOutcome::try_from(order.outcome).ok().filter(|o| *o != middle::VisitOutcome::Unspecified).map(|o| o.as_str_name()), "VISIT_OUTCOME_"),
        "outcome_note": order.outcome_note,
        "charged_total_cents": order.charged_total_cents,
        "charges": order.charges.iter().map(|line| serde_json::json!({
            "item_code": line.item_code,
            "quantity": line.quantity,
            "free_units": line.free_units,
            "unit_price_cents": line.unit_price_cents,
            "amount_cents": line.amount_cents,
            "standard_amount_cents": line.standard_amount_cents,
        })).collect::<Vec<_>>(),
        "version": order.version,
    })
}

fn print(orders: &[middle::WorkOrder], output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::Value::Array(orders.iter().map(work_order_json).collect())
        ),
        Output::Table => {
            for order in orders {
                let json = work_order_json(order);
                if let Some(object) = json.as_object() {
                    for (key, value) in object {
                        let value = value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_owned);
                        if !value.is_empty() && value != "0" {
                            println!("{key:<20} {value}");
                        }
                    }
                }
                println!();
            }
        }
    }
}

pub async fn run(client: &Client, command: WorkOrderCommand, output: Output) -> anyhow::Result<()> {
    let mut orders = WorkOrderServiceClient::new(client.channel());
    let order = match command {
        WorkOrderCommand::List { case_id } => {
            let listed = orders
                .list_work_orders(client.request(middle::ListWorkOrdersRequest {
                    case_id: case_id.unwrap_or_default(),
                    page_size: 50,
                    page_token: String::new(),
                }))
                .await?
                .into_inner();
            print(&listed.work_orders, output);
            return Ok(());
        }
        WorkOrderCommand::Show { work_order_id } => {
            orders
                .get_work_order(client.request(middle::GetWorkOrderRequest { work_order_id }))
                .await?
                .into_inner()
                .work_order
        }
        WorkOrderCommand::Schedule {
            work_order_id,
            from,
            to,
            request_id,
        } => {
            orders
                .schedule_visit(client.request(middle::ScheduleVisitRequest {
                    work_order_id,
                    request_id,
                    window_start: Some(instant("from", &from)?),
                    window_end: Some(instant("to", &to)?),
                }))
                .await?
                .into_inner()
                .work_order
        }
        WorkOrderCommand::Dispatch {
            work_order_id,
            technician,
            request_id,
        } => {
            orders
                .dispatch_technician(client.request(middle::DispatchTechnicianRequest {
                    work_order_id,
                    request_id,
                    technician,
                }))
                .await?
                .into_inner()
                .work_order
        }
        WorkOrderCommand::EnRoute {
            work_order_id,
            eta,
            request_id,
        } => {
            orders
                .report_en_route(client.request(middle::ReportEnRouteRequest {
                    work_order_id,
                    request_id,
                    eta: Some(instant("eta", &eta)?),
                }))
                .await?
                .into_inner()
                .work_order
        }
        WorkOrderCommand::Arrived {
            work_order_id,
            request_id,
        } => {
            orders
                .record_arrival(client.request(middle::RecordArrivalRequest {
                    work_order_id,
                    request_id,
                }))
                .await?
                .into_inner()
                .work_order
        }
        WorkOrderCommand::Charge {
            work_order_id,
            lines,
            request_id,
        } => {
            let lines = lines
                .iter()
                .map(|line| {
                    let parts: Vec<&str> = line.split(':').collect();
                    let bad =
                        || anyhow!("--line: expected CODE:QTY or CODE:QTY:CENTS, got {line:?}");
                    let quantity = parts.get(1).and_then(|q| q.parse().ok()).ok_or_else(bad)?;
                    let unit_price_cents = match parts.get(2) {
                        Some(cents) => cents.parse().map_err(|_| bad())?,
                        None => 0,
                    };
                    if parts.len() > 3 {
                        return Err(bad());
                    }
                    Ok(middle::ChargeRequestLine {
                        item_code: parts[0].to_owned(),
                        quantity,
                        unit_price_cents,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            // A charge needs a request id (a retry must not charge twice): one per call
            // unless given.
            let request_id = if request_id.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                request_id
            };
            orders
                .charge_work_order(client.request(middle::ChargeWorkOrderRequest {
                    work_order_id,
                    request_id,
                    lines,
                }))
                .await?
                .into_inner()
                .work_order
        }
        WorkOrderCommand::Prices => {
            let list = orders
                .get_price_list(client.request(middle::GetPriceListRequest {}))
                .await?
                .into_inner();
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({
                        "version": list.version,
                        "items": list.items.iter().map(|item| serde_json::json!({
                            "item_code": item.item_code,
                            "name": item.name,
                            "unit_price_cents": item.unit_price_cents,
                            "free_units": item.free_units,
                        })).collect::<Vec<_>>(),
                    })
                ),
                Output::Table => {
                    println!("price list {}", list.version);
                    for item in &list.items {
                        println!(
                            "  {:<14} {:>10.2}  {}{}",
                            item.item_code,
                            item.unit_price_cents as f64 / 100.0,
                            item.name,
                            if item.free_units > 0 {
                                format!(" (first {} free)", item.free_units)
                            } else {
                                String::new()
                            }
                        );
                    }
                }
            }
            return Ok(());
        }
        WorkOrderCommand::Complete {
            work_order_id,
            outcome,
            note,
            request_id,
        } => {
            let outcome = parse_enum(
                "outcome",
                &outcome.replace('-', "_"),
                "VISIT_OUTCOME_",
                |name| middle::VisitOutcome::from_str_name(name).map(Into::into),
            )?;
            orders
                .complete_work_order(client.request(middle::CompleteWorkOrderRequest {
                    work_order_id,
                    request_id,
                    outcome,
                    note,
                }))
                .await?
                .into_inner()
                .work_order
        }
    };
    let order = order.ok_or_else(|| anyhow!("the server returned no work order"))?;
    print(&[order], output);
    Ok(())
}

/// `svcops case progress ID [--phone P]`.
pub async fn progress(
    client: &Client,
    case_id: String,
    phone: Option<String>,
    output: Output,
) -> anyhow::Result<()> {
    let answer = CaseServiceClient::new(client.channel())
        .get_case_progress(client.request(front::GetCaseProgressRequest {
            case_id,
            customer_phone: phone.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    let stage = |value: i32| {
        name(
            front::VisitStage::try_from(value)
                .ok()
                .map(|s| s.as_str_name()),
            "VISIT_STAGE_",
        )
    };
    let json = serde_json::json!({
        "case_id": answer.case_id,
        "state": name(front::CaseState::try_from(answer.state).ok().map(|s| s.as_str_name()), "CASE_STATE_"),
        "updated_at": time(answer.updated_at.as_ref()),
        "visits": answer.visits.iter().map(|visit| serde_json::json!({
            "work_order_id": visit.work_order_id,
            "stage": stage(visit.stage),
            "window_start": time(visit.window_start.as_ref()),
            "window_end": time(visit.window_end.as_ref()),
            "eta": time(visit.eta.as_ref()),
            "arrived_at": time(visit.arrived_at.as_ref()),
            "outcome": visit.outcome,
        })).collect::<Vec<_>>(),
    });
    match output {
        Output::Json => println!("{json}"),
        Output::Table => {
            println!(
                "case {} is {}",
                answer.case_id,
                json["state"].as_str().unwrap_or("")
            );
            for visit in &answer.visits {
                let mut line = format!("  visit: {}", stage(visit.stage).replace('-', " "));
                if visit.window_start.is_some() {
                    line.push_str(&format!(
                        ", window {} to {}",
                        time(visit.window_start.as_ref()),
                        time(visit.window_end.as_ref())
                    ));
                }
                if visit.eta.is_some() {
                    line.push_str(&format!(", arriving about {}", time(visit.eta.as_ref())));
                }
                if !visit.outcome.is_empty() {
                    line.push_str(&format!(": {}", visit.outcome));
                }
                println!("{line}");
            }
        }
    }
    Ok(())
}
