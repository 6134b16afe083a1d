//! The metrics the admin listener exports (`/metrics`, Prometheus text format), fed by the
//! engine's events ([`crate::b2bua::Event`]), the engine's and media plane's counts, and the
//! service itself (reloads). Labels carry realm and partner *names* and fixed keywords only,
//! never addresses, Call-IDs or unknown method names, so the number of series stays bounded by
//! the configuration.

use prometheus::{
    Counter, Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::b2bua::{EndedBy, Event, Origin, RejectReason};
use crate::sip::Method;

/// The tables of `palisade_engine_entries`, in the order of `Border::held_state`.
pub const ENGINE_TABLES: [&str; 4] = ["sessions", "dialogs", "pending", "transactions"];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    responses: IntCounterVec,
    rejected: IntCounterVec,
    malformed: IntCounterVec,
    dropped: IntCounterVec,
    calls_started: IntCounterVec,
    calls_answered: IntCounter,
    calls_ended: IntCounterVec,
    setup: HistogramVec,
    failovers: IntCounter,
    timeouts: IntCounterVec,
    reloads: IntCounterVec,
    events_lost: IntCounter,
    pub tls_refused: IntCounterVec,
    pub tls_connections: IntCounterVec,
    pub sessions_active: IntGauge,
    /// `Border::held_bytes` of each engine, by shard index (refreshed every second).
    pub engine_held_bytes: IntGaugeVec,
    /// `Border::held_state` of each engine: entries by shard and table ([`ENGINE_TABLES`]).
    pub engine_entries: IntGaugeVec,
    pub draining: IntGauge,
    pub media_flows: IntGaugeVec,
    /// DNS queries (`type`: naptr, srv, a, aaaa; `result`: records, none, error) and cache
    /// hits (`type`), counted by `service::dns`.
    pub dns_lookups: IntCounterVec,
    pub dns_cache_hits: IntCounterVec,
    media_packets: IntCounterVec,
    media_bytes: IntCounterVec,
    /// Packets the kernel SIP filter dropped, by realm (`[sip] kernel_filter`).
    pub kernel_filter_dropped: IntCounterVec,
    process: ProcessMetrics,
}

/// `process_*` series, refreshed from /proc/self at each render ([`super::process`]).
struct ProcessMetrics {
    resident: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    cpu: Counter,
    start: Gauge,
}

fn method_label(m: &Method) -> &str {
    match m {
        Method::Other(_) => "other",
        m => m.as_str(),
    }
}

fn class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "6xx",
    }
}

fn peer(o: &Origin) -> &str {
    o.peer.as_deref().unwrap_or("")
}

fn reject_label(r: RejectReason) -> &'static str {
    match r {
        RejectReason::UnsupportedExtension => "unsupported_extension",
        RejectReason::UnsupportedScheme => "unsupported_scheme",
        RejectReason::TooManyHops => "too_many_hops",
        RejectReason::MethodNotAllowed => "method_not_allowed",
        RejectReason::RegisterNotServed => "register_not_served",
        RejectReason::NoRoute => "no_route",
        RejectReason::CallLimit => "call_limit",
        RejectReason::RateLimit => "rate_limit",
        RejectReason::TransactionLimit => "transaction_limit",
        RejectReason::Overload => "overload",
        RejectReason::MediaAnchoring => "media_anchoring",
        RejectReason::Draining => "draining",
        RejectReason::DialogReference => "dialog_reference",
        RejectReason::ReferRefused => "refer_refused",
    }
}

/// `Border shutting down` → `border_shutting_down`, `No ACK` → `border_no_ack` (the texts are
/// the engine's own constants, so the label values are bounded).
fn slug(prefix: &str, text: &str) -> String {
    let mut s = String::from(prefix);
    let text = text.strip_prefix("Border ").unwrap_or(text);
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('_') {
            s.push('_');
        }
    }
    s.trim_end_matches('_').to_string()
}

/// How a reload ended, for `palisade_reloads_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    Applied,
    Invalid,
    NeedsRestart,
}

impl Metrics {
    pub fn new(instance: &str) -> Metrics {
        let registry = Registry::new();
        let reg = |m: Box<dyn prometheus::core::Collector>| {
            registry.register(m).expect("metric names are unique");
        };
        macro_rules! counter_vec {
            ($name:expr, $help:expr, $labels:expr) => {{
                let c = IntCounterVec::new(Opts::new($name, $help), $labels).expect("valid");
                reg(Box::new(c.clone()));
                c
            }};
        }
        let requests = counter_vec!(
            "palisade_sip_requests_received_total",
            "New SIP requests received (retransmissions excluded), by method and sender",
            &["method", "realm", "partner"]
        );
        let responses = counter_vec!(
            "palisade_sip_responses_sent_total",
            "Final responses the border sent to requests it received, by method, status class and sender",
            &["method", "class", "realm", "partner"]
        );
        let rejected = counter_vec!(
            "palisade_sip_rejected_total",
            "Requests refused by the border's own policy, by reason and sender",
            &["reason", "realm", "partner"]
        );
        let malformed = counter_vec!(
            "palisade_sip_malformed_rejected_total",
            "Malformed requests answered (400, 413, 505), by status",
            &["status"]
        );
        let kernel_filter_dropped = counter_vec!(
            "palisade_sip_kernel_dropped_total",
            "Packets to a peer realm's SIP listeners from non-partner sources dropped by the kernel filter",
            &["realm"]
        );
        let dropped = counter_vec!(
            "palisade_sip_dropped_total",
            "Inputs discarded without an answer, by reason, receiving realm and partner (byte-rate breaches)",
            &["reason", "realm", "partner"]
        );
        let calls_started = counter_vec!(
            "palisade_calls_started_total",
            "INVITEs relayed (calls being set up), by caller and callee side",
            &["from_realm", "from_partner", "to_realm", "to_partner"]
        );
        let calls_answered =
            IntCounter::new("palisade_calls_answered_total", "Calls answered").expect("valid");
        reg(Box::new(calls_answered.clone()));
        let calls_ended = counter_vec!(
            "palisade_calls_ended_total",
            "Calls ended, by cause: caller_bye, callee_bye, border_<reason> for answered calls; cancelled, failed_<class> for unanswered ones",
            &["cause"]
        );
        let setup = HistogramVec::new(
            HistogramOpts::new(
                "palisade_call_setup_seconds",
                "Time from the INVITE to the answer relayed to the caller",
            )
            .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0]),
            &[],
        )
        .expect("valid");
        reg(Box::new(setup.clone()));
        let failovers = IntCounter::new(
            "palisade_target_failovers_total",
            "Initial requests moved to the next target after a timeout or 503",
        )
        .expect("valid");
        reg(Box::new(failovers.clone()));
        let timeouts = counter_vec!(
            "palisade_transaction_timeouts_total",
            "Requests the border sent that got no final response in time, by method and destination",
            &["method", "realm", "partner"]
        );
        let reloads = counter_vec!(
            "palisade_reloads_total",
            "Configuration reloads (SIGHUP), by result: applied, invalid, needs_restart",
            &["result"]
        );
        for r in ["applied", "invalid", "needs_restart"] {
            reloads.with_label_values(&[r]);
        }
        let tls_refused = counter_vec!(
            "palisade_tls_handshake_failures_total",
            "TLS handshakes refused, by realm, direction (in: a partner connecting, out: to a partner) and reason (unknown_ca, name_mismatch, expired, not_pinned, no_client_certificate, ...)",
            &["realm", "direction", "reason"]
        );
        let tls_connections = counter_vec!(
            "palisade_tls_connections_total",
            "TLS connections established, by realm, the partner the certificate proved and direction",
            &["realm", "partner", "direction"]
        );
        let events_lost = IntCounter::new(
            "palisade_events_lost_total",
            "Engine events discarded because the service fell behind (metrics undercount by this)",
        )
        .expect("valid");
        reg(Box::new(events_lost.clone()));
        let sessions_active = IntGauge::new(
            "palisade_sessions_active",
            "Calls (and subscriptions, relayed standalone transactions) not yet ended",
        )
        .expect("valid");
        reg(Box::new(sessions_active.clone()));
        let engine_held_bytes = IntGaugeVec::new(
            Opts::new(
                "palisade_engine_held_bytes",
                "Bytes of call, dialog and transaction state an engine holds, by shard (estimate from capacities, refreshed every second)",
            ),
            &["shard"],
        )
        .expect("valid");
        reg(Box::new(engine_held_bytes.clone()));
        let engine_entries = IntGaugeVec::new(
            Opts::new(
                "palisade_engine_entries",
                "Entries an engine holds, by shard and table: sessions (ended ones linger 64*T1), dialogs (and other indexes), pending lookups, transactions (refreshed every second)",
            ),
            &["shard", "table"],
        )
        .expect("valid");
        reg(Box::new(engine_entries.clone()));
        let draining = IntGauge::new(
            "palisade_draining",
            "1 while the border drains before a stop",
        )
        .expect("valid");
        reg(Box::new(draining.clone()));
        let media_flows = IntGaugeVec::new(
            Opts::new(
                "palisade_media_flows",
                "Relay flows open, by realm and forwarding path (user, kernel)",
            ),
            &["realm", "path"],
        )
        .expect("valid");
        reg(Box::new(media_flows.clone()));
        let dns_lookups = counter_vec!(
            "palisade_dns_lookups_total",
            "DNS queries sent for routing (ENUM and RFC 3263), by record type and result: records, none (NXDOMAIN or no data), error (timeout, server failure)",
            &["type", "result"]
        );
        let dns_cache_hits = counter_vec!(
            "palisade_dns_cache_hits_total",
            "DNS answers (positive or negative) taken from the cache instead of a query, by record type",
            &["type"]
        );
        let media_packets = counter_vec!(
            "palisade_media_packets_relayed_total",
            "Media packets relayed through a realm's relay address, by realm and forwarding path (user, kernel; kernel as of the last counters read, about every second)",
            &["realm", "path"]
        );
        let media_bytes = counter_vec!(
            "palisade_media_bytes_relayed_total",
            "Media bytes (UDP payload) relayed through a realm's relay address, by realm and forwarding path",
            &["realm", "path"]
        );
        let gauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid");
            reg(Box::new(g.clone()));
            g
        };
        let cpu = Counter::new(
            "process_cpu_seconds_total",
            "User and system CPU time spent, in seconds",
        )
        .expect("valid");
        reg(Box::new(cpu.clone()));
        let process = ProcessMetrics {
            resident: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
            ),
            open_fds: gauge("process_open_fds", "Open file descriptors"),
            max_fds: gauge("process_max_fds", "Soft limit of open file descriptors"),
            cpu,
            start: gauge(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
            ),
        };
        let info = IntGaugeVec::new(
            Opts::new("palisade_info", "Instance name and version; always 1"),
            &["instance", "version"],
        )
        .expect("valid");
        info.with_label_values(&[instance, env!("CARGO_PKG_VERSION")])
            .set(1);
        reg(Box::new(info));
        Metrics {
            registry,
            requests,
            responses,
            rejected,
            malformed,
            dropped,
            calls_started,
            calls_answered,
            calls_ended,
            setup,
            failovers,
            timeouts,
            reloads,
            events_lost,
            tls_refused,
            tls_connections,
            sessions_active,
            engine_held_bytes,
            engine_entries,
            draining,
            media_flows,
            dns_lookups,
            dns_cache_hits,
            media_packets,
            media_bytes,
            kernel_filter_dropped,
            process,
        }
    }

    /// Datagrams the transport's UDP screens dropped (unknown sources, never queued for the
    /// engine), counted like the engine's own unknown-source drops.
    pub fn screened(&self, cfg: &crate::config::Config, by_realm: Vec<(usize, u64)>) {
        for (ri, n) in by_realm {
            let realm = cfg.realms.get(ri).map_or("?", |r| r.name.as_str());
            self.dropped
                .with_label_values(&["unknown_source", realm, ""])
                .inc_by(n);
        }
    }

    /// New INVITEs the admission stage answered 503 before queueing them (`transport::inbox`),
    /// counted with the engine's own refusals under the reason `admission`.
    pub fn admission_rejected(&self, cfg: &crate::config::Config, by_realm: Vec<(usize, u64)>) {
        for (ri, n) in by_realm {
            let realm = cfg.realms.get(ri).map_or("?", |r| r.name.as_str());
            self.rejected
                .with_label_values(&["admission", realm, ""])
                .inc_by(n);
        }
    }

    /// Brings the relayed counters of one realm up to the media plane's running totals.
    pub fn set_relayed(&self, realm: &str, relayed: &super::media::Relayed) {
        use super::media::{KERNEL, USER};
        for (path, i) in [("user", USER), ("kernel", KERNEL)] {
            raise_to(
                &self.media_packets.with_label_values(&[realm, path]),
                relayed.packets[i],
            );
            raise_to(
                &self.media_bytes.with_label_values(&[realm, path]),
                relayed.bytes[i],
            );
        }
    }

    fn refresh_process(&self) {
        let s = super::process::sample();
        let p = &self.process;
        let set = |g: &Gauge, v: Option<u64>| {
            if let Some(v) = v {
                g.set(v as f64);
            }
        };
        set(&p.resident, s.resident_bytes);
        set(&p.open_fds, s.open_fds);
        set(&p.max_fds, s.max_fds);
        if let Some(start) = s.start_time_seconds {
            p.start.set(start);
        }
        if let Some(cpu) = s.cpu_seconds.filter(|c| *c > p.cpu.get()) {
            p.cpu.inc_by(cpu - p.cpu.get());
        }
    }

    /// Counts one engine event.
    pub fn observe(&self, ev: &Event) {
        match ev {
            Event::RequestReceived { method, from } => self
                .requests
                .with_label_values(&[method_label(method), &from.realm, peer(from)])
                .inc(),
            Event::RequestAnswered {
                method,
                status,
                from,
            } => self
                .responses
                .with_label_values(&[
                    method_label(method),
                    class(*status),
                    &from.realm,
                    peer(from),
                ])
                .inc(),
            Event::Rejected { reason, from, .. } => self
                .rejected
                .with_label_values(&[reject_label(*reason), &from.realm, peer(from)])
                .inc(),
            Event::MalformedRejected { status, .. } => self
                .malformed
                .with_label_values(&[&status.to_string()])
                .inc(),
            Event::Dropped {
                reason,
                realm,
                partner,
                ..
            } => {
                let r = match reason {
                    crate::b2bua::DropReason::UnknownSource => "unknown_source",
                    crate::b2bua::DropReason::Malformed => "malformed",
                    crate::b2bua::DropReason::ByteRate => "byte_rate",
                };
                let partner = partner.as_deref().unwrap_or("");
                self.dropped.with_label_values(&[r, realm, partner]).inc()
            }
            Event::CallStarted { from, to, .. } => self
                .calls_started
                .with_label_values(&[&from.realm, peer(from), &to.realm, peer(to)])
                .inc(),
            Event::CallAnswered { setup, .. } => {
                self.calls_answered.inc();
                self.setup
                    .with_label_values(&[] as &[&str])
                    .observe(setup.as_secs_f64());
            }
            Event::CallFailed { status, .. } => self
                .calls_ended
                .with_label_values(&[&format!("failed_{}", class(*status))])
                .inc(),
            Event::CallCancelled { .. } => self.calls_ended.with_label_values(&["cancelled"]).inc(),
            Event::CallEnded { by, .. } => {
                let cause = match by {
                    EndedBy::Caller => "caller_bye".to_string(),
                    EndedBy::Callee => "callee_bye".to_string(),
                    EndedBy::Border(text) => slug("border_", text),
                };
                self.calls_ended.with_label_values(&[&cause]).inc()
            }
            Event::TargetFailed { .. } => self.failovers.inc(),
            Event::TransactionTimeout { method, to } => {
                let m = method.as_ref().map_or("local", method_label);
                self.timeouts
                    .with_label_values(&[m, &to.realm, peer(to)])
                    .inc()
            }
        }
    }

    pub fn reload(&self, r: ReloadResult) {
        let label = match r {
            ReloadResult::Applied => "applied",
            ReloadResult::Invalid => "invalid",
            ReloadResult::NeedsRestart => "needs_restart",
        };
        self.reloads.with_label_values(&[label]).inc();
    }

    /// Brings the lost-events counter up to the engine's running total.
    pub fn set_events_lost(&self, total: u64) {
        raise_to(&self.events_lost, total);
    }

    /// The Prometheus text exposition of every metric (process figures read now).
    pub fn render(&self) -> Vec<u8> {
        self.refresh_process();
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// A counter fed from a running total kept elsewhere: moved up to it, never down.
pub(super) fn raise_to(c: &IntCounter, total: u64) {
    let have = c.get();
    if total > have {
        c.inc_by(total - have);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn border_causes_become_bounded_label_values() {
        assert_eq!(
            slug("border_", "Border shutting down"),
            "border_shutting_down"
        );
        assert_eq!(slug("border_", "No ACK"), "border_no_ack");
        assert_eq!(
            slug("border_", "Dialog idle timeout"),
            "border_dialog_idle_timeout"
        );
    }
}
