//! A forked INVITE with two early dialogs (RFC 3261 §12.1, §13.2.2.4), each with a reliable
//! 183 (RFC 3262): the caller sees one early dialog per branch, PRACK and UPDATE on each reach
//! the branch that owns it (its tag, its target, its RSeq), and the branch that answers defines
//! the call.

use super::*;

fn method(m: &Message) -> &str {
    m.method().map(|m| m.as_str()).unwrap_or("")
}

fn to_tag(m: &Message) -> String {
    tag_of(m.headers.get("To")).unwrap_or_default()
}

fn uri(m: &Message) -> String {
    match &m.start {
        crate::sip::StartLine::Request { uri, .. } => uri.to_string(),
        _ => String::new(),
    }
}

/// A reliable 183 from one branch of B's forking core.
fn reliable_183(inv: &Message, tag: &str, contact: &str, rseq: u32) -> String {
    answer(inv, 183, tag, contact, "").replace(
        "Content-Length: 0",
        &format!("Require: 100rel\nRSeq: {rseq}\nContent-Length: 0"),
    )
}

fn with_header(req: String, header: &str) -> String {
    req.replace("Content-Length: 0", &format!("{header}\nContent-Length: 0"))
}

#[test]
fn two_early_dialogs_each_get_their_own_prack_and_update() {
    let mut sim = Sim::new();
    let inv = invite_from_a("forked@127.0.10.1", "z9hG4bKalicefork")
        .replace("Supported: timer", "Supported: 100rel, timer");
    sim.send_from_core(0, &inv);
    let inv_b = sim.take(1);

    // Two branches ring, each with its own tag, Contact and RSeq space.
    sim.send_from_core(
        1,
        &reliable_183(&inv_b, "branch1", "sip:cindy1@127.0.40.1:5060", 11),
    );
    let e1 = sim.take(0);
    sim.send_from_core(
        1,
        &reliable_183(&inv_b, "branch2", "sip:cindy2@127.0.40.1:5060", 21),
    );
    let e2 = sim.take(0);
    assert_eq!((e1.status(), e2.status()), (Some(183), Some(183)));
    let (t1, t2) = (to_tag(&e1), to_tag(&e2));
    assert!(!t1.is_empty() && !t2.is_empty());
    assert_ne!(t1, t2, "the caller sees one early dialog per branch");

    // PRACK each, in reverse order, each dialog numbering its own CSeq from the INVITE's.
    for (early, theirs, branch, contact) in [
        (&e2, 21, "branch2", "cindy2"),
        (&e1, 11, "branch1", "cindy1"),
    ] {
        let rseq = h(early, "RSeq").to_string();
        let prack = with_header(
            in_dialog("PRACK", 2, true, early, &format!("z9hG4bKpr{branch}")),
            &format!("RAck: {rseq} 1 INVITE"),
        );
        sim.send_from_core(0, &prack);
        let got = sim.take(1);
        assert_eq!(method(&got), "PRACK");
        assert_eq!(to_tag(&got), branch, "PRACK reaches its own branch");
        assert!(
            uri(&got).contains(contact),
            "to the branch's target: {}",
            uri(&got)
        );
        assert!(
            h(&got, "RAck").starts_with(&format!("{theirs} ")),
            "RAck names the branch's RSeq: {}",
            h(&got, "RAck")
        );
        sim.send_from_core(1, &answer(&got, 200, branch, "", ""));
        let ok = sim.take(0);
        assert_eq!(ok.status(), Some(200));
        assert_eq!(
            to_tag(&ok),
            to_tag(early),
            "the 200 answers in the same dialog"
        );
    }

    // UPDATE from the caller on each early dialog.
    for (early, seq, branch) in [(&e1, 3, "branch1"), (&e2, 3, "branch2")] {
        let upd = in_dialog("UPDATE", seq, true, early, &format!("z9hG4bKup{branch}"));
        sim.send_from_core(0, &upd);
        let got = sim.take(1);
        assert_eq!(method(&got), "UPDATE");
        assert_eq!(to_tag(&got), branch);
        sim.send_from_core(1, &answer(&got, 200, branch, "", ""));
        assert_eq!(sim.take(0).status(), Some(200));
    }

    // UPDATE from branch 1 toward the caller is in branch 1's early dialog there.
    let upd_b = in_dialog(
        "UPDATE",
        1,
        false,
        &answer_from(&inv_b, "branch1"),
        "z9hG4bKupb1",
    );
    sim.send_from_core(1, &upd_b);
    let got = sim.take(0);
    assert_eq!(method(&got), "UPDATE");
    assert_eq!(
        tag_of(got.headers.get("From")).unwrap_or_default(),
        t1,
        "branch 1's dialog as the caller knows it"
    );
    sim.send_from_core(0, &answer(&got, 200, "", "", ""));
    assert_eq!(sim.take(1).status(), Some(200));

    // Branch 2 answers: the call is its dialog, on both legs.
    sim.send_from_core(
        1,
        &answer(&inv_b, 200, "branch2", "sip:cindy2@127.0.40.1:5060", ""),
    );
    let ok = sim.take(0);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(
        to_tag(&ok),
        t2,
        "the answer confirms branch 2's early dialog"
    );
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKforkedack"));
    let ack = sim.take(1);
    assert_eq!(method(&ack), "ACK");
    assert_eq!(to_tag(&ack), "branch2");

    // Branch 1's early dialog is gone: a late PRACK for it gets 481 at A.
    let late = with_header(
        in_dialog("PRACK", 4, true, &e1, "z9hG4bKlate"),
        &format!("RAck: {} 1 INVITE", h(&e1, "RSeq")),
    );
    sim.send_from_core(0, &late);
    assert_eq!(sim.take(0).status(), Some(481));

    // The call goes on and ends cleanly; every early dialog's state is freed.
    sim.send_from_core(0, &in_dialog("BYE", 5, true, &ok, "z9hG4bKforkbye"));
    let bye = sim.take(1);
    assert_eq!(method(&bye), "BYE");
    assert_eq!(to_tag(&bye), "branch2");
    sim.send_from_core(1, &answer(&bye, 200, "branch2", "", ""));
    assert_eq!(sim.take(0).status(), Some(200));
    sim.advance(std::time::Duration::from_secs(40));
    for b in &sim.borders {
        assert_eq!(b.held_state(), (0, 0, 0, 0));
    }
    assert_no_leak(&sim, SECRETS);
}

/// A message of branch `tag`'s dialog as B's core sees it (the INVITE with its To tag), for
/// building the branch's own requests.
fn answer_from(inv: &Message, tag: &str) -> Message {
    let mut m = inv.clone();
    let to = format!("{};tag={tag}", h(inv, "To"));
    m.headers.set("To", to);
    m
}
