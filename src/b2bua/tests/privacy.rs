//! RFC 3323 privacy and the history headers across the border: toward an untrusted partner the
//! border withholds what `Privacy` asks for (display name, identity and RFC 3323 §5.1 headers,
//! history); History-Info and Diversion entries get public hosts and keep their retargeting
//! parameters; a trusted partner gets the privacy request to apply itself.

use super::*;
use crate::config::Trust;

const HISTORY: &str = "History-Info: <sip:bob@scscf3.operator-a-core.internal;cause=302?Reason=SIP%3Bcause%3D302>;index=1.1, <sip:alice@operator-a.example>;index=1;x-node=mgcf7\n\
    History-Info: <sip:carol@127.0.10.1?Privacy=history>;index=1.2\n\
    Diversion: \"Bob Desk\" <sip:bob@127.0.10.1;user=phone>;reason=unconditional;counter=1;x-hop=scscf3\n\
    Diversion: <sip:dave@operator-a.example>;reason=user-busy;privacy=full";

/// Alice's INVITE with `extra` header lines, through a border A whose partner B has `trust`.
fn invite_through(trust: Trust, extra: &str) -> Message {
    let mut cfg = (*lab("operator-a.toml")).clone();
    cfg.realms[1].peers[0].trust = trust;
    let mut sim = Sim::new();
    sim.borders[0] = Border::new(Arc::new(cfg), 21);
    let inv = invite_from_a("privacy@127.0.10.1", "z9hG4bKprivacy")
        .replace("Supported: timer", &format!("Supported: timer\n{extra}"));
    sim.send_from_core(0, &inv);
    let got = sim.take(1);
    assert_no_leak(&sim, &["127.0.10.", "operator-a-core", "scscf3", "mgcf7"]);
    got
}

#[test]
fn privacy_toward_an_untrusted_partner_withholds_name_identity_and_history() {
    let extra = format!(
        "Privacy: id;header\nSubject: lunch at site-7\nCall-Info: <http://www.operator-a.example/alice.png>;purpose=icon\nRemote-Party-ID: \"Alice\" <sip:alice@operator-a.example>\n{HISTORY}"
    );
    let inv = invite_through(Trust::Untrusted, &extra);
    let from = h(&inv, "From");
    assert!(!from.contains("Alice"), "{from}");
    assert!(from.contains("alice@operator-a.example"), "{from}");
    for gone in [
        "Subject",
        "Call-Info",
        "Remote-Party-ID",
        "P-Asserted-Identity",
        "History-Info",
        "Diversion",
    ] {
        assert!(inv.headers.get(gone).is_none(), "{gone} withheld");
    }
    assert_eq!(
        h(&inv, "Privacy"),
        "id;header",
        "the request itself crosses"
    );
}

#[test]
fn history_entries_cross_with_public_hosts_and_their_own_privacy() {
    // Untrusted, no Privacy: every entry is rewritten; those asking privacy of their own go.
    let inv = invite_through(Trust::Untrusted, HISTORY);
    assert!(h(&inv, "From").contains("Alice"), "no privacy asked");
    let history: Vec<&str> = inv.headers.values("History-Info");
    assert_eq!(
        history,
        [
            "<sip:bob@operator-a.example>;index=1.1",
            "<sip:alice@operator-a.example>;index=1"
        ]
    );
    let diversion: Vec<&str> = inv.headers.values("Diversion");
    assert_eq!(
        diversion,
        ["\"Bob Desk\" <sip:bob@operator-a.example;user=phone>;reason=unconditional;counter=1"]
    );

    // Trusted, Privacy: id: the partner applies it, so it gets the name and every entry, each
    // keeping its privacy request.
    let extra = format!("Privacy: id\n{HISTORY}");
    let inv = invite_through(Trust::Trusted, &extra);
    assert!(h(&inv, "From").contains("Alice"));
    let history: Vec<&str> = inv.headers.values("History-Info");
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(
        history[2],
        "<sip:carol@operator-a.example?Privacy=history>;index=1.2"
    );
    let diversion: Vec<&str> = inv.headers.values("Diversion");
    assert_eq!(
        diversion[1],
        "<sip:dave@operator-a.example>;reason=user-busy;privacy=full"
    );
}

/// A call from A to Cindy at B, whose 180 and 200 carry `extra` header lines, through a border B
/// whose partner A has `trust`: the 180 and the 200 as A's core got them.
fn answers_through(trust: Trust, extra: &str) -> [Message; 2] {
    let mut cfg = (*lab("operator-b.toml")).clone();
    cfg.realms[1].peers[0].trust = trust;
    let mut sim = Sim::new();
    sim.borders[1] = Border::new(Arc::new(cfg), 22);
    sim.send_from_core(0, &invite_from_a("rsp-privacy@127.0.10.1", "z9hG4bKrspp"));
    let inv_b = sim.take(1);
    let contact = "sip:cindy@127.0.40.1:5060";
    let got = [180, 200].map(|status| {
        let resp = answer(&inv_b, status, "cindytag", contact, "")
            .replace("Server:", &format!("{extra}\nServer:"));
        sim.send_from_core(1, &resp);
        sim.take(0)
    });
    assert_no_leak(&sim, &["127.0.40.", "operator-b-core", "scscf7"]);
    got
}

const CALLEE_ID: &str = "Privacy: id\n\
    P-Asserted-Identity: \"Cindy Desk\" <sip:cindy@scscf7.operator-b-core.internal>, <tel:+15550100>\n\
    Remote-Party-ID: \"Cindy Desk\" <sip:cindy@operator-b.example>;party=called\n\
    Subject: desk-4711";

#[test]
fn the_callees_identity_in_answers_follows_privacy_and_trust_as_in_requests() {
    // Toward an untrusted partner: no identity header, no display name, no RFC 3323 §5.1
    // header the callee asked privacy for.
    for resp in answers_through(Trust::Untrusted, &CALLEE_ID.replace("id\n", "id;header\n")) {
        for gone in ["P-Asserted-Identity", "Remote-Party-ID", "Subject"] {
            assert!(resp.headers.get(gone).is_none(), "{gone} withheld");
        }
        let text = String::from_utf8_lossy(&resp.to_bytes()).to_string();
        assert!(!text.contains("Cindy Desk"), "{text}");
        assert_eq!(h(&resp, "Privacy"), "id;header");
    }
    // Untrusted, no privacy asked: P-Asserted-Identity still stays in the trust domain (RFC
    // 3325 §9.1), the rest crosses.
    let open = CALLEE_ID.replace("Privacy: id\n", "");
    for resp in answers_through(Trust::Untrusted, &open) {
        assert!(resp.headers.get("P-Asserted-Identity").is_none());
        assert!(
            h(&resp, "Remote-Party-ID").is_empty(),
            "not on the allow-list"
        );
    }
    // Trusted: the partner applies the privacy itself, so it gets the asserted identity (its
    // host public) and the Privacy header that tells it to.
    for resp in answers_through(Trust::Trusted, CALLEE_ID) {
        let pai = h(&resp, "P-Asserted-Identity");
        assert!(pai.contains("cindy@operator-b.example"), "{pai}");
        assert!(pai.contains("tel:+15550100"), "{pai}");
        assert_eq!(h(&resp, "Privacy"), "id");
    }
}
