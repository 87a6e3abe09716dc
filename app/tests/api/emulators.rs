//! DynamoDB-compatible servers for the tests, started on 127.0.0.1 on free ports: dynalite
//! (Node.js, LevelDB) and moto (Python) served single-threaded by `scripts/moto-server.py`.
//! `scripts/install-emulators.sh` (run by `scripts/test.sh`) installs both into `.tools/`; a
//! missing server fails the test that needs it, saying so.
//!
//! No server outlives the test binary: each is killed when its handle drops, and on Linux the
//! kernel kills it too when the binary exits however it ends (`PR_SET_PDEATHSIG`, set from a
//! spawner thread that lives as long as the process, since the signal follows the thread that
//! forked). moto also exits when its standard input, a pipe from this process, closes.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock, atomic::AtomicU64, mpsc},
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dynalite,
    Moto,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dynalite => "dynalite",
            Kind::Moto => "moto",
        }
    }
}

/// A running server. Stopped (killed) on drop.
pub struct Emulator {
    kind: Kind,
    port: u16,
    data_dir: Option<PathBuf>,
    process: Mutex<Option<(Child, Option<ChildStdin>)>>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the workspace")
        .to_path_buf()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn command(kind: Kind, port: u16, data_dir: Option<&Path>) -> Command {
    let root = repo_root();
    let tools = root.join(".tools");
    let missing = |what: &str| -> ! {
        panic!(
            "{what} is not installed in {}: run scripts/test.sh (or scripts/install-emulators.sh) \
             to install the DynamoDB-compatible servers the tests use",
            tools.display()
        )
    };
    match kind {
        Kind::Dynalite => {
            let cli = tools.join("node_modules/dynalite/cli.js");
            if !cli.exists() {
                missing("dynalite");
            }
            let mut cmd = Command::new("node");
            cmd.arg(cli)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()]);
            if let Some(dir) = data_dir {
                cmd.arg("--path").arg(dir);
            }
            cmd.stdin(Stdio::null());
            cmd
        }
        Kind::Moto => {
            let python = tools.join("venv/bin/python");
            if !python.exists() {
                missing("moto");
            }
            assert!(data_dir.is_none(), "moto keeps no data on disk");
            let mut cmd = Command::new(python);
            cmd.arg(root.join("scripts/moto-server.py"))
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--quiet", "--exit-on-stdin-eof"]);
            cmd.stdin(Stdio::piped());
            cmd
        }
    }
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` from a thread that lives as long as the process, so that the child's
/// parent-death signal fires when the process ends, not when some test thread does.
fn spawn_tied_to_process(mut cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the signal was armed.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("emulator-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, reply))
        .expect("spawner is alive");
    answer.recv().expect("spawner answers")
}

impl Emulator {
    /// Starts a server on a free port, in memory (or on disk in `data_dir`, dynalite only).
    pub fn start(kind: Kind, data_dir: Option<&Path>) -> Emulator {
        let mut last_error = String::new();
        for _ in 0..3 {
            let emulator = Emulator::on_port(kind, free_port(), data_dir);
            match emulator.launch() {
                Ok(()) => return emulator,
                // Most likely someone took the port between the check and the bind.
                Err(err) => last_error = err,
            }
        }
        panic!("{} did not start: {last_error}", kind.name());
    }

    /// A server that will listen on `port` once [`Emulator::launch`]ed.
    pub fn on_port(kind: Kind, port: u16, data_dir: Option<&Path>) -> Emulator {
        Emulator {
            kind,
            port,
            data_dir: data_dir.map(Path::to_path_buf),
            process: Mutex::new(None),
        }
    }

    /// Starts the server process and waits until it accepts connections.
    pub fn launch(&self) -> Result<(), String> {
        let mut cmd = command(self.kind, self.port, self.data_dir.as_deref());
        cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        let mut child = spawn_tied_to_process(cmd)
            .map_err(|e| format!("cannot run {}: {e}", self.kind.name()))?;
        let stdin = child.stdin.take();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{} exited early: {status}", self.kind.name()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} never listened on {addr}", self.kind.name()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        *self.process.lock().unwrap_or_else(|p| p.into_inner()) = Some((child, stdin));
        Ok(())
    }

    /// Kills the server at once (as a crash would) and waits for it to be gone.
    pub fn kill(&self) {
        let process = self
            .process
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((mut child, stdin)) = process {
            let _ = child.kill();
            let _ = child.wait();
            drop(stdin);
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One server of each kind per test binary, started on first use; each test uses its own
/// table on it.
pub fn shared(kind: Kind) -> &'static Emulator {
    static DYNALITE: OnceLock<Emulator> = OnceLock::new();
    static MOTO: OnceLock<Emulator> = OnceLock::new();
    let cell = match kind {
        Kind::Dynalite => &DYNALITE,
        Kind::Moto => &MOTO,
    };
    cell.get_or_init(|| Emulator::start(kind, None))
}

/// A table name no other test in this run uses.
pub fn unique_table(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}
