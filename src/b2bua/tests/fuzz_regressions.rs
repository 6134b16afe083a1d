//! Findings of the engine fuzz target (`fuzz/regressions/`), replayed through the same decoding
//! ([`crate::b2bua::replay`]) so each stays fixed without nightly or cargo-fuzz.

use super::{addr, Sim};
use crate::b2bua::replay::{self, Step};
use std::time::Instant;

const ENGINE_76CDEE1D: &[u8] = include_bytes!("../../../fuzz/regressions/engine-76cdee1d.bin");

#[test]
fn engine_76cdee1d_replays_clean() {
    let v = replay::run(ENGINE_76CDEE1D, Instant::now());
    assert!(v.is_empty(), "{v:#?}");
}

/// The finding: border B answered a datagram from the peer whose first line is a header field
/// (no start line at all: neither a request nor a response) with a 400 assembled from the
/// headers it happened to carry, fuzzer junk Vias included. Such a datagram is dropped now.
#[test]
fn engine_76cdee1d_datagram_without_start_line_is_dropped_unanswered() {
    let steps = replay::decode(ENGINE_76CDEE1D);
    assert_eq!(steps.len(), 2);
    let Step::IntoBFromA(garbage) = &steps[1] else {
        panic!(
            "record 2 goes into border B over the interconnect: {:?}",
            steps[1]
        );
    };
    assert!(garbage.starts_with(b"Accept: application/sdp\r\n"));
    let mut sim = Sim::new();
    // Record 1 (core A, a broken Request-Line) sends nothing across: the 400 that leaked was
    // border B's own answer to record 2, not something border A forwarded.
    let Step::FromCoreA(first) = &steps[0] else {
        panic!("record 1 comes from core A: {:?}", steps[0]);
    };
    sim.inject(0, 0, addr("127.0.10.1:5060"), first);
    sim.settle();
    assert!(sim.interconnect.is_empty());
    sim.inject(1, 1, addr("127.0.20.2:5060"), garbage);
    let sent = sim.borders[1].poll_transmit();
    assert!(
        sent.is_none(),
        "answered: {}",
        String::from_utf8_lossy(&sent.map(|t| t.bytes).unwrap_or_default())
    );
    assert_eq!(sim.borders[1].stats().dropped_malformed, 1);
    assert_eq!(sim.borders[1].stats().rejected_malformed, 0);
}

/// A broken request that does have a Request-Line is still answered with a 400 (RFC 3261
/// §21.4.1) carrying the peer's own Vias (§8.2.6.2), even one naming a home-side address: the
/// peer wrote it, so echoing it back reveals nothing, and the harness must not call it a leak.
#[test]
fn peer_via_echoed_in_a_400_is_not_a_leak() {
    let bad = "OPTIONS sip:127.0.30.2:5060 SIP/2.0\r\n\
               Via: SIP/2.0/UDP 127.0.20.2:5060;branch=z9hG4bKecho\r\n\
               Via: SIP/2.0/UDP 127.0.10.2:5060;branch=z9hG4bKhome\r\n\
               Max-Forwards: 70\r\nFrom: <sip:operator-a.example>;tag=e\r\n\
               To: <sip:operator-b.example>\r\nCall-ID: echo1\r\nCSeq: x OPTIONS\r\n\
               Content-Length: 0\r\n\r\n";
    let mut sim = Sim::new();
    sim.inject(1, 1, addr("127.0.20.2:5060"), bad.as_bytes());
    let t = sim.borders[1].poll_transmit().expect("answered");
    let text = String::from_utf8_lossy(&t.bytes);
    assert!(text.starts_with("SIP/2.0 400 "), "{text}");
    assert!(
        text.contains("127.0.10.2:5060;branch=z9hG4bKhome"),
        "{text}"
    );
    let v = replay::run_steps(&[Step::IntoBFromA(bad.as_bytes().to_vec())], Instant::now());
    assert!(v.is_empty(), "{v:#?}");
}
