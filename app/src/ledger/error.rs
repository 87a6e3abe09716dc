//! Why a transaction was not recorded or a count not read, in the kinds a caller acts on: the
//! route is full, the store is unavailable or throttling (retry after a delay), or the service
//! is shutting down. The store's own error stays attached as the source, for logs.

use std::time::Duration;

use crate::{route::Route, store::StoreError};

/// How long a caller should wait before retrying a write the store could not take: about one
/// commit timeout's worth of pacing and probing goes by in less.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// The route's count is at its largest value: nothing was recorded on it. Only a store
    /// altered by hand can hold such a count; other routes are not affected.
    #[error("the count of route {0} is at its largest value")]
    Full(Route),
    /// The store cannot commit or answer right now; nothing was recorded.
    #[error("the store is unavailable")]
    Unavailable {
        retry_after: Duration,
        #[source]
        cause: Unavailability,
    },
    /// The store refused the request for exceeding its rate; nothing was recorded.
    #[error("the store is throttling requests")]
    Throttled {
        retry_after: Duration,
        #[source]
        cause: StoreError,
    },
    #[error("the service is shutting down")]
    ShuttingDown,
}

/// What made the store unavailable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unavailability {
    #[error(transparent)]
    Store(StoreError),
    #[error("the store did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the store returned {returned} outcomes for {sent} writes")]
    WrongOutcomes { sent: usize, returned: usize },
}

impl LedgerError {
    pub fn timed_out(after: Duration) -> Self {
        Unavailability::TimedOut(after).into()
    }

    pub fn wrong_outcomes(sent: usize, returned: usize) -> Self {
        Unavailability::WrongOutcomes { sent, returned }.into()
    }
}

impl From<Unavailability> for LedgerError {
    fn from(cause: Unavailability) -> Self {
        LedgerError::Unavailable {
            retry_after: RETRY_AFTER,
            cause,
        }
    }
}

impl From<StoreError> for LedgerError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Overflow(route) => LedgerError::Full(route),
            StoreError::Throttled { .. } => LedgerError::Throttled {
                retry_after: RETRY_AFTER,
                cause: err,
            },
            StoreError::Unavailable { .. } => Unavailability::Store(err).into(),
        }
    }
}
