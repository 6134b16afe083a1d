use super::*;
use crate::sip::{parse_message, Limits};

/// Parses, prints, and checks the print parses back to the same value.
fn round_trip<T: fmt::Display + PartialEq + fmt::Debug>(
    parse: fn(&str) -> Option<T>,
    s: &str,
) -> T {
    let v = parse(s).unwrap_or_else(|| panic!("{s:?} should parse"));
    let printed = v.to_string();
    assert_eq!(
        parse(&printed).as_ref(),
        Some(&v),
        "{s:?} printed as {printed:?}"
    );
    v
}

fn none_of<T: fmt::Debug>(parse: fn(&str) -> Option<T>, bad: &[&str]) {
    for b in bad {
        assert!(parse(b).is_none(), "{b:?} parsed as {:?}", parse(b));
    }
}

#[test]
fn rack_and_rseq() {
    // RFC 3262 §7.1, §7.2.
    let r = round_trip(RAck::parse, "776656 1 INVITE");
    assert_eq!(
        r,
        RAck {
            rseq: 776_656,
            cseq: 1,
            method: Method::Invite
        }
    );
    assert_eq!(r.to_string(), "776656 1 INVITE");
    let r = round_trip(RAck::parse, " 4294967295 \t 2147483647   UPDATE ");
    assert_eq!(
        (r.rseq, r.cseq, r.method),
        (u32::MAX, (1 << 31) - 1, Method::Update)
    );
    assert_eq!(
        RAck::parse("1 1 NEWTHING").unwrap().method,
        Method::Other("NEWTHING".into())
    );
    none_of(
        RAck::parse,
        &[
            "",
            "1",
            "1 1",
            "1 1 INVITE extra",
            "x 1 INVITE",
            "1 x INVITE",
            "-1 1 INVITE",
            "+1 1 INVITE",
            "4294967296 1 INVITE",
            "1 2147483648 INVITE",
            "1 1 INV<ITE",
            "1,1 INVITE",
        ],
    );

    assert_eq!(round_trip(RSeq::parse, "988789"), RSeq(988_789));
    assert_eq!(RSeq::parse(" 0042 "), Some(RSeq(42)));
    assert_eq!(RSeq(7).to_string(), "7");
    none_of(
        RSeq::parse,
        &["", "abc", "1 2", "-3", "+3", "4294967296", "1;x"],
    );
}

#[test]
fn subscription_state() {
    // RFC 6665 §8.2.3 grammar; values as in its examples.
    let s = round_trip(SubscriptionState::parse, "active;expires=60");
    assert_eq!(s.state, SubState::Active);
    assert_eq!(s.expires, Some(60));
    assert!(!s.is_terminated());
    let s = round_trip(SubscriptionState::parse, "terminated;reason=timeout");
    assert!(s.is_terminated());
    assert_eq!(s.reason.as_deref(), Some("timeout"));
    let s = round_trip(
        SubscriptionState::parse,
        "Terminated ; Reason = Probation ;  RETRY-AFTER=  3600;x-vendor=\"a;b\";flag",
    );
    assert_eq!(s.state, SubState::Terminated);
    assert_eq!(s.reason.as_deref(), Some("probation"));
    assert_eq!(s.retry_after, Some(3600));
    assert_eq!(s.expires, None);
    assert_eq!(s.params.value("x-vendor"), Some("\"a;b\""));
    assert_eq!(s.params.get("flag"), Some(None));
    assert_eq!(
        s.to_string(),
        "terminated;reason=probation;retry-after=3600;x-vendor=\"a;b\";flag"
    );
    let s = round_trip(SubscriptionState::parse, "pending");
    assert_eq!(s.state, SubState::Pending);
    let s = round_trip(SubscriptionState::parse, "Waiting;expires=99999999999");
    assert_eq!(s.state, SubState::Other("waiting".into()));
    assert_eq!(s.expires, Some(u32::MAX));
    none_of(
        SubscriptionState::parse,
        &[
            "",
            ";expires=60",
            "active expires=60",
            "active;expires=soon",
            "active;expires",
            "active;expires=-1",
            "active;expires=60;expires=70",
            "terminated;reason=\"timeout\"",
            "terminated;reason",
            "terminated;retry-after=",
            "active;",
            "act/ive",
        ],
    );
}

#[test]
fn event() {
    // RFC 6665 §8.2.1 grammar and its matching rule (the RFC 3265 §7.2.1 example).
    let e = round_trip(Event::parse, "presence");
    assert_eq!(e.package, "presence");
    assert!(e.templates.is_empty() && e.id.is_none());
    let e = round_trip(Event::parse, "presence.winfo");
    assert_eq!(
        (e.package.as_str(), e.templates.as_slice()),
        ("presence", &["winfo".to_string()][..])
    );
    let a = round_trip(Event::parse, "foo; id=1234");
    let b = round_trip(Event::parse, "foo; param=abcd; id=1234");
    let c = round_trip(Event::parse, "Foo; id=1234");
    let d = round_trip(Event::parse, "foo");
    assert_eq!(a.id.as_deref(), Some("1234"));
    assert_eq!(b.params.value("param"), Some("abcd"));
    assert!(a.matches(&b) && b.matches(&a));
    assert!(!a.matches(&c), "event types compare byte by byte");
    assert!(
        !a.matches(&d) && !d.matches(&a),
        "an id never matches its absence"
    );
    let e = round_trip(Event::parse, "refer ;ID = 93809824 ;x");
    assert_eq!(e.id.as_deref(), Some("93809824"));
    assert_eq!(e.to_string(), "refer;id=93809824;x");
    none_of(
        Event::parse,
        &[
            "",
            ";id=1",
            ".winfo",
            "presence.",
            "presence..winfo",
            "pres ence",
            "presence;id",
            "presence;id=\"q\"",
            "presence;id=1;id=2",
            "presence, dialog",
            "presence;",
        ],
    );
}

#[test]
fn content_type() {
    let c = round_trip(ContentType::parse, "application/sdp");
    assert!(c.is_sdp());
    let c = round_trip(
        ContentType::parse,
        "Application / SDP ; Charset = \"UTF-8\"",
    );
    assert!(c.is_sdp());
    assert_eq!(
        (c.mtype.as_str(), c.subtype.as_str()),
        ("application", "sdp")
    );
    assert_eq!(c.param("charset").as_deref(), Some("UTF-8"));
    assert_eq!(c.to_string(), "application/sdp;Charset=\"UTF-8\"");
    // RFC 3261 §20.15 examples.
    let c = round_trip(ContentType::parse, "text/html; charset=ISO-8859-4");
    assert!(c.is("TEXT", "Html") && !c.is_sdp());
    assert_eq!(c.param("CHARSET").as_deref(), Some("ISO-8859-4"));
    let c = round_trip(
        ContentType::parse,
        "multipart/mixed;boundary=\"unique \\\"boundary\\\"-1\"",
    );
    assert!(c.is("multipart", "mixed"));
    assert_eq!(
        c.param("boundary").as_deref(),
        Some("unique \"boundary\"-1")
    );
    assert!(!round_trip(ContentType::parse, "application/sdpx").is_sdp());
    none_of(
        ContentType::parse,
        &[
            "",
            "application",
            "application/",
            "/sdp",
            "application/sdp/x",
            "application sdp",
            "application/sdp;",
            "application/sdp;charset",
            "application/sdp;charset=",
            "application/sdp, text/plain",
        ],
    );
    // Refused by the parser, still SDP to the border (it must be anchored).
    for v in [
        "application/sdp;charset",
        " Application/SDP;",
        "application/sdp",
    ] {
        assert!(ContentType::names_sdp(v), "{v}");
    }
    for v in [
        "",
        "application/sd",
        "text/plain;x",
        "multipart/mixed;boundary=b",
    ] {
        assert!(!ContentType::names_sdp(v), "{v}");
    }
}

#[test]
fn replaces() {
    // RFC 3891 examples.
    let r = round_trip(
        Replaces::parse,
        "98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff",
    );
    assert_eq!(r.call_id, "98732@sip.example.com");
    assert_eq!(
        (r.to_tag.as_str(), r.from_tag.as_str()),
        ("ff87ff", "r33th4x0r")
    );
    assert!(!r.early_only);
    let r = round_trip(
        Replaces::parse,
        "12adf2f34456gs5;to-tag=12345;from-tag=54321;early-only",
    );
    assert!(r.early_only);
    assert_eq!(
        r.to_string(),
        "12adf2f34456gs5;to-tag=12345;from-tag=54321;early-only"
    );
    let r = round_trip(
        Replaces::parse,
        "87134@171.161.34.23;to-tag=24796;from-tag=0",
    );
    assert_eq!(r.from_tag, "0");
    let r = round_trip(
        Replaces::parse,
        " a84b4c76e66710 ; TO-TAG = x ; From-Tag=y ; ext=1 ",
    );
    assert_eq!((r.to_tag.as_str(), r.from_tag.as_str()), ("x", "y"));
    assert_eq!(r.params.value("ext"), Some("1"));
    none_of(
        Replaces::parse,
        &[
            "",
            ";to-tag=a;from-tag=b",
            "id;to-tag=a",
            "id;from-tag=b",
            "id;to-tag=a;from-tag=b;to-tag=c",
            "id;to-tag=;from-tag=b",
            "id;to-tag=\"a\";from-tag=b",
            "id;to-tag;from-tag=b",
            "id;to-tag=a;from-tag=b;early-only=yes",
            "id;to-tag=a;from-tag=b;early-only;early-only",
            "i d;to-tag=a;from-tag=b",
            "id;to-tag=a;from-tag=b;",
        ],
    );
}

#[test]
fn refer_to() {
    // RFC 3515 §2.1 examples.
    let r = round_trip(ReferTo::parse, "sip:alice@atlanta.example.com");
    assert!(r.replaces.is_none());
    assert_eq!(r.uri().to_string(), "sip:alice@atlanta.example.com");
    let r = round_trip(
        ReferTo::parse,
        "<sip:bob@biloxi.example.net?Accept-Contact=sip:bobsdesk.biloxi.example.net&Call-ID%3D55432%40alicepc.atlanta.example.com>",
    );
    assert!(r.replaces.is_none());
    assert_eq!(
        r.uri().as_sip().unwrap().headers.as_deref(),
        Some("Accept-Contact=sip:bobsdesk.biloxi.example.net&Call-ID%3D55432%40alicepc.atlanta.example.com")
    );
    let r = round_trip(
        ReferTo::parse,
        "<sip:dave@denver.example.org?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994>",
    );
    let rep = r.replaces.as_ref().unwrap();
    assert_eq!(rep.call_id, "12345@192.168.118.3");
    assert_eq!(
        (rep.to_tag.as_str(), rep.from_tag.as_str()),
        ("12345", "5FFE-3994")
    );
    assert_eq!(
        r.uri().as_sip().unwrap().headers,
        None,
        "Replaces is taken out of the URI"
    );
    assert_eq!(
        r.to_string(),
        "<sip:dave@denver.example.org?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994>"
    );
    let r = round_trip(
        ReferTo::parse,
        "<sip:carol@cleveland.example.org;method=SUBSCRIBE>",
    );
    assert_eq!(
        r.uri().as_sip().unwrap().param("method"),
        Some(Some("SUBSCRIBE"))
    );
    let r = round_trip(ReferTo::parse, "http://www.ietf.org");
    assert_eq!(r.uri(), &Uri::Other("http://www.ietf.org".into()));
    // Display name, header parameters, lower-case escapes, other embedded headers kept in
    // place and Replaces printed after them.
    let r = round_trip(
        ReferTo::parse,
        "\"Bob\" <sips:bob@[2001:db8::1]:5061?replaces=a%40b%3bto-tag%3d1%3bfrom-tag%3d2%3bearly-only&Require=replaces> ; x=1",
    );
    let rep = r.replaces.as_ref().unwrap();
    assert!(rep.early_only);
    assert_eq!(r.target.display.as_deref(), Some("\"Bob\""));
    assert_eq!(r.target.params.value("x"), Some("1"));
    assert_eq!(
        r.to_string(),
        "\"Bob\" <sips:bob@[2001:db8::1]:5061?Require=replaces&Replaces=a%40b%3Bto-tag%3D1%3Bfrom-tag%3D2%3Bearly-only>;x=1"
    );
    // A Replaces built by the B2BUA for the other leg prints escaped.
    let mut r = ReferTo::parse("<sip:bob@example.com>").unwrap();
    r.replaces = Replaces::parse("c@h;to-tag=t;from-tag=f");
    assert_eq!(
        r.to_string(),
        "<sip:bob@example.com?Replaces=c%40h%3Bto-tag%3Dt%3Bfrom-tag%3Df>"
    );
    none_of(
        ReferTo::parse,
        &[
            "",
            "<sip:a@b",
            "sip:a@b?Replaces=x%3Bto-tag%3D1%3Bfrom-tag%3D2",
            "<sip:a@b?Replaces=x%3Bto-tag%3D1>",
            "<sip:a@b?Replaces=x%3Bto-tag%3D1%3Bfrom-tag%3D2&Replaces=y%3Bto-tag%3D1%3Bfrom-tag%3D2>",
            "<sip:a@b?Replaces=%FF%3Bto-tag%3D1%3Bfrom-tag%3D2>",
            "<sip:a@b>, <sip:c@d>",
            "<sip:a@b> junk",
        ],
    );
}

#[test]
fn session_expires() {
    // RFC 4028 §4 examples.
    let s = round_trip(SessionExpires::parse, "4000;refresher=uac");
    assert_eq!((s.delta, s.refresher), (4000, Some(Refresher::Uac)));
    let s = round_trip(SessionExpires::parse, "1800");
    assert_eq!((s.delta, s.refresher), (1800, None));
    let s = round_trip(SessionExpires::parse, " 90 ; Refresher = UAS ; x=y");
    assert_eq!(s.refresher, Some(Refresher::Uas));
    assert_eq!(s.to_string(), "90;refresher=uas;x=y");
    none_of(
        SessionExpires::parse,
        &[
            "",
            "x",
            "-90",
            "1800s",
            "1800 junk",
            "1800;refresher",
            "1800;refresher=proxy",
            "1800;refresher=uac;refresher=uas",
            "1800;",
            ";refresher=uac",
        ],
    );
}

#[test]
fn header_accessors_take_long_and_compact_forms() {
    let msg = "NOTIFY sip:a@192.0.2.1 SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK1\r\n\
f: <sip:b@example.com>;tag=1\r\n\
t: <sip:a@example.com>;tag=2\r\n\
i: n1\r\n\
CSeq: 5 NOTIFY\r\n\
o: refer;id=5\r\n\
Subscription-State: active;expires=60\r\n\
r: <sip:c@example.com?Replaces=x%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\n\
x: 1800;refresher=uas\r\n\
RSeq: 9\r\n\
RAck: 9 4 INVITE\r\n\
Replaces: y;to-tag=3;from-tag=4\r\n\
c: Application/SDP\r\n\
l: 0\r\n\r\n";
    let m = parse_message(msg.as_bytes(), &Limits::default()).unwrap();
    let h = &m.headers;
    assert_eq!(h.event().unwrap().id.as_deref(), Some("5"));
    assert_eq!(h.subscription_state().unwrap().expires, Some(60));
    assert_eq!(h.refer_to().unwrap().replaces.unwrap().call_id, "x");
    assert_eq!(h.session_expires().unwrap().refresher, Some(Refresher::Uas));
    assert_eq!(h.rseq(), Some(RSeq(9)));
    assert_eq!(h.rack().unwrap().cseq, 4);
    assert_eq!(h.replaces().unwrap().from_tag, "4");
    assert!(h.content_type().unwrap().is_sdp());

    // Pushed with a compact name, read back typed.
    let mut h = Headers::default();
    h.push("x", "90");
    h.push("o", "dialog");
    assert_eq!(h.session_expires().unwrap().delta, 90);
    assert_eq!(h.event().unwrap().package, "dialog");
    // Absent, malformed, or repeated: None.
    assert_eq!(h.rack(), None);
    h.push("RSeq", "x");
    assert_eq!(h.rseq(), None);
    h.push("Event", "presence");
    assert_eq!(h.event(), None, "two Event lines are ambiguous");
}

#[test]
fn option_tags_span_lines_and_compact_forms() {
    let mut h = Headers::default();
    h.push("Require", "100rel , Timer");
    h.push("Require", " ,precondition");
    h.push("k", "replaces");
    assert_eq!(
        h.option_tags("Require"),
        ["100rel", "Timer", "precondition"]
    );
    assert!(h.has_option_tag("Require", "timer"));
    assert!(!h.has_option_tag("Require", "replaces"));
    assert!(h.has_option_tag("Supported", "REPLACES"));
    assert!(h.option_tags("Proxy-Require").is_empty());
}
