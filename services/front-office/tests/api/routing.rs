//! Routing over gRPC, as in a process of its own on a real store: queues by category and
//! segment, agents with skills, segments and capacity, triage and assignment that route by
//! themselves, capacity refused, availability, retries, and bad input.

use svcops_kit::auth::Role;
use svcops_proto::common::v1 as types;
use svcops_proto::frontoffice::v1 as proto;
use svcops_proto::frontoffice::v1::routing_service_client::RoutingServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{FrontOffice, fields};

async fn agent(
    office: &FrontOffice,
    routing: &mut RoutingServiceClient<Channel>,
    name: &str,
    skills: &[types::CaseCategory],
    capacity: u32,
) {
    routing
        .set_agent_profile(office.request(
            Role::Manager,
            proto::SetAgentProfileRequest {
                request_id: format!("profile-{name}"),
                agent: name.into(),
                skills: skills.iter().map(|skill| *skill as i32).collect(),
                segments: vec![proto::CustomerSegment::Hotel as i32],
                capacity,
            },
        ))
        .await
        .unwrap();
    routing
        .set_agent_availability(office.request(
            Role::Manager,
            proto::SetAgentAvailabilityRequest {
                request_id: format!("on-{name}"),
                agent: name.into(),
                available: true,
            },
        ))
        .await
        .unwrap();
}

async fn hotel_complaint(office: &mut FrontOffice, customer_id: &str, n: u32) -> String {
    let request = office.request(
        Role::Agent,
        proto::OpenCaseRequest {
            customer_phone: format!("+861380009{n:04}"),
            category: types::CaseCategory::Complaint.into(),
            summary: format!("complaint {n}"),
            customer_id: customer_id.into(),
            ..Default::default()
        },
    );
    office
        .cases
        .open_case(request)
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap()
        .case_id
}

#[tokio::test]
async fn cases_route_to_the_queue_and_agent_that_fit_within_capacity() {
    let mut office = FrontOffice::start().await;
    let mut routing = office.served.routing().await;
    let mut customers = office.served.customers().await;
    for (queue, categories, segments, rank) in [
        ("general", vec![], vec![], 9),
        (
            "complaints-b2b",
            vec![types::CaseCategory::Complaint as i32],
            vec![proto::CustomerSegment::Hotel as i32],
            1,
        ),
    ] {
        routing
            .define_queue(office.request(
                Role::Manager,
                proto::DefineQueueRequest {
                    request_id: format!("queue-{queue}"),
                    queue: queue.into(),
                    categories,
                    segments,
                    rank,
                },
            ))
            .await
            .unwrap();
    }
    let queues = routing
        .list_queues(office.request(Role::Agent, proto::ListQueuesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .queues;
    assert_eq!(
        queues.iter().map(|q| q.queue.as_str()).collect::<Vec<_>>(),
        ["complaints-b2b", "general"],
        "in routing order"
    );
    agent(
        &office,
        &mut routing,
        "ann",
        &[types::CaseCategory::Complaint],
        1,
    )
    .await;
    agent(
        &office,
        &mut routing,
        "bob",
        &[types::CaseCategory::Complaint],
        2,
    )
    .await;
    agent(
        &office,
        &mut routing,
        "cat",
        &[types::CaseCategory::Repair],
        5,
    )
    .await;

    let hotel = customers
        .register_customer(office.request(
            Role::Agent,
            proto::RegisterCustomerRequest {
                request_id: "hotel".into(),
                segment: proto::CustomerSegment::Hotel.into(),
                account_number: "H-9".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();

    // Triage without a queue: the hotel complaint goes to the B2B complaints queue.
    let first = hotel_complaint(&mut office, &hotel.customer_id, 1).await;
    let triaged = office
        .cases
        .triage_case(office.request(
            Role::Agent,
            proto::TriageCaseRequest {
                case_id: first.clone(),
                request_id: "triage-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(triaged.queue, "complaints-b2b");

    // Assignment without an assignee: the least loaded fitting agent with room, then the
    // next; a retry gets the first answer; with everyone full, nobody.
    let assign_next = async |office: &mut FrontOffice, case_id: &str, request_id: &str| {
        let request = office.request(
            Role::Agent,
            proto::AssignCaseRequest {
                case_id: case_id.into(),
                request_id: request_id.into(),
                assignee: String::new(),
            },
        );
        office
            .cases
            .assign_case(request)
            .await
            .map(|response| response.into_inner().case.unwrap().assignee)
    };
    assert_eq!(
        assign_next(&mut office, &first, "assign-1").await.unwrap(),
        "ann"
    );
    assert_eq!(
        assign_next(&mut office, &first, "assign-1").await.unwrap(),
        "ann",
        "a retry answers with the first result"
    );
    let second = hotel_complaint(&mut office, &hotel.customer_id, 2).await;
    assert_eq!(
        assign_next(&mut office, &second, "assign-2").await.unwrap(),
        "bob"
    );
    let third = hotel_complaint(&mut office, &hotel.customer_id, 3).await;
    assert_eq!(
        assign_next(&mut office, &third, "assign-3").await.unwrap(),
        "bob"
    );
    let fourth = hotel_complaint(&mut office, &hotel.customer_id, 4).await;
    let nobody = assign_next(&mut office, &fourth, "assign-4")
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), Code::FailedPrecondition, "{nobody:?}");

    // Naming a full agent is refused; once one of theirs is resolved, they have room.
    let full = office
        .cases
        .assign_case(office.request(
            Role::Manager,
            proto::AssignCaseRequest {
                case_id: fourth.clone(),
                request_id: "assign-4-ann".into(),
                assignee: "ann".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::FailedPrecondition);
    assert!(full.message().contains("at capacity"), "{}", full.message());
    office
        .cases
        .resolve_case(office.request(
            Role::Agent,
            proto::ResolveCaseRequest {
                case_id: first.clone(),
                request_id: "resolve-1".into(),
                resolution: "replaced the driver".into(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        assign_next(&mut office, &fourth, "assign-4b")
            .await
            .unwrap(),
        "ann"
    );
    let board = routing
        .list_agents(office.request(Role::Manager, proto::ListAgentsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .agents;
    assert_eq!(
        board
            .iter()
            .map(|a| (a.agent.as_str(), a.open_cases, a.available))
            .collect::<Vec<_>>(),
        [("ann", 1, true), ("bob", 2, true), ("cat", 0, true)]
    );

    // Off shift: with ann full and bob off, nobody takes the next case. An agent sets their
    // own availability only, and needs a profile for it.
    routing
        .set_agent_availability(office.request(
            Role::Manager,
            proto::SetAgentAvailabilityRequest {
                request_id: "bob-off".into(),
                agent: "bob".into(),
                available: false,
            },
        ))
        .await
        .unwrap();
    office
        .cases
        .resolve_case(office.request(
            Role::Agent,
            proto::ResolveCaseRequest {
                case_id: second.clone(),
                request_id: "resolve-2".into(),
                resolution: "reset the dimmer".into(),
            },
        ))
        .await
        .unwrap();
    let fifth = hotel_complaint(&mut office, &hotel.customer_id, 5).await;
    let off = assign_next(&mut office, &fifth, "assign-5")
        .await
        .unwrap_err();
    assert_eq!(
        off.code(),
        Code::FailedPrecondition,
        "bob has room but is off"
    );
    let unenrolled = routing
        .set_agent_availability(office.request(
            Role::Agent,
            proto::SetAgentAvailabilityRequest {
                request_id: "self-on".into(),
                agent: String::new(),
                available: true,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unenrolled.code(), Code::FailedPrecondition);
    assert!(
        unenrolled.message().contains("agent-1"),
        "{}",
        unenrolled.message()
    );
    let other = routing
        .set_agent_availability(office.request(
            Role::Agent,
            proto::SetAgentAvailabilityRequest {
                agent: "bob".into(),
                available: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);

    // A case no queue takes (a consumer's repair when only a hotel queue and a general one
    // exist goes to general; with no general, nowhere).
    routing
        .define_queue(office.request(
            Role::Manager,
            proto::DefineQueueRequest {
                request_id: "queue-general-narrowed".into(),
                queue: "general".into(),
                categories: vec![types::CaseCategory::Consultation as i32],
                segments: vec![],
                rank: 9,
            },
        ))
        .await
        .unwrap();
    let repair = office
        .open(
            "+8613800077777",
            types::CaseCategory::Repair,
            "kettle broken",
        )
        .await;
    let nowhere = office
        .cases
        .triage_case(office.request(
            Role::Agent,
            proto::TriageCaseRequest {
                case_id: repair.case_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(nowhere.code(), Code::FailedPrecondition);
    assert!(
        nowhere
            .message()
            .contains("no queue takes repair cases of consumer customers"),
        "{}",
        nowhere.message()
    );

    // Bad input names every bad field.
    let bad = routing
        .set_agent_profile(office.request(
            Role::Manager,
            proto::SetAgentProfileRequest {
                agent: "two words".into(),
                skills: vec![42],
                segments: vec![99],
                capacity: 0,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&bad), ["agent", "skills", "segments", "capacity"]);
    office.served.stop().await;
}
