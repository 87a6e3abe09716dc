use std::process::ExitCode;

use flight_counter::{
    commands,
    config::{Cli, Config, Invocation},
    startup::{Application, CONFIG_ERROR, StartupError, shutdown_signal},
    telemetry,
};
use tracing_subscriber::EnvFilter;

/// Caps glibc's malloc at two arenas (it makes up to eight per core, one per thread that
/// allocates while another holds an arena). Commits fill memtables on blocking threads and
/// flushes free them on another: with an arena per thread, the freed memory stays spread over
/// them and the process's resident memory grows far past what it holds.
///
/// And fixes the size past which an allocation gets pages of its own: glibc raises it each time
/// such a block is freed, so a memtable's hash table, freed after its flush, would have the
/// next ones carved out of the heap, where their memory is seldom given back.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets tunables of the allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn main() -> ExitCode {
    tune_malloc();
    let config = match Cli::from_args() {
        Ok(Invocation::Serve(config)) => *config,
        Ok(Invocation::ApiKey(args)) => return commands::api_key::run(&args),
        Ok(Invocation::Export(args)) => return commands::snapshot::export(&args),
        Ok(Invocation::Import(args)) => return commands::snapshot::import(&args),
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
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    telemetry::logging::init(config.log.log_format, EnvFilter::new(&config.log.log_level));
    let max_connections = config.server.max_connections;
    // Every connection is a descriptor: take all the process may have.
    match flight_counter::connection::raise_open_files_limit() {
        Ok(limit) => {
            tracing::info!(open_files = limit, max_connections, "descriptor limit");
            if u64::from(max_connections) + 64 > limit {
                tracing::warn!(
                    open_files = limit,
                    max_connections,
                    "--max-connections is above what the descriptor limit leaves for connections; \
                     accepts will fail (and back off) before it is reached"
                );
            }
        }
        Err(err) => tracing::warn!(error = %err, "cannot raise the open-files limit"),
    }
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let line = telemetry::logging::error_chain(&err);
            if err.is_configuration() {
                tracing::error!(error = %line, "invalid configuration");
            } else {
                tracing::error!(error = %line, "flight-counter failed");
            }
            eprintln!("flight-counter: {line}");
            err.exit_code()
        }
    }
}

/// Builds the runtime the configuration asks for and runs the service on it until a signal.
fn serve(config: Config) -> Result<(), StartupError> {
    let mut runtime = match config.server.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if config.server.worker_threads > 1 {
        runtime.worker_threads(config.server.worker_threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(StartupError::Runtime)?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let app = Application::builder(config).build().await?;
        app.run_until_stopped(shutdown).await
    })
}
