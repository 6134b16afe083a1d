//! `refer = "refuse"` in a partner's policy: the border answers REFER to or from that partner
//! itself (403), in a dialog and outside one, and nothing of it crosses.

use super::*;
use crate::config::ReferPolicy;

/// A sim whose border A refuses REFER toward and from operator B.
fn refusing_sim() -> Sim {
    let mut cfg = (*lab("operator-a.toml")).clone();
    cfg.realms[1].peers[0].refer = ReferPolicy::Refuse;
    let mut sim = Sim::new();
    sim.borders[0] = Border::new(Arc::new(cfg), 7);
    sim
}

fn refer_in(dialog: &Message, from_core_a: bool, branch: &str) -> String {
    in_dialog("REFER", 2, from_core_a, dialog, branch).replace(
        "Content-Length: 0",
        "Contact: <sip:x@127.0.10.1:5060>\nRefer-To: <sip:bob@operator-a.example>\nContent-Length: 0",
    )
}

#[test]
fn a_refusing_partner_gets_no_refer_and_its_own_are_answered_403() {
    let mut sim = refusing_sim();
    let (ok_a, ack_b) = answered_call(&mut sim, "alice", "ctag");
    let crossed = sim.interconnect.len();

    // Toward the partner: A's border answers, nothing goes out.
    sim.send_from_core(0, &refer_in(&ok_a, true, "z9hG4bKreferout"));
    assert_eq!(sim.take(0).status(), Some(403));
    assert_eq!(sim.interconnect.len(), crossed);

    // From the partner: B's border relays it (B has no such policy), A's border refuses it.
    sim.send_from_core(1, &refer_in(&ack_b, false, "z9hG4bKreferin"));
    assert_eq!(sim.take(1).status(), Some(403));
    assert!(sim.quiet(0), "nothing reached A's core");

    // Outside a dialog too.
    let refer_to = "Refer-To: <sip:bob@operator-a.example>\n";
    let refer = request_from_a(
        "ood-refer@127.0.10.1",
        "z9hG4bKoodrefer",
        "REFER",
        1,
        refer_to,
    );
    let before = sim.interconnect.len();
    sim.send_from_core(0, &refer);
    assert_eq!(sim.take(0).status(), Some(403));
    assert_eq!(sim.interconnect.len(), before);

    // Other requests in the dialog still cross.
    sim.send_from_core(0, &in_dialog("INFO", 3, true, &ok_a, "z9hG4bKinfo"));
    assert_eq!(sim.take(1).method().map(|m| m.as_str()), Some("INFO"));
}

#[test]
fn by_default_refer_is_relayed() {
    let mut sim = Sim::new();
    let (ok_a, _) = answered_call(&mut sim, "alice", "ctag");
    sim.send_from_core(0, &refer_in(&ok_a, true, "z9hG4bKrelayrefer"));
    assert_eq!(sim.take(1).method().map(|m| m.as_str()), Some("REFER"));
}
