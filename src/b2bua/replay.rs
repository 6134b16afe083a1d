//! The engine fuzz harness as a library function: two engines wired back to back (the lab's
//! operators A and B, interconnect as plain UDP), fed a byte string decoded into messages from
//! either core or across the interconnect and clock ticks, with the invariants checked.
//!
//! It lives here, not in `fuzz/`, so that a finding saved under `fuzz/regressions/` is replayed
//! by an ordinary `cargo test --lib` (the fuzz target needs nightly and cargo-fuzz; the
//! regression must not). `fuzz/fuzz_targets/engine.rs` only calls [`run`].
//!
//! Invariants: no Via naming a border's home-side address crosses the interconnect unless it is
//! the peer's own (the border builds its own Via on each leg, whatever arrived; a response
//! carries the Vias of the request it answers, RFC 3261 §8.2.6.2, so a Via the peer itself sent
//! comes back to it and reveals nothing); and after the input, a quiet time longer than every
//! timer frees every session, dialog and transaction (`held_state` all zero). A panic inside the
//! engine is a finding too (it propagates).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Border, Inbound};
use crate::config::{self, Transport};

const CORE: [&str; 2] = ["127.0.10.1:5060", "127.0.40.1:5060"];
const BORDER_IC: [&str; 2] = ["127.0.20.2:5060", "127.0.30.2:5060"];
/// The borders' home-side addresses: never in a Via either border puts on the interconnect.
const HOME_SIDE: [&str; 2] = ["127.0.10.2", "127.0.40.2"];

/// At most this many records of the input are used (keeps one run short).
const MAX_RECORDS: usize = 32;

/// A lab configuration (`policies/lab/NAME`) for an engine alone, without transports: the
/// interconnect as plain UDP. The one loader of this harness, the engine's unit tests and the
/// in-memory benches.
pub fn lab(name: &str) -> Arc<config::Config> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies/lab")
        .join(name);
    Arc::new(config::load(&path).expect("lab config loads").plain_udp())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("harness address")
}

/// One record of the fuzz input, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A datagram from core A into border A's home realm.
    FromCoreA(Vec<u8>),
    /// A datagram from core B into border B's home realm.
    FromCoreB(Vec<u8>),
    /// A datagram into border B's interconnect realm, as if border A had sent it.
    IntoBFromA(Vec<u8>),
    /// The clock moves on by this much (timers fire on the way).
    Advance(Duration),
}

/// Decodes the input: records of an op byte, a 2-byte big-endian length and that many message
/// bytes (a length past the end takes what is left); at most [`MAX_RECORDS`] records.
pub fn decode(data: &[u8]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 && steps.len() < MAX_RECORDS {
        let op = rest[0];
        let len = (u16::from_be_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let msg = rest[3..3 + len].to_vec();
        rest = &rest[3 + len..];
        steps.push(match op % 4 {
            0 => Step::FromCoreA(msg),
            1 => Step::FromCoreB(msg),
            2 => Step::IntoBFromA(msg),
            _ => Step::Advance(Duration::from_millis(u64::from(op) * 50)),
        });
    }
    steps
}

/// An invariant the run broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A border sent this Via line (naming a home-side address, and not one the peer had sent
    /// it) toward the peer; `message` is the whole message it was in.
    HomeViaCrossed {
        border: usize,
        line: String,
        message: String,
    },
    /// State left after the quiet time: (border, `held_state`).
    StateLeft {
        border: usize,
        held: (usize, usize, usize, usize),
    },
}

struct Wire {
    now: Instant,
    borders: [Border; 2],
    /// Per border, every datagram it received over the interconnect (lower case): a Via in a
    /// response that is found in one of them is the peer's own, echoed.
    heard: [Vec<String>; 2],
    violations: Vec<Violation>,
}

impl Wire {
    fn input(&mut self, border: usize, realm: usize, from: SocketAddr, bytes: &[u8]) {
        if realm == 1 {
            self.heard[border].push(String::from_utf8_lossy(bytes).to_ascii_lowercase());
        }
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

    /// Delivers what crosses the interconnect until quiet (bounded); what goes to a core is
    /// dropped (the cores of this harness never answer on their own).
    fn settle(&mut self) {
        for _ in 0..64 {
            let mut moved = false;
            for (b, ic) in BORDER_IC.iter().enumerate() {
                while self.borders[b].poll_media().is_some() {}
                while self.borders[b].poll_event().is_some() {}
                while self.borders[b].poll_lookup().is_some() {}
                while let Some(t) = self.borders[b].poll_transmit() {
                    if t.flow.realm != 1 {
                        continue;
                    }
                    let text = String::from_utf8_lossy(&t.bytes);
                    let response = text.starts_with("SIP/");
                    for line in text.lines() {
                        let l = line.to_ascii_lowercase();
                        let Some(value) = l.strip_prefix("via:").or(l.strip_prefix("v:")) else {
                            continue;
                        };
                        let value = value.trim();
                        let echoed = response && self.heard[b].iter().any(|h| h.contains(value));
                        if HOME_SIDE.iter().any(|h| value.contains(h)) && !echoed {
                            self.violations.push(Violation::HomeViaCrossed {
                                border: b,
                                line: line.to_string(),
                                message: text.to_string(),
                            });
                        }
                    }
                    let from = addr(ic);
                    self.input(1 - b, 1, from, &t.bytes);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        for _ in 0..100_000 {
            let next = self.borders.iter().filter_map(|b| b.poll_timeout()).min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    let now = self.now;
                    for b in &mut self.borders {
                        b.handle_timeout(now);
                    }
                    self.settle();
                }
                _ => break,
            }
        }
        self.now = end;
    }
}

/// Runs the steps through two fresh lab borders, then a quiet time longer than every timer
/// (dialog idle 2 h, Timer C, lingering, transactions); returns every invariant broken.
/// `start` is the simulated clock's origin (this module reads no clock).
pub fn run_steps(steps: &[Step], start: Instant) -> Vec<Violation> {
    let mut w = Wire {
        now: start,
        borders: [
            Border::new(lab("operator-a.toml"), 1),
            Border::new(lab("operator-b.toml"), 2),
        ],
        heard: [Vec::new(), Vec::new()],
        violations: Vec::new(),
    };
    for step in steps {
        match step {
            Step::FromCoreA(m) => w.input(0, 0, addr(CORE[0]), m),
            Step::FromCoreB(m) => w.input(1, 0, addr(CORE[1]), m),
            Step::IntoBFromA(m) => w.input(1, 1, addr(BORDER_IC[0]), m),
            Step::Advance(by) => w.advance(*by),
        }
        w.settle();
    }
    w.advance(Duration::from_secs(3 * 3600));
    for (border, b) in w.borders.iter().enumerate() {
        let held = b.held_state();
        if held != (0, 0, 0, 0) {
            w.violations.push(Violation::StateLeft { border, held });
        }
    }
    w.violations
}

/// [`decode`] then [`run_steps`]: what the fuzz target runs on every input, from `start`.
pub fn run(data: &[u8], start: Instant) -> Vec<Violation> {
    run_steps(&decode(data), start)
}
