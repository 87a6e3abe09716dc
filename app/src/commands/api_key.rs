//! `flight-counter api-key`: the key on stdout, the keys file line on stderr, nothing else, so
//! a script can keep each where it belongs.

use std::process::ExitCode;

use crate::{auth, config::ApiKeyArgs};

pub fn run(args: &ApiKeyArgs) -> ExitCode {
    match auth::generate_key() {
        Ok(key) => {
            println!("{key}");
            eprintln!(
                "{} {} {}",
                args.client,
                args.scope.as_str(),
                auth::digest_hex(&key)
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("flight-counter: cannot read the operating system's random source: {err}");
            ExitCode::FAILURE
        }
    }
}
