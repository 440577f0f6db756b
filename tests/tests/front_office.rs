//! The front office's day, over gRPC against the four offices as processes on PostgreSQL
//! and the broker: a consumer's hotline repair, and a hotel's complaint about a project with
//! three stakeholders, from intake through a bot hand-off, a public-opinion risk flag,
//! escalation and reassignment; and a repair that goes back to the factory. The journeys
//! share one cluster.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use svcops_kit::auth::Role;
use svcops_proto::common::v1 as common;
use svcops_proto::frontoffice::v1 as front;
use svcops_proto::frontoffice::v1::case_service_client::CaseServiceClient;
use svcops_proto::frontoffice::v1::contact_service_client::ContactServiceClient;
use svcops_proto::frontoffice::v1::customer_service_client::CustomerServiceClient;
use svcops_proto::middleoffice::v1 as middle;
use svcops_proto::middleoffice::v1::work_order_service_client::WorkOrderServiceClient;
use tests::{Cluster, eventually};
use tonic::transport::Channel;

const FLOW_TIMEOUT: Duration = Duration::from_secs(60);

struct Front<'c> {
    cluster: &'c Cluster,
    cases: CaseServiceClient<Channel>,
    contacts: ContactServiceClient<Channel>,
    customers: CustomerServiceClient<Channel>,
    work_orders: WorkOrderServiceClient<Channel>,
}

impl Front<'_> {
    async fn say(
        &mut self,
        role: Role,
        contact_id: &str,
        speaker: front::Speaker,
        text: &str,
        at_ms: u32,
    ) {
        self.contacts
            .append_utterance(self.cluster.request(
                role,
                front::AppendUtteranceRequest {
                    request_id: format!("{contact_id}/{at_ms}"),
                    contact_id: contact_id.into(),
                    speaker: speaker.into(),
                    text: text.into(),
                    start_ms: at_ms,
                    end_ms: at_ms + 2_000,
                },
            ))
            .await
            .unwrap();
    }

    async fn case(&mut self, role: Role, case_id: &str) -> front::GetCaseResponse {
        self.cases
            .get_case(self.cluster.request(
                role,
                front::GetCaseRequest {
                    case_id: case_id.into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }
}

async fn a_consumer_s_hotline_repair(front: &mut Front<'_>) {
    let cluster = front.cluster;
    // The call comes in: the phone is new, so intake makes the consumer.
    let case = front
        .cases
        .open_case(cluster.request(
            Role::Agent,
            front::OpenCaseRequest {
                request_id: "b2c-hotline-1".into(),
                customer_phone: "+86 139 1111 2222".into(),
                category: common::CaseCategory::Repair.into(),
                channel: front::Channel::Hotline.into(),
                summary: "washing machine stops mid-cycle with error E21".into(),
                product: "WM-8".into(),
                serial_number: "WM8-000917".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(case.segment, front::CustomerSegment::Consumer as i32);
    let customer = front
        .customers
        .get_customer(cluster.request(
            Role::Agent,
            front::GetCustomerRequest {
                customer_id: case.customer_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(customer.phones, ["+8613911112222"]);

    // The conversation, as telephony transcribes it.
    let contact = front
        .contacts
        .start_contact(cluster.request(
            Role::Service,
            front::StartContactRequest {
                request_id: "b2c-call-1".into(),
                case_id: case.case_id.clone(),
                channel: front::Channel::Hotline.into(),
                with_bot: false,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    let id = contact.contact_id.clone();
    front
        .say(
            Role::Service,
            &id,
            front::Speaker::Customer,
            "It stops with E21 every time.",
            0,
        )
        .await;
    front
        .say(
            Role::Service,
            &id,
            front::Speaker::Agent,
            "A technician will come; which day suits you?",
            2_500,
        )
        .await;
    front
        .contacts
        .end_contact(cluster.request(
            Role::Service,
            front::EndContactRequest {
                request_id: "b2c-call-1-end".into(),
                contact_id: id.clone(),
            },
        ))
        .await
        .unwrap();

    // Through its lifecycle while the middle office takes the repair.
    let case_id = case.case_id.clone();
    front
        .cases
        .triage_case(cluster.request(
            Role::Agent,
            front::TriageCaseRequest {
                case_id: case_id.clone(),
                request_id: "b2c-triage".into(),
                queue: "repair".into(),
                priority: common::Priority::High.into(),
            },
        ))
        .await
        .unwrap();
    front
        .cases
        .assign_case(cluster.request(
            Role::Agent,
            front::AssignCaseRequest {
                case_id: case_id.clone(),
                request_id: "b2c-assign".into(),
                assignee: "agent-7".into(),
            },
        ))
        .await
        .unwrap();
    front
        .cases
        .set_case_waiting(cluster.request(
            Role::Agent,
            front::SetCaseWaitingRequest {
                case_id: case_id.clone(),
                request_id: "b2c-wait".into(),
                waiting_on: front::WaitingOn::MiddleOffice.into(),
                reason: "technician visit booked".into(),
            },
        ))
        .await
        .unwrap();
    let work_orders = front.work_orders.clone();
    eventually("the middle office's work order", FLOW_TIMEOUT, || {
        let mut work_orders = work_orders.clone();
        let request = cluster.request(
            Role::Technician,
            middle::ListWorkOrdersRequest {
                case_id: case_id.clone(),
                page_size: 10,
                page_token: String::new(),
            },
        );
        async move {
            let listed = work_orders
                .list_work_orders(request)
                .await
                .ok()?
                .into_inner();
            (listed.work_orders.len() == 1).then_some(())
        }
    })
    .await;
    // The visit: agreed, dispatched (to the wrong technician first), en route, on site
    // late, done; self-service follows each step.
    let work_order_id = {
        let mut work_orders = front.work_orders.clone();
        work_orders
            .list_work_orders(cluster.request(
                Role::Agent,
                middle::ListWorkOrdersRequest {
                    case_id: case_id.clone(),
                    page_size: 1,
                    page_token: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .work_orders[0]
            .work_order_id
            .clone()
    };
    let now = svcops_kit::events::now_micros();
    let window = (
        now - time::Duration::hours(3),
        now - time::Duration::hours(1),
    );
    front
        .work_orders
        .schedule_visit(cluster.request(
            Role::Agent,
            middle::ScheduleVisitRequest {
                work_order_id: work_order_id.clone(),
                request_id: "visit-window".into(),
                window_start: Some(svcops_kit::events::to_timestamp(window.0)),
                window_end: Some(svcops_kit::events::to_timestamp(window.1)),
            },
        ))
        .await
        .unwrap();
    let not_theirs_to_dispatch = front
        .work_orders
        .dispatch_technician(cluster.request(
            Role::Agent,
            middle::DispatchTechnicianRequest {
                work_order_id: work_order_id.clone(),
                request_id: "dispatch-by-agent".into(),
                technician: "test-technician".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(not_theirs_to_dispatch.code(), tonic::Code::PermissionDenied);
    for (request_id, technician) in [
        ("dispatch-1", "other-technician"),
        ("dispatch-2", "test-technician"),
    ] {
        front
            .work_orders
            .dispatch_technician(cluster.request(
                Role::Manager,
                middle::DispatchTechnicianRequest {
                    work_order_id: work_order_id.clone(),
                    request_id: request_id.into(),
                    technician: technician.into(),
                },
            ))
            .await
            .unwrap();
        if technician == "other-technician" {
            let not_theirs = front
                .work_orders
                .report_en_route(cluster.request(
                    Role::Technician,
                    middle::ReportEnRouteRequest {
                        work_order_id: work_order_id.clone(),
                        request_id: "en-route-too-soon".into(),
                        eta: Some(svcops_kit::events::to_timestamp(now)),
                    },
                ))
                .await
                .unwrap_err();
            assert_eq!(not_theirs.code(), tonic::Code::PermissionDenied);
        }
    }
    let eta = now + time::Duration::minutes(20);
    front
        .work_orders
        .report_en_route(cluster.request(
            Role::Technician,
            middle::ReportEnRouteRequest {
                work_order_id: work_order_id.clone(),
                request_id: "en-route".into(),
                eta: Some(svcops_kit::events::to_timestamp(eta)),
            },
        ))
        .await
        .unwrap();
    let progress = |front: &Front<'_>| {
        let mut cases = front.cases.clone();
        let request = cluster.request(
            Role::Service,
            front::GetCaseProgressRequest {
                case_id: case_id.clone(),
                customer_phone: "+8613911112222".into(),
            },
        );
        async move { cases.get_case_progress(request).await.unwrap().into_inner() }
    };
    let en_route = eventually(
        "self-service sees the technician en route",
        FLOW_TIMEOUT,
        || {
            let progress = progress(front);
            async move {
                let answer = progress.await;
                let visit = answer.visits.first()?;
                (visit.stage == front::VisitStage::TechnicianEnRoute as i32).then(|| visit.clone())
            }
        },
    )
    .await;
    assert_eq!(en_route.eta, Some(svcops_kit::events::to_timestamp(eta)));
    assert!(en_route.technician_assigned);
    assert_eq!(
        en_route.window_start,
        Some(svcops_kit::events::to_timestamp(window.0))
    );
    let someone_else = front
        .cases
        .get_case_progress(cluster.request(
            Role::Service,
            front::GetCaseProgressRequest {
                case_id: case_id.clone(),
                customer_phone: "+8613900000000".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        someone_else.code(),
        tonic::Code::NotFound,
        "only their own cases"
    );
    let arrived = front
        .work_orders
        .record_arrival(cluster.request(
            Role::Technician,
            middle::RecordArrivalRequest {
                work_order_id: work_order_id.clone(),
                request_id: "arrived".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .work_order
        .unwrap();
    assert_eq!(arrived.punctuality, middle::Punctuality::Late as i32);
    assert!(arrived.punctuality_minutes >= 59, "{arrived:?}");
    // Parts at the standard price (the first hose segment free); a technician's price off
    // the standard is refused, a manager's is recorded as a deviation.
    let charged = front
        .work_orders
        .charge_work_order(cluster.request(
            Role::Technician,
            middle::ChargeWorkOrderRequest {
                work_order_id: work_order_id.clone(),
                request_id: "charge-1".into(),
                lines: vec![
                    middle::ChargeRequestLine {
                        item_code: "HOSE-1M".into(),
                        quantity: 2,
                        unit_price_cents: 0,
                    },
                    middle::ChargeRequestLine {
                        item_code: "DRAIN-PUMP".into(),
                        quantity: 1,
                        unit_price_cents: 0,
                    },
                ],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .work_order
        .unwrap();
    assert_eq!(charged.charged_total_cents, 2_500 + 18_000);
    let off_standard = middle::ChargeRequestLine {
        item_code: "VISIT".into(),
        quantity: 1,
        unit_price_cents: 2_000,
    };
    let refused = front
        .work_orders
        .charge_work_order(cluster.request(
            Role::Technician,
            middle::ChargeWorkOrderRequest {
                work_order_id: work_order_id.clone(),
                request_id: "charge-2".into(),
                lines: vec![off_standard.clone()],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    let approved = front
        .work_orders
        .charge_work_order(cluster.request(
            Role::Manager,
            middle::ChargeWorkOrderRequest {
                work_order_id: work_order_id.clone(),
                request_id: "charge-3".into(),
                lines: vec![off_standard],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .work_order
        .unwrap();
    let deviation = approved.charges.last().unwrap();
    assert_eq!(
        (deviation.amount_cents, deviation.standard_amount_cents),
        (2_000, Some(5_000))
    );
    front
        .work_orders
        .complete_work_order(cluster.request(
            Role::Technician,
            middle::CompleteWorkOrderRequest {
                work_order_id: work_order_id.clone(),
                request_id: "done".into(),
                outcome: middle::VisitOutcome::FixedOnSite.into(),
                note: "drain pump replaced".into(),
            },
        ))
        .await
        .unwrap();
    let done = eventually("self-service sees the visit done", FLOW_TIMEOUT, || {
        let progress = progress(front);
        async move {
            let answer = progress.await;
            let visit = answer.visits.first()?;
            (visit.stage == front::VisitStage::Done as i32).then(|| visit.clone())
        }
    })
    .await;
    assert_eq!(done.outcome, "fixed on site");
    assert!(done.arrived_at.is_some());
    let no_phone = front
        .cases
        .get_case_progress(cluster.request(
            Role::Service,
            front::GetCaseProgressRequest {
                case_id: case_id.clone(),
                customer_phone: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(no_phone.code(), tonic::Code::InvalidArgument);
    // The middle office's list follows the visit too.
    let listed = eventually(
        "the work-order list shows the visit done",
        FLOW_TIMEOUT,
        || {
            let mut work_orders = front.work_orders.clone();
            let request = cluster.request(
                Role::Manager,
                middle::ListWorkOrdersRequest {
                    case_id: case_id.clone(),
                    page_size: 1,
                    page_token: String::new(),
                },
            );
            async move {
                let order = work_orders
                    .list_work_orders(request)
                    .await
                    .ok()?
                    .into_inner()
                    .work_orders
                    .pop()?;
                (order.state == middle::WorkOrderState::Completed as i32).then_some(order)
            }
        },
    )
    .await;
    assert_eq!(listed.technician, "test-technician");
    assert!(listed.window_start.is_some());

    front
        .cases
        .resume_case(cluster.request(
            Role::Agent,
            front::ResumeCaseRequest {
                case_id: case_id.clone(),
                request_id: "b2c-resume".into(),
            },
        ))
        .await
        .unwrap();
    front
        .cases
        .resolve_case(cluster.request(
            Role::Agent,
            front::ResolveCaseRequest {
                case_id: case_id.clone(),
                request_id: "b2c-resolve".into(),
                resolution: "drain pump replaced".into(),
            },
        ))
        .await
        .unwrap();
    // The customer confirmed: the back office's callback closes it.
    front
        .cases
        .close_case(cluster.request(
            Role::Service,
            front::CloseCaseRequest {
                case_id: case_id.clone(),
                request_id: "b2c-close".into(),
            },
        ))
        .await
        .unwrap();
    let done = front.case(Role::Agent, &case_id).await;
    let closed = done.case.unwrap();
    assert_eq!(closed.state, front::CaseState::Closed as i32);
    assert_eq!(closed.resolution, "drain pump replaced");
    assert_eq!(closed.assignee, "agent-7");
    assert_eq!(done.contacts.len(), 1);
    assert_eq!(done.contacts[0].transcript.len(), 2);
    assert_eq!(done.contacts[0].state, front::ContactState::Ended as i32);

    // Their cases, by customer.
    let theirs = front
        .cases
        .list_cases(cluster.request(
            Role::Agent,
            front::ListCasesRequest {
                customer_id: case.customer_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .cases;
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].case_id, case_id);
}

async fn a_hotel_s_complaint_about_a_project(front: &mut Front<'_>) {
    let cluster = front.cluster;
    let hotel = front
        .customers
        .register_customer(cluster.request(
            Role::Agent,
            front::RegisterCustomerRequest {
                request_id: "b2b-hotel".into(),
                segment: front::CustomerSegment::Hotel.into(),
                name: "Jade Garden Hotel".into(),
                phones: vec!["+86 571 8800 0000".into()],
                emails: vec!["engineering@jadegarden.example".into()],
                account_number: "HZ-0042".into(),
                address: "9 Lakeside Road, Hangzhou".into(),
                tags: vec!["key-account".into()],
                recording_consent: front::RecordingConsent::Given.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    let project_id = front
        .customers
        .add_project(cluster.request(
            Role::Agent,
            front::AddProjectRequest {
                customer_id: hotel.customer_id.clone(),
                request_id: "b2b-project".into(),
                name: "Banquet hall lighting".into(),
                site: "Banquet hall, 2nd floor".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .project_id;
    for (role, name, phone) in [
        (front::StakeholderRole::Owner, "Zhou Min", "+8613800010001"),
        (
            front::StakeholderRole::Contractor,
            "Hu Gang",
            "+8613800010002",
        ),
        (
            front::StakeholderRole::PropertyManager,
            "Xu Li",
            "+8613800010003",
        ),
    ] {
        front
            .customers
            .add_stakeholder(cluster.request(
                Role::Agent,
                front::AddStakeholderRequest {
                    customer_id: hotel.customer_id.clone(),
                    request_id: format!("b2b-{name}"),
                    project_id: project_id.clone(),
                    role: role.into(),
                    name: name.into(),
                    phone: phone.into(),
                    email: String::new(),
                },
            ))
            .await
            .unwrap();
    }

    // The property manager writes in on chat; the case is the hotel's, about the project.
    let case = front
        .cases
        .open_case(cluster.request(
            Role::Service,
            front::OpenCaseRequest {
                request_id: "b2b-chat-case".into(),
                customer_phone: "+8613800010003".into(),
                category: common::CaseCategory::Complaint.into(),
                channel: front::Channel::Chat.into(),
                summary: "banquet hall downlights flicker during events".into(),
                customer_id: hotel.customer_id.clone(),
                project_id: project_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(case.segment, front::CustomerSegment::Hotel as i32);
    assert_eq!(case.project_id, project_id);
    let case_id = case.case_id.clone();

    // The bot answers first, hears a threat to go to the press, and hands over.
    let contact = front
        .contacts
        .start_contact(cluster.request(
            Role::Service,
            front::StartContactRequest {
                request_id: "b2b-chat".into(),
                case_id: case_id.clone(),
                channel: front::Channel::Chat.into(),
                with_bot: true,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert!(
        contact
            .known_fields
            .contains(&(front::CustomerField::AccountNumber as i32)),
        "the account is on file: {:?}",
        contact.known_fields
    );
    let id = contact.contact_id.clone();
    front
        .say(
            Role::Service,
            &id,
            front::Speaker::Bot,
            "Hello, how can I help?",
            0,
        )
        .await;
    front
        .say(
            Role::Service,
            &id,
            front::Speaker::Customer,
            "Third time this month. If it fails at Saturday's wedding I will post it on 微博 and expose you.",
            3_000,
        )
        .await;
    front
        .contacts
        .hand_off_contact(cluster.request(
            Role::Service,
            front::HandOffContactRequest {
                request_id: "b2b-hand-off".into(),
                contact_id: id.clone(),
                queue: "complaints-b2b".into(),
                reason: "angry key account".into(),
            },
        ))
        .await
        .unwrap();
    front
        .say(
            Role::Agent,
            &id,
            front::Speaker::Agent,
            "I am sorry. I am sending an engineer today.",
            9_000,
        )
        .await;

    // Escalated, assigned, then reassigned to the key-account lead.
    front
        .cases
        .escalate_case(cluster.request(
            Role::Agent,
            front::EscalateCaseRequest {
                case_id: case_id.clone(),
                request_id: "b2b-escalate".into(),
                level: 2,
                reason: "repeated failure at a key account".into(),
            },
        ))
        .await
        .unwrap();
    for (request_id, assignee) in [("b2b-assign", "agent-3"), ("b2b-reassign", "agent-lead")] {
        front
            .cases
            .assign_case(cluster.request(
                Role::Manager,
                front::AssignCaseRequest {
                    case_id: case_id.clone(),
                    request_id: request_id.into(),
                    assignee: assignee.into(),
                },
            ))
            .await
            .unwrap();
    }

    let seen = front.case(Role::Agent, &case_id).await;
    let now = seen.case.unwrap();
    assert_eq!(now.escalation_level, 2);
    assert_eq!(now.assignee, "agent-lead");
    let risk = now.risk.expect("the customer's words flag the case");
    assert_eq!(risk.trigger, front::RiskTrigger::Keyword as i32);
    assert_eq!(now.priority, common::Priority::Urgent as i32);
    let transcript = &seen.contacts[0].transcript;
    assert_eq!(
        transcript
            .iter()
            .map(|utterance| utterance.speaker)
            .collect::<Vec<_>>(),
        [
            front::Speaker::Bot as i32,
            front::Speaker::Customer as i32,
            front::Speaker::Agent as i32,
        ]
    );
    assert_eq!(seen.contacts[0].handed_off_to, "complaints-b2b");

    // The manager's board: the hotel segment's cases at risk; phones masked for them.
    let board = front
        .cases
        .list_cases(cluster.request(
            Role::Manager,
            front::ListCasesRequest {
                segment: front::CustomerSegment::Hotel.into(),
                at_risk: Some(true),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .cases;
    assert_eq!(board.len(), 1);
    assert_eq!(board[0].case_id, case_id);
    assert_eq!(board[0].customer_phone, "+86*******0003");
    let stakeholders = front
        .customers
        .get_customer(cluster.request(
            Role::Executive,
            front::GetCustomerRequest {
                customer_id: hotel.customer_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
        .projects[0]
        .stakeholders
        .clone();
    assert_eq!(stakeholders.len(), 3);
    assert!(
        stakeholders.iter().all(|s| s.phone.contains('*')),
        "executives see stakeholders' phones masked: {stakeholders:?}"
    );
}

/// A repair the visit cannot finish: the product goes to the factory and back.
async fn a_return_to_the_factory(front: &mut Front<'_>) {
    let cluster = front.cluster;
    let case = front
        .cases
        .open_case(cluster.request(
            Role::Agent,
            front::OpenCaseRequest {
                request_id: "rma-case".into(),
                customer_phone: "+8613922223333".into(),
                category: common::CaseCategory::Repair.into(),
                summary: "dryer drum does not turn".into(),
                product: "DR-3".into(),
                serial_number: "DR3-0042".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    let work_orders = front.work_orders.clone();
    let case_id = case.case_id.clone();
    let work_order_id = eventually("the work order", FLOW_TIMEOUT, || {
        let mut work_orders = work_orders.clone();
        let request = cluster.request(
            Role::Manager,
            middle::ListWorkOrdersRequest {
                case_id: case_id.clone(),
                page_size: 1,
                page_token: String::new(),
            },
        );
        async move {
            Some(
                work_orders
                    .list_work_orders(request)
                    .await
                    .ok()?
                    .into_inner()
                    .work_orders
                    .pop()?
                    .work_order_id,
            )
        }
    })
    .await;
    let now = svcops_kit::events::now_micros();
    let orders = &mut front.work_orders;
    orders
        .schedule_visit(cluster.request(
            Role::Agent,
            middle::ScheduleVisitRequest {
                work_order_id: work_order_id.clone(),
                request_id: "rma-window".into(),
                window_start: Some(svcops_kit::events::to_timestamp(now)),
                window_end: Some(svcops_kit::events::to_timestamp(
                    now + time::Duration::hours(2),
                )),
            },
        ))
        .await
        .unwrap();
    orders
        .dispatch_technician(cluster.request(
            Role::Manager,
            middle::DispatchTechnicianRequest {
                work_order_id: work_order_id.clone(),
                request_id: "rma-dispatch".into(),
                technician: "test-technician".into(),
            },
        ))
        .await
        .unwrap();
    orders
        .record_arrival(cluster.request(
            Role::Technician,
            middle::RecordArrivalRequest {
                work_order_id: work_order_id.clone(),
                request_id: "rma-arrived".into(),
            },
        ))
        .await
        .unwrap();
    let early = orders
        .authorize_return(cluster.request(
            Role::Manager,
            middle::AuthorizeReturnRequest {
                work_order_id: work_order_id.clone(),
                request_id: "rma-too-soon".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        early.code(),
        tonic::Code::FailedPrecondition,
        "no outcome yet"
    );
    orders
        .complete_work_order(cluster.request(
            Role::Technician,
            middle::CompleteWorkOrderRequest {
                work_order_id: work_order_id.clone(),
                request_id: "rma-done".into(),
                outcome: middle::VisitOutcome::NeedsFactoryRepair.into(),
                note: "drum motor seized".into(),
            },
        ))
        .await
        .unwrap();
    let rma = orders
        .authorize_return(cluster.request(
            Role::Manager,
            middle::AuthorizeReturnRequest {
                work_order_id: work_order_id.clone(),
                request_id: "rma".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .rma
        .unwrap();
    let step =
        |step: middle::ReturnStep, tracking: &str, note: &str| middle::AdvanceReturnRequest {
            rma_id: rma.rma_id.clone(),
            request_id: format!("rma-{step:?}"),
            step: step.into(),
            tracking_number: tracking.into(),
            note: note.into(),
        };
    let out_of_order = orders
        .advance_return(cluster.request(Role::Manager, step(middle::ReturnStep::Delivered, "", "")))
        .await
        .unwrap_err();
    assert_eq!(out_of_order.code(), tonic::Code::FailedPrecondition);
    orders
        .advance_return(cluster.request(
            Role::Agent,
            step(middle::ReturnStep::ShippedByCustomer, "SF1234567890", ""),
        ))
        .await
        .unwrap();
    let not_the_factory = orders
        .advance_return(cluster.request(
            Role::Agent,
            step(middle::ReturnStep::ReceivedAtFactory, "", ""),
        ))
        .await
        .unwrap_err();
    assert_eq!(not_the_factory.code(), tonic::Code::PermissionDenied);
    for (next, tracking, note) in [
        (middle::ReturnStep::ReceivedAtFactory, "", ""),
        (middle::ReturnStep::Repaired, "", "new drum motor"),
        (middle::ReturnStep::ShippedBack, "SF0987654321", ""),
    ] {
        orders
            .advance_return(cluster.request(Role::Manager, step(next, tracking, note)))
            .await
            .unwrap();
    }
    let delivered = orders
        .advance_return(cluster.request(Role::Service, step(middle::ReturnStep::Delivered, "", "")))
        .await
        .unwrap()
        .into_inner()
        .rma
        .unwrap();
    assert_eq!(delivered.state, middle::ReturnState::Delivered as i32);
    assert_eq!(
        (
            delivered.inbound_tracking.as_str(),
            delivered.outbound_tracking.as_str(),
            delivered.factory_note.as_str()
        ),
        ("SF1234567890", "SF0987654321", "new drum motor")
    );
    assert_eq!(
        delivered.case_id, case.case_id,
        "the case follows its return"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_s_repair_and_a_hotel_s_complaint_through_the_front_office() {
    let mut cluster = Cluster::start().await;
    let channel = cluster.service("front-office").channel().await;
    let work_orders = WorkOrderServiceClient::new(cluster.service("middle-office").channel().await);
    let mut front = Front {
        cluster: &cluster,
        cases: CaseServiceClient::new(channel.clone()),
        contacts: ContactServiceClient::new(channel.clone()),
        customers: CustomerServiceClient::new(channel),
        work_orders,
    };
    a_consumer_s_hotline_repair(&mut front).await;
    a_hotel_s_complaint_about_a_project(&mut front).await;
    a_return_to_the_factory(&mut front).await;
}
