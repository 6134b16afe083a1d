//! Memory per call: an answered call keeps a skeleton of its INVITE, not the INVITE; leg B's
//! ACK goes with its transaction; once calls end and linger out, the engines hold what they
//! held idle.

use super::*;

/// The one session an engine holds.
fn only_session(b: &Border) -> &super::super::session::Session {
    assert_eq!(b.sessions.len(), 1, "one call in flight");
    b.sessions.values().next().expect("one session")
}

#[test]
fn an_answered_call_holds_less_than_a_ringing_one_and_drops_leg_b_ack_with_its_transaction() {
    let mut sim = Sim::new();
    let idle = [0, 1].map(|i| sim.borders[i].held_bytes().total());
    sim.send_from_core(0, &invite_from_a("mem-1@127.0.10.1", "z9hG4bKmem1"));
    let inv = sim.take(1);
    let invite_body = only_session(&sim.borders[0]).initial.body.len();
    assert!(invite_body > 0, "the INVITE carries SDP");
    let ringing = [0, 1].map(|i| only_session(&sim.borders[i]).held_bytes());

    let contact = "sip:cindy@127.0.40.1:5060";
    let sdp = "v=0\no=cindy 1 1 IN IP4 127.0.40.1\ns=-\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
    sim.send_from_core(1, &answer(&inv, 200, "cindytag", contact, sdp));
    let ok = sim.take(0);
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKmem1ack"));
    let ack_b = sim.take(1);

    for (i, ringing) in ringing.into_iter().enumerate() {
        let sess = only_session(&sim.borders[i]);
        assert!(
            sess.initial.body.is_empty(),
            "border {i} keeps the INVITE's SDP"
        );
        assert!(
            sess.initial.headers.0.len() <= 6,
            "border {i} keeps {} headers of the INVITE",
            sess.initial.headers.0.len()
        );
        let settled = sess.held_bytes();
        // Leaving the early state drops the INVITE as sent on leg B as well as the received
        // one's body and most headers: well over the body's size.
        assert!(
            settled + invite_body < ringing,
            "border {i}: settled call holds {settled} B, ringing {ringing} B"
        );
    }
    // Border A sent the ACK on leg B (toward border B) for the 2xx: kept while a retransmitted
    // 2xx can find the INVITE's client transaction, dropped with it.
    let kept_ack = |b: &Border| only_session(b).usage.last_ack().is_some();
    assert!(kept_ack(&sim.borders[0]));
    let with_ack = only_session(&sim.borders[0]).held_bytes();
    sim.advance(sim.borders[0].config().sip.t1 * 64 + Duration::from_secs(1));
    assert!(
        !kept_ack(&sim.borders[0]),
        "leg B's ACK outlived its transaction"
    );
    assert!(only_session(&sim.borders[0]).held_bytes() < with_ack);
    assert_eq!(sim.borders[0].active_sessions(), 1, "the call is still up");

    // The call still works on what was kept: a BYE crosses and is answered.
    sim.send_from_core(1, &in_dialog("BYE", 1, false, &ack_b, "z9hG4bKmem1bye"));
    let bye_a = sim.take(0);
    assert_eq!(bye_a.method().map(|m| m.as_str()), Some("BYE"));
    sim.send_from_core(0, &answer(&bye_a, 200, "", "", ""));
    assert_eq!(sim.take(1).status(), Some(200));
    sim.advance(Duration::from_secs(64));
    for (b, idle) in sim.borders.iter().zip(idle) {
        assert_eq!(b.held_state(), (0, 0, 0, 0));
        assert_eq!(b.held_bytes().sessions, 0);
        assert_eq!(b.tx.held_bytes(), 0, "no message kept");
        assert!(
            b.held_bytes().total() >= idle,
            "tables keep what they grew to (see the soak test)"
        );
    }
}

#[test]
fn the_border_own_bye_of_a_settled_call_counts_down_the_caller_max_forwards() {
    // The trimmed INVITE keeps Max-Forwards: a teardown's BYE toward the caller is built from it.
    let mut sim = Sim::new();
    let (_ok_a, _ack_b) = answered_call(&mut sim, "mf", "cindymf");
    let now = sim.now;
    let sid = *sim.borders[0].sessions.keys().next().expect("one call");
    sim.borders[0].teardown(now, sid, super::super::Hangup::Shutdown);
    sim.settle();
    let bye = sim.take(0);
    assert_eq!(bye.method().map(|m| m.as_str()), Some("BYE"));
    assert_eq!(h(&bye, "Max-Forwards"), "68", "the INVITE's 69, less one");
}

/// Many calls at once, then all ended and lingered out: the engines hold no session, dialog or
/// transaction, and their tables are back to a small capacity (they were grown well past
/// `SHRINK_MIN_CAPACITY` on the way), not the peak's.
#[test]
fn after_a_burst_of_calls_the_engines_return_to_their_idle_size() {
    use crate::transaction::SHRINK_MIN_CAPACITY;
    // No policy limit in the way: the test is about state, not admission.
    let unlimited = |name: &str| {
        let mut cfg = (*lab(name)).clone();
        cfg.sip.max_calls = usize::MAX;
        for p in cfg.realms.iter_mut().flat_map(|r| r.peers.iter_mut()) {
            (p.max_cps, p.max_rps, p.max_bytes_per_second) = (0, 0, 0);
            (p.max_calls, p.max_transactions) = (usize::MAX, usize::MAX);
        }
        Arc::new(cfg)
    };
    let mut sim = Sim::new();
    sim.borders = [
        Border::new(unlimited("operator-a.toml"), 41),
        Border::new(unlimited("operator-b.toml"), 42),
    ];
    let idle = [0, 1].map(|i| sim.borders[i].held_bytes().total());
    let calls = SHRINK_MIN_CAPACITY * 2;
    let mut up = Vec::new();
    for n in 0..calls {
        let user = format!("soak{n}");
        up.push(answered_call(&mut sim, &user, &format!("cindy{n}")));
    }
    let peak = [0, 1].map(|i| sim.borders[i].held_bytes());
    assert!(sim.borders[0].sessions.capacity() >= calls);
    for (n, (_ok_a, ack_b)) in up.iter().enumerate() {
        let bye = in_dialog("BYE", 1, false, ack_b, &format!("z9hG4bKsoakbye{n}"));
        sim.send_from_core(1, &bye);
        let bye_a = sim.take(0);
        sim.send_from_core(0, &answer(&bye_a, 200, "", "", ""));
        assert_eq!(sim.take(1).status(), Some(200), "call {n} hung up");
    }
    sim.advance(Duration::from_secs(64));
    for (i, b) in sim.borders.iter().enumerate() {
        assert_eq!(b.held_state(), (0, 0, 0, 0), "border {i}");
        let held = b.held_bytes();
        assert_eq!(held.sessions, 0);
        assert_eq!(b.tx.held_bytes(), 0);
        // Tables under the shrink threshold are left as they are; nothing is at its peak.
        assert!(
            b.sessions.capacity() < SHRINK_MIN_CAPACITY,
            "border {i} sessions"
        );
        assert!(
            b.dialogs.capacity() < SHRINK_MIN_CAPACITY,
            "border {i} dialogs"
        );
        assert!(
            b.pending.capacity() < SHRINK_MIN_CAPACITY,
            "border {i} pending"
        );
        assert!(
            held.total() * 10 < peak[i].index + peak[i].transactions,
            "border {i} holds {} B idle after a peak of {} B in tables (idle at start {} B)",
            held.total(),
            peak[i].index + peak[i].transactions,
            idle[i]
        );
    }
}
