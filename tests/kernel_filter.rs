//! The kernel-side drop set (`[sip] kernel_filter = true`), with real nftables in a network
//! namespace this test creates (root only; skipped otherwise unless
//! `PALISADE_REQUIRE_ROOT_TESTS=1`). Palisade runs inside it on its loopback: an unknown source's
//! datagrams to the peer-side SIP port are dropped and counted by the kernel and never reach
//! Palisade (its own unknown-source counter stays at zero), a call to the partner completes
//! (SIPp both ends), a reload that adds the source to the partner updates the set, and a stop
//! removes the table.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TABLE: &str = "palisade_sip_filter_test";
const ADMIN: &str = "127.0.0.1:9195";
const UNKNOWN: &str = "127.0.0.99";

#[path = "support/root.rs"]
mod root;
use root::root_or_skip;

/// A namespace deleted on drop (also on panic), with the processes started in it.
struct Ns {
    name: String,
    children: Vec<Child>,
}

impl Ns {
    fn new() -> Ns {
        // The tests of this file run in parallel threads of one process: a name of each's own.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("pal-sipf-{}-{n}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["ip", "netns", "add", &name]);
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Ns {
            name,
            children: Vec::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Runs `f` on a thread inside the namespace (sockets made there stay there).
    fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            // SAFETY: a valid fd; affects this thread only.
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            f()
        })
        .join()
        .expect("netns thread")
    }

    fn nft_table(&self) -> Option<serde_json::Value> {
        let out = self
            .cmd(&["nft", "-j", "list", "table", "inet", TABLE])
            .output()
            .expect("nft");
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("nft json"))
    }

    fn kernel_dropped(&self) -> u64 {
        let t = self.nft_table().expect("the filter table exists");
        t["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.get("counter"))
            .map(|c| c["packets"].as_u64().unwrap())
            .sum()
    }

    fn metrics(&self) -> String {
        self.within(|| {
            let addr: SocketAddr = ADMIN.parse().unwrap();
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("admin");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            write!(s, "GET /metrics HTTP/1.1\r\nHost: {ADMIN}\r\n\r\n").unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn run(args: &[&str]) {
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

/// The sum of a metric's series whose labels contain `labels`.
fn metric(text: &str, name: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn write_config(dir: &Path, partner_sources: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("partner-b.toml"),
        format!(
            "name = \"operator-b\"\nrealm = \"interconnect\"\ndomains = [\"operator-b.example\"]\n\
             sources = [{partner_sources}]\nnext_hop = \"udp:127.0.0.21:5060\"\n"
        ),
    )
    .unwrap();
    let cfg = dir.join("border.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"filter-test\"\nhome_domains = [\"operator-a.example\"]\nlog = \"info\"\n\n\
             [sip]\nkernel_filter = true\n\n[admin]\nlisten = \"{ADMIN}\"\n\n\
             [media]\nkernel = false\nnft_table = \"palisade_filter_test_media\"\n\n\
             [[realm]]\nname = \"home\"\nkind = \"home\"\nlisten = [\"udp:127.0.0.10:5060\"]\n\
             advertise = \"127.0.0.10\"\nmedia_ports = \"30000-30999\"\n\
             core = \"udp:127.0.0.11:5060\"\ncore_sources = [\"127.0.0.11\"]\n\n\
             [[realm]]\nname = \"interconnect\"\nkind = \"peer\"\nlisten = [\"udp:127.0.0.20:5060\"]\n\
             advertise = \"127.0.0.20\"\nmedia_ports = \"31000-31999\"\npeers = [\"partner-b.toml\"]\n"
        ),
    )
    .unwrap();
    cfg
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// One SIPp call from the home core (127.0.0.11) through Palisade to the partner (127.0.0.21).
fn call(ns: &mut Ns, work: &Path) -> bool {
    let sipp = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp");
    let uas = ns
        .cmd(&["sipp", "-sf"])
        .arg(sipp.join("uas.xml"))
        .args(["-i", "127.0.0.21", "-p", "5060", "-m", "1", "-nostdin"])
        .args(["-timeout", "30"])
        .current_dir(work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas");
    ns.children.push(uas);
    std::thread::sleep(Duration::from_millis(500));
    let st = ns
        .cmd(&["sipp", "127.0.0.10:5060", "-sf"])
        .arg(sipp.join("uac.xml"))
        .args(["-s", "cindy", "-i", "127.0.0.11", "-p", "5060", "-m", "1"])
        .args(["-nostdin", "-timeout", "20", "-d", "200"])
        .current_dir(work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp uac");
    st.success()
}

#[test]
fn unknown_sources_are_dropped_in_the_kernel_and_partners_pass() {
    if !root_or_skip("unknown_sources_are_dropped_in_the_kernel_and_partners_pass") {
        return;
    }
    let work = std::env::temp_dir().join(format!("palisade-kfilter-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let cfg = write_config(&work, "\"127.0.0.21\"");
    let mut ns = Ns::new();
    let child = ns
        .cmd(&[env!("CARGO_BIN_EXE_palisade"), "run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("palisade.log")).unwrap())
        .spawn()
        .expect("palisade");
    let pid = child.id();
    ns.children.push(child);
    let log = || std::fs::read_to_string(work.join("palisade.log")).unwrap_or_default();
    wait_for("the filter table", Duration::from_secs(10), || {
        ns.nft_table().is_some()
    });
    wait_for("the admin listener", Duration::from_secs(10), || {
        ns.within(|| TcpStream::connect(ADMIN).is_ok())
    });

    // An unknown source floods the peer-side SIP port.
    const N: u64 = 200;
    ns.within(|| {
        let s = UdpSocket::bind(format!("{UNKNOWN}:0")).unwrap();
        for i in 0..N {
            let msg = format!(
                "OPTIONS sip:x@127.0.0.20 SIP/2.0\r\nVia: SIP/2.0/UDP {UNKNOWN}:5060;branch=z9hG4bK{i}\r\n\
                 From: <sip:s@{UNKNOWN}>;tag=1\r\nTo: <sip:x@127.0.0.20>\r\nCall-ID: {i}@scan\r\n\
                 CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            s.send_to(msg.as_bytes(), "127.0.0.20:5060").unwrap();
        }
    });
    assert!(
        ns.kernel_dropped() >= N,
        "nftables counted the unknown source's packets"
    );
    // The partner's call crosses the filter (its responses come from 127.0.0.21).
    assert!(
        call(&mut ns, &work),
        "a call to the partner completes\n{}",
        log()
    );
    wait_for("the kernel drop metric", Duration::from_secs(5), || {
        metric(
            &ns.metrics(),
            "palisade_sip_kernel_dropped_total",
            "interconnect",
        ) >= N
    });
    let m = ns.metrics();
    assert_eq!(
        metric(&m, "palisade_sip_dropped_total", "unknown_source"),
        0,
        "nothing of the unknown source reached Palisade:\n{m}"
    );

    // A reload that makes the source a partner's updates the set; the counter keeps its count.
    write_config(&work, &format!("\"127.0.0.21\", \"{UNKNOWN}\""));
    run(&["kill", "-HUP", &pid.to_string()]);
    wait_for(
        "the set to hold the new source",
        Duration::from_secs(10),
        || {
            ns.nft_table()
                .is_some_and(|t| t.to_string().contains(UNKNOWN))
        },
    );
    assert!(ns.kernel_dropped() >= N, "the reload kept the counter");

    // A stop removes the table.
    run(&["kill", "-TERM", &pid.to_string()]);
    wait_for("the table to go", Duration::from_secs(15), || {
        ns.nft_table().is_none()
    });
}

/// What a partner's route resolves to through DNS joins the realm's allow set: a datagram from
/// that address to the peer-side SIP port is dropped by the kernel before, and reaches the
/// listener after, `KernelFilter::allow` (which the service calls for every TLS target a route
/// lookup gives, in `service::perform`). The filter runs in this test's namespace (its `nft`
/// children inherit the thread's namespace); the listener is a plain socket on the SIP address.
#[test]
fn a_dns_found_partner_address_passes_the_kernel_filter() {
    if !root_or_skip("a_dns_found_partner_address_passes_the_kernel_filter") {
        return;
    }
    let work = std::env::temp_dir().join(format!("palisade-kfilter-dns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let path = write_config(&work, "\"127.0.0.21\"");
    let ns = Ns::new();
    let found = "127.0.0.77";
    let (before, after, listed) = ns.within(move || {
        let cfg = palisade::config::load(&path).expect("config loads");
        let realm = cfg
            .realms
            .iter()
            .position(|r| r.name == "interconnect")
            .unwrap();
        let dropped = prometheus::IntCounterVec::new(
            prometheus::Opts::new("test_kernel_dropped", "test"),
            &["realm"],
        )
        .unwrap();
        let filter =
            palisade::service::kernel_filter::KernelFilter::start(&cfg, dropped).expect("filter");
        let listener = UdpSocket::bind("127.0.0.20:5060").unwrap();
        listener
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let from = UdpSocket::bind(format!("{found}:0")).unwrap();
        let mut buf = [0u8; 64];
        from.send_to(b"before", "127.0.0.20:5060").unwrap();
        let before = listener.recv_from(&mut buf).is_ok();
        filter.allow(realm, found.parse().unwrap());
        let set = |fam: &str| {
            let out = Command::new("nft")
                .args(["list", "set", "inet", TABLE, &format!("r{realm}_{fam}")])
                .output()
                .expect("nft");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let end = Instant::now() + Duration::from_secs(10);
        while !set("v4").contains(found) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let listed = set("v4").contains(found);
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        from.send_to(b"after", "127.0.0.20:5060").unwrap();
        let after = listener
            .recv_from(&mut buf)
            .map(|(n, _)| buf[..n].to_vec())
            .ok();
        filter.stop();
        (before, after, listed)
    });
    assert!(
        !before,
        "dropped by the kernel before the address was learned"
    );
    assert!(listed, "the address is in the realm's set");
    assert_eq!(after.as_deref(), Some(&b"after"[..]), "passes once learned");
}
