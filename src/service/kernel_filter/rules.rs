//! The nftables text of the kernel-side drop set (`[sip] kernel_filter`), built from the
//! configuration without any IO: one table `inet palisade_sip_<instance>` holding, per peer
//! realm, a set of its partners' addresses (IPv4 and IPv6) and a named counter, and one input
//! chain that drops (and counts) packets to the realm's SIP listeners from any other source:
//! UDP datagrams and TCP SYNs. Established TCP/TLS connections and Palisade's own outgoing
//! connections (their answers come to an ephemeral port) are never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::IpAddr;
use std::time::Instant;

use crate::config::{Config, Listen, RealmKind, Transport};

/// The table for an instance: `palisade_sip_` and the instance name, with anything but
/// letters, digits and `_` made `_` (nft identifiers are restricted).
pub fn table_name(instance: &str) -> String {
    let clean: String = instance
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("palisade_sip_{clean}")
}

/// One peer realm's part: its listeners and who may reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmFilter {
    pub realm: String,
    /// Short object names inside the table (`r<index>_...`): realm names need not be
    /// identifiers.
    pub id: String,
    pub listen: Vec<Listen>,
    /// What the set holds: the configured addresses and the learned ones.
    pub allowed: BTreeSet<IpAddr>,
    /// The addresses the configuration names (never expired).
    pub configured: BTreeSet<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRules {
    pub table: String,
    pub realms: Vec<RealmFilter>,
    /// Addresses partners' routes resolved to through DNS, by realm index ([`Self::learn`]),
    /// with when they leave the set again (`None`: never): in the sets too, carried over a
    /// reload ([`Self::keep_learned`]) and removed by [`Self::expire`].
    pub learned: BTreeMap<(usize, IpAddr), Option<Instant>>,
}

impl FilterRules {
    /// The filter a configuration asks for: every peer realm, with its partners' source
    /// addresses and the addresses of its TLS partners' next hops.
    pub fn from_config(cfg: &Config) -> FilterRules {
        let realms = cfg
            .realms
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == RealmKind::Peer)
            .map(|(i, r)| {
                let mut allowed = BTreeSet::new();
                for p in &r.peers {
                    allowed.extend(p.sources.iter().copied());
                    if p.tls.is_some() && !p.next_hop.addr.ip().is_unspecified() {
                        allowed.insert(p.next_hop.addr.ip());
                    }
                }
                RealmFilter {
                    realm: r.name.clone(),
                    id: format!("r{i}"),
                    listen: r.listen.clone(),
                    configured: allowed.clone(),
                    allowed,
                }
            })
            .collect();
        FilterRules {
            table: table_name(&cfg.name),
            realms,
            learned: BTreeMap::new(),
        }
    }

    /// An address a partner's route in realm `realm` resolved to through DNS: a partner found
    /// that way connects to us from it too (a TLS partner has no `sources` to list it; the
    /// certificate decides who it is), so its SYNs must not be dropped. It stays until
    /// `until` (`None`: for good); a later lookup giving it again only moves that later.
    /// Returns the script adding it to the realm's set, `None` when it is there already or the
    /// realm has no set.
    pub fn learn(&mut self, realm: usize, ip: IpAddr, until: Option<Instant>) -> Option<String> {
        let id = format!("r{realm}");
        let r = self.realms.iter_mut().find(|r| r.id == id)?;
        let kept = self.learned.entry((realm, ip)).or_insert(until);
        *kept = match (*kept, until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        if !r.allowed.insert(ip) {
            return None;
        }
        Some(format!(
            "add element inet {} {id}_{} {{ {ip} }}\n",
            self.table,
            family(ip)
        ))
    }

    /// Forgets the learned addresses whose time ran out by `now`: the script deleting them
    /// from their sets (one transaction), `None` when nothing is due. An address the
    /// configuration also names stays in the set.
    pub fn expire(&mut self, now: Instant) -> Option<String> {
        let due: Vec<(usize, IpAddr)> = self
            .learned
            .iter()
            .filter(|(_, until)| until.is_some_and(|t| t <= now))
            .map(|(k, _)| *k)
            .collect();
        let mut script = String::new();
        for (realm, ip) in due {
            self.learned.remove(&(realm, ip));
            let id = format!("r{realm}");
            let Some(r) = self.realms.iter_mut().find(|r| r.id == id) else {
                continue;
            };
            if !r.configured.contains(&ip) && r.allowed.remove(&ip) {
                let _ = writeln!(
                    script,
                    "delete element inet {} {id}_{} {{ {ip} }}",
                    self.table,
                    family(ip)
                );
            }
        }
        (!script.is_empty()).then_some(script)
    }

    /// Carries what DNS gave over to the rules of a reloaded configuration (a lookup answered
    /// from the cache would not give it again soon), each with the time it had left.
    pub fn keep_learned(&mut self, old: &FilterRules) {
        for (&(realm, ip), &until) in &old.learned {
            let _ = self.learn(realm, ip, until);
        }
    }

    /// The whole table, replacing any of that name in one transaction (the leading empty
    /// `table` makes the `delete` succeed when there is none).
    pub fn create(&self) -> String {
        let t = &self.table;
        let mut s = format!("table inet {t} {{}}\ndelete table inet {t}\ntable inet {t} {{\n");
        for r in &self.realms {
            let id = &r.id;
            let _ = writeln!(s, "  set {id}_v4 {{ type ipv4_addr; }}");
            let _ = writeln!(s, "  set {id}_v6 {{ type ipv6_addr; }}");
            let _ = writeln!(s, "  counter {id}_dropped {{ }}");
        }
        s += "  chain input {\n    type filter hook input priority filter - 10; policy accept;\n";
        for r in &self.realms {
            for l in &r.listen {
                for rule in listener_rules(&r.id, l) {
                    let _ = writeln!(s, "    {rule}");
                }
            }
        }
        s += "  }\n}\n";
        s + &self.elements()
    }

    /// The sets' contents, replaced in one transaction (a reload: listeners do not change
    /// under a running instance, so the chain stays and the counters keep counting).
    pub fn elements(&self) -> String {
        let t = &self.table;
        let mut s = String::new();
        for r in &self.realms {
            for (fam, v6) in [("v4", false), ("v6", true)] {
                let set = format!("{}_{fam}", r.id);
                let _ = writeln!(s, "flush set inet {t} {set}");
                let addrs: Vec<String> = r
                    .allowed
                    .iter()
                    .filter(|a| a.is_ipv6() == v6)
                    .map(|a| a.to_string())
                    .collect();
                if !addrs.is_empty() {
                    let _ = writeln!(s, "add element inet {t} {set} {{ {} }}", addrs.join(", "));
                }
            }
        }
        s
    }

    /// Removes the table (no error if it is not there).
    pub fn delete(&self) -> String {
        let t = &self.table;
        format!("table inet {t} {{}}\ndelete table inet {t}\n")
    }

    /// The realm a counter of this table belongs to.
    pub fn realm_of_counter(&self, counter: &str) -> Option<&str> {
        let id = counter.strip_suffix("_dropped")?;
        self.realms
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.realm.as_str())
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv6() {
        "v6"
    } else {
        "v4"
    }
}

/// The drop rules for one listener: UDP datagrams, or TCP SYNs (TCP and TLS), to its address
/// and port from a source outside the realm's sets. A wildcard listener matches any local
/// address (an IPv6 wildcard both families, as its socket is dual-stack).
fn listener_rules(id: &str, l: &Listen) -> Vec<String> {
    let port = l.addr.port();
    let proto = match l.transport {
        Transport::Udp => format!("udp dport {port}"),
        Transport::Tcp | Transport::Tls => {
            format!("tcp dport {port} tcp flags & (fin|syn|rst|ack) == syn")
        }
    };
    let ip = l.addr.ip();
    let mut fams: Vec<(&str, &str, Option<IpAddr>)> = Vec::new();
    match ip {
        IpAddr::V4(a) if a.is_unspecified() => fams.push(("ip", "v4", None)),
        IpAddr::V4(_) => fams.push(("ip", "v4", Some(ip))),
        IpAddr::V6(a) if a.is_unspecified() => {
            fams.push(("ip", "v4", None));
            fams.push(("ip6", "v6", None));
        }
        IpAddr::V6(_) => fams.push(("ip6", "v6", Some(ip))),
    }
    fams.into_iter()
        .map(|(fam, set, daddr)| {
            let to = match daddr {
                Some(a) => format!("{fam} daddr {a} "),
                None => format!(
                    "meta nfproto {} ",
                    if fam == "ip" { "ipv4" } else { "ipv6" }
                ),
            };
            format!("{to}{proto} {fam} saddr != @{id}_{set} counter name {id}_dropped drop")
        })
        .collect()
}

/// Each counter's packets in `nft -j list table` output, by counter name.
pub fn counters(json: &serde_json::Value) -> Vec<(String, u64)> {
    json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            let c = o.get("counter")?;
            Some((c["name"].as_str()?.to_owned(), c["packets"].as_u64()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> Config {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/lab");
        crate::config::load(&dir.join("operator-a.toml")).expect("lab config loads")
    }

    /// The index of the lab's realm of that kind.
    fn realm_of(cfg: &Config, kind: RealmKind) -> usize {
        cfg.realms.iter().position(|r| r.kind == kind).unwrap()
    }

    #[test]
    fn peer_realm_listeners_drop_everyone_but_partners() {
        let cfg = lab();
        let rules = FilterRules::from_config(&cfg);
        assert_eq!(rules.realms.len(), 1, "only the peer realm is filtered");
        let r = &rules.realms[0];
        assert!(!r.allowed.is_empty());
        let text = rules.create();
        for l in &r.listen {
            assert!(
                text.contains(&format!("dport {}", l.addr.port())),
                "{l}: {text}"
            );
        }
        assert!(
            text.contains("saddr != @r1_v4 counter name r1_dropped drop"),
            "{text}"
        );
        for a in &r.allowed {
            assert!(rules.elements().contains(&a.to_string()));
        }
        // The home realm's listener is never filtered.
        let home = &cfg.realms[0].listen[0];
        assert!(
            !text.contains(&format!("daddr {} ", home.addr.ip())),
            "{text}"
        );
        assert_eq!(rules.realm_of_counter("r1_dropped"), Some(r.realm.as_str()));
    }

    #[test]
    fn table_names_are_identifiers() {
        assert_eq!(
            table_name("palisade-bench.a"),
            "palisade_sip_palisade_bench_a"
        );
    }

    #[test]
    fn counters_are_read_from_nft_json() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{}},{"counter":{"family":"inet","name":"r1_dropped","table":"t","handle":3,"packets":42,"bytes":4200}}]}"#,
        )
        .unwrap();
        assert_eq!(counters(&v), vec![("r1_dropped".to_string(), 42)]);
    }

    /// A DNS-found address joins its realm's set once (the script adds one element; the
    /// second time there is nothing to do), is in the full elements, and survives a reload.
    #[test]
    fn dns_found_addresses_join_the_set_and_survive_a_reload() {
        let cfg = lab();
        let mut rules = FilterRules::from_config(&cfg);
        let peer = realm_of(&cfg, RealmKind::Peer);
        let home = realm_of(&cfg, RealmKind::Home);
        let ip: IpAddr = "192.0.2.77".parse().unwrap();
        let t = rules.table.clone();
        assert_eq!(
            rules.learn(peer, ip, None).as_deref(),
            Some(format!("add element inet {t} r{peer}_v4 {{ 192.0.2.77 }}\n").as_str())
        );
        assert_eq!(rules.learn(peer, ip, None), None);
        assert_eq!(
            rules.learn(home, ip, None),
            None,
            "the home realm has no set"
        );
        assert!(rules.elements().contains("192.0.2.77"));
        let mut reloaded = FilterRules::from_config(&cfg);
        assert!(!reloaded.elements().contains("192.0.2.77"));
        reloaded.keep_learned(&rules);
        assert!(reloaded.elements().contains("192.0.2.77"));
    }

    /// A learned address leaves the set when its time runs out, not before; a later lookup
    /// moves that time on (never back); an address the configuration names is never deleted;
    /// a reload keeps each learned address's time.
    #[test]
    fn learned_addresses_expire_and_configured_ones_stay() {
        let cfg = lab();
        let mut rules = FilterRules::from_config(&cfg);
        let peer = realm_of(&cfg, RealmKind::Peer);
        let t0 = Instant::now();
        let s = std::time::Duration::from_secs;
        let (a, b): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        let configured = *rules.realms[0]
            .configured
            .iter()
            .next()
            .expect("lab partner");
        assert!(rules.learn(peer, a, Some(t0 + s(10))).is_some());
        assert!(rules.learn(peer, b, Some(t0 + s(5))).is_some());
        assert!(
            rules.learn(peer, configured, Some(t0 + s(1))).is_none(),
            "in the set already"
        );
        assert_eq!(rules.learn(peer, a, Some(t0 + s(2))), None);
        assert_eq!(
            rules.learned[&(peer, a)],
            Some(t0 + s(10)),
            "never moved back"
        );
        assert_eq!(rules.expire(t0), None);
        // The configured address's learned time runs out without touching the set.
        let tbl = rules.table.clone();
        assert_eq!(
            rules.expire(t0 + s(5)).as_deref(),
            Some(format!("delete element inet {tbl} r{peer}_v6 {{ 2001:db8::2 }}\n").as_str())
        );
        assert!(rules.realms[0].allowed.contains(&configured));
        assert!(!rules.elements().contains("2001:db8::2"));
        let mut reloaded = FilterRules::from_config(&cfg);
        reloaded.keep_learned(&rules);
        assert_eq!(reloaded.learned[&(peer, a)], Some(t0 + s(10)));
        assert!(reloaded.learn(peer, a, Some(t0 + s(20))).is_none());
        assert_eq!(
            reloaded.expire(t0 + s(10)),
            None,
            "moved on by the later lookup"
        );
        assert!(reloaded.expire(t0 + s(20)).is_some());
        assert!(!reloaded.elements().contains("192.0.2.1"));
        assert!(reloaded.learned.is_empty());
    }
}
