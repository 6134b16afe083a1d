//! Routing that waits: a new request parked while its route is looked up outside the engine,
//! answered later, failed, cancelled while parked, or timed out.

use std::time::Duration;

use super::*;
use crate::b2bua::{Event, RejectReason};
use crate::routing::{LookupRequest, Route, Router, StaticRouter};

/// Defers every request from home (as a DNS/ENUM router would); the test plays the resolver.
struct Deferring;

impl Router for Deferring {
    fn route(&self, cfg: &config::Config, from_home: bool, target: &crate::sip::Uri) -> Route {
        StaticRouter.route(cfg, from_home, target)
    }
    fn defer(&self, _: &config::Config, from_home: bool, _: &crate::sip::Uri) -> bool {
        from_home
    }
}

fn parked_sim(call_id: &str, branch: &str) -> (Sim, LookupRequest) {
    let mut sim = Sim::new();
    let cfg = Arc::new(sim.borders[0].config().clone());
    sim.borders[0] = Border::with_router(cfg, 1, Box::new(Deferring));
    sim.send_from_core(0, &invite_from_a(call_id, branch));
    assert!(sim.quiet(0), "only 100 Trying while parked");
    assert!(sim.interconnect.is_empty(), "nothing leaves while parked");
    let lookup = sim.borders[0].poll_lookup().expect("a lookup is asked for");
    assert!(sim.borders[0].poll_lookup().is_none());
    assert_eq!(lookup.target.to_string(), "sip:cindy@operator-b.example");
    assert!(lookup.from_home);
    (sim, lookup)
}

#[test]
fn parked_invite_continues_when_the_lookup_answers() {
    let (mut sim, lookup) = parked_sim("pk1@127.0.10.1", "z9hG4bKalicepk1");
    sim.advance(Duration::from_millis(800));
    let cfg = sim.borders[0].config().clone();
    let route = StaticRouter.route(&cfg, true, &lookup.target);
    let now = sim.now;
    sim.borders[0].handle_lookup(now, lookup.id, Ok(route));
    sim.settle();
    let inv = sim.take(1);
    assert_eq!(inv.method().map(|m| m.as_str()), Some("INVITE"));
    let contact = "sip:cindy@127.0.40.1:5060";
    sim.send_from_core(1, &answer(&inv, 200, "cindytag", contact, ""));
    assert_eq!(sim.take(0).status(), Some(200));
}

#[test]
fn failed_lookup_answers_its_status() {
    // The resolver decides the status (`[enum] no_record_status`: 404 or 604); the core
    // answers whichever it is given.
    for (status, call_id, branch) in [
        (604, "pk2@127.0.10.1", "z9hG4bKalicepk2"),
        (404, "pk2b@127.0.10.1", "z9hG4bKalicepk2b"),
    ] {
        let (mut sim, lookup) = parked_sim(call_id, branch);
        let now = sim.now;
        sim.borders[0].handle_lookup(now, lookup.id, Err(status));
        sim.settle();
        assert_eq!(sim.take(0).status(), Some(status));
        assert!(sim.interconnect.is_empty());
        let ev: Vec<Event> = std::iter::from_fn(|| sim.borders[0].poll_event()).collect();
        assert!(
            ev.iter().any(|e| matches!(
                e,
                Event::Rejected {
                    status: s,
                    reason: RejectReason::NoRoute,
                    ..
                } if *s == status
            )),
            "{status}: {ev:?}"
        );
        sim.advance(Duration::from_secs(64));
        assert_eq!(sim.borders[0].held_state(), (0, 0, 0, 0));
    }
}

#[test]
fn cancel_while_parked_gives_487_and_a_late_answer_is_ignored() {
    let (mut sim, lookup) = parked_sim("pk3@127.0.10.1", "z9hG4bKalicepk3");
    let cancel = "CANCEL sip:cindy@operator-b.example SIP/2.0\nVia: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bKalicepk3\n\
                  Max-Forwards: 70\nFrom: \"Alice\" <sip:alice@operator-a.example>;tag=alicetag1\n\
                  To: <sip:cindy@operator-b.example>\nCall-ID: pk3@127.0.10.1\nCSeq: 1 CANCEL\nContent-Length: 0\n\n";
    sim.send_from_core(0, cancel);
    let mut got: Vec<(u16, String)> = (0..2)
        .map(|_| {
            let m = sim.take(0);
            let method = m.headers.get("CSeq").unwrap_or("").to_string();
            (m.status().unwrap_or(0), method)
        })
        .collect();
    got.sort();
    assert_eq!(got[0], (200, "1 CANCEL".to_string()));
    assert_eq!(got[1], (487, "1 INVITE".to_string()));
    let cfg = sim.borders[0].config().clone();
    let route = StaticRouter.route(&cfg, true, &lookup.target);
    let now = sim.now;
    sim.borders[0].handle_lookup(now, lookup.id, Ok(route));
    sim.settle();
    assert!(
        sim.interconnect.is_empty(),
        "a cancelled request is not routed"
    );
    sim.advance(Duration::from_secs(64));
    assert_eq!(sim.borders[0].held_state(), (0, 0, 0, 0));
}

#[test]
fn lookup_that_never_answers_gets_504() {
    let (mut sim, _lookup) = parked_sim("pk4@127.0.10.1", "z9hG4bKalicepk4");
    sim.advance(Duration::from_secs(6));
    assert_eq!(sim.take(0).status(), Some(504));
    assert!(sim.interconnect.is_empty());
    sim.advance(Duration::from_secs(64));
    assert_eq!(sim.borders[0].held_state(), (0, 0, 0, 0));
}

/// A lookup that translated the target (ENUM: `tel:` → `sip:`) hands the partner the new
/// Request-URI; the DNS router parks numbers and DNS partners only, from home only.
#[test]
fn lookup_with_a_new_request_uri_sends_it_to_the_partner() {
    use crate::routing::dns::DnsRouter;
    let mut sim = Sim::new();
    let mut cfg = sim.borders[0].config().clone();
    cfg.enum_routing = Some(config::EnumSettings::default());
    let tel = crate::sip::Uri::parse("tel:+49-30-123456").unwrap();
    let sip = crate::sip::Uri::parse("sip:cindy@operator-b.example").unwrap();
    assert!(DnsRouter.defer(&cfg, true, &tel));
    assert!(!DnsRouter.defer(&cfg, false, &tel), "not from a partner");
    assert!(
        !DnsRouter.defer(&cfg, true, &sip),
        "static partner: routed at once"
    );
    let mut dns_cfg = cfg.clone();
    dns_cfg.realms[1].peers[0].dns.route = config::PeerRoute::Dns;
    assert!(DnsRouter.defer(&dns_cfg, true, &sip));
    let mut no_enum = cfg.clone();
    no_enum.enum_routing = None;
    assert!(
        !DnsRouter.defer(&no_enum, true, &tel),
        "no [enum]: no number routing"
    );

    let cfg = Arc::new(cfg);
    sim.borders[0] = Border::with_router(cfg.clone(), 1, Box::new(DnsRouter));
    let inv = invite_from_a("pk9@127.0.10.1", "z9hG4bKalicepk9").replace(
        "INVITE sip:cindy@operator-b.example",
        "INVITE tel:+49-30-123456",
    );
    sim.send_from_core(0, &inv);
    assert!(sim.interconnect.is_empty(), "parked");
    let lookup = sim.borders[0]
        .poll_lookup()
        .expect("the number is looked up");
    assert_eq!(lookup.target, tel);
    let Route::Peer {
        realm,
        peer,
        targets,
        ..
    } = StaticRouter.route(&cfg, true, &sip)
    else {
        panic!("the static route to B");
    };
    let route = Route::Peer {
        realm,
        peer,
        targets,
        uri: Some(sip.clone()),
    };
    let now = sim.now;
    sim.borders[0].handle_lookup(now, lookup.id, Ok(route));
    sim.settle();
    let out = sim.take(1);
    assert_eq!(out.method().map(|m| m.as_str()), Some("INVITE"));
    assert_eq!(
        crate::b2bua::request_uri(&out)
            .map(|u| u.to_string())
            .as_deref(),
        Some("sip:cindy@operator-b.example")
    );
}
