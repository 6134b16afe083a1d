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
