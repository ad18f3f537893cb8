//! A static file server on 127.0.0.1 for lab repositories (apt and rpm): GET and HEAD of the
//! regular files under one folder, 404 otherwise, no path escape. It can be stopped (the port
//! then refuses connections, like a repository that is down) and started again on the same port.

use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::net::TcpStream;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(crate) struct StaticServer {
    root: PathBuf,
    /// Thread name prefix, e.g. `apt-repo`.
    name: &'static str,
    port: u16,
    running: Option<Running>,
    requests: Arc<Mutex<Vec<String>>>,
}

struct Running {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for StaticServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticServer")
            .field("root", &self.root)
            .field("port", &self.port)
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl StaticServer {
    /// Not listening yet; [`StaticServer::start`] picks a free port the first time.
    pub(crate) fn new(root: PathBuf, name: &'static str) -> Self {
        Self {
            root,
            name,
            port: 0,
            running: None,
            requests: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Requests served so far, as `METHOD /path STATUS`.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Serves (on the same port once one was chosen). No-op if running.
    pub(crate) fn start(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let server = loop {
            match tiny_http::Server::http(("127.0.0.1", self.port)) {
                Ok(s) => break s,
                // The port can be briefly taken by someone else; keep trying the same one.
                Err(e) if self.port != 0 && Instant::now() < deadline => {
                    tracing::debug!(port = self.port, error = %e, "port busy, retrying");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => bail!("cannot listen on 127.0.0.1:{}: {e}", self.port),
            }
        };
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| anyhow!("server has no IP address"))?;
        self.port = port;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, stop) = (server.clone(), stop.clone());
            let (root, log) = (self.root.clone(), self.requests.clone());
            std::thread::Builder::new()
                .name(format!("{}-{port}", self.name))
                .spawn(move || serve(&server, &stop, &root, &log))
                .context("starting the repository's server thread")?
        };
        self.running = Some(Running {
            server,
            stop,
            thread,
        });
        tracing::debug!(port, "repository up");
        Ok(())
    }

    /// Stops serving: connections to the port are refused until [`StaticServer::start`].
    pub(crate) fn stop(&mut self) -> Result<()> {
        let Some(r) = self.running.take() else {
            return Ok(());
        };
        r.stop.store(true, Ordering::SeqCst);
        r.server.unblock();
        r.thread
            .join()
            .map_err(|_| anyhow!("repository thread panicked"))?;
        drop(r.server);
        // tiny_http closes its listener from its own accept thread; wait until it has.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            if Instant::now() >= deadline {
                bail!("repository port {} still accepting after stop", self.port);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::debug!(port = self.port, "repository down");
        Ok(())
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %format!("{e:#}"), "stopping a repository server");
        }
    }
}

fn serve(server: &tiny_http::Server, stop: &AtomicBool, root: &Path, log: &Mutex<Vec<String>>) {
    while !stop.load(Ordering::SeqCst) {
        let req = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => break,
        };
        let method = req.method().clone();
        let url = req.url().to_string();
        let (status, result) = match (&method, resolve(root, &url)) {
            (tiny_http::Method::Get | tiny_http::Method::Head, Some(path)) => {
                match fs::File::open(&path) {
                    // from_file sets Content-Length from the file's size; tiny_http omits the
                    // body for HEAD.
                    Ok(f) => (200, req.respond(tiny_http::Response::from_file(f))),
                    Err(_) => (404, req.respond(not_found())),
                }
            }
            (tiny_http::Method::Get | tiny_http::Method::Head, None) => {
                (404, req.respond(not_found()))
            }
            _ => (
                405,
                req.respond(
                    tiny_http::Response::from_string("method not allowed\n").with_status_code(405),
                ),
            ),
        };
        if let Err(e) = result {
            tracing::debug!(%url, error = %e, "response not sent");
        }
        if let Ok(mut l) = log.lock() {
            l.push(format!("{method} {url} {status}"));
        }
    }
}

fn not_found() -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_string("not found\n").with_status_code(404)
}

/// The regular file under `root` that `url` names (percent-decoded: apt asks for `%3a` in
/// epoch file names), or `None` when it escapes `root` or does not exist.
pub(crate) fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next()?;
    let decoded = percent_decode(path)?;
    let rel = Path::new(decoded.trim_start_matches('/'));
    let mut p = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(s) => p.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    let real = p.canonicalize().ok()?;
    (real.starts_with(root) && real.is_file()).then_some(real)
}
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    (!s.contains('\0')).then_some(s)
}
