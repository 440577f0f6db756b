//! Given/when/then on the customer.

use std::collections::BTreeSet;

use svcops_kit::aggregate::DomainEvent;
use svcops_kit::aggregate::testkit::given;
use uuid::Uuid;

use super::*;

fn sealed(text: &str) -> Sealed {
    Sealed(text.as_bytes().to_vec())
}

fn tag(raw: &str) -> Tag {
    Tag::parse("tag", raw).expect("tag")
}

fn profile(segment: Segment) -> Profile {
    Profile {
        segment,
        name: Some(sealed("name")),
        phones: vec![sealed("phone")],
        emails: vec![],
        account_number: None,
        address: None,
        tags: BTreeSet::new(),
        consent: RecordingConsent::Unknown,
    }
}

fn registered(customer_id: Uuid, segment: Segment) -> CustomerEvent {
    CustomerEvent::Registered {
        customer_id,
        profile: profile(segment),
    }
}

#[test]
fn given_nothing_when_registered_then_registered() {
    let customer_id = Uuid::now_v7();
    given::<Customer>([])
        .when(CustomerCommand::Register {
            customer_id,
            profile: profile(Segment::Consumer),
        })
        .then_expect_events(vec![registered(customer_id, Segment::Consumer)]);
}

#[test]
fn given_a_customer_when_registered_again_then_refused() {
    let customer_id = Uuid::now_v7();
    given::<Customer>([registered(customer_id, Segment::Consumer)])
        .when(CustomerCommand::Register {
            customer_id,
            profile: profile(Segment::Consumer),
        })
        .then_expect_error(CustomerError::AlreadyRegistered(customer_id));
}

#[test]
fn given_nothing_when_anything_but_registration_then_not_registered() {
    given::<Customer>([])
        .when(CustomerCommand::Tag(tag("vip")))
        .then_expect_error(CustomerError::NotRegistered);
}

#[test]
fn given_a_customer_when_tagged_twice_then_recorded_once() {
    let customer_id = Uuid::now_v7();
    given::<Customer>([registered(customer_id, Segment::Consumer)])
        .when(CustomerCommand::Tag(tag("vip")))
        .then_expect_events(vec![CustomerEvent::Tagged {
            customer_id,
            tag: tag("vip"),
        }]);
    given::<Customer>([
        registered(customer_id, Segment::Consumer),
        CustomerEvent::Tagged {
            customer_id,
            tag: tag("vip"),
        },
    ])
    .when(CustomerCommand::Tag(tag("vip")))
    .then_expect_events(vec![]);
}

#[test]
fn given_a_tag_when_untagged_then_removed_and_untagging_an_absent_tag_is_nothing() {
    let customer_id = Uuid::now_v7();
    let tagged = [
        registered(customer_id, Segment::Consumer),
        CustomerEvent::Tagged {
            customer_id,
            tag: tag("vip"),
        },
    ];
    given::<Customer>(tagged.clone())
        .when(CustomerCommand::Untag(tag("vip")))
        .then_expect_events(vec![CustomerEvent::Untagged {
            customer_id,
            tag: tag("vip"),
        }]);
    given::<Customer>(tagged)
        .when(CustomerCommand::Untag(tag("other")))
        .then_expect_events(vec![]);
}

#[test]
fn given_full_tags_when_tagged_then_refused() {
    let customer_id = Uuid::now_v7();
    let mut history = vec![registered(customer_id, Segment::Consumer)];
    history.extend((0..MAX_TAGS).map(|n| CustomerEvent::Tagged {
        customer_id,
        tag: tag(&format!("t{n}")),
    }));
    given::<Customer>(history)
        .when(CustomerCommand::Tag(tag("one-more")))
        .then_expect_error(CustomerError::TooMany {
            what: "tags",
            max: MAX_TAGS,
        });
}

#[test]
fn given_consent_when_the_same_is_recorded_then_nothing_and_a_change_is_recorded() {
    let customer_id = Uuid::now_v7();
    given::<Customer>([registered(customer_id, Segment::Consumer)])
        .when(CustomerCommand::RecordConsent(RecordingConsent::Unknown))
        .then_expect_events(vec![]);
    given::<Customer>([registered(customer_id, Segment::Consumer)])
        .when(CustomerCommand::RecordConsent(RecordingConsent::Refused))
        .then_expect_events(vec![CustomerEvent::ConsentRecorded {
            customer_id,
            consent: RecordingConsent::Refused,
        }]);
}

#[test]
fn given_a_consumer_when_a_project_is_added_then_refused() {
    let customer_id = Uuid::now_v7();
    given::<Customer>([registered(customer_id, Segment::Consumer)])
        .when(CustomerCommand::AddProject {
            project_id: Uuid::now_v7(),
            name: "Renovation".into(),
            site: String::new(),
        })
        .then_expect_error(CustomerError::ProjectsNeedAnAccount);
}

#[test]
fn given_a_hotel_when_a_project_and_stakeholders_are_added_then_recorded_in_its_project() {
    let customer_id = Uuid::now_v7();
    let project_id = Uuid::now_v7();
    let project = CustomerEvent::ProjectAdded {
        customer_id,
        project_id,
        name: "Lobby relighting".into(),
        site: "Shanghai, Pudong".into(),
    };
    given::<Customer>([registered(customer_id, Segment::Hotel)])
        .when(CustomerCommand::AddProject {
            project_id,
            name: "Lobby relighting".into(),
            site: "Shanghai, Pudong".into(),
        })
        .then_expect_events(vec![project.clone()]);
    let stakeholder = Stakeholder {
        stakeholder_id: Uuid::now_v7(),
        role: StakeholderRole::PropertyManager,
        name: sealed("manager"),
        phone: Some(sealed("phone")),
        email: None,
    };
    given::<Customer>([registered(customer_id, Segment::Hotel), project.clone()])
        .when(CustomerCommand::AddStakeholder {
            project_id,
            stakeholder: stakeholder.clone(),
        })
        .then_expect_events(vec![CustomerEvent::StakeholderAdded {
            customer_id,
            project_id,
            stakeholder: stakeholder.clone(),
        }]);
    let other = Uuid::now_v7();
    given::<Customer>([registered(customer_id, Segment::Hotel), project])
        .when(CustomerCommand::AddStakeholder {
            project_id: other,
            stakeholder,
        })
        .then_expect_error(CustomerError::UnknownProject(other));
}

#[test]
fn given_a_duplicate_when_merged_then_it_resolves_to_the_survivor_and_changes_no_more() {
    let merged = Uuid::now_v7();
    let survivor = Uuid::now_v7();
    given::<Customer>([registered(merged, Segment::Consumer)])
        .when(CustomerCommand::MergeInto {
            survivor_id: survivor,
        })
        .then_expect_events(vec![CustomerEvent::Merged {
            customer_id: merged,
            survivor_id: survivor,
        }]);
    let history = [
        registered(merged, Segment::Consumer),
        CustomerEvent::Merged {
            customer_id: merged,
            survivor_id: survivor,
        },
    ];
    given::<Customer>(history.clone())
        .when(CustomerCommand::MergeInto {
            survivor_id: survivor,
        })
        .then_expect_events(vec![]);
    given::<Customer>(history.clone())
        .when(CustomerCommand::MergeInto {
            survivor_id: Uuid::now_v7(),
        })
        .then_expect_error(CustomerError::Merged(survivor));
    given::<Customer>(history)
        .when(CustomerCommand::Tag(tag("vip")))
        .then_expect_error(CustomerError::Merged(survivor));
}

#[test]
fn given_a_survivor_when_it_absorbs_a_duplicate_then_recorded_once_and_never_itself() {
    let survivor = Uuid::now_v7();
    let merged = Uuid::now_v7();
    given::<Customer>([registered(survivor, Segment::Consumer)])
        .when(CustomerCommand::Absorb { merged_id: merged })
        .then_expect_events(vec![CustomerEvent::Absorbed {
            customer_id: survivor,
            merged_id: merged,
        }]);
    given::<Customer>([
        registered(survivor, Segment::Consumer),
        CustomerEvent::Absorbed {
            customer_id: survivor,
            merged_id: merged,
        },
    ])
    .when(CustomerCommand::Absorb { merged_id: merged })
    .then_expect_events(vec![]);
    given::<Customer>([registered(survivor, Segment::Consumer)])
        .when(CustomerCommand::Absorb {
            merged_id: survivor,
        })
        .then_expect_error(CustomerError::MergeWithItself);
}

#[test]
fn given_a_customer_when_contacts_are_added_then_bounded() {
    let customer_id = Uuid::now_v7();
    given::<Customer>([registered(customer_id, Segment::Consumer)])
        .when(CustomerCommand::AddContact(ContactPoint::Email(sealed(
            "e",
        ))))
        .then_expect_events(vec![CustomerEvent::ContactAdded {
            customer_id,
            contact: ContactPoint::Email(sealed("e")),
        }]);
    let mut history = vec![registered(customer_id, Segment::Consumer)];
    history.extend((1..MAX_CONTACTS).map(|_| CustomerEvent::ContactAdded {
        customer_id,
        contact: ContactPoint::Phone(sealed("p")),
    }));
    given::<Customer>(history)
        .when(CustomerCommand::AddContact(ContactPoint::Phone(sealed(
            "p",
        ))))
        .then_expect_error(CustomerError::TooMany {
            what: "phones and emails each",
            max: MAX_CONTACTS,
        });
}

#[test]
fn given_a_customer_when_details_change_then_only_given_fields_are_recorded() {
    let customer_id = Uuid::now_v7();
    given::<Customer>([registered(customer_id, Segment::Consumer)])
        .when(CustomerCommand::ChangeDetails {
            name: None,
            address: None,
        })
        .then_expect_events(vec![]);
    given::<Customer>([registered(customer_id, Segment::Consumer)])
        .when(CustomerCommand::ChangeDetails {
            name: None,
            address: Some(sealed("addr")),
        })
        .then_expect_events(vec![CustomerEvent::DetailsChanged {
            customer_id,
            name: None,
            address: Some(sealed("addr")),
        }]);
}

#[test]
fn given_no_record_when_erased_then_recorded() {
    let key_id = Uuid::now_v7();
    given::<Customer>([])
        .when(CustomerCommand::Erase { key_id })
        .then_expect_events(vec![CustomerEvent::DataErased { key_id }]);
}

#[test]
fn given_a_record_when_erased_again_then_nothing_more_is_recorded() {
    let key_id = Uuid::now_v7();
    given::<Customer>([CustomerEvent::DataErased { key_id }])
        .when(CustomerCommand::Erase { key_id })
        .then_expect_events(vec![]);
}

#[test]
fn given_an_erased_customer_when_changed_or_registered_then_refused() {
    let customer_id = Uuid::now_v7();
    let history = [
        registered(customer_id, Segment::Consumer),
        CustomerEvent::DataErased {
            key_id: customer_id,
        },
    ];
    given::<Customer>(history.clone())
        .when(CustomerCommand::Tag(tag("vip")))
        .then_expect_error(CustomerError::Erased);
    given::<Customer>(history)
        .when(CustomerCommand::Register {
            customer_id,
            profile: profile(Segment::Consumer),
        })
        .then_expect_error(CustomerError::Erased);
}

#[test]
fn every_event_survives_its_protobuf_round_trip() {
    let customer_id = Uuid::now_v7();
    let project_id = Uuid::now_v7();
    let mut full = profile(Segment::Hotel);
    full.emails = vec![sealed("e1"), sealed("e2")];
    full.account_number = Some(AccountNumber::parse("n", "H-1").expect("number"));
    full.address = Some(sealed("addr"));
    full.tags = [tag("vip"), tag("key-account")].into_iter().collect();
    full.consent = RecordingConsent::Given;
    let events = vec![
        CustomerEvent::Registered {
            customer_id,
            profile: full,
        },
        CustomerEvent::ContactAdded {
            customer_id,
            contact: ContactPoint::Phone(sealed("p2")),
        },
        CustomerEvent::DetailsChanged {
            customer_id,
            name: Some(sealed("n2")),
            address: None,
        },
        CustomerEvent::Tagged {
            customer_id,
            tag: tag("x"),
        },
        CustomerEvent::Untagged {
            customer_id,
            tag: tag("x"),
        },
        CustomerEvent::ConsentRecorded {
            customer_id,
            consent: RecordingConsent::Refused,
        },
        CustomerEvent::ProjectAdded {
            customer_id,
            project_id,
            name: "p".into(),
            site: "s".into(),
        },
        CustomerEvent::StakeholderAdded {
            customer_id,
            project_id,
            stakeholder: Stakeholder {
                stakeholder_id: Uuid::now_v7(),
                role: StakeholderRole::Designer,
                name: sealed("d"),
                phone: None,
                email: Some(sealed("e")),
            },
        },
        CustomerEvent::Absorbed {
            customer_id,
            merged_id: Uuid::now_v7(),
        },
        CustomerEvent::Merged {
            customer_id,
            survivor_id: Uuid::now_v7(),
        },
        CustomerEvent::DataErased {
            key_id: customer_id,
        },
    ];
    for event in events {
        let (event_type, payload) = event.encode();
        assert_eq!(
            CustomerEvent::decode(&event_type, &payload),
            Ok(Some(event))
        );
    }
    let (event_type, _) = CustomerEvent::DataErased {
        key_id: customer_id,
    }
    .encode();
    assert_eq!(event_type, "svcops.frontoffice.v1.CustomerDataErased");
}

#[test]
fn given_a_customer_that_absorbed_another_when_merged_into_it_then_refused_as_a_cycle() {
    let a = Uuid::now_v7();
    let b = Uuid::now_v7();
    given::<Customer>([
        registered(a, Segment::Consumer),
        CustomerEvent::Absorbed {
            customer_id: a,
            merged_id: b,
        },
    ])
    .when(CustomerCommand::MergeInto { survivor_id: b })
    .then_expect_error(CustomerError::MergeCycle(b));
}
