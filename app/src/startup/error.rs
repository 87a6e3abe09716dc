//! Why the service could not start or stopped with a failure, and the exit status that says so.

use std::{net::SocketAddr, process::ExitCode};

use crate::{auth::KeysFileError, telemetry::metrics::RecorderError};

/// An error from outside the process that keeps a store from opening (the SDK's, the file
/// system's): kept whole as the source, whatever the store.
pub type OpenCause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The keys file named by `--api-keys-file` cannot be read: a configuration error, never a
    /// reason to serve without authentication.
    #[error(transparent)]
    KeysFile(#[from] KeysFileError),
    #[error("cannot open the {kind} store")]
    Store {
        kind: &'static str,
        #[source]
        source: OpenCause,
    },
    #[error("cannot listen on {addr} ({flag})")]
    Listen {
        addr: SocketAddr,
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] RecorderError),
    #[error("cannot listen for shutdown signals")]
    Signals(#[source] std::io::Error),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("the server failed")]
    Serve(#[source] std::io::Error),
}

/// Exit status of a configuration error, as clap gives for a bad flag.
pub const CONFIG_ERROR: u8 = 2;

impl StartupError {
    /// What the process exits with: 2 for a configuration error, 1 for any other failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            StartupError::KeysFile(_) => ExitCode::from(CONFIG_ERROR),
            _ => ExitCode::FAILURE,
        }
    }

    /// Whether the operator can fix it by changing the configuration.
    pub fn is_configuration(&self) -> bool {
        matches!(self, StartupError::KeysFile(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_names_every_cause_once() {
        let err = StartupError::Listen {
            addr: "127.0.0.1:8080".parse().expect("addr"),
            flag: "--bind",
            source: std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use"),
        };
        assert_eq!(
            crate::telemetry::logging::error_chain(&err),
            "cannot listen on 127.0.0.1:8080 (--bind): address in use"
        );
        assert_eq!(err.exit_code(), ExitCode::FAILURE);
        let missing = StartupError::KeysFile(KeysFileError::TooLarge {
            path: "/keys".into(),
        });
        assert!(missing.is_configuration());
        assert_eq!(missing.exit_code(), ExitCode::from(CONFIG_ERROR));
    }
}
