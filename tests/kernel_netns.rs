//! Kernel fast path in private network namespaces (root only; skipped otherwise unless
//! `PALISADE_REQUIRE_ROOT_TESTS=1`). Each test creates its own namespaces (names carry the pid
//! and a tag), with 10.201.x.0/24 addresses that exist only inside them, and removes them on
//! drop, also on panic. The first tests drive `KernelPath` directly under a test-local relay;
//! `media_plane_moves_latched_call_into_the_kernel` drives the service's own `MediaPlane`
//! (relay + kernel path) started inside the border namespace.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade::media::kernel::{KernelFlow, KernelPath};
use palisade::media::{FlowId, FlowSpec, MediaCommand, SideSpec};
use palisade::service::media::MediaPlane;

#[path = "support/root.rs"]
mod root;
use root::root_or_skip;

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces that are deleted on drop.
struct Netns {
    names: Vec<String>,
}

impl Netns {
    fn new(tag: &str, roles: &[&str]) -> Netns {
        let pid = std::process::id();
        let mut ns = Netns { names: Vec::new() };
        for role in roles {
            let name = format!("pal-{role}-{tag}-{pid}");
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            sh(&["ip", "netns", "add", &name]);
            ns.names.push(name.clone());
            sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        }
        ns
    }

    fn name(&self, role: &str) -> &str {
        self.names
            .iter()
            .find(|n| n.starts_with(&format!("pal-{role}-")))
            .expect("role")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// Runs `f` on a thread inside namespace `ns` (sockets created there stay there).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        // SAFETY: valid fd; affects this thread only.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns"
        );
        f()
    })
    .join()
    .expect("netns thread")
}

fn bind(ns: &str, addr: &str) -> UdpSocket {
    let addr: SocketAddr = addr.parse().unwrap();
    let s = in_ns(ns, move || UdpSocket::bind(addr).expect("bind"));
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

/// Test-local user-space relay: counts and forwards between two sockets to fixed far ends.
struct Relay {
    seen: [Arc<AtomicU64>; 2],
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(a: UdpSocket, b: UdpSocket, a_remote: SocketAddr, b_remote: SocketAddr) -> Relay {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
        let a = Arc::new(a);
        let b = Arc::new(b);
        let mut threads = Vec::new();
        for (rx, tx, to, n) in [
            (a.clone(), b.clone(), b_remote, seen[0].clone()),
            (b, a, a_remote, seen[1].clone()),
        ] {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((len, _)) = rx.recv_from(&mut buf) {
                        n.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send_to(&buf[..len], to);
                    }
                }
            }));
        }
        Relay {
            seen,
            stop,
            threads,
        }
    }

    fn seen(&self) -> (u64, u64) {
        (
            self.seen[0].load(Ordering::Relaxed),
            self.seen[1].load(Ordering::Relaxed),
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Sends `n` numbered packets each way (A→a_local, B→b_local) and checks that every one
/// arrives at the other end from the border's local endpoint of that side.
fn exchange(round: u32, n: u32, a: &UdpSocket, b: &UdpSocket, flow: &KernelFlow) {
    for i in 0..n {
        a.send_to(format!("A{round}:{i}").as_bytes(), flow.a_local)
            .unwrap();
        b.send_to(format!("B{round}:{i}").as_bytes(), flow.b_local)
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    for (sock, prefix, from) in [(b, "A", flow.b_local), (a, "B", flow.a_local)] {
        let mut got = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 2048];
        while got.len() < n as usize && Instant::now() < deadline {
            if let Ok((len, src)) = sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                if let Some(seq) = text.strip_prefix(&format!("{prefix}{round}:")) {
                    assert_eq!(src, from, "packet {text} arrived from the wrong source");
                    got.insert(seq.parse::<u32>().unwrap());
                }
            }
        }
        assert_eq!(
            got.len(),
            n as usize,
            "round {round}: direction from {prefix} lost packets: got {got:?}"
        );
    }
}

#[test]
fn flow_moves_to_kernel_and_back() {
    if !root_or_skip("flow_moves_to_kernel_and_back") {
        return;
    }
    let ns = three_namespaces("fl", 1, 2);
    let (na, nb, nx) = (
        ns.name("a").to_owned(),
        ns.name("b").to_owned(),
        ns.name("border").to_owned(),
    );

    let flow = KernelFlow {
        a_local: "10.201.1.1:30000".parse().unwrap(),
        a_remote: "10.201.1.2:5000".parse().unwrap(),
        b_local: "10.201.2.1:30002".parse().unwrap(),
        b_remote: "10.201.2.2:6000".parse().unwrap(),
    };
    let relay = Relay::start(
        bind(&nx, "10.201.1.1:30000"),
        bind(&nx, "10.201.2.1:30002"),
        flow.a_remote,
        flow.b_remote,
    );
    let a = bind(&na, "10.201.1.2:5000");
    let b = bind(&nb, "10.201.2.2:6000");

    // The table exists before any traffic (as in the service, which starts it at start-up), so
    // conntrack is active and phase 1 leaves entries that the install must delete.
    let kp = KernelPath::start_in_netns("palisade_test", Some(&nx)).expect("start");

    // 1. User space relays.
    exchange(1, 20, &a, &b, &flow);
    let (sa, sb) = relay.seen();
    assert!(sa >= 20 && sb >= 20, "user space saw {sa}/{sb}");
    // An unrelated forwarded conntrack that the install must not touch.
    let other_a = bind(&na, "10.201.1.2:5001");
    let other_b = bind(&nb, "10.201.2.2:6001");
    other_a.send_to(b"x", "10.201.2.2:6001").unwrap();
    let mut buf = [0u8; 16];
    assert!(
        other_b.recv_from(&mut buf).is_ok(),
        "plain forwarding broken"
    );
    let unrelated = |nx: &str| {
        conntrack(nx)
            .iter()
            .any(|l| l.contains("sport=5001 dport=6001"))
    };
    assert!(unrelated(&nx), "{:?}", conntrack(&nx));

    // 2. Installed: the kernel forwards, user space sees nothing, nft counts.
    let id = FlowId(7);
    kp.install(id, flow);
    kp.flush().expect("flush");
    assert_eq!(kp.installed(), 1);
    assert_eq!(kp.kernel_elements().unwrap(), 6);
    assert!(
        unrelated(&nx),
        "install deleted an unrelated conntrack entry"
    );
    let before = relay.seen();
    exchange(2, 50, &a, &b, &flow);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        relay.seen(),
        before,
        "user space still saw packets after install"
    );
    let c = kp.counters().unwrap()[&id];
    assert!(
        c.packets >= 100 && c.bytes >= 100 * 28,
        "kernel counters {c:?}"
    );
    // The same figures without waiting: the report comes back on the channel given.
    let (tx, rx) = std::sync::mpsc::channel();
    kp.request_counters(9, tx).expect("request");
    let report = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("counters report");
    assert_eq!(report.seq, 9);
    let c2 = report.counters.expect("counters read")[&id];
    assert!(c2.packets >= c.packets, "{c2:?} after {c:?}");

    // 3. Removed: back to user space, nothing left in the table.
    kp.remove(id);
    kp.flush().expect("flush");
    assert_eq!(kp.installed(), 0);
    assert_eq!(kp.kernel_elements().unwrap(), 0);
    assert!(kp.counters().unwrap().is_empty());
    let before = relay.seen();
    exchange(3, 20, &a, &b, &flow);
    let after = relay.seen();
    assert!(
        after.0 >= before.0 + 20 && after.1 >= before.1 + 20,
        "user space {before:?} → {after:?}"
    );

    kp.shutdown().expect("shutdown");
    let out = Command::new("ip")
        .args(["netns", "exec", &nx, "nft", "list", "tables"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("palisade_test"));
}

fn conntrack(ns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/nf_conntrack"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn flow_n(i: u32) -> KernelFlow {
    let (hi, lo) = ((i / 250) as u8, (i % 250) as u8 + 1);
    KernelFlow {
        a_local: format!("10.201.1.1:{}", 20000 + 2 * i).parse().unwrap(),
        a_remote: format!("10.201.10.{lo}:{}", 5000 + hi as u32)
            .parse()
            .unwrap(),
        b_local: format!("10.201.2.1:{}", 20001 + 2 * i).parse().unwrap(),
        b_remote: format!("10.201.20.{lo}:{}", 6000 + hi as u32)
            .parse()
            .unwrap(),
    }
}

fn tables(ns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn thousand_flows_leave_nothing_behind() {
    if !root_or_skip("thousand_flows_leave_nothing_behind") {
        return;
    }
    let ns = Netns::new("k", &["border"]);
    let nx = ns.name("border");
    let kp = KernelPath::start_in_netns("palisade_k", Some(nx)).expect("start");
    for i in 0..1000 {
        kp.install(FlowId(i as u64), flow_n(i));
    }
    kp.flush().expect("flush");
    assert_eq!(kp.installed(), 1000);
    assert_eq!(kp.kernel_elements().unwrap(), 6000);
    for i in 0..1000 {
        kp.remove(FlowId(i as u64));
    }
    kp.flush().expect("flush");
    assert_eq!(kp.installed(), 0);
    assert_eq!(kp.kernel_elements().unwrap(), 0);
    kp.shutdown().unwrap();
    assert!(tables(nx).is_empty(), "{:?}", tables(nx));
}

#[test]
fn restart_after_crash_leaves_one_clean_table() {
    if !root_or_skip("restart_after_crash_leaves_one_clean_table") {
        return;
    }
    let ns = Netns::new("r", &["border"]);
    let nx = ns.name("border");
    let first = KernelPath::start_in_netns("palisade_r", Some(nx)).expect("start");
    first.install(FlowId(1), flow_n(1));
    first.flush().unwrap();
    std::mem::forget(first); // "crash": no shutdown, table left behind
    let second = KernelPath::start_in_netns("palisade_r", Some(nx)).expect("restart");
    assert_eq!(tables(nx), vec!["table inet palisade_r".to_owned()]);
    assert_eq!(second.kernel_elements().unwrap(), 0);
    // Removing a flow the kernel does not have (e.g. timed out) must not fail the batch.
    second.remove(FlowId(1));
    second.install(FlowId(2), flow_n(2));
    second.flush().unwrap();
    assert_eq!(second.installed(), 1);
    second.shutdown().unwrap();
    assert!(tables(nx).is_empty());
}

// ---------------------------------------------------------------------------------------------
// The service's media plane (relay + kernel fast path, exactly as the running instance glues
// them) moving a latched call into the kernel.
// ---------------------------------------------------------------------------------------------

/// Three namespaces `a` — `border` — `b` joined by veth pairs: A is 10.201.`sa`.2 (border side
/// .1), B is 10.201.`sb`.2 (border side .1); the far ends route via the border, which forwards.
fn three_namespaces(tag: &str, sa: u8, sb: u8) -> Netns {
    let ns = Netns::new(tag, &["a", "border", "b"]);
    let (na, nb, nx) = (ns.name("a"), ns.name("b"), ns.name("border"));
    sh(&[
        "ip", "-n", nx, "link", "add", "va", "type", "veth", "peer", "name", "va0", "netns", na,
    ]);
    sh(&[
        "ip", "-n", nx, "link", "add", "vb", "type", "veth", "peer", "name", "vb0", "netns", nb,
    ]);
    for (n, dev, addr) in [
        (nx, "va", format!("10.201.{sa}.1/24")),
        (na, "va0", format!("10.201.{sa}.2/24")),
        (nx, "vb", format!("10.201.{sb}.1/24")),
        (nb, "vb0", format!("10.201.{sb}.2/24")),
    ] {
        sh(&["ip", "-n", n, "addr", "add", &addr, "dev", dev]);
        sh(&["ip", "-n", n, "link", "set", dev, "up"]);
    }
    for (n, gw) in [
        (na, format!("10.201.{sa}.1")),
        (nb, format!("10.201.{sb}.1")),
    ] {
        sh(&["ip", "-n", n, "route", "add", "default", "via", &gw]);
    }
    sh(&[
        "ip",
        "netns",
        "exec",
        nx,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    ns
}

/// `nft -j ARGS` run inside namespace `ns`.
fn nft_json(ns: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-j"])
        .args(args)
        .output()
        .expect("spawn nft");
    assert!(
        out.status.success(),
        "nft -j {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("nft json")
}

/// Elements in all maps and sets of `inet table` (what the kernel holds for the flows).
fn nft_elements(ns: &str, table: &str) -> usize {
    let v = nft_json(ns, &["list", "table", "inet", table]);
    let mut n = 0;
    for obj in v["nftables"].as_array().into_iter().flatten() {
        for kind in ["set", "map"] {
            n += obj[kind]["elem"].as_array().map_or(0, Vec::len);
        }
    }
    n
}

/// Packets counted by the kernel path (`cnt4` per-element counters, all flows, both directions),
/// read straight from nftables, independently of Palisade.
fn nft_packets(ns: &str, table: &str) -> u64 {
    let v = nft_json(ns, &["list", "set", "inet", table, "cnt4"]);
    let mut n = 0;
    for obj in v["nftables"].as_array().into_iter().flatten() {
        for e in obj["set"]["elem"].as_array().into_iter().flatten() {
            n += e["elem"]["counter"]["packets"].as_u64().unwrap_or(0);
        }
    }
    n
}

const RTP_LEN: usize = 172; // 12-byte RTP header + 160 bytes of G.711 (20 ms)

/// A numbered RTP-like packet: version 2, PT 0, sequence, timestamp, SSRC = `ssrc`, payload a
/// pattern derived from the sequence number (so corruption is detected).
fn rtp_packet(ssrc: u32, seq: u32) -> [u8; RTP_LEN] {
    let mut p = [0u8; RTP_LEN];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
    p[4..8].copy_from_slice(&seq.wrapping_mul(160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    for (i, b) in p[12..].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_add(i) as u8;
    }
    p
}

fn rtp_ok(ssrc: u32, p: &[u8]) -> bool {
    if p.len() != RTP_LEN || p[8..12] != ssrc.to_be_bytes() {
        return false;
    }
    let seq = u16::from_be_bytes([p[2], p[3]]);
    p[12..]
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (seq as usize).wrapping_add(i) as u8)
}

/// One direction of a call: a far end sending a packet every 5 ms (while `enabled`) toward the
/// border, and the other far end counting what arrives.
#[derive(Default)]
struct Stream {
    enabled: AtomicBool,
    sent: AtomicU64,
    /// Intact packets of this stream from the expected border endpoint.
    got: AtomicU64,
    /// Packets of this stream from any other source, or damaged.
    bad: AtomicU64,
}

/// Two streams (A→B and B→A); threads stop and are joined on drop, also on panic.
struct Call {
    streams: [Arc<Stream>; 2],
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Call {
    /// `far[i]` is side i's far-end socket, `border[i]` the border's endpoint on side i.
    fn start(far: [UdpSocket; 2], border: [SocketAddr; 2]) -> Call {
        let stop = Arc::new(AtomicBool::new(false));
        let streams = [Arc::new(Stream::default()), Arc::new(Stream::default())];
        let far = far.map(Arc::new);
        let mut threads = Vec::new();
        for i in 0..2 {
            let ssrc = 0x5a5a_0000 + i as u32;
            // Sender at side i's far end, toward the border's side-i endpoint.
            let (tx, to, s, stop_s) = (far[i].clone(), border[i], streams[i].clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut seq = 0u32;
                while !stop_s.load(Ordering::Relaxed) {
                    if s.enabled.load(Ordering::Relaxed) {
                        if tx.send_to(&rtp_packet(ssrc, seq), to).is_ok() {
                            s.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        seq += 1;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }));
            // Receiver at the other far end: must come from the border's endpoint on that side.
            let (rx, from, s, stop_r) = (
                far[1 - i].clone(),
                border[1 - i],
                streams[i].clone(),
                stop.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop_r.load(Ordering::Relaxed) {
                    let Ok((n, src)) = rx.recv_from(&mut buf) else {
                        continue; // 50 ms read timeout
                    };
                    if n >= 12 && buf[8..12] != ssrc.to_be_bytes() {
                        continue; // the other stream's packet (never expected here)
                    }
                    if src == from && rtp_ok(ssrc, &buf[..n]) {
                        s.got.fetch_add(1, Ordering::Relaxed);
                    } else {
                        s.bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        Call {
            streams,
            stop,
            threads,
        }
    }

    fn enable(&self, i: usize, on: bool) {
        self.streams[i].enabled.store(on, Ordering::Relaxed);
    }

    /// Packets received intact from the right source, per direction (A→B, B→A).
    fn got(&self) -> [u64; 2] {
        [0, 1].map(|i| self.streams[i].got.load(Ordering::Relaxed))
    }

    fn bad(&self) -> [u64; 2] {
        [0, 1].map(|i| self.streams[i].bad.load(Ordering::Relaxed))
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Keeps the plane's control loop turning (as the service does) for `d`: `poll` every 20 ms.
fn run_plane(plane: &mut MediaPlane, d: Duration) {
    let end = Instant::now() + d;
    loop {
        plane.poll(Instant::now());
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// Polls the plane every 20 ms until `cond` holds or `timeout` passes; whether it held.
fn plane_until(
    plane: &mut MediaPlane,
    timeout: Duration,
    mut cond: impl FnMut(&mut MediaPlane) -> bool,
) -> bool {
    let end = Instant::now() + timeout;
    loop {
        plane.poll(Instant::now());
        if cond(plane) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Packets of the realm as the plane reports them: user-space relay counters plus the kernel
/// counters *of the last report received*. Reports are only requested by `idle_flows` (and
/// delivered by a later `poll`), so the difference of two readings with no `idle_flows` call in
/// between and no report pending ([`settle_counters`]) is exactly what the user-space relay
/// forwarded in that interval (the kernel part cannot change), which is how user-space packets
/// are measured.
fn realm_packets(plane: &MediaPlane, realm: &str) -> u64 {
    plane
        .snapshot()
        .iter()
        .find(|r| r.realm == realm)
        .expect("realm in snapshot")
        .relayed
        .packets
        .iter()
        .sum()
}

/// Polls until the kernel counters report requested by the last `idle_flows` has arrived.
fn settle_counters(plane: &mut MediaPlane) {
    assert!(
        plane_until(plane, Duration::from_secs(5), |p| !p
            .kernel_counters_pending()),
        "kernel counters report never arrived"
    );
}

const PLANE_NODE: &str = r#"
name = "kn"
home_domains = ["a.example"]
[media]
kernel = true
nft_table = "palisade_mplane"
inactivity_timeout_s = 2
[[realm]]
name = "home"
kind = "home"
listen = ["udp:10.201.3.1:15060"]
core = "udp:10.201.3.2:5060"
media_address = "10.201.3.1"
media_ports = "40000-40099"
[[realm]]
name = "interconnect"
kind = "peer"
listen = ["udp:10.201.4.1:15060"]
media_address = "10.201.4.1"
media_ports = "40000-40099"
[[realm.peer]]
name = "b"
domains = ["b.example"]
sources = ["10.201.4.2"]
next_hop = "udp:10.201.4.2:5060"
"#;

#[test]
fn media_plane_moves_latched_call_into_the_kernel() {
    if !root_or_skip("media_plane_moves_latched_call_into_the_kernel") {
        return;
    }
    let ns = three_namespaces("mp", 3, 4);
    let (na, nb, nx) = (
        ns.name("a").to_owned(),
        ns.name("b").to_owned(),
        ns.name("border").to_owned(),
    );
    let table = "palisade_mplane";
    let far = [bind(&na, "10.201.3.2:5004"), bind(&nb, "10.201.4.2:6004")];
    let far_addrs = [0, 1].map(|i| far[i].local_addr().unwrap());
    let border: [SocketAddr; 2] = [
        "10.201.3.1:40000".parse().unwrap(),
        "10.201.4.1:40000".parse().unwrap(),
    ];
    let nx_in = nx.clone();
    // Everything the service would do runs on one thread inside BORDER: the relay threads and
    // the kernel programmer thread it spawns, their sockets, the `nft` children and the
    // conntrack netlink socket all inherit that namespace.
    in_ns(&nx.clone(), move || {
        let nx = nx_in;
        let cfg = palisade::config::parse(PLANE_NODE, std::path::Path::new("kn.toml"), &|p| {
            std::fs::read_to_string(p)
        })
        .expect("config parses");
        let mut plane = MediaPlane::start(&cfg).expect("media plane starts");
        assert!(
            plane.kernel_enabled(),
            "the kernel fast path did not start inside the border namespace"
        );
        assert!(
            tables(&nx).contains(&format!("table inet {table}")),
            "{:?}",
            tables(&nx)
        );

        // The call: offer/answer known, gate opened on the answer.
        let id = FlowId(42);
        plane.apply(MediaCommand::Open(FlowSpec {
            id,
            sides: [0, 1].map(|i| SideSpec {
                local: border[i],
                remote: None,
            }),
        }));
        assert_eq!(plane.open_flows(), 1);
        for (side, remote) in far_addrs.iter().enumerate() {
            plane.apply(MediaCommand::SetRemote {
                id,
                side,
                remote: Some(*remote),
            });
        }
        plane.apply(MediaCommand::Gate { id, open: true });
        let call = Call::start(far, border);

        // 1. Only A talks: side 1 is not latched, so the relay forwards A→B in user space and
        //    nothing is offloaded.
        call.enable(0, true);
        let u0 = realm_packets(&plane, "home");
        let ok = plane_until(&mut plane, Duration::from_secs(3), |p| {
            assert_eq!(p.kernel_flows(), 0, "offloaded before both sides latched");
            call.got()[0] >= 40
        });
        assert!(ok, "A→B through user space: got {:?}", call.got());
        let u1 = realm_packets(&plane, "home");
        assert!(
            u1 >= u0 + 40,
            "user-space relay counters did not rise: {u0} → {u1}"
        );
        let snap = plane.snapshot();
        assert!(
            snap.iter()
                .all(|r| r.flows_user == 1 && r.flows_kernel == 0),
            "{snap:?}"
        );
        assert_eq!(nft_elements(&nx, table), 0, "nothing installed yet");

        // 2. B talks too: both sides latch, `poll` installs the flow into the kernel.
        call.enable(1, true);
        let t_latch = Instant::now();
        let ok = plane_until(&mut plane, Duration::from_secs(3), |p| {
            p.kernel_flows() == 1
        });
        assert!(ok, "flow not installed after both sides latched");
        let snap = plane.snapshot();
        assert!(
            snap.iter()
                .all(|r| r.flows_user == 0 && r.flows_kernel == 1),
            "{snap:?}"
        );
        // Settle: the programmer applies the batch (coalesced 15 ms, one `nft` run) and clears
        // the stale conntrack entries; packets already queued still reach user space.
        let mut settled = None;
        let settle_end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < settle_end {
            let before = realm_packets(&plane, "home");
            run_plane(&mut plane, Duration::from_millis(200));
            if realm_packets(&plane, "home") == before {
                settled = Some(t_latch.elapsed());
                break;
            }
        }
        let settled = settled.expect("user-space counters never stopped rising after install");
        assert_eq!(nft_elements(&nx, table), 6, "one flow = 6 elements");

        // Steady state for 1 s: user space sees nothing, both far ends keep receiving, the
        // kernel counts.
        let (u0, g0, k0) = (
            realm_packets(&plane, "home"),
            call.got(),
            nft_packets(&nx, table),
        );
        run_plane(&mut plane, Duration::from_secs(1));
        let (u1, g1, k1) = (
            realm_packets(&plane, "home"),
            call.got(),
            nft_packets(&nx, table),
        );
        assert_eq!(
            u1, u0,
            "user-space relay still forwarding after install (settled after {settled:?})"
        );
        assert!(
            g1[0] >= g0[0] + 100 && g1[1] >= g0[1] + 100,
            "audio stopped arriving after install: {g0:?} → {g1:?}"
        );
        assert!(
            k1 >= k0 + 200,
            "nftables counters did not rise: {k0} → {k1}"
        );
        assert_eq!(call.bad(), [0, 0], "packets from a wrong source or damaged");
        eprintln!(
            "kernel path settled {settled:?} after B started; in 1 s: user {u0}→{u1}, \
             nft {k0}→{k1}, received A→B {}→{}, B→A {}→{}",
            g0[0], g1[0], g0[1], g1[1]
        );
        // The plane's own view: `idle_flows` only requests the kernel counters (the drive loop
        // never waits for `nft`); the report arrives on a later `poll`, and the snapshot then
        // adds it to the (frozen) user-space counters.
        let idle = plane.idle_flows(Instant::now());
        assert!(!idle.contains(&id));
        assert!(plane.kernel_counters_pending(), "no counters request sent");
        settle_counters(&mut plane);
        let total = realm_packets(&plane, "home");
        assert!(
            total >= u1 + k1,
            "snapshot {total} < user {u1} + kernel {k1}"
        );
        // ... with the kernel's share under path "kernel" (palisade_media_packets_relayed_total).
        let home = plane.snapshot().into_iter().find(|r| r.realm == "home");
        let kernel = home.map_or(0, |r| r.relayed.packets[palisade::service::media::KERNEL]);
        assert!(kernel >= k1, "kernel path {kernel} < nft {k1}");

        // 3. Never idle while the kernel forwards (3 s > the 2 s inactivity timeout) ...
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            run_plane(&mut plane, Duration::from_millis(250));
            let idle = plane.idle_flows(Instant::now());
            assert!(
                !idle.contains(&id),
                "flow reported idle while the kernel forwards it"
            );
        }
        // ... and user space still saw nothing (no `idle_flows` between these two readings, and
        // the last report already in).
        settle_counters(&mut plane);
        let u2 = realm_packets(&plane, "home");
        let g2 = call.got();
        run_plane(&mut plane, Duration::from_millis(500));
        assert_eq!(realm_packets(&plane, "home"), u2, "user space forwarding");
        assert!(call.got()[0] > g2[0] && call.got()[1] > g2[1]);
        // ... but idle once both ends fall silent (kernel counters stop).
        call.enable(0, false);
        call.enable(1, false);
        let t_quiet = Instant::now();
        let ok = plane_until(&mut plane, Duration::from_secs(6), |p| {
            p.idle_flows(Instant::now()).contains(&id)
        });
        assert!(ok, "a silent kernel flow is never reported idle");
        assert!(
            t_quiet.elapsed() >= Duration::from_millis(1500),
            "reported idle too early: {:?}",
            t_quiet.elapsed()
        );
        call.enable(0, true);
        call.enable(1, true);
        let g3 = call.got();
        let ok = plane_until(&mut plane, Duration::from_secs(3), |_| {
            let g = call.got();
            g[0] >= g3[0] + 20 && g[1] >= g3[1] + 20
        });
        assert!(ok, "audio did not resume: {g3:?} → {:?}", call.got());

        // 4. The call ends (while the far ends still send): kernel state and relay flow gone.
        plane.apply(MediaCommand::Close(id));
        assert_eq!(plane.kernel_flows(), 0);
        assert_eq!(plane.open_flows(), 0);
        let ok = plane_until(&mut plane, Duration::from_secs(3), |_| {
            nft_elements(&nx, table) == 0
        });
        assert!(
            ok,
            "nftables elements left after Close: {}",
            nft_elements(&nx, table)
        );
        // No stale NAT or conntrack keeps forwarding the ended call.
        run_plane(&mut plane, Duration::from_millis(300));
        let g4 = call.got();
        run_plane(&mut plane, Duration::from_millis(500));
        assert_eq!(call.got(), g4, "media still forwarded after the call ended");
        assert_eq!(call.bad(), [0, 0], "packets from a wrong source or damaged");
        drop(call);

        plane.shutdown();
        let t = tables(&nx);
        assert!(
            !t.iter().any(|l| l.contains(table)),
            "table left after shutdown: {t:?}"
        );
    });
}
