//! A call written out mid-dialog and taken in by a fresh engine (what an HA standby does):
//! hold, resume and BYE from either side complete through the new engine, the relay ports are
//! re-opened, and everything is freed at the end.

use super::*;
use crate::b2bua::{CallSnapshot, MediaCommand, RestoreError, SnapshotError};

fn method(m: &Message) -> &str {
    m.method().map(|m| m.as_str()).unwrap_or("")
}

/// A call from A's core to B's core, answered and ACKed: (the 200 at A, the ACK at B).
fn established(sim: &mut Sim, call_id: &str) -> (Message, Message) {
    sim.send_from_core(0, &invite_from_a(call_id, "z9hG4bKsnapinv"));
    let inv = sim.take(1);
    sim.send_from_core(
        1,
        &answer(&inv, 200, "snaptag", "sip:cindy@127.0.40.1:5060", ""),
    );
    let ok = sim.take(0);
    assert_eq!(ok.status(), Some(200));
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKsnapack"));
    let ack = sim.take(1);
    assert_eq!(method(&ack), "ACK");
    (ok, ack)
}

/// Replaces one border by a fresh engine that takes in the call, via its serialized form.
fn move_call(sim: &mut Sim, border: usize, call_id: &str) {
    let now = sim.now;
    let snap = sim.borders[border].snapshot(now, call_id).expect("settled");
    assert_eq!(sim.borders[border].snapshot_all(now), vec![snap.clone()]);
    let text = serde_json::to_string(&snap).expect("serializes");
    let back: CallSnapshot = serde_json::from_str(&text).expect("parses");
    assert_eq!(back, snap);
    let name = ["operator-a.toml", "operator-b.toml"][border];
    let mut fresh = Border::new(lab(name), 99);
    fresh.restore(now, &back).expect("restores");
    assert_eq!(
        fresh.restore(now, &back),
        Err(RestoreError::DialogExists(back.legs[0].call_id.clone())),
        "a call is taken in once"
    );
    let opened = std::iter::from_fn(|| fresh.poll_media())
        .filter(|c| matches!(c, MediaCommand::Open(_)))
        .count();
    assert_eq!(opened, 2 * snap.media.len(), "RTP and RTCP of each stream");
    assert!(!snap.media.is_empty());
    sim.borders[border] = fresh;
}

fn reinvite(dir: &str, seq: u32, from_core_a: bool, dialog: &Message) -> String {
    let (ip, port) = if from_core_a {
        ("127.0.10.1", 4000)
    } else {
        ("127.0.40.1", 5000)
    };
    let sdp = format!(
        "v=0\no=u 1 {seq} IN IP4 {ip}\ns=-\nc=IN IP4 {ip}\nt=0 0\nm=audio {port} RTP/AVP 0\na={dir}\n"
    );
    in_dialog(
        "INVITE",
        seq,
        from_core_a,
        dialog,
        &format!("z9hG4bKsre{seq}{from_core_a}"),
    )
    .replace(
        "Content-Length: 0\n\n",
        &format!("Contact: <sip:u@{ip}:5060>\n{}", sdp_with(&sdp)),
    )
}

/// A re-INVITE from one core crosses to the other, is answered and ACKed.
fn hold_or_resume(sim: &mut Sim, dir: &str, seq: u32, from_a: bool, dialog: &Message) {
    let (from, to) = if from_a { (0, 1) } else { (1, 0) };
    sim.send_from_core(from, &reinvite(dir, seq, from_a, dialog));
    let re = sim.take(to);
    assert_eq!(method(&re), "INVITE");
    assert!(String::from_utf8_lossy(&re.body).contains(dir));
    let contact = if from_a {
        "sip:cindy@127.0.40.1:5060"
    } else {
        "sip:alice@127.0.10.1:5060"
    };
    sim.send_from_core(to, &answer(&re, 200, "", contact, ""));
    let ok = sim.take(from);
    assert_eq!(ok.status(), Some(200), "{dir} answered");
    sim.send_from_core(
        from,
        &in_dialog("ACK", seq, from_a, dialog, &format!("z9hG4bKsack{seq}")),
    );
    assert_eq!(method(&sim.take(to)), "ACK");
}

fn bye(sim: &mut Sim, seq: u32, from_a: bool, dialog: &Message) {
    let (from, to) = if from_a { (0, 1) } else { (1, 0) };
    sim.send_from_core(
        from,
        &in_dialog("BYE", seq, from_a, dialog, &format!("z9hG4bKsbye{from_a}")),
    );
    let got = sim.take(to);
    assert_eq!(method(&got), "BYE");
    sim.send_from_core(to, &answer(&got, 200, "", "", ""));
    assert_eq!(sim.take(from).status(), Some(200));
    sim.advance(Duration::from_secs(64));
    for b in &sim.borders {
        assert_eq!(b.held_state(), (0, 0, 0, 0));
        assert_eq!(b.active_sessions(), 0);
    }
}

#[test]
fn a_call_moved_to_a_fresh_engine_holds_resumes_and_ends_from_the_callee() {
    let mut sim = Sim::new();
    let (ok, ack) = established(&mut sim, "snap1@127.0.10.1");
    move_call(&mut sim, 0, "snap1@127.0.10.1");
    hold_or_resume(&mut sim, "sendonly", 2, true, &ok);
    hold_or_resume(&mut sim, "sendrecv", 1, false, &ack);
    bye(&mut sim, 2, false, &ack);
    assert_no_leak(&sim, SECRETS);
}

#[test]
fn a_call_moved_to_a_fresh_engine_holds_resumes_and_ends_from_the_caller() {
    let mut sim = Sim::new();
    let (ok, ack) = established(&mut sim, "snap2@127.0.10.1");
    // B's border is the one replaced this time, found by the Call-ID of its peer-side leg.
    let peer_call_id = {
        let now = sim.now;
        let snap = sim.borders[0].snapshot(now, "snap2@127.0.10.1").unwrap();
        snap.legs[1].call_id.clone()
    };
    move_call(&mut sim, 1, &peer_call_id);
    hold_or_resume(&mut sim, "sendonly", 1, false, &ack);
    hold_or_resume(&mut sim, "sendrecv", 2, true, &ok);
    bye(&mut sim, 3, true, &ok);
    assert_no_leak(&sim, SECRETS);
}

#[test]
fn only_settled_calls_are_written_out() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("early@127.0.10.1", "z9hG4bKsnapearly"));
    let now = sim.now;
    assert_eq!(
        sim.borders[0].snapshot(now, "early@127.0.10.1"),
        Err(SnapshotError::NotSettled("early@127.0.10.1".into()))
    );
    assert!(matches!(
        sim.borders[0].snapshot(now, "nobody"),
        Err(SnapshotError::NoSuchCall(_))
    ));
    assert!(sim.borders[0].snapshot_all(now).is_empty());
}

#[test]
fn a_refer_in_flight_moves_with_the_call() {
    let mut sim = Sim::new();
    let (ok, ack) = established(&mut sim, "snap3@127.0.10.1");
    // CSeq 5 at A's core, 2 on the legs the borders number: the NOTIFY must be mapped.
    let refer = in_dialog("REFER", 5, true, &ok, "z9hG4bKsnapref").replace(
        "Content-Length: 0",
        "Contact: <sip:alice@127.0.10.1:5060>\nRefer-To: <sip:bob@operator-b.example>\nContent-Length: 0",
    );
    sim.send_from_core(0, &refer);
    let refer_b = sim.take(1);
    assert_eq!(method(&refer_b), "REFER");
    sim.send_from_core(1, &answer(&refer_b, 202, "", "", ""));
    assert_eq!(sim.take(0).status(), Some(202));
    let now = sim.now;
    let snap = sim.borders[0].snapshot(now, "snap3@127.0.10.1").unwrap();
    assert_eq!(snap.refers.len(), 1, "{snap:?}");
    // Both borders are replaced: the NOTIFY's id is translated by the REFER maps they took in.
    let peer_call_id = snap.legs[1].call_id.clone();
    move_call(&mut sim, 0, "snap3@127.0.10.1");
    move_call(&mut sim, 1, &peer_call_id);

    let b_seq = h(&refer_b, "CSeq").split(' ').next().unwrap().to_string();
    let notify = in_dialog("NOTIFY", 1, false, &ack, "z9hG4bKsnapnot").replace(
        "Content-Length: 0\n\n",
        &format!(
            "Event: refer;id={b_seq}\nSubscription-State: terminated\nContact: <sip:c@127.0.40.1:5060>\nContent-Type: message/sipfrag\nContent-Length: 16\n\nSIP/2.0 200 OK\r\n"
        ),
    );
    sim.send_from_core(1, &notify);
    let notify_a = sim.take(0);
    assert_eq!(method(&notify_a), "NOTIFY");
    assert_eq!(h(&notify_a, "Event"), "refer;id=5");
    sim.send_from_core(0, &answer(&notify_a, 200, "", "", ""));
    assert_eq!(sim.take(1).status(), Some(200));
    bye(&mut sim, 6, true, &ok);
    assert_no_leak(&sim, SECRETS);
}

#[test]
fn a_version_1_snapshot_is_still_taken_in() {
    let mut sim = Sim::new();
    established(&mut sim, "snap4@127.0.10.1");
    let now = sim.now;
    let snap = sim.borders[0].snapshot(now, "snap4@127.0.10.1").unwrap();
    let mut old = serde_json::to_value(&snap).unwrap();
    old["version"] = 1.into();
    old.as_object_mut().unwrap().remove("refers");
    let old: CallSnapshot = serde_json::from_value(old).expect("a v1 snapshot parses");
    let mut fresh = Border::new(lab("operator-a.toml"), 98);
    fresh.restore(now, &old).expect("a v1 snapshot restores");
    let mut future = old.clone();
    future.version = crate::b2bua::SNAPSHOT_VERSION + 1;
    assert_eq!(
        Border::new(lab("operator-a.toml"), 97).restore(now, &future),
        Err(RestoreError::Version(future.version))
    );
}
