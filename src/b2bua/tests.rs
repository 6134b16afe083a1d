//! Two border engines wired back to back in memory with a virtual clock: the lab topology
//! without sockets. Every byte exchanged between the borders is kept for the leak checks.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{tag_of, Border, Inbound};
use crate::config::{self, Transport};
use crate::sip::{parse_message, Limits, Message};
use crate::transaction::Flow;

const CORE_A: &str = "127.0.10.1:5060";
const CORE_B: &str = "127.0.40.1:5060";

use super::replay::lab;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

struct Sim {
    now: Instant,
    borders: [Border; 2],
    /// Messages delivered to A's core and B's core: (from, bytes).
    core: [VecDeque<(SocketAddr, Vec<u8>)>; 2],
    interconnect: Vec<Vec<u8>>,
    /// What was sent to an address nobody in the simulation listens on (a dead target).
    blackhole: Vec<(SocketAddr, Vec<u8>)>,
    /// Drop every n-th datagram between the borders (0 = lossless).
    lossy: usize,
    sent: usize,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            now: Instant::now(),
            borders: [
                Border::new(lab("operator-a.toml"), 1),
                Border::new(lab("operator-b.toml"), 2),
            ],
            core: [VecDeque::new(), VecDeque::new()],
            interconnect: Vec::new(),
            blackhole: Vec::new(),
            lossy: 0,
            sent: 0,
        }
    }

    /// Which border and realm listens on this address.
    fn listener(&self, to: SocketAddr) -> Option<(usize, usize)> {
        for (bi, b) in self.borders.iter().enumerate() {
            for (ri, r) in b.config().realms.iter().enumerate() {
                if r.listen.iter().any(|l| l.addr == to) {
                    return Some((bi, ri));
                }
            }
        }
        None
    }

    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        if let Some((bi, realm)) = self.listener(to) {
            let now = self.now;
            self.borders[bi].handle_input(
                now,
                Inbound {
                    realm,
                    transport: Transport::Udp,
                    remote: from,
                    bytes: &bytes,
                    peer: None,
                },
            );
        } else if to == addr(CORE_A) {
            self.core[0].push_back((from, bytes));
        } else if to == addr(CORE_B) {
            self.core[1].push_back((from, bytes));
        } else {
            self.blackhole.push((to, bytes));
        }
    }

    /// Moves messages until nothing is in flight (bounded).
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for bi in 0..2 {
                while let Some(t) = self.borders[bi].poll_transmit() {
                    moved = true;
                    let from = self.source_of(bi, t.flow);
                    let between_borders = self.listener(t.flow.remote).is_some();
                    if between_borders {
                        self.interconnect.push(t.bytes.clone());
                        self.sent += 1;
                        if self.lossy > 0 && self.sent % self.lossy == 0 {
                            continue;
                        }
                    }
                    self.deliver(from, t.flow.remote, t.bytes);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("simulation did not settle");
    }

    fn source_of(&self, border: usize, flow: Flow) -> SocketAddr {
        let r = &self.borders[border].config().realms[flow.realm];
        r.listen[0].addr
    }

    /// Advances the virtual clock by `d` in steps, firing timers on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            let next = self
                .borders
                .iter()
                .filter_map(|b| b.poll_timeout())
                .min()
                .filter(|t| *t <= end);
            let Some(t) = next else { break };
            self.now = t.max(self.now);
            let now = self.now;
            for b in &mut self.borders {
                b.handle_timeout(now);
            }
            self.settle();
        }
        self.now = end;
    }

    fn send_from_core(&mut self, side: usize, text: &str) {
        let (from, to) = if side == 0 {
            (addr(CORE_A), addr("127.0.10.2:5060"))
        } else {
            (addr(CORE_B), addr("127.0.40.2:5060"))
        };
        self.deliver(from, to, text.replace('\n', "\r\n").into_bytes());
        self.settle();
    }

    /// Feeds one UDP datagram straight into a border's realm (as if from `from`), without
    /// settling: the caller decides what to do with the border's answer.
    fn inject(&mut self, border: usize, realm: usize, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        self.borders[border].handle_input(
            now,
            Inbound {
                realm,
                transport: Transport::Udp,
                remote: from,
                bytes,
                peer: None,
            },
        );
    }

    /// Takes the next message that reached a core, skipping 100 Trying.
    fn take(&mut self, side: usize) -> Message {
        while let Some((_, bytes)) = self.core[side].pop_front() {
            let m = parse_message(&bytes, &Limits::default()).expect("border output parses");
            if m.status() != Some(100) {
                return m;
            }
        }
        panic!("nothing arrived at core {side}");
    }

    fn quiet(&mut self, side: usize) -> bool {
        self.core[side]
            .iter()
            .all(|(_, b)| parse_message(b, &Limits::default()).map(|m| m.status()) == Ok(Some(100)))
    }
}

fn h<'a>(m: &'a Message, name: &str) -> &'a str {
    m.headers.get(name).unwrap_or("")
}

fn invite_from_a(call_id: &str, branch: &str) -> String {
    let sdp = "v=0\no=alice 1 1 IN IP4 127.0.10.1\ns=-\nc=IN IP4 127.0.10.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n";
    format!(
        "INVITE sip:cindy@operator-b.example SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.10.1:5060;branch={branch}\n\
         Via: SIP/2.0/UDP pcscf.operator-a-core.internal;branch=z9hG4bKinner\n\
         Record-Route: <sip:scscf.operator-a-core.internal;lr>\n\
         Max-Forwards: 69\n\
         From: \"Alice\" <sip:alice@operator-a.example>;tag=alicetag1\n\
         To: <sip:cindy@operator-b.example>\n\
         Call-ID: {call_id}\n\
         CSeq: 1 INVITE\n\
         Contact: <sip:alice@127.0.10.1:5060>\n\
         P-Asserted-Identity: <sip:alice@operator-a.example>\n\
         P-Charging-Vector: icid-value=abc123;icid-generated-at=127.0.10.1;orig-ioi=internal\n\
         User-Agent: InternalCore/1.0\n\
         X-Internal: pcscf1.operator-a-core.internal\n\
         Supported: timer\n\
         Content-Type: application/sdp\n\
         Content-Length: {}\n\n{sdp}",
        sdp.replace('\n', "\r\n").len()
    )
}

/// An out-of-dialog request from A's core: the INVITE template's headers (no body), with
/// `extra` header lines before Content-Length.
fn request_from_a(call_id: &str, branch: &str, method: &str, seq: u32, extra: &str) -> String {
    let full = invite_from_a(call_id, branch);
    let head = &full[..full.find("Content-Type").expect("template has a body")];
    format!("{head}{extra}Content-Length: 0\n\n")
        .replace("INVITE sip:", &format!("{method} sip:"))
        .replace("CSeq: 1 INVITE", &format!("CSeq: {seq} {method}"))
}

/// A response from a core UA to a request it received.
fn answer(req: &Message, status: u16, to_tag: &str, contact: &str, body: &str) -> String {
    let mut s = format!("SIP/2.0 {status} Whatever internal reason\n");
    for v in req.headers.lines("Via") {
        s.push_str(&format!("Via: {v}\n"));
    }
    s.push_str(&format!("From: {}\n", h(req, "From")));
    let to = h(req, "To");
    if to.contains("tag=") {
        s.push_str(&format!("To: {to}\n"));
    } else {
        s.push_str(&format!("To: {to};tag={to_tag}\n"));
    }
    s.push_str(&format!(
        "Call-ID: {}\nCSeq: {}\n",
        h(req, "Call-ID"),
        h(req, "CSeq")
    ));
    if !contact.is_empty() {
        s.push_str(&format!("Contact: <{contact}>\n"));
    }
    s.push_str(
        "Server: InternalSwitch/2.3\nRecord-Route: <sip:scscf.operator-b-core.internal;lr>\n",
    );
    if body.is_empty() {
        s.push_str("Content-Length: 0\n\n");
    } else {
        s.push_str(&format!(
            "Content-Type: application/sdp\nContent-Length: {}\n\n{body}",
            body.replace('\n', "\r\n").len()
        ));
    }
    s
}

/// An in-dialog request from a core UA, given a message of that dialog it received.
fn in_dialog(method: &str, seq: u32, from_core_a: bool, dialog: &Message, branch: &str) -> String {
    // The core UA is the remote party of the border: From is its own identity.
    let (local, remote) = if from_core_a {
        (h(dialog, "From"), h(dialog, "To"))
    } else {
        (h(dialog, "To"), h(dialog, "From"))
    };
    let (ip, target) = if from_core_a {
        ("127.0.10.1:5060", "sip:127.0.10.2:5060")
    } else {
        ("127.0.40.1:5060", "sip:127.0.40.2:5060")
    };
    format!(
        "{method} {target} SIP/2.0\n\
         Via: SIP/2.0/UDP {ip};branch={branch}\n\
         Max-Forwards: 70\n\
         From: {local}\n\
         To: {remote}\n\
         Call-ID: {}\n\
         CSeq: {seq} {method}\n\
         Content-Length: 0\n\n",
        h(dialog, "Call-ID")
    )
}

/// A call from `user` at A to Cindy at B, answered (Cindy's tag `cindy_tag`) and acknowledged:
/// the 200 as A's core saw it and the ACK as B's core saw it (each side's view of the dialog).
fn answered_call(sim: &mut Sim, user: &str, cindy_tag: &str) -> (Message, Message) {
    let inv = invite_from_a(
        &format!("{user}-call@127.0.10.1"),
        &format!("z9hG4bK{user}"),
    )
    .replace(
        "\"Alice\" <sip:alice@operator-a.example>;tag=alicetag1",
        &format!("<sip:{user}@operator-a.example>;tag={user}tag1"),
    );
    sim.send_from_core(0, &inv);
    let inv_b = sim.take(1);
    let contact = "sip:cindy@127.0.40.1:5060";
    sim.send_from_core(1, &answer(&inv_b, 200, cindy_tag, contact, ""));
    let ok_a = sim.take(0);
    assert_eq!(ok_a.status(), Some(200));
    let ack = in_dialog("ACK", 1, true, &ok_a, &format!("z9hG4bK{user}ack"));
    sim.send_from_core(0, &ack);
    (ok_a, sim.take(1))
}

/// A message built with `Content-Length: 0` given a body instead (LF line ends, as the
/// templates: the sim sends CRLF, and the length counts it).
fn with_body(msg: &str, content_type: &str, body: &str) -> String {
    msg.replace(
        "Content-Length: 0\n\n",
        &format!(
            "Content-Type: {content_type}\nContent-Length: {}\n\n{body}",
            body.replace('\n', "\r\n").len()
        ),
    )
}

/// Asserts that a message's body (as text) contains every one of `needles`.
fn assert_body_has(m: &Message, needles: &[&str]) {
    let body = String::from_utf8_lossy(&m.body);
    for n in needles {
        assert!(body.contains(n), "body lacks {n:?}:\n{body}");
    }
}

fn assert_no_leak(sim: &Sim, secrets: &[&str]) {
    assert!(
        !sim.interconnect.is_empty(),
        "nothing crossed the interconnect"
    );
    for bytes in &sim.interconnect {
        // The whole message, SDP included: the TrGW anchors every stream on the border.
        let text = String::from_utf8_lossy(bytes);
        for s in secrets {
            assert!(
                !text.contains(s),
                "interconnect message leaks {s:?}:\n{text}"
            );
        }
    }
}

const SECRETS: &[&str] = &[
    "127.0.10.",
    "127.0.40.",
    "operator-a-core",
    "operator-b-core",
    "alicetag1",
    "z9hG4bKalice",
    "InternalCore",
    "InternalSwitch",
    "internal reason",
    "icid-generated-at",
];

#[test]
fn answered_call_crosses_both_borders_and_is_freed() {
    let mut sim = Sim::new();
    sim.send_from_core(
        0,
        &invite_from_a("secret-call-1@127.0.10.1", "z9hG4bKalice1"),
    );
    let inv = sim.take(1);
    assert_eq!(inv.method().map(|m| m.as_str()), Some("INVITE"));
    assert!(h(&inv, "From").contains("alice@operator-a.example"));
    assert!(
        h(&inv, "P-Asserted-Identity").contains("alice"),
        "trusted peers keep PAI"
    );
    assert!(!h(&inv, "Call-ID").contains("secret-call-1"));
    assert_eq!(h(&inv, "Max-Forwards"), "67", "decremented at each border");
    let offer = String::from_utf8_lossy(&inv.body).to_string();
    assert!(
        offer.contains("c=IN IP4 127.0.40.2") && !offer.contains("m=audio 4000"),
        "SDP anchored on B's home relay: {offer}"
    );

    sim.send_from_core(
        1,
        &answer(&inv, 180, "cindytag", "sip:cindy@127.0.40.1:5060", ""),
    );
    let ringing = sim.take(0);
    assert_eq!(ringing.status(), Some(180));
    let sdp = "v=0\no=cindy 1 1 IN IP4 127.0.40.1\ns=-\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
    sim.send_from_core(
        1,
        &answer(&inv, 200, "cindytag", "sip:cindy@127.0.40.1:5060", sdp),
    );
    let ok = sim.take(0);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(h(&ok, "Call-ID"), "secret-call-1@127.0.10.1");
    assert!(h(&ok, "Contact").contains("127.0.10.2"));
    assert!(!h(&ok, "Server").contains("Internal"));
    assert_eq!(
        match &ok.start {
            crate::sip::StartLine::Response { reason, .. } => reason.as_str(),
            _ => "",
        },
        "OK",
        "internal reason text never crosses"
    );

    // ACK for the 2xx, a new transaction to the border's Contact.
    let ack = in_dialog("ACK", 1, true, &ok, "z9hG4bKaliceack");
    sim.send_from_core(0, &ack);
    let ack_b = sim.take(1);
    assert_eq!(ack_b.method().map(|m| m.as_str()), Some("ACK"));
    assert_eq!(h(&ack_b, "Call-ID"), h(&inv, "Call-ID"));

    // BYE from the callee.
    let bye = in_dialog("BYE", 1, false, &ack_b, "z9hG4bKcindybye");
    sim.send_from_core(1, &bye);
    let bye_a = sim.take(0);
    assert_eq!(bye_a.method().map(|m| m.as_str()), Some("BYE"));
    assert_eq!(h(&bye_a, "Call-ID"), "secret-call-1@127.0.10.1");
    sim.send_from_core(0, &answer(&bye_a, 200, "", "", ""));
    let bye_ok = sim.take(1);
    assert_eq!(bye_ok.status(), Some(200));

    assert_eq!(sim.borders[0].active_sessions(), 0);
    assert_eq!(sim.borders[1].active_sessions(), 0);
    sim.advance(Duration::from_secs(64));
    assert_eq!(sim.borders[0].held_state(), (0, 0, 0, 0));
    assert_eq!(sim.borders[1].held_state(), (0, 0, 0, 0));
    assert_no_leak(&sim, SECRETS);
    assert_no_leak(&sim, &["secret-call-1"]);
}

#[test]
fn rejected_call_relays_the_status_and_frees_state() {
    for status in [486u16, 603, 404, 480] {
        let mut sim = Sim::new();
        sim.send_from_core(0, &invite_from_a("rej@127.0.10.1", "z9hG4bKalicerej"));
        let inv = sim.take(1);
        sim.send_from_core(1, &answer(&inv, status, "ctag", "", ""));
        let resp = sim.take(0);
        assert_eq!(resp.status(), Some(status));
        // The core's ACK for the non-2xx is absorbed by the border's transaction.
        let ack = format!(
            "ACK sip:cindy@operator-b.example SIP/2.0\nVia: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bKalicerej\n\
             Max-Forwards: 70\nFrom: {}\nTo: {}\nCall-ID: rej@127.0.10.1\nCSeq: 1 ACK\nContent-Length: 0\n\n",
            h(&resp, "From"),
            h(&resp, "To")
        );
        sim.send_from_core(0, &ack);
        // B's core got the ACK of its non-2xx from border B.
        let ack_b = sim.take(1);
        assert_eq!(ack_b.method().map(|m| m.as_str()), Some("ACK"));
        sim.advance(Duration::from_secs(64));
        assert_eq!(sim.borders[0].held_state(), (0, 0, 0, 0), "status {status}");
        assert_eq!(sim.borders[1].held_state(), (0, 0, 0, 0), "status {status}");
        assert_no_leak(&sim, SECRETS);
    }
}

#[test]
fn cancel_before_answer_gives_487_everywhere() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("can@127.0.10.1", "z9hG4bKalicecan"));
    let inv = sim.take(1);
    sim.send_from_core(
        1,
        &answer(&inv, 180, "ctag", "sip:cindy@127.0.40.1:5060", ""),
    );
    let ringing = sim.take(0);
    assert_eq!(ringing.status(), Some(180));
    let cancel = "CANCEL sip:cindy@operator-b.example SIP/2.0\nVia: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bKalicecan\n\
                  Max-Forwards: 70\nFrom: \"Alice\" <sip:alice@operator-a.example>;tag=alicetag1\n\
                  To: <sip:cindy@operator-b.example>\nCall-ID: can@127.0.10.1\nCSeq: 1 CANCEL\nContent-Length: 0\n\n";
    sim.send_from_core(0, cancel);
    let (first, second) = (sim.take(0), sim.take(0));
    let mut got = vec![first.status(), second.status()];
    got.sort();
    assert_eq!(got, vec![Some(200), Some(487)]);
    let r487 = if first.status() == Some(487) {
        &first
    } else {
        &second
    };
    assert_eq!(
        tag_of(r487.headers.get("To")),
        tag_of(ringing.headers.get("To")),
        "the 487 ends the early dialog the 180 created"
    );
    let cancel_b = sim.take(1);
    assert_eq!(cancel_b.method().map(|m| m.as_str()), Some("CANCEL"));
    sim.send_from_core(1, &answer(&cancel_b, 200, "ctag", "", ""));
    sim.send_from_core(1, &answer(&inv, 487, "ctag", "", ""));
    sim.advance(Duration::from_secs(64));
    assert_eq!(sim.borders[0].held_state(), (0, 0, 0, 0));
    assert_eq!(sim.borders[1].held_state(), (0, 0, 0, 0));
    assert_no_leak(&sim, SECRETS);
}

#[test]
fn lossy_interconnect_is_recovered_by_retransmissions() {
    let mut sim = Sim::new();
    sim.lossy = 2; // every second datagram between the borders is lost
    sim.send_from_core(0, &invite_from_a("loss@127.0.10.1", "z9hG4bKaliceloss"));
    sim.advance(Duration::from_secs(4));
    let inv = sim.take(1);
    sim.core[1].clear();
    let sdp =
        "v=0\no=c 1 1 IN IP4 127.0.40.1\ns=-\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
    sim.send_from_core(
        1,
        &answer(&inv, 200, "ltag", "sip:cindy@127.0.40.1:5060", sdp),
    );
    sim.advance(Duration::from_secs(4));
    let ok = sim.take(0);
    assert_eq!(ok.status(), Some(200));
    sim.core[0].clear();
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKalicelossack"));
    sim.advance(Duration::from_secs(8));
    let ack = sim.take(1);
    assert_eq!(ack.method().map(|m| m.as_str()), Some("ACK"));
}

#[test]
fn unknown_domain_gets_404_and_nothing_leaves() {
    let mut sim = Sim::new();
    let inv = invite_from_a("nf@127.0.10.1", "z9hG4bKalicenf").replace(
        "sip:cindy@operator-b.example SIP",
        "sip:bob@nowhere.example SIP",
    );
    sim.send_from_core(0, &inv);
    assert_eq!(sim.take(0).status(), Some(404));
    assert!(sim.interconnect.is_empty());
}

#[test]
fn unknown_require_gets_420_naming_the_options_and_nothing_leaves() {
    let mut sim = Sim::new();
    let inv = invite_from_a("req@127.0.10.1", "z9hG4bKreq").replace(
        "Supported: timer\n",
        "Require: 100rel, fancyThing\nProxy-Require: proxyThing, fancyThing\n",
    );
    sim.send_from_core(0, &inv);
    let resp = sim.take(0);
    assert_eq!(resp.status(), Some(420));
    assert_eq!(h(&resp, "Unsupported"), "fancyThing, proxyThing");
    assert!(sim.interconnect.is_empty());
    // The extensions the border handles cross.
    let inv = invite_from_a("req2@127.0.10.1", "z9hG4bKreq2")
        .replace("Supported: timer\n", "Require: 100rel, timer\n");
    sim.send_from_core(0, &inv);
    assert_eq!(sim.take(1).method().map(|m| m.as_str()), Some("INVITE"));
}

#[test]
fn unknown_uri_scheme_gets_416() {
    let mut sim = Sim::new();
    let inv = invite_from_a("scheme@127.0.10.1", "z9hG4bKscheme").replace(
        "INVITE sip:cindy@operator-b.example SIP",
        "INVITE nobodyKnowsThisScheme:opaque SIP",
    );
    sim.send_from_core(0, &inv);
    assert_eq!(sim.take(0).status(), Some(416));
    assert!(sim.interconnect.is_empty());
}

#[test]
fn dialog_creating_responses_echo_each_sides_own_record_route() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("rr@127.0.10.1", "z9hG4bKalicerr"));
    let inv = sim.take(1);
    assert!(
        inv.headers.get("Record-Route").is_none(),
        "A's Record-Route never crosses"
    );
    sim.send_from_core(
        1,
        &answer(&inv, 180, "cindyrr", "sip:cindy@127.0.40.1:5060", ""),
    );
    let ringing = sim.take(0);
    assert_eq!(
        ringing.headers.lines("Record-Route").collect::<Vec<_>>(),
        vec!["<sip:scscf.operator-a-core.internal;lr>"],
        "the caller's proxy stays in its route set (RFC 3261 §12.1.1)"
    );
    let sdp = "v=0\no=cindy 1 1 IN IP4 127.0.40.1\ns=-\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
    sim.send_from_core(
        1,
        &answer(&inv, 200, "cindyrr", "sip:cindy@127.0.40.1:5060", sdp),
    );
    let ok = sim.take(0);
    assert_eq!(
        h(&ok, "Record-Route"),
        "<sip:scscf.operator-a-core.internal;lr>"
    );
    assert!(!h(&ok, "Record-Route").contains("operator-b"));
    assert_no_leak(&sim, SECRETS);
}

#[test]
fn unknown_source_is_dropped_silently() {
    let mut sim = Sim::new();
    let inv = invite_from_a("x@127.0.10.9", "z9hG4bKscan");
    sim.deliver(
        addr("127.0.10.9:5060"),
        addr("127.0.10.2:5060"),
        inv.replace('\n', "\r\n").into_bytes(),
    );
    sim.settle();
    assert!(sim.borders[0].poll_transmit().is_none());
    assert!(sim.interconnect.is_empty());
    assert_eq!(sim.borders[0].stats().dropped_unknown_source, 1);
}

#[test]
fn malformed_request_from_core_gets_400() {
    let mut sim = Sim::new();
    let bad =
        invite_from_a("bad@127.0.10.1", "z9hG4bKbad").replace("CSeq: 1 INVITE", "CSeq: x INVITE");
    sim.send_from_core(0, &bad);
    let (_, resp) = sim.core[0].pop_front().expect("answered");
    assert!(
        resp.starts_with(b"SIP/2.0 400 Bad CSeq\r\n"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert!(sim.interconnect.is_empty());
}

#[test]
fn max_forwards_zero_gets_483() {
    let mut sim = Sim::new();
    let inv =
        invite_from_a("mf@127.0.10.1", "z9hG4bKmf").replace("Max-Forwards: 69", "Max-Forwards: 0");
    sim.send_from_core(0, &inv);
    assert_eq!(sim.take(0).status(), Some(483));
}

#[test]
fn options_from_peer_is_answered_locally() {
    let mut sim = Sim::new();
    let opt = "OPTIONS sip:127.0.30.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.20.2:5060;branch=z9hG4bKka\r\n\
               Max-Forwards: 70\r\nFrom: <sip:operator-a.example>;tag=k\r\nTo: <sip:operator-b.example>\r\n\
               Call-ID: ka1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    sim.inject(1, 1, addr("127.0.20.2:5060"), opt.as_bytes());
    let t = sim.borders[1].poll_transmit().expect("answered");
    let m = parse_message(&t.bytes, &Limits::default()).expect("parses");
    assert_eq!(m.status(), Some(200));
    assert!(sim.core[1].is_empty());
}

#[test]
fn reinvite_hold_and_resume_relay_both_ways() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("hold@127.0.10.1", "z9hG4bKalicehold"));
    let inv = sim.take(1);
    sim.send_from_core(
        1,
        &answer(&inv, 200, "htag", "sip:cindy@127.0.40.1:5060", ""),
    );
    let ok = sim.take(0);
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKaliceack2"));
    let ack_b = sim.take(1);
    for (seq, dir) in [(2u32, "sendonly"), (3, "sendrecv")] {
        let sdp = format!("v=0\no=a 1 {seq} IN IP4 127.0.10.1\ns=-\nc=IN IP4 127.0.10.1\nt=0 0\nm=audio 4000 RTP/AVP 0\na={dir}\n");
        let mut re = in_dialog("INVITE", seq, true, &ok, &format!("z9hG4bKre{seq}"));
        re = re.replace(
            "Content-Length: 0\n\n",
            &format!(
                "Contact: <sip:alice@127.0.10.1:5060>\nContent-Type: application/sdp\nContent-Length: {}\n\n{sdp}",
                sdp.replace('\n', "\r\n").len()
            ),
        );
        sim.send_from_core(0, &re);
        let re_b = sim.take(1);
        assert_eq!(re_b.method().map(|m| m.as_str()), Some("INVITE"));
        assert!(String::from_utf8_lossy(&re_b.body).contains(dir));
        assert_eq!(h(&re_b, "Call-ID"), h(&ack_b, "Call-ID"));
        sim.send_from_core(
            1,
            &answer(&re_b, 200, "htag", "sip:cindy@127.0.40.1:5060", ""),
        );
        let ok2 = sim.take(0);
        assert_eq!(ok2.status(), Some(200));
        sim.send_from_core(
            0,
            &in_dialog("ACK", seq, true, &ok, &format!("z9hG4bKreack{seq}")),
        );
        let ack2 = sim.take(1);
        assert_eq!(ack2.method().map(|m| m.as_str()), Some("ACK"));
        assert!(h(&ack2, "CSeq").starts_with(&h(&re_b, "CSeq")[..1]));
    }
    sim.send_from_core(0, &in_dialog("BYE", 4, true, &ok, "z9hG4bKbye"));
    let bye = sim.take(1);
    sim.send_from_core(1, &answer(&bye, 200, "", "", ""));
    assert_eq!(sim.take(0).status(), Some(200));
    sim.advance(Duration::from_secs(64));
    assert_eq!(sim.borders[0].held_state(), (0, 0, 0, 0));
    assert_no_leak(&sim, SECRETS);
}

#[test]
fn unanswered_invite_times_out_with_408() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("to@127.0.10.1", "z9hG4bKaliceto"));
    let _ = sim.take(1);
    sim.advance(Duration::from_secs(40));
    let resp = sim.take(0);
    assert_eq!(resp.status(), Some(408));
    sim.advance(Duration::from_secs(100));
    assert_eq!(sim.borders[0].held_state(), (0, 0, 0, 0));
    assert_eq!(sim.borders[1].held_state(), (0, 0, 0, 0));
}

fn media_of(b: &mut Border) -> Vec<super::MediaCommand> {
    std::iter::from_fn(|| b.poll_media()).collect()
}

#[test]
fn media_is_anchored_on_each_realm_and_released() {
    use super::MediaCommand;
    let mut sim = Sim::new();
    let free = [0, 1].map(|r| sim.borders[0].free_media_ports(r));
    sim.send_from_core(0, &invite_from_a("med@127.0.10.1", "z9hG4bKalicemed"));
    let inv = sim.take(1);
    let offer = String::from_utf8_lossy(&inv.body).to_string();
    assert!(offer.contains("c=IN IP4 127.0.40.2"), "{offer}");
    assert!(offer.contains("o=- 1 1 IN IP4 127.0.40.2"), "{offer}");
    assert!(!offer.contains("m=audio 4000"), "{offer}");
    let cmds = media_of(&mut sim.borders[0]);
    let opened: Vec<_> = cmds
        .iter()
        .filter_map(|c| match c {
            MediaCommand::Open(spec) => Some(*spec),
            _ => None,
        })
        .collect();
    assert_eq!(opened.len(), 2, "RTP and RTCP flows: {cmds:?}");
    assert_eq!(opened[0].sides[0].local.ip().to_string(), "127.0.10.2");
    assert_eq!(opened[0].sides[1].local.ip().to_string(), "127.0.20.2");
    assert!(cmds.contains(&MediaCommand::SetRemote {
        id: opened[0].id,
        side: 0,
        remote: Some(addr("127.0.10.1:4000")),
    }));
    assert!(
        !cmds.iter().any(|c| matches!(c, MediaCommand::Gate { .. })),
        "gates wait for the answer"
    );

    let sdp = "v=0\no=cindy 1 1 IN IP4 127.0.40.1\ns=-\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\na=rtcp:5001\n";
    sim.send_from_core(
        1,
        &answer(&inv, 200, "mtag", "sip:cindy@127.0.40.1:5060", sdp),
    );
    let ok = sim.take(0);
    let ans = String::from_utf8_lossy(&ok.body).to_string();
    assert!(ans.contains("c=IN IP4 127.0.10.2"), "{ans}");
    assert!(
        ans.contains(&format!(
            "a=rtcp:{} IN IP4 127.0.10.2",
            opened[1].sides[0].local.port()
        )),
        "{ans}"
    );
    let cmds = media_of(&mut sim.borders[0]);
    assert!(
        cmds.contains(&MediaCommand::Gate {
            id: opened[0].id,
            open: true
        }),
        "{cmds:?}"
    );
    assert!(cmds.iter().any(|c| matches!(c, MediaCommand::SetRemote { id, side: 1, remote: Some(r) } if *id == opened[0].id && r.ip().to_string() == "127.0.30.2")), "{cmds:?}");

    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKmedack"));
    assert_eq!(sim.take(1).method().map(|m| m.as_str()), Some("ACK"));
    sim.send_from_core(0, &in_dialog("BYE", 2, true, &ok, "z9hG4bKmedbye"));
    let bye = sim.take(1);
    sim.send_from_core(1, &answer(&bye, 200, "", "", ""));
    let cmds = media_of(&mut sim.borders[0]);
    assert!(cmds.contains(&MediaCommand::Close(opened[0].id)));
    assert!(cmds.contains(&MediaCommand::Close(opened[1].id)));
    assert_eq!(
        [0, 1].map(|r| sim.borders[0].free_media_ports(r)),
        free,
        "ports returned"
    );
    assert_no_leak(&sim, SECRETS);
    assert_no_leak(&sim, &["4000", "5000", "5001"]);
}

#[test]
fn idle_media_ends_the_call_on_both_legs() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("idle@127.0.10.1", "z9hG4bKaliceidle"));
    let inv = sim.take(1);
    let sdp =
        "v=0\no=c 1 1 IN IP4 127.0.40.1\ns=-\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
    sim.send_from_core(
        1,
        &answer(&inv, 200, "itag", "sip:cindy@127.0.40.1:5060", sdp),
    );
    let ok = sim.take(0);
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKidleack"));
    let _ack = sim.take(1);
    let flows: std::collections::HashSet<_> = media_of(&mut sim.borders[1])
        .into_iter()
        .filter_map(|c| match c {
            super::MediaCommand::Open(s) => Some(s.id),
            _ => None,
        })
        .collect();
    let now = sim.now;
    sim.borders[1].media_idle(now, &flows);
    sim.settle();
    let bye_b = sim.take(1);
    assert_eq!(bye_b.method().map(|m| m.as_str()), Some("BYE"));
    assert!(
        h(&bye_b, "Reason").contains("Media inactivity"),
        "RFC 3326 Reason"
    );
    let bye_a = sim.take(0);
    assert_eq!(
        bye_a.method().map(|m| m.as_str()),
        Some("BYE"),
        "the BYE crossed to A too"
    );
}

#[test]
fn bad_sdp_in_an_offer_is_refused_with_488() {
    let mut sim = Sim::new();
    let inv = invite_from_a("bad-sdp@127.0.10.1", "z9hG4bKbadsdp").replace("v=0\n", "v=9\nzz\n");
    let inv = inv.replace("Content-Length: 93", &format!("Content-Length: {}", 93 + 3));
    sim.send_from_core(0, &inv);
    assert_eq!(sim.take(0).status(), Some(488));
    assert!(sim.interconnect.is_empty());
}

#[test]
fn prack_update_message_and_notify_cross_within_dialogs() {
    let mut sim = Sim::new();
    let inv = invite_from_a("rel@127.0.10.1", "z9hG4bKalicerel")
        .replace("Supported: timer", "Supported: 100rel, timer");
    sim.send_from_core(0, &inv);
    let inv_b = sim.take(1);
    assert!(h(&inv_b, "Supported").contains("100rel"));
    // A reliable 183 from B's core with RSeq 77.
    let early = answer(&inv_b, 183, "rtag", "sip:cindy@127.0.40.1:5060", "").replace(
        "Content-Length: 0",
        "Require: 100rel\nRSeq: 77\nContent-Length: 0",
    );
    sim.send_from_core(1, &early);
    let p183 = sim.take(0);
    assert_eq!(p183.status(), Some(183));
    assert!(h(&p183, "Require").contains("100rel"));
    let rseq = h(&p183, "RSeq").to_string();
    assert_ne!(rseq, "77", "each leg has its own RSeq");
    let prack = in_dialog("PRACK", 2, true, &p183, "z9hG4bKprack").replace(
        "Content-Length: 0",
        &format!("RAck: {rseq} 1 INVITE\nContent-Length: 0"),
    );
    sim.send_from_core(0, &prack);
    let prack_b = sim.take(1);
    assert_eq!(prack_b.method().map(|m| m.as_str()), Some("PRACK"));
    assert!(
        h(&prack_b, "RAck").starts_with("77 "),
        "{}",
        h(&prack_b, "RAck")
    );
    sim.send_from_core(1, &answer(&prack_b, 200, "rtag", "", ""));
    assert_eq!(sim.take(0).status(), Some(200));
    // UPDATE in the early dialog, from the callee.
    let update = in_dialog("UPDATE", 1, false, &prack_b, "z9hG4bKupd");
    sim.send_from_core(1, &update);
    let upd_a = sim.take(0);
    assert_eq!(upd_a.method().map(|m| m.as_str()), Some("UPDATE"));
    sim.send_from_core(0, &answer(&upd_a, 200, "", "", ""));
    assert_eq!(sim.take(1).status(), Some(200));
    sim.send_from_core(
        1,
        &answer(&inv_b, 200, "rtag", "sip:cindy@127.0.40.1:5060", ""),
    );
    let ok = sim.take(0);
    assert_eq!(ok.status(), Some(200));
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKrelack"));
    let _ = sim.take(1);
    // INFO and MESSAGE inside the dialog, then a NOTIFY.
    for (i, method) in ["INFO", "MESSAGE", "NOTIFY"].iter().enumerate() {
        let req = in_dialog(method, 3 + i as u32, true, &ok, &format!("z9hG4bKm{i}"));
        sim.send_from_core(0, &req);
        let got = sim.take(1);
        assert_eq!(got.method().map(|m| m.as_str()), Some(*method));
        sim.send_from_core(1, &answer(&got, 200, "", "", ""));
        assert_eq!(sim.take(0).status(), Some(200));
    }
    // An out-of-order CSeq in the dialog gets 500 and does not cross.
    sim.send_from_core(0, &in_dialog("INFO", 2, true, &ok, "z9hG4bKold"));
    assert_eq!(sim.take(0).status(), Some(500));
    assert_no_leak(&sim, SECRETS);
}

#[test]
fn subscribe_and_out_of_dialog_message_cross() {
    let mut sim = Sim::new();
    let extra = "Event: conference\nExpires: 600\n";
    let sub = request_from_a("sub@127.0.10.1", "z9hG4bKsub", "SUBSCRIBE", 1, extra);
    sim.send_from_core(0, &sub);
    let sub_b = sim.take(1);
    assert_eq!(sub_b.method().map(|m| m.as_str()), Some("SUBSCRIBE"));
    assert_eq!(h(&sub_b, "Event"), "conference");
    // NOTIFY from the notifier (B's side) may arrive before the 2xx.
    let notify = in_dialog("NOTIFY", 1, false, &sub_b, "z9hG4bKnot")
        .replace("Content-Length: 0", "Event: conference\nSubscription-State: active;expires=600\nContact: <sip:conf@127.0.40.1:5060>\nContent-Length: 0");
    // The notifier's From carries its tag, To our From tag.
    let notify = notify.replacen(
        &format!("From: {}", h(&sub_b, "To")),
        &format!("From: {};tag=ntag", h(&sub_b, "To")),
        1,
    );
    sim.send_from_core(1, &notify);
    let not_a = sim.take(0);
    assert_eq!(not_a.method().map(|m| m.as_str()), Some("NOTIFY"));
    sim.send_from_core(0, &answer(&not_a, 200, "", "", ""));
    assert_eq!(sim.take(1).status(), Some(200));
    sim.send_from_core(
        1,
        &answer(&sub_b, 200, "ntag", "sip:conf@127.0.40.1:5060", ""),
    );
    assert_eq!(sim.take(0).status(), Some(200));
    assert_no_leak(&sim, SECRETS);

    let msg = invite_from_a("msg@127.0.10.1", "z9hG4bKmsg")
        .replace("INVITE sip:", "MESSAGE sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 MESSAGE")
        .replace("application/sdp", "text/plain");
    sim.send_from_core(0, &msg);
    let msg_b = sim.take(1);
    assert_eq!(msg_b.method().map(|m| m.as_str()), Some("MESSAGE"));
    sim.send_from_core(1, &answer(&msg_b, 202, "mtag", "", ""));
    assert_eq!(sim.take(0).status(), Some(202));
}

#[test]
fn ipv4_home_and_ipv6_interconnect_interwork() {
    // The TrGW's IP version interworking: A's interconnect relays on IPv6.
    let mut cfg = (*lab("operator-a.toml")).clone();
    cfg.realms[1].media_address = "::1".parse().expect("v6");
    let mut a = Border::new(Arc::new(cfg), 9);
    let now = Instant::now();
    let inv = invite_from_a("v6@127.0.10.1", "z9hG4bKv6").replace('\n', "\r\n");
    a.handle_input(
        now,
        Inbound {
            realm: 0,
            transport: Transport::Udp,
            remote: addr(CORE_A),
            bytes: inv.as_bytes(),
            peer: None,
        },
    );
    let out = std::iter::from_fn(|| a.poll_transmit())
        .find(|t| t.flow.realm == 1)
        .expect("INVITE sent to the peer");
    let m = parse_message(&out.bytes, &Limits::default()).expect("parses");
    let sdp = String::from_utf8_lossy(&m.body).to_string();
    assert!(sdp.contains("c=IN IP6 ::1"), "{sdp}");
    assert!(sdp.contains("o=- 1 1 IN IP6 ::1"), "{sdp}");
    assert!(!sdp.contains("IP4"), "{sdp}");
    let open = std::iter::from_fn(|| a.poll_media())
        .find_map(|c| match c {
            super::MediaCommand::Open(s) => Some(s),
            _ => None,
        })
        .expect("a flow is opened");
    assert!(open.sides[0].local.is_ipv4() && open.sides[1].local.is_ipv6());
}

fn sdp_with(body: &str) -> String {
    format!(
        "Content-Type: application/sdp\nContent-Length: {}\n\n{body}",
        body.replace('\n', "\r\n").len()
    )
}

#[test]
fn early_media_and_added_streams_are_anchored() {
    use super::MediaCommand;
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("early@127.0.10.1", "z9hG4bKearly"));
    let inv = sim.take(1);
    let _ = media_of(&mut sim.borders[0]);
    // 183 with SDP: early media, the gate opens before the 200.
    let early =
        "v=0\no=c 1 1 IN IP4 127.0.40.1\ns=-\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
    sim.send_from_core(
        1,
        &answer(&inv, 183, "etag", "sip:cindy@127.0.40.1:5060", early),
    );
    let p183 = sim.take(0);
    assert_eq!(p183.status(), Some(183));
    assert!(String::from_utf8_lossy(&p183.body).contains("c=IN IP4 127.0.10.2"));
    let cmds = media_of(&mut sim.borders[0]);
    assert!(
        cmds.iter()
            .any(|c| matches!(c, MediaCommand::Gate { open: true, .. })),
        "{cmds:?}"
    );
    sim.send_from_core(
        1,
        &answer(&inv, 200, "etag", "sip:cindy@127.0.40.1:5060", early),
    );
    let ok = sim.take(0);
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKearlyack"));
    let _ = sim.take(1);

    // A re-INVITE adds a video stream: it gets its own relay flows on both borders.
    let two = "v=0\no=alice 1 2 IN IP4 127.0.10.1\ns=-\nc=IN IP4 127.0.10.1\nt=0 0\nm=audio 4000 RTP/AVP 0\nm=video 4002 RTP/AVP 96\na=rtpmap:96 VP8/90000\n";
    let re = in_dialog("INVITE", 2, true, &ok, "z9hG4bKadd").replace(
        "Content-Length: 0\n\n",
        &format!("Contact: <sip:alice@127.0.10.1:5060>\n{}", sdp_with(two)),
    );
    sim.send_from_core(0, &re);
    let re_b = sim.take(1);
    let offer = String::from_utf8_lossy(&re_b.body).to_string();
    assert!(offer.contains("m=video "), "{offer}");
    assert!(!offer.contains("4002"), "{offer}");
    let opened = media_of(&mut sim.borders[0])
        .into_iter()
        .filter(|c| matches!(c, MediaCommand::Open(_)))
        .count();
    assert_eq!(
        opened, 2,
        "one new slot: RTP and RTCP flows for the video stream"
    );
    // The answer rejects the video (port 0): it stays 0 toward A.
    let rejected = "v=0\no=c 1 2 IN IP4 127.0.40.1\ns=-\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\nm=video 0 RTP/AVP 96\n";
    sim.send_from_core(
        1,
        &answer(&re_b, 200, "etag", "sip:cindy@127.0.40.1:5060", rejected),
    );
    let ok2 = sim.take(0);
    let ans = String::from_utf8_lossy(&ok2.body).to_string();
    assert!(ans.contains("m=video 0 "), "{ans}");
    assert_no_leak(&sim, SECRETS);
}

#[test]
fn calls_over_the_partner_limit_get_503_until_one_ends() {
    let mut cfg = (*lab("operator-a.toml")).clone();
    cfg.realms[1].peers[0].max_calls = 1;
    let mut sim = Sim::new();
    sim.borders[0] = Border::new(Arc::new(cfg), 5);
    sim.send_from_core(0, &invite_from_a("lim1@127.0.10.1", "z9hG4bKlim1"));
    let inv = sim.take(1);
    sim.send_from_core(0, &invite_from_a("lim2@127.0.10.1", "z9hG4bKlim2"));
    let busy = sim.take(0);
    assert_eq!(busy.status(), Some(503));
    assert!(busy.headers.get("Retry-After").is_some());
    sim.send_from_core(1, &answer(&inv, 486, "l", "", ""));
    assert_eq!(sim.take(0).status(), Some(486));
    assert_eq!(sim.take(1).method().map(|m| m.as_str()), Some("ACK"));
    sim.send_from_core(0, &invite_from_a("lim3@127.0.10.1", "z9hG4bKlim3"));
    let third = sim.take(1);
    assert_eq!(
        third.method().map(|m| m.as_str()),
        Some("INVITE"),
        "the slot was freed"
    );
}

#[test]
fn untrusted_partner_gets_no_identity_and_no_software_names() {
    let mut cfg = (*lab("operator-a.toml")).clone();
    cfg.realms[1].peers[0].trust = crate::config::Trust::Untrusted;
    cfg.realms[1].peers[0]
        .headers
        .allow
        .extend(["User-Agent".to_string(), "Server".to_string()]);
    let mut sim = Sim::new();
    sim.borders[0] = Border::new(Arc::new(cfg), 6);
    sim.send_from_core(0, &invite_from_a("untr@127.0.10.1", "z9hG4bKuntr"));
    let inv = sim.take(1);
    assert!(
        inv.headers.get("P-Asserted-Identity").is_none(),
        "RFC 3325: PAI stays in the trust domain"
    );
    assert!(
        inv.headers.get("User-Agent").is_none(),
        "never toward an untrusted peer, whatever the allow-list"
    );
    let pcv = h(&inv, "P-Charging-Vector");
    assert!(pcv.contains("orig-ioi=operator-a.example"), "{pcv}");
    assert!(!pcv.contains("icid-generated-at"), "{pcv}");
}

#[test]
fn redirects_and_challenges_do_not_cross() {
    for (status, expected) in [(302u16, 480u16), (407, 403), (401, 403)] {
        let mut sim = Sim::new();
        sim.send_from_core(0, &invite_from_a("rd@127.0.10.1", "z9hG4bKrd"));
        let inv = sim.take(1);
        let resp = answer(&inv, status, "rtag", "sip:elsewhere@10.9.9.9", "").replace(
            "Content-Length: 0",
            "Proxy-Authenticate: Digest realm=\"core.operator-b.internal\"\nContent-Length: 0",
        );
        sim.send_from_core(1, &resp);
        let got = sim.take(0);
        assert_eq!(got.status(), Some(expected), "{status}");
        assert!(got.headers.get("Contact").is_none());
        assert!(got.headers.get("Proxy-Authenticate").is_none());
        assert_no_leak(&sim, &["10.9.9.9", "operator-b.internal"]);
    }
}

#[test]
fn peer_methods_outside_the_agreement_get_405_and_unknown_dialogs_481() {
    let mut cfg = (*lab("operator-b.toml")).clone();
    cfg.realms[1].peers[0].allowed_methods = vec!["INVITE".into(), "ACK".into(), "BYE".into()];
    let mut b = Border::new(Arc::new(cfg), 7);
    let from_peer = |method: &str, to_tag: &str| {
        format!(
            "{method} sip:cindy@operator-b.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.20.2:5060;branch=z9hG4bK{method}{to_tag}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@operator-a.example>;tag=f\r\nTo: <sip:cindy@operator-b.example>{to_tag}\r\n\
             Call-ID: peer-{method}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let mut answer_to = |text: String| {
        let now = Instant::now();
        b.handle_input(
            now,
            Inbound {
                realm: 1,
                transport: Transport::Udp,
                remote: addr("127.0.20.2:5060"),
                bytes: text.as_bytes(),
                peer: None,
            },
        );
        let t = b.poll_transmit().expect("answered");
        parse_message(&t.bytes, &Limits::default()).expect("parses")
    };
    let m = answer_to(from_peer("MESSAGE", ""));
    assert_eq!(m.status(), Some(405));
    assert!(h(&m, "Allow").contains("INVITE"));
    let m = answer_to(from_peer("BYE", ";tag=nosuchdialog"));
    assert_eq!(m.status(), Some(481));
}

#[test]
fn a_forked_answer_from_another_branch_defines_the_dialog() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("fork@127.0.10.1", "z9hG4bKfork"));
    let inv = sim.take(1);
    // A forking core: one branch rings, another answers.
    sim.send_from_core(
        1,
        &answer(&inv, 180, "branch1", "sip:cindy@127.0.40.1:5060", ""),
    );
    assert_eq!(sim.take(0).status(), Some(180));
    sim.send_from_core(
        1,
        &answer(&inv, 200, "branch2", "sip:cindy@127.0.40.1:5062", ""),
    );
    let ok = sim.take(0);
    assert_eq!(ok.status(), Some(200));
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKforkack"));
    let ack = sim.take(1);
    assert_eq!(ack.method().map(|m| m.as_str()), Some("ACK"));
    assert!(h(&ack, "To").contains("tag=branch2"), "{}", h(&ack, "To"));
    match &ack.start {
        crate::sip::StartLine::Request { uri, .. } => {
            assert!(
                uri.to_string().contains("5062"),
                "ACK to the answering branch: {uri}"
            )
        }
        _ => unreachable!(),
    }
    // A third branch answers late: its dialog is ACKed and hung up; the call goes on.
    sim.send_from_core(
        1,
        &answer(&inv, 200, "branch3", "sip:cindy@127.0.40.1:5063", ""),
    );
    let (ack3, bye3) = (sim.take(1), sim.take(1));
    assert_eq!(ack3.method().map(|m| m.as_str()), Some("ACK"));
    assert_eq!(bye3.method().map(|m| m.as_str()), Some("BYE"));
    assert!(h(&ack3, "To").contains("tag=branch3"), "{}", h(&ack3, "To"));
    assert!(h(&bye3, "To").contains("tag=branch3"), "{}", h(&bye3, "To"));
    assert!(sim.quiet(0), "the caller hears nothing of it");
    assert_eq!(sim.borders[1].active_sessions(), 1);
}

#[test]
fn cancel_waits_for_a_provisional_before_crossing() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("early-cancel@127.0.10.1", "z9hG4bKec"));
    let inv = sim.take(1);
    let cancel = "CANCEL sip:cindy@operator-b.example SIP/2.0\nVia: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bKec\n\
                  Max-Forwards: 70\nFrom: \"Alice\" <sip:alice@operator-a.example>;tag=alicetag1\n\
                  To: <sip:cindy@operator-b.example>\nCall-ID: early-cancel@127.0.10.1\nCSeq: 1 CANCEL\nContent-Length: 0\n\n";
    sim.send_from_core(0, cancel);
    let mut got = vec![sim.take(0).status(), sim.take(0).status()];
    got.sort();
    assert_eq!(
        got,
        vec![Some(200), Some(487)],
        "the caller is answered at once"
    );
    // RFC 3261 §9.1: border A has B's 100 Trying, so its CANCEL crosses; B's core has sent
    // nothing yet, so border B holds the CANCEL back until it rings.
    assert!(sim.interconnect.iter().any(|m| m.starts_with(b"CANCEL ")));
    assert!(sim.core[1].is_empty(), "no CANCEL before a provisional");
    sim.send_from_core(
        1,
        &answer(&inv, 180, "ectag", "sip:cindy@127.0.40.1:5060", ""),
    );
    let cancel_b = sim.take(1);
    assert_eq!(cancel_b.method().map(|m| m.as_str()), Some("CANCEL"));
}

#[test]
fn dialog_requests_never_follow_a_target_outside_the_party() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("steer@127.0.10.1", "z9hG4bKsteer"));
    let inv = sim.take(1);
    // B's core answers with a Contact outside its agreed addresses and no Record-Route.
    let ok_b = answer(&inv, 200, "stag", "sip:cindy@10.9.9.9:5070", "").replace(
        "Record-Route: <sip:scscf.operator-b-core.internal;lr>\n",
        "",
    );
    sim.send_from_core(1, &ok_b);
    let ok = sim.take(0);
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKsteerack"));
    // The ACK reached B's configured core (127.0.40.1:5060), not 10.9.9.9: the simulation
    // delivers only to known addresses, so take() would find nothing otherwise.
    let ack = sim.take(1);
    assert_eq!(ack.method().map(|m| m.as_str()), Some("ACK"));
    match &ack.start {
        crate::sip::StartLine::Request { uri, .. } => {
            assert!(
                uri.to_string().contains("10.9.9.9"),
                "Request-URI is the remote target"
            )
        }
        _ => unreachable!(),
    }
}

mod drain;
mod events;
mod failover;
mod fork;
mod fuzz_regressions;
mod hiding_gaps;
mod leak_matrix;
mod memory;
mod multipart;
mod overload;
mod parking;
mod privacy;
mod reconfigure;
mod refer_policy;
mod replaces;
mod sharding;
mod snapshot;
mod tls_identity;
mod transfer;
mod usages;
