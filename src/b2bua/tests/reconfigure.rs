//! A configuration swap during a call: partners reordered, then removed. The call stays on the
//! partner it was set up with and ends cleanly; the removed partner starts nothing new.

use std::time::Duration;

use super::*;
use crate::b2bua::ReconfigureError;

fn with_decoy_first(cfg: &config::Config) -> config::Config {
    let mut c = cfg.clone();
    let realm = &mut c.realms[1];
    let mut decoy = realm.peers[0].clone();
    decoy.name = "decoy".into();
    decoy.domains = vec!["decoy.example".into()];
    decoy.sources = vec!["192.0.2.9".parse().expect("test address")];
    decoy.next_hop.addr = addr("192.0.2.9:5060");
    realm.peers.insert(0, decoy);
    c
}

#[test]
fn reload_reordering_and_removing_partners_keeps_the_call_on_its_partner() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("rl@127.0.10.1", "z9hG4bKalicerl"));
    let inv = sim.take(1);
    let contact = "sip:cindy@127.0.40.1:5060";
    sim.send_from_core(1, &answer(&inv, 200, "cindytag", contact, ""));
    let ok = sim.take(0);
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKalicerlack"));
    let ack_b = sim.take(1);
    let original = sim.borders[0].config().clone();

    // Reorder: a new partner in front of operator B. Positions shift; identities do not.
    let reordered = with_decoy_first(&original);
    sim.borders[0]
        .reconfigure(Arc::new(reordered.clone()))
        .expect("same realms");
    assert_eq!(sim.borders[0].partners_known(), 2);
    // A re-INVITE from B still crosses to A's core (it is B, not the decoy, on that leg).
    let reinvite = in_dialog("INVITE", 2, false, &ack_b, "z9hG4bKcindyrl2");
    sim.send_from_core(1, &reinvite);
    let re_a = sim.take(0);
    assert_eq!(re_a.method().map(|m| m.as_str()), Some("INVITE"));
    sim.send_from_core(0, &answer(&re_a, 200, "", "sip:alice@127.0.10.1:5060", ""));
    let re_ok = sim.take(1);
    assert_eq!(re_ok.status(), Some(200));
    sim.send_from_core(1, &in_dialog("ACK", 2, false, &ack_b, "z9hG4bKcindyrl2ack"));
    let _ = sim.take(0);

    // Remove operator B altogether: its call runs to its end, new calls to it find no route.
    let mut removed = reordered;
    removed.realms[1].peers.retain(|p| p.name == "decoy");
    sim.borders[0]
        .reconfigure(Arc::new(removed))
        .expect("same realms");
    sim.send_from_core(0, &invite_from_a("rl2@127.0.10.1", "z9hG4bKalicerl2"));
    assert_eq!(
        sim.take(0).status(),
        Some(404),
        "no route to a removed partner"
    );
    assert_eq!(sim.borders[0].active_sessions(), 1);

    // The caller hangs up: the BYE must reach B through the removed partner's own next hop
    // (with positions, leg B would now point at whatever partner took its place).
    let bye = in_dialog("BYE", 2, true, &ok, "z9hG4bKalicerlbye");
    sim.send_from_core(0, &bye);
    let bye_b = sim.take(1);
    assert_eq!(bye_b.method().map(|m| m.as_str()), Some("BYE"));
    sim.send_from_core(1, &answer(&bye_b, 200, "", "", ""));
    assert_eq!(sim.take(0).status(), Some(200));
    assert_eq!(sim.borders[0].active_sessions(), 0);
    assert_eq!(
        sim.borders[0].partners_known(),
        2,
        "held until the call is freed"
    );
    sim.advance(Duration::from_secs(64));
    assert_eq!(sim.borders[0].held_state(), (0, 0, 0, 0));
    assert_eq!(sim.borders[0].partners_known(), 1, "only the decoy is left");
}

#[test]
fn reload_that_changes_realms_is_refused_whole() {
    let mut sim = Sim::new();
    let mut c = sim.borders[0].config().clone();
    c.realms[1].media_ports = (40_000, 40_099);
    assert_eq!(
        sim.borders[0].reconfigure(Arc::new(c)),
        Err(ReconfigureError::RealmsChanged)
    );
    assert_eq!(sim.borders[0].config().realms[1].media_ports.0, 20_000);
}
