//! Offices scaled out: two replicas each of the front, middle and back office and of
//! listen-in as separate processes on one database per service, a burst of repair cases,
//! and SIGKILLs of the replica holding each office's relay lease, and of the listen-in
//! replica recording timelines, in the middle of it. Nothing may be lost or done twice,
//! both listen-in replicas serve the same timelines, and every projection (the offices' and
//! listen-in's) must equal a rebuild from scratch.

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
        ..Default::default()
    }
}

async fn connect(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|error| panic!("cannot reach {url}: {error}"))
}

/// The relay lease of an office's outbox; the lease of listen-in's recording.
const RELAY_LEASE: &str = "relay:%";
const RECORDER_LEASE: &str = "listen-in/recorder";

/// The process id of the replica holding the lease named like `pattern` (`host/pid/suffix`).
async fn lease_holder(database_url: &str, pattern: &str) -> u32 {
    let mut connection = connect(database_url).await;
    let holder: String = sqlx::query_scalar("SELECT holder FROM leases WHERE name LIKE $1 LIMIT 1")
        .bind(pattern)
        .fetch_one(&mut connection)
        .await
        .expect("a replica holds the lease");
    holder
        .split('/')
        .nth(1)
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("unexpected lease holder {holder:?}"))
}

/// Kills the replica of `office` that holds the lease named like `pattern`; returns its
/// index among the office's replicas.
async fn kill_lease_holder(cluster: &mut Cluster, office: &str, pattern: &str) -> usize {
    let database_url = cluster.service(office).database_url().to_owned();
    let holder = lease_holder(&database_url, pattern).await;
    let mut replicas = cluster.replicas(office);
    let index = replicas
        .iter()
        .position(|replica| replica.pid() == Some(holder))
        .unwrap_or_else(|| {
            panic!("the {office} lease {pattern} is held by no replica of this test")
        });
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
    for office in SCALED_OUT.into_iter().chain(["listen-in"]) {
        cluster.add_replica(office).await;
    }
    let front_addresses: Vec<String> = cluster
        .replicas("front-office")
        .iter()
        .map(|replica| replica.address.clone())
        .collect();
    let mut front_alive = vec![true; front_addresses.len()];
    let mut case_ids = Vec::with_capacity(CASES);
    let mut listen_in_killed = None;
    for index in 0..CASES {
        // The relay lease holder of each office dies at its moment in the burst, and so does
        // the listen-in replica recording timelines.
        for (office, lease, at) in [
            ("front-office", RELAY_LEASE, CASES / 4),
            ("listen-in", RECORDER_LEASE, CASES * 3 / 8),
            ("middle-office", RELAY_LEASE, CASES / 2),
            ("back-office", RELAY_LEASE, CASES * 3 / 4),
        ] {
            if index == at {
                let killed = kill_lease_holder(&mut cluster, office, lease).await;
                match office {
                    "front-office" => front_alive[killed] = false,
                    "listen-in" => listen_in_killed = Some(killed),
                    _ => {}
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
                ..Default::default()
            },
        ))
        .await
        .expect("list cases")
        .into_inner();
    let listed: HashSet<String> = listed.cases.into_iter().map(|case| case.case_id).collect();
    assert_eq!(listed, case_ids.iter().cloned().collect::<HashSet<_>>());

    // Every case's timeline: complete, each source event once, in order; and the same on
    // both listen-in replicas (the killed one comes back as a new process).
    let killed = listen_in_killed.expect("a listen-in replica was killed");
    cluster.replicas("listen-in")[killed].restart().await;
    let mut listen_in = Vec::new();
    for replica in cluster.replicas("listen-in") {
        listen_in.push(ListenInServiceClient::new(replica.channel().await));
    }
    for case_id in &case_ids {
        let mut timelines = Vec::new();
        for client in &listen_in {
            let entries = cluster
                .timeline_once_holding(
                    client.clone(),
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
            tests::assert_each_event_once(case_id, &entries);
            let sequences: Vec<u64> = entries.iter().map(|entry| entry.sequence).collect();
            assert!(
                sequences.windows(2).all(|pair| pair[0] + 1 == pair[1]) && sequences[0] == 1,
                "case {case_id}: timeline not gap-free and in order: {sequences:?}"
            );
            timelines.push(entries);
        }
        // Each look is itself a listen session, recorded on the timeline: the later look may
        // hold more, never anything different.
        let [first, second] = timelines.as_slice() else {
            panic!("two listen-in replicas")
        };
        let common = first.len().min(second.len());
        let identity = |entry: &svcops_proto::listenin::v1::TimelineEntry| {
            (entry.sequence, entry.event_id.clone())
        };
        assert_eq!(
            first[..common].iter().map(identity).collect::<Vec<_>>(),
            second[..common].iter().map(identity).collect::<Vec<_>>(),
            "case {case_id}: the replicas serve different timelines"
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
            wait_live(&database_url, name, building.generation).await;
        }
        assert_rebuilt_equal(office, &before, &projection_tables(&database_url).await);
    }

    // Listen-in's index too. It has no admin RPC: the rebuild is requested in its database,
    // and its running replicas take the new generation up (they look every 2 s).
    let database_url = cluster.service("listen-in").database_url().to_owned();
    let before = projection_tables(&database_url).await;
    let store = svcops_eventstore::PostgresStore::connect(&database_url, 2)
        .await
        .expect("connect to listen-in's database");
    let index = listen_in::index::ListenInIndex;
    let building = svcops_eventstore::projection::request_rebuild(&store, &index)
        .await
        .expect("rebuild listen-in's index");
    wait_live(&database_url, "listen_in_index", building.generation).await;
    assert_rebuilt_equal(
        "listen-in",
        &before,
        &projection_tables(&database_url).await,
    );
}

/// Waits until generation `generation` of projection `name` is the live one.
async fn wait_live(database_url: &str, name: &str, generation: i64) {
    eventually(
        "the rebuilt generation to go live",
        FLOW_TIMEOUT,
        || async move {
            let mut connection = connect(database_url).await;
            let live: Option<i64> = sqlx::query_scalar(
                "SELECT generation FROM projections WHERE name = $1 AND status = 'live'",
            )
            .bind(name)
            .fetch_optional(&mut connection)
            .await
            .ok()?;
            (live == Some(generation)).then_some(())
        },
    )
    .await;
}

/// Every table of every projection holds the same rows after the rebuild as before, in a
/// newer generation.
fn assert_rebuilt_equal(
    service: &str,
    before: &[(String, i64, String)],
    after: &[(String, i64, String)],
) {
    assert_eq!(before.len(), after.len(), "{service}: the same tables");
    for ((table, old, rows_before), (rebuilt_table, new, rows_after)) in before.iter().zip(after) {
        assert_eq!(table, rebuilt_table);
        assert!(new > old, "{table}: rebuilt into a new generation");
        assert!(
            rows_before == rows_after,
            "{service} {table}: generation {old} differs from its rebuild {new}"
        );
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
