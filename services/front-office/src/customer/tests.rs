//! Given/when/then on the customer.

use svcops_kit::aggregate::DomainEvent;
use svcops_kit::aggregate::testkit::given;
use uuid::Uuid;

use super::*;

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
fn the_record_is_the_customer_data_erased_message() {
    let event = CustomerEvent::DataErased {
        key_id: Uuid::now_v7(),
    };
    let (event_type, payload) = event.encode();
    assert_eq!(event_type, "svcops.frontoffice.v1.CustomerDataErased");
    assert_eq!(
        CustomerEvent::decode(&event_type, &payload),
        Ok(Some(event))
    );
}
