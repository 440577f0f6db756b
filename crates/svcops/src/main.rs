//! `svcops`: the one binary for people.

mod admin;
mod client;
mod contact;
mod customer;
mod embedded;
mod rma;
mod routing;
mod workorder;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "svcops",
    version,
    about = "Service operations: cases, field work, QA, and executives listening in"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Address of a running svcops (embedded or a front door of the cluster).
    #[arg(
        long,
        global = true,
        env = "SVCOPS_ADDR",
        default_value = embedded::DEFAULT_ADDR
    )]
    addr: String,
    /// Bearer token; without one, an admin token is minted from the data directory's secret.
    #[arg(long, global = true, env = "SVCOPS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Data directory of the embedded cluster.
    #[arg(
        long,
        global = true,
        env = "SVCOPS_DATA_DIR",
        default_value = embedded::DEFAULT_DATA_DIR
    )]
    data_dir: PathBuf,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run all four services in this process (embedded mode).
    Up {
        /// Address to serve gRPC on.
        #[arg(long, default_value = embedded::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Also serve Prometheus metrics (`GET /metrics`) on this address.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
        /// Refuse new cases (RESOURCE_EXHAUSTED, with a retry delay) while any office's
        /// relay or consumer is more than this many seconds behind; 0: never.
        #[arg(long, env = "SVCOPS_MAX_LAG_SECONDS", default_value_t = 10)]
        max_lag_seconds: u64,
    },
    /// Print a signed bearer token.
    Token {
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 12)]
        hours: u64,
        /// Signing secret; defaults to the embedded data directory's.
        #[arg(long, env = "SVCOPS_TOKEN_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
    /// Cases at the front office.
    #[command(subcommand)]
    Case(CaseCommand),
    /// Conversations about cases, with their transcripts.
    #[command(subcommand)]
    Contact(contact::ContactCommand),
    /// Customers: consumers and business accounts, projects, merges, erasure.
    #[command(subcommand)]
    Customer(customer::CustomerCommand),
    /// The middle office's work orders: visits, dispatch, arrival, outcome.
    #[command(subcommand)]
    Workorder(workorder::WorkOrderCommand),
    /// Return-to-factory repairs.
    #[command(subcommand)]
    Rma(rma::RmaCommand),
    /// Agents' skills, segments, capacity and availability, for routing.
    #[command(subcommand)]
    Agent(routing::AgentCommand),
    /// Queues by case category and customer segment, for routing.
    #[command(subcommand)]
    Queue(routing::QueueCommand),
    /// Operate the cluster: the offices' projections (read models).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print a case's timeline across all offices, then follow it live.
    Listen {
        case_id: String,
        /// Print what happened so far and exit.
        #[arg(long)]
        no_follow: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CaseCommand {
    /// Open a case; prints its id.
    Open(client::OpenCase),
    /// Show one case.
    Show { case_id: String },
    /// Where a case's field work stands, as self-service tells the customer (with
    /// --phone, as a self-service channel must give it).
    Progress {
        case_id: String,
        #[arg(long)]
        phone: Option<String>,
    },
    /// List cases, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
        #[command(flatten)]
        filter: client::ListFilter,
    },
    /// Route a case to a queue (and set its priority).
    Triage {
        case_id: String,
        /// The queue; without one, routing picks the queue that takes the case.
        #[arg(long, default_value = "")]
        queue: String,
        /// low, normal, high or urgent; unchanged when not given.
        #[arg(long)]
        priority: Option<String>,
        #[command(flatten)]
        request: client::RequestId,
    },
    /// Give a case to an agent (or to another one).
    Assign {
        case_id: String,
        /// The agent's subject, as in their token; without one, routing picks the
        /// least-loaded available agent who fits the case and has room.
        #[arg(long, default_value = "")]
        to: String,
        #[command(flatten)]
        request: client::RequestId,
    },
    /// Mark a case as waiting on the customer or on the middle office.
    Wait {
        case_id: String,
        /// customer or middle-office.
        #[arg(long)]
        on: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        request: client::RequestId,
    },
    /// End a wait: the case is back with its assignee.
    Resume {
        case_id: String,
        #[command(flatten)]
        request: client::RequestId,
    },
    /// Resolve a case.
    Resolve {
        case_id: String,
        #[arg(long)]
        resolution: String,
        #[command(flatten)]
        request: client::RequestId,
    },
    /// Close a resolved case once the customer has confirmed.
    Close {
        case_id: String,
        #[command(flatten)]
        request: client::RequestId,
    },
    /// Open a resolved or closed case again.
    Reopen {
        case_id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        request: client::RequestId,
    },
    /// Escalate a complaint to level 1, 2 or 3 (3 also flags a public-opinion risk).
    Escalate {
        case_id: String,
        #[arg(long)]
        level: u32,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        request: client::RequestId,
    },
    /// Flag a public-opinion risk: the case could spread on social media or reach the press.
    FlagRisk {
        case_id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        request: client::RequestId,
    },
    /// Clear a case's public-opinion risk (managers).
    ClearRisk {
        case_id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        request: client::RequestId,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// List every office's projections with their checkpoint, the log's head and the lag.
    Projections,
    /// One projection.
    #[command(subcommand)]
    Projection(ProjectionCommand),
}

#[derive(Debug, Subcommand)]
enum ProjectionCommand {
    /// Rebuild a projection from the start of its office's log, beside the live one, and
    /// follow it until it replaces the live one (readers never see a half-built one).
    Rebuild {
        office: admin::Office,
        /// The projection's name, as `svcops admin projections` lists it.
        name: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("svcops: {}", client::one_line(&error));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Up {
            listen,
            metrics_listen,
            max_lag_seconds,
        } => {
            let _telemetry = svcops_kit::telemetry::init(
                "svcops",
                None,
                svcops_kit::telemetry::LogFormat::Text,
            )?;
            embedded::run(
                &global.data_dir,
                listen,
                metrics_listen,
                svcops_bus::lag::Backpressure {
                    max_lag: (max_lag_seconds > 0)
                        .then(|| std::time::Duration::from_secs(max_lag_seconds)),
                },
                svcops_kit::shutdown::on_signal(),
            )
            .await
        }
        Command::Token {
            role,
            name,
            hours,
            secret,
        } => {
            let secret = match secret {
                Some(secret) => secret,
                None => embedded::secret(&global.data_dir, false)?,
            };
            let token = client::mint(&secret, &role, &name, hours)?;
            match global.output {
                Output::Table => println!("{token}"),
                Output::Json => println!("{}", serde_json::json!({ "token": token })),
            }
            Ok(())
        }
        Command::Case(command) => {
            let mut client = client::Client::connect(&global).await?;
            match command {
                CaseCommand::Open(open) => client.open_case(open, global.output).await,
                CaseCommand::Show { case_id } => client.show_case(&case_id, global.output).await,
                CaseCommand::Progress { case_id, phone } => {
                    workorder::progress(&client, case_id, phone, global.output).await
                }
                CaseCommand::List {
                    page_size,
                    page_token,
                    filter,
                } => {
                    client
                        .list_cases(page_size, page_token, filter, global.output)
                        .await
                }
                change => {
                    let (case_id, request, change) = lifecycle_change(change)?;
                    client
                        .change_case(case_id, request, change, global.output)
                        .await
                }
            }
        }
        Command::Contact(command) => {
            let client = client::Client::connect(&global).await?;
            contact::run(&client, command, global.output).await
        }
        Command::Workorder(command) => {
            let client = client::Client::connect(&global).await?;
            workorder::run(&client, command, global.output).await
        }
        Command::Rma(command) => {
            let client = client::Client::connect(&global).await?;
            rma::run(&client, command, global.output).await
        }
        Command::Agent(command) => {
            let client = client::Client::connect(&global).await?;
            routing::agent(&client, command, global.output).await
        }
        Command::Queue(command) => {
            let client = client::Client::connect(&global).await?;
            routing::queue(&client, command, global.output).await
        }
        Command::Customer(command) => {
            let client = client::Client::connect(&global).await?;
            customer::run(&client, command, global.output).await
        }
        Command::Admin(command) => {
            let client = client::Client::connect(&global).await?;
            match command {
                AdminCommand::Projections => admin::list(&client, global.output).await,
                AdminCommand::Projection(ProjectionCommand::Rebuild { office, name }) => {
                    admin::rebuild_and_follow(&client, office, &name, global.output).await
                }
            }
        }
        Command::Listen { case_id, no_follow } => {
            let mut client = client::Client::connect(&global).await?;
            client.listen(&case_id, !no_follow, global.output).await
        }
    }
}

/// A case command that changes a case: its case, request id and change.
fn lifecycle_change(
    command: CaseCommand,
) -> anyhow::Result<(String, client::RequestId, client::Change)> {
    use client::Change;
    Ok(match command {
        CaseCommand::Open(_)
        | CaseCommand::Show { .. }
        | CaseCommand::Progress { .. }
        | CaseCommand::List { .. } => {
            anyhow::bail!("not a change to a case")
        }
        CaseCommand::Triage {
            case_id,
            queue,
            priority,
            request,
        } => (
            case_id,
            request,
            Change::triage(queue, priority.as_deref())?,
        ),
        CaseCommand::Assign {
            case_id,
            to,
            request,
        } => (case_id, request, Change::Assign(to)),
        CaseCommand::Wait {
            case_id,
            on,
            reason,
            request,
        } => (case_id, request, Change::wait(&on, reason)?),
        CaseCommand::Resume { case_id, request } => (case_id, request, Change::Resume),
        CaseCommand::Resolve {
            case_id,
            resolution,
            request,
        } => (case_id, request, Change::Resolve(resolution)),
        CaseCommand::Close { case_id, request } => (case_id, request, Change::Close),
        CaseCommand::Reopen {
            case_id,
            reason,
            request,
        } => (case_id, request, Change::Reopen(reason)),
        CaseCommand::Escalate {
            case_id,
            level,
            reason,
            request,
        } => (case_id, request, Change::Escalate { level, reason }),
        CaseCommand::FlagRisk {
            case_id,
            reason,
            request,
        } => (case_id, request, Change::FlagRisk(reason)),
        CaseCommand::ClearRisk {
            case_id,
            reason,
            request,
        } => (case_id, request, Change::ClearRisk(reason)),
    })
}
