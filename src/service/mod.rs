//! The running service: binds the transports, starts the media plane, owns the clock, and drives
//! the sans-IO [`Border`] engine — feeding it what arrives and the time, performing the
//! transmits and media commands it returns.

pub mod admin;
pub mod dns;
pub mod kernel_filter;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod ng;
pub mod notify;
pub mod process;
mod resolve;
pub mod shard;
pub mod status;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, ConfigErrors};
use crate::routing::LookupRequest;
use crate::transport::{Inbox, Received, Transports};

/// How often relay events (a flow latched both ways) and kernel counters reports are collected;
/// the kernel install that follows is batched anyway.
const MEDIA_POLL: Duration = Duration::from_millis(50);
/// How often flows are checked for media inactivity. Each check also requests fresh kernel
/// counters, which a reader thread of the kernel path delivers to a later media poll: the loop
/// never waits for `nft`.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Every relayed stream holds two sockets per component: lift the soft descriptor limit to the
/// hard one so a busy border is not capped at the usual 1,024. Returns the limit in force
/// (`None` if it cannot be read).
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Some(raised.rlim_cur);
            }
            tracing::warn!("cannot raise the open-files limit");
        }
    }
    Some(lim.rlim_cur)
}

/// Descriptors one audio call holds: RTP and RTCP sockets on each side of the relay.
const FDS_PER_CALL: u64 = 4;

/// Caps `[sip] max_calls` to what `fds` open files can carry, so a border at its descriptor
/// limit refuses new calls with 503 (as at `max_calls`) instead of accepting calls whose relay
/// ports cannot be opened. Signalling keeps a reserve: its listeners, the TCP/TLS connections
/// `max_tcp_connections` allows, the admin and ng sockets (at most half of the limit). Returns
/// the configured value when it was lowered.
fn cap_calls_to_descriptors(cfg: &mut Config, fds: u64) -> Option<usize> {
    let reserve = (64 + cfg.sip.max_tcp_connections as u64).min(fds / 2);
    let fit = usize::try_from((fds - reserve) / FDS_PER_CALL)
        .unwrap_or(usize::MAX)
        .max(1);
    (cfg.sip.max_calls > fit).then(|| std::mem::replace(&mut cfg.sip.max_calls, fit))
}

/// [`cap_calls_to_descriptors`] with the limit in force, logged when it lowers `max_calls`.
fn fit_descriptors(cfg: &mut Config, fds: Option<u64>) {
    if let Some(fds) = fds {
        if let Some(asked) = cap_calls_to_descriptors(cfg, fds) {
            tracing::warn!(
                "[sip] max_calls {asked} lowered to {}: the open-files limit is {fds} and each call holds {FDS_PER_CALL} relay sockets (raise LimitNOFILE)",
                cfg.sip.max_calls
            );
        }
    }
}

/// The service's consumer of the engine's events today: one log line each (calls at info,
/// per-request detail at debug), a call's with its correlation id as the `corr` field.
/// `metrics::Metrics::observe` counts the same stream.
fn log_event(ev: &crate::b2bua::Event) {
    use crate::b2bua::Event;
    if let Some(corr) = ev.corr() {
        return tracing::info!(corr, event = ?ev);
    }
    match ev {
        Event::CallStarted { .. }
        | Event::CallAnswered { .. }
        | Event::CallFailed { .. }
        | Event::CallCancelled { .. }
        | Event::CallEnded { .. }
        | Event::Rejected { .. }
        | Event::TransactionTimeout { .. } => tracing::info!(event = ?ev),
        _ => tracing::debug!(event = ?ev),
    }
}

/// Where the configuration comes from, so that SIGHUP can read it again.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A node file (and the peer policy files it names).
    File(PathBuf),
    /// The lab file built into the binary (`palisade run` without `--config`).
    Embedded,
}

impl ConfigSource {
    /// Reads and validates the configuration.
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        match self {
            ConfigSource::File(p) => crate::files::load(p),
            ConfigSource::Embedded => crate::config::parse(
                crate::config::EMBEDDED_DEFAULT,
                Path::new("<built-in default>"),
                &|p| std::fs::read_to_string(p),
            ),
        }
    }
}

/// Where the service is on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// SIGTERM seen: new requests get 503; at the deadline (or once idle) the rest is hung up.
    Draining {
        until: Instant,
    },
    /// Everything was hung up: waiting (bounded) for the BYEs' answers, then exit.
    HangingUp {
        until: Instant,
    },
}

/// How long the BYEs and CANCELs of the final hang-up may wait for their answers.
const HANGUP_GRACE: Duration = Duration::from_secs(4);

/// Runs one border instance: SIGHUP reloads the configuration, SIGTERM (or SIGINT) drains and
/// stops (a second one hangs up at once). Speaks systemd's notify protocol when run under it.
///
/// The calls are carried by [`shard::count`] engines, each in its own task ([`shard::run`]);
/// this loop coordinates them: it owns the connection table and the media plane, performs what
/// the shards hand it, and handles signals, reloads, status and the drain.
pub async fn run(mut cfg: Config, source: ConfigSource) -> anyhow::Result<()> {
    let fds = raise_fd_limit();
    fit_descriptors(&mut cfg, fds);
    let notify = notify::Notifier::from_env();
    let cfg = Arc::new(cfg);
    let count = shard::count(&cfg);
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Received>(4096);
    let (inputs, input_rx): (Vec<_>, Vec<_>) =
        (0..count).map(|_| mpsc::channel::<Received>(4096)).unzip();
    let inbox = Inbox::new(ctl_tx, inputs);
    let admission = inbox.admission().clone();
    let mut transports = Transports::bind(&cfg, inbox).await?;
    let mut media = media::MediaPlane::start(&cfg)?;
    // The ng control path anchors on the relay too, with the last slice of the relay ports.
    let slices = count + usize::from(cfg.ng.listen.is_some());
    let mut ng = ng::NgListener::bind(&cfg, count, slices).await?;
    let admin_state = Arc::new(admin::AdminState {
        metrics: metrics::Metrics::new(&cfg.name),
        ready: AtomicBool::new(true),
        token: cfg.admin.token.clone(),
        status: std::sync::Mutex::new(String::new()),
    });
    let started = Instant::now();
    let mut last_reload: Option<(&'static str, Instant)> = None;
    if cfg.admin.enabled {
        admin::start(cfg.admin.listen, admin_state.clone()).await?;
    }
    let m = &admin_state.metrics;
    let filter = kernel_filter::KernelFilter::start(&cfg, m.kernel_filter_dropped.clone());
    let resolver = Arc::new(dns::DnsResolver::new(
        &cfg,
        Some(dns::DnsMetrics {
            lookups: m.dns_lookups.clone(),
            cache_hits: m.dns_cache_hits.clone(),
        }),
    )?);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<shard::Batch>();
    let udp = (0..cfg.realms.len())
        .map(|r| transports.udp_socket(r))
        .collect::<Vec<_>>();
    let mut shards = Vec::with_capacity(count);
    // Dialog references (Replaces, Join) may name another shard's call: the shards share the
    // index of answered dialogs. One shard needs none.
    let dialogs = (count > 1).then(crate::b2bua::DialogIndex::new);
    for (index, input) in input_rx.into_iter().enumerate() {
        let (control, control_rx) = mpsc::unbounded_channel();
        let gauges = Arc::new(shard::Gauges::default());
        let mut border = shard::engine(&cfg, index, count, slices);
        if let Some(d) = &dialogs {
            border.share_dialogs(d.clone());
        }
        tokio::spawn(shard::run(shard::Parts {
            index,
            border,
            input,
            control: control_rx,
            out: out_tx.clone(),
            gauges: gauges.clone(),
            udp: udp.clone(),
            admin: admin_state.clone(),
            resolver: resolver.clone(),
            admission: admission.clone(),
        }));
        shards.push(shard::Handle { control, gauges });
    }
    drop(out_tx);
    let mut current = cfg.clone();
    tracing::info!(name = %cfg.name, shards = count, "palisade ready");
    notify.send(&format!("READY=1\nSTATUS=ready: {}", cfg.name));

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut media_tick = tokio::time::interval(MEDIA_POLL);
    media_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let watchdog_every = notify.watchdog_interval();
    let mut watchdog = tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_idle_check = Instant::now();
    // Whether the memory freed since the engines last held anything went back to the OS.
    let mut given_back = true;
    let mut stop = Stop::Running;
    let sum =
        |f: fn(&shard::Gauges) -> usize| -> usize { shards.iter().map(|s| f(&s.gauges)).sum() };
    let active = |g: &shard::Gauges| g.active.load(Ordering::Relaxed);
    let hangups = |g: &shard::Gauges| g.hangups_outstanding.load(Ordering::Relaxed);
    // One series per shard, looked up once.
    let held_gauges: Vec<_> = (0..shards.len())
        .map(|i| m.engine_held_bytes.with_label_values(&[&i.to_string()]))
        .collect();
    let entry_gauges: Vec<Vec<_>> = (0..shards.len())
        .map(|i| {
            metrics::ENGINE_TABLES
                .iter()
                .map(|t| {
                    m.engine_entries
                        .with_label_values(&[i.to_string().as_str(), t])
                })
                .collect()
        })
        .collect();
    loop {
        let mut stop_signal = false;
        tokio::select! {
            ev = ctl_rx.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    // Messages go to the shards (see `Inbox`); none is addressed here.
                    Received::Message { .. } => {}
                    Received::Connected { flow, writer, peer } => {
                        if let Some(p) = &peer {
                            let dir = if writer.is_some() { "in" } else { "out" };
                            let realm = &current.realms[flow.realm].name;
                            m.tls_connections.with_label_values(&[realm.as_str(), p, dir]).inc();
                        }
                        transports.connected(flow, writer)
                    }
                    Received::Closed { flow } => transports.closed(flow),
                    Received::Unreachable { flow } => {
                        transports.unreachable(flow);
                        for s in &shards {
                            let _ = s.control.send(shard::Control::TransportFailed(flow));
                        }
                    }
                    Received::TlsRefused { realm, inbound, reason, .. } => {
                        let realm = &current.realms[realm].name;
                        let dir = if inbound { "in" } else { "out" };
                        m.tls_refused.with_label_values(&[realm, dir, reason]).inc();
                    }
                }
            }
            Some(batch) = out_rx.recv() => perform(batch, &shards, &mut transports, &mut media, filter.as_ref()),
            got = ng::recv(&mut ng) => ng::serve(&mut ng, got, &mut media),
            _ = media_tick.tick() => {
                let now = Instant::now();
                media.poll(now);
                if now.duration_since(last_idle_check) >= IDLE_CHECK {
                    last_idle_check = now;
                    let idle = media.idle_flows(now);
                    // Flow ids are the shard's index modulo the count (`b2bua::media`); the ng
                    // control path's are apart (`ng::FLOW_BASE`).
                    let mut per_shard = vec![std::collections::HashSet::new(); count];
                    let mut of_ng = std::collections::HashSet::new();
                    for id in idle {
                        if id.0 >= ng::FLOW_BASE {
                            of_ng.insert(id);
                        } else {
                            per_shard[(id.0 % count as u64) as usize].insert(id);
                        }
                    }
                    if let Some(ng) = &mut ng {
                        if !of_ng.is_empty() {
                            ng.media_idle(&of_ng, &mut media);
                        }
                    }
                    for (s, idle) in shards.iter().zip(per_shard) {
                        if !idle.is_empty() {
                            let _ = s.control.send(shard::Control::MediaIdle(idle));
                        }
                    }
                    m.screened(&current, transports.take_screened());
                    m.admission_rejected(&current, transports.take_admission_rejected());
                    let flows = media.snapshot();
                    for r in &flows {
                        m.media_flows.with_label_values(&[&r.realm, "user"]).set(r.flows_user as i64);
                        m.media_flows.with_label_values(&[&r.realm, "kernel"]).set(r.flows_kernel as i64);
                        m.set_relayed(&r.realm, &r.relayed);
                    }
                    // Each partner with its TLS connections (`None`: not a TLS partner).
                    let partners: Vec<_> = status::merge_partners(
                        shards.iter().map(|s| s.gauges.partners.lock().map(|p| p.clone()).unwrap_or_default()),
                    )
                    .into_iter()
                    .map(|p| {
                        let tls = current
                            .realms
                            .iter()
                            .enumerate()
                            .find(|(_, r)| *r.name == *p.realm)
                            .and_then(|(ri, r)| {
                                r.peers.iter().find(|q| *q.name == *p.name)?.tls.as_ref()?;
                                Some(transports.tls_connections(ri, &p.name))
                            });
                        (p, tls)
                    })
                    .collect();
                    let doc = status::render(
                        &current.name,
                        now.duration_since(started),
                        !admin_state.ready.load(Ordering::Relaxed),
                        sum(active),
                        &partners,
                        &flows,
                        last_reload.map(|(r, at)| (r, now.duration_since(at))),
                    );
                    if let Ok(mut s) = admin_state.status.lock() {
                        *s = doc;
                    }
                }
            }
            _ = watchdog.tick(), if watchdog_every.is_some() => notify.send("WATCHDOG=1"),
            _ = hup.recv() => {
                notify.reloading();
                let (result, applied) = reload(&source, &current, &shards, slices, &mut transports, m).await;
                if let Some((new, sources)) = applied {
                    current = new;
                    if let Some(f) = &filter { f.reload(&current) }
                    transports.screen(|ri| sources.get(ri).cloned().unwrap_or_default());
                    transports.set_admission_delay(current.sip.admission_delay);
                }
                last_reload = Some((result, Instant::now()));
                notify.send(&format!("READY=1\nSTATUS=ready: {}", current.name));
            }
            _ = int.recv() => { tracing::info!("SIGINT"); stop_signal = true }
            _ = term.recv() => { tracing::info!("SIGTERM"); stop_signal = true }
        }
        let now = Instant::now();
        if stop_signal {
            match stop {
                Stop::Running => {
                    let timeout = current.service.drain_timeout;
                    tracing::info!(
                        active = sum(active),
                        "stopping: draining for up to {}s (a second SIGTERM hangs up at once)",
                        timeout.as_secs()
                    );
                    notify.send("STOPPING=1\nSTATUS=draining");
                    admin_state.ready.store(false, Ordering::Relaxed);
                    m.draining.set(1);
                    for s in &shards {
                        let _ = s.control.send(shard::Control::BeginDrain);
                    }
                    stop = Stop::Draining {
                        until: now + timeout,
                    };
                }
                Stop::Draining { .. } => stop = Stop::Draining { until: now },
                Stop::HangingUp { .. } => {}
            }
        }
        if let Stop::Draining { until } = stop {
            let left = sum(active);
            if left == 0 || now >= until {
                if left > 0 {
                    tracing::info!(calls = left, "drain time is up: hanging up on both legs");
                }
                notify.send(&format!("STATUS=hanging up {left} calls"));
                // Each shard has hung up (and counted what it waits for) when it answers.
                let mut done = Vec::new();
                for s in &shards {
                    let (tx, rx) = oneshot::channel();
                    if s.control.send(shard::Control::HangUpAll(tx)).is_ok() {
                        done.push(rx);
                    }
                }
                for rx in done {
                    let _ = rx.await;
                }
                stop = Stop::HangingUp {
                    until: now + HANGUP_GRACE,
                };
            }
        }
        m.sessions_active.set(sum(active) as i64);
        for (s, g) in shards.iter().zip(&held_gauges) {
            let held = s.gauges.held_bytes.load(Ordering::Relaxed);
            g.set(i64::try_from(held).unwrap_or(i64::MAX));
        }
        let mut idle = true;
        for (s, gs) in shards.iter().zip(&entry_gauges) {
            for (n, g) in s.gauges.entries.iter().zip(gs) {
                let n = n.load(Ordering::Relaxed);
                idle &= n == 0;
                g.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        // Once every engine is empty again, what the allocator keeps of a peak goes back to the
        // OS (once per busy period): resident memory returns to where it started.
        if !idle {
            given_back = false;
        } else if !given_back {
            given_back = true;
            process::give_back_memory();
        }
        m.set_events_lost(
            shards
                .iter()
                .map(|s| s.gauges.events_lost.load(Ordering::Relaxed))
                .sum(),
        );
        if let Stop::HangingUp { until } = stop {
            // What the shards handed over is performed before the outstanding count is read.
            while let Ok(batch) = out_rx.try_recv() {
                perform(batch, &shards, &mut transports, &mut media, filter.as_ref());
            }
            let in_flight: usize = shards
                .iter()
                .map(|s| s.gauges.in_flight.load(Ordering::Acquire))
                .sum();
            if (sum(hangups) == 0 && in_flight == 0) || Instant::now() >= until {
                break;
            }
        }
    }
    // Let the transport tasks write what was queued last (the final BYEs) before exiting.
    tokio::time::sleep(Duration::from_millis(50)).await;
    media.shutdown();
    if let Some(f) = filter {
        f.stop();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Performs one shard's batch in the engine's order: TLS targets' partners, relay commands
/// (a port is open before the SDP naming it leaves), connection hints, then the messages.
fn perform(
    batch: shard::Batch,
    shards: &[shard::Handle],
    transports: &mut Transports,
    media: &mut media::MediaPlane,
    filter: Option<&kernel_filter::KernelFilter>,
) {
    for e in &batch.expect {
        transports.expect_partner(e.realm, e.addr, &e.partner);
        // A partner DNS found connects to us from there too: its SYNs must pass the kernel
        // filter (over UDP/TCP a target must be one of its `sources`, already in the set).
        if let Some(f) = filter {
            f.allow(e.realm, e.addr.ip(), e.ttl);
        }
    }
    for cmd in batch.media {
        media.apply(cmd);
    }
    for h in batch.hints {
        transports.connection_hint(h);
    }
    for t in batch.transmits {
        transports.send(t);
    }
    if let Some(s) = shards.get(batch.shard) {
        s.gauges.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs one route lookup in its own task, bounded by the engine's own lookup timeout (the engine
/// has answered 504 by then; the answer would be ignored).
fn spawn_lookup(
    resolver: &Arc<dns::DnsResolver>,
    cfg: Arc<Config>,
    req: LookupRequest,
    back: mpsc::UnboundedSender<shard::LookupAnswer>,
) {
    let resolver = resolver.clone();
    tokio::spawn(async move {
        let mut trace = dns::Trace::default();
        let limit = cfg.sip.lookup_timeout;
        let work = resolver.resolve(&cfg, &req.target, req.from_home, &mut trace);
        let result = match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => Err(504),
        };
        match &result {
            Ok(route) => {
                tracing::debug!(lookup = req.id.0, target = %req.target, ?route, "route lookup done")
            }
            Err(status) => {
                tracing::info!(lookup = req.id.0, target = %req.target, status, "route lookup found no route")
            }
        }
        let _ = back.send((req.id, result, trace.ttl));
    });
}

/// SIGHUP: reads the configuration again. A bad one is refused (one line per error, each with
/// file, line and field) and the running one kept; one that changes realms, listeners or relay
/// ports is refused as needing a restart; otherwise every shard takes its share while calls
/// run. Returns the result's label and, when applied, the new configuration.
async fn reload(
    source: &ConfigSource,
    old: &Config,
    shards: &[shard::Handle],
    slices: usize,
    transports: &mut Transports,
    m: &metrics::Metrics,
) -> (
    &'static str,
    Option<(Arc<Config>, Vec<Vec<std::net::IpAddr>>)>,
) {
    let new = match source.load() {
        Ok(mut c) => {
            fit_descriptors(&mut c, raise_fd_limit());
            c
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!("reload refused, the running configuration is kept: {e}");
            }
            m.reload(metrics::ReloadResult::Invalid);
            return ("invalid", None);
        }
    };
    // Certificates and keys are checked before anything is applied: a key that does not match
    // its certificate refuses the whole reload.
    let tls = match crate::peering::build(&new) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("reload refused, the running configuration is kept: {e}");
            m.reload(metrics::ReloadResult::Invalid);
            return ("invalid", None);
        }
    };
    let mut kept = Vec::new();
    if new.media != old.media {
        kept.push("[media]");
    }
    if new.admin != old.admin {
        kept.push("[admin]");
    }
    if new.dns != old.dns || dns::server_lists(&new) != dns::server_lists(old) {
        kept.push("[dns]");
    }
    if new.log != old.log {
        kept.push("log");
    }
    if new.log_format != old.log_format {
        kept.push("log_format");
    }
    if new.name != old.name {
        kept.push("name");
    }
    if new.service.shards != old.service.shards {
        kept.push("[service] shards");
    }
    // Every shard runs the same check on its share (realms, listeners, ports), so they all
    // take it or all refuse it.
    let mut answers = Vec::new();
    for (i, s) in shards.iter().enumerate() {
        let (tx, rx) = oneshot::channel();
        let share = Arc::new(new.shard_in(i, shards.len(), slices));
        if s.control
            .send(shard::Control::Reconfigure(share, tx))
            .is_ok()
        {
            answers.push(rx);
        }
    }
    // The sources each realm's UDP screen admits: every shard's partners, those a reload
    // removed whose calls still run included.
    let mut refused = None;
    let mut sources: Vec<Vec<std::net::IpAddr>> = vec![Vec::new(); new.realms.len()];
    for rx in answers {
        match rx.await {
            Ok(Err(e)) => {
                refused.get_or_insert(e);
            }
            Ok(Ok(per_realm)) => {
                for (all, mine) in sources.iter_mut().zip(per_realm) {
                    all.extend(mine);
                }
            }
            Err(_) => {}
        }
    }
    for s in &mut sources {
        s.sort();
        s.dedup();
    }
    match refused {
        None => {
            transports.install_tls(tls, &new);
            m.reload(metrics::ReloadResult::Applied);
            if kept.is_empty() {
                tracing::info!("reload applied");
            } else {
                tracing::warn!(
                    "reload applied; changes to {} need a restart and are not in effect",
                    kept.join(", ")
                );
            }
            ("applied", Some((Arc::new(new), sources)))
        }
        Some(e) => {
            m.reload(metrics::ReloadResult::NeedsRestart);
            tracing::error!(
                "reload refused, the running configuration is kept: {e} (needs restart)"
            );
            ("needs_restart", None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The open-files limit bounds the calls: 20,000 descriptors with the default 1,024 TCP
    /// connections carry 4,722 calls of four relay sockets; a limit that allows the configured
    /// count leaves it alone; a tiny one still allows a call.
    #[test]
    fn max_calls_fits_the_descriptor_limit() {
        let mut cfg = (*crate::b2bua::replay::lab("operator-a.toml")).clone();
        cfg.sip.max_calls = 100_000;
        assert_eq!(cap_calls_to_descriptors(&mut cfg, 20_000), Some(100_000));
        assert_eq!(cfg.sip.max_calls, (20_000 - 64 - 1_024) / 4);
        cfg.sip.max_calls = 10_000;
        assert_eq!(cap_calls_to_descriptors(&mut cfg, 1_048_576), None);
        assert_eq!(cfg.sip.max_calls, 10_000);
        assert_eq!(cap_calls_to_descriptors(&mut cfg, 3), Some(10_000));
        assert_eq!(cfg.sip.max_calls, 1);
    }
}
