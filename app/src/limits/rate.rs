//! The request rate of each client: a token bucket per client (GCRA, from `governor`), each
//! request taking one token, a multi-route read one per route it reads.

use std::{fmt, num::NonZeroU32, str::FromStr, time::Duration};

use governor::{
    Quota, RateLimiter, clock::Clock as _, clock::DefaultClock,
    middleware::StateInformationMiddleware, state::keyed::DefaultKeyedStateStore,
};

use super::ClientKey;

/// Most tokens per period or burst accepted: far past what one instance serves.
const MAX_TOKENS: u32 = 10_000_000;

/// A rate with its burst, as `--client-rate-limit` spells it: `200/s`, `12000/m`,
/// `200/s,burst=400`. Without a burst, the bucket holds one period's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    tokens: NonZeroU32,
    period: Duration,
    burst: NonZeroU32,
}

/// The rule, as error messages state it.
const RATE_RULE: &str = "a rate is <requests>/s or <requests>/m, optionally with a burst, e.g. \
     200/s or 200/s,burst=400";

fn tokens(text: &str, what: &str) -> Result<NonZeroU32, String> {
    text.trim()
        .parse::<u32>()
        .ok()
        .and_then(NonZeroU32::new)
        .filter(|n| n.get() <= MAX_TOKENS)
        .ok_or_else(|| format!("{what} {text:?} is not a whole number from 1 to {MAX_TOKENS}"))
}

impl RateLimit {
    pub fn parse(text: &str) -> Result<Self, String> {
        let refuse = |why: String| format!("{why}; {RATE_RULE}");
        let (rate, burst) = match text.split_once(',') {
            Some((rate, burst)) => (rate, Some(burst.trim())),
            None => (text, None),
        };
        let (count, unit) = rate
            .split_once('/')
            .ok_or_else(|| refuse(format!("{text:?} has no /s or /m")))?;
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            other => return Err(refuse(format!("unknown period {other:?}"))),
        };
        let tokens = tokens(count, "the rate").map_err(refuse)?;
        let burst = match burst {
            None => tokens,
            Some(burst) => {
                let value = burst
                    .strip_prefix("burst=")
                    .ok_or_else(|| refuse(format!("{burst:?} is not burst=<requests>")))?;
                crate::limits::rate::tokens(value, "the burst").map_err(refuse)?
            }
        };
        Ok(Self {
            tokens,
            period,
            burst,
        })
    }

    /// Most tokens a client can spend at once.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// Time for one token to come back.
    fn per_token(&self) -> Duration {
        self.period / self.tokens.get()
    }

    /// Whole seconds for an empty bucket to fill: the window of `RateLimit-Policy`.
    pub fn window_seconds(&self) -> u64 {
        (self.per_token() * self.burst.get())
            .as_secs_f64()
            .ceil()
            .max(1.0) as u64
    }

    fn quota(&self) -> Quota {
        // A period of at least one token per 10 million per minute is never zero.
        Quota::with_period(self.per_token())
            .unwrap_or_else(|| Quota::per_second(self.tokens))
            .allow_burst(self.burst)
    }
}

impl FromStr for RateLimit {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.period.as_secs() == 60 {
            "m"
        } else {
            "s"
        };
        write!(f, "{}/{unit},burst={}", self.tokens, self.burst)
    }
}

/// What a request's tokens came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Taken.
    Allowed,
    /// Not enough tokens now: the bucket holds enough again after `retry_after`.
    Limited { retry_after: Duration },
    /// The request costs more tokens than the bucket ever holds (a multi-route read of more
    /// routes than the burst): it can never pass as it is.
    TooCostly { cost: u32 },
}

type Limiter = RateLimiter<
    ClientKey,
    DefaultKeyedStateStore<ClientKey>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// One token bucket per client.
pub struct ClientRates {
    limit: RateLimit,
    limiter: Limiter,
}

impl ClientRates {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            limiter: RateLimiter::keyed(limit.quota())
                .with_middleware::<StateInformationMiddleware>(),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes `cost` tokens (at least one) from the client's bucket, or says why not. A
    /// refused request takes nothing.
    pub fn charge(&self, client: &ClientKey, cost: u32) -> Charge {
        let cost = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN);
        match self.limiter.check_key_n(client, cost) {
            Ok(Ok(_)) => Charge::Allowed,
            Ok(Err(not_until)) => Charge::Limited {
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            },
            Err(_) => Charge::TooCostly { cost: cost.get() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ClientName;

    #[test]
    fn rates_parse_with_or_without_a_burst() {
        let parsed = |text: &str| RateLimit::parse(text).map(|r| r.to_string());
        assert_eq!(parsed("200/s").as_deref(), Ok("200/s,burst=200"));
        assert_eq!(parsed("200/s,burst=400").as_deref(), Ok("200/s,burst=400"));
        assert_eq!(parsed(" 60 / m , burst=5").as_deref(), Ok("60/m,burst=5"));
        for (bad, says) in [
            ("", "no /s or /m"),
            ("200", "no /s or /m"),
            ("200/h", "unknown period"),
            ("0/s", "1 to"),
            ("-1/s", "1 to"),
            ("x/s", "1 to"),
            ("20000000/s", "1 to"),
            ("200/s,400", "burst=<requests>"),
            ("200/s,burst=0", "the burst"),
            ("200/s,burst=", "the burst"),
        ] {
            let err = RateLimit::parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.contains("e.g. 200/s"), "{bad}: {err}");
        }
        let limit = RateLimit::parse("200/s,burst=400").expect("valid");
        assert_eq!((limit.burst(), limit.window_seconds()), (400, 2));
        let limit = RateLimit::parse("60/m").expect("valid");
        assert_eq!((limit.burst(), limit.window_seconds()), (60, 60));
        let limit = RateLimit::parse("3/s,burst=1").expect("valid");
        assert_eq!(limit.window_seconds(), 1);
    }

    #[test]
    fn each_client_has_its_own_bucket_and_a_costly_request_takes_its_cost() {
        let rates = ClientRates::new(RateLimit::parse("10/m,burst=5").expect("valid"));
        let alice = Some(ClientName::parse("alice").expect("name"));
        let bob = Some(ClientName::parse("bob").expect("name"));
        for _ in 0..5 {
            assert_eq!(rates.charge(&alice, 1), Charge::Allowed);
        }
        let Charge::Limited { retry_after } = rates.charge(&alice, 1) else {
            panic!("alice is limited");
        };
        // One token comes back every 6 s.
        assert!(
            retry_after > Duration::from_secs(5) && retry_after <= Duration::from_secs(6),
            "{retry_after:?}"
        );
        assert_eq!(rates.charge(&bob, 4), Charge::Allowed, "bob is not alice");
        assert!(matches!(rates.charge(&bob, 2), Charge::Limited { .. }));
        assert_eq!(
            rates.charge(&bob, 1),
            Charge::Allowed,
            "a refusal took nothing"
        );
        assert_eq!(rates.charge(&None, 6), Charge::TooCostly { cost: 6 });
        assert_eq!(
            rates.charge(&None, 5),
            Charge::Allowed,
            "anonymous has its bucket"
        );
        assert!(
            matches!(rates.charge(&None, 0), Charge::Limited { .. }),
            "a request costs at least one token"
        );
    }
}
