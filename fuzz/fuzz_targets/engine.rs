//! Two engines wired back to back (the lab's operators A and B, interconnect as plain UDP), fed
//! an arbitrary sequence of messages from either core or across the interconnect, and clock
//! ticks. Invariants: no panic; no Via naming a border's home-side address ever crosses the
//! interconnect (the border builds its own Via on each leg, whatever arrived); and after the
//! input, a quiet time longer than every timer frees every session, dialog and transaction
//! (`held_state` all zero).
//!
//! `cargo +nightly fuzz run engine` (from `fuzz/`), seeds from `tests/corpus/` as for
//! `parse_message`; `benches/fuzz.sh` runs every target.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use palisade::b2bua::{Border, Inbound};
use palisade::config::{self, Transport};

fn lab(name: &str) -> Arc<config::Config> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies/lab")
        .join(name);
    Arc::new(config::load(&path).expect("lab config loads").plain_udp())
}

const CORE: [&str; 2] = ["127.0.10.1:5060", "127.0.40.1:5060"];
const BORDER_IC: [&str; 2] = ["127.0.20.2:5060", "127.0.30.2:5060"];
/// The borders' home-side addresses: never in a Via either border puts on the interconnect.
const HOME_SIDE: [&str; 2] = ["127.0.10.2", "127.0.40.2"];

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Wire {
    now: Instant,
    borders: [Border; 2],
}

impl Wire {
    fn input(&mut self, border: usize, realm: usize, from: SocketAddr, bytes: &[u8]) {
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
    /// checked and dropped (the cores of this harness never answer on their own).
    fn settle(&mut self) {
        for _ in 0..64 {
            let mut moved = false;
            for b in 0..2 {
                while let Some(_m) = self.borders[b].poll_media() {}
                while let Some(_e) = self.borders[b].poll_event() {}
                while let Some(_l) = self.borders[b].poll_lookup() {}
                while let Some(t) = self.borders[b].poll_transmit() {
                    if t.flow.realm == 1 {
                        let text = String::from_utf8_lossy(&t.bytes);
                        // The border's own Via and Contact toward the peer name its own
                        // interconnect address, never the home side's.
                        for line in text.lines() {
                            let l = line.to_ascii_lowercase();
                            if l.starts_with("via:") && HOME_SIDE.iter().any(|h| l.contains(h)) {
                                panic!("home-side Via crossed: {line}");
                            }
                        }
                        let from = addr(BORDER_IC[b]);
                        self.input(1 - b, 1, from, &t.bytes);
                        moved = true;
                    }
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

fuzz_target!(|data: &[u8]| {
    let mut w = Wire {
        now: Instant::now(),
        borders: [
            Border::new(lab("operator-a.toml"), 1),
            Border::new(lab("operator-b.toml"), 2),
        ],
    };
    // Records: op byte, then a 2-byte length and that many message bytes.
    let mut rest = data;
    let mut n = 0;
    while rest.len() >= 3 && n < 32 {
        n += 1;
        let op = rest[0];
        let len = (u16::from_be_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let msg = &rest[3..3 + len];
        rest = &rest[3 + len..];
        match op % 4 {
            0 => w.input(0, 0, addr(CORE[0]), msg),
            1 => w.input(1, 0, addr(CORE[1]), msg),
            2 => w.input(1, 1, addr(BORDER_IC[0]), msg),
            _ => w.advance(Duration::from_millis(u64::from(op) * 50)),
        }
        w.settle();
    }
    // Long enough for every timer: dialog idle (2 h), Timer C, lingering, transactions.
    w.advance(Duration::from_secs(3 * 3600));
    for b in &w.borders {
        assert_eq!(b.held_state(), (0, 0, 0, 0), "state left after a quiet time");
    }
});
