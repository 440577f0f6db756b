//! The case aggregate and the parsed values it is made of. Pure: no IO, no protobuf.

use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("case {0} already exists")]
    AlreadyOpened(Uuid),
    #[error("the case is not open")]
    NotOpened,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A customer phone number normalised to `+` and digits (E.164-like, 6 to 15 digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Error> {
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
    Sealed { key_id: Uuid, sealed: Vec<u8> },
    Erased,
}

impl CustomerPhone {
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
) -> Result<String, Error> {
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

/// Where a case is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Open,
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
    ) -> Result<Self, Vec<Error>> {
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

/// Why a case needs a person's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Some office could not process one of the case's events (it was dead-lettered).
    ProcessingFailed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagNote {
    pub flag: Flag,
    pub detail: String,
    pub flagged_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Open { case_id: Uuid, details: CaseDetails },
    Flag { flag: Flag, detail: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Opened {
        case_id: Uuid,
        details: CaseDetails,
    },
    Flagged {
        case_id: Uuid,
        flag: Flag,
        detail: String,
    },
}

/// State of one case, folded from its events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Case {
    pub opened: Option<OpenedCase>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedCase {
    pub case_id: Uuid,
    pub details: CaseDetails,
    pub lifecycle: Lifecycle,
    pub opened_at: OffsetDateTime,
    pub opened_by: String,
    pub opened_by_role: String,
    pub flags: Vec<FlagNote>,
}

impl Case {
    pub fn decide(&self, command: Command) -> Result<Vec<Event>, Error> {
        match command {
            Command::Open { case_id, details } => {
                if self.opened.is_some() {
                    return Err(Error::AlreadyOpened(case_id));
                }
                Ok(vec![Event::Opened { case_id, details }])
            }
            Command::Flag { flag, detail } => {
                let opened = self.opened.as_ref().ok_or(Error::NotOpened)?;
                Ok(vec![Event::Flagged {
                    case_id: opened.case_id,
                    flag,
                    detail,
                }])
            }
        }
    }

    /// Applies an event; `at`, `by` and `role` come from the event's metadata.
    pub fn apply(&mut self, event: Event, at: OffsetDateTime, by: &str, role: &str) {
        match event {
            Event::Opened { case_id, details } => {
                self.opened = Some(OpenedCase {
                    case_id,
                    details,
                    lifecycle: Lifecycle::Open,
                    opened_at: at,
                    opened_by: by.to_owned(),
                    opened_by_role: role.to_owned(),
                    flags: Vec::new(),
                });
            }
            Event::Flagged { flag, detail, .. } => {
                if let Some(opened) = &mut self.opened {
                    opened.flags.push(FlagNote {
                        flag,
                        detail,
                        flagged_at: at,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> CaseDetails {
        CaseDetails::parse(
            "+86 138-0000-1234",
            Category::Repair,
            Priority::Normal,
            Channel::Hotline,
            "  ceiling lamp flickers ",
            "PL-200",
            "SN123",
        )
        .expect("valid")
    }

    #[test]
    fn phone_numbers_are_normalised() {
        assert_eq!(
            details().customer_phone.known().map(PhoneNumber::as_str),
            Some("+8613800001234")
        );
        assert_eq!(details().summary, "ceiling lamp flickers");
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
            .map(|error| match error {
                Error::Invalid { field, .. } => *field,
                Error::AlreadyOpened(_) | Error::NotOpened => "",
            })
            .collect();
        assert_eq!(fields, ["customer_phone", "summary"]);
    }

    #[test]
    fn short_and_long_phones_are_rejected() {
        assert!(PhoneNumber::parse("p", "12345").is_err());
        assert!(PhoneNumber::parse("p", "1234567890123456").is_err());
        assert!(PhoneNumber::parse("p", "+123456").is_ok());
    }

    // given / when / then
    #[test]
    fn given_no_case_when_open_then_opened() {
        let case_id = Uuid::now_v7();
        let events = Case::default()
            .decide(Command::Open {
                case_id,
                details: details(),
            })
            .expect("decides");
        assert_eq!(
            events,
            vec![Event::Opened {
                case_id,
                details: details()
            }]
        );
    }

    #[test]
    fn given_no_case_when_flagged_then_rejected() {
        assert_eq!(
            Case::default().decide(Command::Flag {
                flag: Flag::ProcessingFailed,
                detail: "x".into()
            }),
            Err(Error::NotOpened)
        );
    }

    #[test]
    fn given_an_open_case_when_flagged_then_the_flag_is_kept() {
        let case_id = Uuid::now_v7();
        let mut case = Case::default();
        case.apply(
            Event::Opened {
                case_id,
                details: details(),
            },
            OffsetDateTime::UNIX_EPOCH,
            "alice",
            "agent",
        );
        let events = case
            .decide(Command::Flag {
                flag: Flag::ProcessingFailed,
                detail: "middle-office gave up".into(),
            })
            .expect("decides");
        assert_eq!(
            events,
            vec![Event::Flagged {
                case_id,
                flag: Flag::ProcessingFailed,
                detail: "middle-office gave up".into()
            }]
        );
        for event in events {
            case.apply(event, OffsetDateTime::UNIX_EPOCH, "front-office", "service");
        }
        let flags = case.opened.expect("opened").flags;
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].flag, Flag::ProcessingFailed);
    }

    #[test]
    fn given_an_open_case_when_open_again_then_rejected() {
        let case_id = Uuid::now_v7();
        let mut case = Case::default();
        case.apply(
            Event::Opened {
                case_id,
                details: details(),
            },
            OffsetDateTime::UNIX_EPOCH,
            "alice",
            "agent",
        );
        assert_eq!(
            case.decide(Command::Open {
                case_id,
                details: details()
            }),
            Err(Error::AlreadyOpened(case_id))
        );
        assert_eq!(case.opened.expect("opened").lifecycle, Lifecycle::Open);
    }
}
