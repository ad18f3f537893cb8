//! A network per host (LAB.md "A network per host"): a bridge on the machine with a private
//! /24 that the test creates, and for each attached host a network namespace joined to the
//! bridge by a veth pair. Commands run in the host ([`crate::Host::exec`], agents) then live in
//! that namespace, so the host can be cut off ([`HostLink::cut`]: its `eth0` down, `Network is
//! unreachable`) and brought back ([`HostLink::restore`]).
//!
//! The machine is reachable from the hosts at [`LabNet::gateway`]: a server under test listens
//! there, and [`LabNet::forward`] relays a loopback service (an apt repository) to it.
//! Dropping a [`HostLink`] deletes its namespace; dropping the [`LabNet`] deletes the bridge.

use crate::util;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const IP_TIMEOUT: Duration = Duration::from_secs(30);
static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Result<()> {
    util::run(Command::new("ip").args(args), IP_TIMEOUT)
        .with_context(|| format!("ip {}", args.join(" ")))?;
    Ok(())
}

/// A unique interface or namespace name (at most 15 characters): `pw<pid><kind><seq>`.
fn unique_name(kind: char) -> String {
    let pid = std::process::id() % 1_000_000;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed) % 1000;
    format!("pw{pid}{kind}{seq}")
}

/// A bridge with a private /24 (`10.213.N.0/24`, N chosen free) owned by this test.
pub struct LabNet {
    bridge: String,
    /// First three octets of the subnet.
    net: [u8; 3],
    next_host: Mutex<u8>,
    forwards: Mutex<Vec<TcpForward>>,
}

impl LabNet {
    pub fn new() -> Result<LabNet> {
        let used = util::run(Command::new("ip").args(["-4", "addr", "show"]), IP_TIMEOUT)?;
        let used = String::from_utf8_lossy(&used.stdout).into_owned();
        let start = (std::process::id() % 200) as u8;
        let n = (0..200u8)
            .map(|i| 20 + (start.wrapping_add(i) % 200))
            .find(|n| !used.contains(&format!("10.213.{n}.")))
            .context("no free 10.213.N.0/24 subnet for a lab network")?;
        let bridge = unique_name('b');
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        let net = LabNet {
            bridge,
            net: [10, 213, n],
            next_host: Mutex::new(2),
            forwards: Mutex::new(Vec::new()),
        };
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.gateway()),
            "dev",
            &net.bridge,
        ])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        tracing::debug!(bridge = %net.bridge, gateway = %net.gateway(), "lab network created");
        Ok(net)
    }

    /// The machine's address on the bridge (`10.213.N.1`).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], 1)
    }

    /// Puts `host` in a network namespace of its own on this bridge: every command the host
    /// runs from now on (agents included) uses that network. Keep the returned link as long
    /// as the host runs.
    pub fn attach(&self, host: &crate::Host) -> Result<HostLink> {
        let addr = {
            let mut next = self.next_host.lock().unwrap_or_else(|p| p.into_inner());
            if *next == 255 {
                bail!("lab network {} is full", self.bridge);
            }
            let a = Ipv4Addr::new(self.net[0], self.net[1], self.net[2], *next);
            *next += 1;
            a
        };
        let netns = unique_name('n');
        let veth = unique_name('v');
        ip(&["netns", "add", &netns])?;
        let link = HostLink {
            netns,
            addr,
            gateway: self.gateway(),
        };
        ip(&[
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &link.netns,
        ])?;
        ip(&["link", "set", &veth, "master", &self.bridge, "up"])?;
        ip(&[
            "-n",
            &link.netns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &link.netns, "link", "set", "lo", "up"])?;
        link.restore()?;
        host.set_netns(Some(link.path()));
        tracing::debug!(host = %host.name(), netns = %link.netns, %addr, "host attached to lab network");
        Ok(link)
    }

    /// Relays TCP connections to `gateway:port` to `127.0.0.1:port` (e.g. an [`crate::AptRepo`],
    /// which listens on loopback only), for as long as this network lives.
    pub fn forward(&self, port: u16) -> Result<()> {
        let fwd = TcpForward::start(
            SocketAddr::from((self.gateway(), port)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        )?;
        self.forwards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(fwd);
        Ok(())
    }
}

impl Drop for LabNet {
    fn drop(&mut self) {
        self.forwards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if let Err(e) = ip(&["link", "del", &self.bridge]) {
            tracing::warn!(bridge = %self.bridge, error = %format!("{e:#}"), "could not delete lab bridge");
        }
    }
}

/// A host's namespace and address on a [`LabNet`].
#[derive(Debug)]
pub struct HostLink {
    netns: String,
    addr: Ipv4Addr,
    gateway: Ipv4Addr,
}

impl HostLink {
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// `/run/netns/NAME`, for `nsenter --net=`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.netns)
    }

    /// Cuts the host off: its `eth0` goes down (connections fail with `Network is
    /// unreachable`; what was in flight is lost).
    pub fn cut(&self) -> Result<()> {
        ip(&["-n", &self.netns, "link", "set", "eth0", "down"])
    }

    /// Brings the host back: `eth0` up and the default route through the gateway.
    pub fn restore(&self) -> Result<()> {
        ip(&["-n", &self.netns, "link", "set", "eth0", "up"])?;
        // A link going down drops its routes; the default one does not come back by itself.
        ip(&[
            "-n",
            &self.netns,
            "route",
            "replace",
            "default",
            "via",
            &self.gateway.to_string(),
        ])
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        // The veth pair goes with the namespace once nothing runs in it any more.
        if let Err(e) = ip(&["netns", "del", &self.netns]) {
            tracing::warn!(netns = %self.netns, error = %format!("{e:#}"), "could not delete lab namespace");
        }
    }
}

/// A TCP relay from one address to another, in threads; stopped on drop.
struct TcpForward {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpForward {
    fn start(listen: SocketAddr, to: SocketAddr) -> Result<TcpForward> {
        let listener =
            TcpListener::bind(listen).with_context(|| format!("binding a relay on {listen}"))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        std::thread::spawn(move || {
                            let _ = relay(client, to);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(TcpForward {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for TcpForward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay(client: TcpStream, to: SocketAddr) -> Result<()> {
    client.set_nonblocking(false)?;
    let upstream = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    let (mut c_read, mut u_write) = (client.try_clone()?, upstream.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream, client);
    let _ = copy(&mut u_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

fn copy(from: &mut TcpStream, to: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
    }
}
