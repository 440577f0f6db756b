//! The personal data secret: held outside the database, so the key table reveals nothing
//! on its own (DESIGN §3.8).
//!
//! Subjects (a customer's phone) are stored as a keyed hash, so the table lists nobody. Data
//! keys are stored wrapped (AES-256-GCM), so a key that erasure destroyed cannot be read
//! back from old row versions, free pages or backups: they may still hold its wrapped bytes,
//! never the secret. One configured secret gives both keys (HKDF-SHA256 with distinct
//! labels), so operators manage one value.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// The shortest secret accepted, in bytes.
pub const MINIMUM_SECRET_BYTES: usize = 32;

const SUBJECT_LABEL: &[u8] = b"svcops personal data subject hash v1";
const WRAPPING_LABEL: &[u8] = b"svcops personal data key wrapping v1";
const FINGERPRINT_LABEL: &[u8] = b"svcops personal data secret fingerprint v1";
const NONCE_BYTES: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the personal data secret must be at least {MINIMUM_SECRET_BYTES} bytes")]
    TooShort,
    #[error(
        "data key {0} cannot be unwrapped: it was stored under another personal data secret, \
         or its row is corrupt"
    )]
    Unwrap(Uuid),
    #[error("data key {0} cannot be wrapped")]
    Wrap(Uuid),
    #[error(
        "the personal data keys in this database were stored under another personal data \
         secret: start with the secret they were stored under"
    )]
    Mismatch,
}

/// Keys derived from the personal data secret.
#[derive(Clone)]
pub struct PersonalDataSecret {
    subject_hash: Hmac<Sha256>,
    wrapping: Aes256Gcm,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for PersonalDataSecret {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonalDataSecret(..)")
    }
}

impl PersonalDataSecret {
    /// Derives the subject-hash key and the key-wrapping key from `secret`.
    pub fn new(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < MINIMUM_SECRET_BYTES {
            return Err(Error::TooShort);
        }
        let derivation = hkdf::Hkdf::<Sha256>::new(None, secret);
        let mut subject_key = [0u8; 32];
        let mut wrapping_key = [0u8; 32];
        let mut fingerprint = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit (255 × 32), so expansion cannot fail.
        for (label, output) in [
            (SUBJECT_LABEL, &mut subject_key),
            (WRAPPING_LABEL, &mut wrapping_key),
            (FINGERPRINT_LABEL, &mut fingerprint),
        ] {
            derivation
                .expand(label, output)
                .map_err(|_| Error::TooShort)?;
        }
        Ok(Self {
            subject_hash: <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&subject_key)
                .map_err(|_| Error::TooShort)?,
            wrapping: Aes256Gcm::new_from_slice(&wrapping_key).map_err(|_| Error::TooShort)?,
            fingerprint,
        })
    }

    /// What the database keeps to recognise the secret: derived with a label of its own,
    /// so it reveals neither the secret nor the other keys.
    pub(crate) fn fingerprint(&self) -> &[u8] {
        &self.fingerprint
    }

    /// What the key table stores instead of `subject`: HMAC-SHA256, hex.
    pub(crate) fn subject_hash(&self, subject: &str) -> String {
        let mut mac = self.subject_hash.clone();
        mac.update(subject.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// What the key table stores instead of `key`: sealed, bound to its key id so a wrapped
    /// key copied to another row does not open.
    pub(crate) fn wrap(&self, key_id: Uuid, key: &[u8]) -> Result<Vec<u8>, Error> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .wrapping
            .encrypt(
                &nonce,
                Payload {
                    msg: key,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| Error::Wrap(key_id))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend(sealed);
        Ok(wrapped)
    }

    /// The key that [`PersonalDataSecret::wrap`] wrapped.
    pub(crate) fn unwrap_key(&self, key_id: Uuid, wrapped: &[u8]) -> Result<Vec<u8>, Error> {
        let Some((nonce, sealed)) = wrapped.split_at_checked(NONCE_BYTES) else {
            return Err(Error::Unwrap(key_id));
        };
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| Error::Unwrap(key_id))?;
        self.wrapping
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| Error::Unwrap(key_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_short_secret_is_refused() {
        assert!(matches!(
            PersonalDataSecret::new(b"short"),
            Err(Error::TooShort)
        ));
    }

    #[test]
    fn subject_hashes_are_keyed_and_hide_the_subject() {
        let secret = PersonalDataSecret::new(SECRET).expect("secret");
        let hash = secret.subject_hash("+8613800001234");
        assert_eq!(hash, secret.subject_hash("+8613800001234"), "stable");
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains("13800001234"));
        let other = PersonalDataSecret::new(b"another secret, also 32 bytes long").expect("secret");
        assert_ne!(hash, other.subject_hash("+8613800001234"), "keyed");
    }

    #[test]
    fn wrapped_keys_open_only_with_their_secret_and_key_id() {
        let secret = PersonalDataSecret::new(SECRET).expect("secret");
        let key_id = Uuid::now_v7();
        let wrapped = secret.wrap(key_id, &[7; 32]).expect("wraps");
        assert!(!wrapped.windows(8).any(|window| window == [7; 8]));
        assert_eq!(secret.unwrap_key(key_id, &wrapped).expect("opens"), [7; 32]);
        assert!(secret.unwrap_key(Uuid::now_v7(), &wrapped).is_err());
        let other = PersonalDataSecret::new(b"another secret, also 32 bytes long").expect("secret");
        assert!(other.unwrap_key(key_id, &wrapped).is_err());
        assert!(secret.unwrap_key(key_id, &wrapped[..5]).is_err());
    }
}
