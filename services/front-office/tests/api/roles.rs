//! Who may call what: every RPC of the front office, with every role and with no token,
//! against the one table below. An allowed call may still fail (the requests are empty),
//! but never as PERMISSION_DENIED or UNAUTHENTICATED; a denied one always fails so, before
//! anything is read or written.

use svcops_kit::auth::Role;
use svcops_proto::frontoffice::v1 as proto;
use tonic::Code;

use crate::common::FrontOffice;

use Role::{Admin, Agent, Executive, Manager, Qa, Service, Technician};

/// Every RPC and the roles allowed to call it (admins may call everything).
const TABLE: &[(&str, &[Role])] = &[
    ("OpenCase", &[Agent, Service, Manager, Admin]),
    (
        "GetCase",
        &[Agent, Service, Manager, Qa, Executive, Technician, Admin],
    ),
    (
        "ListCases",
        &[Agent, Service, Manager, Qa, Executive, Admin],
    ),
    ("GetCaseProgress", &[Service, Agent, Manager, Admin]),
    ("TriageCase", &[Agent, Manager, Admin]),
    ("AssignCase", &[Agent, Manager, Admin]),
    ("SetCaseWaiting", &[Agent, Manager, Admin]),
    ("ResumeCase", &[Agent, Manager, Admin]),
    ("ResolveCase", &[Agent, Manager, Admin]),
    ("CloseCase", &[Agent, Manager, Service, Admin]),
    ("ReopenCase", &[Agent, Manager, Service, Admin]),
    ("EscalateCase", &[Agent, Manager, Admin]),
    ("FlagCaseRisk", &[Agent, Manager, Admin]),
    ("ClearCaseRisk", &[Manager, Admin]),
    ("EraseCustomerData", &[Manager, Admin]),
    ("ListProjections", &[Admin]),
    ("RebuildProjection", &[Admin]),
    ("StartContact", &[Service, Agent, Admin]),
    ("AppendUtterance", &[Service, Agent, Admin]),
    ("HandOffContact", &[Service, Agent, Admin]),
    ("EndContact", &[Service, Agent, Admin]),
    (
        "GetContact",
        &[Service, Agent, Manager, Qa, Executive, Admin],
    ),
    ("RegisterCustomer", &[Agent, Manager, Service, Admin]),
    ("IdentifyCustomer", &[Agent, Manager, Service, Admin]),
    (
        "FindCustomer",
        &[Agent, Technician, Service, Manager, Qa, Executive, Admin],
    ),
    (
        "GetCustomer",
        &[Agent, Technician, Service, Manager, Qa, Executive, Admin],
    ),
    (
        "ListCustomers",
        &[Agent, Technician, Service, Manager, Qa, Executive, Admin],
    ),
    ("AddCustomerContact", &[Agent, Manager, Service, Admin]),
    ("UpdateCustomer", &[Agent, Manager, Service, Admin]),
    ("TagCustomer", &[Agent, Manager, Service, Admin]),
    ("UntagCustomer", &[Agent, Manager, Service, Admin]),
    ("RecordConsent", &[Agent, Manager, Service, Admin]),
    ("AddProject", &[Agent, Manager, Service, Admin]),
    ("AddStakeholder", &[Agent, Manager, Service, Admin]),
    ("MergeCustomers", &[Agent, Manager, Admin]),
    ("SetAgentProfile", &[Manager, Admin]),
    ("SetAgentAvailability", &[Agent, Manager, Admin]),
    ("DefineQueue", &[Manager, Admin]),
    (
        "ListAgents",
        &[Agent, Manager, Qa, Executive, Service, Admin],
    ),
    (
        "ListQueues",
        &[Agent, Manager, Qa, Executive, Service, Admin],
    ),
];

/// Calls `rpc` with an empty request as `role` (`None`: without a token); the outcome.
async fn call(office: &FrontOffice, rpc: &str, role: Option<Role>) -> Code {
    fn request<T>(office: &FrontOffice, role: Option<Role>, message: T) -> tonic::Request<T> {
        match role {
            Some(role) => office.request(role, message),
            None => tonic::Request::new(message),
        }
    }
    let mut cases = office.cases.clone();
    let mut contacts = office.served.contacts().await;
    let mut customers = office.served.customers().await;
    let mut routing = office.served.routing().await;
    macro_rules! outcome {
        ($client:ident . $method:ident ( $message:expr )) => {
            match $client.$method(request(office, role, $message)).await {
                Ok(_) => Code::Ok,
                Err(status) => status.code(),
            }
        };
    }
    match rpc {
        "OpenCase" => outcome!(cases.open_case(proto::OpenCaseRequest::default())),
        "GetCase" => outcome!(cases.get_case(proto::GetCaseRequest::default())),
        "ListCases" => outcome!(cases.list_cases(proto::ListCasesRequest::default())),
        "GetCaseProgress" => {
            outcome!(cases.get_case_progress(proto::GetCaseProgressRequest::default()))
        }
        "TriageCase" => outcome!(cases.triage_case(proto::TriageCaseRequest::default())),
        "AssignCase" => outcome!(cases.assign_case(proto::AssignCaseRequest::default())),
        "SetCaseWaiting" => {
            outcome!(cases.set_case_waiting(proto::SetCaseWaitingRequest::default()))
        }
        "ResumeCase" => outcome!(cases.resume_case(proto::ResumeCaseRequest::default())),
        "ResolveCase" => outcome!(cases.resolve_case(proto::ResolveCaseRequest::default())),
        "CloseCase" => outcome!(cases.close_case(proto::CloseCaseRequest::default())),
        "ReopenCase" => outcome!(cases.reopen_case(proto::ReopenCaseRequest::default())),
        "EscalateCase" => outcome!(cases.escalate_case(proto::EscalateCaseRequest::default())),
        "FlagCaseRisk" => outcome!(cases.flag_case_risk(proto::FlagCaseRiskRequest::default())),
        "ClearCaseRisk" => {
            outcome!(cases.clear_case_risk(proto::ClearCaseRiskRequest::default()))
        }
        "EraseCustomerData" => {
            outcome!(cases.erase_customer_data(proto::EraseCustomerDataRequest::default()))
        }
        "ListProjections" => {
            outcome!(cases.list_projections(proto::ListProjectionsRequest::default()))
        }
        "RebuildProjection" => {
            outcome!(cases.rebuild_projection(proto::RebuildProjectionRequest::default()))
        }
        "StartContact" => outcome!(contacts.start_contact(proto::StartContactRequest::default())),
        "AppendUtterance" => {
            outcome!(contacts.append_utterance(proto::AppendUtteranceRequest::default()))
        }
        "HandOffContact" => {
            outcome!(contacts.hand_off_contact(proto::HandOffContactRequest::default()))
        }
        "EndContact" => outcome!(contacts.end_contact(proto::EndContactRequest::default())),
        "GetContact" => outcome!(contacts.get_contact(proto::GetContactRequest::default())),
        "RegisterCustomer" => {
            outcome!(customers.register_customer(proto::RegisterCustomerRequest::default()))
        }
        "IdentifyCustomer" => {
            outcome!(customers.identify_customer(proto::IdentifyCustomerRequest::default()))
        }
        "FindCustomer" => outcome!(customers.find_customer(proto::FindCustomerRequest::default())),
        "GetCustomer" => outcome!(customers.get_customer(proto::GetCustomerRequest::default())),
        "ListCustomers" => {
            outcome!(customers.list_customers(proto::ListCustomersRequest::default()))
        }
        "AddCustomerContact" => {
            outcome!(customers.add_customer_contact(proto::AddCustomerContactRequest::default()))
        }
        "UpdateCustomer" => {
            outcome!(customers.update_customer(proto::UpdateCustomerRequest::default()))
        }
        "TagCustomer" => outcome!(customers.tag_customer(proto::TagCustomerRequest::default())),
        "UntagCustomer" => {
            outcome!(customers.untag_customer(proto::UntagCustomerRequest::default()))
        }
        "RecordConsent" => {
            outcome!(customers.record_consent(proto::RecordConsentRequest::default()))
        }
        "AddProject" => outcome!(customers.add_project(proto::AddProjectRequest::default())),
        "AddStakeholder" => {
            outcome!(customers.add_stakeholder(proto::AddStakeholderRequest::default()))
        }
        "MergeCustomers" => {
            outcome!(customers.merge_customers(proto::MergeCustomersRequest::default()))
        }
        "SetAgentProfile" => {
            outcome!(routing.set_agent_profile(proto::SetAgentProfileRequest::default()))
        }
        "SetAgentAvailability" => {
            outcome!(routing.set_agent_availability(proto::SetAgentAvailabilityRequest::default()))
        }
        "DefineQueue" => outcome!(routing.define_queue(proto::DefineQueueRequest::default())),
        "ListAgents" => outcome!(routing.list_agents(proto::ListAgentsRequest::default())),
        "ListQueues" => outcome!(routing.list_queues(proto::ListQueuesRequest::default())),
        other => panic!("no call for {other}: add it here and to TABLE"),
    }
}

#[tokio::test]
async fn every_rpc_with_every_role_is_allowed_or_denied_as_the_table_says() {
    let office = FrontOffice::start().await;
    // The table covers every RPC the services declare.
    let declared: Vec<String> = [
        svcops_proto::frontoffice::v1::case_service_server::SERVICE_NAME,
        svcops_proto::frontoffice::v1::contact_service_server::SERVICE_NAME,
        svcops_proto::frontoffice::v1::customer_service_server::SERVICE_NAME,
        svcops_proto::frontoffice::v1::routing_service_server::SERVICE_NAME,
    ]
    .iter()
    .flat_map(|service| rpcs_of(service))
    .collect();
    let mut tabled: Vec<String> = TABLE.iter().map(|(rpc, _)| (*rpc).to_owned()).collect();
    let mut declared = declared;
    declared.sort_unstable();
    tabled.sort_unstable();
    assert!(!declared.is_empty());
    assert_eq!(tabled, declared, "every RPC is in the table, once");

    let mut wrong = Vec::new();
    for (rpc, allowed) in TABLE {
        let anonymous = call(&office, rpc, None).await;
        if anonymous != Code::Unauthenticated {
            wrong.push(format!("{rpc} without a token: {anonymous:?}"));
        }
        for role in Role::ALL {
            let code = call(&office, rpc, Some(role)).await;
            let denied = matches!(code, Code::PermissionDenied | Code::Unauthenticated);
            if denied == allowed.contains(&role) {
                wrong.push(format!("{rpc} as {role}: {code:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "not as the table says:\n{}",
        wrong.join("\n")
    );
    office.served.stop().await;
}

/// The RPC names of a service (`package.Service`), from the descriptor set the servers
/// are built from.
fn rpcs_of(service: &str) -> Vec<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(svcops_proto::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .iter()
        .flat_map(|file| {
            file.service.iter().filter(move |declared| {
                format!("{}.{}", file.package(), declared.name()) == service
            })
        })
        .flat_map(|declared| {
            declared
                .method
                .iter()
                .map(|method| method.name().to_owned())
        })
        .collect()
}
