//! The parsed values a case is made of. Pure: no IO, no protobuf.

use super::CaseError;

fn invalid(field: &'static str, reason: impl Into<String>) -> CaseError {
    CaseError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A customer phone number normalised to `+` and digits (E.164-like, 6 to 15 digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, CaseError> {
        let trimmed = raw.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => ("+", rest),
            None => ("", trimmed),
        };
        if rest
            .chars()
            .any(|c| !(c.is_ascii_digit() || c == ' ' || c == '-'))
        {
            return Err(invalid(
                field,
                "may contain only digits, spaces, dashes and a leading +",
            ));
        }
        let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
        if !(6..=15).contains(&digits.len()) {
            return Err(invalid(field, "must have 6 to 15 digits"));
        }
        Ok(Self(format!("{plus}{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A customer's phone as a case holds it: personal data, so it is sealed with the customer's
/// data key before it is written, and reads as erased once that key is destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerPhone {
    Known(PhoneNumber),
    Sealed { key_id: uuid::Uuid, sealed: Vec<u8> },
    Erased,
}

impl CustomerPhone {
    /// The data key it is sealed with: the customer's id.
    pub fn key_id(&self) -> Option<uuid::Uuid> {
        match self {
            CustomerPhone::Sealed { key_id, .. } => Some(*key_id),
            CustomerPhone::Known(_) | CustomerPhone::Erased => None,
        }
    }

    pub fn known(&self) -> Option<&PhoneNumber> {
        match self {
            CustomerPhone::Known(phone) => Some(phone),
            CustomerPhone::Sealed { .. } | CustomerPhone::Erased => None,
        }
    }
}

/// Free text of bounded length, trimmed.
fn bounded_text(
    field: &'static str,
    raw: &str,
    required: bool,
    max_chars: usize,
) -> Result<String, CaseError> {
    let text = raw.trim();
    if required && text.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if text.chars().count() > max_chars {
        return Err(invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(text.to_owned())
}

/// A queue cases are routed to: lower-case letters, digits, `-`, `_` and `.`, at most 64.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueName(String);

impl QueueName {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, CaseError> {
        let name = raw.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(invalid(field, "must be 1 to 64 characters"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                field,
                "must be lower-case letters, digits, '-', '_' or '.'",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The agent a case is assigned to, by their token's subject: 1 to 128 characters, no
/// spaces or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentName(String);

impl AgentName {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, CaseError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 128 {
            return Err(invalid(field, "must be 1 to 128 characters"));
        }
        if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid(
                field,
                "must not contain spaces or control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why or how, in a person's words: a reason to wait or reopen, a resolution. Required, at
/// most 2,000 characters, no control characters but newlines and tabs.
pub fn note(field: &'static str, raw: &str) -> Result<String, CaseError> {
    bounded_text(field, raw, true, 2000)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Consultation,
    Complaint,
    Repair,
    Installation,
    Return,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Hotline,
    Chat,
    Bot,
    App,
    Messaging,
    Email,
}

/// A validated request to open a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseDetails {
    pub customer_phone: CustomerPhone,
    pub category: Category,
    pub priority: Priority,
    pub channel: Channel,
    pub summary: String,
    pub product: String,
    pub serial_number: String,
    /// The customer's segment when the case was opened (set by the application from the
    /// customer; `None` for cases from before segments).
    pub segment: Option<crate::customer::Segment>,
    /// The B2B project the case is about.
    pub project_id: Option<uuid::Uuid>,
}

impl CaseDetails {
    /// Parses the free-text parts; enums are parsed at the edge.
    #[allow(clippy::too_many_arguments)]
    pub fn parse(
        customer_phone: &str,
        category: Category,
        priority: Priority,
        channel: Channel,
        summary: &str,
        product: &str,
        serial_number: &str,
    ) -> Result<Self, Vec<CaseError>> {
        let phone = PhoneNumber::parse("customer_phone", customer_phone);
        let summary = bounded_text("summary", summary, true, 2000);
        let product = bounded_text("product", product, false, 200);
        let serial = bounded_text("serial_number", serial_number, false, 100);
        match (phone, summary, product, serial) {
            (Ok(customer_phone), Ok(summary), Ok(product), Ok(serial_number)) => Ok(Self {
                customer_phone: CustomerPhone::Known(customer_phone),
                category,
                priority,
                channel,
                summary,
                product,
                serial_number,
                segment: None,
                project_id: None,
            }),
            (phone, summary, product, serial) => {
                Err([phone.err(), summary.err(), product.err(), serial.err()]
                    .into_iter()
                    .flatten()
                    .collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_normalised() {
        let details = CaseDetails::parse(
            "+86 138-0000-1234",
            Category::Repair,
            Priority::Normal,
            Channel::Hotline,
            "  ceiling lamp flickers ",
            "PL-200",
            "SN123",
        )
        .expect("valid");
        assert_eq!(
            details.customer_phone.known().map(PhoneNumber::as_str),
            Some("+8613800001234")
        );
        assert_eq!(details.summary, "ceiling lamp flickers");
    }

    #[test]
    fn every_bad_field_is_reported() {
        let errors = CaseDetails::parse(
            "12ab",
            Category::Repair,
            Priority::Normal,
            Channel::Hotline,
            "   ",
            "",
            "",
        )
        .expect_err("invalid");
        let fields: Vec<_> = errors
            .iter()
            .filter_map(CaseError::field_violation)
            .map(|violation| violation.field)
            .collect();
        assert_eq!(fields, ["customer_phone", "summary"]);
    }

    #[test]
    fn queue_and_agent_names_are_checked() {
        assert_eq!(
            QueueName::parse("queue", " repair.b2b ").map(|queue| queue.as_str().to_owned()),
            Ok("repair.b2b".to_owned())
        );
        for bad in ["", "Repair", "repair queue", &"q".repeat(65)] {
            assert!(QueueName::parse("queue", bad).is_err(), "{bad:?}");
        }
        assert!(AgentName::parse("assignee", "agent-7").is_ok());
        for bad in ["", "two words", "tab\there", &"a".repeat(129)] {
            assert!(AgentName::parse("assignee", bad).is_err(), "{bad:?}");
        }
        assert!(note("reason", "  ").is_err());
        assert!(note("reason", "bell\u{7}").is_err());
        assert_eq!(
            note("reason", " waits\nfor a part "),
            Ok("waits\nfor a part".into())
        );
    }

    #[test]
    fn short_and_long_phones_are_rejected() {
        assert!(PhoneNumber::parse("p", "12345").is_err());
        assert!(PhoneNumber::parse("p", "1234567890123456").is_err());
        assert!(PhoneNumber::parse("p", "+123456").is_ok());
    }
}
