use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn sdp(text: &str) -> Sdp {
    parse(text.as_bytes()).expect("valid SDP")
}

const BASIC: &str = "v=0\no=- 1 2 IN IP4 192.0.2.10\ns=-\nc=IN IP4 192.0.2.10\nt=0 0\nm=audio 49170 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n";

#[test]
fn parses_lf_and_outputs_crlf() {
    let s = sdp(BASIC);
    let out = String::from_utf8(s.to_bytes()).unwrap();
    assert!(out.starts_with("v=0\r\no=- 1 2 IN IP4 192.0.2.10\r\n"));
    assert_eq!(out.matches("\r\n").count(), 7);
    assert_eq!(parse(out.as_bytes()).unwrap(), s);
}

#[test]
fn media_basic() {
    let m = sdp(BASIC).media();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, "audio");
    assert_eq!(m[0].port, 49170);
    assert_eq!(m[0].proto, "RTP/AVP");
    assert_eq!(m[0].direction, Direction::SendRecv);
    assert_eq!(m[0].rtp_remote(), Some("192.0.2.10:49170".parse().unwrap()));
    assert_eq!(
        m[0].rtcp_remote(),
        Some("192.0.2.10:49171".parse().unwrap())
    );
}

#[test]
fn errors_carry_line_numbers_and_kinds() {
    use SdpErrorKind::*;
    let cases: &[(&[u8], usize, SdpErrorKind)] = &[
        (b"", 1, Empty),
        (b"o=- 1 2 IN IP4 1.2.3.4\n", 1, MissingVersion),
        (b"v=1\n", 1, MissingVersion),
        (b"v=0\r\ns=-\r\ngarbage\r\n", 3, BadLine),
        (b"v=0\ns=-\nc=IN IP4 999.1.1.1\n", 3, BadConnection),
        (b"v=0\ns=-\nc=IN IP6 1.1.1.1\n", 3, BadConnection),
        (b"v=0\ns=-\nm=audio 70000 RTP/AVP 0\n", 3, BadMedia),
        (b"v=0\ns=-\nm=audio\n", 3, BadMedia),
        (b"v=0\ns=-\na=rtcp:x\n", 3, BadAttribute),
        (b"v=0\ns=-\na=rtcp:9 IN IP4\n", 3, BadAttribute),
        (b"v=0\ns=-\no=- 1 IN IP4 1.2.3.4\n", 3, BadOrigin),
        (b"v=0\ns=-\nA=x\n", 3, BadLine),
        (b"v=0\ns=-\na=x\x01y\n", 3, ControlCharacter),
        (b"v=0\ns=-\na=x\ry\n", 3, ControlCharacter),
        (b"v=0\ns=-\n\na=\xff\n", 4, NotUtf8),
    ];
    for (body, line, kind) in cases {
        let e = parse(body).unwrap_err();
        assert_eq!((e.line, e.kind), (*line, *kind), "{e}");
        assert!(!e.reason.is_empty());
    }
}

#[test]
fn line_cap() {
    let mut body = String::from("v=0\n");
    for _ in 0..MAX_LINES {
        body.push_str("a=x\n");
    }
    let e = parse(body.as_bytes()).unwrap_err();
    assert_eq!(e.line, MAX_LINES + 1);
    assert_eq!(e.kind, SdpErrorKind::TooManyLines);
}

#[test]
fn candidates_lenient() {
    assert!(parse_candidate("1 1 udp 100 abcd.local 5000 typ host").is_none());
    assert!(parse_candidate("1 1 udp 100 192.0.2.1 5000").is_none());
    let c = parse_candidate("842163049 1 udp 1677729535 198.51.100.1 61022 typ srflx raddr 0.0.0.0 rport 0 generation 0").unwrap();
    assert_eq!(c.typ, "srflx");
    assert_eq!(c.addr, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
}

#[test]
fn rewrite_basic_v6_anchor() {
    let a = Anchor {
        addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        rtp_port: 30000,
        rtcp_port: Some(30001),
    };
    let out = sdp(BASIC).rewrite(&[Some(a)], IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "v=0",
            "o=- 1 2 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP6 2001:db8::1",
            "t=0 0",
            "m=audio 30000 RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000"
        ]
    );
}

#[test]
fn rewrite_inserts_media_c_when_anchors_differ() {
    let body = "v=0\no=- 1 2 IN IP4 192.0.2.10\ns=-\nc=IN IP4 192.0.2.10\nt=0 0\nm=audio 49170 RTP/AVP 0\nm=video 49172 RTP/AVP 96\ni=cam\nb=AS:500\n";
    let a1 = Anchor {
        addr: "10.0.0.1".parse().unwrap(),
        rtp_port: 1000,
        rtcp_port: Some(1001),
    };
    let a2 = Anchor {
        addr: "10.0.0.2".parse().unwrap(),
        rtp_port: 2000,
        rtcp_port: Some(2001),
    };
    let out = sdp(body).rewrite(&[Some(a1), Some(a2)], "10.0.0.9".parse().unwrap());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[3..],
        [
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=audio 1000 RTP/AVP 0",
            "m=video 2000 RTP/AVP 96",
            "c=IN IP4 10.0.0.2",
            "b=AS:500"
        ]
    );
    let m = out.media();
    assert_eq!(m[0].rtp_remote(), Some("10.0.0.1:1000".parse().unwrap()));
    assert_eq!(m[1].rtp_remote(), Some("10.0.0.2:2000".parse().unwrap()));
}

#[test]
fn rewrite_none_anchor_rejects_and_drops_addresses() {
    let body = "v=0\no=- 1 2 IN IP4 192.0.2.10\ns=-\nt=0 0\nm=audio 49170 RTP/AVP 0\nc=IN IP4 192.0.2.10\na=rtcp:49171 IN IP4 192.0.2.10\na=candidate:1 1 udp 1 192.0.2.10 49170 typ host\n";
    let out = sdp(body).rewrite(&[], "10.0.0.9".parse().unwrap());
    let text = String::from_utf8(out.to_bytes()).unwrap();
    assert!(!text.contains("192.0.2.10"), "{text}");
    assert!(text.contains("m=audio 0 RTP/AVP 0\r\n"));
    assert!(!text.contains("a=candidate"));
    assert!(!text.contains("a=rtcp"));
}

#[test]
fn port_count_and_zero_port() {
    let body = "v=0\ns=-\nc=IN IP4 192.0.2.1\nm=video 49170/2 RTP/AVP 31\nm=audio 0/2 RTP/AVP 0\n";
    let a = Anchor {
        addr: "10.0.0.1".parse().unwrap(),
        rtp_port: 4000,
        rtcp_port: None,
    };
    let out = sdp(body).rewrite(&[Some(a), Some(a)], "10.0.0.1".parse().unwrap());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[3], "m=video 4000 RTP/AVP 31");
    assert_eq!(lines[4], "m=audio 0/2 RTP/AVP 0");
}

#[test]
fn bundle_groups_parsed() {
    let s = sdp(
        "v=0\ns=-\na=group:BUNDLE 0 1\na=group:LS 0 1\nm=audio 9 RTP/AVP 0\na=group:BUNDLE x\n",
    );
    assert_eq!(
        s.bundle_groups(),
        vec![vec!["0".to_string(), "1".to_string()]]
    );
}

#[test]
fn session_level_address_attributes_dropped() {
    let body = "v=0\no=- 1 2 IN IP4 192.0.2.10\ns=-\na=rtcp:5001 IN IP4 192.0.2.11\na=candidate:1 1 udp 1 192.0.2.12 5000 typ host\na=remote-candidates:1 192.0.2.13 5000\nc=IN IP4 192.0.2.10\nt=0 0\nm=audio 49170 RTP/AVP 0\n";
    let a = Anchor {
        addr: "10.0.0.1".parse().unwrap(),
        rtp_port: 1000,
        rtcp_port: Some(1001),
    };
    let out = sdp(body).rewrite(&[Some(a)], "10.0.0.9".parse().unwrap());
    let text = String::from_utf8(out.to_bytes()).unwrap();
    assert!(!text.contains("192.0.2."), "{text}");
    assert!(!text.contains("a=candidate"), "{text}");
}

#[test]
fn rewrite_drops_what_names_people_sites_and_software() {
    let body = "v=0\no=alice.scscf3 1 2 IN IP4 192.0.2.10\ns=Conference at site-7\ni=floor 3\nu=http://intranet.example/\ne=noc@core.internal\np=+49 30 1234\nc=IN IP4 192.0.2.10\nt=0 0\na=tool:InternalMixer 4.2\nm=audio 49170 RTP/AVP 0\ni=mic 2\na=tool:x\n";
    let a = Anchor {
        addr: "10.0.0.1".parse().unwrap(),
        rtp_port: 1000,
        rtcp_port: None,
    };
    let out = sdp(body).rewrite(&[Some(a)], "10.0.0.1".parse().unwrap());
    let text: Vec<&str> = out.lines().collect();
    assert_eq!(
        text,
        [
            "v=0",
            "o=- 1 2 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=audio 1000 RTP/AVP 0"
        ]
    );
}

#[test]
fn rewrite_of_a_declined_msrp_stream_keeps_no_path() {
    let body = "v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=message 2855 TCP/MSRP *\na=accept-types:text/plain\na=path:msrp://10.1.1.1:2855/abc;tcp\n";
    let out = sdp(body).rewrite(&[None], "10.0.0.1".parse().unwrap());
    let text = String::from_utf8(out.to_bytes()).unwrap();
    assert!(text.contains("m=message 0 TCP/MSRP *"), "{text}");
    assert!(!text.contains("10.1.1.1"), "{text}");
}

#[test]
fn without_ice_strips_every_ice_attribute_and_keeps_the_rest() {
    let body = "v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\na=ice-lite\na=ice-options:trickle\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 4000 RTP/AVP 0\na=ice-ufrag:abcd\na=ice-pwd:0123456789abcdefghijkl\na=candidate:1 1 udp 2130706431 10.1.1.1 4000 typ host\na=end-of-candidates\na=rtpmap:0 PCMU/8000\na=sendrecv\n";
    let out = sdp(body).without_ice();
    let text: Vec<&str> = out.lines().collect();
    assert_eq!(
        text,
        [
            "v=0",
            "o=- 1 1 IN IP4 10.1.1.1",
            "s=-",
            "c=IN IP4 10.1.1.1",
            "t=0 0",
            "m=audio 4000 RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
            "a=sendrecv"
        ]
    );
}
