//! Kernel fast path in private network namespaces (root only; skipped otherwise unless
//! `PALISADE_REQUIRE_ROOT_TESTS=1`). Each test creates its own namespaces (names carry the pid
//! and a tag), with 10.201.x.0/24 addresses that exist only inside them, and removes them on
//! drop, also on panic.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade::media::kernel::{KernelFlow, KernelPath};
use palisade::media::FlowId;

fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("PALISADE_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("{test}: needs root and PALISADE_REQUIRE_ROOT_TESTS=1");
    }
    eprintln!("skipping {test}: needs root (network namespaces, nftables)");
    false
}

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
    let ns = Netns::new("fl", &["a", "border", "b"]);
    let (na, nb, nx) = (
        ns.name("a").to_owned(),
        ns.name("b").to_owned(),
        ns.name("border").to_owned(),
    );
    sh(&[
        "ip", "-n", &nx, "link", "add", "va", "type", "veth", "peer", "name", "va0", "netns", &na,
    ]);
    sh(&[
        "ip", "-n", &nx, "link", "add", "vb", "type", "veth", "peer", "name", "vb0", "netns", &nb,
    ]);
    for (n, dev, addr) in [
        (&nx, "va", "10.201.1.1/24"),
        (&na, "va0", "10.201.1.2/24"),
        (&nx, "vb", "10.201.2.1/24"),
        (&nb, "vb0", "10.201.2.2/24"),
    ] {
        sh(&["ip", "-n", n, "addr", "add", addr, "dev", dev]);
        sh(&["ip", "-n", n, "link", "set", dev, "up"]);
    }
    sh(&[
        "ip",
        "-n",
        &na,
        "route",
        "add",
        "default",
        "via",
        "10.201.1.1",
    ]);
    sh(&[
        "ip",
        "-n",
        &nb,
        "route",
        "add",
        "default",
        "via",
        "10.201.2.1",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &nx,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);

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
