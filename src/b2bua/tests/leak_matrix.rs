//! The leak check fed every body and header of issue #18's hiding gaps at once (SIP-I multipart
//! with an MSRP stream, From/To parameters, `tel:` phone-context, P-Charging-Vector, Reason
//! texts, history headers, early media, sipfrag, dialog-info, conference-info, error bodies, a
//! REFER with Replaces), with the partners trusting each other and not: no home address, host
//! name, Call-ID or tag of either side is on the interconnect, and a dialog-info naming a call
//! that crosses reaches the other core with that core's own identifiers of it.

use super::*;
use crate::config::Trust;

/// Besides `hiding_gaps::HOME`, what names one of the networks' insides here.
const INSIDE: &[&str] = &[
    "alicetag1",
    "cindytag",
    "matrix@",
    "inner-dialog",
    "icid-generated-at",
    "InternalCore",
    "InternalSwitch",
    "internal reason",
    "x-node",
];

fn sim_trusting(trust: Trust) -> Sim {
    let with = |name: &str| {
        let mut cfg = (*lab(name)).clone();
        cfg.realms[1].peers[0].trust = trust;
        Arc::new(cfg)
    };
    let mut sim = Sim::new();
    sim.borders = [
        Border::new(with("operator-a.toml"), 31),
        Border::new(with("operator-b.toml"), 32),
    ];
    sim
}

/// Alice's INVITE: SIP-I (SDP with an MSRP stream and text fields naming the site, ISUP), a
/// From with header parameters and a home phone-context, history and a Reason text.
fn loaded_invite() -> String {
    let sdp = "v=0\no=alice.scscf3 1 1 IN IP4 127.0.10.1\ns=site-7\ni=mgcf7\nc=IN IP4 127.0.10.1\nt=0 0\na=tool:InternalCore\nm=audio 4000 RTP/AVP 0\nm=message 2855 TCP/MSRP *\na=path:msrp://127.0.10.1:2855/s1;tcp\n";
    let body = format!(
        "--mgcf7\nContent-Type: application/sdp\n\n{sdp}\n--mgcf7\nContent-Type: application/isup;version=itu-t92+\nContent-ID: <isup@mgcf7.operator-a-core.internal>\n\n\x01\x00\x60\n--mgcf7--\n"
    );
    let inv = invite_from_a("matrix@127.0.10.1", "z9hG4bKmatrix")
        .replace(
            "From: \"Alice\" <sip:alice@operator-a.example>;tag=alicetag1",
            "From: \"Alice\" <tel:5551234;phone-context=operator-a-core.internal>;tag=alicetag1;x-node=scscf3",
        )
        .replace(
            "Supported: timer",
            "Supported: timer\nReason: SIP;cause=200;text=\"via scscf3\"\nHistory-Info: <sip:alice@scscf3.operator-a-core.internal;x-node=mgcf7>;index=1\nDiversion: <sip:alice@127.0.10.1>;reason=unconditional;x-node=mgcf7",
        );
    let start = inv.find("Content-Type:").expect("has a body");
    with_body(
        &format!("{}Content-Length: 0\n\n", &inv[..start]),
        "multipart/mixed;boundary=mgcf7",
        &body,
    )
}

/// A request from B's core in its dialog (`dialog` as B's core saw it) carrying a body.
fn from_b(method: &str, seq: u32, dialog: &Message, extra: &str, ct: &str, body: &str) -> String {
    let req = in_dialog(
        method,
        seq,
        false,
        dialog,
        &format!("z9hG4bKb{method}{seq}"),
    )
    .replace(
        "Content-Length: 0\n\n",
        &format!("{extra}Content-Length: 0\n\n"),
    );
    with_body(&req, ct, body)
}

#[test]
fn nothing_of_either_inside_crosses_trusted_or_not() {
    for trust in [Trust::Trusted, Trust::Untrusted] {
        let mut sim = sim_trusting(trust);
        sim.send_from_core(0, &loaded_invite());
        let inv_b = sim.take(1);
        assert_eq!(
            inv_b.method().map(|m| m.as_str()),
            Some("INVITE"),
            "{trust:?}"
        );

        // Early media naming B's inside, then the answer.
        let sdp_b = "v=0\no=mgcf7 1 1 IN IP4 127.0.40.1\ns=site-7\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
        let contact = "sip:cindy@127.0.40.1:5060;x-node=scscf3";
        sim.send_from_core(1, &answer(&inv_b, 183, "cindytag", contact, sdp_b));
        assert_eq!(sim.take(0).status(), Some(183));
        sim.send_from_core(1, &answer(&inv_b, 200, "cindytag", contact, sdp_b));
        let ok_a = sim.take(0);
        sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok_a, "z9hG4bKmatrixack"));
        let ack_b = sim.take(1);

        // B's side: refer progress, dialog state and conference state naming its inside.
        let frag = "SIP/2.0 200 OK at mgcf7\r\nCall-ID: inner-dialog@127.0.40.1\r\n";
        // Two dialogs: one only B's inside knows, and this call as B's core knows it (its
        // Call-ID and tags, the id built from them).
        let b_cid = h(&ack_b, "Call-ID").to_string();
        let b_tag = tag_of(ack_b.headers.get("From")).expect("B's leg has our tag");
        let dialog_info = format!("<?xml version=\"1.0\"?>\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"1\" state=\"full\" entity=\"sip:cindy@scscf3.operator-b-core.internal\">\n<dialog id=\"d1\" call-id=\"inner-dialog@127.0.40.1\" local-tag=\"cindytag\" remote-tag=\"alicetag1\" direction=\"recipient\"><state>confirmed</state><local><target uri=\"sip:cindy@127.0.40.1:5060\"/></local></dialog>\n<dialog id='{b_cid}-1' call-id='{b_cid}' local-tag='cindytag' remote-tag='{b_tag}' direction='recipient'><state>confirmed</state><replaces call-id=\"inner-dialog@127.0.40.1\" local-tag=\"x\" remote-tag=\"y\"/></dialog>\n</dialog-info>\n");
        let conf = "<conference-info xmlns=\"urn:ietf:params:xml:ns:conference-info\" entity=\"sip:conf@mgcf7.operator-b-core.internal\" state=\"full\" version=\"1\"><users><user entity=\"sip:cindy@127.0.40.1\"/></users></conference-info>\n";
        let sub = "Event: dialog\nSubscription-State: active\n";
        for (i, (ct, body)) in [
            ("message/sipfrag", frag),
            ("application/dialog-info+xml", dialog_info.as_str()),
            ("application/conference-info+xml", conf),
        ]
        .into_iter()
        .enumerate()
        {
            let notify = from_b("NOTIFY", 2 + i as u32, &ack_b, sub, ct, body);
            sim.send_from_core(1, &notify);
            let got = sim.take(0);
            assert_eq!(got.method().map(|m| m.as_str()), Some("NOTIFY"), "{ct}");
            if ct == "application/dialog-info+xml" {
                // The state crosses; the dialog's identifiers do not.
                let state = "<dialog id=\"d1\" direction=\"recipient\">";
                let target = "<target uri=\"sip:cindy@operator-b.example\"/>";
                assert_body_has(&got, &[state, target]);
                // This call reaches A's core named as A's core knows it; the dialog B's inside
                // replaced names nothing here and loses its identifiers.
                let a_tag = tag_of(ok_a.headers.get("To")).expect("A's leg has our tag");
                let own = format!("<dialog id='matrix@127.0.10.1-1' call-id='matrix@127.0.10.1' local-tag='{a_tag}' remote-tag='alicetag1' direction='recipient'>");
                assert_body_has(&got, &[&own, "<replaces/>"]);
            }
            sim.send_from_core(0, &answer(&got, 200, "", "", ""));
            assert_eq!(sim.take(1).status(), Some(200));
        }

        // A transfer from B naming an inside host and an unknown dialog is refused at B.
        let refer_to = "Refer-To: <sip:bob@scscf3.operator-b-core.internal?Replaces=inner-dialog%40127.0.40.1%3Bto-tag%3Dx%3Bfrom-tag%3Dy>\nReferred-By: <sip:cindy@127.0.40.1>\nContact: <sip:cindy@127.0.40.1:5060>\n";
        let refer = in_dialog("REFER", 9, false, &ack_b, "z9hG4bKmatrixrefer").replace(
            "Content-Length: 0\n\n",
            &format!("{refer_to}Content-Length: 0\n\n"),
        );
        sim.send_from_core(1, &refer);
        assert_eq!(sim.take(1).status(), Some(403));

        // A second call that B rejects with an explanatory body.
        let second = loaded_invite()
            .replace("matrix@127.0.10.1", "matrix2@127.0.10.1")
            .replace("z9hG4bKmatrix", "z9hG4bKmatrix2");
        sim.send_from_core(0, &second);
        let inv2 = sim.take(1);
        let busy = with_body(
            &answer(&inv2, 486, "busytag", "", ""),
            "text/plain",
            "busy at mgcf7.operator-b-core",
        );
        sim.send_from_core(1, &busy);
        assert_eq!(sim.take(0).status(), Some(486));

        assert_no_leak(&sim, super::hiding_gaps::HOME);
        assert_no_leak(&sim, INSIDE);
        let tags = [
            tag_of(ok_a.headers.get("To")),
            tag_of(ack_b.headers.get("From")),
        ];
        let own: Vec<String> = tags.into_iter().flatten().collect();
        let own: Vec<&str> = own.iter().map(String::as_str).collect();
        assert_no_leak(&sim, &own);
    }
}
