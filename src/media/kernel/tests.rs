//! Unit tests of the kernel path that need no privilege: flow validation, key syntax, table
//! name checks.

use std::net::SocketAddr;

use super::flow::Family;
use super::ruleset::key;
use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn families_and_halves() {
    let f = KernelFlow {
        a_local: sa("10.0.0.1:4000"),
        a_remote: sa("10.0.0.2:5000"),
        b_local: sa("10.1.0.1:4002"),
        b_remote: sa("10.1.0.2:6000"),
    };
    assert_eq!(f.family().unwrap(), Family::V4);
    let [a, b] = f.halves();
    assert_eq!(
        (a.from, a.to, a.dnat, a.snat),
        (f.a_remote, f.a_local, f.b_remote, f.b_local)
    );
    assert_eq!(
        (b.from, b.to, b.dnat, b.snat),
        (f.b_remote, f.b_local, f.a_remote, f.a_local)
    );
    let mixed = KernelFlow {
        b_remote: sa("[2001:db8::1]:6000"),
        ..f
    };
    assert!(matches!(mixed.validate(), Err(KernelError::MixedFamily(_))));
    let mapped = KernelFlow {
        a_remote: sa("[::ffff:10.0.0.2]:5000"),
        ..f
    };
    assert_eq!(mapped.family().unwrap(), Family::V4);
    assert_eq!(
        key(sa("[2001:db8::1]:1"), sa("10.0.0.1:2")),
        "2001:db8::1 . 1 . 10.0.0.1 . 2"
    );
}

#[test]
fn bad_table_names_are_refused() {
    for t in ["", "a b", "x;flush ruleset", "1abc"] {
        assert!(
            matches!(KernelPath::start(t), Err(KernelError::BadTable(_))),
            "{t}"
        );
    }
}
