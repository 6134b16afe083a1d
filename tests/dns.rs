//! ENUM and DNS routing end to end: a real name server (Knot DNS, started here on
//! 127.0.53.53:53 with the shipped zone files of policies/lab/dns/), operator A's border from
//! policies/lab/operator-a-enum.toml and operator B's from operator-b.toml, test UAs as the
//! cores. Calls from A's core to `tel:` and `user=phone` numbers must reach B's core through
//! ENUM + RFC 3263; a dead first SRV target is failed over and held down; TTLs decide when a
//! changed record is used; a name server that stops answering delays no call to a cached
//! destination nor any other call; `palisade resolve` shows every step.
//!
//! harness = false: `cargo test --test dns [-- NAME...]`. Needs root (port 53) and knotd
//! (scripts/test installs Debian's `knot`); without them the scenarios skip, and fail when
//! PALISADE_REQUIRE_ROOT_TESTS=1.

mod common;

use common::flows;
use common::harness::{self, ensure, skip, Tally};
use common::instance::{self, is_root, Instance};
use common::knot::{self, Knot};
use common::labfiles;
use common::ua::{sdp, ClientTx, Ua, UaConfig, R};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const NAME_SERVER: &str = "127.0.53.53:53";
const CINDY_NUMBER: &str = "tel:+4930123456";
/// An address beside B's border (127.0.30.2:5061) whose TLS handshakes all fail.
const DEAD_BORDER: &str = "127.0.30.9:5061";
const B_HOME: &str = "127.0.40.2:5060";
const GLOBAL_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const ZONES: &[(&str, &str)] = &[
    ("e164.arpa", "e164.arpa.zone"),
    ("operator-b.example", "operator-b.example.zone"),
];

fn work_dir() -> PathBuf {
    instance::work_dir("dns")
}

fn shipped_zone(file: &str) -> String {
    std::fs::read_to_string(labfiles::shipped_dir().join("dns").join(file))
        .expect("shipped zone file")
}

/// The shipped operator-b.example zone with its serial raised and `_sips._tcp` pointing at
/// `srv_lines` (each `PRIORITY WEIGHT PORT TARGET`) with `ttl`, plus the dead border's name.
fn b_zone(serial: u32, ttl: u32, srv_lines: &[&str]) -> String {
    let text = shipped_zone("operator-b.example.zone");
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("_sips._tcp") {
            for s in srv_lines {
                out.push_str(&format!("_sips._tcp {ttl} SRV {s}\n"));
            }
            continue;
        }
        out.push_str(&line.replace(
            "hostmaster.operator-b.example. 1 ",
            &format!("hostmaster.operator-b.example. {serial} "),
        ));
        out.push('\n');
    }
    out.push_str("down A 127.0.30.9\n");
    out
}

/// The lab files copied into the work dir, operator A's ENUM instance with short SIP timers
/// (T1 50 ms: a target that accepts the connection and never answers times out in 3.2 s).
fn lab_copy() -> R<PathBuf> {
    let to = work_dir().join("lab");
    labfiles::copy_dir(&labfiles::shipped_dir(), &to, &|p, text| {
        if p.file_name().is_some_and(|n| n == "operator-a-enum.toml") {
            format!("{text}\n[sip]\nt1_ms = 50\n")
        } else {
            text
        }
    })?;
    Ok(to)
}

struct Lab {
    knot: Knot,
    a: Option<Instance>,
    _b: Instance,
    dir: PathBuf,
}

impl Lab {
    /// A fresh operator A (an empty cache and hold-down list).
    fn restart_a(&mut self) -> R<()> {
        self.a = None;
        self.a = Some(Instance::start(
            "operator-a-enum",
            &self.dir.join("operator-a-enum.toml"),
            work_dir().join("operator-a-enum.log"),
        )?);
        Ok(())
    }

    fn alive(&mut self) -> R<()> {
        match self.a.as_mut() {
            Some(a) => a.alive(),
            None => Err("operator A is not running".into()),
        }
    }
}

fn a_ua() -> R<Ua> {
    Ua::new(UaConfig::a_core("alice"))
}
fn b_ua() -> R<Ua> {
    Ua::new(UaConfig::b_core("cindy"))
}

fn wait_final_for(ua: &Ua, tx: &ClientTx, timeout: Duration) -> R<u16> {
    let (b, m) = (tx.branch.clone(), tx.method.clone());
    ua.wait_for("final response", timeout, move |i| {
        i.msg.is_response()
            && i.msg.branch().as_deref() == Some(b.as_str())
            && i.msg.cseq_method().as_deref() == Some(m.as_str())
            && i.msg.status() >= 200
    })
    .map(|i| i.msg.status())
}

/// A TCP listener on the dead border's address that closes every connection at once (so each
/// TLS handshake toward it fails); counts the connections.
struct Dead {
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Dead {
    fn bind() -> R<Dead> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let l = std::net::TcpListener::bind(DEAD_BORDER)
            .map_err(|e| format!("bind {DEAD_BORDER}: {e}"))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        let count = std::sync::Arc::new(AtomicUsize::new(0));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (c, st) = (count.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((conn, _)) => {
                        c.fetch_add(1, Ordering::Relaxed);
                        drop(conn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Dead {
            count,
            stop,
            thread: Some(thread),
        })
    }

    /// Connections so far, after waiting `settle` for any still on their way.
    fn connections(&self, settle: Duration) -> usize {
        std::thread::sleep(settle);
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Dead {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // The listener closes with the thread: the next scenario binds the address again.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Call `target`; B's core answers; BYE. `invite_wait` bounds the wait for the INVITE at B.
/// Returns how long the INVITE took to reach B.
fn call_through(a: &Ua, b: &Ua, target: &str, invite_wait: Duration) -> R<Duration> {
    let t0 = Instant::now();
    let (tx, mut da) = a.invite(target, &sdp("127.0.10.1", 40000, 1, "sendrecv"))?;
    let inc = b.wait_request_for("INVITE", None, invite_wait)?;
    let took = t0.elapsed();
    ensure(inc.src.to_string() == B_HOME, || {
        format!("B's core got the INVITE from {}, want {B_HOME}", inc.src)
    })?;
    let db = b
        .answer_invite(&inc, 200, &sdp("127.0.40.1", 50000, 1, "sendrecv"))?
        .ok_or("no dialog")?;
    let ok = a.wait_final(&tx)?;
    ensure(ok.status() == 200, || format!("caller got {}", ok.start))?;
    a.ack_2xx(&mut da, &ok)?;
    b.wait_ack(&db)?;
    flows::bye(a, &mut da, b, &db)?;
    Ok(took)
}

fn resolve(config: &Path, what: &str) -> R<(String, i32)> {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["resolve", "--config"])
        .arg(config)
        .arg(what)
        .output()
        .map_err(|e| format!("palisade resolve: {e}"))?;
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        out.status.code().unwrap_or(-1),
    ))
}

fn has_lines(text: &str, want: &[&str]) -> R<()> {
    let missing: Vec<&&str> = want.iter().filter(|w| !text.contains(**w)).collect();
    ensure(missing.is_empty(), || {
        format!("palisade resolve output lacks {missing:?}:\n{text}")
    })
}

// ---------------------------------------------------------------- scenarios

/// `palisade resolve` on the shipped zones: every step, then the targets in order.
fn resolve_output(lab: &mut Lab) -> R<()> {
    let cfg = lab.dir.join("operator-a-enum.toml");
    let (text, code) = resolve(&cfg, "+4930123456")?;
    ensure(code == 0, || format!("exit {code}:\n{text}"))?;
    has_lines(
        &text,
        &[
            "asking 127.0.53.53:53",
            "E.164 number +4930123456",
            "ENUM: query NAPTR 6.5.4.3.2.1.0.3.9.4.e164.arpa.",
            "order 10 pref 10: NAPTR 10 10 \"u\" \"E2U+mailto\"",
            "skipped: not E2U+sip",
            "order 10 pref 20: NAPTR 10 20 \"\" \"E2U+sip\" \"\" sip.operator-b.example.: skipped: non-terminal rule",
            "applied: +4930123456 -> sip:cindy@operator-b.example",
            "order 20 pref 10: NAPTR 20 10 \"u\" \"E2U+sip\" \"!^.*$!sip:wrong@operator-b.example!\" .: not reached",
            "partner operator-b (realm interconnect",
            "route dns, transports TLS",
            "NAPTR operator-b.example.:",
            "\"SIPS+D2T\" \"\" _sips._tcp.operator-b.example.: use TLS",
            "\"SIP+D2U\" \"\" _sip._udp.operator-b.example.: skipped: UDP not allowed by the partner's policy",
            "\"SIP+D2T\" \"\" _sip._tcp.operator-b.example.: skipped: TCP not allowed by the partner's policy",
            "SRV _sips._tcp.operator-b.example.:",
            "SRV 10 10 5061 border.operator-b.example.",
            "A border.operator-b.example.:",
            "A 127.0.30.2",
            "AAAA border.operator-b.example.: no records",
            "Request-URI toward the partner: sip:cindy@operator-b.example",
            "TLS: the partner must prove the pinned certificate SHA256:2C:B1:32:56:CD:27:A1:27:2A:7D:15:AF:E6:A7:2D:E0:2D:C0:07:3A:7A:BD:19:45:92:B9:76:F3:92:5E:90:2E",
            "targets, in order:\n  1. TLS 127.0.30.2:5061\n",
        ],
    )?;
    ensure(!text.contains("  2. "), || {
        format!("more targets than B's TLS border:\n{text}")
    })?;
    // A domain ENUM points at that is no partner's: refused, nothing else tried.
    let (text, code) = resolve(&cfg, "+4930123458")?;
    ensure(code == 1, || format!("rogue: exit {code}:\n{text}"))?;
    has_lines(
        &text,
        &[
            "applied: +4930123458 -> sip:mallory@rogue.example",
            "rogue.example is not a configured partner's domain: refused with 404, nothing sent",
            "no route: answered 404",
        ],
    )?;
    ensure(!text.contains("NAPTR rogue.example"), || {
        format!("rogue.example was looked up:\n{text}")
    })?;
    let (text, code) = resolve(&cfg, "+4930999999")?;
    ensure(code == 1, || format!("no record: exit {code}:\n{text}"))?;
    has_lines(
        &text,
        &[
            "NAPTR 9.9.9.9.9.9.0.3.9.4.e164.arpa.: no records",
            "no ENUM record and no fallback: answer 404",
        ],
    )?;
    // A domain, and SIP URIs whose transport or port is given: honoured (RFC 3263 §4.1, §4.2).
    let (text, code) = resolve(&cfg, "operator-b.example")?;
    ensure(code == 0, || format!("domain: exit {code}:\n{text}"))?;
    has_lines(
        &text,
        &[
            "RFC 3263 for operator-b.example",
            "targets, in order:\n  1. TLS 127.0.30.2:5061\n",
        ],
    )?;
    let (text, code) = resolve(&cfg, "sip:cindy@operator-b.example;transport=tls")?;
    ensure(code == 0, || format!("transport=tls: exit {code}:\n{text}"))?;
    has_lines(
        &text,
        &[
            "explicit transport TLS: SRV only",
            "SRV _sips._tcp.operator-b.example.:",
            "targets, in order:\n  1. TLS 127.0.30.2:5061\n",
        ],
    )?;
    ensure(!text.contains("NAPTR operator-b.example."), || {
        format!("NAPTR asked despite the explicit transport:\n{text}")
    })?;
    let (text, code) = resolve(&cfg, "sip:cindy@operator-b.example:5080")?;
    ensure(code == 0, || format!("port: exit {code}:\n{text}"))?;
    has_lines(
        &text,
        &[
            "explicit port 5080: A/AAAA of operator-b.example only",
            "targets, in order:\n  1. TLS 127.0.30.2:5080\n",
        ],
    )?;
    let (text, code) = resolve(&cfg, "sip:cindy@operator-b.example;transport=udp")?;
    ensure(code == 1, || {
        format!("UDP toward a TLS-only partner: exit {code}:\n{text}")
    })?;
    has_lines(
        &text,
        &["asks for UDP which the partner's policy does not allow: 404"],
    )?;
    // No record: the configured fallback partner (RFC 3263 on its domain), or 604 when so
    // configured.
    let fb_dir = work_dir().join("lab-fallback");
    labfiles::copy_dir(&lab.dir, &fb_dir, &|p, text| {
        if p.file_name().is_some_and(|n| n == "operator-a-enum.toml") {
            text.replace("# fallback = \"operator-b\"", "fallback = \"operator-b\"")
        } else {
            text
        }
    })?;
    let (text, code) = resolve(&fb_dir.join("operator-a-enum.toml"), "+4930999999")?;
    ensure(code == 0, || format!("fallback: exit {code}:\n{text}"))?;
    has_lines(
        &text,
        &[
            "no ENUM record: fallback partner operator-b",
            "RFC 3263 for operator-b.example",
            "targets, in order:\n  1. TLS 127.0.30.2:5061\n",
        ],
    )?;
    let s604_dir = work_dir().join("lab-604");
    labfiles::copy_dir(&lab.dir, &s604_dir, &|p, text| {
        if p.file_name().is_some_and(|n| n == "operator-a-enum.toml") {
            text.replace("no_record_status = 404", "no_record_status = 604")
        } else {
            text
        }
    })?;
    let (text, code) = resolve(&s604_dir.join("operator-a-enum.toml"), "tel:+49-30-999-999")?;
    ensure(code == 1, || format!("604: exit {code}:\n{text}"))?;
    has_lines(
        &text,
        &[
            "E.164 number +4930999999 (from tel:+49-30-999-999)",
            "no ENUM record and no fallback: answer 604",
            "no route: answered 604",
        ],
    )?;
    // Suffixes in order: a carrier tree first (the server refuses it: no answer, not "no
    // record"), then e164.arpa, which has the number. Without a record anywhere, the tree that
    // did not answer makes it a failure (503), not a 404.
    let carrier_dir = work_dir().join("lab-carrier");
    labfiles::copy_dir(&lab.dir, &carrier_dir, &|p, text| {
        if p.file_name().is_some_and(|n| n == "operator-a-enum.toml") {
            text.replace(
                "suffixes = [\"e164.arpa\"]",
                "suffixes = [\"e164.carrier.example\", \"e164.arpa\"]",
            )
        } else {
            text
        }
    })?;
    let carrier = carrier_dir.join("operator-a-enum.toml");
    let (text, code) = resolve(&carrier, "+4930123456")?;
    ensure(code == 0, || {
        format!("carrier suffix: exit {code}:\n{text}")
    })?;
    has_lines(
        &text,
        &[
            "ENUM: query NAPTR 6.5.4.3.2.1.0.3.9.4.e164.carrier.example. (asking 127.0.53.53:53)",
            "NAPTR 6.5.4.3.2.1.0.3.9.4.e164.carrier.example.: no answer",
            "ENUM: query NAPTR 6.5.4.3.2.1.0.3.9.4.e164.arpa.",
            "applied: +4930123456 -> sip:cindy@operator-b.example",
        ],
    )?;
    let (text, code) = resolve(&carrier, "+4930999999")?;
    ensure(code == 1, || {
        format!("carrier suffix, no record: exit {code}:\n{text}")
    })?;
    has_lines(
        &text,
        &[
            "NAPTR 9.9.9.9.9.9.0.3.9.4.e164.arpa.: no records",
            "ENUM gave no answer (name servers failed): answer 503",
        ],
    )?;
    // A policy that allows TLS: SIPS+D2T comes first, with the identity B must prove.
    let tls_dir = work_dir().join("lab-tls");
    labfiles::copy_dir(&lab.dir, &tls_dir, &|p, text| {
        if p.file_name().is_some_and(|n| n == "operator-b-dns.toml") {
            text.replace("transports = [\"tls\"]", "transports = [\"tls\", \"udp\"]")
        } else {
            text
        }
    })?;
    // Name servers per purpose: [dns] names one where nothing listens, so ENUM (its own
    // `servers`) and the partner lookups (the realm's `dns_servers`) only work if each asks
    // its own.
    let split_dir = work_dir().join("lab-split");
    labfiles::copy_dir(&lab.dir, &split_dir, &|p, text| {
        if p.file_name().is_some_and(|n| n == "operator-a-enum.toml") {
            text.replace(
                "servers = [\"127.0.53.53:53\"]",
                "servers = [\"127.0.53.99:53\"]",
            )
            .replace("[enum]\n", "[enum]\nservers = [\"127.0.53.53:53\"]\n")
            .replace(
                "advertise = \"127.0.20.2\"\n",
                "advertise = \"127.0.20.2\"\ndns_servers = [\"127.0.53.53:53\"]\n",
            )
        } else {
            text
        }
    })?;
    let split = split_dir.join("operator-a-enum.toml");
    let (text, code) = resolve(&split, "+4930123456")?;
    ensure(code == 0, || format!("split servers: exit {code}:\n{text}"))?;
    has_lines(
        &text,
        &[
            "asking 127.0.53.99:53",
            "ENUM: query NAPTR 6.5.4.3.2.1.0.3.9.4.e164.arpa. (asking 127.0.53.53:53)",
            "RFC 3263 for operator-b.example (asking 127.0.53.53:53)",
            "targets, in order:\n  1. TLS 127.0.30.2:5061\n",
        ],
    )?;
    // ...and a domain lookup outside any partner realm's servers fails on [dns]'s.
    let broken = std::fs::read_to_string(&split)
        .map_err(|e| e.to_string())?
        .replace("dns_servers = [\"127.0.53.53:53\"]\n", "");
    labfiles::write_atomic(&split, broken.as_bytes())?;
    let (text, code) = resolve(&split, "+4930123456")?;
    ensure(code == 1, || {
        format!("realm without its servers: exit {code}:\n{text}")
    })?;
    has_lines(
        &text,
        &[
            "RFC 3263 for operator-b.example (asking 127.0.53.99:53)",
            "no route: answered 503",
        ],
    )?;
    let (text, code) = resolve(
        &tls_dir.join("operator-a-enum.toml"),
        "sip:+4930123457@operator-a.example;user=phone",
    )?;
    ensure(code == 0, || format!("tls: exit {code}:\n{text}"))?;
    has_lines(
        &text,
        &[
            "E.164 number +4930123457 (from sip:+4930123457@operator-a.example;user=phone)",
            "applied: +4930123457 -> sip:+4930123457@operator-b.example;user=phone",
            "\"SIPS+D2T\" \"\" _sips._tcp.operator-b.example.: use TLS",
            "\"SIP+D2T\" \"\" _sip._tcp.operator-b.example.: skipped: TCP not allowed",
            "TLS: the partner must prove the pinned certificate SHA256:2C:B1",
            "targets, in order:\n  1. TLS 127.0.30.2:5061\n  2. UDP 127.0.30.2:5060\n",
        ],
    )?;
    // A sips: URI: NAPTR still, TLS services only.
    let (text, code) = resolve(
        &tls_dir.join("operator-a-enum.toml"),
        "sips:cindy@operator-b.example",
    )?;
    ensure(code == 0, || format!("sips: exit {code}:\n{text}"))?;
    has_lines(
        &text,
        &[
            "\"SIPS+D2T\" \"\" _sips._tcp.operator-b.example.: use TLS",
            "\"SIP+D2U\" \"\" _sip._udp.operator-b.example.: skipped: UDP cannot carry a sips: URI",
            "targets, in order:\n  1. TLS 127.0.30.2:5061\n",
        ],
    )?;
    ensure(!text.contains("  2. "), || {
        format!("sips: more than the TLS target:\n{text}")
    })
}

/// Seed Case 1 to a `tel:` number: ENUM gives cindy's SIP URI, RFC 3263 B's border.
fn case1_tel(lab: &mut Lab) -> R<()> {
    lab.restart_a()?;
    let a = a_ua()?;
    let b = b_ua()?;
    let e = flows::full_call(&a, &b, CINDY_NUMBER, true)?;
    let ruri = e.b_invite.msg.request_uri().unwrap_or_default().to_string();
    ensure(ruri == "sip:cindy@operator-b.example", || {
        format!("B's core got Request-URI {ruri}, want the ENUM result")
    })?;
    ensure(e.b_invite.src.to_string() == B_HOME, || {
        format!("INVITE from {}, want {B_HOME}", e.b_invite.src)
    })?;
    // SIPS+D2T came first: A reached B's border over mutual TLS, at the SRV's port.
    let log = lab.a.as_ref().map(|a| a.log_text()).unwrap_or_default();
    ensure(
        log.contains("TLS connection to partner") && log.contains("127.0.30.2:5061"),
        || format!("A's log shows no TLS connection to B's border:\n{log}"),
    )
}

/// A SIP URI for a partner routed by DNS (no ENUM): RFC 3263 alone.
fn sip_uri_to_dns_partner(_: &mut Lab) -> R<()> {
    let a = a_ua()?;
    let b = b_ua()?;
    let e = flows::establish(&a, &b, "sip:cindy@operator-b.example")?;
    let (mut da, db) = (e.a, e.b);
    flows::bye(&a, &mut da, &b, &db)
}

/// A `user=phone` URI in our own domain is a number too.
fn user_phone_uri(_: &mut Lab) -> R<()> {
    let a = a_ua()?;
    let b = b_ua()?;
    let e = flows::establish(&a, &b, "sip:+4930123457@operator-a.example;user=phone")?;
    let ruri = e.b_invite.msg.request_uri().unwrap_or_default().to_string();
    ensure(
        ruri == "sip:+4930123457@operator-b.example;user=phone",
        || format!("B's core got Request-URI {ruri}"),
    )?;
    let (mut da, db) = (e.a, e.b);
    flows::bye(&a, &mut da, &b, &db)
}

/// Numbers without a record, or whose record names a non-partner, get 404; nothing reaches B.
fn refused_numbers(_: &mut Lab) -> R<()> {
    let a = a_ua()?;
    let b = b_ua()?;
    for number in ["tel:+4930123458", "tel:+4930999999"] {
        let (tx, _) = a.invite(number, &sdp("127.0.10.1", 40000, 1, "sendrecv"))?;
        let st = wait_final_for(&a, &tx, Duration::from_secs(5))?;
        ensure(st == 404, || format!("{number}: caller got {st}, want 404"))?;
    }
    let got = b.wait_request_for("INVITE", None, Duration::from_millis(300));
    ensure(got.is_err(), || {
        "B's core got an INVITE for a refused number".into()
    })
}

/// The first SRV target is down: the call reaches the second; the next call skips the first
/// (held down) and reaches B at once.
fn failover_hold_down(lab: &mut Lab) -> R<()> {
    let dead_border = Dead::bind()?;
    lab.knot.set_zone(
        "operator-b.example",
        "operator-b.example.zone",
        &b_zone(
            2,
            60,
            &[
                "10 10 5061 down.operator-b.example.",
                "20 10 5061 border.operator-b.example.",
            ],
        ),
    )?;
    lab.restart_a()?;
    let a = a_ua()?;
    let b = b_ua()?;
    // The dead border refuses the TLS handshake: the transport fails the INVITE (503) and the
    // call moves to the second target at once.
    call_through(&a, &b, CINDY_NUMBER, Duration::from_secs(15))?;
    let first = dead_border.connections(Duration::from_millis(200));
    ensure(first >= 1, || "the dead first target was not tried".into())?;
    call_through(&a, &b, CINDY_NUMBER, Duration::from_secs(5))?;
    let again = dead_border.connections(Duration::from_millis(300));
    ensure(again == first, || {
        format!("the held-down target was tried again ({first} then {again} connections)")
    })
}

/// A changed record is used after its TTL, not before.
fn ttl_expiry(lab: &mut Lab) -> R<()> {
    let dead_border = Dead::bind()?;
    const TTL: u64 = 4;
    lab.knot.set_zone(
        "operator-b.example",
        "operator-b.example.zone",
        &b_zone(3, TTL as u32, &["10 10 5061 border.operator-b.example."]),
    )?;
    lab.restart_a()?;
    let a = a_ua()?;
    let b = b_ua()?;
    let cached_at = Instant::now();
    call_through(&a, &b, CINDY_NUMBER, Duration::from_secs(3))?;
    // Now the SRV says: the dead border first, then B.
    lab.knot.set_zone(
        "operator-b.example",
        "operator-b.example.zone",
        &b_zone(
            4,
            TTL as u32,
            &[
                "10 10 5061 down.operator-b.example.",
                "20 10 5061 border.operator-b.example.",
            ],
        ),
    )?;
    let took = call_through(&a, &b, CINDY_NUMBER, Duration::from_secs(3))?;
    ensure(cached_at.elapsed() < Duration::from_secs(TTL), || {
        "the second call came too late to test the cache".into()
    })?;
    ensure(
        dead_border.connections(Duration::from_millis(100)) == 0,
        || "the changed record was used before its TTL ran out".into(),
    )?;
    ensure(took < Duration::from_secs(2), || {
        format!("cached call took {took:?}")
    })?;
    let wait = Duration::from_secs(TTL + 1).saturating_sub(cached_at.elapsed());
    std::thread::sleep(wait);
    call_through(&a, &b, CINDY_NUMBER, Duration::from_secs(15))?;
    ensure(
        dead_border.connections(Duration::from_millis(200)) >= 1,
        || "after its TTL the changed record (the dead border first) was not used".into(),
    )
}

/// The name server stops answering: a call to a cached destination is not delayed, nor is a
/// call that needs no lookup, while a call needing a lookup waits on its own.
fn dns_down_delays_nothing_cached(lab: &mut Lab) -> R<()> {
    lab.knot.set_zone(
        "operator-b.example",
        "operator-b.example.zone",
        &shipped_zone("operator-b.example.zone").replace(" 1 3600 600", " 5 3600 600"),
    )?;
    lab.restart_a()?;
    let a = a_ua()?;
    let b = b_ua()?;
    call_through(&a, &b, CINDY_NUMBER, Duration::from_secs(3))?;
    lab.knot.pause();
    let res = (|| {
        // Needs ENUM for a number not yet cached: waits for the name server.
        let (uncached, _) =
            a.invite("tel:+4930123457", &sdp("127.0.10.1", 40002, 1, "sendrecv"))?;
        std::thread::sleep(Duration::from_millis(100));
        let took = call_through(&a, &b, CINDY_NUMBER, Duration::from_secs(2))?;
        // A lookup blocking the loop would cost at least one query timeout (1 s).
        ensure(took < Duration::from_millis(900), || {
            format!("the call to a cached destination took {took:?} with DNS down")
        })?;
        // B to A needs no lookup at all.
        let t0 = Instant::now();
        let e = flows::establish(&b, &a, "sip:alice@operator-a.example")?;
        let took = t0.elapsed();
        let (mut db, da) = (e.a, e.b);
        flows::bye(&b, &mut db, &a, &da)?;
        ensure(took < Duration::from_millis(900), || {
            format!("a call needing no lookup took {took:?} with DNS down")
        })?;
        let st = wait_final_for(&a, &uncached, Duration::from_secs(10))?;
        ensure(st == 503 || st == 504, || {
            format!("the call needing DNS got {st}, want 503 or 504")
        })
    })();
    lab.knot.resume();
    res
}

/// A's `/metrics` count the lookups by type and result, and the cache hits, of the calls so far
/// (case 1 looked up cindy's number; the later calls to it were cache hits).
fn lookup_metrics(_: &mut Lab) -> R<()> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:9101".parse().unwrap(),
        Duration::from_secs(2),
    )
    .map_err(|e| format!("admin listener: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").map_err(|e| e.to_string())?;
    let mut page = String::new();
    s.read_to_string(&mut page).map_err(|e| e.to_string())?;
    let value = |series: &str| -> f64 {
        page.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    for (series, min) in [
        (
            "palisade_dns_lookups_total{result=\"records\",type=\"naptr\"}",
            2.0,
        ),
        (
            "palisade_dns_lookups_total{result=\"records\",type=\"srv\"}",
            1.0,
        ),
        (
            "palisade_dns_lookups_total{result=\"records\",type=\"a\"}",
            1.0,
        ),
        (
            "palisade_dns_lookups_total{result=\"none\",type=\"aaaa\"}",
            1.0,
        ),
        (
            "palisade_dns_lookups_total{result=\"none\",type=\"naptr\"}",
            1.0,
        ),
        ("palisade_dns_cache_hits_total{type=\"naptr\"}", 1.0),
    ] {
        let v = value(series);
        ensure(v >= min, || {
            format!("{series} is {v}, want >= {min}:\n{page}")
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------- main

type Scenario = (&'static str, fn(&mut Lab) -> R<()>);

fn scenarios() -> Vec<Scenario> {
    vec![
        ("resolve_output", resolve_output),
        ("case1_tel_number", case1_tel),
        ("user_phone_uri", user_phone_uri),
        ("sip_uri_to_dns_partner", sip_uri_to_dns_partner),
        ("refused_numbers_404", refused_numbers),
        ("lookup_metrics", lookup_metrics),
        ("failover_hold_down", failover_hold_down),
        ("ttl_expiry", ttl_expiry),
        (
            "dns_down_delays_nothing_cached",
            dns_down_delays_nothing_cached,
        ),
    ]
}

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let selected = harness::select(scenarios());
    instance::watchdog("dns", GLOBAL_TIMEOUT);
    println!("\nrunning {} dns scenarios", selected.len());
    let mut tally = Tally::new();
    let why_not = if !is_root() {
        Some("needs root (a name server on port 53)")
    } else if !knot::available() {
        Some("knotd not installed (Debian package knot)")
    } else {
        None
    };
    if let Some(why) = why_not {
        for (n, _) in &selected {
            tally.record(n, Duration::ZERO, skip(why));
        }
        return tally.finish();
    }
    let started = (|| {
        instance::wait_lab_free(Duration::from_secs(120))?;
        let dir = lab_copy()?;
        let knot = Knot::start(
            &work_dir().join("knot"),
            NAME_SERVER.parse::<SocketAddr>().unwrap(),
            &labfiles::shipped_dir().join("dns"),
            ZONES,
        )?;
        let b = Instance::start(
            "operator-b",
            &dir.join("operator-b.toml"),
            work_dir().join("operator-b.log"),
        )?;
        let mut lab = Lab {
            knot,
            a: None,
            _b: b,
            dir,
        };
        lab.restart_a()?;
        Ok::<Lab, String>(lab)
    })();
    let mut lab = match started {
        Ok(l) => l,
        Err(e) => {
            println!("dns lab startup FAILED: {e}");
            for (n, _) in &selected {
                tally.record(n, Duration::ZERO, Err("dns lab did not start".into()));
            }
            return tally.finish();
        }
    };
    for (name, f) in &selected {
        tally.run(name, || f(&mut lab).and_then(|()| lab.alive()));
    }
    let knot_log = lab.knot.log();
    drop(lab);
    let _ = std::fs::write(work_dir().join("knot-final.log"), knot_log);
    println!("\ndns lab logs: {}", work_dir().display());
    tally.finish()
}
