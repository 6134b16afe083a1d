//! Replaces (RFC 3891) and Join (RFC 3911) across both borders: attended transfer with the
//! Replaces embedded in a REFER's Refer-To, an INVITE replacing or joining a call, and references
//! to dialogs that do not cross (481 on INVITE, 403 on REFER, nothing on the interconnect).

use super::*;
use crate::sip::Replaces;

fn tag(m: &Message, header: &str) -> String {
    tag_of(m.headers.get(header)).expect("the dialog has both tags")
}

/// A new INVITE from Bob at A to Cindy carrying `header: value`.
fn invite_with(cid: &str, header: &str, value: &str) -> String {
    invite_from_a(&format!("{cid}@127.0.10.1"), &format!("z9hG4bK{cid}"))
        .replace("tag=alicetag1", "tag=bobtag9")
        .replace(
            "Supported: timer",
            &format!("Supported: timer\n{header}: {value}"),
        )
}

/// `Replaces` as a URI header value (RFC 3891 §7: `;` and `=` escaped).
fn embedded(r: &str) -> String {
    r.replace('@', "%40")
        .replace(';', "%3B")
        .replace('=', "%3D")
}

#[test]
fn attended_transfer_refer_to_names_each_sides_own_leg() {
    let mut sim = Sim::new();
    let (alice_ok, alice_b) = answered_call(&mut sim, "alice", "cindy1");
    let (bob_ok, bob_b) = answered_call(&mut sim, "bob", "cindy2");
    // Cindy transfers Bob to Alice: in her dialog with Bob, she names her dialog with Alice as
    // she knows it (Alice's side's tag is the to-tag, hers the from-tag).
    let named = format!(
        "{};to-tag={};from-tag=cindy1",
        h(&alice_b, "Call-ID"),
        tag(&alice_b, "From")
    );
    let refer = in_dialog("REFER", 2, false, &bob_b, "z9hG4bKxfer").replace(
        "Content-Length: 0",
        &format!(
            "Contact: <sip:cindy@127.0.40.1:5060>\nRefer-To: <sip:alice@operator-a.example?Replaces={}>\nReferred-By: <sip:cindy@operator-b.example>\nContent-Length: 0",
            embedded(&named)
        ),
    );
    sim.send_from_core(1, &refer);
    let refer_a = sim.take(0);
    assert_eq!(refer_a.method().map(|m| m.as_str()), Some("REFER"));
    assert_eq!(h(&refer_a, "Call-ID"), "bob-call@127.0.10.1");
    let refer_to = refer_a.headers.refer_to().expect("Refer-To parses");
    assert!(refer_to
        .target
        .to_string()
        .contains("alice@operator-a.example"));
    // What Bob's INVITE will carry to Alice names Alice's dialog as Alice knows it.
    let r = refer_to.replaces.expect("the Replaces crossed, translated");
    assert_eq!(r.call_id, "alice-call@127.0.10.1");
    assert_eq!(r.to_tag, "alicetag1");
    assert_eq!(r.from_tag, tag(&alice_ok, "To"));
    assert!(!r.early_only);
    sim.send_from_core(0, &answer(&refer_a, 202, "", "", ""));
    assert_eq!(sim.take(1).status(), Some(202));

    // Nothing either core uses to name its dialogs was on the interconnect.
    let b_side = [
        h(&alice_b, "Call-ID").to_string(),
        h(&bob_b, "Call-ID").to_string(),
        tag(&alice_b, "From"),
        tag(&bob_b, "From"),
    ];
    let a_side = [tag(&alice_ok, "To"), tag(&bob_ok, "To")];
    let inside: Vec<&str> = b_side.iter().chain(&a_side).map(String::as_str).collect();
    assert_no_leak(&sim, &inside);
    assert_no_leak(
        &sim,
        &[
            "alice-call",
            "bob-call",
            "alicetag1",
            "bobtag1",
            "cindy1",
            "cindy2",
        ],
    );
    assert_no_leak(&sim, SECRETS);
}

#[test]
fn an_invite_replacing_or_joining_a_call_names_the_far_sides_dialog() {
    for (header, early_only) in [("Replaces", false), ("Replaces", true), ("Join", false)] {
        let mut sim = Sim::new();
        let (alice_ok, alice_b) = answered_call(&mut sim, "alice", "cindy1");
        // Bob takes over (or joins) Alice's call: he names it as A's core knows it.
        let flag = if early_only { ";early-only" } else { "" };
        let value = format!(
            "alice-call@127.0.10.1;to-tag={};from-tag=alicetag1{flag}",
            tag(&alice_ok, "To")
        );
        sim.send_from_core(0, &invite_with("takeover", header, &value));
        let inv_b = sim.take(1);
        assert_eq!(inv_b.method().map(|m| m.as_str()), Some("INVITE"));
        let got = Replaces::parse(h(&inv_b, header)).expect("translated header parses");
        assert_eq!(got.call_id, h(&alice_b, "Call-ID"), "{header}");
        assert_eq!(got.to_tag, "cindy1", "Cindy's own tag is the to-tag");
        assert_eq!(got.from_tag, tag(&alice_b, "From"));
        assert_eq!(got.early_only, early_only);
        let a_inside = [tag(&alice_ok, "To")];
        let b_inside = [h(&alice_b, "Call-ID").to_string(), tag(&alice_b, "From")];
        let inside: Vec<&str> = a_inside
            .iter()
            .chain(&b_inside)
            .map(String::as_str)
            .collect();
        assert_no_leak(&sim, &inside);
        assert_no_leak(&sim, &["alice-call", "alicetag1", "cindy1", "takeover@"]);
    }
}

#[test]
fn references_to_dialogs_that_do_not_cross_are_refused_and_stay_home() {
    let mut sim = Sim::new();
    let (alice_ok, alice_b) = answered_call(&mut sim, "alice", "cindy1");
    let crossed = sim.interconnect.len();
    let a_view = format!(
        "alice-call@127.0.10.1;to-tag={};from-tag=alicetag1",
        tag(&alice_ok, "To")
    );
    let cases = [
        // A dialog the border never had.
        (
            "Replaces",
            "nothing@127.0.10.1;to-tag=x;from-tag=y".to_string(),
            481,
        ),
        // The right Call-ID with a wrong remote tag.
        ("Join", a_view.replace("alicetag1", "othertag"), 481),
        // Replaces and Join together (RFC 3911 §4).
        ("Replaces", format!("{a_view}\nJoin: {a_view}"), 400),
        ("Replaces", "no-tags-here".to_string(), 400),
    ];
    for (i, (header, value, status)) in cases.iter().enumerate() {
        sim.send_from_core(0, &invite_with(&format!("bad{i}"), header, value));
        let resp = sim.take(0);
        assert_eq!(resp.status(), Some(*status), "{header}: {value}");
    }
    // B's side naming Alice's dialog by A's identifiers (which it could only have from a leak):
    // they mean nothing at B's border.
    let from_b = invite_from_a("fromb@127.0.40.1", "z9hG4bKfromb")
        .replace(
            "INVITE sip:cindy@operator-b.example",
            "INVITE sip:alice@operator-a.example",
        )
        .replace(
            "Via: SIP/2.0/UDP 127.0.10.1:5060",
            "Via: SIP/2.0/UDP 127.0.40.1:5060",
        )
        .replace(
            "Supported: timer",
            &format!("Supported: timer\nReplaces: {a_view}"),
        );
    sim.send_from_core(1, &from_b);
    assert_eq!(sim.take(1).status(), Some(481));
    assert_eq!(
        sim.interconnect.len(),
        crossed,
        "no refused request crossed"
    );

    // A REFER whose Refer-To replaces an unknown dialog is refused, not relayed without it.
    let refer = in_dialog("REFER", 2, false, &alice_b, "z9hG4bKbadxfer").replace(
        "Content-Length: 0",
        &format!(
            "Contact: <sip:cindy@127.0.40.1:5060>\nRefer-To: <sip:bob@operator-a.example?Replaces={}>\nContent-Length: 0",
            embedded("elsewhere@127.0.40.1;to-tag=p;from-tag=q")
        ),
    );
    sim.send_from_core(1, &refer);
    assert_eq!(sim.take(1).status(), Some(403));
    assert_eq!(sim.interconnect.len(), crossed);
}

#[test]
fn an_early_dialog_is_named_once_the_far_side_has_tagged_it() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("early@127.0.10.1", "z9hG4bKearly"));
    let inv_b = sim.take(1);
    // Before any provisional from Cindy the far leg has no tag: the dialog has no name there.
    let before = "early@127.0.10.1;to-tag=notyet;from-tag=alicetag1;early-only";
    sim.send_from_core(0, &invite_with("early0", "Replaces", before));
    assert_eq!(sim.take(0).status(), Some(481));

    let contact = "sip:cindy@127.0.40.1:5060";
    sim.send_from_core(1, &answer(&inv_b, 180, "cindyearly", contact, ""));
    let ringing = sim.take(0);
    let named = format!(
        "early@127.0.10.1;to-tag={};from-tag=alicetag1;early-only",
        tag(&ringing, "To")
    );
    sim.send_from_core(0, &invite_with("early1", "Replaces", &named));
    let got = sim.take(1);
    assert_eq!(got.method().map(|m| m.as_str()), Some("INVITE"));
    let r = Replaces::parse(h(&got, "Replaces")).expect("translated");
    assert_eq!(
        (r.call_id.as_str(), r.to_tag.as_str()),
        (h(&inv_b, "Call-ID"), "cindyearly")
    );
    assert_eq!(r.from_tag, tag(&inv_b, "From"));
    assert!(r.early_only);
    assert_no_leak(&sim, &["early@", "alicetag1", "cindyearly"]);
}

#[test]
fn join_and_replaces_are_on_the_default_list_and_a_partner_without_them_gets_neither() {
    let defaults = &lab("operator-a.toml").realms[1].peers[0].headers.allow;
    for name in ["Replaces", "Join"] {
        assert!(defaults.iter().any(|a| a == name), "{name} by default");
    }
    for header in ["Replaces", "Join"] {
        let mut cfg = (*lab("operator-a.toml")).clone();
        cfg.realms[1].peers[0].headers.allow.retain(|a| a != header);
        let mut sim = Sim::new();
        sim.borders[0] = Border::new(Arc::new(cfg), 23);
        let (alice_ok, _) = answered_call(&mut sim, "alice", "cindy1");
        let crossed = sim.interconnect.len();
        let value = format!(
            "alice-call@127.0.10.1;to-tag={};from-tag=alicetag1",
            tag(&alice_ok, "To")
        );
        sim.send_from_core(0, &invite_with("notallowed", header, &value));
        assert_eq!(sim.take(0).status(), Some(403), "{header}");
        assert_eq!(sim.interconnect.len(), crossed, "not sent as a plain call");
    }
}
