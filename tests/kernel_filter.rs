//! The kernel-side drop set (`[sip] kernel_filter = true`), with real nftables in a network
//! namespace this test creates (root only; skipped otherwise unless
//! `PALISADE_REQUIRE_ROOT_TESTS=1`). Palisade runs inside it on its loopback: an unknown source's
//! datagrams to the peer-side SIP port are dropped and counted by the kernel and never reach
//! Palisade (its own unknown-source counter stays at zero), a call to the partner completes
//! (SIPp both ends), a reload that adds the source to the partner updates the set, and a stop
//! removes the table.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TABLE: &str = "palisade_sip_filter_test";
const ADMIN: &str = "127.0.0.1:9195";
const UNKNOWN: &str = "127.0.0.99";

#[path = "support/root.rs"]
mod root;
use root::root_or_skip;

#[path = "support/netns.rs"]
mod netns;
use netns::{run, Ns};

/// What the tests of this file read of a namespace's filter and Palisade in it.
impl Ns {
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
    let mut ns = Ns::new("pal-sipf");
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
    let ns = Ns::new("pal-sipf");
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
        filter.allow(realm, found.parse().unwrap(), None);
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

/// The whole path through a real name server: Palisade in this test's namespace with
/// `[sip] kernel_filter = true`, a TLS partner routed by DNS (`route = "dns"`), and Knot DNS in
/// the same namespace serving the partner's zone (NAPTR → SRV → A `127.0.0.77`, TTL 2 s). A call
/// from the home core makes the border look the partner up: the address DNS gave joins the
/// peer realm's set, so a TCP SYN from it reaches the TLS listener; once the TTL (and the hold,
/// 1 s here) has passed without another lookup, the address leaves the set and the same SYN is
/// dropped again. The configured partner address stays throughout.
#[test]
fn a_partner_address_found_by_a_real_dns_lookup_joins_the_filter_and_leaves_after_its_ttl() {
    let name =
        "a_partner_address_found_by_a_real_dns_lookup_joins_the_filter_and_leaves_after_its_ttl";
    if !root_or_skip(name) {
        return;
    }
    let knotd = ["/usr/sbin/knotd", "/usr/bin/knotd"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(knotd) = knotd else {
        assert!(
            std::env::var("PALISADE_REQUIRE_ROOT_TESTS").as_deref() != Ok("1"),
            "{name}: needs knotd (Debian package knot; scripts/test installs it)"
        );
        eprintln!("{name}: skipped, no knotd");
        return;
    };
    const FOUND: &str = "127.0.0.77";
    let work = std::env::temp_dir().join(format!("palisade-kfilter-knot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("zones")).unwrap();
    std::fs::create_dir_all(work.join("db")).unwrap();
    std::fs::write(
        work.join("zones/operator-b.example.zone"),
        format!(
            "$ORIGIN operator-b.example.\n$TTL 2\n\
             @ SOA ns hostmaster 1 3600 600 86400 2\n@ NS ns\nns A 127.0.0.53\n\
             @ NAPTR 10 10 \"s\" \"SIPS+D2T\" \"\" _sips._tcp\n\
             _sips._tcp SRV 0 0 5061 border\nborder A {FOUND}\n"
        ),
    )
    .unwrap();
    let knot_conf = work.join("knot.conf");
    std::fs::write(
        &knot_conf,
        format!(
            "server:\n    listen: 127.0.0.53@53\n    rundir: {d}\ndatabase:\n    storage: {d}/db\n\
             template:\n  - id: default\n    storage: {d}/zones\n    zonefile-sync: -1\n\
             \x20   journal-content: none\nzone:\n  - domain: operator-b.example\n\
             \x20   file: operator-b.example.zone\n",
            d = work.display()
        ),
    )
    .unwrap();
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/lab");
    let b_policy = std::fs::read_to_string(lab.join("operator-a/operator-b-dns.toml")).unwrap();
    let pin = b_policy
        .lines()
        .find(|l| l.starts_with("fingerprints"))
        .expect("the lab pins B's certificate");
    std::fs::write(
        work.join("partner-b.toml"),
        format!(
            "name = \"operator-b\"\nrealm = \"interconnect\"\ndomains = [\"operator-b.example\"]\n\
             sources = [\"127.0.0.21\"]\nnext_hop = \"tls:127.0.0.21:5061\"\nroute = \"dns\"\n\
             transports = [\"tls\"]\n\n[tls]\n{pin}\n"
        ),
    )
    .unwrap();
    let cfg = work.join("border.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"filter-test\"\nhome_domains = [\"operator-a.example\"]\nlog = \"info\"\n\n\
             [sip]\nkernel_filter = true\nkernel_filter_learned_hold_s = 1\nt1_ms = 50\n\n\
             [dns]\nservers = [\"127.0.0.53:53\"]\ntimeout_ms = 500\n\n\
             [admin]\nlisten = \"{ADMIN}\"\n\n\
             [media]\nkernel = false\nnft_table = \"palisade_filter_test_media\"\n\n\
             [[realm]]\nname = \"home\"\nkind = \"home\"\nlisten = [\"udp:127.0.0.10:5060\"]\n\
             advertise = \"127.0.0.10\"\nmedia_ports = \"30000-30999\"\n\
             core = \"udp:127.0.0.11:5060\"\ncore_sources = [\"127.0.0.11\"]\n\n\
             [[realm]]\nname = \"interconnect\"\nkind = \"peer\"\nlisten = [\"tls:127.0.0.20:5061\"]\n\
             advertise = \"127.0.0.20\"\nmedia_ports = \"31000-31999\"\npeers = [\"partner-b.toml\"]\n\
             tls = {{ certificate = \"{crt}\", key = \"{key}\" }}\n",
            crt = lab.join("tls/operator-a.crt").display(),
            key = lab.join("tls/operator-a.key").display(),
        ),
    )
    .unwrap();

    let mut ns = Ns::new("pal-sipf");
    let knot = ns
        .cmd(&[knotd, "-c"])
        .arg(&knot_conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("knot.log")).unwrap())
        .spawn()
        .expect("knotd");
    ns.children.push(knot);
    let child = ns
        .cmd(&[env!("CARGO_BIN_EXE_palisade"), "run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("palisade.log")).unwrap())
        .spawn()
        .expect("palisade");
    ns.children.push(child);
    let log = || std::fs::read_to_string(work.join("palisade.log")).unwrap_or_default();
    wait_for("the filter table", Duration::from_secs(10), || {
        ns.nft_table().is_some()
    });
    wait_for("the admin listener", Duration::from_secs(10), || {
        ns.within(|| TcpStream::connect(ADMIN).is_ok())
    });
    let v4_set = |ns: &Ns| -> String {
        let out = ns
            .cmd(&["nft", "list", "set", "inet", TABLE, "r1_v4"])
            .output()
            .expect("nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A SYN from the DNS-found address: whether the TLS listener accepts it.
    let syn_passes = |ns: &Ns| -> bool {
        ns.within(|| {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            let from: SocketAddr = format!("{FOUND}:0").parse().unwrap();
            sock.bind(&from.into()).unwrap();
            let to: SocketAddr = "127.0.0.20:5061".parse().unwrap();
            sock.connect_timeout(&to.into(), Duration::from_millis(700))
                .is_ok()
        })
    };
    assert!(
        !v4_set(&ns).contains(FOUND),
        "not allowed before any lookup"
    );
    assert!(
        !syn_passes(&ns),
        "a SYN from it is dropped before any lookup"
    );

    // The home core calls a user of the partner's domain: the border resolves it through Knot.
    // (Nobody answers at the address, so the call fails; the lookup is what matters.)
    ns.within(|| {
        let core = UdpSocket::bind("127.0.0.11:5060").unwrap();
        let msg = "INVITE sip:bob@operator-b.example SIP/2.0\r\n\
                   Via: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKknot1\r\nMax-Forwards: 70\r\n\
                   From: <sip:alice@operator-a.example>;tag=k1\r\nTo: <sip:bob@operator-b.example>\r\n\
                   Call-ID: knot-filter-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.11>\r\n\
                   Content-Length: 0\r\n\r\n";
        core.send_to(msg.as_bytes(), "127.0.0.10:5060").unwrap();
    });
    wait_for(
        "the DNS-found address in the set",
        Duration::from_secs(10),
        || v4_set(&ns).contains(FOUND),
    );
    assert!(
        syn_passes(&ns),
        "a SYN from the DNS-found address reaches the listener\n{}",
        log()
    );
    // TTL 2 s, hold 1 s: gone a few seconds later (bounded wait), the SYN dropped again.
    wait_for(
        "the address to expire from the set",
        Duration::from_secs(20),
        || !v4_set(&ns).contains(FOUND),
    );
    assert!(!syn_passes(&ns), "dropped again once expired");
    assert!(
        v4_set(&ns).contains("127.0.0.21"),
        "the configured partner address stays"
    );
    assert!(log().contains("expired"), "the expiry is logged\n{}", log());
}
