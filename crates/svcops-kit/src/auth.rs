//! Bearer-token (JWT, HS256) authentication and role checks.
//!
//! Every gRPC service is wrapped in [`Authenticator::interceptor`], which rejects requests
//! without a valid token (`UNAUTHENTICATED`) and stores the caller's [`Principal`] in the
//! request; each handler then calls [`authorize`] with the roles its RPC admits
//! (`PERMISSION_DENIED` otherwise). `admin` is admitted everywhere.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tonic::{Request, Status};

const ISSUER: &str = "svcops";
/// Shortest secret accepted: HS256 wants at least as many bytes as the hash output.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("token secret must be at least {MIN_SECRET_BYTES} bytes")]
    WeakSecret,
    #[error(
        "unknown role {0:?} (expected one of agent, technician, qa, manager, executive, service, admin)"
    )]
    UnknownRole(String),
    #[error("invalid token: {0}")]
    InvalidToken(#[from] jsonwebtoken::errors::Error),
    #[error("subject must be 1 to 128 characters, none of them a control character")]
    BadSubject,
}

/// What a caller may be. Each RPC lists the roles it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Agent,
    Technician,
    Qa,
    Manager,
    Executive,
    /// Another system calling svcops.
    Service,
    Admin,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Agent,
        Role::Technician,
        Role::Qa,
        Role::Manager,
        Role::Executive,
        Role::Service,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Technician => "technician",
            Role::Qa => "qa",
            Role::Manager => "manager",
            Role::Executive => "executive",
            Role::Service => "service",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may see personal data (phones, names, addresses) unmasked.
    pub fn sees_personal_data(self) -> bool {
        matches!(
            self,
            Role::Agent | Role::Technician | Role::Service | Role::Admin
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == value)
            .ok_or_else(|| Error::UnknownRole(value.to_owned()))
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iss: String,
    iat: i64,
    exp: i64,
}

/// Signs tokens and verifies them, with one shared secret.
#[derive(Clone)]
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    pub fn new(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::WeakSecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 30;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// Issues a token for `subject` with `role`, valid for `lifetime`.
    pub fn issue(&self, subject: &str, role: Role, lifetime: Duration) -> Result<String, Error> {
        check_subject(subject)?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies a token and returns its principal.
    pub fn verify(&self, token: &str) -> Result<Principal, Error> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?;
        // The subject is the actor on every event and part of idempotency keys: a token
        // signed elsewhere with the same secret must meet the same rules as ours.
        check_subject(&data.claims.sub)?;
        Ok(Principal {
            subject: data.claims.sub,
            role: data.claims.role,
        })
    }

    /// A tonic interceptor authenticating every request.
    pub fn interceptor(&self) -> impl tonic::service::Interceptor + Clone + use<> {
        let authenticator = self.clone();
        move |mut request: Request<()>| {
            let principal = authenticator.authenticate(request.metadata())?;
            request.extensions_mut().insert(principal);
            Ok(request)
        }
    }

    /// Reads and verifies the `authorization: Bearer …` metadata.
    pub fn authenticate(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Principal, Status> {
        let header = metadata
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        self.verify(token.trim())
            .map_err(|error| Status::unauthenticated(error.to_string()))
    }
}

/// A subject is 1 to 128 characters, none of them a control character.
fn check_subject(subject: &str) -> Result<(), Error> {
    if subject.is_empty() || subject.chars().count() > 128 || subject.chars().any(char::is_control)
    {
        return Err(Error::BadSubject);
    }
    Ok(())
}

/// Checks that the authenticated caller holds one of `allowed` (or is admin).
pub fn authorize<T>(request: &Request<T>, allowed: &[Role]) -> Result<Principal, Status> {
    let principal = request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("request was not authenticated"))?;
    if principal.role == Role::Admin || allowed.contains(&principal.role) {
        Ok(principal)
    } else {
        Err(Status::permission_denied(format!(
            "role {} may not call this method",
            principal.role
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator() -> Authenticator {
        Authenticator::new(&[7; 32]).expect("valid secret")
    }

    #[test]
    fn issued_tokens_verify_with_subject_and_role() {
        let auth = authenticator();
        let token = auth
            .issue("alice", Role::Executive, Duration::from_secs(60))
            .expect("issues");
        let principal = auth.verify(&token).expect("verifies");
        assert_eq!(principal.subject, "alice");
        assert_eq!(principal.role, Role::Executive);
    }

    #[test]
    fn a_token_signed_with_another_secret_is_rejected() {
        let other = Authenticator::new(&[8; 32]).expect("valid secret");
        let token = other
            .issue("mallory", Role::Admin, Duration::from_secs(60))
            .expect("issues");
        assert!(authenticator().verify(&token).is_err());
    }

    #[test]
    fn an_expired_token_is_rejected() {
        let auth = authenticator();
        let claims = Claims {
            sub: "bob".into(),
            role: Role::Agent,
            iss: ISSUER.into(),
            iat: 0,
            exp: 1,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &auth.encoding)
            .expect("encodes");
        assert!(auth.verify(&token).is_err());
    }

    #[test]
    fn a_validly_signed_token_with_a_bad_subject_is_rejected() {
        let auth = authenticator();
        for subject in ["", "alice\0", "bob\n", &"x".repeat(129)] {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let claims = Claims {
                sub: subject.to_owned(),
                role: Role::Agent,
                iss: ISSUER.into(),
                iat: now,
                exp: now + 60,
            };
            let token =
                jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &auth.encoding)
                    .expect("encodes");
            assert!(
                matches!(auth.verify(&token), Err(Error::BadSubject)),
                "{subject:?}"
            );
        }
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(matches!(
            Authenticator::new(b"short"),
            Err(Error::WeakSecret)
        ));
    }

    #[test]
    fn roles_parse_and_print() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().expect("parses"), role);
        }
        assert!("boss".parse::<Role>().is_err());
    }

    #[test]
    fn authorize_admits_listed_roles_and_admin_only() {
        let mut request = Request::new(());
        request.extensions_mut().insert(Principal {
            subject: "a".into(),
            role: Role::Agent,
        });
        assert!(authorize(&request, &[Role::Agent]).is_ok());
        let denied = authorize(&request, &[Role::Executive]).expect_err("denied");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        request.extensions_mut().insert(Principal {
            subject: "root".into(),
            role: Role::Admin,
        });
        assert!(authorize(&request, &[Role::Executive]).is_ok());
        let anonymous = Request::new(());
        assert_eq!(
            authorize(&anonymous, &[Role::Agent])
                .expect_err("denied")
                .code(),
            tonic::Code::Unauthenticated
        );
    }
}
