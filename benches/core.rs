//! The core alone, no sockets: full calls (INVITE with SDP, 200, ACK, BYE, 200) from operator A's
//! core through Palisade A and Palisade B to operator B's core, the two engines wired back to back
//! in memory with a virtual clock (the lab topology of `policies/lab/`). Reports calls per second
//! of wall time; compare two commits by running it on each in the same session.
//! `cargo bench --bench core`; CALLS (default 20000) and REPEATS (default 3, best kept) tune it.
//!
//! Sharding: with SHARDS (default `1 2`) the same total of calls runs on each shard count in
//! turn, one thread per shard, each thread driving shard `i` of both borders (their shares of the
//! configuration, `Border::sharded`). Every message delivered is checked to steer
//! (`sip::steer`) to the shard it is given to, as the service's transports would steer it, so the
//! threads share nothing: the ratio of calls/s between counts is what sharding buys.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade::b2bua::{make_response, Border, Inbound, Shard};
use palisade::config::{self, Transport};
use palisade::routing::StaticRouter;
use palisade::sip::{parse_message, steer, Limits, Message};

const CORE_A: &str = "127.0.10.1:5060";
const CORE_B: &str = "127.0.40.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("bench address")
}

use palisade::b2bua::replay::lab;

struct Wire {
    /// The shard of both borders this wire drives, and the number of shards.
    shard: Shard,
    now: Instant,
    borders: [Border; 2],
    core: [VecDeque<Vec<u8>>; 2],
}

impl Wire {
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
            assert_eq!(
                steer::shard_of(bytes, self.shard.count),
                self.shard.index,
                "a message reached a shard its Call-ID does not steer to"
            );
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

    /// The next non-100 message that reached a core.
    fn take(&mut self, side: usize) -> Message {
        while let Some(bytes) = self.core[side].pop_front() {
            let m = parse_message(&bytes, &Limits::default()).expect("border output parses");
            if m.status() != Some(100) {
                return m;
            }
        }
        panic!("nothing reached core {side}");
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

fn one_call(w: &mut Wire, n: u64) {
    // A's core picks Call-IDs at random; this thread takes the ones that steer to its shard.
    let mut k = n;
    let call_id = loop {
        let c = format!("bench-{k}@127.0.10.1");
        if steer::shard_of_call_id(c.as_bytes(), w.shard.count) == w.shard.index {
            break c;
        }
        k += 1 << 40;
    };
    let invite = format!(
        "INVITE sip:cindy@operator-b.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bKb{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@operator-a.example>;tag=alicetag\r\nTo: <sip:cindy@operator-b.example>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.10.1:5060>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP_A}",
        SDP_A.len()
    );
    w.send(0, &invite);
    let inv_b = w.take(1);
    let ok = make_response(&inv_b, 200, Some("cindytag"));
    w.send(1, &with_body(ok, "<sip:cindy@127.0.40.1:5060>", SDP_B));
    let ok_a = w.take(0);
    assert_eq!(ok_a.status(), Some(200));
    w.send(
        0,
        &in_dialog("ACK", 1, &ok_a, &call_id, &format!("z9hG4bKa{n}")),
    );
    let _ack_b = w.take(1);
    w.send(
        0,
        &in_dialog("BYE", 2, &ok_a, &call_id, &format!("z9hG4bKy{n}")),
    );
    let bye_b = w.take(1);
    let bye_ok = make_response(&bye_b, 200, None);
    w.send(1, &String::from_utf8(bye_ok.to_bytes()).expect("ascii"));
    assert_eq!(w.take(0).status(), Some(200));
    // Virtual time moves on so transactions and ended sessions are reaped as in service.
    w.now += Duration::from_millis(5);
    for b in &mut w.borders {
        b.handle_timeout(w.now);
    }
    w.settle();
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `calls` full calls over `shards` threads; calls/s of wall time.
fn run(calls: u64, shards: usize) -> f64 {
    // The bench measures the engine, not a policy: the virtual clock runs 5 ms a call on each
    // thread, so the lab's per-partner call rates would be met once split among shards.
    let unlimited = |name: &str| {
        let mut c = (*lab(name)).clone();
        for p in c.realms.iter_mut().flat_map(|r| r.peers.iter_mut()) {
            (p.max_cps, p.max_rps) = (0, 0);
        }
        Arc::new(c)
    };
    let (cfg_a, cfg_b) = (unlimited("operator-a.toml"), unlimited("operator-b.toml"));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for index in 0..shards {
            let (cfg_a, cfg_b) = (cfg_a.clone(), cfg_b.clone());
            scope.spawn(move || {
                let shard = Shard {
                    index,
                    count: shards,
                };
                let engine = |cfg: &config::Config, seed: u64| {
                    let share = Arc::new(cfg.shard(index, shards));
                    Border::sharded(share, seed, Box::new(StaticRouter), shard)
                };
                let mut w = Wire {
                    shard,
                    now: Instant::now(),
                    borders: [
                        engine(&cfg_a, 1 + index as u64),
                        engine(&cfg_b, 100 + index as u64),
                    ],
                    core: [VecDeque::new(), VecDeque::new()],
                };
                let mine =
                    calls / shards as u64 + u64::from((index as u64) < calls % shards as u64);
                for n in 0..mine {
                    one_call(&mut w, n * shards as u64 + index as u64);
                }
                assert_eq!(w.borders[0].active_sessions(), 0);
            });
        }
    });
    calls as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let calls = env_num("CALLS", 20_000).max(1);
    let repeats = env_num("REPEATS", 3).clamp(1, 10);
    let counts: Vec<usize> = std::env::var("SHARDS")
        .unwrap_or_else(|_| "1 2".into())
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .filter(|&n| (1..=64).contains(&n))
        .collect();
    let mut first = None;
    for shards in counts {
        let best = (0..repeats)
            .map(|_| run(calls, shards))
            .fold(0f64, f64::max);
        let ratio = first.map_or(1.0, |f: f64| best / f);
        first.get_or_insert(best);
        println!(
            "core bench: {calls} full calls through two engines, {shards} shard(s), best of \
             {repeats}: {best:.0} calls/s (x{ratio:.2} of the first count)"
        );
    }
}
