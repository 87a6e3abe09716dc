//! The subcommands: each does one job on its own and exits with a status that says how it went.
//! Serving is not one of them: it is `startup`.

pub mod api_key;
pub mod snapshot;
