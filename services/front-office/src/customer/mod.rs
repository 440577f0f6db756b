//! The customer aggregate (stream `customer-<data key id>`): for now only the record that a
//! customer's personal data was erased, which names the destroyed key and nothing personal.
//! Pure.

mod codec;

#[cfg(test)]
mod tests;

use svcops_kit::aggregate::{Aggregate, NeverRefused, Recorded};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerCommand {
    /// Records that the customer's data key is being destroyed.
    Erase { key_id: Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerEvent {
    DataErased { key_id: Uuid },
}

/// State of one customer's data key, folded from its stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Customer {
    pub erased: bool,
}

impl Aggregate for Customer {
    const KIND: &'static str = "customer";
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = NeverRefused;

    /// Erasing twice records once: a retry after the key outlived its record (see
    /// `app::Cases::erase_customer`) only has the key left to destroy.
    fn decide(&self, command: CustomerCommand) -> Result<Vec<CustomerEvent>, NeverRefused> {
        match command {
            CustomerCommand::Erase { .. } if self.erased => Ok(vec![]),
            CustomerCommand::Erase { key_id } => Ok(vec![CustomerEvent::DataErased { key_id }]),
        }
    }

    fn apply(&mut self, recorded: &Recorded<CustomerEvent>) {
        match recorded.event {
            CustomerEvent::DataErased { .. } => self.erased = true,
        }
    }
}
