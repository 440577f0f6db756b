//! The one mapping from svcops errors to gRPC statuses, with `google.rpc` details.
//!
//! Services convert their module errors into [`ApiError`] and never build a
//! `tonic::Status` by hand, so codes and details stay consistent across the cluster.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Error domain in `google.rpc.ErrorInfo`.
const DOMAIN: &str = "svcops";

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{resource} {id} not found")]
    NotFound { resource: &'static str, id: String },
    #[error("{0}")]
    FailedPrecondition(String),
    /// What the request would create exists already (another customer holds the phone).
    #[error("{0}")]
    AlreadyExists(String),
    /// A concurrent change won; the caller may re-read and retry.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// Too much work queued behind the front door: retry after `retry_after`.
    #[error("{reason}; retry in {} s", retry_after.as_secs().max(1))]
    ResourceExhausted {
        reason: String,
        retry_after: std::time::Duration,
    },
    /// A bug or corruption: details go to the log, not to the caller.
    #[error("internal error")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|violation| format!("{}: {}", violation.field, violation.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    fn code_and_reason(&self) -> (Code, &'static str) {
        match self {
            Self::InvalidArgument(_) => (Code::InvalidArgument, "INVALID_ARGUMENT"),
            Self::NotFound { .. } => (Code::NotFound, "NOT_FOUND"),
            Self::FailedPrecondition(_) => (Code::FailedPrecondition, "FAILED_PRECONDITION"),
            Self::AlreadyExists(_) => (Code::AlreadyExists, "ALREADY_EXISTS"),
            Self::Conflict(_) => (Code::Aborted, "CONCURRENT_MODIFICATION"),
            Self::Unavailable(_) => (Code::Unavailable, "DEPENDENCY_UNAVAILABLE"),
            Self::PermissionDenied(_) => (Code::PermissionDenied, "PERMISSION_DENIED"),
            Self::ResourceExhausted { .. } => (Code::ResourceExhausted, "PIPELINE_LAGGING"),
            Self::Internal(_) => (Code::Internal, "INTERNAL"),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let (code, reason) = error.code_and_reason();
        let mut details = ErrorDetails::new();
        details.set_error_info(reason, DOMAIN, std::collections::HashMap::new());
        match &error {
            ApiError::InvalidArgument(violations) => {
                for violation in violations {
                    details.add_bad_request_violation(&violation.field, &violation.description);
                }
            }
            ApiError::ResourceExhausted { retry_after, .. } => {
                details.set_retry_info(Some(*retry_after));
            }
            ApiError::Internal(detail) => tracing::error!(%detail, "internal error"),
            ApiError::Unavailable(detail) => tracing::warn!(%detail, "dependency unavailable"),
            _ => {}
        }
        Status::with_error_details(code, error.to_string(), details)
    }
}

impl From<svcops_bus::lag::Overloaded> for ApiError {
    fn from(overloaded: svcops_bus::lag::Overloaded) -> Self {
        Self::ResourceExhausted {
            reason: format!(
                "svcops is busy: {} is {:.1} s behind (the bound is {} s)",
                overloaded.source,
                overloaded.lag.as_secs_f64(),
                overloaded.max_lag.as_secs()
            ),
            retry_after: overloaded.retry_after,
        }
    }
}

impl From<svcops_eventstore::Error> for ApiError {
    fn from(error: svcops_eventstore::Error) -> Self {
        use svcops_eventstore::Error as Store;
        match error {
            Store::Concurrency { .. } => Self::Conflict(format!("{error}; re-read and retry")),
            Store::Precondition(reason) => Self::FailedPrecondition(reason),
            Store::Unavailable(_) | Store::ReadModelNotReady { .. } => {
                Self::Unavailable(error.to_string())
            }
            Store::IdempotencyKeyReused { .. } => Self::invalid(
                "request_id",
                "was already used by a different request; use a new request_id",
            ),
            // The edge validates whatever a caller can send; data the database still refuses
            // is a bug of ours, and its message may quote stored values: log it, say nothing.
            Store::Rejected(_)
            | Store::Invalid(_)
            | Store::Migration(_)
            | Store::Corrupt { .. }
            | Store::ReadModel { .. }
            | Store::PersonalData(_) => Self::Internal(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations_and_error_info() {
        let status = Status::from(ApiError::InvalidArgument(vec![
            FieldViolation::new("customer_phone", "must have 6 to 15 digits"),
            FieldViolation::new("category", "must be set"),
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("has field violations");
        assert_eq!(bad_request.field_violations.len(), 2);
        assert_eq!(bad_request.field_violations[0].field, "customer_phone");
        assert_eq!(
            details.error_info().expect("has error info").reason,
            "INVALID_ARGUMENT"
        );
        assert!(
            status
                .message()
                .contains("customer_phone: must have 6 to 15 digits")
        );
    }

    #[test]
    fn a_lagging_pipeline_is_resource_exhausted_with_when_to_retry() {
        let status = Status::from(ApiError::from(svcops_bus::lag::Overloaded {
            source: "consumer:back-office".into(),
            lag: std::time::Duration::from_millis(12_300),
            max_lag: std::time::Duration::from_secs(10),
            retry_after: std::time::Duration::from_secs(3),
        }));
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        assert_eq!(
            details.retry_info().expect("retry info").retry_delay,
            Some(std::time::Duration::from_secs(3))
        );
        assert_eq!(
            status.message(),
            "svcops is busy: consumer:back-office is 12.3 s behind (the bound is 10 s); retry in 3 s"
        );
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let status = Status::from(ApiError::Internal("disk on fire at /var/lib".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("disk"));
    }

    #[test]
    fn a_reused_request_id_is_an_invalid_argument_on_that_field() {
        let status = Status::from(ApiError::from(
            svcops_eventstore::Error::IdempotencyKeyReused {
                key: "front-office/open-case/…".into(),
            },
        ));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("has field violations");
        assert_eq!(bad_request.field_violations[0].field, "request_id");
    }

    #[test]
    fn concurrency_maps_to_aborted() {
        let status = Status::from(ApiError::from(svcops_eventstore::Error::Concurrency {
            stream_id: "case-1".into(),
            expected: svcops_eventstore::ExpectedVersion::Exact(3),
        }));
        assert_eq!(status.code(), Code::Aborted);
    }
}
