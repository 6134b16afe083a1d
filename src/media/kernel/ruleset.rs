//! The nftables text the kernel path writes: the table with its maps, counter sets and chains,
//! and the element batches that install, refresh and remove flows. Pure string building, so the
//! exact syntax (which `nft list` prints back the same way) is kept in one place.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::flow::Family;
use super::{FlowId, KernelFlow};

/// One change of a batch: a flow, as installed now (if at all), and as it must be afterwards
/// (`None`: removed). Both equal: a refresh.
pub(super) type Op = (FlowId, Option<KernelFlow>, Option<KernelFlow>);

/// The whole table (see the module docs of [`super`]), replacing any table of that name in one
/// transaction: the leading `table ... {}` makes the `delete` succeed when there is none.
pub(super) fn create(table: &str) -> String {
    let t = table;
    let mut s = format!("table inet {t} {{}}\ndelete table inet {t}\ntable inet {t} {{\n");
    for fam in ["4", "6"] {
        let addr = if fam == "4" { "ipv4_addr" } else { "ipv6_addr" };
        let key = format!("{addr} . inet_service . {addr} . inet_service");
        s += &format!("  map dnat{fam} {{ type {key} : {addr} . inet_service; flags timeout; }}\n");
        s += &format!("  map snat{fam} {{ type {key} : {addr} . inet_service; flags timeout; }}\n");
        s += &format!("  set cnt{fam} {{ type {key}; counter; }}\n");
    }
    let dnat = |ip: &str, fam: &str| {
        format!("    meta l4proto udp dnat {ip} to {ip} saddr . udp sport . {ip} daddr . udp dport map @dnat{fam}\n")
    };
    let orig = |ip: &str| {
        format!("ct original {ip} saddr . ct original proto-src . ct original {ip} daddr . ct original proto-dst")
    };
    let both = |f: &dyn Fn(&str, &str) -> String| f("ip", "4") + &f("ip6", "6");
    s += "  chain pre {\n    type nat hook prerouting priority dstnat; policy accept;\n";
    s += &both(&dnat);
    s += "  }\n  chain out {\n    type nat hook output priority -100; policy accept;\n";
    s += &both(&dnat);
    s += "  }\n  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n";
    s += &both(&|ip, fam| {
        format!(
            "    ct status dnat meta l4proto udp snat {ip} to {} map @snat{fam}\n",
            orig(ip)
        )
    });
    let count = |ip: &str, fam: &str| {
        format!(
            "    ct status dnat meta l4proto udp {} @cnt{fam}\n",
            orig(ip)
        )
    };
    s += "  }\n  chain cnt_fwd {\n    type filter hook forward priority filter; policy accept;\n";
    s += &both(&count);
    s += "  }\n  chain cnt_out {\n    type filter hook output priority filter; policy accept;\n";
    s += &both(&count);
    s += "  }\n}\n";
    s
}

/// Deletes the table (a no-op if it does not exist).
pub(super) fn delete(table: &str) -> String {
    format!("table inet {table} {{}}\ndelete table inet {table}\n")
}

/// One transaction: removals (add + delete, never fails on a timed-out element), then adds.
/// A re-install of the same flow (refresh) leaves its counter element alone.
pub(super) fn batch(table: &str, element_timeout: Option<Duration>, ops: &[Op]) -> String {
    let timeout = element_timeout.map_or(String::new(), |t| {
        format!(" timeout {}s", t.as_secs().max(1))
    });
    // Per set name: (re-adds for removal, deletes, adds).
    let mut readd: HashMap<String, Vec<String>> = HashMap::new();
    let mut del: HashMap<String, Vec<String>> = HashMap::new();
    let mut add: HashMap<String, Vec<String>> = HashMap::new();
    for (_, old, new) in ops {
        let same = old.is_some() && old == new;
        if let Some(old) = old {
            let fam = old.family().map(Family::suffix).unwrap_or("4");
            for h in old.halves() {
                let k = key(h.from, h.to);
                readd
                    .entry(format!("dnat{fam}"))
                    .or_default()
                    .push(format!("{k}{timeout} : {}", ep(h.dnat)));
                readd
                    .entry(format!("snat{fam}"))
                    .or_default()
                    .push(format!("{k}{timeout} : {}", ep(h.snat)));
                del.entry(format!("dnat{fam}")).or_default().push(k.clone());
                del.entry(format!("snat{fam}")).or_default().push(k.clone());
                if !same {
                    readd
                        .entry(format!("cnt{fam}"))
                        .or_default()
                        .push(k.clone());
                    del.entry(format!("cnt{fam}")).or_default().push(k);
                }
            }
        }
        if let Some(new) = new {
            let Ok(fam) = new.family().map(Family::suffix) else {
                continue;
            };
            for h in new.halves() {
                let k = key(h.from, h.to);
                add.entry(format!("dnat{fam}"))
                    .or_default()
                    .push(format!("{k}{timeout} : {}", ep(h.dnat)));
                add.entry(format!("snat{fam}"))
                    .or_default()
                    .push(format!("{k}{timeout} : {}", ep(h.snat)));
                if !same {
                    add.entry(format!("cnt{fam}")).or_default().push(k);
                }
            }
        }
    }
    let mut s = String::new();
    for (verb, group) in [("add", readd), ("delete", del), ("add", add)] {
        let mut names: Vec<_> = group.into_iter().collect();
        names.sort();
        for (set, elems) in names {
            for chunk in elems.chunks(2000) {
                s += &format!(
                    "{verb} element inet {table} {set} {{ {} }}\n",
                    chunk.join(", ")
                );
            }
        }
    }
    s
}

/// An endpoint as nft writes it in concatenations.
fn ep(a: SocketAddr) -> String {
    format!("{} . {}", a.ip(), a.port())
}

/// The map / set key of an original tuple: `far end . port . local endpoint . port`.
pub(super) fn key(from: SocketAddr, to: SocketAddr) -> String {
    format!("{} . {}", ep(from), ep(to))
}
