//! A real syslog server for the log forwarding tests: Debian's `rsyslog`
//! (`rsyslogd`, 8.2302 in bookworm) listening on a loopback TCP port (`imtcp`,
//! which reads octet-counted frames) and writing each message to a file, one line
//! per message: `HOSTNAME|APP-NAME|PROCID|STRUCTURED-DATA|MSG`.
//! [`Syslog::start_tls`] listens with TLS instead (RFC 5425, rsyslog's `ossl`
//! network stream driver from Debian's `rsyslog-openssl`), with a certificate for
//! 127.0.0.1 from a CA made for the test.
//!
//! Tests that need it are marked `#[ignore = "needs rsyslog ..."]`, so a plain
//! `cargo test` reports them ignored, never passed; `scripts/test.sh` installs the
//! package (scripts/prepare.sh) and runs the ignored tests. On CI (`CI=true`), a
//! missing binary is a failure: see [`require_in_ci`].

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::postgres::on_ci;
use crate::wait::eventually_within;

/// The environment variable naming another `rsyslogd` binary than the one found.
pub const BINARY_VARIABLE: &str = "FLOTTA_TEST_RSYSLOGD";

const HOW_TO: &str = "install it with `apt-get install rsyslog` (scripts/prepare.sh does) \
     or name a binary in FLOTTA_TEST_RSYSLOGD";

/// The `rsyslogd` binary, if there is one (on `PATH`, or in `/usr/sbin` where
/// Debian puts it).
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(BINARY_VARIABLE).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("rsyslogd"))
        .find(|candidate| candidate.is_file())
}

/// Fails on CI when no `rsyslogd` binary is found, so that the ignored syslog
/// tests cannot go unrun there unnoticed.
pub fn require_in_ci() {
    if on_ci() && binary().is_none() {
        panic!(
            "CI=true but no rsyslogd binary: the log forwarding tests would be skipped; {HOW_TO}"
        );
    }
    if on_ci() && !has_tls_driver() {
        panic!(
            "CI=true but rsyslog has no openssl driver (lmnsd_ossl.so): the TLS log forwarding \
             test would fail; install rsyslog-openssl (scripts/prepare.sh does)"
        );
    }
}

/// Whether rsyslog's openssl network stream driver is installed.
pub fn has_tls_driver() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .any(|lib| {
        std::path::Path::new(lib)
            .join("rsyslog/lmnsd_ossl.so")
            .is_file()
    })
}

/// One message as the server wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// `HOSTNAME` of the header.
    pub hostname: String,
    /// `APP-NAME` of the header.
    pub app_name: String,
    /// `PROCID` of the header.
    pub proc_id: String,
    /// The structured data, as sent.
    pub structured_data: String,
    /// The message text.
    pub message: String,
}

/// An rsyslogd process; killed when dropped.
pub struct Syslog {
    dir: tempfile::TempDir,
    binary: PathBuf,
    port: Option<u16>,
    child: Option<Child>,
    /// The CA of the server certificate, when it listens with TLS.
    ca_pem: Option<String>,
}

impl Syslog {
    /// Starts rsyslogd on a free loopback port and waits until it listens; panics
    /// saying how to install it when there is no binary.
    pub async fn start() -> Syslog {
        let Some(binary) = binary() else {
            panic!("no rsyslogd binary: this test needs rsyslog; {HOW_TO}");
        };
        let mut syslog = Syslog {
            dir: tempfile::tempdir().expect("rsyslog directory"),
            binary,
            port: None,
            child: None,
            ca_pem: None,
        };
        syslog.start_again().await;
        syslog
    }

    /// Starts rsyslogd listening with TLS on a free loopback port, its certificate
    /// (for 127.0.0.1) issued by a CA made for the test: see [`ca_pem`](Self::ca_pem).
    pub async fn start_tls() -> Syslog {
        let Some(binary) = binary() else {
            panic!("no rsyslogd binary: this test needs rsyslog; {HOW_TO}");
        };
        let dir = tempfile::tempdir().expect("rsyslog directory");
        let now = time::OffsetDateTime::now_utc();
        let ca = flotta_core::pki::BuiltinCa::generate("syslog test CA", now).expect("CA");
        let server = flotta_core::pki::issue_server_certificate(
            &ca,
            &["127.0.0.1"],
            now,
            time::Duration::hours(1),
        )
        .await
        .expect("server certificate");
        let (ca_pem, _) = ca.to_pem();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).expect("CA file");
        std::fs::write(dir.path().join("cert.pem"), server.certificate.pem()).expect("cert");
        std::fs::write(dir.path().join("key.pem"), server.key_pem()).expect("key");
        let mut syslog = Syslog {
            dir,
            binary,
            port: None,
            child: None,
            ca_pem: Some(ca_pem),
        };
        syslog.start_again().await;
        syslog
    }

    /// The CA of a TLS server's certificate ([`start_tls`](Self::start_tls)).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port.expect("rsyslogd has listened"))
    }

    /// rsyslogd's own output, of every start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.log")).unwrap_or_default()
    }

    /// Every message received so far, in the order written.
    pub fn received(&self) -> Vec<Received> {
        let text =
            std::fs::read_to_string(self.dir.path().join("messages.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut fields = line.splitn(5, '|');
                Some(Received {
                    hostname: fields.next()?.to_owned(),
                    app_name: fields.next()?.to_owned(),
                    proc_id: fields.next()?.to_owned(),
                    structured_data: fields.next()?.to_owned(),
                    message: fields.next()?.to_owned(),
                })
            })
            .collect()
    }

    /// Starts it (again), on the port of the first start, and waits until it
    /// listens.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "rsyslogd already runs");
        let dir = self.dir.path();
        let port_file = dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        // The first start takes a free port (port 0) and writes it to the port
        // file; a restart listens on the same one again.
        let (global_tls, module_tls) = if self.ca_pem.is_some() {
            (
                format!(
                    r#" DefaultNetstreamDriver="ossl" DefaultNetstreamDriverCAFile="{dir}/ca.pem" DefaultNetstreamDriverCertFile="{dir}/cert.pem" DefaultNetstreamDriverKeyFile="{dir}/key.pem""#,
                    dir = dir.display()
                ),
                r#" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon""#,
            )
        } else {
            (String::new(), "")
        };
        let config = format!(
            r#"global(workDirectory="{dir}"{global_tls})
module(load="imtcp"{module_tls})
template(name="flotta" type="string" string="%hostname%|%app-name%|%procid%|%structured-data%|%msg%\n")
ruleset(name="received") {{ action(type="omfile" file="{dir}/messages.log" template="flotta") }}
input(type="imtcp" address="127.0.0.1" port="{port}" listenPortFileName="{port_file}" ruleset="received")
"#,
            dir = dir.display(),
            port = self.port.unwrap_or(0),
            port_file = port_file.display(),
        );
        std::fs::write(dir.join("rsyslog.conf"), config).expect("rsyslog configuration");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("rsyslogd.log"))
            .expect("log file");
        let child = Command::new(&self.binary)
            .arg("-n")
            .arg("-f")
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("rsyslogd starts");
        self.child = Some(child);
        let known = self.port;
        let port = eventually_within("rsyslogd listening", Duration::from_secs(30), || async {
            // rsyslogd writes the port file only for port 0.
            let port = match known {
                Some(port) => port,
                None => std::fs::read_to_string(&port_file)
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?,
            };
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| port)
        })
        .await;
        self.port = Some(port);
    }

    /// Stops it as an operator would (SIGTERM) and waits for the process to end.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
