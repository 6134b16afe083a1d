//! Ordered targets: the initial INVITE moves to the route's next target when the first times
//! out or answers 503, and the call completes there.

use std::time::Duration;

use super::*;
use crate::b2bua::Event;
use crate::routing::{Route, Router, StaticRouter};

const DEAD: &str = "192.0.2.50:5060";

/// The static route, with a target that never answers (or answers 503) put in front.
struct DeadFirst;

impl Router for DeadFirst {
    fn route(&self, cfg: &config::Config, from_home: bool, target: &crate::sip::Uri) -> Route {
        match StaticRouter.route(cfg, from_home, target) {
            Route::Peer {
                realm,
                peer,
                mut targets,
                uri,
            } => {
                let mut dead = targets[0].clone();
                dead.addr = addr(DEAD);
                targets.insert(0, dead);
                Route::Peer {
                    realm,
                    peer,
                    targets,
                    uri,
                }
            }
            other => other,
        }
    }
}

fn sim_with_dead_first() -> Sim {
    let mut sim = Sim::new();
    let cfg = Arc::new(sim.borders[0].config().clone());
    sim.borders[0] = Border::with_router(cfg, 1, Box::new(DeadFirst));
    sim
}

fn failed_targets(b: &mut Border) -> Vec<Option<u16>> {
    std::iter::from_fn(|| b.poll_event())
        .filter_map(|e| match e {
            Event::TargetFailed { target, status, .. } => {
                assert_eq!(target, addr(DEAD));
                Some(status)
            }
            _ => None,
        })
        .collect()
}

fn complete_at_b(sim: &mut Sim) {
    let inv = sim.take(1);
    assert_eq!(inv.method().map(|m| m.as_str()), Some("INVITE"));
    sim.core[1].clear(); // retransmissions of that INVITE while the clock ran
    let contact = "sip:cindy@127.0.40.1:5060";
    sim.send_from_core(1, &answer(&inv, 200, "cindytag", contact, ""));
    let ok = sim.take(0);
    assert_eq!(
        ok.status(),
        Some(200),
        "the caller sees the second target's answer"
    );
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKalicefoack"));
    assert_eq!(sim.take(1).method().map(|m| m.as_str()), Some("ACK"));
    let bye = in_dialog("BYE", 2, true, &ok, "z9hG4bKalicefobye");
    sim.send_from_core(0, &bye);
    let bye_b = sim.take(1);
    sim.send_from_core(1, &answer(&bye_b, 200, "", "", ""));
    assert_eq!(sim.take(0).status(), Some(200));
    sim.advance(Duration::from_secs(64));
    assert_eq!(sim.borders[0].held_state(), (0, 0, 0, 0));
    assert_eq!(sim.borders[1].held_state(), (0, 0, 0, 0));
}

#[test]
fn a_target_that_times_out_is_skipped() {
    let mut sim = sim_with_dead_first();
    sim.send_from_core(0, &invite_from_a("fo1@127.0.10.1", "z9hG4bKalicefo1"));
    assert!(sim.core[1].is_empty(), "first tried: the dead target");
    assert!(sim.blackhole.iter().all(|(to, _)| *to == addr(DEAD)));
    sim.advance(Duration::from_secs(33));
    assert_eq!(failed_targets(&mut sim.borders[0]), [None]);
    complete_at_b(&mut sim);
}

#[test]
fn a_target_that_answers_503_is_skipped() {
    let mut sim = sim_with_dead_first();
    sim.send_from_core(0, &invite_from_a("fo2@127.0.10.1", "z9hG4bKalicefo2"));
    let (_, bytes) = sim.blackhole[0].clone();
    let inv = parse_message(&bytes, &Limits::default()).expect("border output parses");
    // The 503 comes from an address of the partner (its other border, say).
    let partner = sim.borders[1].config().realms[1].listen[0].addr;
    let busy = answer(&inv, 503, "busytag", "", "").replace('\n', "\r\n");
    sim.inject(0, 1, partner, busy.as_bytes());
    sim.settle();
    assert_eq!(failed_targets(&mut sim.borders[0]), [Some(503)]);
    complete_at_b(&mut sim);
}

#[test]
fn a_target_whose_connection_fails_is_skipped_at_once() {
    let mut sim = sim_with_dead_first();
    sim.send_from_core(0, &invite_from_a("fo3@127.0.10.1", "z9hG4bKalicefo3"));
    assert!(sim.core[1].is_empty(), "first tried: the dead target");
    // The transport reports it cannot connect (refused, TLS handshake refused): no waiting for
    // Timer B, the next target gets the INVITE now.
    let flow = crate::transaction::Flow {
        realm: 1,
        transport: crate::config::Transport::Udp,
        remote: addr(DEAD),
    };
    let now = sim.now;
    sim.borders[0].transport_failed(now, flow);
    sim.settle();
    assert_eq!(failed_targets(&mut sim.borders[0]), [Some(503)]);
    complete_at_b(&mut sim);
}
