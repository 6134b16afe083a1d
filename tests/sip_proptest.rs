//! Property tests for the SIP wire parser: no panics on hostile bytes, and generated valid
//! requests (random methods, header order, compact names, folding, binary bodies) parse and
//! round-trip through `to_bytes`. Bounded: 512 cases per property.

use palisade::sip::{frame_stream, parse_message, Framing, Limits, Message, Method, StartLine};
use proptest::prelude::*;

const CASES: u32 = 512;

fn limits() -> Limits {
    Limits::default()
}

fn exercise(bytes: &[u8]) {
    let l = limits();
    let _ = frame_stream(bytes, &l);
    if let Ok(m) = parse_message(bytes, &l) {
        // Whatever is accepted prints to something accepted again, with the same content.
        let printed = m.to_bytes();
        let again = parse_message(&printed, &l).expect("accepted message must re-parse");
        assert_eq!(strip_cl(&again), strip_cl(&m));
        assert!(matches!(
            frame_stream(&printed, &l),
            Framing::Complete { .. } | Framing::Invalid("Message too large")
        ));
    }
}

fn strip_cl(m: &Message) -> Message {
    let mut m = m.clone();
    m.headers.remove("Content-Length");
    m
}

const VALID_INVITE: &[u8] = b"INVITE sip:bob@[2001:db8::1]:5060;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds;rport, SIP/2.0/TCP [::1]:5061;branch=z9hG4bK2\r\n\
Max-Forwards: 70\r\n\
To: \"Bob \\\"B\\\"\" <sip:bob@example.com>\r\n\
f: Alice <sip:alice@example.com>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159\r\n INVITE\r\n\
Contact: <sip:alice@pc33.example.com;transport=tcp>;expires=60\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
P-Asserted-Identity: <tel:+15551234567>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 13\r\n\
\r\n\
v=0\r\n\xff\x00binary";

/// Bytes drawn mostly from SIP-significant characters, so the parser gets deep.
fn sipish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> =
        b"SIP/2.0 INVITEsip:@[]<>\";,=?&%:\\\r\n\t \0\xff\xc3\xa9aZ09-.lvVfti".to_vec();
    prop::collection::vec(prop::sample::select(alphabet), 0..600)
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "INVITE",
            "ACK",
            "BYE",
            "CANCEL",
            "OPTIONS",
            "REGISTER",
            "PRACK",
            "UPDATE",
            "INFO",
            "MESSAGE",
            "REFER",
            "SUBSCRIBE",
            "NOTIFY",
            "PUBLISH",
        ])
        .prop_map(str::to_string),
        "[A-Za-z][A-Za-z0-9._!%*+`'~-]{0,12}",
    ]
}

#[derive(Debug, Clone)]
struct Gen {
    method: String,
    user: String,
    host: String,
    ipv6: bool,
    branch: String,
    tag: String,
    display: String,
    cseq: u32,
    max_forwards: Option<u8>,
    call_id: String,
    extra: String,
    body: Vec<u8>,
    with_cl: bool,
    order: Vec<usize>,
    compact: Vec<bool>,
    fold: Vec<bool>,
    upper: Vec<bool>,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        (
            method(),
            "[a-z][a-z0-9.+]{0,8}(%[0-9A-Fa-f]{2})?",
            "[a-z]{1,8}\\.example\\.(com|net)",
            any::<bool>(),
            "z9hG4bK[A-Za-z0-9.!%*_+`'~-]{1,12}",
            "[A-Za-z0-9]{1,10}",
            prop_oneof![
                Just(String::new()),
                "[A-Za-z]{1,8}( [A-Za-z]{1,8})?",
                "\"[A-Za-z ,<>]{0,8}(\\\\\")?[éü]?\"",
            ],
        ),
        (
            0u32..(1 << 31),
            prop::option::of(any::<u8>()),
            "[A-Za-z0-9.!%*_+`'~()<>:\\\\\"/\\[\\]?{}-]{1,20}(@[a-z0-9.]{1,10})?",
            "[ -~]{0,30}",
            prop::collection::vec(any::<u8>(), 0..300),
            any::<bool>(),
            Just((0..9usize).collect::<Vec<_>>()).prop_shuffle(),
            prop::collection::vec(any::<bool>(), 9),
            prop::collection::vec(any::<bool>(), 9),
            prop::collection::vec(any::<bool>(), 9),
        ),
    )
        .prop_map(
            |(
                (method, user, host, ipv6, branch, tag, display),
                (cseq, max_forwards, call_id, extra, body, with_cl, order, compact, fold, upper),
            )| Gen {
                method,
                user,
                host,
                ipv6,
                branch,
                tag,
                display,
                cseq,
                max_forwards,
                call_id,
                extra,
                body,
                with_cl,
                order,
                compact,
                fold,
                upper,
            },
        )
}

/// Folds the value at its last single space (one whose neighbours are not blanks), which
/// unfolding turns back into exactly that space.
fn fold_once(value: &str) -> String {
    let b = value.as_bytes();
    let at = (1..b.len().saturating_sub(1))
        .rev()
        .find(|&i| b[i] == b' ' && b[i - 1] != b' ' && b[i + 1] != b' ');
    match at {
        Some(i) => format!("{}\r\n\t {}", &value[..i], &value[i + 1..]),
        None => value.to_string(),
    }
}

/// Builds the request; returns the bytes and the expected (canonical name, unfolded value)
/// list in wire order.
fn build(g: &Gen) -> (Vec<u8>, Vec<(String, String)>) {
    let host = if g.ipv6 {
        "[2001:db8::7]:5060".to_string()
    } else {
        g.host.clone()
    };
    let display = if g.display.is_empty() {
        String::new()
    } else {
        format!("{} ", g.display)
    };
    let fields: Vec<(&str, Option<&str>, String)> = vec![
        (
            "Via",
            Some("v"),
            format!("SIP/2.0/UDP {host};branch={}", g.branch),
        ),
        (
            "From",
            Some("f"),
            format!("{display}<sip:{}@{}>;tag={}", g.user, g.host, g.tag),
        ),
        ("To", Some("t"), format!("<sip:{}@{}>", g.user, g.host)),
        ("Call-ID", Some("i"), g.call_id.clone()),
        ("CSeq", None, format!("{} {}", g.cseq, g.method)),
        (
            "Max-Forwards",
            None,
            g.max_forwards.map(|m| m.to_string()).unwrap_or_default(),
        ),
        (
            "Contact",
            Some("m"),
            format!("<sip:{}@{host};ob>;expires=30", g.user),
        ),
        ("Subject", Some("s"), g.extra.trim().to_string()),
        ("X-Extension", None, "a, \"b,c\" <d,e>".to_string()),
    ];
    let mut text = format!("{} sip:{}@{host} SIP/2.0\r\n", g.method, g.user).into_bytes();
    let mut expected = Vec::new();
    for &i in &g.order {
        let (name, short, value) = &fields[i];
        if *name == "Max-Forwards" && g.max_forwards.is_none() {
            continue;
        }
        let wire_name = match short {
            Some(s) if g.compact[i] => s.to_string(),
            _ if g.upper[i] => name.to_ascii_uppercase(),
            _ => name.to_ascii_lowercase(),
        };
        let wire_value = if g.fold[i] {
            fold_once(value)
        } else {
            value.clone()
        };
        text.extend_from_slice(format!("{wire_name}: {wire_value}\r\n").as_bytes());
        // Known names come back in RFC spelling, unknown ones as sent.
        let expected_name = if *name == "X-Extension" {
            wire_name
        } else {
            name.to_string()
        };
        expected.push((expected_name, value.clone()));
    }
    if g.with_cl {
        text.extend_from_slice(format!("l: {}\r\n", g.body.len()).as_bytes());
        expected.push(("Content-Length".into(), g.body.len().to_string()));
    }
    text.extend_from_slice(b"\r\n");
    text.extend_from_slice(&g.body);
    (text, expected)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&bytes);
    }

    #[test]
    fn sipish_bytes_never_panic(bytes in sipish_bytes()) {
        exercise(&bytes);
        let mut with_start = b"INVITE sip:a@b SIP/2.0\r\n".to_vec();
        with_start.extend_from_slice(&bytes);
        exercise(&with_start);
    }

    #[test]
    fn generated_requests_round_trip(g in gen()) {
        let (bytes, expected) = build(&g);
        let l = limits();
        let m = parse_message(&bytes, &l)
            .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&bytes)));
        match &m.start {
            StartLine::Request { method, .. } => prop_assert_eq!(method.as_str(), g.method.as_str()),
            _ => prop_assert!(false, "not a request"),
        }
        let parsed_method = Method::parse(&g.method);
        prop_assert_eq!(parsed_method.as_ref(), m.method());
        prop_assert_eq!(&m.body, &g.body);
        let got: Vec<(String, String)> =
            m.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(m.headers.values("X-Extension").len(), 2);

        let printed = m.to_bytes();
        let again = parse_message(&printed, &l).expect("re-parse");
        prop_assert_eq!(strip_cl(&again), strip_cl(&m));
        prop_assert_eq!(again.to_bytes(), printed.clone());
        prop_assert_eq!(
            frame_stream(&printed, &l),
            Framing::Complete { skip: 0, len: printed.len() }
        );
        if g.with_cl {
            // Stream framing of the original wire form, also with a keepalive in front and a
            // second message behind.
            let mut stream = b"\r\n\r\n".to_vec();
            stream.extend_from_slice(&bytes);
            stream.extend_from_slice(&printed);
            prop_assert_eq!(
                frame_stream(&stream, &l),
                Framing::Complete { skip: 4, len: 4 + bytes.len() }
            );
        }
    }

    #[test]
    fn mutated_invite_never_panics(
        ops in prop::collection::vec((0u8..4, any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut b = VALID_INVITE.to_vec();
        for (op, idx, byte) in ops {
            if b.is_empty() {
                break;
            }
            let i = idx.index(b.len());
            match op {
                0 => b[i] ^= byte | 1,
                1 => b.truncate(i),
                2 => b.insert(i, byte),
                _ => {
                    let sep = b"\r\n :;,<>\"[]%@=\0\xff\xc3\\";
                    b.insert(i, sep[usize::from(byte) % sep.len()]);
                }
            }
        }
        exercise(&b);
    }
}

#[test]
fn valid_invite_seed_parses() {
    let m = parse_message(VALID_INVITE, &limits()).unwrap();
    assert_eq!(m.body, b"v=0\r\n\xff\x00binary");
    assert_eq!(m.headers.values("Via").len(), 2);
    exercise(VALID_INVITE);
}
