//! Customers over gRPC, as in a process of its own on a real store: a hotel account with a
//! project and its stakeholders, consumers found or made on intake, duplicates merged, one
//! phone per customer, masking by role, erasure through merges, lists by segment and tag,
//! retries and field violations.

use svcops_kit::auth::Role;
use svcops_proto::common::v1 as types;
use svcops_proto::frontoffice::v1 as proto;
use svcops_proto::frontoffice::v1::customer_service_client::CustomerServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{FrontOffice, fields};

fn phone(raw: &str) -> Option<proto::CustomerIdentity> {
    Some(proto::CustomerIdentity {
        identity: Some(proto::customer_identity::Identity::Phone(raw.into())),
    })
}

fn email(raw: &str) -> Option<proto::CustomerIdentity> {
    Some(proto::CustomerIdentity {
        identity: Some(proto::customer_identity::Identity::Email(raw.into())),
    })
}

fn account(raw: &str) -> Option<proto::CustomerIdentity> {
    Some(proto::CustomerIdentity {
        identity: Some(proto::customer_identity::Identity::AccountNumber(
            raw.into(),
        )),
    })
}

fn hotel() -> proto::RegisterCustomerRequest {
    proto::RegisterCustomerRequest {
        request_id: "register-grand-hotel".into(),
        segment: proto::CustomerSegment::Hotel.into(),
        name: "Grand Bund Hotel".into(),
        phones: vec!["+86 21 6000 1234".into()],
        emails: vec!["Facilities@GrandBund.example".into()],
        account_number: "h-2024-017".into(),
        address: "1 Zhongshan Road East, Shanghai".into(),
        tags: vec!["key-account".into(), "vip".into()],
        recording_consent: proto::RecordingConsent::Given.into(),
    }
}

async fn find(
    office: &FrontOffice,
    customers: &mut CustomerServiceClient<Channel>,
    role: Role,
    identity: Option<proto::CustomerIdentity>,
) -> Result<proto::Customer, tonic::Status> {
    Ok(customers
        .find_customer(office.request(role, proto::FindCustomerRequest { identity }))
        .await?
        .into_inner()
        .customer
        .unwrap())
}

async fn get(
    office: &FrontOffice,
    customers: &mut CustomerServiceClient<Channel>,
    role: Role,
    customer_id: &str,
) -> Result<proto::Customer, tonic::Status> {
    Ok(customers
        .get_customer(office.request(
            role,
            proto::GetCustomerRequest {
                customer_id: customer_id.into(),
            },
        ))
        .await?
        .into_inner()
        .customer
        .unwrap())
}

#[tokio::test]
async fn a_hotel_account_with_a_project_and_three_stakeholders() {
    let office = FrontOffice::start().await;
    let mut customers = office.served.customers().await;
    let registered = customers
        .register_customer(office.request(Role::Agent, hotel()))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(registered.segment, proto::CustomerSegment::Hotel as i32);
    assert_eq!(registered.name, "Grand Bund Hotel");
    assert_eq!(registered.phones, ["+862160001234"]);
    assert_eq!(registered.emails, ["facilities@grandbund.example"]);
    assert_eq!(registered.account_number, "H-2024-017");
    assert_eq!(registered.tags, ["key-account", "vip"]);
    assert_eq!(
        registered.recording_consent,
        proto::RecordingConsent::Given as i32
    );

    // A retry answers with the first result; the same id with another body is refused.
    let retried = customers
        .register_customer(office.request(Role::Agent, hotel()))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(retried.customer_id, registered.customer_id);
    let reused = customers
        .register_customer(office.request(
            Role::Agent,
            proto::RegisterCustomerRequest {
                name: "Another Hotel".into(),
                ..hotel()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument, "{reused:?}");

    // Each of its phone, email and account number finds it; none may name another customer.
    for identity in [
        phone("+86-21-6000-1234"),
        email("facilities@grandbund.example"),
        account("H-2024-017"),
    ] {
        let found = find(&office, &mut customers, Role::Agent, identity)
            .await
            .unwrap();
        assert_eq!(found.customer_id, registered.customer_id);
    }
    let taken = customers
        .register_customer(office.request(
            Role::Agent,
            proto::RegisterCustomerRequest {
                request_id: "register-copy".into(),
                segment: proto::CustomerSegment::Hotel.into(),
                emails: vec!["facilities@grandbund.example".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert!(
        taken.message().contains(&registered.customer_id),
        "names the customer holding it: {}",
        taken.message()
    );

    // A project with its owner, designer and property manager.
    let project = customers
        .add_project(office.request(
            Role::Agent,
            proto::AddProjectRequest {
                customer_id: registered.customer_id.clone(),
                request_id: "lobby-project".into(),
                name: "Lobby relighting".into(),
                site: "Lobby and ballroom".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let project_id = project.project_id.clone();
    assert!(!project_id.is_empty());
    let people = [
        (
            proto::StakeholderRole::Owner,
            "Chen Jie",
            "+8613900000001",
            "",
        ),
        (
            proto::StakeholderRole::Designer,
            "Anna Berg",
            "",
            "anna@studio.example",
        ),
        (
            proto::StakeholderRole::PropertyManager,
            "王芳",
            "+8613900000003",
            "wang.fang@grandbund.example",
        ),
    ];
    for (role, name, phone, email) in people {
        let added = customers
            .add_stakeholder(office.request(
                Role::Agent,
                proto::AddStakeholderRequest {
                    customer_id: registered.customer_id.clone(),
                    request_id: format!("stakeholder-{name}"),
                    project_id: project_id.clone(),
                    role: role.into(),
                    name: name.into(),
                    phone: phone.into(),
                    email: email.into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(!added.stakeholder_id.is_empty());
    }
    let full = get(
        &office,
        &mut customers,
        Role::Agent,
        &registered.customer_id,
    )
    .await
    .unwrap();
    assert_eq!(full.projects.len(), 1);
    let stakeholders = &full.projects[0].stakeholders;
    assert_eq!(
        stakeholders
            .iter()
            .map(|s| (s.role, s.name.as_str()))
            .collect::<Vec<_>>(),
        [
            (proto::StakeholderRole::Owner as i32, "Chen Jie"),
            (proto::StakeholderRole::Designer as i32, "Anna Berg"),
            (proto::StakeholderRole::PropertyManager as i32, "王芳"),
        ]
    );
    assert_eq!(stakeholders[2].phone, "+8613900000003");

    // QA sees the same customer masked; QA may find it by account number, not by phone.
    let masked = get(&office, &mut customers, Role::Qa, &registered.customer_id)
        .await
        .unwrap();
    assert_eq!(masked.name, "G***************");
    assert_eq!(masked.phones, ["+86******1234"]);
    assert_eq!(masked.emails, ["f***@grandbund.example"]);
    assert_eq!(masked.address, "***");
    assert_eq!(masked.projects[0].stakeholders[2].name, "王*");
    assert_eq!(masked.account_number, "H-2024-017");
    let by_phone = find(&office, &mut customers, Role::Qa, phone("+862160001234"))
        .await
        .unwrap_err();
    assert_eq!(by_phone.code(), Code::PermissionDenied);
    assert!(
        find(&office, &mut customers, Role::Qa, account("H-2024-017"))
            .await
            .is_ok()
    );

    // The property manager calls about the project: a case of the hotel's, in its segment,
    // about its project; the caller's phone is kept under the hotel.
    let mut cases = office.cases.clone();
    let complaint = cases
        .open_case(office.request(
            Role::Agent,
            proto::OpenCaseRequest {
                request_id: "hotel-complaint".into(),
                customer_phone: "+8613900000003".into(),
                category: types::CaseCategory::Complaint.into(),
                summary: "lobby downlights failing again".into(),
                customer_id: registered.customer_id.clone(),
                project_id: project_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(complaint.customer_id, registered.customer_id);
    assert_eq!(complaint.segment, proto::CustomerSegment::Hotel as i32);
    assert_eq!(complaint.project_id, project_id);
    assert_eq!(complaint.customer_phone, "+8613900000003");
    for filter in [
        proto::ListCasesRequest {
            segment: proto::CustomerSegment::Hotel.into(),
            ..Default::default()
        },
        proto::ListCasesRequest {
            project_id: project_id.clone(),
            ..Default::default()
        },
        proto::ListCasesRequest {
            customer_id: registered.customer_id.clone(),
            ..Default::default()
        },
    ] {
        let listed = cases
            .list_cases(office.request(Role::Manager, filter.clone()))
            .await
            .unwrap()
            .into_inner()
            .cases;
        assert_eq!(
            listed
                .iter()
                .map(|c| c.case_id.as_str())
                .collect::<Vec<_>>(),
            [complaint.case_id.as_str()],
            "{filter:?}"
        );
    }
    // A contact on it knows what the hotel's record holds: nobody need ask again.
    let mut contacts = office.served.contacts().await;
    let contact = contacts
        .start_contact(office.request(
            Role::Service,
            proto::StartContactRequest {
                request_id: "hotel-call".into(),
                case_id: complaint.case_id.clone(),
                channel: proto::Channel::Hotline.into(),
                with_bot: false,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(
        contact.known_fields,
        [
            proto::CustomerField::Phone as i32,
            proto::CustomerField::Name as i32,
            proto::CustomerField::Email as i32,
            proto::CustomerField::Address as i32,
            proto::CustomerField::AccountNumber as i32,
        ]
    );
    let orphan_project = cases
        .open_case(office.request(
            Role::Agent,
            proto::OpenCaseRequest {
                customer_phone: "+8613900000003".into(),
                category: types::CaseCategory::Complaint.into(),
                summary: "no account named".into(),
                project_id: project_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&orphan_project), ["project_id"]);
    let wrong_project = cases
        .open_case(office.request(
            Role::Agent,
            proto::OpenCaseRequest {
                customer_phone: "+8613900000003".into(),
                category: types::CaseCategory::Complaint.into(),
                summary: "another account's project".into(),
                customer_id: registered.customer_id.clone(),
                project_id: uuid::Uuid::now_v7().to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong_project.code(), Code::NotFound);

    // A stakeholder of a project that does not exist, and one nobody can reach.
    let unknown = customers
        .add_stakeholder(office.request(
            Role::Agent,
            proto::AddStakeholderRequest {
                customer_id: registered.customer_id.clone(),
                request_id: "stakeholder-nowhere".into(),
                project_id: uuid::Uuid::now_v7().to_string(),
                role: proto::StakeholderRole::Contractor.into(),
                name: "Nobody".into(),
                phone: "+8613900000009".into(),
                email: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let unreachable = customers
        .add_stakeholder(office.request(
            Role::Agent,
            proto::AddStakeholderRequest {
                customer_id: registered.customer_id.clone(),
                project_id: project_id.clone(),
                role: proto::StakeholderRole::Unspecified.into(),
                name: " ".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&unreachable), ["role", "name", "phone"]);
    office.served.stop().await;
}

#[tokio::test]
async fn intake_makes_a_customer_that_merges_and_erases_with_its_duplicate() {
    let mut office = FrontOffice::start().await;
    let mut customers = office.served.customers().await;
    // A phone svcops has never seen: the case makes a consumer of it.
    let case = office
        .open(
            "+8613800007777",
            types::CaseCategory::Repair,
            "washing machine leaks",
        )
        .await;
    assert!(!case.customer_id.is_empty());
    let from_intake = get(&office, &mut customers, Role::Agent, &case.customer_id)
        .await
        .unwrap();
    assert_eq!(from_intake.segment, proto::CustomerSegment::Consumer as i32);
    assert_eq!(from_intake.phones, ["+8613800007777"]);
    let identified = customers
        .identify_customer(office.request(
            Role::Service,
            proto::IdentifyCustomerRequest {
                identity: phone("+86 138 0000 7777"),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!identified.registered, "found, not made");
    assert_eq!(
        identified.customer.unwrap().customer_id,
        case.customer_id,
        "a second case of the phone is the same customer's"
    );

    // The same person writes in by email: find-or-create makes a second customer.
    let by_email = customers
        .identify_customer(office.request(
            Role::Service,
            proto::IdentifyCustomerRequest {
                identity: email("li.lei@example.com"),
                name: "Li Lei".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(by_email.registered);
    let survivor = by_email.customer.unwrap();
    customers
        .tag_customer(office.request(
            Role::Agent,
            proto::TagCustomerRequest {
                customer_id: survivor.customer_id.clone(),
                request_id: "tag-1".into(),
                tag: "repeat-caller".into(),
            },
        ))
        .await
        .unwrap();

    // An agent sees they are one: the intake customer merges into the email one.
    let merged = customers
        .merge_customers(office.request(
            Role::Agent,
            proto::MergeCustomersRequest {
                request_id: "merge-1".into(),
                merged_id: case.customer_id.clone(),
                survivor_id: survivor.customer_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .survivor
        .unwrap();
    assert_eq!(merged.merged_ids, std::slice::from_ref(&case.customer_id));
    for id in [&case.customer_id, &survivor.customer_id] {
        let resolved = get(&office, &mut customers, Role::Agent, id).await.unwrap();
        assert_eq!(resolved.customer_id, survivor.customer_id, "{id} resolves");
    }
    let found = find(
        &office,
        &mut customers,
        Role::Agent,
        phone("+8613800007777"),
    )
    .await
    .unwrap();
    assert_eq!(found.customer_id, survivor.customer_id);
    let retried = customers
        .merge_customers(office.request(
            Role::Agent,
            proto::MergeCustomersRequest {
                request_id: "merge-1".into(),
                merged_id: case.customer_id.clone(),
                survivor_id: survivor.customer_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.survivor.unwrap().merged_ids.len(), 1);
    let itself = customers
        .merge_customers(office.request(
            Role::Agent,
            proto::MergeCustomersRequest {
                request_id: "merge-self".into(),
                merged_id: survivor.customer_id.clone(),
                survivor_id: survivor.customer_id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(itself.code(), Code::FailedPrecondition);

    // The survivor's cases are the duplicate's too.
    let survivors_cases = office
        .cases
        .list_cases(office.request(
            Role::Agent,
            proto::ListCasesRequest {
                customer_id: survivor.customer_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .cases;
    assert_eq!(
        survivors_cases
            .iter()
            .map(|c| c.case_id.as_str())
            .collect::<Vec<_>>(),
        [case.case_id.as_str()]
    );
    assert_eq!(case.segment, proto::CustomerSegment::Consumer as i32);

    // The list shows the survivor only.
    let listed = customers
        .list_customers(office.request(
            Role::Manager,
            proto::ListCustomersRequest {
                tag: "repeat-caller".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customers;
    assert_eq!(
        listed
            .iter()
            .map(|c| c.customer_id.as_str())
            .collect::<Vec<_>>(),
        [survivor.customer_id.as_str()]
    );
    assert_eq!(listed[0].name, "L*****", "managers see names masked");

    // Erasing the survivor erases the duplicate: the case's phone reads as erased.
    let erased = office
        .cases
        .erase_customer_data(office.request(
            Role::Manager,
            proto::EraseCustomerDataRequest {
                customer_id: survivor.customer_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(erased.erased);
    let after = get(&office, &mut customers, Role::Agent, &survivor.customer_id)
        .await
        .unwrap();
    assert!(after.personal_data_erased);
    assert_eq!((after.name.as_str(), after.emails.len()), ("", 0));
    let case_after = office
        .cases
        .get_case(office.request(
            Role::Agent,
            proto::GetCaseRequest {
                case_id: case.case_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert!(case_after.customer_data_erased);
    assert_eq!(case_after.customer_phone, "");
    let gone = find(
        &office,
        &mut customers,
        Role::Agent,
        phone("+8613800007777"),
    )
    .await
    .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let listed = customers
        .list_customers(office.request(Role::Agent, proto::ListCustomersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .customers;
    let survivor_listed = listed
        .iter()
        .find(|c| c.customer_id == survivor.customer_id)
        .unwrap();
    assert!(survivor_listed.personal_data_erased);
    assert_eq!(survivor_listed.name, "");
    office.served.stop().await;
}

#[tokio::test]
async fn lists_filter_by_segment_and_changes_are_refused_where_they_do_not_fit() {
    let office = FrontOffice::start().await;
    let mut customers = office.served.customers().await;
    let hotel = customers
        .register_customer(office.request(Role::Agent, hotel()))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    let consumer = customers
        .register_customer(office.request(
            Role::Agent,
            proto::RegisterCustomerRequest {
                request_id: "register-consumer".into(),
                segment: proto::CustomerSegment::Consumer.into(),
                name: "Zhang Wei".into(),
                phones: vec!["+8613700000001".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    let hotels = customers
        .list_customers(office.request(
            Role::Executive,
            proto::ListCustomersRequest {
                segment: proto::CustomerSegment::Hotel.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customers;
    assert_eq!(
        hotels
            .iter()
            .map(|c| c.customer_id.as_str())
            .collect::<Vec<_>>(),
        [hotel.customer_id.as_str()]
    );

    // Consumers have no projects; a consumer and an account do not merge.
    let project = customers
        .add_project(office.request(
            Role::Agent,
            proto::AddProjectRequest {
                customer_id: consumer.customer_id.clone(),
                name: "Kitchen".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(project.code(), Code::FailedPrecondition);
    let mixed = customers
        .merge_customers(office.request(
            Role::Manager,
            proto::MergeCustomersRequest {
                merged_id: consumer.customer_id.clone(),
                survivor_id: hotel.customer_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(mixed.code(), Code::InvalidArgument);

    // A second phone finds the consumer; one of another customer's is refused.
    customers
        .add_customer_contact(office.request(
            Role::Agent,
            proto::AddCustomerContactRequest {
                customer_id: consumer.customer_id.clone(),
                request_id: "second-phone".into(),
                contact: phone("+8613700000002"),
            },
        ))
        .await
        .unwrap();
    let found = find(
        &office,
        &mut customers,
        Role::Agent,
        phone("+8613700000002"),
    )
    .await
    .unwrap();
    assert_eq!(found.customer_id, consumer.customer_id);
    assert_eq!(found.phones.len(), 2);
    let taken = customers
        .add_customer_contact(office.request(
            Role::Agent,
            proto::AddCustomerContactRequest {
                customer_id: consumer.customer_id.clone(),
                contact: phone("+862160001234"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);

    // Consent and details change; what was not given stays.
    let updated = customers
        .update_customer(office.request(
            Role::Agent,
            proto::UpdateCustomerRequest {
                customer_id: consumer.customer_id.clone(),
                request_id: "move".into(),
                address: "8 Huaihai Road, Shanghai".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.address.as_str()),
        ("Zhang Wei", "8 Huaihai Road, Shanghai")
    );
    let refused = customers
        .record_consent(office.request(
            Role::Agent,
            proto::RecordConsentRequest {
                customer_id: consumer.customer_id.clone(),
                request_id: "consent".into(),
                recording_consent: proto::RecordingConsent::Refused.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(
        refused.recording_consent,
        proto::RecordingConsent::Refused as i32
    );

    // A refused registration takes back what it claimed: a phone named with another
    // customer's email is free for the next registration.
    let refused = customers
        .register_customer(office.request(
            Role::Agent,
            proto::RegisterCustomerRequest {
                request_id: "register-half".into(),
                segment: proto::CustomerSegment::Consumer.into(),
                phones: vec!["+8613700000099".into()],
                emails: vec!["facilities@grandbund.example".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists);
    let again = customers
        .register_customer(office.request(
            Role::Agent,
            proto::RegisterCustomerRequest {
                request_id: "register-whole".into(),
                segment: proto::CustomerSegment::Consumer.into(),
                phones: vec!["+8613700000099".into(), "+86 137 0000 0099".into()],
                emails: vec!["li.na@example.com".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(again.phones.len(), 1, "the same phone twice is one");
    for identity in [phone("+8613700000099"), email("li.na@example.com")] {
        let found = find(&office, &mut customers, Role::Agent, identity)
            .await
            .unwrap();
        assert_eq!(found.customer_id, again.customer_id);
    }

    // A contact the customer cannot take is not claimed either.
    for n in 3..=5 {
        customers
            .add_customer_contact(office.request(
                Role::Agent,
                proto::AddCustomerContactRequest {
                    customer_id: consumer.customer_id.clone(),
                    contact: phone(&format!("+861370000000{n}")),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }
    let sixth = customers
        .add_customer_contact(office.request(
            Role::Agent,
            proto::AddCustomerContactRequest {
                customer_id: consumer.customer_id.clone(),
                contact: phone("+8613700000006"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(sixth.code(), Code::FailedPrecondition);
    let unclaimed = find(
        &office,
        &mut customers,
        Role::Agent,
        phone("+8613700000006"),
    )
    .await
    .unwrap_err();
    assert_eq!(unclaimed.code(), Code::NotFound);

    // Roles that see phones masked may not learn whose a phone is by registering it.
    let oracle = customers
        .identify_customer(office.request(
            Role::Manager,
            proto::IdentifyCustomerRequest {
                identity: phone("+8613700000001"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(oracle.code(), Code::PermissionDenied);

    // One request id, two different requests (alike but for the RPC): refused.
    let tag = |role| {
        office.request(
            role,
            proto::TagCustomerRequest {
                customer_id: consumer.customer_id.clone(),
                request_id: "same-id".into(),
                tag: "callback".into(),
            },
        )
    };
    customers.tag_customer(tag(Role::Agent)).await.unwrap();
    let untag = customers
        .untag_customer(office.request(
            Role::Agent,
            proto::UntagCustomerRequest {
                customer_id: consumer.customer_id.clone(),
                request_id: "same-id".into(),
                tag: "callback".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(untag.code(), Code::InvalidArgument, "{untag:?}");

    // Every bad field is named, nothing is written.
    let invalid = customers
        .register_customer(office.request(
            Role::Agent,
            proto::RegisterCustomerRequest {
                segment: 42,
                name: "bell\u{7}".into(),
                phones: vec!["12ab".into()],
                emails: vec!["not-an-email".into()],
                tags: vec!["VIP".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&invalid),
        ["segment", "name", "phones", "emails", "tags"]
    );
    let unknown = get(
        &office,
        &mut customers,
        Role::Agent,
        &uuid::Uuid::now_v7().to_string(),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    office.served.stop().await;
}
