//! The server under test: a `flotta-server` (or bare baseline) child process, and
//! what `/proc` says about its CPU time and memory.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::SimError;

/// Kernel clock ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// How long a starting server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Which store a spawned `flotta-server` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in the data directory.
    Sqlite,
    /// PostgreSQL at this URL.
    Postgres(String),
}

/// A server running as a child process, restartable with the same data.
#[derive(Debug)]
pub struct ServerProcess {
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Child,
    /// CPU seconds of earlier incarnations (before a restart).
    earlier_cpu_seconds: f64,
    /// Address of the listener the devices use.
    pub edge_addr: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
}

/// Waits until `path` exists and is not empty.
fn wait_for_file(path: &Path, timeout: Duration) -> Result<(), SimError> {
    let started = Instant::now();
    while !std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        if started.elapsed() > timeout {
            return Err(SimError::Server(format!(
                "{} was not written within {timeout:?}",
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16, SimError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| SimError::Io {
        what: "binding a probe socket to find a free port".into(),
        source,
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| SimError::Io {
            what: "reading the probe socket's port".into(),
            source,
        })
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl ServerProcess {
    /// Starts `flotta-server` from `program` with a fresh data directory under
    /// `data_dir`, auto-approval on, loopback listeners.
    pub fn start_flotta(
        program: &Path,
        data_dir: &Path,
        backend: &Backend,
    ) -> Result<Self, SimError> {
        // The ports are probed free, then bound by the server: on a busy machine
        // another process may take one in between, so a failed start is tried
        // again on fresh ports.
        let mut attempt = 1;
        loop {
            match Self::try_start_flotta(program, data_dir, backend) {
                Err(SimError::Server(reason)) if attempt < 3 => {
                    eprintln!("note: the server did not start ({reason}); trying again");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn try_start_flotta(
        program: &Path,
        data_dir: &Path,
        backend: &Backend,
    ) -> Result<Self, SimError> {
        // A configuration left by a failed attempt names other ports.
        let _ = std::fs::remove_file(data_dir.join("admin.yaml"));
        let edge_addr = loopback(free_port()?);
        let api_addr = loopback(free_port()?);
        let database = match backend {
            Backend::Sqlite => format!("sqlite://{}", data_dir.join("flotta.db").display()),
            Backend::Postgres(url) => url.clone(),
        };
        let args = vec![
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--edge-listen".into(),
            edge_addr.to_string(),
            "--api-listen".into(),
            api_addr.to_string(),
            "--database".into(),
            database,
            "--auto-approve".into(),
            "true".into(),
            "--hostname".into(),
            "127.0.0.1".into(),
        ];
        let server = Self::spawn(program, args, data_dir, edge_addr)?;
        // The server listens before it writes its management client configuration.
        wait_for_file(&data_dir.join("admin.yaml"), START_TIMEOUT)?;
        Ok(server)
    }

    /// Starts a second replica of this server on the same PostgreSQL database, in
    /// the data directory `data_dir` with a copy of this one's `pki/` and secret
    /// key (so device certificates and sealed secrets hold on both), on loopback
    /// ports of its own.
    pub fn replica(&self, data_dir: &Path, backend: &Backend) -> Result<Self, SimError> {
        if !matches!(backend, Backend::Postgres(_)) {
            return Err(SimError::Setup(
                "replicas share one PostgreSQL database: use --spawn-server postgres".into(),
            ));
        }
        copy_dir_files(&self.data_dir.join("pki"), &data_dir.join("pki"))?;
        let key = self.data_dir.join("secret-key");
        if key.exists() {
            std::fs::copy(&key, data_dir.join("secret-key")).map_err(|source| SimError::Io {
                what: format!("copying {}", key.display()),
                source,
            })?;
        }
        Self::start_flotta(&self.program, data_dir, backend)
    }

    /// Starts the bare baseline server (`flotta-sim bare-server`).
    pub fn start_bare(program: &Path, data_dir: &Path) -> Result<Self, SimError> {
        let edge_addr = loopback(free_port()?);
        let args = vec![
            "bare-server".into(),
            "--dir".into(),
            data_dir.display().to_string(),
            "--listen".into(),
            edge_addr.to_string(),
        ];
        Self::spawn(program, args, data_dir, edge_addr)
    }

    fn spawn(
        program: &Path,
        args: Vec<String>,
        data_dir: &Path,
        edge_addr: SocketAddr,
    ) -> Result<Self, SimError> {
        std::fs::create_dir_all(data_dir).map_err(|source| SimError::Io {
            what: format!("creating {}", data_dir.display()),
            source,
        })?;
        let log = data_dir.join("server.log");
        let child = launch(program, &args, &log)?;
        let mut server = Self {
            program: program.to_owned(),
            args,
            log,
            child,
            earlier_cpu_seconds: 0.0,
            edge_addr,
            data_dir: data_dir.to_owned(),
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), SimError> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(SimError::Server(format!(
                    "{} exited with {status} while starting; see {}",
                    self.program.display(),
                    self.log.display()
                )));
            }
            if TcpStream::connect_timeout(&self.edge_addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(SimError::Server(format!(
                    "{} did not listen on {} within {START_TIMEOUT:?}; see {}",
                    self.program.display(),
                    self.edge_addr,
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) used by every incarnation so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.earlier_cpu_seconds + cpu_seconds_of(self.pid()).unwrap_or(0.0)
    }

    /// Current resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmRSS:").unwrap_or(0)
    }

    /// Peak resident memory of the current incarnation, KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmHWM:").unwrap_or(0)
    }

    /// Stops the server with SIGTERM (a graceful shutdown), waits for it, and starts
    /// it again on the same data and ports. Returns when it listens again.
    pub fn restart(&mut self) -> Result<(), SimError> {
        self.earlier_cpu_seconds += cpu_seconds_of(self.pid()).unwrap_or(0.0);
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let stopping = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if stopping.elapsed() < Duration::from_secs(15) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        self.child = launch(&self.program, &self.args, &self.log)?;
        self.wait_ready()
    }

    /// Kills the server (SIGKILL: no drain, no lease hand-over), as a crashed
    /// replica; its CPU time so far stays counted.
    pub fn kill(&mut self) {
        self.earlier_cpu_seconds += cpu_seconds_of(self.pid()).unwrap_or(0.0);
        self.stop();
    }

    /// Stops the server.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies the files of directory `from` into `to` (created).
fn copy_dir_files(from: &Path, to: &Path) -> Result<(), SimError> {
    let io = |what: String| move |source| SimError::Io { what, source };
    std::fs::create_dir_all(to).map_err(io(format!("creating {}", to.display())))?;
    for entry in std::fs::read_dir(from).map_err(io(format!("reading {}", from.display())))? {
        let entry = entry.map_err(io(format!("reading {}", from.display())))?;
        if entry.file_type().is_ok_and(|kind| kind.is_file()) {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .map_err(io(format!("copying {}", entry.path().display())))?;
        }
    }
    Ok(())
}

fn launch(program: &Path, args: &[String], log: &Path) -> Result<Child, SimError> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| SimError::Io {
            what: format!("opening {}", log.display()),
            source,
        })?;
    let log_err = log_file.try_clone().map_err(|source| SimError::Io {
        what: format!("opening {}", log.display()),
        source,
    })?;
    Command::new(program)
        .args(args)
        .env("FLOTTA_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|source| SimError::Io {
            what: format!("starting {}", program.display()),
            source,
        })
}

/// User + system CPU seconds of `pid`, from `/proc/<pid>/stat`.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / CLOCK_TICKS_PER_SECOND)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // after_name starts at field 3 (state); utime is field 14, i.e. the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line (`VmRSS:`, `VmHWM:`) of `/proc/<pid>/status`.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, key)
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

/// One sample of the server's memory.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemorySample {
    /// Seconds since sampling began.
    pub at_s: f64,
    /// Resident memory, MiB.
    pub rss_mib: f64,
}

/// Samples a server's resident memory at a fixed interval on a thread of its own.
#[derive(Debug)]
pub struct MemoryCurve {
    samples: Arc<Mutex<Vec<MemorySample>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MemoryCurve {
    /// Starts sampling `pid` (read again on every sample, so restarts are followed).
    pub fn start(pid: Arc<std::sync::atomic::AtomicU32>, interval: Duration) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let samples = samples.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let pid = pid.load(std::sync::atomic::Ordering::Relaxed);
                    if let Some(kib) = status_kib(pid, "VmRSS:") {
                        samples
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(MemorySample {
                                at_s: started.elapsed().as_secs_f64(),
                                rss_mib: kib as f64 / 1024.0,
                            });
                    }
                    // Short sleeps so stopping does not wait a whole interval.
                    let next = Instant::now() + interval;
                    while Instant::now() < next && !stop.load(std::sync::atomic::Ordering::Relaxed)
                    {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
        };
        Self {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns the curve.
    pub fn finish(mut self) -> Vec<MemorySample> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        std::mem::take(
            &mut *self
                .samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_a_command_name_with_spaces() {
        let stat = "4242 (flotta server) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 9 0 123 456789 1234 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_lines_give_kib() {
        let status = "Name:\tflotta-server\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        assert!(cpu_seconds_of(pid).is_some());
        assert!(status_kib(pid, "VmRSS:").is_some_and(|kib| kib > 0));
    }
}
