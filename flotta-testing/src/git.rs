//! Real git repositories for the GitOps tests: a bare repository with a work tree
//! that commits and pushes to it ([`GitRepo`]), served over `git://` by
//! `git daemon` ([`GitDaemon`]) or over HTTPS by `git http-backend` behind a
//! bearer-token check ([`GitHttps`]). All three use the `git` command line the
//! machine has (Debian's `git` package ships the daemon and the backend).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt as _;
use tokio::process::{Child, Command};

use crate::wait::eventually;

/// Runs git in `dir` with a fixed identity and no user configuration; panics with
/// git's output when it fails.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "Fleet Operator")
        .env("GIT_AUTHOR_EMAIL", "ops@example.com")
        .env("GIT_COMMITTER_NAME", "Fleet Operator")
        .env("GIT_COMMITTER_EMAIL", "ops@example.com")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A bare repository (`root/NAME.git`) and a clone of it to commit from.
pub struct GitRepo {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bare: PathBuf,
    work: PathBuf,
}

impl GitRepo {
    /// A new repository named `name` whose default branch is `main`.
    pub fn new(name: &str) -> GitRepo {
        let dir = tempfile::tempdir().expect("git directory");
        let root = dir.path().join("repos");
        let bare = root.join(format!("{name}.git"));
        let work = dir.path().join("work");
        std::fs::create_dir_all(&root).expect("repos");
        std::fs::create_dir_all(&work).expect("work tree");
        git(
            &root,
            &[
                "init",
                "--bare",
                "--quiet",
                "--initial-branch=main",
                bare.to_str().expect("utf-8"),
            ],
        );
        git(&work, &["init", "--quiet", "--initial-branch=main"]);
        git(
            &work,
            &["remote", "add", "origin", bare.to_str().expect("utf-8")],
        );
        GitRepo {
            _dir: dir,
            root,
            bare,
            work,
        }
    }

    /// `file://` URL of the bare repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// The folder holding the bare repository (what a daemon serves).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bare repository's folder name, e.g. `fleet.git`.
    pub fn bare_name(&self) -> String {
        self.bare
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned()
    }

    /// Writes a file of the work tree (folders made as needed).
    pub fn write(&self, path: &str, text: &str) {
        let file = self.work.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("folders");
        std::fs::write(file, text).expect("write");
    }

    /// Removes a file of the work tree.
    pub fn remove(&self, path: &str) {
        std::fs::remove_file(self.work.join(path)).expect("remove");
    }

    /// Commits everything and pushes `main`; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "--all"]);
        git(
            &self.work,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        git(
            &self.work,
            &["push", "--quiet", "origin", "HEAD:refs/heads/main"],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Tags the last commit and pushes the tag.
    pub fn tag(&self, tag: &str) {
        git(&self.work, &["tag", tag]);
        git(&self.work, &["push", "--quiet", "origin", tag]);
    }
}

/// A free loopback port (bound then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// `git daemon` serving a folder of bare repositories on a loopback port.
pub struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    /// Starts the daemon for the repositories under `root`; returns once it accepts
    /// connections.
    pub async fn start(root: &Path) -> GitDaemon {
        let port = free_port();
        // `git daemon` would run `git-daemon` as a child of its own, which killing
        // the `git` process would leave behind (holding the test's output open):
        // run the daemon program itself.
        let exec_path = git(root, &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.display()))
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("git daemon starts");
        eventually("git daemon to listen", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop)
        })
        .await;
        GitDaemon { child, port }
    }

    /// `git://` URL of a repository served, e.g. `repo_name` `fleet.git`.
    pub fn url(&self, repo_name: &str) -> String {
        format!("git://127.0.0.1:{}/{repo_name}", self.port)
    }

    /// Stops the daemon.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `git http-backend` behind HTTPS on a loopback port, answering only requests
/// with `Authorization: Bearer TOKEN`; its certificate (for 127.0.0.1) comes from a
/// CA made for the test ([`ca_pem`](Self::ca_pem)).
pub struct GitHttps {
    addr: SocketAddr,
    ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl GitHttps {
    /// Serves the bare repositories under `root`, to callers presenting `token`.
    pub async fn start(root: &Path, token: &str) -> GitHttps {
        let now = time::OffsetDateTime::now_utc();
        let ca = flotta_core::pki::BuiltinCa::generate("git test CA", now).expect("CA");
        let server = flotta_core::pki::issue_server_certificate(
            &ca,
            &["127.0.0.1"],
            now,
            time::Duration::hours(1),
        )
        .await
        .expect("server certificate");
        let (ca_pem, _) = ca.to_pem();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(server.certificate.pem().as_bytes())
                .map(|c| c.expect("certificate"))
                .collect();
        let key = PrivateKeyDer::from_pem_slice(server.key_pem().as_bytes()).expect("key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("TLS configuration");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let exec_path = PathBuf::from(git(root, &["--exec-path"]));
        let root = root.to_owned();
        let expected = format!("Bearer {token}");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let root = root.clone();
                let exec_path = exec_path.clone();
                let expected = expected.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let root = root.clone();
                        let exec_path = exec_path.clone();
                        let expected = expected.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                serve(request, &root, &exec_path, &expected).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        GitHttps { addr, ca_pem, task }
    }

    /// `https://` URL of a repository served, e.g. `repo_name` `fleet.git`.
    pub fn url(&self, repo_name: &str) -> String {
        format!("https://{}/{repo_name}", self.addr)
    }

    /// The PEM CA the server's certificate was issued by.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

impl Drop for GitHttps {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// One request: the token check, then `git http-backend` as a CGI program.
async fn serve(
    request: Request<Incoming>,
    root: &Path,
    exec_path: &Path,
    expected: &str,
) -> Response<Full<Bytes>> {
    let authorized = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(expected);
    if !authorized {
        let mut response = respond(StatusCode::UNAUTHORIZED, "a bearer token is needed\n");
        response.headers_mut().insert(
            "www-authenticate",
            hyper::header::HeaderValue::from_static("Bearer realm=\"git\""),
        );
        return response;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return respond(StatusCode::BAD_REQUEST, "unreadable body\n");
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut command = Command::new(exec_path.join("git-http-backend"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "fleet")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let Ok(mut child) = command.spawn() else {
        return respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "git http-backend did not start\n",
        );
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let Ok(output) = child.wait_with_output().await else {
        return respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "git http-backend failed\n",
        );
    };
    cgi_response(&output.stdout)
}

/// A CGI program's output (headers, a blank line, the body) as a response.
fn cgi_response(output: &[u8]) -> Response<Full<Bytes>> {
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else {
        return respond(
            StatusCode::BAD_GATEWAY,
            "git http-backend answered no headers\n",
        );
    };
    let head = String::from_utf8_lossy(&output[..end]).into_owned();
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(&output[end + gap..])));
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().and_then(|c| c.parse::<u16>().ok());
            if let Some(status) = code.and_then(|c| StatusCode::from_u16(c).ok()) {
                *response.status_mut() = status;
            }
        } else if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.trim().as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
