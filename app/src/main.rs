use std::process::ExitCode;

use flight_counter::{
    config::Config,
    startup::{Application, shutdown_signal},
    telemetry,
};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = match Config::from_args() {
        Ok(config) => config,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                let _ = err.print();
                return ExitCode::SUCCESS;
            }
            // One line: which setting and why.
            let rendered = err.to_string();
            let line = rendered.lines().next().unwrap_or("invalid configuration");
            eprintln!("flight-counter: {line}");
            return ExitCode::from(2);
        }
    };
    telemetry::logging::init(config.log_format, EnvFilter::new(&config.log_level));

    let runtime = match config.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("flight-counter: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };

    let result = runtime.block_on(async {
        let shutdown = shutdown_signal()
            .map_err(|err| anyhow::anyhow!("cannot listen for shutdown signals: {err}"))?;
        let app = Application::build(config).await?;
        app.run_until_stopped(shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "flight-counter failed");
            eprintln!("flight-counter: {err:#}");
            ExitCode::FAILURE
        }
    }
}
