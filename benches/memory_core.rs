//! Memory per call, the core alone (no sockets): full calls (INVITE with SDP, 200, ACK, BYE,
//! 200) from operator A's core through Palisade A and Palisade B to operator B's core, the two
//! engines wired back to back in memory with a virtual clock, as in `benches/core.rs`.
//! `cargo bench --bench memory_core`.
//!
//! Two runs, each reported from the engines' own accounting (`Border::held_bytes`, per engine)
//! and from the allocator (glibc `mallinfo2` bytes in use, both engines and the bench's own
//! queues, so per engine it is half):
//!
//! * **held**: CALLS (default 2000) calls set up and left answered at once; then all hung up,
//!   which leaves their ended sessions and transactions to linger 64·T1; then the linger runs
//!   out. Bytes per call in flight, per ended call and per kept transaction, and whether the
//!   engines are back where they started.
//! * **steady**: the load, RATE (default 2500) new calls per second of virtual time,
//!   each HOLD_MS (default 1000) long, for SECONDS (default 40, past the 64·T1 = 32 s linger).
//!   Held bytes divided by calls in flight at the end: everything the load makes the engine
//!   keep (the ended calls still lingering included) counted against the calls up.
//!
//! RSS is printed too, but the allocator keeps freed memory, so it only ever grows.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade::b2bua::{make_response, Border, HeldBytes, Inbound};
use palisade::config::{self, Transport};
use palisade::sip::{parse_message, Limits, Message};

const CORE_A: &str = "127.0.10.1:5060";
const CORE_B: &str = "127.0.40.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("bench address")
}

fn lab(name: &str) -> config::Config {
    // The engine alone (`replay::lab`). No policy limit stands in the way of the load: the
    // bench measures state, not admission.
    let mut c = (*palisade::b2bua::replay::lab(name)).clone();
    c.sip.max_calls = usize::MAX;
    for p in c.realms.iter_mut().flat_map(|r| r.peers.iter_mut()) {
        (p.max_cps, p.max_rps) = (0, 0);
        p.max_calls = usize::MAX;
        p.max_transactions = usize::MAX;
        p.max_bytes_per_second = 0;
    }
    c
}

struct Wire {
    now: Instant,
    borders: [Border; 2],
    core: [VecDeque<Vec<u8>>; 2],
}

impl Wire {
    fn new() -> Wire {
        Wire {
            now: Instant::now(),
            borders: [
                Border::new(Arc::new(lab("operator-a.toml")), 1),
                Border::new(Arc::new(lab("operator-b.toml")), 2),
            ],
            core: [VecDeque::new(), VecDeque::new()],
        }
    }

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

    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        if let Some((bi, realm)) = self.listener(to) {
            let now = self.now;
            self.borders[bi].handle_input(
                now,
                Inbound {
                    realm,
                    transport: Transport::Udp,
                    remote: from,
                    bytes,
                    peer: None,
                },
            );
        } else if to == addr(CORE_A) {
            self.core[0].push_back(bytes.to_vec());
        } else if to == addr(CORE_B) {
            self.core[1].push_back(bytes.to_vec());
        }
    }

    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for bi in 0..2 {
                while self.borders[bi].poll_media().is_some() {}
                while self.borders[bi].poll_event().is_some() {}
                while let Some(t) = self.borders[bi].poll_transmit() {
                    moved = true;
                    let from = self.borders[bi].config().realms[t.flow.realm].listen[0].addr;
                    self.deliver(from, t.flow.remote, &t.bytes);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("wire did not settle");
    }

    fn send(&mut self, side: usize, text: &str) {
        let (from, to) = if side == 0 {
            (addr(CORE_A), addr("127.0.10.2:5060"))
        } else {
            (addr(CORE_B), addr("127.0.40.2:5060"))
        };
        self.deliver(from, to, text.as_bytes());
        self.settle();
    }

    /// The next non-100 message that reached a core. Calls are driven one step at a time and
    /// what the clock fires is cleared in `advance`, so it is this call's.
    fn take(&mut self, side: usize) -> Message {
        while let Some(bytes) = self.core[side].pop_front() {
            let m = parse_message(&bytes, &Limits::default()).expect("border output parses");
            if m.status() != Some(100) {
                return m;
            }
        }
        panic!("nothing reached core {side}");
    }

    /// Moves the virtual clock to `to`, firing the engines' timers on the way.
    fn advance(&mut self, to: Instant) {
        loop {
            let next = self
                .borders
                .iter()
                .filter_map(Border::poll_timeout)
                .min()
                .filter(|t| *t <= to);
            let Some(t) = next else { break };
            self.now = t.max(self.now);
            let now = self.now;
            for b in &mut self.borders {
                b.handle_timeout(now);
            }
            self.settle();
        }
        self.now = to.max(self.now);
        // What the timers sent the cores (retransmissions of answered requests) is not read.
        self.core = [VecDeque::new(), VecDeque::new()];
    }
}

const SDP_A: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.10.1\r\ns=-\r\nc=IN IP4 127.0.10.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
const SDP_B: &str = "v=0\r\no=cindy 1 1 IN IP4 127.0.40.1\r\ns=-\r\nc=IN IP4 127.0.40.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";

fn with_body(mut m: Message, contact: &str, body: &str) -> String {
    m.headers.push("Contact", contact);
    if !body.is_empty() {
        m.headers.push("Content-Type", "application/sdp");
        m.body = body.as_bytes().to_vec();
    }
    String::from_utf8(m.to_bytes()).expect("ascii")
}

fn in_dialog(method: &str, seq: u32, ok: &Message, call_id: &str, branch: &str) -> String {
    let target = ok
        .headers
        .get("Contact")
        .unwrap_or("")
        .trim_matches(['<', '>']);
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.10.1:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@operator-a.example>;tag=alicetag\r\nTo: {}\r\n\
         Call-ID: {call_id}\r\nCSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n",
        ok.headers.get("To").unwrap_or("")
    )
}

/// A call up: its Call-ID at A's core and the 200 as A's core saw it (for the BYE).
struct Up {
    n: u64,
    call_id: String,
    ok_a: Message,
}

/// INVITE with SDP through both engines, 200 with SDP back, ACK through.
fn set_up(w: &mut Wire, n: u64) -> Up {
    let call_id = format!("mem-{n}@127.0.10.1");
    // An INVITE as an IMS core sends it: the headers a border sees on every call.
    let invite = format!(
        "INVITE sip:cindy@operator-b.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bKb{n}\r\n\
         Via: SIP/2.0/UDP pcscf.operator-a-core.internal;branch=z9hG4bKinner{n}\r\n\
         Record-Route: <sip:scscf.operator-a-core.internal;lr>\r\nMax-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@operator-a.example>;tag=alicetag\r\n\
         To: <sip:cindy@operator-b.example>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:alice@127.0.10.1:5060>\r\n\
         P-Asserted-Identity: <sip:alice@operator-a.example>\r\n\
         P-Charging-Vector: icid-value=abc{n};orig-ioi=operator-a.example\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, UPDATE, PRACK, INFO, REFER, NOTIFY\r\n\
         Supported: timer\r\nSession-Expires: 1800\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP_A}",
        SDP_A.len()
    );
    w.send(0, &invite);
    let inv_b = w.take(1);
    let ok = make_response(&inv_b, 200, Some("cindytag"));
    w.send(1, &with_body(ok, "<sip:cindy@127.0.40.1:5060>", SDP_B));
    let ok_a = w.take(0);
    assert_eq!(ok_a.status(), Some(200), "call {n} answered");
    w.send(
        0,
        &in_dialog("ACK", 1, &ok_a, &call_id, &format!("z9hG4bKa{n}")),
    );
    let _ack_b = w.take(1);
    Up { n, call_id, ok_a }
}

/// BYE from A's core through both engines, 200 back.
fn hang_up(w: &mut Wire, up: &Up) {
    let n = up.n;
    let bye = in_dialog("BYE", 2, &up.ok_a, &up.call_id, &format!("z9hG4bKy{n}"));
    w.send(0, &bye);
    let bye_b = w.take(1);
    let bye_ok = make_response(&bye_b, 200, None);
    w.send(1, &String::from_utf8(bye_ok.to_bytes()).expect("ascii"));
    assert_eq!(w.take(0).status(), Some(200), "call {n} hung up");
}

/// Bytes the allocator has handed out and not had back (glibc).
fn malloc_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let mi = unsafe { libc::mallinfo2() };
    mi.uordblks + mi.hblkhd
}

fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// What both engines hold, and what they hold of each kind.
struct Held {
    a: HeldBytes,
    b: HeldBytes,
    /// (sessions in the table, transactions) per engine.
    counts: [(usize, usize); 2],
    active: [usize; 2],
    malloc: usize,
    rss: usize,
}

fn held(w: &Wire) -> Held {
    let counts = [0, 1].map(|i| {
        let (sessions, _, _, tx) = w.borders[i].held_state();
        (sessions, tx)
    });
    Held {
        a: w.borders[0].held_bytes(),
        b: w.borders[1].held_bytes(),
        counts,
        active: [0, 1].map(|i| w.borders[i].active_sessions()),
        malloc: malloc_in_use(),
        rss: rss(),
    }
}

fn kib(b: f64) -> String {
    format!("{:.2} KiB", b / 1024.0)
}

fn per(total: usize, n: usize) -> f64 {
    total as f64 / n.max(1) as f64
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CALLS calls up at once, then ended, then lingered out.
fn held_run(calls: u64) {
    let mut w = Wire::new();
    let t1 = w.borders[0].config().sip.t1;
    let idle = held(&w);
    let ups: Vec<Up> = (0..calls).map(|n| set_up(&mut w, n)).collect();
    // Past 64·T1 the INVITE transactions (and the ACK kept for their 2xx) are gone: what a
    // long call holds for as long as it lasts.
    let to = w.now + t1 * 64 + Duration::from_secs(1);
    w.advance(to);
    let up = held(&w);
    let n = calls as usize;
    println!("held: {calls} calls answered and up, after the 64·T1 the INVITE transactions linger");
    for (name, h, i) in [("A", &up.a, 0), ("B", &up.b, 1)] {
        println!(
            "  engine {name}: {} per call in flight (sessions {}, tables {}, transactions {}), {} calls",
            kib(per(h.total(), n)),
            kib(per(h.sessions, n)),
            kib(per(h.index, n)),
            kib(per(h.transactions, n)),
            up.active[i]
        );
    }
    println!(
        "  allocator: {} per call in flight per engine (bytes in use, both engines / 2 / calls); RSS grew {}",
        kib(per(up.malloc.saturating_sub(idle.malloc), 2 * n)),
        kib(per(up.rss.saturating_sub(idle.rss), 2 * n)),
    );
    for up in &ups {
        hang_up(&mut w, up);
    }
    let ended = held(&w);
    for (name, h, i) in [("A", &ended.a, 0), ("B", &ended.b, 1)] {
        let (sessions, tx) = ended.counts[i];
        println!(
            "  engine {name}, all hung up, lingering: {} sessions at {} each, {tx} kept transactions at {} each ({} with their table slots)",
            sessions,
            kib(per(h.sessions, sessions)),
            kib(per(h.transactions, tx)),
            kib(per(h.transactions + h.index, tx + sessions)),
        );
    }
    let to = w.now + t1 * 64 + Duration::from_secs(1);
    w.advance(to);
    let after = held(&w);
    for (name, h0, h, i) in [("A", &idle.a, &after.a, 0), ("B", &idle.b, &after.b, 1)] {
        println!(
            "  engine {name}, lingered out: held {} B (idle {} B), held state {:?}",
            h.total(),
            h0.total(),
            w.borders[i].held_state()
        );
    }
    println!(
        "  allocator after: {} in use above idle (both engines and the bench)",
        kib(after.malloc.saturating_sub(idle.malloc) as f64)
    );
}

/// RATE calls/s of HOLD_MS each for SECONDS of virtual time.
fn steady_run(rate: u64, hold: Duration, seconds: u64) {
    let mut w = Wire::new();
    let idle = held(&w);
    let step = Duration::from_millis(10);
    let per_step = rate as f64 * step.as_secs_f64();
    let start = w.now;
    let mut due: VecDeque<(Instant, Up)> = VecDeque::new();
    let mut started = 0u64;
    let mut owed = 0f64;
    let wall = Instant::now();
    while w.now < start + Duration::from_secs(seconds) {
        owed += per_step;
        while owed >= 1.0 {
            owed -= 1.0;
            let up = set_up(&mut w, started);
            started += 1;
            due.push_back((w.now + hold, up));
        }
        while due.front().is_some_and(|(at, _)| *at <= w.now) {
            let (_, up) = due.pop_front().expect("checked");
            hang_up(&mut w, &up);
        }
        let to = w.now + step;
        w.advance(to);
    }
    let h = held(&w);
    let in_flight = h.active[0];
    println!(
        "steady: {rate} calls/s of {} ms for {seconds} s virtual ({started} calls, {:.1} s wall), {in_flight} calls in flight at the end",
        hold.as_millis(),
        wall.elapsed().as_secs_f64()
    );
    for (name, hb, i) in [("A", &h.a, 0), ("B", &h.b, 1)] {
        let (sessions, tx) = h.counts[i];
        println!(
            "  engine {name}: {} per call in flight ({} held: sessions {} of which {} ended and lingering, {tx} transactions)",
            kib(per(hb.total(), in_flight)),
            kib(hb.total() as f64),
            sessions,
            sessions - h.active[i],
        );
    }
    println!(
        "  allocator: {} per call in flight per engine ({} in use above idle, both engines); RSS {}",
        kib(per(h.malloc.saturating_sub(idle.malloc), 2 * in_flight)),
        kib(h.malloc.saturating_sub(idle.malloc) as f64),
        kib(h.rss as f64)
    );
}

fn main() {
    let calls = env_num("CALLS", 2000).clamp(1, 4000);
    held_run(calls);
    let rate = env_num("RATE", 2500).max(1);
    let hold = Duration::from_millis(env_num("HOLD_MS", 1000));
    let seconds = env_num("SECONDS", 40).max(1);
    steady_run(rate, hold, seconds);
}
