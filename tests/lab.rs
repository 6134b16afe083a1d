//! Palisade lab: black-box end-to-end tests of two Palisade instances (operator A
//! and operator B) on loopback addresses, driven by independent test UAs and SIPp.
//!
//! harness = false: run with `cargo test --test lab` (optionally followed by
//! `-- NAME...` to run only scenarios whose name contains one of the words).
//! Prints `test <name> ... ok|FAILED|skipped` and a final `N passed, N failed`.
//!
//! Env: PALISADE_REQUIRE_ROOT_TESTS=1 makes skips count as failures;
//! PALISADE_SIP_CORPUS overrides the RFC 4475 corpus folder.

mod common;
#[path = "sipp/runner.rs"]
mod sipp_runner;

use common::capture::{self, Capture};
use common::flows;
use common::harness::{self, ensure, skip, Tally};
use common::instance::{self, Instance};
use common::labfiles;
use common::lossy::{DropPolicy, Lossy};
use common::msg::{self, Msg};
use common::registry;
use common::ua::{sdp, tcp_connect_from, Transport, Ua, UaConfig, R};
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const A_HOME: &str = "127.0.10.2:5060";
const B_HOME: &str = "127.0.40.2:5060";
const TO_CINDY: &str = "sip:cindy@operator-b.example";
const TO_ALICE: &str = "sip:alice@operator-a.example";
const GLOBAL_TIMEOUT: Duration = Duration::from_secs(20 * 60);

fn work_dir() -> PathBuf {
    instance::work_dir("lab")
}

/// The NSS key log both instances write their TLS session keys to: the leak check decrypts
/// the interconnect capture with it, as an engineer would in Wireshark.
fn keylog() -> PathBuf {
    work_dir().join("tls-keys.log")
}

fn start_instance(name: &str, config: &Path) -> R<Instance> {
    let keys = keylog().display().to_string();
    Instance::start_env(
        name,
        config,
        work_dir().join(format!("{name}.log")),
        &[("SSLKEYLOGFILE", keys)],
    )
}

// ---------------------------------------------------------------- lab

struct Lab {
    a: Instance,
    b: Instance,
    capture: Option<Capture>,
    capture_skip: Option<String>,
}

impl Lab {
    fn alive(&mut self) -> R<()> {
        self.a.alive()?;
        self.b.alive()
    }
}

fn a_ua() -> R<Ua> {
    Ua::new(UaConfig::a_core("alice"))
}
fn b_ua() -> R<Ua> {
    Ua::new(UaConfig::b_core("cindy"))
}

fn contains(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    !n.is_empty() && hay.windows(n.len()).any(|w| w == n)
}

/// `seen_by` must contain none of `other`'s identifiers or internal addresses/names.
fn no_foreign_ids(seen_by: &Ua, other: &Ua, other_ip_prefix: &str, other_internal: &str) -> R<()> {
    let hay = seen_by.received_bytes();
    let mut needles = other.generated_ids();
    needles.push(other_ip_prefix.to_string());
    needles.push(other_internal.to_string());
    let hits: Vec<String> = needles.into_iter().filter(|n| contains(&hay, n)).collect();
    ensure(hits.is_empty(), || {
        format!(
            "{} received the other side's identifiers {:?}:\n{}",
            seen_by.cfg().user,
            hits,
            String::from_utf8_lossy(&hay)
        )
    })
}

fn saw_status(ua: &Ua, call_id_of_tx: &Msg, status: u16) -> bool {
    let cid = call_id_of_tx.call_id().unwrap_or("");
    ua.received()
        .iter()
        .any(|m| m.status() == status && m.call_id() == Some(cid))
}

/// Checks of the Case-1 INVITE seen by the callee and the 200 seen by the caller.
fn check_topology(
    caller: &Ua,
    callee: &Ua,
    e: &flows::Established,
    callee_home: &str,
    caller_home: &str,
    target: &str,
) -> R<()> {
    let inv = &e.b_invite.msg;
    ensure(inv.request_uri() == Some(target), || {
        format!(
            "callee got Request-URI {:?}, want {target}",
            inv.request_uri()
        )
    })?;
    ensure(e.b_invite.src.to_string() == callee_home, || {
        format!(
            "callee got the INVITE from {}, want {callee_home}",
            e.b_invite.src
        )
    })?;
    let via = inv.top_via().unwrap_or_default();
    ensure(via.contains(callee_home), || {
        format!("callee's top Via is not Palisade's: {via}")
    })?;
    ensure(inv.call_id() != e.tx.req.call_id(), || {
        "Call-ID crossed unchanged".into()
    })?;
    ensure(inv.from_tag() != e.tx.req.from_tag(), || {
        "From tag crossed unchanged".into()
    })?;
    ensure(inv.branch() != e.tx.req.branch(), || {
        "branch crossed unchanged".into()
    })?;
    let contact = e.a_ok.contact_uri().unwrap_or_default();
    ensure(
        msg::uri_addr(&contact).map(|a| a.to_string()).as_deref() == Some(caller_home),
        || format!("caller's 200 Contact {contact} is not {caller_home}"),
    )?;
    ensure(saw_status(caller, &e.tx.req, 100), || {
        "caller saw no 100 Trying".into()
    })?;
    ensure(saw_status(caller, &e.tx.req, 180), || {
        "caller saw no 180 Ringing".into()
    })?;
    let _ = callee;
    Ok(())
}

fn case1(bye_from_caller: bool) -> R<()> {
    let a = a_ua()?;
    let b = b_ua()?;
    let e = flows::full_call(&a, &b, TO_CINDY, bye_from_caller)?;
    check_topology(&a, &b, &e, B_HOME, A_HOME, TO_CINDY)?;
    no_foreign_ids(&b, &a, "127.0.10.", "operator-a-core")?;
    no_foreign_ids(&a, &b, "127.0.40.", "operator-b-core")
}

fn rejected(code: u16) -> R<()> {
    let a = a_ua()?;
    let b = b_ua()?;
    let (fin, _ack) = flows::rejected(&a, &b, TO_CINDY, code)?;
    ensure(fin.status() == code, || format!("got {}", fin.start))?;
    // caller ACKed the failure inside its transaction (automatically)
    ensure(a.sent().iter().any(|m| m.method() == Some("ACK")), || {
        "caller sent no ACK for the failure".into()
    })?;
    no_foreign_ids(&b, &a, "127.0.10.", "operator-a-core")?;
    no_foreign_ids(&a, &b, "127.0.40.", "operator-b-core")
}

fn cancel_before_answer() -> R<()> {
    let a = a_ua()?;
    let b = b_ua()?;
    flows::cancelled(&a, &b, TO_CINDY)?;
    no_foreign_ids(&b, &a, "127.0.10.", "operator-a-core")
}

fn tcp_call() -> R<()> {
    let mut ca = UaConfig::a_core("alice");
    ca.transport = Transport::Tcp;
    let a = Ua::new(ca)?;
    let b = b_ua()?;
    let e = flows::full_call(&a, &b, TO_CINDY, true)?;
    check_topology(&a, &b, &e, B_HOME, A_HOME, TO_CINDY)?;
    ensure(
        a.log()
            .iter()
            .filter(|l| l.outgoing)
            .all(|l| l.transport == Transport::Tcp),
        || "caller sent something over UDP".into(),
    )?;
    no_foreign_ids(&b, &a, "127.0.10.", "operator-a-core")?;
    no_foreign_ids(&a, &b, "127.0.40.", "operator-b-core")
}

/// RFC 3261 §18.2.2: the caller's TCP connection closes after its INVITE; Palisade A opens a
/// new connection to the Via's sent-by (the caller's listener) for the 200, not to the
/// connection's ephemeral port.
fn tcp_response_after_close() -> R<()> {
    let a = a_ua()?; // listens on TCP 127.0.10.1:5060 as well
    let b = b_ua()?;
    let call_id = registry::fresh("reconnect-cid");
    let tag = registry::fresh("rctag");
    let branch = registry::fresh("z9hG4bKrc");
    let body = sdp("127.0.10.1", 4100, 1, "sendrecv");
    let invite = format!(
        "INVITE {TO_CINDY} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.10.1:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@operator-a.example>;tag={tag}\r\n\
         To: <{TO_CINDY}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:alice@127.0.10.1:5060;transport=tcp>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    {
        let mut c = tcp_connect_from("127.0.10.1".parse().unwrap(), A_HOME.parse().unwrap())?;
        c.write_all(invite.as_bytes()).map_err(|e| e.to_string())?;
        // Wait for the 100 Trying, then hang up the connection.
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 2048];
        let _ = c.read(&mut buf);
    }
    let inc = b.wait_request("INVITE", None)?;
    let db = b
        .answer_invite(&inc, 200, &sdp("127.0.40.1", 4200, 1, "sendrecv"))?
        .ok_or("no dialog at B")?;
    let ok = a.wait_for(
        "the 200 over a new connection",
        Duration::from_secs(10),
        |i| i.msg.status() == 200 && i.msg.header("call-id").is_some_and(|c| c == call_id),
    )?;
    ensure(ok.transport == Transport::Tcp, || {
        format!("the 200 came over {:?}", ok.transport)
    })?;
    // Complete and end the call, so it holds nothing for the scenarios after this one.
    let mut da = common::ua::Dialog {
        call_id: call_id.clone(),
        local_tag: tag.clone(),
        remote_tag: String::new(),
        local_uri: "sip:alice@operator-a.example".into(),
        remote_uri: TO_CINDY.into(),
        remote_target: String::new(),
        route_set: Vec::new(),
        local_cseq: 1,
        invite_cseq: 1,
        transport: Transport::Tcp,
    };
    a.ack_2xx(&mut da, &ok.msg)?;
    b.wait_ack(&db)?;
    flows::bye(&a, &mut da, &b, &db)
}

fn reverse_call() -> R<()> {
    let a = a_ua()?;
    let b = b_ua()?;
    let e = flows::full_call(&b, &a, TO_ALICE, true)?;
    check_topology(&b, &a, &e, A_HOME, B_HOME, TO_ALICE)?;
    no_foreign_ids(&b, &a, "127.0.10.", "operator-a-core")?;
    no_foreign_ids(&a, &b, "127.0.40.", "operator-b-core")
}

fn unknown_domain() -> R<()> {
    let a = a_ua()?;
    let b = b_ua()?;
    let (tx, _) = a.invite(
        "sip:bob@unknown-domain.example",
        &sdp("127.0.10.1", 40000, 1, "sendrecv"),
    )?;
    let f = a.wait_final(&tx)?;
    ensure(f.status() == 404, || {
        format!("unknown domain answered {}", f.start)
    })?;
    b.expect_nothing(Duration::from_millis(800))
}

fn options_home() -> R<()> {
    let a = a_ua()?;
    let tx = a.out_of_dialog("OPTIONS", "sip:127.0.10.2:5060", &[])?;
    let f = a.wait_final(&tx)?;
    ensure(f.status() == 200, || {
        format!("OPTIONS answered {}", f.start)
    })
}

fn max_forwards_zero() -> R<()> {
    let a = a_ua()?;
    let b = b_ua()?;
    let (tx, _) = a.invite_with(
        TO_CINDY,
        &sdp("127.0.10.1", 40000, 1, "sendrecv"),
        &[("Max-Forwards", "0".to_string())],
    )?;
    let f = a.wait_final(&tx)?;
    ensure(f.status() == 483, || {
        format!("Max-Forwards 0 answered {}", f.start)
    })?;
    b.expect_nothing(Duration::from_millis(800))
}

/// Send raw bytes from `sock` to A's home side; return the status codes of replies within `wait`.
fn probe_udp(sock: &UdpSocket, bytes: &[u8], wait: Duration) -> R<Vec<u16>> {
    let to: SocketAddr = A_HOME.parse().unwrap();
    sock.send_to(bytes, to)
        .map_err(|e| format!("send probe: {e}"))?;
    let end = Instant::now() + wait;
    let mut codes = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while Instant::now() < end {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            codes.push(Msg::parse(&buf[..n]).map(|m| m.status()).unwrap_or(0));
        }
    }
    Ok(codes)
}

fn malformed_set(via_host: &str) -> Vec<(&'static str, Vec<u8>, &'static [u16])> {
    let head = |extra: &str, skip: &[&str]| -> String {
        let cid = registry::fresh("badcid");
        let mut lines = vec![
            "INVITE sip:cindy@operator-b.example SIP/2.0".to_string(),
            format!(
                "Via: SIP/2.0/UDP {via_host};branch={};rport",
                registry::fresh("z9hG4bKbad")
            ),
            "Max-Forwards: 70".into(),
            format!(
                "From: <sip:mallory@operator-a.example>;tag={}",
                registry::fresh("badtag")
            ),
            "To: <sip:cindy@operator-b.example>".into(),
            format!("Call-ID: {cid}@ua.operator-a-core.internal"),
            "CSeq: 1 INVITE".into(),
            format!("Contact: <sip:mallory@{via_host}>"),
        ];
        lines.retain(|l| !skip.iter().any(|s| l.starts_with(s)));
        let mut s = lines.join("\r\n");
        s.push_str("\r\n");
        s.push_str(extra);
        s
    };
    const BAD: &[u16] = &[400];
    let mut v: Vec<(&'static str, Vec<u8>, &'static [u16])> = vec![
        (
            "Content-Length larger than body",
            head("Content-Length: 500\r\n\r\nv=0\r\n", &[]).into_bytes(),
            BAD,
        ),
        (
            "Content-Length not a number",
            head("Content-Length: eleven\r\n\r\n", &[]).into_bytes(),
            BAD,
        ),
        (
            "missing Call-ID",
            head("Content-Length: 0\r\n\r\n", &["Call-ID"]).into_bytes(),
            BAD,
        ),
        (
            "missing CSeq",
            head("Content-Length: 0\r\n\r\n", &["CSeq"]).into_bytes(),
            BAD,
        ),
        (
            "missing Via",
            head("Content-Length: 0\r\n\r\n", &["Via"]).into_bytes(),
            BAD,
        ),
        (
            "garbage start line",
            head("Content-Length: 0\r\n\r\n", &[])
                .replacen(
                    "INVITE sip:cindy@operator-b.example SIP/2.0",
                    "HELLO \u{1}WORLD ???",
                    1,
                )
                .into_bytes(),
            BAD,
        ),
    ];
    let mut nonutf = head("Content-Length: 0\r\n\r\n", &["Call-ID"]).into_bytes();
    let pos = nonutf.len() - "Content-Length: 0\r\n\r\n".len();
    let ins: &[u8] = b"Call-ID: \xff\xfe\xc3\x28bad\x80@x\r\nSubject: \xf0\x28\x8c\x28\r\n";
    nonutf.splice(pos..pos, ins.iter().copied());
    v.push(("non-UTF-8 bytes in headers", nonutf, BAD));
    v
}

fn malformed_inputs(lab: &mut Lab) -> R<()> {
    let a = a_ua()?;
    let b = b_ua()?;
    let mut e = flows::establish(&a, &b, TO_CINDY)?;
    let probe = UdpSocket::bind("127.0.10.1:5099").map_err(|e| e.to_string())?;
    probe
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    for (name, bytes, allowed) in malformed_set("127.0.10.1:5099") {
        let codes = probe_udp(&probe, &bytes, Duration::from_millis(700))?;
        if codes.iter().any(|c| !allowed.contains(c)) {
            problems.push(format!(
                "{name}: answered {codes:?} (allowed: nothing or {allowed:?})"
            ));
        }
    }
    // 70 kB over TCP (does not fit a datagram)
    {
        let mut s = tcp_connect_from("127.0.10.1".parse().unwrap(), A_HOME.parse().unwrap())?;
        let pad = "y".repeat(70_000);
        let m = format!(
            "INVITE sip:cindy@operator-b.example SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.10.1:5099;branch={}\r\n\
Max-Forwards: 70\r\nFrom: <sip:m@operator-a.example>;tag={}\r\nTo: <sip:cindy@operator-b.example>\r\n\
Call-ID: {}\r\nCSeq: 1 INVITE\r\nX-Pad: {pad}\r\nContent-Length: 0\r\n\r\n",
            registry::fresh("z9hG4bKbig"),
            registry::fresh("bigtag"),
            registry::fresh("bigcid")
        );
        let _ = s.write_all(m.as_bytes());
        let _ = s.set_read_timeout(Some(Duration::from_millis(1000)));
        let mut buf = vec![0u8; 4096];
        if let Ok(n) = s.read(&mut buf) {
            if n > 0 {
                let st = Msg::parse(&buf[..n]).map(|m| m.status()).unwrap_or(0);
                if ![400, 413, 513].contains(&st) {
                    problems.push(format!("70 kB over TCP: answered {st}"));
                }
            }
        }
    }
    if let Ok(i) = b.wait_request_for("INVITE", None, Duration::from_millis(300)) {
        problems.push(format!(
            "a malformed INVITE reached B's core: {}",
            i.msg.summary()
        ));
    }
    lab.alive()?;
    // unknown source: nothing at all, even for a well-formed OPTIONS
    let stranger = UdpSocket::bind("127.0.10.9:5099").map_err(|e| e.to_string())?;
    stranger
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let (_, bad, _) = &malformed_set("127.0.10.9:5099")[2];
    let opts = format!(
        "OPTIONS sip:127.0.10.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.10.9:5099;branch={}\r\n\
Max-Forwards: 70\r\nFrom: <sip:x@operator-a.example>;tag={}\r\nTo: <sip:127.0.10.2:5060>\r\n\
Call-ID: {}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        registry::fresh("z9hG4bKstr"),
        registry::fresh("strtag"),
        registry::fresh("strcid")
    );
    for (name, bytes) in [("malformed", bad.clone()), ("OPTIONS", opts.into_bytes())] {
        let codes = probe_udp(&stranger, &bytes, Duration::from_millis(700))?;
        if !codes.is_empty() {
            problems.push(format!("unknown source {name}: answered {codes:?}"));
        }
    }
    // the call in progress still completes
    if let Err(err) = flows::bye(&a, &mut e.a, &b, &e.b) {
        problems.push(format!("call in progress did not complete: {err}"));
    }
    lab.alive()?;
    ensure(problems.is_empty(), || problems.join("\n    "))
}

fn lossy_call() -> R<()> {
    let relay: SocketAddr = "127.0.10.1:5060".parse().unwrap();
    let ua_addr: SocketAddr = "127.0.10.1:5070".parse().unwrap();
    let l = Lossy::start(
        relay,
        A_HOME.parse().unwrap(),
        ua_addr,
        DropPolicy::FirstCopy,
        Duration::from_secs(120),
    )?;
    let mut ca = UaConfig::a_core("alice");
    ca.bind = ua_addr;
    ca.advertise = relay;
    ca.proxy = relay;
    ca.force_next_hop = Some(relay);
    ca.listen_tcp = false;
    let a = Ua::new(ca)?;
    let b = b_ua()?;
    flows::full_call(&a, &b, TO_CINDY, true)?;
    ensure(l.dropped() >= 5, || {
        format!("relay dropped only {}", l.dropped())
    })?;
    // the UA's own retransmissions happened
    let sent: Vec<Vec<u8>> = a
        .log()
        .iter()
        .filter(|x| x.outgoing)
        .map(|x| x.bytes.clone())
        .collect();
    let dup = sent.iter().enumerate().any(|(i, s)| sent[..i].contains(s));
    ensure(dup, || "caller never retransmitted".into())?;
    // Palisade retransmitted too (a byte-identical copy reached the caller)
    let got: Vec<Vec<u8>> = a
        .log()
        .iter()
        .filter(|x| !x.outgoing)
        .map(|x| x.bytes.clone())
        .collect();
    ensure(!got.is_empty(), || "caller received nothing".into())?;
    no_foreign_ids(&b, &a, "127.0.10.", "operator-a-core")
}

fn sipp_load() -> R<()> {
    if !sipp_runner::sipp_available() {
        return skip("sipp (package sip-tester) not installed");
    }
    let r = sipp_runner::SippRun {
        uac_ip: "127.0.10.1".into(),
        uac_port: 5060,
        target: A_HOME.into(),
        uas_ip: "127.0.40.1".into(),
        uas_port: 5060,
        service: "cindy".into(),
        calls: 200,
        rate: 50,
        limit: 100,
        work: work_dir().join("sipp"),
        timeout: Duration::from_secs(60),
    };
    sipp_runner::run(&r).map(|_| ())
}

/// UDP ports in the relay ranges that a process holds sockets on (read from /proc: the inodes of
/// its socket descriptors, matched against /proc/net/udp of the shared network namespace).
fn relay_ports_held(pid: u32) -> R<Vec<u16>> {
    let mut inodes = std::collections::HashSet::new();
    let fds =
        std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| format!("fds of {pid}: {e}"))?;
    for fd in fds.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy().to_string();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(inode)) = (cols.get(1), cols.get(9)) else {
                continue;
            };
            let port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                .unwrap_or(0);
            if inodes.contains(*inode) && (20_000..=29_999).contains(&port) {
                ports.push(port);
            }
        }
    }
    Ok(ports)
}

/// 1,000 calls one after another (at most 10 at a time), each with SDP anchored on both
/// borders: afterwards neither instance holds a single relay port.
fn sipp_1000_calls_release_everything(lab: &mut Lab) -> R<()> {
    if !sipp_runner::sipp_available() {
        return skip("sipp (package sip-tester) not installed");
    }
    let r = sipp_runner::SippRun {
        uac_ip: "127.0.10.1".into(),
        uac_port: 5060,
        target: A_HOME.into(),
        uas_ip: "127.0.40.1".into(),
        uas_port: 5060,
        service: "cindy".into(),
        calls: 1000,
        rate: 100,
        limit: 10,
        work: work_dir().join("sipp-1000"),
        timeout: Duration::from_secs(120),
    };
    sipp_runner::run(&r)?;
    let pids = [lab.a.pid(), lab.b.pid()];
    let mut held = Vec::new();
    for _ in 0..50 {
        held = pids
            .iter()
            .map(|p| relay_ports_held(*p))
            .collect::<R<Vec<_>>>()?;
        if held.iter().all(Vec::is_empty) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "relay ports still held after 1,000 ended calls: A {} ({:?}...), B {}",
        held[0].len(),
        held[0].iter().take(5).collect::<Vec<_>>(),
        held[1].len()
    ))
}

/// RFC 4475 sections 3.1.2.x: invalid messages.
const RFC4475_INVALID: &[&str] = &[
    "badinv01",
    "clerr",
    "ncl",
    "scalar02",
    "scalarlg",
    "quotbal",
    "ltgtruri",
    "lwsruri",
    "lwsstart",
    "trws",
    "escruri",
    "baddate",
    "regbadct",
    "badaspec",
    "baddn",
    "badvers",
    "mismatch01",
    "mismatch02",
    "bigcode",
];

/// RFC 4475 §3.3 messages the border itself must answer on the wire: (file, status, text the
/// answer must carry).
const RFC4475_ANSWERED: &[(&str, u16, &str)] = &[
    ("unkscm", 416, "Unsupported URI Scheme"), // 3.3.2
    (
        "bext01",
        420,
        "Unsupported: nothingSupportsThis, nothingSupportsThisEither, noProxiesSupportThis",
    ), // 3.3.5
];

fn corpus_dir() -> PathBuf {
    match std::env::var_os("PALISADE_SIP_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/rfc4475"),
    }
}

fn rfc4475(lab: &mut Lab) -> R<()> {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "dat"))
            .collect(),
        Err(e) => return Err(format!("no RFC 4475 corpus at {}: {e}", dir.display())),
    };
    if files.is_empty() {
        return Err(format!("no .dat files in {}", dir.display()));
    }
    files.sort();
    let b = b_ua()?;
    let mut problems = Vec::new();
    {
        let sock = UdpSocket::bind("127.0.10.1:5060").map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())?;
        let to: SocketAddr = A_HOME.parse().unwrap();
        let mut buf = vec![0u8; 70_000];
        for f in &files {
            let stem = f.file_stem().unwrap().to_string_lossy().to_string();
            let bytes = std::fs::read(f).map_err(|e| e.to_string())?;
            b.clear_queue();
            sock.send_to(&bytes, to)
                .map_err(|e| format!("send {stem}: {e}"))?;
            let end = Instant::now() + Duration::from_millis(250);
            let mut answers: Vec<String> = Vec::new();
            while Instant::now() < end {
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    answers.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
            if let Some((_, status, needle)) = RFC4475_ANSWERED.iter().find(|(s, ..)| *s == stem) {
                let want = format!("SIP/2.0 {status} ");
                let ok = answers
                    .iter()
                    .any(|a| a.starts_with(&want) && a.contains(needle));
                if !ok {
                    problems.push(format!(
                        "{stem}: expected a {status} carrying {needle:?} from A, got {:?}",
                        answers
                            .iter()
                            .map(|a| a.lines().next().unwrap_or("").to_string())
                            .collect::<Vec<_>>()
                    ));
                }
            }
            let got = b.queued();
            if RFC4475_INVALID.contains(&stem.as_str()) && !got.is_empty() {
                problems.push(format!(
                    "{stem} (invalid, RFC 4475 3.1.2.x) came out on B's side as {:?}",
                    got.iter().map(|i| i.msg.summary()).collect::<Vec<_>>()
                ));
            }
        }
    }
    drop(b);
    lab.alive()?;
    if let Err(e) = case1(true) {
        problems.push(format!("no call served after the corpus: {e}"));
    }
    ensure(problems.is_empty(), || problems.join("\n    "))
}

fn leak_check(lab: &mut Lab) -> R<()> {
    if let Some(r) = &lab.capture_skip {
        return skip(r);
    }
    let Some(cap) = lab.capture.as_mut() else {
        return skip("no capture");
    };
    // The interconnect is TLS: its SIP is read from the capture decrypted with the key log.
    let ic = cap.finish(&keylog())?;
    ic.holds_sip(50)?;
    let mut ids = registry::all();
    ids.extend(["127.0.10.1:5070".to_string(), "SIPpTag".to_string()]);
    // The whole of every message, SDP included: the TrGW anchors every stream on the border.
    let hits = ic.leaks(&capture::needles(ids), (20_000, 29_999));
    ensure(hits.is_empty(), || {
        format!(
            "{} leak(s) on the interconnect ({} SIP messages):\n    {}",
            hits.len(),
            ic.sip,
            hits.join("\n    ")
        )
    })
}

/// Every PROTOS c07-sip case (4,527 malformed INVITEs) sent at A's home side over UDP and TCP
/// while a call crosses the border with RTP flowing both ways through both relays: the
/// instances stay up, the media keeps flowing (each side receives the other's stream), and the
/// call then ends with a BYE answered end to end.
fn protos_during_call(lab: &mut Lab) -> R<()> {
    use common::media::{exchange, rtp_socket, PTIME};
    use common::ua::sdp_media_addr;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/protos-c07-sip");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_none())
        .collect();
    cases.sort();
    ensure(cases.len() > 4000, || {
        format!("only {} PROTOS cases in {}", cases.len(), dir.display())
    })?;
    let a = a_ua()?;
    let b = b_ua()?;
    let a_rtp = rtp_socket("127.0.10.1", 46_000)?;
    let b_rtp = rtp_socket("127.0.40.1", 56_000)?;
    let a_port = a_rtp.local_addr().map_err(|e| e.to_string())?.port();
    let b_port = b_rtp.local_addr().map_err(|e| e.to_string())?.port();
    let (tx, mut da) = a.invite(TO_CINDY, &sdp("127.0.10.1", a_port, 1, "sendrecv"))?;
    let inc = b.wait_request("INVITE", None)?;
    let db = b
        .answer_invite(&inc, 200, &sdp("127.0.40.1", b_port, 1, "sendrecv"))?
        .ok_or("no dialog at B")?;
    let ok = a.wait_final(&tx)?;
    ensure(ok.status() == 200, || format!("caller got {}", ok.start))?;
    a.ack_2xx(&mut da, &ok)?;
    b.wait_ack(&db)?;
    let a_to = sdp_media_addr(&ok.body_str())?;
    let b_to = sdp_media_addr(&inc.msg.body_str())?;
    const MEDIA_FOR: Duration = Duration::from_secs(6);
    let ta = std::thread::spawn(move || exchange(a_rtp, a_to, 0xA1, 0xB1, MEDIA_FOR));
    let tb = std::thread::spawn(move || exchange(b_rtp, b_to, 0xB1, 0xA1, MEDIA_FOR));

    // The storm, from a core address (so it is parsed, not dropped as an unknown source).
    let udp = UdpSocket::bind("127.0.10.1:5096").map_err(|e| e.to_string())?;
    let to: SocketAddr = A_HOME.parse().unwrap();
    let started = Instant::now();
    for (i, f) in cases.iter().enumerate() {
        let bytes = std::fs::read(f).map_err(|e| e.to_string())?;
        let _ = udp.send_to(&bytes, to);
        if i % 200 == 199 {
            // Paced a little, as a flood within what the socket buffers hold.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Over TCP: one connection per case (a framing error closes it, as it should).
    for f in cases.iter().step_by(9) {
        let bytes = std::fs::read(f).map_err(|e| e.to_string())?;
        if let Ok(mut c) = tcp_connect_from("127.0.10.1".parse().unwrap(), to) {
            let _ = c.write_all(&bytes);
        }
        if started.elapsed() > Duration::from_secs(60) {
            break; // bounded
        }
    }
    let ra = ta.join().map_err(|_| "A's media thread panicked")?;
    let rb = tb.join().map_err(|_| "B's media thread panicked")?;
    lab.alive()?;
    let expected = (MEDIA_FOR.as_millis() / PTIME.as_millis()) as u32;
    for (who, r) in [("A's core", &ra), ("B's core", &rb)] {
        ensure(r.from_peer >= expected / 2, || {
            format!(
                "{who} received only {} of the other side's {} RTP packets during the PROTOS storm",
                r.from_peer, expected
            )
        })?;
    }
    // The call is still there: a re-INVITE and the BYE cross.
    let re = a.request(
        &mut da,
        "INVITE",
        Some(&sdp("127.0.10.1", a_port, 2, "sendrecv")),
    )?;
    let re_b = b.wait_request("INVITE", None)?;
    b.respond(
        &re_b,
        200,
        "OK",
        None,
        Some(&sdp("127.0.40.1", b_port, 2, "sendrecv")),
    )?;
    let ok = a.wait_final(&re)?;
    ensure(ok.status() == 200, || {
        format!("re-INVITE after the storm got {}", ok.start)
    })?;
    a.ack_2xx(&mut da, &ok)?;
    flows::bye(&a, &mut da, &b, &db)?;
    lab.alive()
}

// ---------------------------------------------------------------- main

type Scenario = (&'static str, fn(&mut Lab) -> R<()>);

fn scenarios() -> Vec<Scenario> {
    vec![
        ("case1_answered_bye_from_caller", |_| case1(true)),
        ("case1_answered_bye_from_callee", |_| case1(false)),
        ("rejected_486", |_| rejected(486)),
        ("rejected_603", |_| rejected(603)),
        ("cancel_before_answer", |_| cancel_before_answer()),
        ("tcp_caller", |_| tcp_call()),
        ("tcp_response_after_close", |_| tcp_response_after_close()),
        ("reverse_b_to_a", |_| reverse_call()),
        ("unknown_domain_404", |_| unknown_domain()),
        ("options_home_side", |_| options_home()),
        ("max_forwards_zero_483", |_| max_forwards_zero()),
        ("malformed_inputs", malformed_inputs),
        ("lossy_retransmissions", |_| lossy_call()),
        ("sipp_200_calls", |_| sipp_load()),
        (
            "sipp_1000_calls_release_everything",
            sipp_1000_calls_release_everything,
        ),
        ("rfc4475_corpus", rfc4475),
        ("protos_during_call", protos_during_call),
        ("interconnect_leak_check", leak_check),
    ]
}

fn main() {
    let code = run();
    std::process::exit(code);
}

fn run() -> i32 {
    let selected = harness::select(scenarios());
    instance::watchdog("lab", GLOBAL_TIMEOUT);
    println!("\nrunning {} lab scenarios", selected.len());
    let mut tally = Tally::new();
    let want_capture = selected
        .iter()
        .any(|(n, _)| *n == "interconnect_leak_check");
    let mut capture = None;
    let mut capture_skip = None;
    if want_capture {
        if let Some(why) = capture::unavailable() {
            capture_skip = Some(why);
        } else {
            match Capture::start(work_dir().join("interconnect.pcap")) {
                Ok(c) => capture = Some(c),
                Err(e) => capture_skip = Some(format!("capture failed: {e}")),
            }
        }
    }
    let root = labfiles::shipped_dir();
    let _ = std::fs::remove_file(keylog());
    // Another lab (a concurrent test run) may hold the fixed addresses: wait for it, bounded.
    let started = instance::wait_lab_free(Duration::from_secs(240)).and_then(|()| {
        start_instance("operator-a", &root.join("operator-a.toml")).and_then(|a| {
            start_instance("operator-b", &root.join("operator-b.toml")).map(|b| (a, b))
        })
    });
    let mut lab = match started {
        Ok((a, b)) => Lab {
            a,
            b,
            capture,
            capture_skip,
        },
        Err(e) => {
            drop(capture);
            println!("lab startup FAILED: {e}");
            for (n, _) in &selected {
                println!("test {n} ... FAILED\n    lab did not start");
            }
            println!("\n0 passed, {} failed", selected.len());
            return 1;
        }
    };
    for (name, f) in &selected {
        tally.run(name, || f(&mut lab).and_then(|()| lab.alive()));
    }
    let logs = work_dir();
    drop(lab);
    println!("\nlab logs and capture: {}", logs.display());
    tally.finish()
}
