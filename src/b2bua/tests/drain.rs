//! Drain before a stop: a draining border refuses new calls with 503 + Retry-After while the
//! call in progress goes on; `hang_up_all` then sends BYE with a Reason on both legs of the
//! answered call and 503 + CANCEL on the one still ringing, and everything is freed.

use std::time::Duration;

use super::*;
use crate::b2bua::Event;

fn answered_call(sim: &mut Sim, call_id: &str, branch: &str) -> (Message, Message) {
    sim.send_from_core(0, &invite_from_a(call_id, branch));
    let inv = sim.take(1);
    let contact = "sip:cindy@127.0.40.1:5060";
    sim.send_from_core(1, &answer(&inv, 200, "cindytag", contact, ""));
    let ok = sim.take(0);
    assert_eq!(ok.status(), Some(200));
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, &format!("{branch}ack")));
    let ack_b = sim.take(1);
    (ok, ack_b)
}

#[test]
fn draining_refuses_new_calls_and_hang_up_all_ends_the_rest() {
    let mut sim = Sim::new();
    let (ok, ack_b) = answered_call(&mut sim, "dr1@127.0.10.1", "z9hG4bKalicedr1");
    // A second call, ringing at B when the drain starts.
    sim.send_from_core(0, &invite_from_a("dr2@127.0.10.1", "z9hG4bKalicedr2"));
    let inv2 = sim.take(1);
    let ring = answer(&inv2, 180, "ctag2", "sip:cindy@127.0.40.1:5060", "");
    sim.send_from_core(1, &ring);
    assert_eq!(sim.take(0).status(), Some(180));

    sim.borders[0].begin_drain();
    assert!(sim.borders[0].is_draining());
    sim.send_from_core(0, &invite_from_a("dr3@127.0.10.1", "z9hG4bKalicedr3"));
    let refused = sim.take(0);
    assert_eq!(refused.status(), Some(503));
    assert_eq!(h(&refused, "Retry-After"), "30");
    assert!(sim.quiet(1), "nothing new reaches B while A drains");
    let events: Vec<Event> = std::iter::from_fn(|| sim.borders[0].poll_event()).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Rejected {
            reason: crate::b2bua::RejectReason::Draining,
            status: 503,
            ..
        }
    )));

    // The call in progress goes on: a re-INVITE from B still crosses.
    let reinvite = in_dialog("INVITE", 2, false, &ack_b, "z9hG4bKcindydr2");
    sim.send_from_core(1, &reinvite);
    let re_a = sim.take(0);
    assert_eq!(re_a.method().map(|m| m.as_str()), Some("INVITE"));
    sim.send_from_core(0, &answer(&re_a, 200, "", "sip:alice@127.0.10.1:5060", ""));
    assert_eq!(sim.take(1).status(), Some(200));
    sim.send_from_core(1, &in_dialog("ACK", 2, false, &ack_b, "z9hG4bKcindydr2ack"));
    let _ = sim.take(0);
    assert_eq!(sim.borders[0].active_sessions(), 2);

    // Time is up: A hangs up everything.
    let now = sim.now;
    sim.borders[0].hang_up_all(now);
    sim.settle();
    let mut seen_bye_a = None;
    let mut seen_503 = false;
    for _ in 0..4 {
        if sim.core[0].is_empty() {
            break;
        }
        let m = sim.take(0);
        match (m.method().map(|m| m.as_str().to_string()), m.status()) {
            (Some(meth), _) if meth == "BYE" => seen_bye_a = Some(m),
            (_, Some(503)) => seen_503 = true,
            _ => {}
        }
    }
    let bye_a = seen_bye_a.expect("A's core got a BYE");
    assert_eq!(h(&bye_a, "Call-ID"), h(&ok, "Call-ID"));
    assert_eq!(
        h(&bye_a, "Reason"),
        "SIP;cause=503;text=\"Border shutting down\""
    );
    assert!(seen_503, "the ringing call's caller got 503");
    assert_eq!(sim.borders[0].active_sessions(), 0);
    assert!(sim.borders[0].hangups_outstanding() > 0);
    // B's core sees the BYE of the answered call (relayed by B) and the CANCEL of the other.
    let mut bye_b = None;
    let mut cancel_b = None;
    for _ in 0..4 {
        if sim.core[1].is_empty() {
            break;
        }
        let m = sim.take(1);
        match m.method().map(|m| m.as_str().to_string()).as_deref() {
            Some("BYE") => bye_b = Some(m),
            Some("CANCEL") => cancel_b = Some(m),
            _ => {}
        }
    }
    let bye_b = bye_b.expect("B's core got a BYE");
    let cancel_b = cancel_b.expect("B's core got a CANCEL");
    sim.send_from_core(0, &answer(&bye_a, 200, "", "", ""));
    sim.send_from_core(1, &answer(&bye_b, 200, "", "", ""));
    sim.send_from_core(1, &answer(&cancel_b, 200, "", "", ""));
    sim.send_from_core(1, &answer(&inv2, 487, "ctag2", "", ""));
    assert_eq!(sim.borders[0].hangups_outstanding(), 0);
    sim.advance(Duration::from_secs(64));
    assert_eq!(sim.borders[0].held_state(), (0, 0, 0, 0));
    assert_eq!(sim.borders[1].active_sessions(), 0);
}
