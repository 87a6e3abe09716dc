//! API keys themselves: making one, and the digest the keys file holds.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Every generated key starts with this, so a leaked key is recognisable in a secret scanner.
pub const KEY_PREFIX: &str = "fck_";

/// Random bytes in a generated key: 256 bits, far past guessing.
const KEY_BYTES: usize = 32;

/// A new key from the operating system's random source: `fck_` and 43 base64url characters.
pub fn generate_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The SHA-256 digest of a key, as the key table is indexed.
pub fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// The SHA-256 digest of a key in lowercase hex, as the keys file spells it.
pub fn digest_hex(key: &str) -> String {
    hex::encode(digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_distinct_and_url_safe() {
        let a = generate_key().expect("random");
        let b = generate_key().expect("random");
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        assert!(
            a[KEY_PREFIX.len()..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{a}"
        );
    }

    #[test]
    fn the_digest_is_sha256_in_lowercase_hex() {
        assert_eq!(
            digest_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
