//! What headers and bodies other than plain SDP carry across the border: header parameters of
//! From/To, `tel:` phone contexts, SDP text fields and TCP (MSRP) streams, Reason texts (on
//! CANCEL too), body types outside the partner's list, sipfrag header lines, error response
//! bodies, and the charging identifier toward an untrusted partner.

use super::*;

/// Home addresses, host names and equipment the tests put in messages (none may cross).
pub(super) const HOME: &[&str] = &[
    "127.0.10.",
    "127.0.40.",
    "operator-a-core",
    "operator-b-core",
    "scscf3",
    "mgcf7",
    "alice.sip.phone",
    "InternalMixer",
    "site-7",
];

fn with_sdp(inv: &str, sdp: &str) -> String {
    let start = inv.find("Content-Type:").expect("has a body");
    format!("{}{}", &inv[..start], sdp_with(sdp))
}

#[test]
fn identities_sdp_text_and_tcp_streams_cross_without_the_inside() {
    let mut sim = Sim::new();
    let sdp = "v=0\no=alice.sip.phone 1 1 IN IP4 127.0.10.1\ns=Call from site-7\ni=desk phone\ne=noc@operator-a-core.internal\nc=IN IP4 127.0.10.1\nt=0 0\na=tool:InternalMixer 4.2\nm=audio 4000 RTP/AVP 0\nm=message 2855 TCP/MSRP *\na=accept-types:text/plain\na=path:msrp://127.0.10.1:2855/s1;tcp\n";
    let inv = with_sdp(
        &invite_from_a("gaps@127.0.10.1", "z9hG4bKgaps"),
        sdp,
    )
    .replace(
        "From: \"Alice\" <sip:alice@operator-a.example>;tag=alicetag1",
        "From: \"Alice\" <tel:5551234;phone-context=operator-a-core.internal>;tag=alicetag1;x-node=scscf3",
    )
    .replace(
        "Supported: timer",
        "Supported: timer\nReason: SIP;cause=200;text=\"routed by scscf3.operator-a-core.internal\"",
    );
    sim.send_from_core(0, &inv);
    let inv_b = sim.take(1);
    let from = h(&inv_b, "From");
    assert!(from.contains("phone-context=operator-a.example"), "{from}");
    assert!(!from.contains("x-node"), "{from}");
    let offer = String::from_utf8_lossy(&inv_b.body).to_string();
    assert!(offer.contains("o=- 1 1 IN IP4"), "{offer}");
    assert!(offer.contains("s=-"), "{offer}");
    assert!(
        offer.contains("m=message 0 TCP/MSRP"),
        "MSRP declined: {offer}"
    );
    assert!(!offer.contains("a=path"), "{offer}");
    let reason = h(&inv_b, "Reason");
    assert_eq!(reason, "SIP;cause=200;text=\"OK\"");

    // The callee is busy, and says so with a body naming its equipment: the status crosses,
    // the body does not.
    let busy = answer(&inv_b, 486, "busytag", "", "").replace(
        "Content-Length: 0\n\n",
        "Content-Type: text/plain\nContent-Length: 29\n\nbusy at mgcf7.operator-b-core",
    );
    sim.send_from_core(1, &busy);
    let resp = sim.take(0);
    assert_eq!(resp.status(), Some(486));
    assert!(
        resp.body.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_no_leak(&sim, HOME);
}

#[test]
fn cancel_carries_the_callers_reason_screened() {
    let mut sim = Sim::new();
    let inv = invite_from_a("creason@127.0.10.1", "z9hG4bKcreason");
    sim.send_from_core(0, &inv);
    let inv_b = sim.take(1);
    sim.send_from_core(1, &answer(&inv_b, 180, "ring", "sip:c@127.0.40.1:5060", ""));
    let _ = sim.take(0);
    let cancel = "CANCEL sip:cindy@operator-b.example SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bKcreason\n\
         Max-Forwards: 70\n\
         From: \"Alice\" <sip:alice@operator-a.example>;tag=alicetag1\n\
         To: <sip:cindy@operator-b.example>\n\
         Call-ID: creason@127.0.10.1\n\
         CSeq: 1 CANCEL\n\
         Reason: SIP;cause=200;text=\"Call completed elsewhere by scscf3\"\n\
         Content-Length: 0\n\n";
    sim.send_from_core(0, cancel);
    let mut got = None;
    for _ in 0..4 {
        let m = sim.take(1);
        if m.method().map(|m| m.as_str()) == Some("CANCEL") {
            got = Some(m);
            break;
        }
    }
    let c = got.expect("CANCEL reached B's core");
    assert_eq!(h(&c, "Reason"), "SIP;cause=200;text=\"OK\"");
    assert_no_leak(&sim, HOME);
}

#[test]
fn only_listed_bodies_cross_and_sipfrag_keeps_its_status_line() {
    let mut sim = Sim::new();
    let message = |ct: Option<&str>, body: &str, cid: &str| {
        let ct = ct
            .map(|c| format!("Content-Type: {c}\n"))
            .unwrap_or_default();
        format!(
            "MESSAGE sip:cindy@operator-b.example SIP/2.0\n\
             Via: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bK{cid}\n\
             Max-Forwards: 70\n\
             From: <sip:alice@operator-a.example>;tag=m1\n\
             To: <sip:cindy@operator-b.example>\n\
             Call-ID: {cid}@127.0.10.1\n\
             CSeq: 1 MESSAGE\n\
             {ct}Content-Length: {}\n\n{body}",
            body.len()
        )
    };
    for (ct, body, crosses) in [
        (Some("text/plain"), "hello", true),
        (Some("application/x-internal-trace"), "node=scscf3", false),
        (None, "no type at scscf3", false),
        (
            Some("multipart/mixed;boundary=b"),
            "--b\r\nContent-Type: application/sdp\r\n\r\nc=IN IP4 127.0.10.1\r\n--b--",
            false,
        ),
    ] {
        let cid = format!("body{}", ct.map_or(0, |c| c.len()));
        sim.send_from_core(0, &message(ct, body, &cid));
        let got = sim.take(1);
        assert_eq!(got.method().map(|m| m.as_str()), Some("MESSAGE"));
        assert_eq!(!got.body.is_empty(), crosses, "{ct:?}");
        if !crosses {
            assert!(got.headers.get("Content-Type").is_none(), "{ct:?}");
        }
        sim.send_from_core(1, &answer(&got, 200, "mt", "", ""));
        assert_eq!(sim.take(0).status(), Some(200));
    }
    // A refer progress NOTIFY names the far leg's dialog in its fragment's headers.
    let frag = "SIP/2.0 200 OK from mgcf7\r\nVia: SIP/2.0/UDP 127.0.40.1;branch=z9hG4bKx\r\nCall-ID: inner@127.0.40.1\r\n";
    let notify = message(Some("message/sipfrag;version=2.0"), frag, "frag")
        .replace("MESSAGE sip:", "NOTIFY sip:")
        .replace(
            "CSeq: 1 MESSAGE",
            "CSeq: 1 NOTIFY\nEvent: refer\nSubscription-State: active",
        );
    sim.send_from_core(0, &notify);
    let got = sim.take(1);
    assert_eq!(String::from_utf8_lossy(&got.body), "SIP/2.0 200 OK\r\n");
    assert_no_leak(&sim, HOME);
}

#[test]
fn an_untrusted_partner_gets_the_borders_own_charging_id() {
    let mut cfg = (*lab("operator-a.toml")).clone();
    cfg.realms[1].peers[0].trust = crate::config::Trust::Untrusted;
    let mut sim = Sim::new();
    sim.borders[0] = Border::new(Arc::new(cfg), 6);
    sim.send_from_core(0, &invite_from_a("pcv@127.0.10.1", "z9hG4bKpcv"));
    let inv = sim.take(1);
    let pcv = h(&inv, "P-Charging-Vector");
    assert!(!pcv.contains("abc123"), "the home icid stays home: {pcv}");
}

#[test]
fn refer_crosses_with_public_uris_and_its_notify_names_the_right_refer() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("refer@127.0.10.1", "z9hG4bKrefer"));
    let inv = sim.take(1);
    // The callee is a conference focus: its Contact says so, and names its device.
    let ok = answer(&inv, 200, "focus", "", "").replace(
        "Content-Length: 0",
        "Contact: <sip:conf@127.0.40.1:5060>;isfocus;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\";+sip.instance=\"<urn:uuid:0f1e>\"\nContent-Length: 0",
    );
    sim.send_from_core(1, &ok);
    let ok_a = sim.take(0);
    let contact = h(&ok_a, "Contact");
    assert!(contact.contains(";isfocus"), "{contact}");
    assert!(contact.contains("+g.3gpp.icsi-ref"), "{contact}");
    assert!(
        !contact.contains("+sip.instance") && !contact.contains("uuid"),
        "{contact}"
    );
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok_a, "z9hG4bKreferack"));
    let ack_b = sim.take(1);

    // Alice's side REFERs the focus to a user, naming an internal host (a Replaces is
    // translated: see `replaces.rs`).
    let refer = in_dialog("REFER", 5, true, &ok_a, "z9hG4bKrefer5").replace(
        "Content-Length: 0",
        "Contact: <sip:alice@127.0.10.1:5060>\nRefer-To: <sip:bob@scscf3.operator-a-core.internal;x-node=mgcf7?X-Route=scscf3>\nReferred-By: <sip:alice@127.0.10.1>\nContent-Length: 0",
    );
    sim.send_from_core(0, &refer);
    let refer_b = sim.take(1);
    assert_eq!(refer_b.method().map(|m| m.as_str()), Some("REFER"));
    let refer_to = h(&refer_b, "Refer-To");
    assert!(refer_to.contains("bob@operator-a.example"), "{refer_to}");
    assert!(!refer_to.contains('?'), "{refer_to}");
    assert!(h(&refer_b, "Referred-By").contains("alice@operator-a.example"));
    sim.send_from_core(1, &answer(&refer_b, 202, "", "", ""));
    assert_eq!(sim.take(0).status(), Some(202));

    // The focus reports progress on the implicit subscription, naming the REFER by its CSeq
    // on B's side; A's core must see the CSeq it used.
    let b_seq = h(&refer_b, "CSeq").split(' ').next().unwrap().to_string();
    let notify = in_dialog("NOTIFY", 1, false, &ack_b, "z9hG4bKnotify1").replace(
        "Content-Length: 0\n\n",
        &format!(
            "Event: refer;id={b_seq}\nSubscription-State: active;expires=60\nContact: <sip:conf@127.0.40.1:5060>\nContent-Type: message/sipfrag\nContent-Length: 20\n\nSIP/2.0 100 Trying\r\n"
        ),
    );
    sim.send_from_core(1, &notify);
    let notify_a = sim.take(0);
    assert_eq!(notify_a.method().map(|m| m.as_str()), Some("NOTIFY"));
    assert_eq!(h(&notify_a, "Event"), "refer;id=5");
    assert_no_leak(&sim, HOME);
}

#[test]
fn conference_state_crosses_with_public_uris_only() {
    let mut sim = Sim::new();
    let doc = "<?xml version=\"1.0\"?>\r\n<conference-info xmlns=\"urn:ietf:params:xml:ns:conference-info\" entity=\"sip:conf7@mixer3.operator-a-core.internal\" state=\"full\" version=\"1\">\r\n<users><user entity=\"sip:alice@operator-a.example\"><endpoint entity=\"sip:alice@127.0.10.1:5060;transport=udp\"/></user>\r\n<user entity=\"sip:cindy@operator-b.example\"/></users></conference-info>\r\n";
    let notify = format!(
        "NOTIFY sip:cindy@operator-b.example SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bKconfinfo\n\
         Max-Forwards: 70\n\
         From: <sip:conf7@operator-a.example>;tag=f1\n\
         To: <sip:cindy@operator-b.example>\n\
         Call-ID: confinfo@127.0.10.1\n\
         CSeq: 1 NOTIFY\n\
         Event: conference\n\
         Subscription-State: active\n\
         Content-Type: application/conference-info+xml\n\
         Content-Length: {}\n\n{doc}",
        doc.len()
    );
    sim.send_from_core(0, &notify);
    let got = sim.take(1);
    let body = String::from_utf8_lossy(&got.body).to_string();
    assert!(
        body.contains("entity=\"sip:conf7@operator-a.example\""),
        "{body}"
    );
    assert!(
        body.contains("sip:cindy@operator-b.example"),
        "a partner's URI is kept: {body}"
    );
    assert!(
        body.contains("<endpoint entity=\"sip:alice@operator-a.example\"/>"),
        "{body}"
    );
    assert_no_leak(&sim, HOME);
}

#[test]
fn sdp_outside_offer_answer_is_removed_not_passed_unanchored() {
    let mut sim = Sim::new();
    // A MESSAGE carrying SDP (a description, not an offer: no relay is opened for it) would
    // name Alice's addresses on the interconnect. (OPTIONS, whose 200 may carry SDP, is
    // answered by the border itself across the interconnect.)
    let msg = invite_from_a("sdpmsg@127.0.10.1", "z9hG4bKsdpmsg")
        .replace("INVITE sip:", "MESSAGE sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 MESSAGE");
    sim.send_from_core(0, &msg);
    let got = sim.take(1);
    assert_eq!(got.method().map(|m| m.as_str()), Some("MESSAGE"));
    assert!(got.body.is_empty() && got.headers.get("Content-Type").is_none());
    assert_no_leak(&sim, HOME);
}

#[test]
fn an_options_answer_never_carries_a_core_s_sdp_across() {
    let mut sim = Sim::new();
    // Alice's core asks what Cindy supports; the 200 could carry an SDP describing Cindy's
    // media. Border B answers OPTIONS from the interconnect itself, so B's core never sees it
    // and nothing of B's addresses comes back; A's core gets a 200 without SDP.
    let opt = invite_from_a("opt@127.0.10.1", "z9hG4bKopt")
        .replace("INVITE sip:", "OPTIONS sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
    sim.send_from_core(0, &opt);
    let ok = sim.take(0);
    assert_eq!(ok.status(), Some(200));
    assert!(
        ok.headers
            .get("Content-Type")
            .is_none_or(|t| !t.contains("sdp")),
        "{ok:?}"
    );
    assert!(sim.quiet(1), "B's core was not asked");
    assert_no_leak(&sim, HOME);
    for bytes in &sim.interconnect {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("m=audio"),
            "no SDP on the interconnect: {text}"
        );
    }
}

#[test]
fn gruu_contact_parameters_never_cross() {
    let mut sim = Sim::new();
    // RFC 5627: a GRUU names the device (`gr`) and a public GRUU (`pub-gruu`) may name the
    // registrar's host; the border's own Contact replaces the device's and keeps neither.
    let inv = invite_from_a("gruu@127.0.10.1", "z9hG4bKgruu").replace(
        "Contact: <sip:alice@127.0.10.1:5060>",
        "Contact: <sip:alice@operator-a.example;gr=urn:uuid:f81d4fae>;+sip.instance=\"<urn:uuid:f81d4fae>\";pub-gruu=\"sip:alice@scscf3.operator-a-core.internal;gr=urn:uuid:f81d4fae\";temp-gruu=\"sip:tgruu.7hs==jd7vnzga5w7fajsc7-ajd6fabz0f8g5@operator-a.example;gr\"",
    );
    sim.send_from_core(0, &inv);
    let inv_b = sim.take(1);
    let contact = h(&inv_b, "Contact");
    for gone in ["gr=", "gruu", "uuid", "sip.instance", "scscf3"] {
        assert!(!contact.contains(gone), "{gone} crossed: {contact}");
    }
    // And from the other side: the callee's GRUU Contact in its 200.
    let ok = answer(&inv_b, 200, "gtag", "", "").replace(
        "Content-Length: 0",
        "Contact: <sip:cindy@operator-b.example;gr=urn:uuid:0a1b>;pub-gruu=\"sip:cindy@pcscf.operator-b-core.internal;gr=urn:uuid:0a1b\"\nContent-Length: 0",
    );
    sim.send_from_core(1, &ok);
    let ok_a = sim.take(0);
    let contact = h(&ok_a, "Contact");
    for gone in ["gr=", "gruu", "uuid", "pcscf"] {
        assert!(!contact.contains(gone), "{gone} crossed: {contact}");
    }
    assert_no_leak(&sim, HOME);
}
