//! rtpengine's ng control protocol on the real binary, through real UDP sockets on loopback:
//! - `offer_answer_delete_relay_rtp_both_ways`: `ping` gets `pong`; an `offer` (A's endpoint,
//!   `direction` [A, B], `ICE` remove, `replace` origin/session-connection) gets an SDP naming
//!   the B-facing relay address and nothing of A's; the `answer` (B's endpoint) gets the
//!   A-facing one; RTP sent by each endpoint to the address it was given arrives byte for byte
//!   at the other, from the relay's address on its side. While the call is up its relay port
//!   cannot be bound; after `delete` it can (the port is free again) and nothing is relayed.
//! - `bad_input_gets_error_replies`: bad bencode, an unknown command, an unknown call-id and a
//!   request for an unknown direction each get `result: error` with an `error-reason`, a
//!   datagram without a cookie gets nothing, and the service still answers `ping` afterwards.
//!
//! Each test runs its own instance on its own loopback addresses (127.0.194.x, 127.0.195.x) and
//! ports, so they run in parallel and beside the lab. Every wait is bounded.

mod common;

use common::instance::{self, Instance};
use palisade::ng::bencode::{decode, Value};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(3);
const ABSENT: Duration = Duration::from_millis(300);

/// A node file on `net` (127.0.N): home realm "A" relays on .10, peer realm "B" on .20, ng on
/// .1:22294. SIP listens on ports no test sends to.
fn node(net: u8) -> String {
    format!(
        r#"
name = "ng-test-{net}"
home_domains = ["a.example"]
log = "info"
[admin]
enabled = false
[media]
kernel = false
[ng]
listen = "127.0.{net}.1:22294"
[[realm]]
name = "A"
kind = "home"
listen = ["udp:127.0.{net}.10:15094"]
core = "udp:127.0.{net}.11:15094"
media_ports = "32000-32009"
[[realm]]
name = "B"
kind = "peer"
listen = ["udp:127.0.{net}.20:15094"]
media_ports = "32000-32009"
[[realm.peer]]
name = "b"
domains = ["b.example"]
sources = ["127.0.{net}.21"]
next_hop = "udp:127.0.{net}.21:15094"
"#
    )
}

fn start(net: u8) -> Instance {
    let dir = instance::work_dir("ng");
    let conf: PathBuf = dir.join(format!("node-{net}.toml"));
    std::fs::write(&conf, node(net)).expect("write the node file");
    Instance::start(
        &format!("ng-{net}"),
        &conf,
        dir.join(format!("ng-{net}.log")),
    )
    .expect("palisade starts")
}

fn sock(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind(addr).expect("bind a test socket");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s
}

/// An ng client: one socket, cookies numbered.
struct Client {
    sock: UdpSocket,
    to: SocketAddr,
    n: u32,
}

/// A reply's dictionary as (key, value) strings; integers and lists as their bencode.
type Reply = Vec<(String, String)>;

fn field<'a>(r: &'a Reply, k: &str) -> &'a str {
    r.iter()
        .find(|(key, _)| key == k)
        .map_or("", |(_, v)| v.as_str())
}

impl Client {
    fn new(net: u8) -> Client {
        Client {
            sock: sock(&format!("127.0.{net}.1:0")),
            to: format!("127.0.{net}.1:22294").parse().unwrap(),
            n: 0,
        }
    }

    /// Sends `body` after a fresh cookie; the reply's dictionary (`None`: no reply in time).
    fn send_raw(&mut self, body: &[u8]) -> Option<Reply> {
        self.n += 1;
        let cookie = format!("t{}", self.n);
        let mut d = format!("{cookie} ").into_bytes();
        d.extend_from_slice(body);
        self.sock.send_to(&d, self.to).expect("send");
        let mut buf = vec![0u8; 65536];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        let rest = buf[..n]
            .strip_prefix(format!("{cookie} ").as_bytes())
            .expect("the reply carries the request's cookie");
        let Value::Dict(items) = decode(rest).expect("the reply is bencode") else {
            panic!("the reply is not a dictionary");
        };
        Some(
            items
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                        other => String::from_utf8_lossy(&other.to_bytes()).into_owned(),
                    };
                    (String::from_utf8_lossy(k).into_owned(), text)
                })
                .collect(),
        )
    }

    fn ask(&mut self, items: Vec<(&[u8], Value)>) -> Reply {
        self.send_raw(&Value::Dict(items).to_bytes())
            .expect("an ng reply in time")
    }
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=user 1 1 IN IP4 {ip}\r\ns=call\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\na=candidate:1 1 udp 2130706431 {ip} {port} typ host\r\na=sendrecv\r\n"
    )
}

/// The relay endpoint an SDP names (`c=` and `m=audio`).
fn media_addr(sdp: &str) -> SocketAddr {
    let ip = sdp
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line");
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .expect("m= line");
    format!("{ip}:{port}").parse().expect("address")
}

/// An RTP packet (PCMU, 160 bytes of payload) with its sequence number in the payload too.
fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u32).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// Sends `count` packets from `from` to `relay`; each must arrive at `to`, unchanged and in
/// order, from `relay_far` (the relay's address on the receiver's side).
fn relays(from: &UdpSocket, relay: SocketAddr, to: &UdpSocket, relay_far: SocketAddr, ssrc: u32) {
    for seq in 0..20u16 {
        let p = rtp(seq, ssrc);
        from.send_to(&p, relay).expect("send rtp");
        let mut buf = [0u8; 2048];
        let (n, src) = to
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("packet {seq} of ssrc {ssrc:x} not relayed: {e}"));
        assert_eq!(&buf[..n], &p[..], "packet {seq} changed on the way");
        assert_eq!(
            src, relay_far,
            "packet {seq} came from elsewhere than the relay"
        );
    }
}

fn offer<'a>(call: &'a str, sdp: &'a [u8], dir: [&'a str; 2]) -> Vec<(&'static [u8], Value<'a>)> {
    vec![
        (b"command", Value::Bytes(b"offer")),
        (b"call-id", Value::Bytes(call.as_bytes())),
        (b"from-tag", Value::Bytes(b"fa1")),
        (b"sdp", Value::Bytes(sdp)),
        (
            b"direction",
            Value::List(dir.iter().map(|d| Value::Bytes(d.as_bytes())).collect()),
        ),
        (b"ICE", Value::Bytes(b"remove")),
        (
            b"replace",
            Value::List(vec![
                Value::Bytes(b"origin"),
                Value::Bytes(b"session-connection"),
            ]),
        ),
    ]
}

fn delete(call: &str) -> Vec<(&'static [u8], Value<'_>)> {
    vec![
        (b"command", Value::Bytes(b"delete")),
        (b"call-id", Value::Bytes(call.as_bytes())),
    ]
}

#[test]
fn offer_answer_delete_relay_rtp_both_ways() {
    let net = 194;
    let _palisade = start(net);
    let mut ng = Client::new(net);
    let ping = ng.ask(vec![(b"command", Value::Bytes(b"ping"))]);
    assert_eq!(field(&ping, "result"), "pong");

    let a = sock(&format!("127.0.{net}.11:0"));
    let b = sock(&format!("127.0.{net}.21:0"));
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let a_sdp = sdp(&a_addr.ip().to_string(), a_addr.port());
    let r = ng.ask(offer("call-1", a_sdp.as_bytes(), ["A", "B"]));
    assert_eq!(field(&r, "result"), "ok", "{r:?}");
    let to_b = field(&r, "sdp").to_string();
    let b_facing = media_addr(&to_b);
    assert_eq!(
        b_facing.ip().to_string(),
        format!("127.0.{net}.20"),
        "{to_b}"
    );
    assert!(
        !to_b.contains(&format!("127.0.{net}.11")),
        "A's address reached B: {to_b}"
    );
    assert!(
        !to_b.contains("ice-") && !to_b.contains("candidate"),
        "ICE left: {to_b}"
    );

    let b_sdp = sdp(&b_addr.ip().to_string(), b_addr.port());
    let r = ng.ask(vec![
        (b"command", Value::Bytes(b"answer")),
        (b"call-id", Value::Bytes(b"call-1")),
        (b"from-tag", Value::Bytes(b"fa1")),
        (b"to-tag", Value::Bytes(b"tb1")),
        (b"sdp", Value::Bytes(b_sdp.as_bytes())),
        (b"ICE", Value::Bytes(b"remove")),
    ]);
    assert_eq!(field(&r, "result"), "ok", "{r:?}");
    let to_a = field(&r, "sdp").to_string();
    let a_facing = media_addr(&to_a);
    assert_eq!(
        a_facing.ip().to_string(),
        format!("127.0.{net}.10"),
        "{to_a}"
    );
    assert!(
        !to_a.contains(&format!("127.0.{net}.21")),
        "B's address reached A: {to_a}"
    );

    relays(&a, a_facing, &b, b_facing, 0xa1);
    relays(&b, b_facing, &a, a_facing, 0xb2);
    assert!(
        UdpSocket::bind(a_facing).is_err(),
        "the relay port is held while the call is up"
    );

    let r = ng.ask(delete("call-1"));
    assert_eq!(field(&r, "result"), "ok", "{r:?}");
    // The ports are free again: the test can bind them (the relay closed its sockets before it
    // answered).
    let again = UdpSocket::bind(a_facing).expect("the A-facing port is free after delete");
    drop(again);
    UdpSocket::bind(b_facing).expect("the B-facing port is free after delete");
    a.send_to(&rtp(99, 0xa1), a_facing).expect("send");
    b.set_read_timeout(Some(ABSENT)).unwrap();
    let mut buf = [0u8; 2048];
    assert!(b.recv_from(&mut buf).is_err(), "relayed after delete");
    let r = ng.ask(delete("call-1"));
    assert_eq!(field(&r, "result"), "error", "deleted twice: {r:?}");
}

#[test]
fn bad_input_gets_error_replies() {
    let net = 195;
    let mut palisade = start(net);
    let mut ng = Client::new(net);
    let error = |r: &Reply| {
        (
            field(r, "result").to_string(),
            field(r, "error-reason").to_string(),
        )
    };

    let r = ng
        .send_raw(b"d7:command4:ping")
        .expect("a reply to bad bencode");
    let (res, why) = error(&r);
    assert_eq!(res, "error");
    assert!(why.contains("bencode"), "{why}");

    let r = ng
        .send_raw(b"not bencode at all")
        .expect("a reply to garbage");
    assert_eq!(error(&r).0, "error");

    let r = ng.ask(vec![(b"command", Value::Bytes(b"frobnicate"))]);
    let (res, why) = error(&r);
    assert_eq!(res, "error");
    assert!(why.contains("frobnicate"), "{why}");

    let r = ng.ask(delete("no-such-call"));
    assert_eq!(error(&r), ("error".into(), "Unknown call-id".into()));

    let r = ng.ask(vec![
        (b"command", Value::Bytes(b"answer")),
        (b"call-id", Value::Bytes(b"no-such-call")),
        (b"from-tag", Value::Bytes(b"x")),
        (b"to-tag", Value::Bytes(b"y")),
        (b"sdp", Value::Bytes(b"v=0\r\n")),
    ]);
    assert_eq!(error(&r), ("error".into(), "Unknown call-id".into()));

    let s = sdp(&format!("127.0.{net}.11"), 4000);
    let r = ng.ask(offer("c", s.as_bytes(), ["A", "Mars"]));
    let (res, why) = error(&r);
    assert_eq!(res, "error");
    assert!(why.contains("unknown direction `Mars`"), "{why}");

    // No cookie: nothing to answer with.
    ng.sock.send_to(b"d7:command4:pinge", ng.to).expect("send");
    ng.sock.set_read_timeout(Some(ABSENT)).unwrap();
    let mut buf = [0u8; 512];
    assert!(
        ng.sock.recv_from(&mut buf).is_err(),
        "answered a datagram without cookie"
    );
    ng.sock.set_read_timeout(Some(WAIT)).unwrap();

    let ping = ng.ask(vec![(b"command", Value::Bytes(b"ping"))]);
    assert_eq!(field(&ping, "result"), "pong");
    palisade.alive().expect("palisade still runs");
}
