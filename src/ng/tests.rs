//! The ng command handling against the B2BUA's anchoring engine, no sockets: replies, the SDP
//! rewritten toward each side, the TrGW commands queued and the ports given back.

use std::net::SocketAddr;
use std::path::Path;

use super::bencode::{decode, Value};
use super::Server;
use crate::b2bua::media::{Anchoring, MediaCommand};
use crate::config::Config;

const NODE: &str = r#"
name = "ng"
home_domains = ["a.example"]
[ng]
listen = "127.0.0.1:22223"
directions = { internal = "home" }
max_calls = 2
[[realm]]
name = "home"
kind = "home"
listen = ["udp:127.0.0.10:5060"]
core = "udp:127.0.0.11:5060"
media_ports = "30000-30009"
[[realm]]
name = "interconnect"
kind = "peer"
listen = ["udp:127.0.0.20:5060"]
media_ports = "30000-30009"
[[realm.peer]]
name = "b"
domains = ["b.example"]
sources = ["127.0.0.21"]
next_hop = "udp:127.0.0.21:5060"
"#;

fn cfg() -> Config {
    crate::config::parse(NODE, Path::new("ng.toml"), &|_| {
        Err(std::io::ErrorKind::NotFound.into())
    })
    .expect("config parses")
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=u 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=ice-ufrag:x\r\na=ice-pwd:yyyyyyyyyyyyyyyyyyyyyy\r\na=candidate:1 1 udp 1 {ip} {port} typ host\r\na=sendrecv\r\n"
    )
}

struct T {
    server: Server,
    anchoring: Anchoring,
    n: u32,
}

/// A reply, decoded: (result, error-reason or sdp).
fn fields(reply: &[u8], cookie: &str) -> (String, String) {
    let body = reply
        .strip_prefix(format!("{cookie} ").as_bytes())
        .expect("the reply starts with the cookie");
    let v = decode(body).expect("the reply is bencode");
    let s = |k| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let other = if v.get("sdp").is_some() {
        s("sdp")
    } else {
        s("error-reason")
    };
    (s("result"), other)
}

impl T {
    fn new() -> T {
        let cfg = cfg();
        T {
            server: Server::new(&cfg),
            anchoring: Anchoring::new(&cfg, crate::b2bua::Shard::ONE),
            n: 0,
        }
    }

    fn raw(&mut self, datagram: &[u8]) -> Option<Vec<u8>> {
        self.server.handle(&mut self.anchoring, datagram)
    }

    fn ask(&mut self, items: Vec<(&[u8], Value)>) -> (String, String) {
        self.n += 1;
        let cookie = format!("c{}", self.n);
        let mut d = format!("{cookie} ").into_bytes();
        Value::Dict(items).encode(&mut d);
        let reply = self.raw(&d).expect("a reply");
        fields(&reply, &cookie)
    }

    fn commands(&mut self) -> Vec<MediaCommand> {
        std::iter::from_fn(|| self.anchoring.poll_command()).collect()
    }
}

fn offer<'a>(call: &'a str, sdp: &'a [u8]) -> Vec<(&'static [u8], Value<'a>)> {
    vec![
        (b"command", Value::Bytes(b"offer")),
        (b"call-id", Value::Bytes(call.as_bytes())),
        (b"from-tag", Value::Bytes(b"fa")),
        (b"sdp", Value::Bytes(sdp)),
        (
            b"direction",
            Value::List(vec![
                Value::Bytes(b"internal"),
                Value::Bytes(b"interconnect"),
            ]),
        ),
        (b"ICE", Value::Bytes(b"remove")),
        (
            b"replace",
            Value::List(vec![
                Value::Bytes(b"origin"),
                Value::Bytes(b"session-connection"),
            ]),
        ),
    ]
}

fn answer<'a>(call: &'a str, sdp: &'a [u8]) -> Vec<(&'static [u8], Value<'a>)> {
    vec![
        (b"command", Value::Bytes(b"answer")),
        (b"call-id", Value::Bytes(call.as_bytes())),
        (b"from-tag", Value::Bytes(b"fa")),
        (b"to-tag", Value::Bytes(b"tb")),
        (b"sdp", Value::Bytes(sdp)),
    ]
}

fn delete(call: &str) -> Vec<(&'static [u8], Value<'_>)> {
    vec![
        (b"command", Value::Bytes(b"delete")),
        (b"call-id", Value::Bytes(call.as_bytes())),
    ]
}

#[test]
fn ping_is_answered_pong_with_the_cookie() {
    let mut t = T::new();
    let reply = t.raw(b"rdy d7:command4:pinge").expect("a reply");
    assert_eq!(reply, b"rdy d6:result4:ponge".to_vec());
    assert!(t.commands().is_empty());
}

#[test]
fn offer_answer_delete_anchor_both_sides_and_give_the_ports_back() {
    let mut t = T::new();
    let free = t.anchoring.pools.available(1);
    let a_sdp = sdp("127.0.0.11", 10000);
    let (result, b_view) = t.ask(offer("call-1", a_sdp.as_bytes()));
    assert_eq!(result, "ok", "{b_view}");
    // Sent toward B: the interconnect relay address only, no ICE left, no A address.
    assert!(b_view.contains("c=IN IP4 127.0.0.20\r\n"), "{b_view}");
    assert!(b_view.contains("o=- 1 1 IN IP4 127.0.0.20\r\n"), "{b_view}");
    assert!(b_view.contains("m=audio 30000 RTP/AVP 0\r\n"), "{b_view}");
    assert!(!b_view.contains("127.0.0.11"), "{b_view}");
    assert!(
        !b_view.contains("ice-") && !b_view.contains("candidate"),
        "{b_view}"
    );
    let cmds = t.commands();
    let opens: Vec<_> = cmds
        .iter()
        .filter_map(|c| match c {
            MediaCommand::Open(spec) => Some(spec.sides.map(|s| s.local)),
            _ => None,
        })
        .collect();
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(
        opens,
        [
            [addr("127.0.0.10:30000"), addr("127.0.0.20:30000")],
            [addr("127.0.0.10:30001"), addr("127.0.0.20:30001")]
        ]
    );
    assert!(cmds.contains(&MediaCommand::SetRemote {
        id: crate::media::FlowId(1),
        side: 0,
        remote: Some(addr("127.0.0.11:10000")),
    }));
    assert!(!cmds.iter().any(|c| matches!(c, MediaCommand::Gate { .. })));

    let b_sdp = sdp("127.0.0.21", 10000);
    let (result, a_view) = t.ask(answer("call-1", b_sdp.as_bytes()));
    assert_eq!(result, "ok", "{a_view}");
    assert!(a_view.contains("c=IN IP4 127.0.0.10\r\n"), "{a_view}");
    assert!(a_view.contains("m=audio 30000 RTP/AVP 0\r\n"), "{a_view}");
    assert!(!a_view.contains("127.0.0.21"), "{a_view}");
    let cmds = t.commands();
    assert!(cmds.contains(&MediaCommand::SetRemote {
        id: crate::media::FlowId(1),
        side: 1,
        remote: Some(addr("127.0.0.21:10000")),
    }));
    assert!(cmds.contains(&MediaCommand::Gate {
        id: crate::media::FlowId(1),
        open: true
    }));
    assert_eq!(t.server.calls(), 1);
    assert_eq!(t.anchoring.pools.available(1), free - 1);

    assert_eq!(t.ask(delete("call-1")).0, "ok");
    let cmds = t.commands();
    assert_eq!(
        cmds,
        [
            MediaCommand::Close(crate::media::FlowId(1)),
            MediaCommand::Close(crate::media::FlowId(2))
        ]
    );
    assert_eq!(t.server.calls(), 0);
    assert_eq!(t.anchoring.pools.available(1), free);
}

#[test]
fn unknown_call_bad_bencode_and_unknown_command_get_error_replies() {
    let mut t = T::new();
    assert_eq!(
        t.ask(delete("nope")),
        ("error".into(), "Unknown call-id".into())
    );
    let b = sdp("127.0.0.21", 1);
    assert_eq!(
        t.ask(answer("nope", b.as_bytes())),
        ("error".into(), "Unknown call-id".into())
    );
    let reply = t.raw(b"x1 d7:command4:ping").expect("a reply");
    let (r, why) = fields(&reply, "x1");
    assert_eq!(r, "error");
    assert!(why.starts_with("bad bencode at byte"), "{why}");
    let (r, why) = t.ask(vec![(b"command", Value::Bytes(b"query"))]);
    assert_eq!(r, "error");
    assert!(why.contains("unsupported command `query`"), "{why}");
    assert_eq!(t.ask(vec![]), ("error".into(), "missing command".into()));
    let reply = t.raw(b"x2 i5e").expect("a reply");
    assert_eq!(fields(&reply, "x2").1, "the request must be a dictionary");
    // No cookie: nothing to answer with.
    assert_eq!(t.raw(b"d7:command4:pinge"), None);
    assert_eq!(t.raw(b" d7:command4:pinge"), None);
    assert!(t.commands().is_empty());
}

#[test]
fn what_the_subset_does_not_do_is_refused_by_name() {
    let mut t = T::new();
    let a = sdp("127.0.0.11", 10000);
    let mut o = offer("c", a.as_bytes());
    o[4].1 = Value::List(vec![Value::Bytes(b"internal"), Value::Bytes(b"mars")]);
    let (r, why) = t.ask(o);
    assert_eq!(r, "error");
    assert!(why.contains("unknown direction `mars`"), "{why}");
    let mut o = offer("c", a.as_bytes());
    o[5].1 = Value::Bytes(b"force");
    assert!(t.ask(o).1.contains("ICE=force is not supported"));
    let mut o = offer("c", a.as_bytes());
    o[6].1 = Value::List(vec![Value::Bytes(b"sdp-version")]);
    assert!(t.ask(o).1.contains("replace sdp-version is not supported"));
    let (r, why) = t.ask(offer("c", b"not sdp"));
    assert_eq!(r, "error");
    assert!(why.starts_with("bad SDP"), "{why}");
    assert_eq!(t.server.calls(), 0);
    assert!(t.commands().is_empty(), "nothing opened for refused offers");
}

#[test]
fn a_retransmitted_request_gets_the_first_reply_and_is_not_applied_twice() {
    let mut t = T::new();
    let a = sdp("127.0.0.11", 10000);
    t.ask(offer("c", a.as_bytes()));
    let mut d = b"del ".to_vec();
    Value::Dict(delete("c")).encode(&mut d);
    let first = t.raw(&d).expect("reply");
    let again = t.raw(&d).expect("reply");
    assert_eq!(first, again);
    assert_eq!(fields(&again, "del").0, "ok");
}

#[test]
fn the_call_limit_and_the_port_pools_bound_ng_calls() {
    let mut t = T::new();
    let a = sdp("127.0.0.11", 10000);
    assert_eq!(t.ask(offer("c1", a.as_bytes())).0, "ok");
    assert_eq!(t.ask(offer("c2", a.as_bytes())).0, "ok");
    let (r, why) = t.ask(offer("c3", a.as_bytes()));
    assert_eq!(
        (r.as_str(), why.as_str()),
        ("error", "call limit reached (2 ng calls)")
    );
    // A re-offer of a call in progress is no new call.
    assert_eq!(t.ask(offer("c1", a.as_bytes())).0, "ok");
}

#[test]
fn idle_calls_are_reaped_and_only_they() {
    let mut t = T::new();
    let a = sdp("127.0.0.11", 10000);
    t.ask(offer("c1", a.as_bytes()));
    t.ask(offer("c2", a.as_bytes()));
    t.commands();
    let idle = [1, 2].into_iter().map(crate::media::FlowId).collect();
    assert_eq!(t.server.media_idle(&mut t.anchoring, &idle), 1);
    assert_eq!(t.server.calls(), 1);
    assert_eq!(t.ask(delete("c1")).1, "Unknown call-id");
    assert_eq!(t.ask(delete("c2")).0, "ok");
}

#[test]
fn only_loopback_sources_by_default() {
    let t = T::new();
    assert!(t.server.accepts("127.0.0.1".parse().unwrap()));
    assert!(t.server.accepts("::1".parse().unwrap()));
    assert!(!t.server.accepts("192.0.2.1".parse().unwrap()));
}
