//! On a TLS interconnect the partner is who its certificate proved (the name the transport
//! attaches), not the address a message came from; a TLS-only partner's address sending plain
//! UDP is nobody. The shipped lab as is (interconnect on TLS), fed without a transport.

use super::*;
use crate::config::Transport;

fn lab_tls(name: &str) -> Arc<config::Config> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies/lab")
        .join(name);
    Arc::new(config::load(&path).expect("lab config loads"))
}

/// What B's border sends toward its core after `invite` arrives on its interconnect.
fn to_core(
    b: &mut Border,
    from: &str,
    transport: Transport,
    peer: Option<&str>,
    invite: &str,
) -> usize {
    let bytes = invite.replace('\n', "\r\n");
    b.handle_input(
        Instant::now(),
        Inbound {
            realm: 1,
            transport,
            remote: addr(from),
            bytes: bytes.as_bytes(),
            peer,
        },
    );
    std::iter::from_fn(|| b.poll_transmit())
        .filter(|t| t.flow.realm == 0 && t.flow.remote == addr(CORE_B))
        .count()
}

fn invite_from_border_a(call_id: &str) -> String {
    invite_from_a(call_id, &format!("z9hG4bK{call_id}")).replace(
        "Via: SIP/2.0/UDP 127.0.10.1:5060",
        "Via: SIP/2.0/TLS 127.0.20.2:5061",
    )
}

#[test]
fn the_certificate_not_the_address_selects_the_partner() {
    let mut b = Border::new(lab_tls("operator-b.toml"), 7);
    let (tls, udp) = (Transport::Tls, Transport::Udp);
    // A's certificate, from A's address and from anywhere else: A.
    assert_eq!(
        to_core(
            &mut b,
            "127.0.20.2:40000",
            tls,
            Some("operator-a"),
            &invite_from_border_a("t1")
        ),
        1
    );
    assert_eq!(
        to_core(
            &mut b,
            "127.0.0.1:40001",
            tls,
            Some("operator-a"),
            &invite_from_border_a("t2")
        ),
        1
    );
    // A TLS connection that proved nobody we know, or no name at all: dropped.
    assert_eq!(
        to_core(
            &mut b,
            "127.0.20.2:40002",
            tls,
            Some("operator-x"),
            &invite_from_border_a("t3")
        ),
        0
    );
    assert_eq!(
        to_core(
            &mut b,
            "127.0.20.2:40003",
            tls,
            None,
            &invite_from_border_a("t4")
        ),
        0
    );
    // A's own address over plain UDP: A is TLS-only by policy, so nobody.
    assert_eq!(
        to_core(
            &mut b,
            "127.0.20.2:5060",
            udp,
            None,
            &invite_from_border_a("t5")
        ),
        0
    );
    assert_eq!(b.stats().dropped_unknown_source, 3);
}
