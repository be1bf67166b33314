//! `flotta-scripted-os`: a test stand-in for `rpm-ostree`, `bootc`, `systemctl` and
//! the few `podman` commands the podman runtime uses (images, pulls against a
//! registry that can be down, `kube play`/`down`, `pod ps`),
//! installed in a test's `PATH` under those names (symbolic links). It keeps the
//! deployments in a JSON state file (`FLOTTA_SCRIPTED_OS_STATE`), answers
//! `status --json` in the real tools' format, stages, finalizes, rolls back, and
//! its reboot boots the next deployment and ends the process that asked for it
//! (SIGTERM to its parent, as systemd stops the agent). A test then starts the agent
//! again, as systemd would after the boot.
//!
//! Called as `flotta-scripted-os boot`, it performs a reboot that was held back
//! (`"reboot": "ignore"`) without signalling anyone.
//!
//! Not shipped: it exists for `cargo test -p flotta-agent --test it os_update`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

/// One deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Deployment {
    checksum: String,
    #[serde(default)]
    image: Option<String>,
    /// Staged with `--lock-finalization`: an unrelated reboot leaves it staged.
    #[serde(default)]
    locked: bool,
}

/// The state file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct State {
    booted: Deployment,
    #[serde(default)]
    staged: Option<Deployment>,
    #[serde(default)]
    rollback: Option<Deployment>,
    /// The rollback deployment boots next.
    #[serde(default)]
    rollback_queued: bool,
    /// `"now"`: a reboot boots at once and ends the caller; `"ignore"`: the
    /// request is recorded and nothing happens.
    #[serde(default = "reboot_now")]
    reboot: String,
    #[serde(default)]
    reboot_pending: bool,
    #[serde(default)]
    boots: u32,
    /// `systemctl is-system-running`.
    #[serde(default = "running")]
    system_state: String,
    /// Units `systemctl is-active` reports active.
    #[serde(default)]
    active_units: Vec<String>,
    /// When set, staging fails with this message.
    #[serde(default)]
    fail_stage: Option<String>,
    /// When set to a command's first word (`deploy`, `rollback`, ...), a call of
    /// it is recorded and then waits, without holding the state's lock, for the
    /// lock on `<state>.hold`, which the test holds until it releases the call; it
    /// then carries on, as the real tools' daemons finish a transaction whose client
    /// was killed.
    #[serde(default)]
    hang: Option<String>,
    /// Every call, program name first.
    #[serde(default)]
    calls: Vec<Vec<String>>,
    /// `podman`: pulls fail as against an unreachable registry.
    #[serde(default)]
    registry_down: bool,
    /// `podman`: images present in local storage.
    #[serde(default)]
    images: Vec<String>,
    /// `podman`: pods by name.
    #[serde(default)]
    pods: std::collections::BTreeMap<String, Pod>,
}

/// A pod `podman kube play` started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Pod {
    /// The images of its containers, in order.
    images: Vec<String>,
    /// Its labels (the workload label among them).
    labels: std::collections::BTreeMap<String, String>,
}

fn reboot_now() -> String {
    "now".into()
}

fn running() -> String {
    "running".into()
}

/// A failure: the message goes to stderr, the exit code is 1.
struct Failure(String);

fn fail<T>(message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(message.into()))
}

fn state_path() -> Result<PathBuf, Failure> {
    std::env::var_os("FLOTTA_SCRIPTED_OS_STATE")
        .map(PathBuf::from)
        .ok_or_else(|| Failure("FLOTTA_SCRIPTED_OS_STATE is not set".into()))
}

/// An exclusive lock on `<state>.lock`, held until the returned file is dropped.
fn lock(path: &Path) -> Result<std::fs::File, Failure> {
    lock_file(&path.with_extension("lock"))
}

/// An exclusive lock on `lock_path`, held until the returned file is dropped.
fn lock_file(lock_path: &Path) -> Result<std::fs::File, Failure> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(|e| Failure(format!("cannot open {}: {e}", lock_path.display())))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Failure(format!("cannot lock {}: {e}", lock_path.display())))?;
    Ok(file)
}

fn load(path: &Path) -> Result<State, Failure> {
    let bytes =
        std::fs::read(path).map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Failure(format!(
            "{} is not a scripted OS state: {e}",
            path.display()
        ))
    })
}

fn save(path: &Path, state: &State) -> Result<(), Failure> {
    let temp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(state)
        .map_err(|e| Failure(format!("cannot encode the state: {e}")))?;
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

/// A checksum for an image (the real tools pull it; here it only has to be stable).
fn checksum_of(image: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in image.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}{hash:016x}")
}

/// Boots the next deployment: a finalized staged one, else a queued rollback.
fn boot(state: &mut State) {
    if let Some(staged) = state.staged.take_if(|s| !s.locked) {
        state.rollback = Some(std::mem::replace(&mut state.booted, staged));
    } else if state.rollback_queued
        && let Some(rollback) = state.rollback.take()
    {
        state.rollback = Some(std::mem::replace(&mut state.booted, rollback));
    }
    state.rollback_queued = false;
    state.reboot_pending = false;
    state.boots += 1;
}

/// `systemctl reboot`, or a tool's `--reboot`.
fn reboot(path: &Path, state: &mut State) -> Result<String, Failure> {
    if state.reboot == "ignore" {
        state.reboot_pending = true;
        save(path, state)?;
        return Ok(String::new());
    }
    boot(state);
    save(path, state)?;
    // systemd stops the services: the agent gets SIGTERM.
    let parent = std::os::unix::process::parent_id();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &parent.to_string()])
        .status();
    Ok(String::new())
}

fn rpm_ostree_deployment(d: &Deployment, booted: bool, staged: bool) -> serde_json::Value {
    let mut value = serde_json::json!({
        "id": format!("fedora-iot-{}.0", d.checksum),
        "osname": "fedora-iot",
        "origin": "fedora-iot:fedora/stable/x86_64/iot",
        "checksum": d.checksum,
        "version": "40",
        "timestamp": 1_722_500_000,
        "serial": 0,
        "booted": booted,
        "staged": staged,
        "pinned": false,
        "unlocked": "none",
        "packages": [],
        "requested-packages": [],
        "base-commit-meta": {"ostree.bootable": true},
        "layered-commit-meta": null
    });
    if staged {
        value["finalization-locked"] = d.locked.into();
    }
    if let Some(image) = &d.image {
        value["container-image-reference"] = format!("ostree-unverified-registry:{image}").into();
    }
    value
}

/// Reads remote `name`'s `url=` from `FLOTTA_SCRIPTED_OS_REMOTES/NAME.conf` and
/// fetches `URL/config` (every OSTree repository has one) over plain HTTP, as a pull
/// of `commit` from it would begin; a missing remote or an answer other than 200 fails
/// the pull with what went wrong.
fn pull_from_remote(name: &str, commit: &str) -> Result<(), Failure> {
    use std::io::{Read, Write};
    let dir = std::env::var_os("FLOTTA_SCRIPTED_OS_REMOTES")
        .map(PathBuf::from)
        .ok_or_else(|| Failure("FLOTTA_SCRIPTED_OS_REMOTES is not set".into()))?;
    let file = dir.join(format!("{name}.conf"));
    let text = std::fs::read_to_string(&file).map_err(|e| {
        Failure(format!(
            "error: Remote \"{name}\" not found ({}: {e})",
            file.display()
        ))
    })?;
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("url="))
        .ok_or_else(|| Failure(format!("error: remote \"{name}\" has no url")))?;
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        Failure(format!(
            "error: the scripted OS pulls over http:// only, not {url}"
        ))
    })?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = format!("/{}", path.trim_end_matches('/'));
    let path = if path == "/" { String::new() } else { path };
    let failed =
        |e: std::io::Error| Failure(format!("error: While pulling {commit} from {url}: {e}"));
    let mut stream = std::net::TcpStream::connect(host).map_err(failed)?;
    write!(stream, "GET {path}/config HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(failed)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(failed)?;
    let status = answer.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return fail(format!(
            "error: While pulling {commit} from {url}: Server returned {status}"
        ));
    }
    Ok(())
}

fn rpm_ostree(path: &Path, state: &mut State, args: &[String]) -> Result<String, Failure> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["status", "--json"] => {
            let mut deployments = Vec::new();
            if let Some(staged) = &state.staged {
                deployments.push(rpm_ostree_deployment(staged, false, true));
            }
            let booted = rpm_ostree_deployment(&state.booted, true, false);
            let rollback = state
                .rollback
                .as_ref()
                .map(|r| rpm_ostree_deployment(r, false, false));
            if state.rollback_queued {
                deployments.extend(rollback);
                deployments.push(booted);
            } else {
                deployments.push(booted);
                deployments.extend(rollback);
            }
            let status = serde_json::json!({
                "deployments": deployments,
                "transaction": null,
                "cached-update": null,
                "update-driver": null
            });
            Ok(status.to_string())
        }
        ["deploy", "--lock-finalization", commit] => {
            if let Some(message) = &state.fail_stage {
                return fail(format!("error: {message}"));
            }
            state.staged = Some(Deployment {
                checksum: (*commit).to_owned(),
                image: None,
                locked: true,
            });
            save(path, state)?;
            Ok(String::new())
        }
        ["rebase", "--lock-finalization", remote, commit] if remote.ends_with(':') => {
            if let Some(message) = &state.fail_stage {
                return fail(format!("error: {message}"));
            }
            let name = remote.trim_end_matches(':');
            pull_from_remote(name, commit)?;
            state.staged = Some(Deployment {
                checksum: (*commit).to_owned(),
                image: None,
                locked: true,
            });
            save(path, state)?;
            Ok(String::new())
        }
        ["rebase", "--lock-finalization", reference] => {
            if let Some(message) = &state.fail_stage {
                return fail(format!("error: {message}"));
            }
            let Some(image) = reference.strip_prefix("ostree-unverified-registry:") else {
                return fail(format!("error: unsupported reference {reference}"));
            };
            state.staged = Some(Deployment {
                checksum: checksum_of(image),
                image: Some(image.to_owned()),
                locked: true,
            });
            save(path, state)?;
            Ok(String::new())
        }
        ["finalize-deployment", checksum] => {
            match &mut state.staged {
                Some(staged) if staged.checksum == *checksum => staged.locked = false,
                Some(staged) => {
                    return fail(format!(
                        "error: Expected staged base checksum {}, but found {checksum}",
                        staged.checksum
                    ));
                }
                None => return fail("error: No staged deployment found"),
            }
            reboot(path, state)
        }
        ["cleanup", "-p"] => {
            state.staged = None;
            save(path, state)?;
            Ok(String::new())
        }
        ["rollback", rest @ ..] if rest.is_empty() || rest == ["--reboot"] => {
            if state.rollback.is_none() {
                return fail("error: No rollback deployment found");
            }
            state.staged = None;
            state.rollback_queued = !state.rollback_queued;
            save(path, state)?;
            if rest == ["--reboot"] {
                reboot(path, state)
            } else {
                Ok("Moving the rollback deployment to be the default for the next boot\n".into())
            }
        }
        _ => fail(format!(
            "error: unknown rpm-ostree command: {}",
            args.join(" ")
        )),
    }
}

fn bootc_entry(d: &Deployment) -> serde_json::Value {
    let image = d.image.as_ref().map(|image| {
        serde_json::json!({
            "image": {"image": image, "transport": "registry"},
            "version": null,
            "timestamp": null,
            "imageDigest": format!("sha256:{}", d.checksum)
        })
    });
    serde_json::json!({
        "image": image,
        "cachedUpdate": null,
        "incompatible": false,
        "pinned": false,
        "store": "ostreeContainer",
        "ostree": {"checksum": d.checksum, "deploySerial": 0}
    })
}

fn bootc(path: &Path, state: &mut State, args: &[String]) -> Result<String, Failure> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["status", "--json"] => {
            let status = serde_json::json!({
                "apiVersion": "org.containers.bootc/v1",
                "kind": "BootcHost",
                "metadata": {"name": "host"},
                "spec": {
                    "image": state.booted.image.as_ref().map(|i| serde_json::json!({"image": i, "transport": "registry"})),
                    "bootOrder": if state.rollback_queued { "rollback" } else { "default" }
                },
                "status": {
                    "staged": state.staged.as_ref().map(bootc_entry),
                    "booted": bootc_entry(&state.booted),
                    "rollback": state.rollback.as_ref().map(bootc_entry),
                    "rollbackQueued": state.rollback_queued,
                    "type": "bootcHost"
                }
            });
            Ok(status.to_string())
        }
        ["switch", image] => {
            if let Some(message) = &state.fail_stage {
                return fail(format!("error: {message}"));
            }
            state.staged = if state.booted.image.as_deref() == Some(*image) {
                None
            } else {
                Some(Deployment {
                    checksum: checksum_of(image),
                    image: Some((*image).to_owned()),
                    locked: false,
                })
            };
            save(path, state)?;
            Ok(String::new())
        }
        ["rollback"] => {
            if state.rollback.is_none() {
                return fail("error: No rollback available");
            }
            state.staged = None;
            state.rollback_queued = !state.rollback_queued;
            save(path, state)?;
            Ok(String::new())
        }
        _ => fail(format!("error: unknown bootc command: {}", args.join(" "))),
    }
}

/// The pod of a kube YAML file as `podman kube play` reads it: its name, labels and
/// container images (the document of `kind: Pod`).
fn pod_of(file: &str) -> Result<(String, Pod), Failure> {
    let text = std::fs::read_to_string(file).map_err(|e| Failure(format!("Error: {file}: {e}")))?;
    let document = text
        .split("\n---")
        .find(|d| d.lines().any(|l| l.trim() == "kind: Pod"))
        .ok_or_else(|| Failure(format!("Error: {file}: no Pod document")))?;
    let mut name = None;
    let mut labels = std::collections::BTreeMap::new();
    let mut images = Vec::new();
    let mut section = "";
    for line in document.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim().trim_start_matches("- ");
        if indent == 0 {
            section = trimmed.trim_end_matches(':');
        }
        let value = |key: &str| {
            trimmed
                .strip_prefix(key)
                .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_owned())
        };
        if section == "metadata" && indent == 2 {
            if let Some(v) = value("name:") {
                name = Some(v);
            }
        } else if section == "metadata" && indent == 4 {
            if let Some((key, v)) = trimmed.split_once(": ") {
                labels.insert(
                    key.trim_matches(|c| c == '\'' || c == '"').to_owned(),
                    v.trim_matches(|c| c == '\'' || c == '"').to_owned(),
                );
            }
        } else if section == "spec"
            && let Some(v) = value("image:")
        {
            images.push(v);
        }
    }
    let name = name.ok_or_else(|| Failure(format!("Error: {file}: the pod has no name")))?;
    Ok((name, Pod { images, labels }))
}

fn pull(state: &mut State, image: &str) -> Result<(), Failure> {
    if state.registry_down {
        return fail(format!(
            "Error: initializing source docker://{image}: pinging container registry: connect: connection refused"
        ));
    }
    if !state.images.iter().any(|i| i == image) {
        state.images.push(image.to_owned());
    }
    Ok(())
}

/// `podman`: `image exists`, `pull`, `kube play`, `kube down`, `pod ps --format
/// json`, `pod rm --force`; `container inspect` fails (no log files to name).
fn podman(path: &Path, state: &mut State, args: &[String]) -> Result<String, Failure> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["image", "exists", image] => {
            return if state.images.iter().any(|i| i == image) {
                Ok(String::new())
            } else {
                fail("")
            };
        }
        ["pull", .., image] => pull(state, image).map(|()| String::new()),
        ["kube", "play", .., file] => {
            let (name, pod) = pod_of(file)?;
            for image in &pod.images {
                if !state.images.iter().any(|i| i == image) {
                    pull(state, image)?;
                }
            }
            state.pods.insert(name.clone(), pod);
            Ok(format!("Pod:\n{name}\n"))
        }
        ["kube", "down", file] => {
            let (name, _) = pod_of(file)?;
            state.pods.remove(&name);
            Ok(String::new())
        }
        ["pod", "ps", "--format", "json"] => {
            let pods: Vec<serde_json::Value> = state
                .pods
                .iter()
                .map(|(name, pod)| {
                    serde_json::json!({"Name": name, "Status": "Running", "Labels": pod.labels})
                })
                .collect();
            return Ok(serde_json::Value::Array(pods).to_string());
        }
        ["pod", "rm", "--force", name] => {
            state.pods.remove(*name);
            Ok(String::new())
        }
        ["container", "inspect", ..] => fail("Error: no log files in the scripted podman"),
        _ => fail(format!("Error: unknown podman command: {}", args.join(" "))),
    };
    save(path, state)?;
    result
}

/// `systemctl`: `reboot`, `is-system-running`, `is-active UNIT...`.
fn systemctl(path: &Path, state: &mut State, args: &[String]) -> Result<String, Failure> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["reboot"] => reboot(path, state),
        ["is-system-running"] => {
            println!("{}", state.system_state);
            if state.system_state == "running" {
                Ok(String::new())
            } else {
                fail("")
            }
        }
        ["is-active", units @ ..] if !units.is_empty() => {
            let inactive: Vec<&&str> = units
                .iter()
                .filter(|u| !state.active_units.iter().any(|a| a == **u))
                .collect();
            for unit in units.iter() {
                println!(
                    "{}",
                    if inactive.contains(&unit) {
                        "inactive"
                    } else {
                        "active"
                    }
                );
            }
            if inactive.is_empty() {
                Ok(String::new())
            } else {
                fail("")
            }
        }
        _ => fail(format!("unknown systemctl command: {}", args.join(" "))),
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args();
    let program = args
        .next()
        .as_deref()
        .map(|p| {
            Path::new(p)
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let args: Vec<String> = args.collect();
    let result = (|| {
        let path = state_path()?;
        // Calls overlap (the agent's heartbeat reads the status while it stages):
        // each holds the lock from load to save.
        let mut held = lock(&path)?;
        let mut state = load(&path)?;
        let mut call = vec![program.clone()];
        call.extend(args.iter().cloned());
        state.calls.push(call);
        save(&path, &state)?;
        if state.hang.as_ref().is_some_and(|w| args.first() == Some(w)) {
            drop(held);
            drop(lock_file(&path.with_extension("hold"))?);
            held = lock(&path)?;
            state = load(&path)?;
        }
        let _lock = held;
        match program.as_str() {
            "rpm-ostree" => rpm_ostree(&path, &mut state, &args),
            "bootc" => bootc(&path, &mut state, &args),
            "systemctl" => systemctl(&path, &mut state, &args),
            "podman" => podman(&path, &mut state, &args),
            _ => match args.as_slice() {
                [command] if command == "boot" => {
                    boot(&mut state);
                    save(&path, &state)?;
                    Ok(String::new())
                }
                _ => fail(format!(
                    "usage: link this program as rpm-ostree, bootc or systemctl, or run `{program} boot`"
                )),
            },
        }
    })();
    match result {
        Ok(stdout) => {
            print!("{stdout}");
            ExitCode::SUCCESS
        }
        Err(Failure(message)) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::FAILURE
        }
    }
}
