//! Rate limits per partner and load shedding: beyond a partner's new calls per second its
//! INVITEs get 503 + Retry-After at once (and a Rejected event naming it), the next second
//! they pass again; while the border is overloaded every new call is shed, and calls in
//! progress carry on.

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
