//! `flight-counter export` and `flight-counter import`: a store's snapshot to a file, and a
//! file into a store, with the server's store flags. Progress goes to stderr when it is a
//! terminal; the outcome, one line, always.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use crate::{
    clock::{Clock, SystemClock},
    config::{ExportArgs, ImportArgs, StoreArgs},
    snapshot::{Header, Imported, TransferError, transfer},
    startup::{self, StartupError},
    store::Store,
    telemetry::logging::error_chain,
};

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Open(#[from] StartupError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error("cannot open {path}")]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot make a snapshot id: the operating system's random source failed")]
    Random(#[source] getrandom::Error),
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Runs `job` on a runtime, prints its failure as one line, and says how it went.
fn finish(job: impl FnOnce(&tokio::runtime::Runtime) -> Result<String, Failure>) -> ExitCode {
    let outcome = runtime()
        .map_err(|err| Failure::Open(StartupError::Runtime(err)))
        .and_then(|runtime| job(&runtime));
    match outcome {
        Ok(line) => {
            eprintln!("flight-counter: {line}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("flight-counter: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// Reports progress on stderr: on a terminal, one line rewritten at most four times a second;
/// elsewhere (a log), a line at the first progress and then every ten seconds.
fn progress(verb: &'static str) -> impl FnMut(u64, u64) + Send {
    let terminal = io::stderr().is_terminal();
    let mut last: Option<Instant> = None;
    move |routes, keys| {
        let every = if terminal {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(10)
        };
        if last.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        last = Some(Instant::now());
        if terminal {
            eprint!("\r{verb} {routes} routes, {keys} keys so far");
        } else {
            eprintln!("flight-counter: {verb} {routes} routes, {keys} keys so far");
        }
    }
}

/// Opens the store and checks that it can be used (on DynamoDB: that the table exists, or is
/// created with --create-table), so that a wrong table fails before anything is read.
async fn open(args: &StoreArgs) -> Result<Store, Failure> {
    let store = startup::open_store(&args.config(), SystemClock::shared()).await?;
    store
        .base()
        .check_ready()
        .await
        .map_err(|err| Failure::Transfer(err.into()))?;
    Ok(store)
}

fn new_snapshot_id() -> Result<String, Failure> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(Failure::Random)?;
    Ok(hex::encode(bytes))
}

pub fn export(args: &ExportArgs) -> ExitCode {
    finish(|runtime| {
        runtime.block_on(async {
            let store = open(&args.store).await?;
            let header = Header {
                id: new_snapshot_id()?,
                source: store.kind().to_owned(),
                taken_at: SystemClock.epoch_seconds(),
            };
            // Written aside and renamed into place: a file at --output is always whole.
            let (out, partial): (Box<dyn Write + Send>, Option<PathBuf>) = match &args.output {
                Some(path) => {
                    let partial = path.with_extension("partial");
                    let file = File::create(&partial).map_err(|source| Failure::File {
                        path: partial.clone(),
                        source,
                    })?;
                    (Box::new(BufWriter::new(file)), Some(partial))
                }
                None => (Box::new(BufWriter::new(io::stdout())), None),
            };
            let mut report = progress("exported");
            let exported = transfer::export(store.base(), &header, out, &mut report).await;
            store.base().close().await;
            let (out, exported) = exported?;
            drop(out);
            if let (Some(partial), Some(path)) = (partial, &args.output) {
                rename(&partial, path)?;
            }
            Ok(format!(
                "exported snapshot {} of the {} store: {} routes, {} keys ({:?})",
                header.id, header.source, exported.routes, exported.keys, exported.consistency
            ))
        })
    })
}

fn rename(from: &Path, to: &Path) -> Result<(), Failure> {
    std::fs::rename(from, to).map_err(|source| Failure::File {
        path: to.to_owned(),
        source,
    })
}

/// A snapshot file to read, or stdin for `-`.
fn input(path: &Path) -> Result<Box<dyn BufRead + Send>, Failure> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(io::stdin())));
    }
    let file = File::open(path).map_err(|source| Failure::File {
        path: path.to_owned(),
        source,
    })?;
    Ok(Box::new(BufReader::new(file)))
}

pub fn import(args: &ImportArgs) -> ExitCode {
    finish(|runtime| {
        let input = input(&args.input)?;
        let since = args.since.as_deref().map(self::input).transpose()?;
        runtime.block_on(async {
            let store = open(&args.store).await?;
            let mut report = progress("imported");
            let now = SystemClock.epoch_seconds();
            let imported = match since {
                Some(since) => {
                    transfer::import_since(store.base(), input, since, now, &mut report).await
                }
                None => transfer::import(store.base(), input, args.merge, now, &mut report).await,
            };
            store.base().close().await;
            Ok(match imported? {
                Imported::AlreadyImported => {
                    "this snapshot was imported into the store before: nothing changed".into()
                }
                Imported::Applied {
                    routes,
                    keys,
                    expired_keys,
                    resumed,
                } => format!(
                    "imported {routes} routes and {keys} keys into the {} store{}{}",
                    store.kind(),
                    if expired_keys > 0 {
                        format!(" ({expired_keys} expired keys left out)")
                    } else {
                        String::new()
                    },
                    if resumed {
                        ", resuming an earlier run"
                    } else {
                        ""
                    }
                ),
            })
        })
    })
}
