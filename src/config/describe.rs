//! The effective configuration as TOML text (every default filled in, peers inline), for
//! `palisade check`. The output is itself a valid node file.

use super::*;
use std::fmt::Write;

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list<I: IntoIterator<Item = String>>(items: I) -> String {
    let items: Vec<String> = items.into_iter().map(|s| q(&s)).collect();
    let one_line = format!("[{}]", items.join(", "));
    if one_line.len() <= 80 {
        return one_line;
    }
    // Long lists (header allow-lists, methods): wrapped, several per line.
    let mut s = String::from("[\n");
    let mut line = String::new();
    for i in items {
        if !line.is_empty() && line.len() + i.len() + 2 > 92 {
            let _ = writeln!(s, "    {}", line.trim_end());
            line.clear();
        }
        line.push_str(&i);
        line.push_str(", ");
    }
    if !line.is_empty() {
        let _ = writeln!(s, "    {}", line.trim_end());
    }
    s.push(']');
    s
}

fn trust(t: Trust) -> &'static str {
    match t {
        Trust::Trusted => "trusted",
        Trust::Untrusted => "untrusted",
    }
}

pub(super) fn describe(c: &Config) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Effective configuration (defaults filled in).");
    let _ = writeln!(o, "name = {}", q(&c.name));
    let _ = writeln!(o, "home_domains = {}", list(c.home_domains.iter().cloned()));
    let _ = writeln!(o, "ioi = {}", q(&c.ioi));
    let _ = writeln!(o, "log = {}", q(&c.log));
    let _ = writeln!(o, "log_format = {}", q(c.log_format.as_str()));
    let s = &c.sip;
    let _ = writeln!(o, "\n[sip]");
    let _ = writeln!(o, "t1_ms = {}", s.t1.as_millis());
    let _ = writeln!(o, "t2_ms = {}", s.t2.as_millis());
    let _ = writeln!(o, "t4_ms = {}", s.t4.as_millis());
    let _ = writeln!(o, "timer_c_s = {}", s.timer_c.as_secs());
    let _ = writeln!(o, "lookup_timeout_ms = {}", s.lookup_timeout.as_millis());
    let _ = writeln!(o, "overload_backlog = {}", s.overload_backlog);
    let _ = writeln!(o, "overload_delay_ms = {}", s.overload_delay.as_millis());
    let _ = writeln!(o, "admission_delay_ms = {}", s.admission_delay.as_millis());
    let _ = writeln!(o, "max_message_size = {}", s.max_message_size);
    let _ = writeln!(o, "max_headers = {}", s.max_headers);
    let _ = writeln!(o, "max_forwards = {}", s.max_forwards);
    let _ = writeln!(o, "max_calls = {}", s.max_calls);
    let _ = writeln!(o, "max_tcp_connections = {}", s.max_tcp_connections);
    let _ = writeln!(o, "tcp_idle_timeout_s = {}", s.tcp_idle_timeout.as_secs());
    let _ = writeln!(
        o,
        "keepalive_interval_s = {}",
        s.keepalive_interval.as_secs()
    );
    let _ = writeln!(
        o,
        "max_connections_per_partner = {}",
        s.max_connections_per_partner
    );
    let _ = writeln!(
        o,
        "tls_handshake_timeout_ms = {}",
        s.tls_handshake_timeout.as_millis()
    );
    let _ = writeln!(
        o,
        "reconnect_backoff_max_s = {}",
        s.reconnect_backoff_max.as_secs()
    );
    let _ = writeln!(
        o,
        "dialog_idle_timeout_s = {}",
        s.dialog_idle_timeout.as_secs()
    );
    let _ = writeln!(o, "extensions = {}", list(s.extensions.iter().cloned()));
    let _ = writeln!(o, "kernel_filter = {}", s.kernel_filter);
    let _ = writeln!(
        o,
        "kernel_filter_learned_hold_s = {}",
        s.kernel_filter_learned_hold.as_secs()
    );
    let m = &c.media;
    let _ = writeln!(o, "\n[media]");
    let _ = writeln!(o, "kernel = {}", m.kernel);
    let latching = if m.strict_latching {
        "strict"
    } else {
        "symmetric"
    };
    let _ = writeln!(o, "latching = {}", q(latching));
    let _ = writeln!(
        o,
        "inactivity_timeout_s = {}",
        m.inactivity_timeout.as_secs()
    );
    let _ = writeln!(o, "relay_threads = {}", m.relay_threads);
    let _ = writeln!(o, "nft_table = {}", q(&m.nft_table));
    let _ = writeln!(o, "\n[service]");
    let _ = writeln!(o, "drain_timeout_s = {}", c.service.drain_timeout.as_secs());
    let _ = writeln!(o, "shards = {}", c.service.shards);
    let a = &c.admin;
    let _ = writeln!(o, "\n[admin]");
    let _ = writeln!(o, "enabled = {}", a.enabled);
    let _ = writeln!(o, "listen = {}", q(&a.listen.to_string()));
    if a.token.is_some() {
        // The secret itself is not printed.
        let _ = writeln!(o, "# token = (set)");
    }
    let n = &c.ng;
    match n.listen {
        None => {
            let _ = writeln!(o, "\n# [ng] off (no table)");
        }
        Some(listen) => {
            let _ = writeln!(o, "\n[ng]");
            let _ = writeln!(o, "listen = {}", q(&listen.to_string()));
            let _ = writeln!(
                o,
                "sources = {}",
                list(n.sources.iter().map(|s| s.to_string()))
            );
            for (k, v) in &n.directions {
                let _ = writeln!(o, "directions.{} = {}", q(k), q(v));
            }
            if let Some([a, b]) = &n.default_direction {
                let _ = writeln!(
                    o,
                    "default_direction = {}",
                    list([a.clone(), b.clone()].into_iter())
                );
            }
            let _ = writeln!(o, "max_calls = {}", n.max_calls);
            let _ = writeln!(o, "reply_cache = {}", n.reply_cache);
        }
    }
    describe_dns(&mut o, c);
    for r in &c.realms {
        let _ = writeln!(o, "\n[[realm]]");
        let _ = writeln!(o, "name = {}", q(&r.name));
        let kind = match r.kind {
            RealmKind::Home => "home",
            RealmKind::Peer => "peer",
        };
        let _ = writeln!(o, "kind = {}", q(kind));
        let _ = writeln!(
            o,
            "listen = {}",
            list(r.listen.iter().map(|l| l.to_string()))
        );
        let _ = writeln!(o, "advertise = {}", q(&r.advertise.to_string()));
        let _ = writeln!(o, "media_address = {}", q(&r.media_address.to_string()));
        let (lo, hi) = r.media_ports;
        let _ = writeln!(o, "media_ports = {}", q(&format!("{lo}-{hi}")));
        if let Some(t) = &r.tls {
            let _ = writeln!(
                o,
                "tls = {{ certificate = {}, key = {} }}",
                q(&t.certificate.path.display().to_string()),
                q(&t.key.path.display().to_string())
            );
        }
        if r.kind == RealmKind::Home {
            if let Some(core) = &r.core {
                let _ = writeln!(o, "core = {}", q(&core.to_string()));
            }
            let _ = writeln!(
                o,
                "core_sources = {}",
                list(r.core_sources.iter().map(|s| s.to_string()))
            );
            let _ = writeln!(o, "trust = {}", q(trust(r.trust)));
        } else if !r.dns_servers.is_empty() {
            let servers = r.dns_servers.iter().map(|s| s.to_string());
            let _ = writeln!(o, "dns_servers = {}", list(servers));
        }
        let _ = writeln!(o, "\n[realm.headers]");
        let _ = writeln!(o, "allow = {}", list(r.headers.allow.iter().cloned()));
        let _ = writeln!(o, "bodies = {}", list(r.headers.bodies.iter().cloned()));
        for p in &r.peers {
            let _ = writeln!(o, "\n[[realm.peer]]");
            let _ = writeln!(o, "# from {}", p.origin.display());
            let _ = writeln!(o, "name = {}", q(&p.name));
            let _ = writeln!(o, "realm = {}", q(&p.realm));
            let _ = writeln!(o, "domains = {}", list(p.domains.iter().cloned()));
            let _ = writeln!(
                o,
                "sources = {}",
                list(p.sources.iter().map(|s| s.to_string()))
            );
            let _ = writeln!(o, "next_hop = {}", q(&p.next_hop.to_string()));
            let _ = writeln!(o, "trust = {}", q(trust(p.trust)));
            let refer = match p.refer {
                ReferPolicy::Relay => "relay",
                ReferPolicy::Refuse => "refuse",
                ReferPolicy::Terminate => "terminate",
            };
            let _ = writeln!(o, "refer = {}", q(refer));
            let _ = writeln!(o, "ioi = {}", q(&p.ioi));
            if let Some(t) = &p.tls {
                // An inline table stays on one line (TOML 1.0), however long its lists.
                let one_line = |items: Vec<String>| {
                    let items: Vec<String> = items.iter().map(|s| q(s)).collect();
                    format!("[{}]", items.join(", "))
                };
                let mut parts = vec![format!(
                    "fingerprints = {}",
                    one_line(
                        t.fingerprints
                            .iter()
                            .map(crate::peering::format_fingerprint)
                            .collect()
                    )
                )];
                if let Some(ca) = &t.ca {
                    parts.push(format!("ca = {}", q(&ca.path.display().to_string())));
                }
                parts.push(format!("identities = {}", one_line(t.identities.clone())));
                if let Some(crl) = &t.crl {
                    parts.push(format!("crl = {}", q(&crl.path.display().to_string())));
                }
                let _ = writeln!(o, "tls = {{ {} }}", parts.join(", "));
            }
            let _ = writeln!(
                o,
                "allowed_methods = {}",
                list(p.allowed_methods.iter().cloned())
            );
            let _ = writeln!(o, "max_calls = {}", p.max_calls);
            let _ = writeln!(o, "max_cps = {}", p.max_cps);
            let _ = writeln!(o, "max_rps = {}", p.max_rps);
            let _ = writeln!(o, "max_transactions = {}", p.max_transactions);
            let _ = writeln!(o, "max_bytes_per_second = {}", p.max_bytes_per_second);
            describe_peer_dns(&mut o, &p.dns);
            let _ = writeln!(o, "\n[realm.peer.headers]");
            let _ = writeln!(o, "allow = {}", list(p.headers.allow.iter().cloned()));
            let _ = writeln!(o, "bodies = {}", list(p.headers.bodies.iter().cloned()));
        }
    }
    o
}

/// `[dns]`, and `[enum]` when configured.
fn describe_dns(o: &mut String, c: &Config) {
    let d = &c.dns;
    let _ = writeln!(o, "\n[dns]");
    if d.servers.is_empty() {
        let _ = writeln!(o, "# servers: none, the system resolver (/etc/resolv.conf)");
    }
    let _ = writeln!(
        o,
        "servers = {}",
        list(d.servers.iter().map(|s| s.to_string()))
    );
    let _ = writeln!(o, "timeout_ms = {}", d.timeout.as_millis());
    let _ = writeln!(o, "attempts = {}", d.attempts);
    let _ = writeln!(o, "cache_size = {}", d.cache_size);
    let _ = writeln!(o, "max_ttl_s = {}", d.max_ttl.as_secs());
    let _ = writeln!(o, "max_negative_ttl_s = {}", d.max_negative_ttl.as_secs());
    let _ = writeln!(o, "hold_down_s = {}", d.hold_down.as_secs());
    if let Some(e) = &c.enum_routing {
        let _ = writeln!(o, "\n[enum]");
        let _ = writeln!(
            o,
            "servers = {}",
            list(e.servers.iter().map(|s| s.to_string()))
        );
        let _ = writeln!(o, "suffixes = {}", list(e.suffixes.iter().cloned()));
        if let Some(f) = &e.fallback {
            let _ = writeln!(o, "fallback = {}", q(f));
        }
        let _ = writeln!(o, "no_record_status = {}", e.no_record_status);
    }
}

fn describe_peer_dns(o: &mut String, d: &super::PeerDns) {
    let route = match d.route {
        super::PeerRoute::Static => "static",
        super::PeerRoute::Dns => "dns",
    };
    let _ = writeln!(o, "route = {}", q(route));
    let _ = writeln!(
        o,
        "transports = {}",
        list(d.transports.iter().map(|t| t.as_str().to_ascii_lowercase()))
    );
}
