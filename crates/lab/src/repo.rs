//! A flat apt repository in a temporary folder, indexed with apt-ftparchive and served over
//! HTTP on 127.0.0.1; it can be taken down and brought back on the same port.

use crate::deb::DebPackage;
use crate::util;
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::net::TcpStream;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const INDEX_TIMEOUT: Duration = Duration::from_secs(120);

/// A local repository for `deb [trusted=yes] http://127.0.0.1:PORT/ ./`.
#[derive(Debug)]
pub struct AptRepo {
    tmp: tempfile::TempDir,
    served: PathBuf,
    port: u16,
    running: Option<Running>,
    requests: Arc<Mutex<Vec<String>>>,
}

struct Running {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

impl AptRepo {
    /// An empty, published repository, already served on a free loopback port.
    pub fn new() -> Result<AptRepo> {
        let tmp = tempfile::Builder::new()
            .prefix("pw-lab-repo-")
            .tempdir()
            .context("repository directory")?;
        let served = tmp.path().join("repo");
        fs::create_dir(&served)?;
        let served = served.canonicalize()?;
        let mut repo = AptRepo {
            tmp,
            served,
            port: 0,
            running: None,
            requests: Arc::new(Mutex::new(Vec::new())),
        };
        repo.publish()?;
        repo.start()?;
        Ok(repo)
    }

    /// The served folder.
    pub fn dir(&self) -> &Path {
        &self.served
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// `deb [trusted=yes] http://127.0.0.1:PORT/ ./`
    pub fn source_line(&self) -> String {
        format!("deb [trusted=yes] {} ./", self.url())
    }

    /// Build `pkg` into the repository (visible to apt after [`AptRepo::publish`]).
    pub fn add(&self, pkg: &DebPackage) -> Result<PathBuf> {
        pkg.build(&self.served)
    }

    /// Copy an existing .deb into the repository.
    pub fn add_deb(&self, deb: &Path) -> Result<PathBuf> {
        let name = deb
            .file_name()
            .ok_or_else(|| anyhow!("no file name in {}", deb.display()))?;
        let dest = self.served.join(name);
        fs::copy(deb, &dest).with_context(|| format!("copying {}", deb.display()))?;
        Ok(dest)
    }

    /// Remove a package's .deb (takes effect at the next publish).
    pub fn remove(&self, pkg: &DebPackage) -> Result<()> {
        let p = self.served.join(pkg.file_name());
        fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))
    }

    /// (Re)write Packages and Release from the .debs present.
    pub fn publish(&self) -> Result<()> {
        let packages = util::run(
            Command::new("apt-ftparchive")
                .args(["packages", "."])
                .current_dir(&self.served),
            INDEX_TIMEOUT,
        )?;
        self.replace("Packages", &packages.stdout)?;
        // Release must not list itself: generate it with no Release present, write it
        // outside the served folder, then move it in.
        let _ = fs::remove_file(self.served.join("Release"));
        let release = util::run(
            Command::new("apt-ftparchive")
                .args(["release", "."])
                .current_dir(&self.served),
            INDEX_TIMEOUT,
        )?;
        self.replace("Release", &release.stdout)?;
        tracing::debug!(repo = %self.url(), "published");
        Ok(())
    }

    fn replace(&self, name: &str, contents: &[u8]) -> Result<()> {
        let tmp = self.tmp.path().join(format!("{name}.tmp"));
        fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, self.served.join(name)).with_context(|| format!("installing {name}"))
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Requests served so far, as `METHOD /path STATUS`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Serve again (on the same port once one was chosen). No-op if running.
    pub fn start(&mut self) -> Result<()> {
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
            let (root, log) = (self.served.clone(), self.requests.clone());
            std::thread::Builder::new()
                .name(format!("apt-repo-{port}"))
                .spawn(move || serve(&server, &stop, &root, &log))
                .context("starting repository thread")?
        };
        self.running = Some(Running {
            server,
            stop,
            thread,
        });
        tracing::debug!(port, "repository up");
        Ok(())
    }

    /// Take the repository down: connections to its port are refused until [`AptRepo::start`].
    pub fn stop(&mut self) -> Result<()> {
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

impl Drop for AptRepo {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %format!("{e:#}"), "stopping repository");
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

/// The regular file under `root` that `url` names, or `None` (missing, or escaping `root`).
fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_stays_inside_root() -> Result<()> {
        let t = tempfile::tempdir()?;
        let root = t.path().join("repo");
        fs::create_dir(&root)?;
        let root = root.canonicalize()?;
        fs::write(root.join("Packages"), "x")?;
        fs::write(root.join("a_1:2_all.deb"), "x")?;
        fs::write(t.path().join("secret"), "x")?;
        std::os::unix::fs::symlink("../secret", root.join("link"))?;
        let cases = [
            ("/Packages", true),
            ("/./Packages?x=1", true),
            ("/a_1%3a2_all.deb", true),
            ("/../secret", false),
            ("/%2e%2e/secret", false),
            ("/link", false),
            ("/", false),
            ("/missing", false),
            ("/%zz", false),
        ];
        for (url, ok) in cases {
            assert_eq!(resolve(&root, url).is_some(), ok, "{url}");
        }
        Ok(())
    }
}
