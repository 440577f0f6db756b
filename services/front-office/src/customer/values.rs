//! The parsed values a customer is made of. Pure: no IO, no protobuf.

use super::CustomerError;
use crate::case::PhoneNumber;

fn invalid(field: &'static str, reason: impl Into<String>) -> CustomerError {
    CustomerError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Who a customer is: a consumer, or a business account's market segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Segment {
    Consumer,
    RealEstate,
    Hotel,
    RetailChain,
    GovernmentEnterprise,
    Other,
}

impl Segment {
    /// Business accounts (B2B) have projects; consumers do not.
    pub fn is_business(self) -> bool {
        !matches!(self, Segment::Consumer)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordingConsent {
    #[default]
    Unknown,
    Given,
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StakeholderRole {
    Owner,
    Designer,
    Contractor,
    PropertyManager,
    Purchaser,
    Other,
}

/// Personal text sealed with the customer's data key (AES-256-GCM, nonce first). The
/// aggregate only ever holds it sealed; it is opened for callers, and is unreadable for
/// good once the key is destroyed.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(pub Vec<u8>);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

/// An email address, trimmed and lower-cased: one `@`, a dotted domain, at most 254
/// characters, nothing that is not printable ASCII.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, CustomerError> {
        let email = raw.trim().to_ascii_lowercase();
        if email.is_empty() || email.len() > 254 {
            return Err(invalid(field, "must be 3 to 254 characters"));
        }
        if !email.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid(field, "must be printable ASCII without spaces"));
        }
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
        if !valid {
            return Err(invalid(field, "must look like name@example.com"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A business account's number with the manufacturer: letters, digits, `-`, `_` and `.`,
/// at most 64, kept upper-case. A business identifier, not personal data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountNumber(String);

impl AccountNumber {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, CustomerError> {
        let number = raw.trim().to_ascii_uppercase();
        if number.is_empty() || number.len() > 64 {
            return Err(invalid(field, "must be 1 to 64 characters"));
        }
        if !number
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(field, "must be letters, digits, '-', '_' or '.'"));
        }
        Ok(Self(number))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tag on a customer (`vip`, `key-account`): lower-case letters, digits, `-`, `_` and
/// `.`, at most 64.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, CustomerError> {
        let tag = raw.trim();
        if tag.is_empty() || tag.len() > 64 {
            return Err(invalid(field, "must be 1 to 64 characters"));
        }
        if !tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                field,
                "must be lower-case letters, digits, '-', '_' or '.'",
            ));
        }
        Ok(Self(tag.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One way to name a customer; each finds at most one customer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Phone(PhoneNumber),
    Email(EmailAddress),
    Account(AccountNumber),
}

impl Identity {
    /// What the key store finds the customer's data key by. A phone is itself (as cases
    /// have always sealed phones), the others carry their kind so no email can pass for a
    /// phone.
    pub fn subject(&self) -> String {
        match self {
            Identity::Phone(phone) => phone.as_str().to_owned(),
            Identity::Email(email) => format!("email:{}", email.as_str()),
            Identity::Account(number) => format!("account:{}", number.as_str()),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Phone(_) => "phone",
            Identity::Email(_) => "email",
            Identity::Account(_) => "account number",
        }
    }
}

/// A phone from a caller, as a customer field.
pub fn phone(field: &'static str, raw: &str) -> Result<PhoneNumber, CustomerError> {
    PhoneNumber::parse(field, raw).map_err(|error| match error {
        crate::case::CaseError::Invalid { field, reason } => {
            CustomerError::Invalid { field, reason }
        }
        other => invalid(field, other.to_string()),
    })
}

/// Free text of bounded length, trimmed; empty allowed unless `required`.
pub fn text(
    field: &'static str,
    raw: &str,
    required: bool,
    max_chars: usize,
) -> Result<String, CustomerError> {
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
    if text.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            EmailAddress::parse("email", " Li.Wei@Example.COM ").map(|e| e.as_str().to_owned()),
            Ok("li.wei@example.com".to_owned())
        );
        for bad in [
            "",
            "no-at.example.com",
            "a@b",
            "a@@b.com",
            "@b.com",
            "a b@c.com",
            "a@.com",
            "a@b..com",
            "李@例子.中国",
        ] {
            assert!(EmailAddress::parse("email", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn account_numbers_and_tags_are_checked() {
        assert_eq!(
            AccountNumber::parse("account_number", " h-2024.01 ").map(|n| n.as_str().to_owned()),
            Ok("H-2024.01".to_owned())
        );
        assert!(AccountNumber::parse("account_number", "H 1").is_err());
        assert!(Tag::parse("tag", "key-account").is_ok());
        for bad in ["", "VIP", "two words", &"t".repeat(65)] {
            assert!(Tag::parse("tag", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn identities_are_distinct_subjects() {
        let phone = Identity::Phone(phone("phone", "+86 138 0000 1234").expect("phone"));
        let email = Identity::Email(EmailAddress::parse("email", "a@b.cn").expect("email"));
        let account = Identity::Account(AccountNumber::parse("n", "a-1").expect("number"));
        assert_eq!(phone.subject(), "+8613800001234");
        assert_eq!(email.subject(), "email:a@b.cn");
        assert_eq!(account.subject(), "account:A-1");
    }

    #[test]
    fn text_refuses_control_characters_and_overlong_input() {
        assert_eq!(text("name", " 李伟 ", true, 10), Ok("李伟".into()));
        assert!(text("name", "  ", true, 10).is_err());
        assert!(text("name", "a\nb", false, 10).is_err());
        assert!(text("name", &"x".repeat(11), false, 10).is_err());
    }
}
