//! Each usage of a session keeps to what it is: a subscription's dialog carries no call (an
//! INVITE inside it is refused, it ends with its NOTIFY), and a REFER's implicit subscription
//! names the REFER by the CSeq it had on each leg, also for a REFER outside any dialog.

use super::*;

fn method(m: &Message) -> &str {
    m.method().map(|m| m.as_str()).unwrap_or("")
}

fn from_a(call_id: &str, method: &str, seq: u32, extra: &str) -> String {
    request_from_a(
        call_id,
        &format!("z9hG4bK{method}{seq}"),
        method,
        seq,
        extra,
    )
}

/// A request from B's core in the dialog that `req` (received at B's core) created, with the
/// core's tag `tag` on its side.
fn from_b_in(req: &Message, tag: &str, method: &str, seq: u32, extra: &str) -> String {
    in_dialog(method, seq, false, req, &format!("z9hG4bKb{method}{seq}"))
        .replacen(
            &format!("From: {}", h(req, "To")),
            &format!("From: {};tag={tag}", h(req, "To")),
            1,
        )
        .replace("Content-Length: 0", &format!("{extra}Content-Length: 0"))
}

#[test]
fn an_invite_inside_a_subscription_dialog_is_refused_and_the_notify_ends_it() {
    let mut sim = Sim::new();
    let sub = from_a(
        "usage-sub@127.0.10.1",
        "SUBSCRIBE",
        1,
        "Event: conference\nExpires: 600\n",
    );
    sim.send_from_core(0, &sub);
    let sub_b = sim.take(1);
    assert_eq!(method(&sub_b), "SUBSCRIBE");
    sim.send_from_core(
        1,
        &answer(&sub_b, 200, "ntag", "sip:conf@127.0.40.1:5060", ""),
    );
    assert_eq!(sim.take(0).status(), Some(200));

    // The notifier tries to start a call in the subscription's dialog: there is no call to
    // anchor media for, so it is refused where it came in, and nothing crosses.
    let sdp =
        "v=0\no=c 1 1 IN IP4 127.0.40.1\ns=-\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
    let invite = from_b_in(
        &sub_b,
        "ntag",
        "INVITE",
        1,
        "Contact: <sip:conf@127.0.40.1:5060>\n",
    )
    .replace("Content-Length: 0\n\n", &sdp_with(sdp));
    sim.send_from_core(1, &invite);
    let refused = sim.take(1);
    assert_eq!(refused.status(), Some(403), "{refused:?}");
    assert!(sim.quiet(0), "nothing reached A's core");
    for b in &sim.borders {
        assert_eq!(b.active_sessions(), 1, "the subscription lives on");
    }

    // The subscription still works, and its terminating NOTIFY ends it on both borders.
    let state = "Event: conference\nSubscription-State: terminated;reason=timeout\n\
                 Contact: <sip:conf@127.0.40.1:5060>\n";
    sim.send_from_core(1, &from_b_in(&sub_b, "ntag", "NOTIFY", 2, state));
    let notify_a = sim.take(0);
    assert_eq!(method(&notify_a), "NOTIFY");
    sim.send_from_core(0, &answer(&notify_a, 200, "", "", ""));
    assert_eq!(sim.take(1).status(), Some(200));
    sim.advance(Duration::from_secs(64));
    for b in &sim.borders {
        assert_eq!(b.active_sessions(), 0);
        assert_eq!(b.held_state(), (0, 0, 0, 0));
    }
    assert_no_leak(&sim, SECRETS);
}

#[test]
fn the_notify_of_an_out_of_dialog_refer_names_the_refer_as_each_side_numbered_it() {
    let mut sim = Sim::new();
    let refer = from_a(
        "usage-refer@127.0.10.1",
        "REFER",
        7,
        "Refer-To: <sip:bob@operator-b.example>\nReferred-By: <sip:alice@operator-a.example>\n",
    );
    sim.send_from_core(0, &refer);
    let refer_b = sim.take(1);
    assert_eq!(method(&refer_b), "REFER");
    let b_seq = h(&refer_b, "CSeq").split(' ').next().unwrap().to_string();
    assert_ne!(b_seq, "7", "each leg numbers its own requests");
    sim.send_from_core(
        1,
        &answer(&refer_b, 202, "rtag", "sip:b@127.0.40.1:5060", ""),
    );
    assert_eq!(sim.take(0).status(), Some(202));

    let state = format!(
        "Event: refer;id={b_seq}\nSubscription-State: active;expires=60\n\
         Contact: <sip:b@127.0.40.1:5060>\n"
    );
    sim.send_from_core(1, &from_b_in(&refer_b, "rtag", "NOTIFY", 1, &state));
    let notify_a = sim.take(0);
    assert_eq!(method(&notify_a), "NOTIFY");
    assert_eq!(
        h(&notify_a, "Event"),
        "refer;id=7",
        "A's core sees the CSeq it used"
    );
    assert_no_leak(&sim, SECRETS);
}
