//! The event stream: what an answered, a rejected and a timed-out call report, in order.

use std::time::Duration;

use super::*;
use crate::b2bua::{EndedBy, Event, RejectReason};
use crate::sip::Method;

fn drain(b: &mut Border) -> Vec<Event> {
    std::iter::from_fn(|| b.poll_event()).collect()
}

fn home() -> crate::b2bua::Origin {
    crate::b2bua::Origin {
        realm: "home".into(),
        peer: None,
    }
}

#[test]
fn answered_call_reports_start_answer_and_end_by_the_callee() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("ev1@127.0.10.1", "z9hG4bKaliceev1"));
    let inv = sim.take(1);
    sim.advance(Duration::from_millis(1500));
    let contact = "sip:cindy@127.0.40.1:5060";
    sim.send_from_core(1, &answer(&inv, 200, "cindytag", contact, ""));
    let ok = sim.take(0);
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok, "z9hG4bKaliceev1ack"));
    let ack_b = sim.take(1);
    sim.advance(Duration::from_secs(3));
    sim.send_from_core(1, &in_dialog("BYE", 1, false, &ack_b, "z9hG4bKcindyev1"));
    let bye_a = sim.take(0);
    sim.send_from_core(0, &answer(&bye_a, 200, "", "", ""));
    let _ = sim.take(1);

    let ev = drain(&mut sim.borders[0]);
    let invite = Method::Invite;
    assert_eq!(
        ev[0],
        Event::RequestReceived {
            method: invite.clone(),
            from: home()
        }
    );
    let Event::CallStarted {
        from, to, call_id, ..
    } = &ev[1]
    else {
        panic!("second event is the call start: {ev:?}");
    };
    assert_eq!((from, call_id.as_str()), (&home(), "ev1@127.0.10.1"));
    assert_eq!(&*to.realm, "interconnect");
    assert!(to.peer.is_some(), "the partner is named: {to:?}");
    let answered = ev
        .iter()
        .find_map(|e| match e {
            Event::CallAnswered { setup, .. } => Some(*setup),
            _ => None,
        })
        .expect("answered");
    assert_eq!(answered, Duration::from_millis(1500));
    assert!(ev.contains(&Event::RequestAnswered {
        method: invite,
        status: 200,
        from: home()
    }));
    let ended = ev
        .iter()
        .find_map(|e| match e {
            Event::CallEnded { duration, by, .. } => Some((*duration, *by)),
            _ => None,
        })
        .expect("ended");
    assert_eq!(ended, (Duration::from_secs(3), EndedBy::Callee));
    // On B the BYE came from its own core, which answered: the callee there too.
    let ev_b = drain(&mut sim.borders[1]);
    assert!(ev_b.iter().any(|e| matches!(
        e,
        Event::CallEnded {
            by: EndedBy::Callee,
            ..
        }
    )));
    assert_eq!(sim.borders[0].events_lost(), 0);
}

#[test]
fn rejected_call_reports_the_policy_reason() {
    let mut sim = Sim::new();
    let inv = invite_from_a("ev2@127.0.10.1", "z9hG4bKaliceev2").replace(
        "sip:cindy@operator-b.example SIP",
        "sip:bob@nowhere.example SIP",
    );
    sim.send_from_core(0, &inv);
    assert_eq!(sim.take(0).status(), Some(404));
    let ev = drain(&mut sim.borders[0]);
    assert_eq!(
        ev[1..],
        [
            Event::Rejected {
                method: Method::Invite,
                status: 404,
                reason: RejectReason::NoRoute,
                from: home(),
            },
            Event::RequestAnswered {
                method: Method::Invite,
                status: 404,
                from: home(),
            },
        ]
    );
    assert!(!ev.iter().any(|e| matches!(e, Event::CallStarted { .. })));
}

#[test]
fn timed_out_call_reports_the_transaction_timeout_and_408() {
    let mut sim = Sim::new();
    sim.send_from_core(0, &invite_from_a("ev3@127.0.10.1", "z9hG4bKaliceev3"));
    let _ = sim.take(1);
    sim.advance(Duration::from_secs(40));
    assert_eq!(sim.take(0).status(), Some(408));
    let ev = drain(&mut sim.borders[1]);
    // B's core never answered: B's client transaction toward it timed out.
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::TransactionTimeout { method: Some(Method::Invite), to } if to == &home()
    )));
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::CallFailed { status: 408, .. })));
    let ev_a = drain(&mut sim.borders[0]);
    assert!(ev_a.iter().any(|e| matches!(
        e,
        Event::RequestAnswered {
            status: 408,
            method: Method::Invite,
            ..
        }
    )));
}

#[test]
fn unknown_source_is_reported_as_dropped() {
    let mut sim = Sim::new();
    sim.inject(
        0,
        1,
        addr("192.0.2.66:5060"),
        b"OPTIONS sip:x SIP/2.0\r\n\r\n",
    );
    let ev = drain(&mut sim.borders[0]);
    assert!(matches!(
        &ev[..],
        [Event::Dropped {
            reason: crate::b2bua::DropReason::UnknownSource,
            ..
        }]
    ));
}
