//! Connection abuse against a running instance (issue #20), on its own loopback addresses
//! (127.0.81.x, admin 127.0.0.1:9181) with `partial_message_timeout_ms = 1500` and
//! `max_connections_per_source = 4`:
//! - `slow_loris`: a TCP client sending its headers a byte every 300 ms is disconnected before
//!   it finishes (and the log says why); one that connects and sends nothing is too.
//! - `over_long_content_length`: headers announcing a 10 MB body are refused at once: the
//!   connection closes without the body ever being sent (nothing buffered).
//! - `connections_per_source`: the fifth connection from one address is closed at once, while
//!   another address still connects and gets its OPTIONS answered.
//!
//! - `flood_during_a_call`: while a call from partner B (127.0.82.3) to A's core has RTP flowing
//!   both ways through both realms' relays, partner C (127.0.82.4, `max_cps = 5`) sends 60
//!   INVITEs at once and an unknown source (127.0.82.9) 200: C gets 503 with Retry-After for
//!   what is over its rate, the unknown source gets no answer at all, and B's call keeps its
//!   media and ends with a BYE answered end to end.
//!
//! - `keepalive_ping`: the TCP connection Palisade opens toward partner D carries a CRLF CRLF
//!   ping after `keepalive_interval_s` (1 s) without sending (RFC 5626 §4.4.1).
//!
//! harness = false: `cargo test --test hostile [-- NAME...]`. No timing assertions: every wait
//! is bounded and only checks what happened.

mod common;

use common::harness::{self, ensure, Tally};
use common::instance::{self, Instance};
use common::ua::{tcp_connect_from, R};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const GLOBAL_TIMEOUT: Duration = Duration::from_secs(3 * 60);
const HOME: &str = "127.0.81.2:5060";
const CORE: &str = "127.0.81.1";

fn work_dir() -> PathBuf {
    instance::work_dir("hostile")
}

const CONFIG: &str = r#"name = "palisade-hostile"
home_domains = ["operator-a.example"]
[sip]
partial_message_timeout_ms = 1500
max_connections_per_source = 4
keepalive_interval_s = 1
[admin]
listen = "127.0.0.1:9181"
[media]
nft_table = "palisade_hostile"
[[realm]]
name = "home"
kind = "home"
listen = ["udp:127.0.81.2:5060", "tcp:127.0.81.2:5060"]
core = "udp:127.0.81.1:5060"
core_sources = ["127.0.81.1", "127.0.81.5"]
[[realm]]
name = "interconnect"
kind = "peer"
listen = ["udp:127.0.82.2:5060"]
[[realm.peer]]
name = "operator-b"
domains = ["operator-b.example"]
sources = ["127.0.82.3"]
next_hop = "udp:127.0.82.3:5060"
[[realm.peer]]
name = "operator-c"
domains = ["operator-c.example"]
sources = ["127.0.82.4"]
next_hop = "udp:127.0.82.4:5060"
max_cps = 5
[[realm.peer]]
name = "operator-d"
domains = ["operator-d.example"]
sources = ["127.0.82.6"]
next_hop = "tcp:127.0.82.6:5060"
"#;

fn options(n: u32) -> String {
    format!(
        "OPTIONS sip:127.0.81.2:5060;transport=tcp SIP/2.0\r\n\
         Via: SIP/2.0/TCP {CORE}:5060;branch=z9hG4bKhostile{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@operator-a.example>;tag=h{n}\r\n\
         To: <sip:127.0.81.2>\r\n\
         Call-ID: hostile-{n}@operator-a.example\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn connect(from: &str) -> R<TcpStream> {
    let s = tcp_connect_from(from.parse().unwrap(), HOME.parse::<SocketAddr>().unwrap())?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// Whether the far side closed `s` within `limit` (reads return 0 or fail with a reset).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 1024];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

struct Setup {
    inst: Instance,
    log: PathBuf,
}

/// Whether the instance's log has (or gets within a few seconds: it arrives through a pipe)
/// a line containing `what`.
fn log_has(log: &PathBuf, what: &str) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if std::fs::read_to_string(log).is_ok_and(|t| t.contains(what)) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn slow_loris(s: &mut Setup) -> R<()> {
    let mut c = connect(CORE)?;
    let msg = options(1);
    let mut sent = 0;
    let mut closed = false;
    for b in msg.as_bytes() {
        if c.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        sent += 1;
        if closed_within(&mut c, Duration::from_millis(300)) {
            closed = true;
            break;
        }
    }
    ensure(closed && sent < msg.len(), || {
        format!(
            "the slow client was not cut off ({sent} of {} bytes sent)",
            msg.len()
        )
    })?;
    ensure(log_has(&s.log, "no complete message within"), || {
        format!("no log line for the slow client:\n{}", s.inst.tail())
    })?;
    let mut silent = connect(CORE)?;
    ensure(closed_within(&mut silent, Duration::from_secs(10)), || {
        "a connection that sent nothing stayed open".to_string()
    })?;
    s.inst.alive()
}

fn over_long_content_length(s: &mut Setup) -> R<()> {
    let mut c = connect(CORE)?;
    let head = options(2).replace("Content-Length: 0", "Content-Length: 10000000");
    c.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    ensure(closed_within(&mut c, Duration::from_secs(5)), || {
        "headers announcing a 10 MB body did not close the connection".to_string()
    })?;
    ensure(log_has(&s.log, "Message too large"), || {
        format!(
            "no log line for the over-long Content-Length:\n{}",
            s.inst.tail()
        )
    })?;
    s.inst.alive()
}

fn connections_per_source(s: &mut Setup) -> R<()> {
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(CORE)?);
    }
    // Give the acceptor time to count them (bounded by the check below, not asserted).
    std::thread::sleep(Duration::from_millis(200));
    let mut fifth = connect(CORE)?;
    ensure(closed_within(&mut fifth, Duration::from_secs(3)), || {
        "a fifth connection from one source was kept".to_string()
    })?;
    ensure(log_has(&s.log, "max_connections_per_source"), || {
        format!("no log line for the per-source limit:\n{}", s.inst.tail())
    })?;
    // Another core address is not affected, and gets its answer.
    let mut other = connect("127.0.81.5")?;
    other
        .write_all(options(3).replace(CORE, "127.0.81.5").as_bytes())
        .map_err(|e| e.to_string())?;
    other
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2048];
    let n = other.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    ensure(answer.starts_with("SIP/2.0 200"), || {
        format!("the other source got {answer:?}")
    })?;
    drop(held);
    s.inst.alive()
}

fn invite_from(src: &SocketAddr, n: u32) -> String {
    format!(
        "INVITE sip:alice@operator-a.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP {src};branch=z9hG4bKflood{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:flood@operator-c.example>;tag=f{n}\r\n\
         To: <sip:alice@operator-a.example>\r\n\
         Call-ID: flood-{n}@{src}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:flood@{src}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn flood_during_a_call(s: &mut Setup) -> R<()> {
    use common::media::{exchange, rtp_socket, PTIME};
    use common::ua::sdp_media_addr;
    use common::ua::{sdp, Transport, Ua, UaConfig};
    let ua = |bind: &str, proxy: &str, domain: &str, internal: &str| UaConfig {
        bind: bind.parse().unwrap(),
        advertise: bind.parse().unwrap(),
        proxy: proxy.parse().unwrap(),
        force_next_hop: None,
        transport: Transport::Udp,
        user: "u".into(),
        domain: domain.into(),
        internal: internal.into(),
        listen_tcp: false,
        own_record_route: true,
    };
    // B's border stand-in on the interconnect, A's core behind the home side.
    let b = Ua::new(ua(
        "127.0.82.3:5060",
        "127.0.82.2:5060",
        "operator-b.example",
        "b.internal",
    ))?;
    let a = Ua::new(ua(
        "127.0.81.1:5060",
        HOME,
        "operator-a.example",
        "a.internal",
    ))?;
    let b_rtp = rtp_socket("127.0.82.3", 47_000)?;
    let a_rtp = rtp_socket("127.0.81.1", 57_000)?;
    let b_port = b_rtp.local_addr().map_err(|e| e.to_string())?.port();
    let a_port = a_rtp.local_addr().map_err(|e| e.to_string())?.port();
    let (tx, mut db) = b.invite(
        "sip:alice@operator-a.example",
        &sdp("127.0.82.3", b_port, 1, "sendrecv"),
    )?;
    let inc = a.wait_request("INVITE", None)?;
    let da = a
        .answer_invite(&inc, 200, &sdp("127.0.81.1", a_port, 1, "sendrecv"))?
        .ok_or("no dialog at A's core")?;
    let ok = b.wait_final(&tx)?;
    ensure(ok.status() == 200, || format!("B's call got {}", ok.start))?;
    b.ack_2xx(&mut db, &ok)?;
    a.wait_ack(&da)?;
    let b_to = sdp_media_addr(&ok.body_str())?;
    let a_to = sdp_media_addr(&inc.msg.body_str())?;
    const MEDIA_FOR: Duration = Duration::from_secs(4);
    let tb = std::thread::spawn(move || exchange(b_rtp, b_to, 0xB2, 0xA2, MEDIA_FOR));
    let ta = std::thread::spawn(move || exchange(a_rtp, a_to, 0xA2, 0xB2, MEDIA_FOR));

    let c = std::net::UdpSocket::bind("127.0.82.4:0").map_err(|e| e.to_string())?;
    let x = std::net::UdpSocket::bind("127.0.82.9:0").map_err(|e| e.to_string())?;
    let ic: SocketAddr = "127.0.82.2:5060".parse().unwrap();
    let (c_addr, x_addr) = (c.local_addr().unwrap(), x.local_addr().unwrap());
    for n in 0..200 {
        if n < 60 {
            let _ = c.send_to(invite_from(&c_addr, n).as_bytes(), ic);
        }
        let _ = x.send_to(invite_from(&x_addr, 1000 + n).as_bytes(), ic);
    }
    let collect = |sock: &std::net::UdpSocket| {
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = sock.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        got
    };
    let c_got = collect(&c);
    let x_got = collect(&x);
    let busy = c_got
        .iter()
        .filter(|m| m.starts_with("SIP/2.0 503") && m.contains("Retry-After"))
        .count();
    ensure(busy >= 40, || {
        format!(
            "partner C over its rate got {busy} 503 + Retry-After of 60 INVITEs ({} answers)",
            c_got.len()
        )
    })?;
    ensure(x_got.is_empty(), || {
        format!(
            "the unknown source got {} answers: {:?}",
            x_got.len(),
            x_got.first()
        )
    })?;
    let rb = tb.join().map_err(|_| "B's media thread panicked")?;
    let ra = ta.join().map_err(|_| "A's media thread panicked")?;
    let expected = (MEDIA_FOR.as_millis() / PTIME.as_millis()) as u32;
    for (who, r) in [("B", &rb), ("A's core", &ra)] {
        ensure(r.from_peer >= expected / 2, || {
            format!(
                "{who} received {} of {expected} RTP packets during the flood",
                r.from_peer
            )
        })?;
    }
    common::flows::bye(&b, &mut db, &a, &da)?;
    s.inst.alive()
}

/// RFC 5626 §4.4.1: a TCP connection Palisade opened toward a partner carries a CRLF CRLF ping
/// once it has sent nothing for `keepalive_interval_s` (1 s here).
fn keepalive_ping(s: &mut Setup) -> R<()> {
    let listener = std::net::TcpListener::bind("127.0.82.6:5060").map_err(|e| e.to_string())?;
    let core = std::net::UdpSocket::bind("127.0.81.1:0").map_err(|e| e.to_string())?;
    let src = core.local_addr().unwrap();
    let invite = invite_from(&src, 4242).replace(
        "sip:alice@operator-a.example",
        "sip:dora@operator-d.example",
    );
    core.send_to(invite.as_bytes(), HOME)
        .map_err(|e| e.to_string())?;
    listener.set_nonblocking(false).map_err(|e| e.to_string())?;
    let (mut conn, _) = {
        let l = listener.try_clone().map_err(|e| e.to_string())?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(l.accept());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| "Palisade opened no connection to the TCP partner".to_string())?
            .map_err(|e| e.to_string())?
    };
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        if let Ok(n) = conn.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        // The INVITE ends with a blank line; a ping after it is another CRLF CRLF on its own.
        let text = String::from_utf8_lossy(&got);
        if let Some(i) = text.find("\r\n\r\n") {
            if text[i + 4..].contains("\r\n\r\n") {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&got);
    let after = text.find("\r\n\r\n").map(|i| &text[i + 4..]).unwrap_or("");
    ensure(
        text.starts_with("INVITE ") && after.contains("\r\n\r\n"),
        || format!("no CRLF keep-alive after the INVITE within 5 s: {text:?}"),
    )?;
    s.inst.alive()
}

type Scenario = (&'static str, fn(&mut Setup) -> R<()>);

fn main() {
    let all: Vec<Scenario> = vec![
        ("slow_loris", slow_loris),
        ("over_long_content_length", over_long_content_length),
        ("connections_per_source", connections_per_source),
        ("flood_during_a_call", flood_during_a_call),
        ("keepalive_ping", keepalive_ping),
    ];
    let selected = harness::select(all);
    instance::watchdog("hostile", GLOBAL_TIMEOUT);
    println!("\nrunning {} hostile-traffic scenarios", selected.len());
    let mut tally = Tally::new();
    let dir = work_dir();
    let cfg = dir.join("hostile.toml");
    let started = std::fs::write(&cfg, CONFIG)
        .map_err(|e| e.to_string())
        .and_then(|()| Instance::start("hostile", &cfg, dir.join("hostile.log")));
    let mut setup = match started {
        Ok(inst) => Setup {
            inst,
            log: dir.join("hostile.log"),
        },
        Err(e) => {
            println!("hostile setup FAILED: {e}");
            for (name, _) in &selected {
                tally.record(name, Duration::ZERO, Err("instance did not start".into()));
            }
            std::process::exit(tally.finish());
        }
    };
    for (name, f) in &selected {
        tally.run(name, || harness::catch(|| f(&mut setup)));
    }
    // exit() runs no destructors: stop the instance first.
    drop(setup);
    println!("\nlogs: {}", dir.display());
    std::process::exit(tally.finish());
}
