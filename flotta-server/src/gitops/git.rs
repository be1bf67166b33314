//! The git command line, run for one repository mirror: fetch, resolve a
//! revision, list a commit's files and read them.
//!
//! Every call runs `git` with a bounded time ([`GIT_TIMEOUT`]), no terminal prompt,
//! no system or user configuration, the transports [`ALLOWED_PROTOCOLS`] only, and
//! the repository's credentials passed as configuration in the environment
//! (`GIT_CONFIG_COUNT`), never in the URL or on the command line.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// Longest time one git command may take (a fetch of a large repository
/// included); it is killed after that.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(300);

/// The transports git may use (`GIT_ALLOW_PROTOCOL`): `ext::` and other helpers
/// that run commands are refused.
pub const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";

/// How much of git's error output a message quotes.
const MAX_ERROR_CHARS: usize = 600;

/// Credentials for one repository, read from its Secret.
#[derive(Default)]
pub struct Credentials {
    /// `Authorization` header value (`Bearer ...` or `Basic ...`).
    pub authorization: Option<String>,
    /// PEM CA the HTTPS server is checked against.
    pub ca: Option<Vec<u8>>,
    /// SSH private key and known hosts.
    pub ssh: Option<(Vec<u8>, Vec<u8>)>,
}

impl Credentials {
    /// A bearer token.
    pub fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    /// HTTP basic authentication.
    pub fn basic(user: &str, password: &str) -> String {
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {pair}")
    }
}

/// A bare mirror of one repository and the environment git runs in for it.
pub struct Mirror {
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// Files the credentials were written to (SSH key, CA); removed on drop.
    _files: Option<tempfile::TempDir>,
}

/// One file of a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeFile {
    /// Path from the repository root.
    pub path: String,
    /// Blob id.
    pub oid: String,
    /// Size in bytes.
    pub size: u64,
}

impl Mirror {
    /// The mirror at `dir` (created at the first fetch), with `credentials`;
    /// `home` is the directory git may treat as its home (its own files only).
    pub fn new(dir: PathBuf, home: &Path, credentials: Credentials) -> Result<Self, String> {
        let mut config: Vec<(String, String)> = Vec::new();
        let mut env: Vec<(String, String)> = vec![
            ("HOME".into(), home.display().to_string()),
            ("XDG_CONFIG_HOME".into(), home.display().to_string()),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
            ("GIT_ASKPASS".into(), "true".into()),
            ("SSH_ASKPASS".into(), "true".into()),
            ("GIT_ALLOW_PROTOCOL".into(), ALLOWED_PROTOCOLS.into()),
            ("LC_ALL".into(), "C".into()),
        ];
        let needs_files = credentials.ca.is_some() || credentials.ssh.is_some();
        let files = if needs_files {
            std::fs::create_dir_all(home)
                .map_err(|e| format!("cannot create {}: {e}", home.display()))?;
            Some(
                tempfile::Builder::new()
                    .prefix(".credentials-")
                    .tempdir_in(home)
                    .map_err(|e| format!("cannot write the repository's credentials: {e}"))?,
            )
        } else {
            None
        };
        if let Some(authorization) = &credentials.authorization {
            config.push((
                "http.extraHeader".into(),
                format!("Authorization: {authorization}"),
            ));
            // The header goes to every host of the fetch: never follow a redirect
            // to another one.
            config.push(("http.followRedirects".into(), "false".into()));
        }
        if let (Some(ca), Some(files)) = (&credentials.ca, &files) {
            let path = write_private(files.path(), "ca.crt", ca)?;
            config.push(("http.sslCAInfo".into(), path.display().to_string()));
        }
        if let (Some((key, known_hosts)), Some(files)) = (&credentials.ssh, &files) {
            let key = write_private(files.path(), "id", key)?;
            let hosts = write_private(files.path(), "known_hosts", known_hosts)?;
            env.push((
                "GIT_SSH_COMMAND".into(),
                format!(
                    "ssh -F /dev/null -i '{}' -o IdentitiesOnly=yes -o UserKnownHostsFile='{}' \
                     -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=30",
                    key.display(),
                    hosts.display()
                ),
            ));
        }
        env.push(("GIT_CONFIG_COUNT".into(), config.len().to_string()));
        for (index, (key, value)) in config.into_iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{index}"), key));
            env.push((format!("GIT_CONFIG_VALUE_{index}"), value));
        }
        Ok(Self {
            dir,
            env,
            _files: files,
        })
    }

    /// `git` with this mirror's environment: every `GIT_*` variable of the
    /// server's own environment removed (`GIT_SSL_CAINFO`, `GIT_DIR`... would
    /// override the repository's settings), then the mirror's set.
    fn command(&self) -> Command {
        let mut command = Command::new("git");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GIT_") {
                command.env_remove(name);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    async fn git(&self, args: &[&str], stdin: Option<Vec<u8>>) -> Result<Vec<u8>, String> {
        let mut command = self.command();
        command
            .arg("--git-dir")
            .arg(&self.dir)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                "the git command is not installed on the server (GitOps runs git)".to_owned()
            }
            _ => format!("cannot run git: {e}"),
        })?;
        let feed = match (stdin, child.stdin.take()) {
            (Some(input), Some(mut pipe)) => Some(tokio::spawn(async move {
                let _ = pipe.write_all(&input).await;
            })),
            _ => None,
        };
        let output = tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                format!(
                    "git {} took longer than {} s and was stopped",
                    args.first().copied().unwrap_or_default(),
                    GIT_TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| format!("git failed to run: {e}"))?;
        if let Some(feed) = feed {
            let _ = feed.await;
        }
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(git_error(
                args.first().copied().unwrap_or_default(),
                &output.stderr,
            ))
        }
    }

    /// Fetches every branch and tag of `url` into the mirror (created if new),
    /// dropping the ones the remote no longer has.
    pub async fn fetch(&self, url: &str) -> Result<(), String> {
        if !self.dir.join("HEAD").is_file() {
            if let Some(parent) = self.dir.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            let mut init = self.command();
            init.args(["init", "--bare", "--quiet"])
                .arg(&self.dir)
                .stdin(Stdio::null())
                .kill_on_drop(true);
            let output = tokio::time::timeout(GIT_TIMEOUT, init.output())
                .await
                .map_err(|_| "git init took too long".to_owned())?
                .map_err(|e| format!("cannot run git: {e}"))?;
            if !output.status.success() {
                return Err(git_error("init", &output.stderr));
            }
        }
        self.git(
            &[
                "fetch",
                "--prune",
                "--force",
                "--quiet",
                "--no-write-fetch-head",
                "--",
                url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            None,
        )
        .await
        .map(drop)
    }

    /// The commit `revision` names: a branch, then a tag, then a commit id.
    pub async fn resolve(&self, revision: &str) -> Result<String, String> {
        for candidate in [
            format!("refs/heads/{revision}"),
            format!("refs/tags/{revision}"),
            revision.to_owned(),
        ] {
            let spec = format!("{candidate}^{{commit}}");
            if let Ok(out) = self
                .git(&["rev-parse", "--verify", "--quiet", &spec], None)
                .await
            {
                let commit = String::from_utf8_lossy(&out).trim().to_owned();
                if !commit.is_empty() {
                    return Ok(commit);
                }
            }
        }
        Err(format!(
            "revision {revision:?} is neither a branch, a tag nor a commit of the repository"
        ))
    }

    /// Every regular file of `commit` (symbolic links and submodules left out).
    pub async fn files(&self, commit: &str) -> Result<Vec<TreeFile>, String> {
        let out = self
            .git(&["ls-tree", "-r", "-z", "-l", "--full-tree", commit], None)
            .await?;
        let mut files = Vec::new();
        for entry in out.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let entry = String::from_utf8_lossy(entry);
            let Some((meta, path)) = entry.split_once('\t') else {
                continue;
            };
            let fields: Vec<&str> = meta.split_whitespace().collect();
            if let [mode, "blob", oid, size] = fields.as_slice()
                && (*mode == "100644" || *mode == "100755")
            {
                files.push(TreeFile {
                    path: path.to_owned(),
                    oid: (*oid).to_owned(),
                    size: size.parse().unwrap_or(u64::MAX),
                });
            }
        }
        Ok(files)
    }

    /// The contents of `blobs`, in order.
    pub async fn read(&self, blobs: &[&TreeFile]) -> Result<Vec<Vec<u8>>, String> {
        if blobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = Vec::new();
        for blob in blobs {
            let _ = writeln!(input, "{}", blob.oid);
        }
        let out = self.git(&["cat-file", "--batch"], Some(input)).await?;
        let mut rest = out.as_slice();
        let mut contents = Vec::with_capacity(blobs.len());
        for blob in blobs {
            let header_end = rest
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(|| format!("git cat-file ended before {}", blob.path))?;
            let header = String::from_utf8_lossy(&rest[..header_end]).to_string();
            let size: usize = header
                .rsplit(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("git cat-file: unexpected header {header:?}"))?;
            let start = header_end + 1;
            let end = start + size;
            if rest.len() < end + 1 {
                return Err(format!("git cat-file: {} was cut short", blob.path));
            }
            contents.push(rest[start..end].to_vec());
            rest = &rest[end + 1..];
        }
        Ok(contents)
    }
}

fn write_private(dir: &Path, name: &str, data: &[u8]) -> Result<PathBuf, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot write the repository's credentials: {e}"))?;
    file.write_all(data)
        .and_then(|()| {
            if data.ends_with(b"\n") {
                Ok(())
            } else {
                file.write_all(b"\n")
            }
        })
        .map_err(|e| format!("cannot write the repository's credentials: {e}"))?;
    Ok(path)
}

/// git's own message, trimmed and bounded.
fn git_error(command: &str, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let mut message = lines.join("; ");
    if message.is_empty() {
        message = "failed without a message".into();
    }
    if message.chars().count() > MAX_ERROR_CHARS {
        message = message.chars().take(MAX_ERROR_CHARS).collect::<String>() + "...";
    }
    format!("git {command}: {message}")
}
