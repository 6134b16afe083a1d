//! Rate limits per partner and load shedding: beyond a partner's new calls per second its
//! INVITEs get 503 + Retry-After at once (and a Rejected event naming it), the next second
//! they pass again; beyond its concurrent transactions its new requests get 503 until one is
//! answered (CANCEL still passes); beyond its bytes per second what is over is dropped unread
//! and unanswered (UDP retransmissions recover it); while the border is overloaded every new
//! call is shed, and calls in progress carry on.

use super::*;
use crate::b2bua::{Event, RejectReason};

fn invite_from_b(n: usize) -> String {
    format!(
        "INVITE sip:alice@operator-a.example SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.40.1:5060;branch=z9hG4bKrate{n}\n\
         Max-Forwards: 70\n\
         From: <sip:cindy@operator-b.example>;tag=c{n}\n\
         To: <sip:alice@operator-a.example>\n\
         Call-ID: rate{n}@127.0.40.1\n\
         CSeq: 1 INVITE\n\
         Contact: <sip:cindy@127.0.40.1:5060>\n\
         Content-Length: 0\n\n"
    )
}

#[test]
fn a_partner_above_its_call_rate_gets_503_until_the_next_second() {
    let mut cfg = (*lab("operator-a.toml")).clone();
    cfg.realms[1].peers[0].max_cps = 2;
    let mut sim = Sim::new();
    sim.borders[0] = Border::new(Arc::new(cfg), 8);
    for n in 0..3 {
        sim.send_from_core(1, &invite_from_b(n));
    }
    // Two reach A's core, the third is refused at A's border and the refusal crosses back.
    assert_eq!(sim.take(0).method().map(|m| m.as_str()), Some("INVITE"));
    assert_eq!(sim.take(0).method().map(|m| m.as_str()), Some("INVITE"));
    assert!(sim.quiet(0));
    let refused = sim.take(1);
    assert_eq!(refused.status(), Some(503));
    let events: Vec<Event> = std::iter::from_fn(|| sim.borders[0].poll_event()).collect();
    assert!(events.iter().any(|e| matches!(e,
        Event::Rejected { reason: RejectReason::RateLimit, status: 503, from, .. }
            if from.peer.as_deref() == Some("operator-b"))));
    sim.advance(Duration::from_secs(1));
    sim.send_from_core(1, &invite_from_b(3));
    let inv = sim.take(0);
    assert_eq!(inv.method().map(|m| m.as_str()), Some("INVITE"));
}

#[test]
fn overload_sheds_new_calls_and_keeps_calls_in_progress() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("inprog@127.0.10.1", "z9hG4bKinprog"));
    let inv = sim.take(1);
    sim.send_from_core(1, &answer(&inv, 200, "ip", "sip:cindy@127.0.40.1:5060", ""));
    let ok = sim.take(0);
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKinprogack"));
    let _ = sim.take(1);

    sim.borders[0].set_overloaded(true);
    sim.send_from_core(0, &invite_from_a("shed@127.0.10.1", "z9hG4bKshed"));
    let shed = sim.take(0);
    assert_eq!(shed.status(), Some(503));
    assert!(shed.headers.get("Retry-After").is_some());
    assert!(sim.quiet(1), "nothing of the shed call crossed");

    sim.send_from_core(0, &in_dialog("BYE", 2, true, &ok, "z9hG4bKinprogbye"));
    let bye = sim.take(1);
    assert_eq!(bye.method().map(|m| m.as_str()), Some("BYE"));
    sim.send_from_core(1, &answer(&bye, 200, "", "", ""));
    assert_eq!(sim.take(0).status(), Some(200));
    sim.borders[0].set_overloaded(false);
    sim.send_from_core(0, &invite_from_a("after@127.0.10.1", "z9hG4bKafter"));
    assert_eq!(sim.take(1).method().map(|m| m.as_str()), Some("INVITE"));
}

fn cancel_from_b(n: usize) -> String {
    format!(
        "CANCEL sip:alice@operator-a.example SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.40.1:5060;branch=z9hG4bKrate{n}\n\
         Max-Forwards: 70\n\
         From: <sip:cindy@operator-b.example>;tag=c{n}\n\
         To: <sip:alice@operator-a.example>\n\
         Call-ID: rate{n}@127.0.40.1\n\
         CSeq: 1 CANCEL\n\
         Content-Length: 0\n\n"
    )
}

fn method(m: &Message) -> Option<&str> {
    m.method().map(|m| m.as_str())
}

#[test]
fn a_partner_beyond_its_concurrent_transactions_gets_503_until_one_is_answered() {
    let mut cfg = (*lab("operator-a.toml")).clone();
    cfg.realms[1].peers[0].max_transactions = 2;
    let mut sim = Sim::new();
    sim.borders[0] = Border::new(Arc::new(cfg), 8);
    for n in 0..3 {
        sim.send_from_core(1, &invite_from_b(n));
    }
    let first = sim.take(0);
    assert_eq!(method(&first), Some("INVITE"));
    let second = sim.take(0);
    assert_eq!(method(&second), Some("INVITE"));
    assert!(
        sim.quiet(0),
        "the third waits on nobody: it is refused at A's border"
    );
    assert_eq!(sim.take(1).status(), Some(503));
    let events: Vec<Event> = std::iter::from_fn(|| sim.borders[0].poll_event()).collect();
    assert!(events.iter().any(|e| matches!(e,
        Event::Rejected { reason: RejectReason::TransactionLimit, status: 503, from, .. }
            if from.peer.as_deref() == Some("operator-b"))));

    // One answered: room for exactly one more.
    sim.send_from_core(0, &answer(&first, 486, "busy", "", ""));
    assert_eq!(sim.take(1).status(), Some(486));
    assert_eq!(
        method(&sim.take(0)),
        Some("ACK"),
        "A's border acknowledges the 486"
    );
    sim.send_from_core(1, &invite_from_b(3));
    assert_eq!(method(&sim.take(0)), Some("INVITE"));
    sim.send_from_core(1, &invite_from_b(4));
    assert_eq!(sim.take(1).status(), Some(503));
    assert!(sim.quiet(0));

    // At its limit a CANCEL still passes (it ends a transaction, it does not add one); it
    // crosses to the core once the call rings.
    sim.send_from_core(
        0,
        &answer(&second, 180, "ring", "sip:alice@127.0.10.1:5060", ""),
    );
    assert_eq!(sim.take(1).status(), Some(180));
    sim.send_from_core(1, &cancel_from_b(1));
    assert_eq!(sim.take(1).status(), Some(200), "the CANCEL is answered");
    assert_eq!(method(&sim.take(0)), Some("CANCEL"));
}

#[test]
fn a_partner_over_its_byte_rate_is_dropped_unanswered_and_retransmissions_recover() {
    const RATE: usize = 2_000;
    let mut cfg = (*lab("operator-a.toml")).clone();
    cfg.realms[1].peers[0].max_bytes_per_second = RATE as u32;
    // The bucket holds at least one largest message: keep that at the rate for this test.
    cfg.sip.max_message_size = RATE;
    let mut sim = Sim::new();
    sim.borders[0] = Border::new(Arc::new(cfg), 8);
    let mut sizes = Vec::new();
    for n in 0..8 {
        sim.send_from_core(1, &invite_from_b(n));
        let sent = sim
            .interconnect
            .iter()
            .rev()
            .find(|b| b.starts_with(b"INVITE"));
        sizes.push(sent.expect("B's border relayed it").len());
    }
    // Every message from the partner counts; with the clock still, what fits in one
    // second's worth passes and the rest is dropped.
    let fits = sizes
        .iter()
        .scan(0, |sum, s| {
            *sum += s;
            Some(*sum)
        })
        .take_while(|sum| *sum <= RATE)
        .count();
    assert!((1..8).contains(&fits), "the test's sizes: {sizes:?}");
    for _ in 0..fits {
        assert_eq!(method(&sim.take(0)), Some("INVITE"));
    }
    assert!(sim.quiet(0));
    assert!(sim.quiet(1), "nothing answers what was dropped");
    assert_eq!(sim.borders[0].stats().dropped_byte_rate, (8 - fits) as u64);
    let events: Vec<Event> = std::iter::from_fn(|| sim.borders[0].poll_event()).collect();
    let dropped = events
        .iter()
        .filter(|e| {
            matches!(e, Event::Dropped { reason: crate::b2bua::DropReason::ByteRate, partner, .. }
                if partner.as_deref() == Some("operator-b"))
        })
        .count();
    assert_eq!(dropped, 8 - fits);

    // B's border retransmits (Timer A) and the refilled bucket lets them through.
    sim.advance(Duration::from_secs(2));
    let mut later = 0;
    while !sim.core[0].is_empty() {
        if method(&sim.take(0)) == Some("INVITE") {
            later += 1;
        }
    }
    assert!(
        later >= 1,
        "a retransmission passed once the bucket refilled"
    );
}
