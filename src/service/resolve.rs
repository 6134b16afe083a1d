//! `palisade resolve`: the [`Trace`] a lookup writes step by step (ENUM name, NAPTRs with the
//! rule applied, SRV, A/AAAA, the partner matched and the identity it must prove, the targets)
//! and [`explain`], which runs one lookup against the configured name servers and renders it.

use std::time::Duration;

use super::dns::{DnsResolver, Kind, QueryError, Rdata};
use crate::config::{Config, NextHop};
use crate::routing::{LookupResult, Route};
use crate::sip::Uri;
/// Every step of one lookup, for `palisade resolve` and debug logs.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    pub lines: Vec<String>,
    /// The final targets, in order.
    pub targets: Vec<NextHop>,
    /// Whether to keep lines at all (the service's lookups keep none).
    pub keep: bool,
    /// The shortest TTL of the answers the lookup used (`None`: it asked nothing, a static
    /// route): how long what it found holds, e.g. a partner address in the kernel filter.
    pub ttl: Option<Duration>,
}

impl Trace {
    pub fn keeping() -> Trace {
        Trace {
            keep: true,
            ..Trace::default()
        }
    }

    pub(super) fn step(&mut self, line: &str) {
        if self.keep {
            self.lines.push(line.to_string());
        }
    }

    /// One answer the lookup used was good for `ttl` (for a cached one: what it had left).
    pub(super) fn lasts(&mut self, ttl: Duration) {
        self.ttl = Some(self.ttl.map_or(ttl, |t| t.min(ttl)));
    }

    pub(super) fn query(
        &mut self,
        name: &str,
        kind: Kind,
        result: &Result<Vec<Rdata>, QueryError>,
        cached: Option<Duration>,
    ) {
        if !self.keep {
            return;
        }
        let from = match cached {
            Some(left) => format!(" (cached, {}s left)", left.as_secs()),
            None => String::new(),
        };
        let kind = kind.label().to_ascii_uppercase();
        match result {
            Err(e) => self.step(&format!("{kind} {name}: no answer: {}", e.0)),
            Ok(r) if r.is_empty() => self.step(&format!("{kind} {name}: no records{from}")),
            Ok(r) => {
                self.step(&format!("{kind} {name}:{from}"));
                for rd in r {
                    let line = match rd {
                        Rdata::Naptr(n) => format!("    {n}"),
                        Rdata::Srv(s) => format!("    {s}"),
                        Rdata::Ip(ip) => format!("    {kind} {ip}"),
                    };
                    self.step(&line);
                }
            }
        }
    }

    /// The whole trace as text, ending with the targets in order.
    pub fn render(&self, result: &LookupResult) -> String {
        let mut s = String::new();
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        match result {
            Ok(Route::Peer { targets, uri, .. }) => {
                if let Some(u) = uri {
                    s.push_str(&format!("Request-URI toward the partner: {u}\n"));
                }
                s.push_str("targets, in order:\n");
                for (i, t) in targets.iter().enumerate() {
                    s.push_str(&format!(
                        "  {}. {} {}\n",
                        i + 1,
                        t.transport.as_str(),
                        t.addr
                    ));
                }
            }
            Ok(Route::Home { targets, .. }) => {
                s.push_str("targets, in order (home core):\n");
                for (i, t) in targets.iter().enumerate() {
                    s.push_str(&format!(
                        "  {}. {} {}\n",
                        i + 1,
                        t.transport.as_str(),
                        t.addr
                    ));
                }
            }
            Ok(Route::NotFound) => s.push_str("no route: 404\n"),
            Err(status) => s.push_str(&format!("no route: answered {status}\n")),
        }
        s
    }
}

/// `palisade resolve`: what a request from the home core for `what` (a `+E164` number, a SIP
/// URI or a domain) would be routed to, with every step. Returns the text and whether a route
/// was found.
pub fn explain(cfg: &Config, what: &str) -> anyhow::Result<(String, bool)> {
    let text = if what.starts_with('+') {
        format!("tel:{what}")
    } else if what.contains(':') {
        what.to_string()
    } else {
        format!("sip:{what}")
    };
    let target = Uri::parse(&text)
        .ok_or_else(|| anyhow::anyhow!("`{what}`: expected +E164, a SIP URI or a domain"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let resolver = DnsResolver::new(cfg, None)?;
        let mut trace = Trace::keeping();
        let servers = if cfg.dns.servers.is_empty() {
            "the system resolver".to_string()
        } else {
            cfg.dns
                .servers
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        trace.step(&format!(
            "resolving {target} as a request from the home core, asking {servers}"
        ));
        let result = resolver.resolve(cfg, &target, true, &mut trace).await;
        let ok = matches!(result, Ok(Route::Peer { .. } | Route::Home { .. }));
        Ok((trace.render(&result), ok))
    })
}
