//! SDP anchoring on realistic offers and answers: what the relay reads, what the far side sees.

use std::net::{IpAddr, SocketAddr};

use palisade::sdp::{self, Anchor, Direction, Sdp};
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sdp")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(name: &str) -> Sdp {
    sdp::parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test socket address")
}

fn text(s: &Sdp) -> String {
    String::from_utf8(s.to_bytes()).expect("output is UTF-8")
}

const ORIGIN: &str = "203.0.113.250";

fn anchor(addr: &str, rtp: u16, rtcp: Option<u16>) -> Anchor {
    Anchor {
        addr: ip(addr),
        rtp_port: rtp,
        rtcp_port: rtcp,
    }
}

/// Lines Palisade owns (rewritten, dropped or inserted); everything else must survive verbatim.
/// `s=` and the free-text and contact fields (`i=`, `u=`, `e=`, `p=`, `a=tool`) name people,
/// sites and software, so they are the border's too (`s=-`, the others dropped).
fn owned(line: &str) -> bool {
    line.starts_with("o=")
        || line.starts_with("s=")
        || ["i=", "u=", "e=", "p=", "a=tool:", "a=path:"]
            .iter()
            .any(|p| line.starts_with(p))
        || line.starts_with("c=")
        || line.starts_with("m=")
        || line.starts_with("a=candidate:")
        || line.starts_with("a=rtcp:")
        || line.starts_with("a=remote-candidates")
}

fn not_owned(s: &Sdp) -> Vec<String> {
    s.lines().filter(|l| !owned(l)).map(str::to_owned).collect()
}

/// Every address and port (≥ 1024: low ports collide with payload types) the input reveals in
/// `o=`, `c=`, `m=`, `a=candidate` (incl. raddr/rport) and `a=rtcp`.
fn revealed(s: &Sdp) -> (Vec<String>, Vec<String>) {
    let mut addrs = Vec::new();
    let mut ports = Vec::new();
    for line in s.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with("o=") || line.starts_with("c=") {
            addrs.push(fields.last().unwrap().split('/').next().unwrap().to_owned());
        } else if line.starts_with("m=") {
            ports.push(fields[1].to_owned());
        } else if let Some(v) = line.strip_prefix("a=rtcp:") {
            let f: Vec<&str> = v.split_whitespace().collect();
            ports.push(f[0].to_owned());
            if let Some(a) = f.get(3) {
                addrs.push((*a).to_owned());
            }
        } else if line.starts_with("a=candidate:") {
            addrs.push(fields[4].to_owned());
            ports.push(fields[5].to_owned());
            for (k, f) in fields.iter().enumerate() {
                if *f == "raddr" {
                    addrs.push(fields[k + 1].to_owned());
                }
                if *f == "rport" {
                    ports.push(fields[k + 1].to_owned());
                }
            }
        }
    }
    ports.retain(|p| p.parse::<u16>().is_ok_and(|p| p >= 1024));
    (addrs, ports)
}

fn assert_no_leak(input: &Sdp, output: &Sdp, anchors: &[&str]) {
    let out = text(output);
    let (addrs, ports) = revealed(input);
    for a in &addrs {
        if anchors.contains(&a.as_str()) || a == ORIGIN {
            continue;
        }
        assert!(!out.contains(a.as_str()), "address {a} leaked:\n{out}");
    }
    let tokens: Vec<&str> = out
        .split(|c: char| c.is_whitespace() || c == ':' || c == '/' || c == '=')
        .collect();
    for p in &ports {
        assert!(!tokens.contains(&p.as_str()), "port {p} leaked:\n{out}");
    }
}

fn candidates(s: &Sdp) -> Vec<Vec<String>> {
    let mut per_media = Vec::new();
    for line in s.lines() {
        if line.starts_with("m=") {
            per_media.push(Vec::new());
        } else if line.starts_with("a=candidate:") {
            if let Some(v) = per_media.last_mut() {
                v.push(line.to_owned());
            }
        }
    }
    per_media
}

fn reparse(s: &Sdp) -> Sdp {
    let again = sdp::parse(&s.to_bytes()).expect("rewritten SDP parses");
    assert_eq!(&again, s);
    again
}

// 1. Browser WebRTC offer.

#[test]
fn chrome_offer_reads() {
    let offer = load("chrome_offer.sdp");
    assert_eq!(
        offer.bundle_groups(),
        vec![vec!["0".to_owned(), "1".to_owned()]]
    );
    let m = offer.media();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].kind, "audio");
    assert_eq!(m[1].kind, "video");
    assert_eq!(m[0].proto, "UDP/TLS/RTP/SAVPF");
    assert_eq!(m[0].mid.as_deref(), Some("0"));
    assert_eq!(m[1].mid.as_deref(), Some("1"));
    assert!(m[0].rtcp_mux && m[1].rtcp_mux);
    assert_eq!(m[0].direction, Direction::SendRecv);
    // The mDNS candidate (`*.local`) is not an IP literal and is not listed.
    assert_eq!(m[0].candidates.len(), 5);
    assert_eq!(m[1].candidates.len(), 5);
    assert!(m[0].candidates.iter().any(|c| c.typ == "relay"));
    assert!(m[0].candidates.iter().any(|c| c.transport == "tcp"));
    // c= is a real address: the default candidate decides.
    assert_eq!(m[0].rtp_remote(), Some(sa("203.0.113.7:54400")));
    assert_eq!(m[0].rtcp_remote(), Some(sa("203.0.113.7:54400")));
    assert_eq!(m[0].rtcp, Some(sa("0.0.0.0:9")));
}

#[test]
fn chrome_offer_rewrite_is_lossless_and_leak_free() {
    let offer = load("chrome_offer.sdp");
    // One bundle: one relay flow, the same anchor for both m-lines.
    let a = anchor("192.0.2.1", 40000, None);
    let out = offer.rewrite(&[Some(a), Some(a)], ip(ORIGIN));
    let out = reparse(&out);

    assert_no_leak(&offer, &out, &["192.0.2.1"]);
    assert_eq!(not_owned(&offer), not_owned(&out));

    let t = text(&out);
    assert!(t.starts_with("v=0\r\no=- 4611731400430051336 2 IN IP4 203.0.113.250\r\n"));
    assert!(!t.contains("\n\n") && !t.replace("\r\n", "").contains('\n'));

    let cands = candidates(&out);
    assert_eq!(cands.len(), 2);
    for c in &cands {
        assert_eq!(
            c,
            &["a=candidate:1 1 udp 2130706431 192.0.2.1 40000 typ host".to_owned()]
        );
    }
    let m = out.media();
    for mi in &m {
        assert_eq!(mi.port, 40000);
        assert_eq!(mi.connection, Some(ip("192.0.2.1")));
        assert_eq!(mi.rtp_remote(), Some(sa("192.0.2.1:40000")));
        assert_eq!(mi.rtcp, Some(sa("192.0.2.1:40000")));
    }
    // The candidate sits where the first original one was: right after a=rtcp.
    let lines: Vec<&str> = out.lines().collect();
    let rtcp = lines.iter().position(|l| l.starts_with("a=rtcp:")).unwrap();
    assert!(lines[rtcp + 1].starts_with("a=candidate:1 1 "));
    assert_eq!(lines[rtcp + 2], "a=ice-ufrag:EsAw");
}

#[test]
fn chrome_offer_accepts_crlf_and_lf_alike() {
    let lf = fixture("chrome_offer.sdp");
    let crlf = String::from_utf8(lf.clone()).unwrap().replace('\n', "\r\n");
    assert_eq!(
        sdp::parse(&lf).unwrap(),
        sdp::parse(crlf.as_bytes()).unwrap()
    );
    assert_eq!(sdp::parse(&lf).unwrap().to_bytes(), crlf.as_bytes());
}

#[test]
fn trickle_offer_without_candidates_gets_one_before_end_of_candidates() {
    let offer = load("chrome_trickle_offer.sdp");
    let m = offer.media();
    // Port 9 and c=0.0.0.0, no candidates yet: no far end known.
    assert_eq!(m[0].rtp_remote(), None);
    let out = offer.rewrite(&[Some(anchor("192.0.2.1", 40002, None))], ip(ORIGIN));
    let lines: Vec<&str> = out.lines().collect();
    let eoc = lines
        .iter()
        .position(|l| *l == "a=end-of-candidates")
        .unwrap();
    assert_eq!(
        lines[eoc - 1],
        "a=candidate:1 1 udp 2130706431 192.0.2.1 40002 typ host"
    );
    assert_eq!(candidates(&out), vec![vec![lines[eoc - 1].to_owned()]]);
    assert!(lines.contains(&"a=rtcp:40002 IN IP4 192.0.2.1"));
    assert!(!text(&out).contains("0.0.0.0"));
    assert_eq!(not_owned(&offer), not_owned(&out));
}

#[test]
fn ice_without_rtcp_mux_gets_two_components_and_remote_candidates_dropped() {
    let body = "v=0\r\no=- 1 1 IN IP4 192.168.0.2\r\ns=-\r\nc=IN IP4 192.168.0.2\r\nt=0 0\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
m=audio 5000 RTP/AVP 0\r\na=rtcp:5001\r\n\
a=candidate:1 1 UDP 2130706431 192.168.0.2 5000 typ host\r\n\
a=candidate:1 2 UDP 2130706430 192.168.0.2 5001 typ host\r\n\
a=remote-candidates:1 198.51.100.3 7000 2 198.51.100.3 7001\r\n\
a=rtpmap:0 PCMU/8000\r\n";
    let offer = sdp::parse(body.as_bytes()).unwrap();
    let out = offer.rewrite(&[Some(anchor("192.0.2.1", 40010, Some(40011)))], ip(ORIGIN));
    assert_no_leak(&offer, &out, &[]);
    assert!(!text(&out).contains("198.51.100.3"));
    assert!(!text(&out).contains("remote-candidates"));
    assert_eq!(
        candidates(&out),
        vec![vec![
            "a=candidate:1 1 udp 2130706431 192.0.2.1 40010 typ host".to_owned(),
            "a=candidate:1 2 udp 2130706430 192.0.2.1 40011 typ host".to_owned(),
        ]]
    );
    assert!(out.lines().any(|l| l == "a=rtcp:40011 IN IP4 192.0.2.1"));
    let m = &out.media()[0];
    assert_eq!(m.rtcp_remote(), Some(sa("192.0.2.1:40011")));
}

// 2. IMS terminal offer.

#[test]
fn ims_offer_preconditions_and_separate_rtcp() {
    let offer = load("ims_amr_offer.sdp");
    let m = offer.media();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].proto, "RTP/AVP");
    assert!(!m[0].rtcp_mux);
    assert_eq!(m[0].rtcp, Some(sa("10.20.30.40:31001")));
    assert_eq!(m[0].rtp_remote(), Some(sa("10.20.30.40:31000")));
    assert_eq!(m[0].rtcp_remote(), Some(sa("10.20.30.40:31001")));

    let out = offer.rewrite(&[Some(anchor("192.0.2.1", 50000, Some(50001)))], ip(ORIGIN));
    let out = reparse(&out);
    assert_no_leak(&offer, &out, &[]);
    assert_eq!(not_owned(&offer), not_owned(&out));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "o=- 1284924410 1284924410 IN IP4 203.0.113.250");
    assert_eq!(lines[3], "c=IN IP4 192.0.2.1");
    assert!(lines.contains(&"m=audio 50000 RTP/AVP 116 107 118 96 111 110"));
    assert!(lines.contains(&"a=rtcp:50001 IN IP4 192.0.2.1"));
    for keep in [
        "a=curr:qos local none",
        "a=curr:qos remote none",
        "a=des:qos mandatory local sendrecv",
        "a=des:qos optional remote sendrecv",
        "a=ptime:20",
        "a=maxptime:240",
        "b=AS:49",
        "a=x-vendor-private:keep me",
    ] {
        assert!(lines.contains(&keep), "{keep} missing");
    }
    // No ICE in use: no candidate is invented.
    assert!(!lines.iter().any(|l| l.starts_with("a=candidate")));
}

// 3. SDES-SRTP.

#[test]
fn sdes_crypto_kept_verbatim() {
    let offer = load("sdes_srtp_offer.sdp");
    let crypto: Vec<String> = offer
        .lines()
        .filter(|l| l.starts_with("a=crypto:"))
        .map(str::to_owned)
        .collect();
    assert_eq!(crypto.len(), 2);
    let out = offer.rewrite(&[Some(anchor("192.0.2.1", 50002, Some(50003)))], ip(ORIGIN));
    let out_crypto: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("a=crypto:"))
        .map(str::to_owned)
        .collect();
    assert_eq!(crypto, out_crypto);
    assert_eq!(not_owned(&offer), not_owned(&out));
    assert_no_leak(&offer, &out, &[]);
    assert_eq!(out.media()[0].proto, "RTP/SAVP");
}

// 4. Hold / resume.

#[test]
fn hold_directions_media_level() {
    let s = load("hold_sendonly.sdp");
    let m = s.media();
    assert_eq!(m[0].direction, Direction::SendOnly);
    assert_eq!(m[1].direction, Direction::Inactive);
    let a = anchor("192.0.2.1", 50004, Some(50005));
    let v = anchor("192.0.2.1", 50006, Some(50007));
    let out = s.rewrite(&[Some(a), Some(v)], ip(ORIGIN));
    assert!(out
        .lines()
        .any(|l| l == "o=- 2890844526 2890844527 IN IP4 203.0.113.250"));
    let m = out.media();
    assert_eq!(m[0].direction, Direction::SendOnly);
    assert_eq!(m[1].direction, Direction::Inactive);
    assert_eq!(m[1].port, 50006);
}

#[test]
fn hold_directions_session_level_and_old_style_hold() {
    let s = load("hold_session_inactive.sdp");
    let m = s.media();
    assert_eq!(m[0].direction, Direction::Inactive);
    assert_eq!(m[1].direction, Direction::RecvOnly);
    // RFC 2543 hold: c=0.0.0.0 — no far end to send to.
    assert_eq!(m[0].connection, Some(ip("0.0.0.0")));
    assert_eq!(m[0].rtp_remote(), None);
    assert_eq!(m[0].rtcp_remote(), None);
    let out = s.rewrite(
        &[
            Some(anchor("192.0.2.1", 50010, Some(50011))),
            Some(anchor("192.0.2.1", 50012, Some(50013))),
        ],
        ip(ORIGIN),
    );
    assert!(!text(&out).contains("0.0.0.0"));
    assert!(out
        .lines()
        .any(|l| l == "o=- 2890844526 2890844528 IN IP4 203.0.113.250"));

    // Resume: the same session, version bumped, no direction attribute.
    let resumed = text(&s)
        .replace("2890844528", "2890844529")
        .replace("a=inactive\r\n", "")
        .replace("a=recvonly\r\n", "")
        .replace("0.0.0.0", "192.0.2.55");
    let r = sdp::parse(resumed.as_bytes()).unwrap();
    assert!(r.media().iter().all(|m| m.direction == Direction::SendRecv));
    assert_eq!(r.media()[0].rtp_remote(), Some(sa("192.0.2.55:20000")));
}

// 5. Port-0 streams; answers that differ from the offer.

#[test]
fn answer_with_rejected_video() {
    let answer = load("answer_rejected_video.sdp");
    let m = answer.media();
    assert_eq!(m.len(), 2);
    assert!(!m[0].is_rejected());
    assert!(m[1].is_rejected());
    assert_eq!(m[1].rtp_remote(), None);
    assert_eq!(m[1].rtcp_remote(), None);
    assert_eq!(m[0].rtcp_remote(), Some(sa("198.51.100.78:40001")));

    // The video stream is rejected: its anchor (even if given) is ignored, its port stays 0.
    let out = answer.rewrite(
        &[
            Some(anchor("192.0.2.1", 50020, Some(50021))),
            Some(anchor("192.0.2.1", 50022, Some(50023))),
        ],
        ip(ORIGIN),
    );
    assert_no_leak(&answer, &out, &[]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"m=audio 50020 RTP/AVP 0 101"));
    assert!(lines.contains(&"m=video 0 RTP/AVP 96"));
    assert!(lines.contains(&"a=rtcp:50021 IN IP4 192.0.2.1"));
    assert_eq!(not_owned(&answer), not_owned(&out));
}

#[test]
fn none_anchor_rejects_stream() {
    let offer = load("hold_sendonly.sdp");
    let out = offer.rewrite(
        &[Some(anchor("192.0.2.1", 50030, Some(50031))), None],
        ip(ORIGIN),
    );
    let m = out.media();
    assert_eq!(m[0].port, 50030);
    assert_eq!(m[1].port, 0);
    assert_no_leak(&offer, &out, &[]);
}

#[test]
fn answer_adding_and_removing_m_lines_parses_independently() {
    let offer = load("sdes_srtp_offer.sdp");
    let answer = sdp::parse(
        b"v=0\r\no=bob 1 1 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\nt=0 0\r\n\
m=audio 30000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4\r\n\
m=video 30002 RTP/SAVP 96\r\na=rtpmap:96 H264/90000\r\n",
    )
    .unwrap();
    assert_eq!(offer.media().len(), 1);
    assert_eq!(answer.media().len(), 2);
    assert_eq!(
        answer.media()[1].rtp_remote(),
        Some(sa("198.51.100.9:30002"))
    );
    let fewer = sdp::parse(b"v=0\r\no=bob 1 2 IN IP4 198.51.100.9\r\ns=-\r\nt=0 0\r\n").unwrap();
    assert!(fewer.media().is_empty());
    let out = fewer.rewrite(&[], ip(ORIGIN));
    assert_eq!(out.lines().nth(1), Some("o=- 1 2 IN IP4 203.0.113.250"));
}

#[test]
fn bundle_only_m_line_stays_port_zero() {
    let body = "v=0\r\no=- 1 1 IN IP4 198.51.100.9\r\ns=-\r\nt=0 0\r\na=group:BUNDLE a v\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
m=audio 6000 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 198.51.100.9\r\na=mid:a\r\na=rtcp-mux\r\n\
a=candidate:1 1 udp 2130706431 198.51.100.9 6000 typ host\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 198.51.100.9\r\na=bundle-only\r\na=mid:v\r\na=rtcp-mux\r\n";
    let offer = sdp::parse(body.as_bytes()).unwrap();
    assert_eq!(
        offer.bundle_groups(),
        vec![vec!["a".to_owned(), "v".to_owned()]]
    );
    let a = anchor("192.0.2.1", 50040, None);
    let out = offer.rewrite(&[Some(a), Some(a)], ip(ORIGIN));
    assert_no_leak(&offer, &out, &[]);
    let m = out.media();
    assert_eq!(m[0].port, 50040);
    assert_eq!(m[1].port, 0);
    assert_eq!(m[1].connection, Some(ip("192.0.2.1")));
    assert_eq!(candidates(&out)[1], Vec::<String>::new());
    assert_eq!(candidates(&out)[0].len(), 1);
}

// 6. IP version interworking.

#[test]
fn ipv4_source_to_ipv6_anchor() {
    let offer = load("ims_amr_offer.sdp");
    let out = offer.rewrite(
        &[Some(anchor("2001:db8::1", 50050, Some(50051)))],
        ip("2001:db8::fe"),
    );
    let out = reparse(&out);
    assert_no_leak(&offer, &out, &["2001:db8::1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "o=- 1284924410 1284924410 IN IP6 2001:db8::fe");
    assert_eq!(lines[3], "c=IN IP6 2001:db8::1");
    assert!(lines.contains(&"a=rtcp:50051 IN IP6 2001:db8::1"));
    assert_eq!(out.media()[0].rtp_remote(), Some(sa("[2001:db8::1]:50050")));
}

#[test]
fn ipv6_source_to_ipv4_anchor() {
    let offer = load("ipv6_offer.sdp");
    let m = offer.media();
    assert_eq!(m[0].rtp_remote(), Some(sa("[2001:db8:aa::10]:18000")));
    assert_eq!(m[0].rtcp_remote(), Some(sa("[2001:db8:aa::11]:18001")));
    let out = offer.rewrite(&[Some(anchor("192.0.2.1", 50060, Some(50061)))], ip(ORIGIN));
    let out = reparse(&out);
    assert_no_leak(&offer, &out, &[]);
    let t = text(&out);
    assert!(!t.contains("IP6"), "{t}");
    assert!(t.contains("o=- 5561 1 IN IP4 203.0.113.250\r\n"));
    assert!(t.contains("c=IN IP4 192.0.2.1\r\n"));
    assert!(t.contains("a=rtcp:50061 IN IP4 192.0.2.1\r\n"));
}

// 7. Far-end resolution.

fn one(body: &str) -> palisade::sdp::MediaInfo {
    let s = sdp::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{body}"));
    s.media().remove(0)
}

#[test]
fn remote_plain() {
    let m = one("v=0\ns=-\nc=IN IP4 192.0.2.7\nm=audio 4000 RTP/AVP 0\n");
    assert_eq!(m.rtp_remote(), Some(sa("192.0.2.7:4000")));
    assert_eq!(m.rtcp_remote(), Some(sa("192.0.2.7:4001")));
    assert_eq!(m.rtcp, None);
}

#[test]
fn remote_media_c_overrides_session_c() {
    let m = one("v=0\ns=-\nc=IN IP4 192.0.2.7\nm=audio 4000 RTP/AVP 0\nc=IN IP6 2001:db8::7\n");
    assert_eq!(m.rtp_remote(), Some(sa("[2001:db8::7]:4000")));
}

#[test]
fn remote_unspecified_connection_uses_best_candidates() {
    let m = one("v=0\ns=-\nc=IN IP4 0.0.0.0\nm=audio 4000 RTP/AVP 0\n\
a=candidate:A 1 udp 100 198.51.100.1 5000 typ srflx raddr 10.0.0.1 rport 5000\n\
a=candidate:B 1 udp 200 10.0.0.1 5002 typ host\n\
a=candidate:C 1 tcp 900 10.0.0.1 9 typ host tcptype active\n\
a=candidate:A 2 udp 99 198.51.100.1 5001 typ srflx raddr 10.0.0.1 rport 5001\n\
a=candidate:B 2 udp 199 10.0.0.1 5003 typ host\n");
    assert_eq!(m.rtp_remote(), Some(sa("10.0.0.1:5002")));
    assert_eq!(m.rtcp_remote(), Some(sa("10.0.0.1:5003")));
}

#[test]
fn remote_port_9_trickle_with_candidates() {
    let m = one(
        "v=0\ns=-\nc=IN IP4 203.0.113.1\nm=audio 9 UDP/TLS/RTP/SAVPF 111\na=rtcp:9 IN IP4 0.0.0.0\na=rtcp-mux\n\
a=candidate:1 1 udp 2122260223 192.0.2.44 51000 typ host\n\
a=candidate:2 1 udp 1686052607 203.0.113.1 62000 typ srflx raddr 192.0.2.44 rport 51000\n",
    );
    assert_eq!(m.rtp_remote(), Some(sa("192.0.2.44:51000")));
    assert_eq!(m.rtcp_remote(), Some(sa("192.0.2.44:51000")));
    // Without mux and without component 2: RFC 3605 default.
    let m = one("v=0\ns=-\nc=IN IP4 0.0.0.0\nm=audio 9 RTP/AVP 0\n\
a=candidate:1 1 udp 2122260223 192.0.2.44 51000 typ host\n");
    assert_eq!(m.rtcp_remote(), Some(sa("192.0.2.44:51001")));
}

#[test]
fn remote_explicit_rtcp_with_and_without_address() {
    let m = one("v=0\ns=-\nc=IN IP4 192.0.2.7\nm=audio 4000 RTP/AVP 0\na=rtcp:4444\n");
    assert_eq!(m.rtcp, Some(sa("192.0.2.7:4444")));
    assert_eq!(m.rtcp_remote(), Some(sa("192.0.2.7:4444")));
    let m =
        one("v=0\ns=-\nc=IN IP4 192.0.2.7\nm=audio 4000 RTP/AVP 0\na=rtcp:4444 IN IP4 192.0.2.8\n");
    assert_eq!(m.rtcp_remote(), Some(sa("192.0.2.8:4444")));
    let m = one("v=0\ns=-\nc=IN IP4 192.0.2.7\nm=audio 4000 RTP/AVP 0\na=rtcp:4444 IN IP4 192.0.2.8\na=rtcp-mux\n");
    assert_eq!(m.rtcp_remote(), Some(sa("192.0.2.7:4000")));
    let m = one("v=0\ns=-\nc=IN IP4 192.0.2.7\nm=audio 65535 RTP/AVP 0\n");
    assert_eq!(m.rtcp_remote(), None);
}

#[test]
fn remote_without_connection() {
    let m = one("v=0\ns=-\nm=audio 4000 RTP/AVP 0\n");
    assert_eq!(m.connection, None);
    assert_eq!(m.rtp_remote(), None);
}

// 8. Malformed input.

#[test]
fn malformed_inputs_are_errors_with_line_numbers() {
    use sdp::SdpErrorKind::*;
    let cases: &[(&[u8], usize, sdp::SdpErrorKind)] = &[
        (b"", 1, Empty),
        (b"\r\n\r\n", 1, Empty),
        (b"s=-\r\nv=0\r\n", 1, MissingVersion),
        (
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nhello world\r\n",
            3,
            BadLine,
        ),
        (b"v=0\r\ns=-\r\n=x\r\n", 3, BadLine),
        (b"v=0\r\ns=-\r\nm=audio abc RTP/AVP 0\r\n", 3, BadMedia),
        (b"v=0\r\ns=-\r\nm=audio -1 RTP/AVP 0\r\n", 3, BadMedia),
        (b"v=0\r\ns=-\r\nm=audio 65536 RTP/AVP 0\r\n", 3, BadMedia),
        (
            b"v=0\r\ns=-\r\nc=IN IP4 host.example.com\r\n",
            3,
            BadConnection,
        ),
        (b"v=0\r\ns=-\r\nc=IN IP4\r\n", 3, BadConnection),
        (b"v=0\r\ns=-\r\nc=XX IP4 192.0.2.1\r\n", 3, BadConnection),
        (b"v=0\r\ns=-\r\nt=0 0\r\na=\xc3\x28\r\n", 4, NotUtf8),
        (b"v=0\r\ns=-\r\nt=0 0\r\na=x\x00\r\n", 4, ControlCharacter),
    ];
    for (body, line, kind) in cases {
        let e = sdp::parse(body).expect_err(&String::from_utf8_lossy(body));
        assert_eq!(
            (e.line, e.kind),
            (*line, *kind),
            "{e} for {:?}",
            String::from_utf8_lossy(body)
        );
        assert!(!e.reason.is_empty());
    }
}

#[test]
fn huge_line_count_is_refused() {
    let mut body = b"v=0\r\n".to_vec();
    for _ in 0..100_000 {
        body.extend_from_slice(b"a=x\r\n");
    }
    let e = sdp::parse(&body).unwrap_err();
    assert_eq!(e.line, sdp::MAX_LINES + 1);
    assert_eq!(e.kind, sdp::SdpErrorKind::TooManyLines);
}

fn all_fixtures() -> Vec<Vec<u8>> {
    [
        "chrome_offer.sdp",
        "chrome_trickle_offer.sdp",
        "ims_amr_offer.sdp",
        "sdes_srtp_offer.sdp",
        "answer_rejected_video.sdp",
        "ipv6_offer.sdp",
        "hold_sendonly.sdp",
        "hold_session_inactive.sdp",
    ]
    .iter()
    .map(|n| fixture(n))
    .collect()
}

/// Parses, then exercises everything; valid input must round-trip and rewrite to valid SDP.
fn exercise(body: &[u8]) {
    let Ok(s) = sdp::parse(body) else { return };
    let again = sdp::parse(&s.to_bytes()).expect("to_bytes output parses");
    assert_eq!(again, s);
    assert_eq!(again.to_bytes(), s.to_bytes());
    let media = s.media();
    for m in &media {
        let _ = (m.rtp_remote(), m.rtcp_remote(), m.is_rejected());
    }
    let _ = s.bundle_groups();
    let anchors: Vec<Option<Anchor>> = media
        .iter()
        .map(|m| (m.index % 3 != 2).then(|| anchor("2001:db8::9", 1000, Some(1001))))
        .collect();
    let out = s.rewrite(&anchors, ip(ORIGIN));
    let re = sdp::parse(&out.to_bytes()).expect("rewritten output parses");
    assert_eq!(re.media().len(), media.len());
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Insert(usize, u8),
    Replace(usize, u8),
    Truncate(usize),
    DupLine(usize),
    SwapLines(usize, usize),
}

fn apply(body: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut b = body.to_vec();
    for m in muts {
        let len = b.len().max(1);
        match *m {
            Mutation::Delete(i) if !b.is_empty() => {
                b.remove(i % len);
            }
            Mutation::Insert(i, c) => b.insert(i % (b.len() + 1), c),
            Mutation::Replace(i, c) if !b.is_empty() => b[i % len] = c,
            Mutation::Truncate(i) => b.truncate(i % (b.len() + 1)),
            Mutation::DupLine(i) | Mutation::SwapLines(i, _) if b.is_empty() => {
                let _ = i;
            }
            Mutation::DupLine(i) => {
                let mut lines: Vec<Vec<u8>> =
                    b.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
                let k = i % lines.len();
                let l = lines[k].clone();
                lines.insert(k, l);
                b = lines.join(&b'\n');
            }
            Mutation::SwapLines(i, j) => {
                let mut lines: Vec<Vec<u8>> =
                    b.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
                let n = lines.len();
                lines.swap(i % n, j % n);
                b = lines.join(&b'\n');
            }
            _ => {}
        }
    }
    b
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![
        any::<u8>(),
        Just(b'\n'),
        Just(b'\r'),
        Just(b' '),
        Just(b'/'),
        Just(b':'),
        Just(b'0'),
        Just(b'9'),
        Just(b'='),
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), byte.clone()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        (any::<usize>(), byte).prop_map(|(i, c)| Mutation::Replace(i, c)),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::DupLine),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Mutation::SwapLines(i, j)),
    ]
}

#[test]
fn fixtures_round_trip() {
    for body in all_fixtures() {
        exercise(&body);
        assert!(sdp::parse(&body).is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_fixtures_never_panic(pick in 0usize..8, muts in prop::collection::vec(mutation(), 1..8)) {
        let fixtures = all_fixtures();
        let body = apply(&fixtures[pick % fixtures.len()], &muts);
        exercise(&body);
    }

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = sdp::parse(&body);
        let mut prefixed = b"v=0\r\n".to_vec();
        prefixed.extend_from_slice(&body);
        exercise(&prefixed);
    }
}
