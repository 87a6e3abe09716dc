//! Idempotency keys: what a valid `Idempotency-Key` is, and what a keyed transaction records.
//!
//! A client that may retry a POST sends a key of its choosing with it (a UUID, say). The first
//! POST with a key records the transaction and stores the key with its outcome (the route and
//! the count it answered) in the same atomic commit as the count; every later POST with that key,
//! within the retention window, records nothing and answers the stored outcome again.

//!
//! Keys are per client: with API keys, a key is scoped to the client that sent it, so two
//! clients choosing the same key make two transactions. Without authentication there is one
//! shared scope.

use std::{borrow::Cow, fmt, time::Duration};

use crate::{auth::ClientName, route::Route};

/// Longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 255;
/// The key rule, as published in the OpenAPI document.
pub const KEY_PATTERN: &str = "^[\\x21-\\x7E]{1,255}$";
/// What a caller is told when a key is rejected.
pub const KEY_RULE: &str = "an Idempotency-Key is 1 to 255 visible ASCII characters (0x21-0x7E, \
     no spaces), e.g. a UUID such as 8e03978e-40d5-43e8-bc93-6894a57f9324";

/// A validated idempotency key, taken verbatim from the header, in the scope of the client
/// that sent it (or the shared scope). Equality and hashing include the scope.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey {
    key: String,
    scope: Option<ClientName>,
}

/// Why a header value is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the Idempotency-Key is empty; {KEY_RULE}")]
    Empty,
    #[error("the Idempotency-Key is longer than {MAX_KEY_LEN} characters; {KEY_RULE}")]
    TooLong,
    #[error("the Idempotency-Key has a character outside visible ASCII; {KEY_RULE}")]
    BadCharacter,
    #[error("the request has more than one Idempotency-Key header; send exactly one")]
    Repeated,
}

impl IdempotencyKey {
    /// Checks a header value (raw bytes: a value that is not even UTF-8 is refused, not ignored).
    pub fn parse(raw: &[u8]) -> Result<Self, KeyError> {
        if raw.is_empty() {
            return Err(KeyError::Empty);
        }
        if raw.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong);
        }
        if !raw.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(KeyError::BadCharacter);
        }
        // Visible ASCII is UTF-8.
        let text = std::str::from_utf8(raw).map_err(|_| KeyError::BadCharacter)?;
        Ok(Self {
            key: text.to_owned(),
            scope: None,
        })
    }

    /// The same key in the scope of `client`: another client's identical key is another key.
    pub fn scoped(self, client: &ClientName) -> Self {
        Self {
            key: self.key,
            scope: Some(client.clone()),
        }
    }

    /// The key as the client sent it (for messages).
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The client whose key this is; `None` in the shared scope.
    pub fn client(&self) -> Option<&ClientName> {
        self.scope.as_ref()
    }

    /// What a store records the key under: the raw key in the shared scope (as before clients
    /// existed, so records stored then keep working), `"<client> <key>"` in a client's scope.
    /// Keys never contain a space (visible ASCII only), so the two never collide.
    pub fn record_id(&self) -> Cow<'_, str> {
        match &self.scope {
            None => Cow::Borrowed(&self.key),
            Some(client) => Cow::Owned(format!("{client} {}", self.key)),
        }
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            None => write!(f, "IdempotencyKey({:?})", self.key),
            Some(client) => write!(f, "IdempotencyKey({:?}, client {client})", self.key),
        }
    }
}

/// One keyed transaction, as handed to a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedIncrement {
    pub key: IdempotencyKey,
    pub route: Route,
    /// Now, in seconds since the Unix epoch: a stored key with `expires_at <= now` is gone.
    pub now: u64,
    /// When the key record written by this transaction expires (epoch seconds).
    pub expires_at: u64,
}

/// What a keyed transaction came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedOutcome {
    /// The route the key was first used with (may differ from the one asked for: a conflict).
    pub route: Route,
    /// The count that first POST answered.
    pub count: u64,
    /// Whether the key was already stored, so that nothing was recorded this time.
    pub replayed: bool,
}

impl KeyedOutcome {
    pub fn recorded(route: Route, count: u64) -> Self {
        Self {
            route,
            count,
            replayed: false,
        }
    }

    pub fn replay(route: Route, count: u64) -> Self {
        Self {
            route,
            count,
            replayed: true,
        }
    }
}

/// When a key recorded at `now` expires: at least `retention` later. Times are whole seconds
/// (DynamoDB's TTL attribute is epoch seconds), so the part of the current second already gone
/// is made up by one extra second.
pub fn expiry(now: u64, retention: Duration) -> u64 {
    now.saturating_add(retention.as_secs())
        .saturating_add(u64::from(retention.subsec_nanos() > 0))
        .saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert!(IdempotencyKey::parse(b"8e03978e-40d5-43e8-bc93-6894a57f9324").is_ok());
        assert!(IdempotencyKey::parse(b"!~\"#{}").is_ok());
        assert_eq!(
            IdempotencyKey::parse(&[b'a'; 255]).map(|k| k.as_str().len()),
            Ok(255)
        );
        assert_eq!(IdempotencyKey::parse(b""), Err(KeyError::Empty));
        assert_eq!(IdempotencyKey::parse(&[b'a'; 256]), Err(KeyError::TooLong));
        for bad in [
            &b"a b"[..],
            b"tab\there",
            b"caf\xc3\xa9",
            b"\x7f",
            b"nul\x00",
        ] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(KeyError::BadCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_published_pattern_agrees_with_the_parser() {
        let pattern = regex::Regex::new(KEY_PATTERN).expect("pattern compiles");
        for byte in 0u8..=0x7f {
            let key = [b'k', byte, b'y'];
            let text = std::str::from_utf8(&key).expect("ascii");
            assert_eq!(
                pattern.is_match(text),
                IdempotencyKey::parse(&key).is_ok(),
                "byte {byte:#x}"
            );
        }
        assert!(!pattern.is_match(&"a".repeat(256)));
        assert!(!pattern.is_match(""));
    }

    #[test]
    fn a_key_in_a_clients_scope_is_another_key_recorded_under_the_client() {
        let alice = ClientName::parse("alice").expect("name");
        let bob = ClientName::parse("bob").expect("name");
        let shared = IdempotencyKey::parse(b"order-1").expect("key");
        let of_alice = shared.clone().scoped(&alice);
        let of_bob = shared.clone().scoped(&bob);
        assert_ne!(shared, of_alice);
        assert_ne!(of_alice, of_bob);
        assert_eq!(
            of_alice,
            IdempotencyKey::parse(b"order-1")
                .expect("key")
                .scoped(&alice)
        );
        assert_eq!(shared.record_id(), "order-1");
        assert!(matches!(shared.record_id(), Cow::Borrowed(_)));
        assert_eq!(of_alice.record_id(), "alice order-1");
        assert_eq!(of_alice.as_str(), "order-1");
        assert_eq!(of_alice.client(), Some(&alice));
        assert_eq!(of_alice.to_string(), "order-1");
        assert_eq!(
            format!("{of_alice:?}"),
            "IdempotencyKey(\"order-1\", client alice)"
        );
        let set: std::collections::HashSet<_> = [shared, of_alice, of_bob].into_iter().collect();
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn a_key_lives_at_least_the_retention_window() {
        assert_eq!(expiry(100, Duration::from_secs(60)), 161);
        assert_eq!(expiry(100, Duration::from_millis(1500)), 103);
        assert_eq!(expiry(u64::MAX - 1, Duration::from_secs(60)), u64::MAX);
    }
}
