//! Customer events and values <-> protobuf, for stored events and for the gRPC edge.

use std::sync::LazyLock;

use prost::{Message, Name};
use svcops_kit::aggregate::{DecodeError, DomainEvent, EventDecoders};
use svcops_proto::frontoffice::v1 as proto;
use uuid::Uuid;

use super::{
    AccountNumber, ContactPoint, CustomerEvent, Profile, RecordingConsent, Sealed, Segment,
    Stakeholder, StakeholderRole, Tag,
};

impl From<Segment> for proto::CustomerSegment {
    fn from(segment: Segment) -> Self {
        match segment {
            Segment::Consumer => proto::CustomerSegment::Consumer,
            Segment::RealEstate => proto::CustomerSegment::RealEstate,
            Segment::Hotel => proto::CustomerSegment::Hotel,
            Segment::RetailChain => proto::CustomerSegment::RetailChain,
            Segment::GovernmentEnterprise => proto::CustomerSegment::GovernmentEnterprise,
            Segment::Other => proto::CustomerSegment::Other,
        }
    }
}

/// `None` for an unknown value; `Some(None)` for "unspecified".
pub fn segment_from_proto(value: i32) -> Option<Option<Segment>> {
    Some(match proto::CustomerSegment::try_from(value).ok()? {
        proto::CustomerSegment::Unspecified => None,
        proto::CustomerSegment::Consumer => Some(Segment::Consumer),
        proto::CustomerSegment::RealEstate => Some(Segment::RealEstate),
        proto::CustomerSegment::Hotel => Some(Segment::Hotel),
        proto::CustomerSegment::RetailChain => Some(Segment::RetailChain),
        proto::CustomerSegment::GovernmentEnterprise => Some(Segment::GovernmentEnterprise),
        proto::CustomerSegment::Other => Some(Segment::Other),
    })
}

impl From<RecordingConsent> for proto::RecordingConsent {
    fn from(consent: RecordingConsent) -> Self {
        match consent {
            RecordingConsent::Unknown => proto::RecordingConsent::Unspecified,
            RecordingConsent::Given => proto::RecordingConsent::Given,
            RecordingConsent::Refused => proto::RecordingConsent::Refused,
        }
    }
}

/// `None` for an unknown value; unspecified is "not asked".
pub fn consent_from_proto(value: i32) -> Option<RecordingConsent> {
    Some(match proto::RecordingConsent::try_from(value).ok()? {
        proto::RecordingConsent::Unspecified => RecordingConsent::Unknown,
        proto::RecordingConsent::Given => RecordingConsent::Given,
        proto::RecordingConsent::Refused => RecordingConsent::Refused,
    })
}

impl From<StakeholderRole> for proto::StakeholderRole {
    fn from(role: StakeholderRole) -> Self {
        match role {
            StakeholderRole::Owner => proto::StakeholderRole::Owner,
            StakeholderRole::Designer => proto::StakeholderRole::Designer,
            StakeholderRole::Contractor => proto::StakeholderRole::Contractor,
            StakeholderRole::PropertyManager => proto::StakeholderRole::PropertyManager,
            StakeholderRole::Purchaser => proto::StakeholderRole::Purchaser,
            StakeholderRole::Other => proto::StakeholderRole::Other,
        }
    }
}

/// `None` for an unknown value or "unspecified".
pub fn stakeholder_role_from_proto(value: i32) -> Option<StakeholderRole> {
    match proto::StakeholderRole::try_from(value).ok()? {
        proto::StakeholderRole::Unspecified => None,
        proto::StakeholderRole::Owner => Some(StakeholderRole::Owner),
        proto::StakeholderRole::Designer => Some(StakeholderRole::Designer),
        proto::StakeholderRole::Contractor => Some(StakeholderRole::Contractor),
        proto::StakeholderRole::PropertyManager => Some(StakeholderRole::PropertyManager),
        proto::StakeholderRole::Purchaser => Some(StakeholderRole::Purchaser),
        proto::StakeholderRole::Other => Some(StakeholderRole::Other),
    }
}

fn named<M: Message + Name>(message: &M) -> (String, Vec<u8>) {
    (M::full_name(), message.encode_to_vec())
}

fn uuid(event_type: &str, raw: &str) -> Result<Uuid, DecodeError> {
    Uuid::parse_str(raw).map_err(|error| DecodeError::new(event_type, error))
}

/// Empty bytes are "not given".
fn sealed(bytes: Vec<u8>) -> Option<Sealed> {
    (!bytes.is_empty()).then_some(Sealed(bytes))
}

fn bytes(sealed: Option<&Sealed>) -> Vec<u8> {
    sealed.map(|sealed| sealed.0.clone()).unwrap_or_default()
}

fn tag(event_type: &str, raw: &str) -> Result<Tag, DecodeError> {
    Tag::parse("tag", raw).map_err(|error| DecodeError::new(event_type, error))
}

static DECODERS: LazyLock<EventDecoders<CustomerEvent>> = LazyLock::new(|| {
    EventDecoders::new()
        .on::<proto::CustomerDataErased>(|event_type, e| {
            Ok(CustomerEvent::DataErased {
                key_id: uuid(event_type, &e.key_id)?,
            })
        })
        .on::<proto::CustomerRegistered>(|event_type, e| {
            Ok(CustomerEvent::Registered {
                customer_id: uuid(event_type, &e.customer_id)?,
                profile: Profile {
                    segment: segment_from_proto(e.segment)
                        .flatten()
                        .ok_or_else(|| DecodeError::new(event_type, "unknown segment"))?,
                    name: sealed(e.name_sealed),
                    phones: e.phones_sealed.into_iter().map(Sealed).collect(),
                    emails: e.emails_sealed.into_iter().map(Sealed).collect(),
                    account_number: (!e.account_number.is_empty())
                        .then(|| AccountNumber::parse("account_number", &e.account_number))
                        .transpose()
                        .map_err(|error| DecodeError::new(event_type, error))?,
                    address: sealed(e.address_sealed),
                    tags: e
                        .tags
                        .iter()
                        .map(|raw| tag(event_type, raw))
                        .collect::<Result<_, _>>()?,
                    consent: consent_from_proto(e.recording_consent).unwrap_or_default(),
                },
            })
        })
        .on::<proto::CustomerContactAdded>(|event_type, e| {
            let contact = match (sealed(e.phone_sealed), sealed(e.email_sealed)) {
                (Some(phone), None) => ContactPoint::Phone(phone),
                (None, Some(email)) => ContactPoint::Email(email),
                _ => return Err(DecodeError::new(event_type, "one phone or one email")),
            };
            Ok(CustomerEvent::ContactAdded {
                customer_id: uuid(event_type, &e.customer_id)?,
                contact,
            })
        })
        .on::<proto::CustomerDetailsChanged>(|event_type, e| {
            Ok(CustomerEvent::DetailsChanged {
                customer_id: uuid(event_type, &e.customer_id)?,
                name: sealed(e.name_sealed),
                address: sealed(e.address_sealed),
            })
        })
        .on::<proto::CustomerTagged>(|event_type, e| {
            Ok(CustomerEvent::Tagged {
                customer_id: uuid(event_type, &e.customer_id)?,
                tag: tag(event_type, &e.tag)?,
            })
        })
        .on::<proto::CustomerUntagged>(|event_type, e| {
            Ok(CustomerEvent::Untagged {
                customer_id: uuid(event_type, &e.customer_id)?,
                tag: tag(event_type, &e.tag)?,
            })
        })
        .on::<proto::CustomerConsentRecorded>(|event_type, e| {
            Ok(CustomerEvent::ConsentRecorded {
                customer_id: uuid(event_type, &e.customer_id)?,
                consent: consent_from_proto(e.recording_consent).unwrap_or_default(),
            })
        })
        .on::<proto::CustomerProjectAdded>(|event_type, e| {
            Ok(CustomerEvent::ProjectAdded {
                customer_id: uuid(event_type, &e.customer_id)?,
                project_id: uuid(event_type, &e.project_id)?,
                name: e.name,
                site: e.site,
            })
        })
        .on::<proto::CustomerStakeholderAdded>(|event_type, e| {
            Ok(CustomerEvent::StakeholderAdded {
                customer_id: uuid(event_type, &e.customer_id)?,
                project_id: uuid(event_type, &e.project_id)?,
                stakeholder: Stakeholder {
                    stakeholder_id: uuid(event_type, &e.stakeholder_id)?,
                    role: stakeholder_role_from_proto(e.role)
                        .ok_or_else(|| DecodeError::new(event_type, "unknown role"))?,
                    name: Sealed(e.name_sealed),
                    phone: sealed(e.phone_sealed),
                    email: sealed(e.email_sealed),
                },
            })
        })
        .on::<proto::CustomerAbsorbed>(|event_type, e| {
            Ok(CustomerEvent::Absorbed {
                customer_id: uuid(event_type, &e.customer_id)?,
                merged_id: uuid(event_type, &e.merged_id)?,
            })
        })
        .on::<proto::CustomerMerged>(|event_type, e| {
            Ok(CustomerEvent::Merged {
                customer_id: uuid(event_type, &e.customer_id)?,
                survivor_id: uuid(event_type, &e.survivor_id)?,
            })
        })
});

impl DomainEvent for CustomerEvent {
    fn encode(&self) -> (String, Vec<u8>) {
        match self {
            CustomerEvent::DataErased { key_id } => named(&proto::CustomerDataErased {
                key_id: key_id.to_string(),
            }),
            CustomerEvent::Registered {
                customer_id,
                profile,
            } => named(&proto::CustomerRegistered {
                customer_id: customer_id.to_string(),
                segment: proto::CustomerSegment::from(profile.segment).into(),
                name_sealed: bytes(profile.name.as_ref()),
                phones_sealed: profile.phones.iter().map(|p| p.0.clone()).collect(),
                emails_sealed: profile.emails.iter().map(|e| e.0.clone()).collect(),
                account_number: profile
                    .account_number
                    .as_ref()
                    .map(|number| number.as_str().to_owned())
                    .unwrap_or_default(),
                address_sealed: bytes(profile.address.as_ref()),
                tags: profile
                    .tags
                    .iter()
                    .map(|tag| tag.as_str().to_owned())
                    .collect(),
                recording_consent: proto::RecordingConsent::from(profile.consent).into(),
            }),
            CustomerEvent::ContactAdded {
                customer_id,
                contact,
            } => {
                let (phone_sealed, email_sealed) = match contact {
                    ContactPoint::Phone(phone) => (phone.0.clone(), Vec::new()),
                    ContactPoint::Email(email) => (Vec::new(), email.0.clone()),
                };
                named(&proto::CustomerContactAdded {
                    customer_id: customer_id.to_string(),
                    phone_sealed,
                    email_sealed,
                })
            }
            CustomerEvent::DetailsChanged {
                customer_id,
                name,
                address,
            } => named(&proto::CustomerDetailsChanged {
                customer_id: customer_id.to_string(),
                name_sealed: bytes(name.as_ref()),
                address_sealed: bytes(address.as_ref()),
            }),
            CustomerEvent::Tagged { customer_id, tag } => named(&proto::CustomerTagged {
                customer_id: customer_id.to_string(),
                tag: tag.as_str().to_owned(),
            }),
            CustomerEvent::Untagged { customer_id, tag } => named(&proto::CustomerUntagged {
                customer_id: customer_id.to_string(),
                tag: tag.as_str().to_owned(),
            }),
            CustomerEvent::ConsentRecorded {
                customer_id,
                consent,
            } => named(&proto::CustomerConsentRecorded {
                customer_id: customer_id.to_string(),
                recording_consent: proto::RecordingConsent::from(*consent).into(),
            }),
            CustomerEvent::ProjectAdded {
                customer_id,
                project_id,
                name,
                site,
            } => named(&proto::CustomerProjectAdded {
                customer_id: customer_id.to_string(),
                project_id: project_id.to_string(),
                name: name.clone(),
                site: site.clone(),
            }),
            CustomerEvent::StakeholderAdded {
                customer_id,
                project_id,
                stakeholder,
            } => named(&proto::CustomerStakeholderAdded {
                customer_id: customer_id.to_string(),
                project_id: project_id.to_string(),
                stakeholder_id: stakeholder.stakeholder_id.to_string(),
                role: proto::StakeholderRole::from(stakeholder.role).into(),
                name_sealed: stakeholder.name.0.clone(),
                phone_sealed: bytes(stakeholder.phone.as_ref()),
                email_sealed: bytes(stakeholder.email.as_ref()),
            }),
            CustomerEvent::Absorbed {
                customer_id,
                merged_id,
            } => named(&proto::CustomerAbsorbed {
                customer_id: customer_id.to_string(),
                merged_id: merged_id.to_string(),
            }),
            CustomerEvent::Merged {
                customer_id,
                survivor_id,
            } => named(&proto::CustomerMerged {
                customer_id: customer_id.to_string(),
                survivor_id: survivor_id.to_string(),
            }),
        }
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        DECODERS.decode(event_type, payload)
    }
}
