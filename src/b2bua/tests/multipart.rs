//! `multipart/mixed` bodies (SIP-I: SDP + ISUP) across both borders: the SDP part is anchored
//! like any SDP, the ISUP part crosses only where every hop's body list has it, the boundary is
//! the border's own, and a lone SDP part arrives as plain SDP.

use super::*;
use crate::sip::multipart;

/// An ISUP IAM stand-in: binary, CR and LF free (the sim turns `\n` into CRLF), and naming a
/// home switch so a leak would show.
const ISUP: &str = "\x01\x00\x60\x01ISUP-IAM-from-mgcf7\x7f";

/// Alice's INVITE with a SIP-I body whose boundary names a home node.
fn sip_i_invite(cid: &str) -> String {
    let sdp = "v=0\no=alice 1 1 IN IP4 127.0.10.1\ns=-\nc=IN IP4 127.0.10.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n";
    let body = format!(
        "--mgcf7-b\nContent-Type: application/sdp\nContent-ID: <sdp@mgcf7.operator-a-core.internal>\n\n{sdp}\n--mgcf7-b\nContent-Type: application/isup;version=itu-t92+;base=itu-t92+\nContent-Disposition: signal;handling=optional;x-node=mgcf7\n\n{ISUP}\n--mgcf7-b--\n"
    );
    let inv = invite_from_a(&format!("{cid}@127.0.10.1"), &format!("z9hG4bK{cid}"));
    let start = inv.find("Content-Type:").expect("has a body");
    format!(
        "{}Content-Type: multipart/mixed;boundary=mgcf7-b\nContent-Length: {}\n\n{body}",
        &inv[..start],
        body.replace('\n', "\r\n").len()
    )
}

/// Both borders with `application/isup` on the body list of every hop (each border toward its
/// partner and toward its core) when `isup` is set.
fn sim_with_isup(isup: bool) -> Sim {
    let mut sim = Sim::new();
    if isup {
        let with_isup = |name: &str| {
            let mut cfg = (*lab(name)).clone();
            for r in &mut cfg.realms {
                r.headers.bodies.push("application/isup".into());
                for p in &mut r.peers {
                    p.headers.bodies.push("application/isup".into());
                }
            }
            Arc::new(cfg)
        };
        sim.borders = [
            Border::new(with_isup("operator-a.toml"), 11),
            Border::new(with_isup("operator-b.toml"), 12),
        ];
    }
    sim
}

#[test]
fn sip_i_crosses_with_its_sdp_anchored_and_isup_where_allowed() {
    let mut sim = sim_with_isup(true);
    sim.send_from_core(0, &sip_i_invite("sipi"));
    let inv_b = sim.take(1);
    let ct = inv_b.headers.content_type().expect("a Content-Type");
    assert!(ct.is("multipart", "mixed"), "{ct}");
    let boundary = ct.param("boundary").expect("a boundary");
    assert!(boundary.starts_with("palisade-"), "{boundary}");
    let parts = multipart::parse(&inv_b.body, &boundary).expect("parts parse");
    assert_eq!(parts.len(), 2);
    let sdp = String::from_utf8_lossy(&parts[0].body).to_string();
    assert!(
        sdp.contains("c=IN IP4 127.0.40.2") && !sdp.contains("m=audio 4000"),
        "the SDP part is anchored on B's home relay: {sdp}"
    );
    assert!(parts[0].header("Content-ID").is_none());
    assert_eq!(parts[1].body, ISUP.as_bytes(), "ISUP crosses byte for byte");
    assert_eq!(
        parts[1].header("Content-Disposition"),
        Some("signal;handling=optional")
    );

    // The answer (SIP-I ANM) comes back the same way, anchored on A's home relay.
    let sdp_b = "v=0\no=cindy 1 1 IN IP4 127.0.40.1\ns=-\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
    let anm = format!(
        "--sw9\nContent-Type: application/sdp\n\n{sdp_b}\n--sw9\nContent-Type: application/isup;version=itu-t92+\n\n{ISUP}\n--sw9--\n"
    );
    let ok = answer(&inv_b, 200, "ctag", "sip:cindy@127.0.40.1:5060", "");
    let ok = with_body(&ok, "multipart/mixed;boundary=sw9", &anm);
    sim.send_from_core(1, &ok);
    let ok_a = sim.take(0);
    assert_eq!(ok_a.status(), Some(200));
    let ct = ok_a.headers.content_type().expect("a Content-Type");
    let parts = multipart::parse(&ok_a.body, &ct.param("boundary").unwrap()).unwrap();
    let sdp = String::from_utf8_lossy(&parts[0].body).to_string();
    assert!(sdp.contains("c=IN IP4 127.0.10.2"), "{sdp}");
    assert_eq!(parts[1].body, ISUP.as_bytes());
    // The interconnect saw anchored SDP parts and nothing of either inside but the ISUP itself
    // (its content is the partner's to read: that is what allowing it means).
    let inside = [
        "127.0.10.",
        "127.0.40.",
        "mgcf7.operator-a-core",
        "mgcf7-b",
        "x-node",
        "sw9",
    ];
    assert_no_leak(&sim, &inside);
}

#[test]
fn without_isup_on_the_list_only_plain_anchored_sdp_arrives() {
    let mut sim = sim_with_isup(false);
    sim.send_from_core(0, &sip_i_invite("sipi-plain"));
    let inv_b = sim.take(1);
    assert_eq!(h(&inv_b, "Content-Type"), "application/sdp");
    let sdp = String::from_utf8_lossy(&inv_b.body).to_string();
    assert!(
        sdp.starts_with("v=0") && sdp.contains("c=IN IP4 127.0.40.2"),
        "{sdp}"
    );
    assert_no_leak(&sim, &["127.0.10.", "mgcf7", "ISUP-IAM"]);
}

#[test]
fn multipart_sdp_outside_offer_answer_never_crosses() {
    let mut sim = sim_with_isup(true);
    let msg = sip_i_invite("sipi-msg")
        .replace("INVITE sip:", "MESSAGE sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 MESSAGE");
    sim.send_from_core(0, &msg);
    let got = sim.take(1);
    assert_eq!(got.method().map(|m| m.as_str()), Some("MESSAGE"));
    let ct = got.headers.content_type().expect("the ISUP part is left");
    let parts = multipart::parse(&got.body, &ct.param("boundary").unwrap()).unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].body, ISUP.as_bytes());
    assert_no_leak(&sim, &["127.0.10.", "mgcf7.operator-a-core"]);
}
