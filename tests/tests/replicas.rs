//! Offices scaled out: two replicas each of the front, middle and back office as separate
//! processes on one database per office, a burst of repair cases, and SIGKILLs of the
//! replica holding each office's relay lease in the middle of it. Nothing may be lost or
//! done twice, and every projection must equal a rebuild from scratch.
//!
//! (Listen-in runs one replica: its timelines are not shared across replicas yet.)

use std::collections::HashSet;
use std::time::Duration;

use sqlx::Connection;
use svcops_kit::auth::Role;
use svcops_proto::backoffice::v1 as back;
use svcops_proto::backoffice::v1::back_office_service_client::BackOfficeServiceClient;
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::frontoffice::v1::case_service_client::CaseServiceClient;
use svcops_proto::listenin::v1::listen_in_service_client::ListenInServiceClient;
use svcops_proto::middleoffice::v1 as middle;
use svcops_proto::middleoffice::v1::work_order_service_client::WorkOrderServiceClient;
use tests::{Cluster, eventually};

const CASES: usize = 300;
const FLOW_TIMEOUT: Duration = Duration::from_secs(120);
const SCALED_OUT: [&str; 3] = ["front-office", "middle-office", "back-office"];

fn repair_case(index: usize) -> front::OpenCaseRequest {
    front::OpenCaseRequest {
        request_id: format!("burst-{index}"),
        customer_phone: format!("+86138{:08}", index),
        category: common::CaseCategory::Repair.into(),
        priority: common::Priority::High.into(),
        channel: front::Channel::Hotline.into(),
        summary: "ceiling lamp flickers".into(),
        product: "PL-200".into(),
        serial_number: format!("SN-{index}"),
    }
}

async fn connect(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|error| panic!("cannot reach {url}: {error}"))
}

/// The process id of the replica holding an office's relay lease (`host/pid/suffix`).
async fn relay_holder(database_url: &str) -> u32 {
    let mut connection = connect(database_url).await;
    let holder: String =
        sqlx::query_scalar("SELECT holder FROM leases WHERE name LIKE 'relay:%' LIMIT 1")
            .fetch_one(&mut connection)
            .await
            .expect("a replica holds the relay lease");
    holder
        .split('/')
        .nth(1)
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("unexpected lease holder {holder:?}"))
}

/// Kills the replica of `office` that holds its relay lease; returns its index among the
/// office's replicas.
async fn kill_relay_holder(cluster: &mut Cluster, office: &str) -> usize {
    let database_url = cluster.service(office).database_url().to_owned();
    let holder = relay_holder(&database_url).await;
    let mut replicas = cluster.replicas(office);
    let index = replicas
        .iter()
        .position(|replica| replica.pid() == Some(holder))
        .unwrap_or_else(|| panic!("the {office} relay lease is held by no replica of this test"));
    replicas[index].kill().await;
    index
}

/// Every table of every live projection generation, each as one JSON array of its rows in
/// a canonical order, keyed by `<projection>.<table>`.
async fn projection_tables(database_url: &str) -> Vec<(String, i64, String)> {
    let mut connection = connect(database_url).await;
    let live: Vec<(String, i64)> = sqlx::query_as(
        "SELECT name, generation FROM projections WHERE status = 'live' ORDER BY name",
    )
    .fetch_all(&mut connection)
    .await
    .expect("projections");
    let mut tables = Vec::new();
    for (name, generation) in live {
        let physical: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE tablename LIKE $1 ORDER BY tablename",
        )
        .bind(format!("{name}\\_\\_%\\_\\_g{generation}"))
        .fetch_all(&mut connection)
        .await
        .expect("tables");
        assert!(!physical.is_empty(), "{name} g{generation} has no tables");
        for table in physical {
            // Test-only SQL over names read from the catalog just above.
            let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COALESCE(jsonb_agg(row ORDER BY row::text), '[]')::text \
                 FROM (SELECT to_jsonb(t) AS row FROM {table} t) rows"
            )))
            .fetch_one(&mut connection)
            .await
            .expect("dump a table");
            let logical = table
                .strip_prefix(&format!("{name}__"))
                .and_then(|rest| rest.strip_suffix(&format!("__g{generation}")))
                .expect("a generation's table")
                .to_owned();
            tables.push((format!("{name}.{logical}"), generation, rows));
        }
    }
    tables
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_lose_and_duplicate_nothing_when_relay_holders_die_mid_burst() {
    let mut cluster = Cluster::start().await;
    for office in SCALED_OUT {
        cluster.add_replica(office).await;
    }
    let front_addresses: Vec<String> = cluster
        .replicas("front-office")
        .iter()
        .map(|replica| replica.address.clone())
        .collect();
    let mut front_alive = vec![true; front_addresses.len()];
    let mut case_ids = Vec::with_capacity(CASES);
    for index in 0..CASES {
        // The relay lease holder of each office dies at its moment in the burst.
        for (office, at) in [
            ("front-office", CASES / 4),
            ("middle-office", CASES / 2),
            ("back-office", CASES * 3 / 4),
        ] {
            if index == at {
                let killed = kill_relay_holder(&mut cluster, office).await;
                if office == "front-office" {
                    front_alive[killed] = false;
                }
            }
        }
        // Requests alternate between the live front-office replicas.
        let alive: Vec<&String> = front_addresses
            .iter()
            .zip(&front_alive)
            .filter_map(|(address, alive)| alive.then_some(address))
            .collect();
        let address = alive[index % alive.len()].clone();
        let channel = tonic::transport::Channel::from_shared(address)
            .expect("address")
            .connect()
            .await
            .expect("a live front-office replica");
        let case = CaseServiceClient::new(channel)
            .open_case(cluster.request(Role::Agent, repair_case(index)))
            .await
            .expect("open case")
            .into_inner()
            .case
            .expect("case");
        case_ids.push(case.case_id);
    }

    // Whatever replica answers: the survivors.
    let back_channel = survivor(&mut cluster, "back-office").await;
    let middle_channel = survivor(&mut cluster, "middle-office").await;
    let front_channel = survivor(&mut cluster, "front-office").await;
    let back_office = BackOfficeServiceClient::new(back_channel);
    let stats = cluster
        .stats_counting(back_office.clone(), CASES as u64, FLOW_TIMEOUT)
        .await;
    assert_eq!(stats.cases_tracked, CASES as u64, "each case counted once");
    assert_eq!(
        stats.work_orders_tracked, CASES as u64,
        "each work order once"
    );
    assert_eq!(stats.closed_loop_open, CASES as u64);

    let mut work_orders = WorkOrderServiceClient::new(middle_channel);
    for case_id in &case_ids {
        let listed = work_orders
            .list_work_orders(cluster.request(
                Role::Technician,
                middle::ListWorkOrdersRequest {
                    case_id: case_id.clone(),
                    page_size: 10,
                    page_token: String::new(),
                },
            ))
            .await
            .expect("list work orders")
            .into_inner();
        assert_eq!(
            listed.work_orders.len(),
            1,
            "case {case_id}: one work order"
        );
    }
    let mut cases = CaseServiceClient::new(front_channel.clone());
    let listed = cases
        .list_cases(cluster.request(
            Role::Manager,
            front::ListCasesRequest {
                page_size: 1_000,
                page_token: String::new(),
            },
        ))
        .await
        .expect("list cases")
        .into_inner();
    let listed: HashSet<String> = listed.cases.into_iter().map(|case| case.case_id).collect();
    assert_eq!(listed, case_ids.iter().cloned().collect::<HashSet<_>>());

    // Every case's timeline: complete, each source event once.
    let listen_in = ListenInServiceClient::new(cluster.service("listen-in").channel().await);
    for case_id in &case_ids {
        let entries = cluster
            .timeline_once_holding(
                listen_in.clone(),
                case_id,
                &[
                    "svcops.frontoffice.v1.CaseOpened",
                    "svcops.middleoffice.v1.WorkOrderOpened",
                    "svcops.backoffice.v1.SlaOnSiteTargetSet",
                    "svcops.backoffice.v1.ClosedLoopItemOpened",
                ],
                FLOW_TIMEOUT,
            )
            .await;
        let mut seen = HashSet::new();
        for entry in &entries {
            assert!(
                seen.insert(entry.event_id.as_str()),
                "case {case_id}: {} is on the timeline twice",
                entry.event_type
            );
        }
        let sequences: Vec<u64> = entries.iter().map(|entry| entry.sequence).collect();
        assert!(
            sequences.windows(2).all(|pair| pair[0] < pair[1]),
            "case {case_id}: timeline out of order: {sequences:?}"
        );
    }

    // Every projection equals a rebuild of it from scratch.
    for office in SCALED_OUT {
        let database_url = cluster.service(office).database_url().to_owned();
        let before = projection_tables(&database_url).await;
        let channel = survivor(&mut cluster, office).await;
        let names: HashSet<String> = before
            .iter()
            .map(|(table, _, _)| table.split('.').next().expect("name").to_owned())
            .collect();
        for name in &names {
            let building = match office {
                "front-office" => {
                    CaseServiceClient::new(channel.clone())
                        .rebuild_projection(cluster.request(
                            Role::Admin,
                            front::RebuildProjectionRequest { name: name.clone() },
                        ))
                        .await
                        .expect("rebuild")
                        .into_inner()
                        .building
                }
                "middle-office" => {
                    WorkOrderServiceClient::new(channel.clone())
                        .rebuild_projection(cluster.request(
                            Role::Admin,
                            middle::RebuildProjectionRequest { name: name.clone() },
                        ))
                        .await
                        .expect("rebuild")
                        .into_inner()
                        .building
                }
                _ => {
                    BackOfficeServiceClient::new(channel.clone())
                        .rebuild_projection(cluster.request(
                            Role::Admin,
                            back::RebuildProjectionRequest { name: name.clone() },
                        ))
                        .await
                        .expect("rebuild")
                        .into_inner()
                        .building
                }
            }
            .expect("a building generation");
            eventually("the rebuilt generation to go live", FLOW_TIMEOUT, || {
                let database_url = database_url.clone();
                let (name, generation) = (name.clone(), building.generation);
                async move {
                    let mut connection = connect(&database_url).await;
                    let live: Option<i64> = sqlx::query_scalar(
                        "SELECT generation FROM projections WHERE name = $1 AND status = 'live'",
                    )
                    .bind(&name)
                    .fetch_optional(&mut connection)
                    .await
                    .ok()?;
                    (live == Some(generation)).then_some(())
                }
            })
            .await;
        }
        let after = projection_tables(&database_url).await;
        assert_eq!(before.len(), after.len(), "{office}: the same tables");
        for ((table, old, rows_before), (rebuilt_table, new, rows_after)) in
            before.iter().zip(&after)
        {
            assert_eq!(table, rebuilt_table);
            assert!(new > old, "{table}: rebuilt into a new generation");
            assert!(
                rows_before == rows_after,
                "{office} {table}: generation {old} differs from its rebuild {new}"
            );
        }
    }
}

/// A channel to a live replica of `office`.
async fn survivor(cluster: &mut Cluster, office: &str) -> tonic::transport::Channel {
    for replica in cluster.replicas(office) {
        if let Ok(channel) = tonic::transport::Channel::from_shared(replica.address.clone())
            .expect("address")
            .connect()
            .await
        {
            return channel;
        }
    }
    panic!("no replica of {office} is alive");
}
