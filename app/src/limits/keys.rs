//! The cap on idempotency keys each client creates through this instance within the retention
//! window (`--client-max-idempotency-keys`).
//!
//! Every key stays in the store for the retention window, so a client sending new keys without
//! end grows the store without end. Only new keys count: a replay creates nothing, and is
//! always answered, at the cap too. To tell one from the other before the store is touched,
//! this instance remembers a 64-bit hash (keyed with a per-process secret) of each key it
//! created, in per-minute buckets that are dropped once their keys have expired from the store:
//! 8 bytes per key in the buckets and about 16 in the lookup set, so at most about 24 bytes
//! times the cap per client. A key another instance created, or that this one created before a
//! restart, is unknown here: at the cap it is refused like a new key until the window frees
//! room.

use std::{
    collections::{HashMap, VecDeque},
    hash::BuildHasher as _,
    sync::Mutex,
    time::Duration,
};

use rustc_hash::FxHashSet;
// Tokio's monotonic clock, which tests may pause and move, as for every other timer.
use tokio::time::Instant;

use super::ClientKey;
use crate::idempotency::IdempotencyKey;

/// Longest time span of one bucket.
const MAX_BUCKET: Duration = Duration::from_secs(60);

/// The keys one client created within the window.
#[derive(Default)]
struct ClientKeys {
    /// Oldest first: (the bucket's index, the hashes of the keys created in it).
    buckets: VecDeque<(u64, Vec<u64>)>,
    known: FxHashSet<u64>,
    /// Keys being committed now, counted against the cap until their outcome is known.
    reserved: u64,
}

/// The cap, and what each client created.
pub struct KeyQuota {
    max: u64,
    retention: Duration,
    bucket: Duration,
    started: Instant,
    hasher: std::hash::RandomState,
    clients: Mutex<HashMap<ClientKey, ClientKeys>>,
}

/// Whether a keyed POST may go to the store.
#[must_use]
pub enum KeyAdmission<'a> {
    /// Under the cap: the reservation counts the key once the store says it is new.
    Admitted(KeyReservation<'a>),
    /// At the cap, but a key this instance created: a replay, which creates nothing.
    Known,
    /// At the cap, and a key this instance does not know: room frees after `retry_after`.
    Refused { retry_after: Duration },
}

/// A place under the cap, held while a keyed POST is committed; given back when dropped, and
/// turned into a counted key by [`KeyReservation::created`].
pub struct KeyReservation<'a> {
    quota: &'a KeyQuota,
    client: ClientKey,
    hash: u64,
}

impl KeyQuota {
    /// A cap of `max` keys per client, each counted for `retention` (rounded up to the bucket:
    /// a minute at most).
    pub fn new(max: u64, retention: Duration) -> Self {
        let bucket = (retention / 60).clamp(Duration::from_secs(1), MAX_BUCKET);
        Self {
            max,
            retention,
            bucket,
            started: Instant::now(),
            hasher: std::hash::RandomState::new(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The cap's window in whole seconds, for `RateLimit-Policy`.
    pub fn window_seconds(&self) -> u64 {
        self.retention.as_secs().max(1)
    }

    fn bucket_at(&self, now: Instant) -> u64 {
        (now.duration_since(self.started).as_nanos() / self.bucket.as_nanos().max(1)) as u64
    }

    /// When a bucket's keys have all left the store, and so leave the count.
    fn bucket_expiry(&self, index: u64) -> Instant {
        let end = self
            .bucket
            .saturating_mul(u32::try_from(index + 1).unwrap_or(u32::MAX));
        self.started + end + self.retention
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, ClientKeys>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keys `client` created within the window, as of `now`.
    pub fn created(&self, client: &ClientKey) -> u64 {
        let mut clients = self.lock();
        clients.get_mut(client).map_or(0, |keys| {
            self.expire(keys, Instant::now());
            keys.known.len() as u64
        })
    }

    fn expire(&self, keys: &mut ClientKeys, now: Instant) {
        while let Some((index, _)) = keys.buckets.front()
            && self.bucket_expiry(*index) <= now
        {
            if let Some((_, hashes)) = keys.buckets.pop_front() {
                for hash in hashes {
                    keys.known.remove(&hash);
                }
            }
        }
    }

    /// Decides whether a keyed POST of `client` may go to the store.
    pub fn admit(&self, client: &ClientKey, key: &IdempotencyKey) -> KeyAdmission<'_> {
        let now = Instant::now();
        let hash = self.hasher.hash_one(key.record_id().as_ref());
        let mut clients = self.lock();
        let keys = clients.entry(client.clone()).or_default();
        self.expire(keys, now);
        if (keys.known.len() as u64).saturating_add(keys.reserved) < self.max {
            keys.reserved += 1;
            return KeyAdmission::Admitted(KeyReservation {
                quota: self,
                client: client.clone(),
                hash,
            });
        }
        if keys.known.contains(&hash) {
            return KeyAdmission::Known;
        }
        // Room frees when the oldest bucket expires (or a reserved key turns out a replay).
        let retry_after = keys
            .buckets
            .front()
            .map_or(Duration::from_secs(1), |(index, _)| {
                self.bucket_expiry(*index).saturating_duration_since(now)
            });
        KeyAdmission::Refused { retry_after }
    }
}

impl KeyReservation<'_> {
    /// The store created the key: it counts from now for the retention window.
    pub fn created(self) {
        let now = Instant::now();
        let index = self.quota.bucket_at(now);
        let mut clients = self.quota.lock();
        let keys = clients.entry(self.client.clone()).or_default();
        if keys.known.insert(self.hash) {
            match keys.buckets.back_mut() {
                Some((last, hashes)) if *last == index => hashes.push(self.hash),
                _ => keys.buckets.push_back((index, vec![self.hash])),
            }
        }
        // Dropping `self` gives the reservation back.
    }
}

impl Drop for KeyReservation<'_> {
    fn drop(&mut self) {
        let mut clients = self.quota.lock();
        if let Some(keys) = clients.get_mut(&self.client) {
            keys.reserved = keys.reserved.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ClientName;

    fn key(text: &str) -> IdempotencyKey {
        IdempotencyKey::parse(text.as_bytes()).expect("key")
    }

    fn admitted(admission: KeyAdmission<'_>) -> KeyReservation<'_> {
        match admission {
            KeyAdmission::Admitted(reservation) => reservation,
            KeyAdmission::Known => panic!("known"),
            KeyAdmission::Refused { .. } => panic!("refused"),
        }
    }

    #[test]
    fn new_keys_count_up_to_the_cap_and_replays_never_do() {
        let quota = KeyQuota::new(3, Duration::from_secs(24 * 60 * 60));
        let alice = Some(ClientName::parse("alice").expect("name"));
        for name in ["k1", "k2"] {
            admitted(quota.admit(&alice, &key(name))).created();
        }
        // A replay under the cap: admitted, and not counted once the store says so.
        drop(admitted(quota.admit(&alice, &key("k1"))));
        assert_eq!(quota.created(&alice), 2);
        // Reserved places count while in flight.
        let third = admitted(quota.admit(&alice, &key("k3")));
        assert!(matches!(
            quota.admit(&alice, &key("k4")),
            KeyAdmission::Refused { .. }
        ));
        third.created();
        assert_eq!(quota.created(&alice), 3);
        // At the cap: a known key passes as a replay, an unknown one is refused until the
        // oldest bucket leaves the window.
        assert!(matches!(
            quota.admit(&alice, &key("k2")),
            KeyAdmission::Known
        ));
        match quota.admit(&alice, &key("k4")) {
            KeyAdmission::Refused { retry_after } => {
                assert!(
                    retry_after > Duration::from_secs(23 * 60 * 60),
                    "{retry_after:?}"
                );
                assert!(retry_after <= Duration::from_secs(24 * 60 * 60 + 60));
            }
            _ => panic!("k4 is a fourth key"),
        }
        // Other clients, and the anonymous one, have their own count; the same key text from
        // another client is another key.
        let bob = Some(ClientName::parse("bob").expect("name"));
        admitted(quota.admit(&bob, &key("k4").scoped(bob.as_ref().expect("bob")))).created();
        admitted(quota.admit(&None, &key("k1"))).created();
        assert_eq!((quota.created(&bob), quota.created(&None)), (1, 1));
    }

    #[test]
    fn keys_leave_the_count_when_their_window_ends() {
        let quota = KeyQuota::new(2, Duration::from_secs(1));
        for name in ["a", "b"] {
            admitted(quota.admit(&None, &key(name))).created();
        }
        let KeyAdmission::Refused { retry_after } = quota.admit(&None, &key("c")) else {
            panic!("at the cap");
        };
        assert!(retry_after <= Duration::from_secs(2), "{retry_after:?}");
        std::thread::sleep(retry_after + Duration::from_millis(50));
        assert_eq!(quota.created(&None), 0);
        admitted(quota.admit(&None, &key("c"))).created();
    }
}
