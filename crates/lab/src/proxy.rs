//! A fault-injecting HTTP/1.1 proxy on loopback: forwards requests to an upstream server and,
//! for the first N requests whose path contains a marker, delivers the request but drops the
//! connection before the response reaches the client. That is a lost acknowledgement: the
//! server did the work, the client cannot know, and must retry.
//!
//! It can also fail requests outright ([`DroppingProxy::fail`]): while a [`Fault`] is set,
//! every request whose request line contains its marker is answered by the proxy itself (an
//! HTTP error status, or a connection closed without a response) and never reaches the server, until
//! [`DroppingProxy::heal`].
//!
//! Framing is by Content-Length only, which is what the Patchwarden server and agent use.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How [`DroppingProxy::fail`] answers a request instead of forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An HTTP error status (e.g. 500) with a JSON error body, as a failing server sends.
    Status(u16),
    /// The connection closed without any response, as when the server crashes mid-request.
    Disconnect,
}

pub struct DroppingProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    state: Arc<ProxyState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct ProxyState {
    upstream: String,
    marker: String,
    drops_left: AtomicUsize,
    /// Requests the proxy answers itself: (marker, fault).
    fault: Mutex<Option<(String, Fault)>>,
    /// Request lines seen, in order, with whether the client did not get the upstream's
    /// response (dropped, or failed by the proxy).
    log: Mutex<Vec<(String, bool)>>,
}

impl DroppingProxy {
    /// Proxies to `upstream` (`host:port`); drops the response of the first `drops` requests
    /// whose request line contains `marker`.
    pub fn start(upstream: &str, marker: &str, drops: usize) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(ProxyState {
            upstream: upstream
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
            marker: marker.to_owned(),
            drops_left: AtomicUsize::new(drops),
            fault: Mutex::new(None),
            log: Mutex::new(Vec::new()),
        });
        let (stop2, state2) = (stop.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let state = state2.clone();
                        std::thread::spawn(move || {
                            let _ = serve_connection(client, &state);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Self {
            port,
            stop,
            state,
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (request line, response dropped or failed) for every request seen so far.
    pub fn requests(&self) -> Vec<(String, bool)> {
        self.state.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// How many requests seen so far have a request line containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(line, _)| line.contains(needle))
            .count()
    }

    /// From now on, answers every request whose request line contains `marker` with `fault`
    /// instead of forwarding it: the server never sees those requests.
    pub fn fail(&self, marker: &str, fault: Fault) {
        if let Ok(mut f) = self.state.fault.lock() {
            *f = Some((marker.to_owned(), fault));
        }
    }

    /// Forwards every request again (the drops asked for at start still apply).
    pub fn heal(&self) {
        if let Ok(mut f) = self.state.fault.lock() {
            *f = None;
        }
    }
}

impl Drop for DroppingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP message head and body (Content-Length framing). `None` at a clean EOF.
fn read_message(reader: &mut BufReader<TcpStream>) -> Result<Option<(String, Vec<u8>)>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                bail!("connection closed inside a message head")
            };
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

/// Answers the client in the proxy's own name, then closes the connection.
fn answer_with_fault(client: &mut TcpStream, fault: Fault) {
    if let Fault::Status(status) = fault {
        let body = format!(
            r#"{{"error":"injected_fault","message":"the lab proxy failed this request with HTTP {status}"}}"#
        );
        let head = format!(
            "HTTP/1.1 {status} Injected Fault\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = client.write_all(head.as_bytes());
        let _ = client.write_all(body.as_bytes());
        let _ = client.flush();
    }
    let _ = client.shutdown(Shutdown::Both);
}

fn serve_connection(client: TcpStream, state: &ProxyState) -> Result<()> {
    client.set_nonblocking(false)?;
    let mut client_reader = BufReader::new(client.try_clone()?);
    let mut client_writer = client;
    let upstream = TcpStream::connect(&state.upstream)?;
    let mut upstream_reader = BufReader::new(upstream.try_clone()?);
    let mut upstream_writer = upstream;
    while let Some((head, body)) = read_message(&mut client_reader)? {
        let request_line = head.lines().next().unwrap_or_default().to_owned();
        let fault = state
            .fault
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .filter(|(marker, _)| request_line.contains(marker.as_str()))
            .map(|(_, fault)| fault);
        if let Some(fault) = fault {
            if let Ok(mut log) = state.log.lock() {
                log.push((request_line, true));
            }
            answer_with_fault(&mut client_writer, fault);
            return Ok(());
        }
        upstream_writer.write_all(head.as_bytes())?;
        upstream_writer.write_all(&body)?;
        let Some((resp_head, resp_body)) = read_message(&mut upstream_reader)? else {
            bail!("upstream closed without a response");
        };
        let drop_it = request_line.contains(&state.marker)
            && state
                .drops_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if let Ok(mut log) = state.log.lock() {
            log.push((request_line, drop_it));
        }
        if drop_it {
            // The server has done the work; the client never hears about it.
            let _ = client_writer.shutdown(Shutdown::Both);
            return Ok(());
        }
        client_writer.write_all(resp_head.as_bytes())?;
        client_writer.write_all(&resp_body)?;
    }
    Ok(())
}
