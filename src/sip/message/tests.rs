use crate::sip::fields::{canonical_name, split_commas};
use crate::sip::{
    frame_stream, parse_message, Framing, Headers, Limits, Message, Method, ParseError,
    ParseErrorKind, StartLine,
};

const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn lim() -> Limits {
    Limits::default()
}

fn parse(s: &str) -> Result<Message, ParseError> {
    parse_message(s.as_bytes(), &lim())
}

fn reason(s: &str) -> String {
    parse(s).expect_err("should fail").reason
}

#[test]
fn methods() {
    assert_eq!(Method::parse("INVITE"), Some(Method::Invite));
    assert_eq!(
        Method::parse("invite"),
        Some(Method::Other("invite".into()))
    );
    assert_eq!(
        Method::parse("RE%47IST%45R").unwrap().as_str(),
        "RE%47IST%45R"
    );
    assert_eq!(Method::parse(""), None);
    assert_eq!(Method::parse("IN VITE"), None);
    assert_eq!(Method::parse("<X>"), None);
    assert_eq!(Method::Prack.to_string(), "PRACK");
}

#[test]
fn canonical_names() {
    assert_eq!(canonical_name("i"), "Call-ID");
    assert_eq!(canonical_name("L"), "Content-Length");
    assert_eq!(canonical_name("call-id"), "Call-ID");
    assert_eq!(canonical_name("CSEQ"), "CSeq");
    assert_eq!(canonical_name("www-authenticate"), "WWW-Authenticate");
    assert_eq!(canonical_name("p-asserted-identity"), "P-Asserted-Identity");
    assert_eq!(canonical_name("mime-version"), "MIME-Version");
    assert_eq!(canonical_name("X-Custom"), "X-Custom");
    assert_eq!(canonical_name("z"), "z");
}

#[test]
fn parses_a_request() {
    let m = parse(INVITE).unwrap();
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(m.body, b"v=0\n");
    assert_eq!(
        m.headers.get("call-id"),
        Some("a84b4c76e66710@pc33.atlanta.example.com")
    );
    assert_eq!(m.headers.get("i"), m.headers.get("Call-ID"));
    assert_eq!(m.headers.count("v"), 1);
    let again = parse_message(&m.to_bytes(), &lim()).unwrap();
    assert_eq!(again, m);
}

#[test]
fn compact_folding_and_lws() {
    let msg = "OPTIONS sip:a@b SIP/2.0\r\n\
v: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
f : <sip:x@y>\r\n\
\x20;tag=1\r\n\
t:\t<sip:a@b>\r\n\
i:  c1\r\n\
CSEQ: 1\r\n\
\tOPTIONS\r\n\
X-Odd  :  keep  me  \r\n\
l: 0\r\n\r\n";
    let m = parse(msg).unwrap();
    let names: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "X-Odd",
            "Content-Length"
        ]
    );
    assert_eq!(m.headers.get("From"), Some("<sip:x@y> ;tag=1"));
    assert_eq!(m.headers.get("cseq"), Some("1 OPTIONS"));
    assert_eq!(m.headers.get("x-odd"), Some("keep  me"));
    let text = String::from_utf8(m.to_bytes()).unwrap();
    assert!(text.starts_with("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP"));
    assert!(text.ends_with("X-Odd: keep  me\r\nContent-Length: 0\r\n\r\n"));
}

#[test]
fn bare_lf_and_leading_crlf() {
    let lf = INVITE.replace("\r\n", "\n");
    let m = parse(&lf).unwrap();
    assert_eq!(m.body, b"v=0\n");
    let m2 = parse(&format!("\r\n\r\n{INVITE}")).unwrap();
    assert_eq!(m2.headers, parse(INVITE).unwrap().headers);
}

#[test]
fn content_length_rules() {
    // Trailing bytes past Content-Length are dropped.
    let m = parse(&format!("{INVITE}garbage")).unwrap();
    assert_eq!(m.body, b"v=0\n");
    assert_eq!(
        reason(&INVITE.replace("Content-Length: 4", "Content-Length: 5")),
        "Content-Length larger than message"
    );
    for bad in ["-1", "4a", "", "99999999999999999999999999", "+4", "4, 4"] {
        assert_eq!(
            reason(&INVITE.replace("Content-Length: 4", &format!("Content-Length: {bad}"))),
            "Bad Content-Length",
            "{bad}"
        );
    }
    assert_eq!(
        reason(&INVITE.replace("Content-Length: 4", "Content-Length: 4\r\nl: 4")),
        "Multiple values in single-value header"
    );
    // Absent: rest of the datagram.
    let m = parse(&INVITE.replace("Content-Length: 4\r\n", "")).unwrap();
    assert_eq!(m.body, b"v=0\n");
    // No empty line: header section ends with the datagram.
    let cut = INVITE.split("\r\n\r\n").next().unwrap();
    let m = parse(&cut.replace("Content-Length: 4", "Content-Length: 0")).unwrap();
    assert!(m.body.is_empty());
    assert_eq!(reason(cut), "Content-Length larger than message");
}

#[test]
fn limits() {
    let small = Limits {
        max_message_size: 100,
        max_headers: 256,
    };
    assert_eq!(
        parse_message(INVITE.as_bytes(), &small).unwrap_err().reason,
        "Message too large"
    );
    let few = Limits {
        max_message_size: 65_535,
        max_headers: 3,
    };
    let e = parse_message(INVITE.as_bytes(), &few).unwrap_err();
    assert_eq!(e.reason, "Too many headers");
    assert_eq!(e.headers.0.len(), 3);
}

#[test]
fn start_line_errors() {
    let with_start = |l: &str| {
        let rest = INVITE.split_once("\r\n").unwrap().1;
        reason(&format!("{l}\r\n{rest}"))
    };
    assert_eq!(with_start("INVITE  sip:bob@b SIP/2.0"), "Bad Request-Line");
    assert_eq!(with_start("INVITE sip:bob@b SIP/2.0 "), "Bad Request-Line");
    assert_eq!(with_start("INVITE <sip:bob@b> SIP/2.0"), "Bad Request-URI");
    assert_eq!(
        with_start("INVITE sip:bob@b SIP/3.0"),
        "Version Not Supported"
    );
    assert_eq!(with_start("INVITE sip:bob@b HTTP/1.1"), "Bad Request-Line");
    assert_eq!(with_start("INV<ITE sip:bob@b SIP/2.0"), "Bad Method");
    assert_eq!(with_start("INVITE sip:b?x=y SIP/2.0"), "Bad Request-URI");
    let e = parse(&INVITE.replace("INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE x"))
        .unwrap_err();
    assert!(e.is_request);
    assert!(e.headers.contains("Via"));
}

fn response(start: &str) -> Result<Message, ParseError> {
    parse(&format!(
        "{start}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ))
}

#[test]
fn status_lines() {
    let m = response("SIP/2.0 180 Ringing").unwrap();
    assert_eq!(m.status(), Some(180));
    assert_eq!(
        m.start,
        StartLine::Response {
            status: 180,
            reason: "Ringing".into()
        }
    );
    assert!(response("SIP/2.0 200 ").is_ok());
    assert!(response("SIP/2.0 200").is_ok());
    assert!(response("SIP/2.0 200 Très bien").is_ok());
    assert_eq!(
        response("SIP/2.0 099 X").unwrap_err().reason,
        "Bad Status-Code"
    );
    assert_eq!(
        response("SIP/2.0 700 X").unwrap_err().reason,
        "Bad Status-Code"
    );
    assert_eq!(
        response("SIP/2.0 2000 X").unwrap_err().reason,
        "Bad Status-Code"
    );
    assert_eq!(
        response("SIP/2.0 20 X").unwrap_err().reason,
        "Bad Status-Code"
    );
    let e = response("SIP/3.0 200 OK").unwrap_err();
    assert_eq!(e.reason, "Version Not Supported");
    assert_eq!(e.kind, ParseErrorKind::UnsupportedVersion);
    assert_eq!(e.kind.status(), 505);
    assert!(!e.is_request);
}

#[test]
fn header_byte_rules() {
    let with = |h: &[u8]| {
        let mut b = INVITE.as_bytes().to_vec();
        let at = INVITE.find("Content-Type").unwrap();
        b.splice(at..at, h.iter().copied());
        parse_message(&b, &lim())
    };
    assert_eq!(
        with(b"X: a\0b\r\n").unwrap_err().reason,
        "NUL byte in header"
    );
    assert_eq!(
        with(b"X: a\x01b\r\n").unwrap_err().reason,
        "Control character in header"
    );
    assert_eq!(
        with(b"X: a\rb\r\n").unwrap_err().reason,
        "Control character in header"
    );
    assert_eq!(
        with(b"X: \xff\xfe\r\n").unwrap_err().reason,
        "Invalid UTF-8 in header"
    );
    assert_eq!(with(b"no colon\r\n").unwrap_err().reason, "Bad header line");
    assert_eq!(
        with(b"Bad Name: x\r\n").unwrap_err().reason,
        "Bad header name"
    );
    // Escaped NUL inside a quoted string is a quoted-pair (RFC 4475 intmeth).
    assert!(with(b"X: \"a\\\0b\"\r\n").is_ok());
    assert!(with(b"X: \xc3\xa9t\xc3\xa9\r\n").is_ok());
    // Binary bodies are never decoded.
    let mut b = INVITE.replace("v=0\n", "").into_bytes();
    b.extend_from_slice(&[0, 0xff, 0xfe, b'\n']);
    assert_eq!(
        parse_message(&b, &lim()).unwrap().body,
        [0, 0xff, 0xfe, b'\n']
    );
}

#[test]
fn semantic_errors() {
    let without = |name: &str| {
        let kept: Vec<&str> = INVITE
            .split("\r\n")
            .filter(|l| !l.starts_with(&format!("{name}:")))
            .collect();
        reason(&kept.join("\r\n"))
    };
    assert_eq!(without("Via"), "Missing Via");
    assert_eq!(without("From"), "Missing From");
    assert_eq!(without("To"), "Missing To");
    assert_eq!(without("Call-ID"), "Missing Call-ID");
    assert_eq!(without("CSeq"), "Missing CSeq");
    assert!(parse(&INVITE.replace("Max-Forwards: 70\r\n", "")).is_ok());
    let sub = |a: &str, b: &str| reason(&INVITE.replace(a, b));
    assert_eq!(sub("SIP/2.0/UDP pc33", "SIP/2.0/ pc33"), "Bad Via");
    assert_eq!(sub("From: Alice", "From: Al,ice"), "Bad From");
    assert_eq!(sub("To: Bob", "To: \"Bob"), "Bad To");
    assert_eq!(sub("CSeq: 314159 INVITE", "CSeq: x INVITE"), "Bad CSeq");
    assert_eq!(
        sub("CSeq: 314159 INVITE", "CSeq: 1 ACK"),
        "CSeq method mismatch"
    );
    assert_eq!(
        sub("Max-Forwards: 70", "Max-Forwards: 256"),
        "Bad Max-Forwards"
    );
    assert_eq!(
        sub("Max-Forwards: 70", "Max-Forwards: -1"),
        "Bad Max-Forwards"
    );
    assert_eq!(
        sub("Max-Forwards: 70", "Max-Forwards: 70\r\nMax-Forwards: 70"),
        "Multiple values in single-value header"
    );
    assert_eq!(
        sub("CSeq: 314159 INVITE", "CSeq: 1 INVITE\r\nCSeq: 2 INVITE"),
        "Multiple values in single-value header"
    );
    assert_eq!(sub("Call-ID: a84b", "Call-ID: a8 4b"), "Bad Call-ID");
    assert!(parse(&INVITE.replace("Max-Forwards: 70", "Max-Forwards: 0")).is_ok());
}

#[test]
fn headers_api() {
    let mut h = Headers::default();
    h.push(
        "v",
        "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
    );
    h.push("Route", "<sip:p1;lr>, \"x, y\" <sip:p2;lr>");
    h.push("route", "<sip:p3;lr>");
    h.push_front("Via", "SIP/2.0/UDP me;branch=z9hG4bK0");
    assert_eq!(h.0[0].name, "Via");
    assert_eq!(h.0[1].name, "Via");
    assert_eq!(h.count("via"), 2);
    assert_eq!(h.values("Via").len(), 3);
    assert_eq!(
        h.values("Route"),
        ["<sip:p1;lr>", "\"x, y\" <sip:p2;lr>", "<sip:p3;lr>"]
    );
    assert_eq!(h.lines("ROUTE").count(), 2);
    h.set("Route", "<sip:only;lr>");
    assert_eq!(h.lines("Route").collect::<Vec<_>>(), ["<sip:only;lr>"]);
    assert_eq!(h.0[2].name, "Route");
    h.set("Max-Forwards", "70");
    assert_eq!(h.0.last().unwrap().value, "70");
    assert_eq!(h.remove("v"), 2);
    assert!(!h.contains("Via"));
    assert_eq!(h.remove("Via"), 0);
    assert_eq!(
        split_commas("a, \"b,\\\"c\" <d,e>, , f"),
        ["a", "\"b,\\\"c\" <d,e>", "", "f"]
    );
}

#[test]
fn to_bytes_content_length_last() {
    let mut m = parse(INVITE).unwrap();
    m.body = b"hello\0\xff".to_vec();
    m.headers.push("X-After", "1");
    let out = m.to_bytes();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("X-After: 1\r\nContent-Length: 7\r\n\r\nhello"));
    assert_eq!(text.matches("Content-Length").count(), 1);
    assert_eq!(parse_message(&out, &lim()).unwrap().body, m.body);
}

#[test]
fn frame_stream_cases() {
    let l = lim();
    let one = INVITE.as_bytes();
    assert_eq!(
        frame_stream(one, &l),
        Framing::Complete {
            skip: 0,
            len: one.len()
        }
    );
    // Partial: any strict prefix is incomplete.
    for cut in [0, 1, 10, one.len() - 5, one.len() - 1] {
        assert_eq!(frame_stream(&one[..cut], &l), Framing::Incomplete, "{cut}");
    }
    // Two messages back to back.
    let two = [one, one].concat();
    assert_eq!(
        frame_stream(&two, &l),
        Framing::Complete {
            skip: 0,
            len: one.len()
        }
    );
    // CRLF keepalives before a message, and alone.
    let ka = [b"\r\n\r\n".as_slice(), one].concat();
    assert_eq!(
        frame_stream(&ka, &l),
        Framing::Complete {
            skip: 4,
            len: 4 + one.len()
        }
    );
    assert_eq!(
        frame_stream(b"\r\n\r\n", &l),
        Framing::Complete { skip: 4, len: 4 }
    );
    assert_eq!(
        frame_stream(b"\r\n", &l),
        Framing::Complete { skip: 2, len: 2 }
    );
    assert_eq!(
        frame_stream(b"\r\n\r", &l),
        Framing::Complete { skip: 2, len: 2 }
    );
    assert_eq!(frame_stream(b"\r", &l), Framing::Incomplete);
    assert_eq!(frame_stream(b"", &l), Framing::Incomplete);
    // Missing, bad or conflicting Content-Length.
    let no_cl = INVITE.replace("Content-Length: 4\r\n", "");
    assert_eq!(
        frame_stream(no_cl.as_bytes(), &l),
        Framing::Invalid("Missing Content-Length")
    );
    let bad = INVITE.replace("Content-Length: 4", "Content-Length: -4");
    assert_eq!(
        frame_stream(bad.as_bytes(), &l),
        Framing::Invalid("Bad Content-Length")
    );
    let two_cl = INVITE.replace("Content-Length: 4", "Content-Length: 4\r\nl: 5");
    assert!(matches!(
        frame_stream(two_cl.as_bytes(), &l),
        Framing::Invalid(_)
    ));
    // Compact form and bare LF.
    let compact = INVITE
        .replace("Content-Length: 4", "l:4")
        .replace("\r\n", "\n");
    assert_eq!(
        frame_stream(compact.as_bytes(), &l),
        Framing::Complete {
            skip: 0,
            len: compact.len()
        }
    );
    // Oversize: declared body too big, or a header section that never ends.
    let huge = INVITE.replace("Content-Length: 4", "Content-Length: 70000");
    assert_eq!(
        frame_stream(huge.as_bytes(), &l),
        Framing::Invalid("Message too large")
    );
    let endless = vec![b'a'; 70_000];
    assert_eq!(
        frame_stream(&endless, &l),
        Framing::Invalid("Message too large")
    );
    assert_eq!(frame_stream(&endless[..1000], &l), Framing::Incomplete);
    let overflow = INVITE.replace("Content-Length: 4", "Content-Length: 99999999999999999999");
    assert!(matches!(
        frame_stream(overflow.as_bytes(), &l),
        Framing::Invalid(_)
    ));
}
