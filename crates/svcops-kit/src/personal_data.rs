//! Personal data sealed per data subject (crypto-shredding, DESIGN §3.8).
//!
//! Events are immutable, so personal data in them is encrypted with a key of its own per
//! subject (today: per customer phone) kept outside the log, in a mutable table. Erasing the
//! subject destroys the key: every event that carried the data stays in the log, readable in
//! all other respects, and the personal data in it can no longer be read by anyone.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};

/// Length of a data key (AES-256).
pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a data key must be {KEY_BYTES} bytes")]
    BadKey,
    #[error("sealed data is corrupt or was sealed with another key")]
    Unreadable,
}

/// A fresh random data key.
pub fn new_key() -> [u8; KEY_BYTES] {
    Aes256Gcm::generate_key(OsRng).into()
}

/// Encrypts `plaintext` with `key` (AES-256-GCM, random nonce prepended).
pub fn seal(key: &[u8], plaintext: &str) -> Result<Vec<u8>, Error> {
    let cipher = cipher(key)?;
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let mut sealed = nonce.to_vec();
    sealed.extend(
        cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .map_err(|_| Error::Unreadable)?,
    );
    Ok(sealed)
}

/// Decrypts what [`seal`] produced.
pub fn open(key: &[u8], sealed: &[u8]) -> Result<String, Error> {
    let cipher = cipher(key)?;
    if sealed.len() < NONCE_BYTES {
        return Err(Error::Unreadable);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| Error::Unreadable)?;
    let plaintext = cipher
        .decrypt(&Nonce::from(nonce), ciphertext)
        .map_err(|_| Error::Unreadable)?;
    String::from_utf8(plaintext).map_err(|_| Error::Unreadable)
}

/// Masks a phone for roles that do not need it: keeps the first three and last four
/// characters, or hides everything when that would reveal most of it.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    let hidden = chars.len() - 7;
    format!(
        "{}{}{}",
        chars[..3].iter().collect::<String>(),
        "*".repeat(hidden),
        chars[chars.len() - 4..].iter().collect::<String>()
    )
}

/// A name as a role that does not need it sees it: its first character, the rest starred
/// ("李**", "J***").
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => format!("{first}{}", "*".repeat(chars.count().max(1))),
        None => String::new(),
    }
}

/// An email as a role that does not need it sees it: the first character of the local
/// part and the domain ("l***@example.com").
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".to_owned(),
    }
}

/// Free personal text (an address) as a role that does not need it sees it: nothing but
/// that there is some.
pub fn mask_text(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        "***".to_owned()
    }
}

fn cipher(key: &[u8]) -> Result<Aes256Gcm, Error> {
    Aes256Gcm::new_from_slice(key).map_err(|_| Error::BadKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_emails_and_addresses_are_masked() {
        assert_eq!(mask_name("李伟"), "李*");
        assert_eq!(mask_name("Jane Doe"), "J*******");
        assert_eq!(mask_name("X"), "X*");
        assert_eq!(mask_name(""), "");
        assert_eq!(mask_email("li.wei@example.com"), "l***@example.com");
        assert_eq!(mask_text("上海市浦东新区 1 号"), "***");
        assert_eq!(mask_text(""), "");
    }

    #[test]
    fn sealed_data_opens_with_its_key_only() {
        let key = new_key();
        let sealed = seal(&key, "+8613800001234").expect("seal");
        assert!(
            !sealed.windows(4).any(|window| window == b"1234"),
            "not plaintext"
        );
        assert_eq!(open(&key, &sealed).expect("open"), "+8613800001234");
        assert!(open(&new_key(), &sealed).is_err());
        assert!(open(&key, &sealed[..5]).is_err());
        assert!(matches!(seal(b"short", "x"), Err(Error::BadKey)));
    }

    #[test]
    fn masking_keeps_only_the_ends_of_long_numbers() {
        assert_eq!(mask_phone("+8613800001234"), "+86*******1234");
        assert_eq!(mask_phone("1234567"), "*******");
        assert_eq!(mask_phone(""), "");
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let key = new_key();
        assert_ne!(
            seal(&key, "a").expect("seal"),
            seal(&key, "a").expect("seal")
        );
    }
}
