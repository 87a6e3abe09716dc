//! Per-client limits of one instance: a token bucket of requests (`--client-rate-limit`) and a
//! cap on the idempotency keys it creates (`--client-max-idempotency-keys`).
//!
//! Both are kept per client of the keys file (requests without a key share the `anonymous`
//! bucket), in this process's memory: with several instances behind a load balancer, each
//! one limits what reaches it. Nothing here knows HTTP: the API layer asks, and turns a
//! refusal into a `429`.

mod keys;
mod rate;

pub use keys::{KeyAdmission, KeyQuota, KeyReservation};
pub use rate::{Charge, ClientRates, RateLimit};

/// A client's bucket: its name, or `None` for requests without a key.
pub type ClientKey = Option<crate::auth::ClientName>;

/// Every per-client limit in force; `None` where a limit is off.
#[derive(Default)]
pub struct ClientLimits {
    pub rates: Option<ClientRates>,
    pub keys: Option<KeyQuota>,
}
