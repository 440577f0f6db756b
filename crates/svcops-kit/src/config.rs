//! Configuration from an optional TOML file, overridden by environment variables.
//!
//! `SVCOPS_DATABASE_URL` overrides `database_url`; nested keys use a double underscore:
//! `SVCOPS_KAFKA__BOOTSTRAP_SERVERS`. A bad or missing value is reported with its key, so a
//! service fails fast at start-up with a message that says what to fix.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config file {0} does not exist")]
    MissingFile(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Loads `T` from `file` (if given) and `SVCOPS_*` environment variables.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, Error> {
    let mut figment = Figment::new();
    if let Some(file) = file {
        if !file.exists() {
            return Err(Error::MissingFile(file.display().to_string()));
        }
        figment = figment.merge(Toml::file(file));
    }
    figment
        .merge(Env::prefixed("SVCOPS_").split("__"))
        .extract()
        .map_err(|error| Error::Invalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Sample {
        #[allow(dead_code)]
        listen: String,
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = load::<Sample>(Some(Path::new("/nonexistent/svcops.toml"))).expect_err("fails");
        assert!(error.to_string().contains("/nonexistent/svcops.toml"));
    }
}
