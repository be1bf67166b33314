//! Real podman for the podman runtime tests: Debian's `podman` (4.3 in bookworm)
//! running pods as root inside namespaces of the test's own.
//!
//! [`Podman::start`] writes a `containers.conf` (`runtime = "runc"`: crun cannot do
//! the hybrid cgroup v1 of the test machines; `cgroup_manager = "cgroupfs"`;
//! `events_logger = "file"`; `default_ulimits` at the process's hard limits) and a
//! `storage.conf` (`driver = "vfs"`, graphroot and runroot) in a temporary
//! directory, then starts a holder process,
//! `unshare --net --mount --pid --fork --mount-proc --kill-child`, that mounts
//! tmpfs over `/var/lib/cni`, `/etc/cni/net.d` and `/run/netns` in its mount
//! namespace (CNI's network files and address leases stay in the test) and
//! sleeps. [`Podman::program`] is a script running
//! `nsenter --target HOLDER --net --mount --pid -- podman "$@"` with the
//! configuration in `CONTAINERS_CONF` / `CONTAINERS_STORAGE_CONF`: every podman
//! call, the [`PodmanRuntime`](flotta_agent_lib::runtime::PodmanRuntime)'s
//! included, shares one network, mount and pid namespace, so pods keep running
//! between calls (their conmon processes live in the holder's pid namespace).
//! Dropping the harness kills the holder, and with it every process of the
//! namespace: nothing is left running on the host.
//!
//! No image can be pulled on the test machines: [`Podman::import_busybox`] builds
//! one with `podman import` from a tarball of the host's static busybox (Debian's
//! `busybox-static`) with a link per applet.
//!
//! Tests that need it are marked `#[ignore = "needs podman ..."]`, so a plain
//! `cargo test` reports them ignored, never passed; `scripts/test.sh` installs the
//! packages (scripts/prepare.sh) and runs the ignored tests. On CI (`CI=true`),
//! missing programs or a non-root user are a failure: see [`require_in_ci`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use flotta_agent_lib::runtime::PodmanOptions;

use crate::postgres::on_ci;

const HOW_TO: &str = "install podman, runc, catatonit and busybox-static with apt-get \
     (scripts/prepare.sh does) and run the tests as root";

/// The host's programs the harness needs, each with its path; the first missing
/// one is the error.
fn programs() -> Result<Programs, String> {
    let find = |name: &str| -> Result<PathBuf, String> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| format!("no {name} program"))
    };
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("no /bin/busybox (Debian's busybox-static) to build the test image from")?;
    Ok(Programs {
        podman: find("podman")?,
        unshare: find("unshare")?,
        nsenter: find("nsenter")?,
        busybox,
        _runc: find("runc")?,
        _catatonit: ["/usr/libexec/podman/catatonit", "/usr/bin/catatonit"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or("no catatonit (the pause process of podman's pods)")?,
    })
}

struct Programs {
    podman: PathBuf,
    unshare: PathBuf,
    nsenter: PathBuf,
    busybox: PathBuf,
    _runc: PathBuf,
    _catatonit: PathBuf,
}

/// Why podman cannot be used here, if it cannot: a program missing, or not root
/// (the namespaces and rootful podman need it).
pub fn unusable() -> Option<String> {
    if let Err(reason) = programs() {
        return Some(reason);
    }
    if !rustix::process::geteuid().is_root() {
        return Some("not root: the harness runs rootful podman in namespaces of its own".into());
    }
    None
}

/// Fails on CI when podman cannot be used, so that the ignored podman tests
/// cannot go unrun there unnoticed.
pub fn require_in_ci() {
    if let Some(reason) = unusable().filter(|_| on_ci()) {
        panic!(
            "CI=true but podman cannot run here ({reason}): the podman tests would fail; {HOW_TO}"
        );
    }
}

/// Podman in namespaces of the test; see the module documentation. Killed, with
/// every pod, when dropped.
pub struct Podman {
    dir: tempfile::TempDir,
    holder: Child,
    program: PathBuf,
    busybox: PathBuf,
}

impl Podman {
    /// Writes the configuration, starts the holder of the namespaces and waits
    /// until podman answers there; panics saying what is missing when podman
    /// cannot be used.
    pub async fn start() -> Podman {
        if let Some(reason) = unusable() {
            panic!("podman cannot run here: {reason}; {HOW_TO}");
        }
        let programs = programs().expect("checked");
        let dir = tempfile::tempdir().expect("podman directory");
        let root = dir.path();
        for sub in ["storage", "run", "tmp", "cni-config", "bin"] {
            std::fs::create_dir_all(root.join(sub)).expect("podman directory");
        }
        let limit = |resource| {
            rustix::process::getrlimit(resource)
                .maximum
                .map(|hard| hard.min(1 << 20))
        };
        let ulimits: Vec<String> = [
            ("nofile", limit(rustix::process::Resource::Nofile)),
            ("nproc", limit(rustix::process::Resource::Nproc)),
        ]
        .into_iter()
        .filter_map(|(name, hard)| hard.map(|h| format!("\"{name}={h}:{h}\"")))
        .collect();
        let containers_conf = format!(
            "[containers]\n\
             default_ulimits = [{ulimits}]\n\
             [network]\n\
             network_config_dir = \"{dir}/cni-config\"\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = \"{dir}/events.log\"\n\
             tmp_dir = \"{dir}/tmp\"\n",
            ulimits = ulimits.join(", "),
            dir = root.display(),
        );
        std::fs::write(root.join("containers.conf"), containers_conf).expect("containers.conf");
        let storage_conf = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{dir}/storage\"\nrunroot = \"{dir}/run\"\n",
            dir = root.display()
        );
        std::fs::write(root.join("storage.conf"), storage_conf).expect("storage.conf");

        // The holder: its mount namespace hides CNI's host files behind tmpfs. It
        // says `ready` once the mounts are made; the shell that says it becomes the
        // `sleep` whose namespaces podman enters.
        let holder_script = "set -e\n\
             mkdir -p /var/lib/cni /etc/cni/net.d /run/netns\n\
             for d in /var/lib/cni /etc/cni/net.d /run/netns; do mount -t tmpfs tmpfs \"$d\"; done\n\
             echo ready\n\
             exec sleep infinity\n";
        let mut holder = Command::new(&programs.unshare)
            .args([
                "--net",
                "--mount",
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                "sh",
                "-c",
                holder_script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare starts");
        let holder_pid = holder.id();
        let mut ready = String::new();
        {
            use std::io::BufRead as _;
            let stdout = holder.stdout.take().expect("the holder's stdout");
            let _ = std::io::BufReader::new(stdout).read_line(&mut ready);
        }
        if ready.trim() != "ready" {
            // The holder ended before its mounts were made: say why.
            let status = holder.wait().expect("the holder's exit status");
            let mut stderr = String::new();
            if let Some(mut pipe) = holder.stderr.take() {
                use std::io::Read as _;
                let _ = pipe.read_to_string(&mut stderr);
            }
            panic!("the namespace holder (unshare) exited with {status}: {stderr}");
        }
        let inner =
            std::fs::read_to_string(format!("/proc/{holder_pid}/task/{holder_pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .next()
                .map(str::to_owned)
                .expect("the holder's process, which just said it is ready");

        let program = root.join("bin/podman");
        let script = format!(
            "#!/bin/sh\n\
             # podman in the namespaces of a flotta-rs test, with its configuration.\n\
             export CONTAINERS_CONF='{dir}/containers.conf'\n\
             export CONTAINERS_STORAGE_CONF='{dir}/storage.conf'\n\
             exec '{nsenter}' --target {inner} --net --mount --pid --wd=\"$PWD\" -- '{podman}' \"$@\"\n",
            dir = root.display(),
            nsenter = programs.nsenter.display(),
            podman = programs.podman.display(),
        );
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o755)
                .open(&program)
                .expect("podman script");
            file.write_all(script.as_bytes()).expect("podman script");
        }
        let podman = Podman {
            dir,
            holder,
            program,
            busybox: programs.busybox,
        };
        if let Err(reason) = podman
            .run(&["info", "--format", "{{.Host.OCIRuntime.Name}}"])
            .await
        {
            panic!("podman does not answer in the test's namespaces: {reason}");
        }
        podman
    }

    /// The script running podman in the test's namespaces: the `program` of a
    /// [`PodmanRuntime`](flotta_agent_lib::runtime::PodmanRuntime).
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Options of a podman runtime using this podman, its manifests in
    /// `manifest_dir`.
    pub fn options(&self, manifest_dir: impl Into<PathBuf>) -> PodmanOptions {
        let mut options = PodmanOptions::new(manifest_dir);
        options.program = self.program.clone();
        options
    }

    /// The events podman logged (`events_logger = "file"`), for failure messages.
    pub fn events(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("events.log")).unwrap_or_default()
    }

    /// Runs `podman ARGS` in the test's namespaces: its standard output, or its
    /// exit status and standard error.
    pub async fn run(&self, args: &[&str]) -> Result<String, String> {
        let output = tokio::process::Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "podman {}: {}: {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// Imports `image` (e.g. `localhost/busybox:test`): the host's static busybox
    /// as `/bin/busybox`, a link in `/bin` for each of its applets, and `/tmp`.
    pub async fn import_busybox(&self, image: &str) {
        let rootfs = self.dir.path().join("rootfs");
        let bin = rootfs.join("bin");
        std::fs::create_dir_all(&bin).expect("rootfs");
        std::fs::create_dir_all(rootfs.join("tmp")).expect("rootfs");
        std::fs::copy(&self.busybox, bin.join("busybox")).expect("busybox copied");
        let applets = Command::new(&self.busybox)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&applets.stdout).split_whitespace() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
            }
        }
        let tarball = self.dir.path().join("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .status()
            .expect("tar runs");
        assert!(status.success(), "tar of the busybox rootfs: {status}");
        let tarball = tarball.display().to_string();
        if let Err(reason) = self.run(&["import", &tarball, image]).await {
            panic!("podman import of the busybox image: {reason}");
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // unshare --kill-child kills the namespace's first process, and the kernel
        // every other one with it.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
