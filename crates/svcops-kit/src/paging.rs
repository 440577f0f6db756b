//! AIP-158 paging: page sizes and opaque page tokens.

use tonic::Status;

use crate::ApiError;

/// Largest page a list returns.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Page size when the caller asks for 0.
pub const DEFAULT_PAGE_SIZE: usize = 50;

/// Parses `page_size` and a token made by [`token`]: (size, position to continue before).
pub fn parse(page_size: i32, page_token: &str) -> Result<(usize, Option<i64>), Status> {
    let size = match page_size {
        0 => DEFAULT_PAGE_SIZE,
        size if size < 0 => {
            return Err(ApiError::invalid("page_size", "must not be negative").into());
        }
        size => usize::try_from(size)
            .unwrap_or(MAX_PAGE_SIZE)
            .min(MAX_PAGE_SIZE),
    };
    if page_token.is_empty() {
        return Ok((size, None));
    }
    let position = page_token
        .strip_prefix("p")
        .and_then(|position| position.parse::<i64>().ok())
        .ok_or_else(|| {
            Status::from(ApiError::invalid(
                "page_token",
                "not a token this service issued",
            ))
        })?;
    Ok((size, Some(position)))
}

/// The token for the next page, empty when there is none.
pub fn token(next: Option<i64>) -> String {
    next.map(|position| format!("p{position}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_tokens_are_checked() {
        assert_eq!(parse(0, "").expect("ok"), (DEFAULT_PAGE_SIZE, None));
        assert_eq!(parse(5000, "p12").expect("ok"), (MAX_PAGE_SIZE, Some(12)));
        assert!(parse(-1, "").is_err());
        assert!(parse(10, "garbage").is_err());
        assert_eq!(token(Some(7)), "p7");
        assert_eq!(token(None), "");
    }
}
