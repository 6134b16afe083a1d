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
pub mod status;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::b2bua::{Border, Inbound};
use crate::config::{Config, ConfigErrors};
use crate::routing::dns::DnsRouter;
use crate::routing::{LookupId, LookupRequest, LookupResult};
use crate::transport::{Received, Transports};

/// How often relay events (a flow latched both ways) and kernel counters reports are collected;
/// the kernel install that follows is batched anyway.
const MEDIA_POLL: Duration = Duration::from_millis(50);
/// How often flows are checked for media inactivity. Each check also requests fresh kernel
/// counters, which a reader thread of the kernel path delivers to a later media poll: the loop
/// never waits for `nft`.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Every relayed stream holds two sockets per component: lift the soft descriptor limit to the
/// hard one so a busy border is not capped at the usual 1,024.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("cannot raise the open-files limit");
            }
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
pub async fn run(cfg: Config, source: ConfigSource) -> anyhow::Result<()> {
    raise_fd_limit();
    let notify = notify::Notifier::from_env();
    let cfg = Arc::new(cfg);
    let (ev_tx, mut ev_rx) = mpsc::channel::<Received>(4096);
    let mut transports = Transports::bind(&cfg, ev_tx).await?;
    let mut media = media::MediaPlane::start(&cfg)?;
    let mut ng = ng::NgListener::bind(&cfg).await?;
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
    let seed = rand::random::<u64>();
    let mut border = Border::with_router(cfg.clone(), seed, Box::new(DnsRouter));
    let resolver = Arc::new(dns::DnsResolver::new(
        &cfg,
        Some(dns::DnsMetrics {
            lookups: m.dns_lookups.clone(),
            cache_hits: m.dns_cache_hits.clone(),
        }),
    )?);
    // Route lookups run in their own tasks; their answers come back here.
    let (lookup_tx, mut lookup_rx) = mpsc::unbounded_channel::<(LookupId, LookupResult)>();
    tracing::info!(name = %cfg.name, "palisade ready");
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
    let mut stop = Stop::Running;
    loop {
        let deadline = border.poll_timeout();
        let stop_at = match stop {
            Stop::Running => None,
            Stop::Draining { until } | Stop::HangingUp { until } => Some(until),
        };
        let deadline = match (deadline, stop_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        let mut stop_signal = false;
        tokio::select! {
            ev = ev_rx.recv() => {
                let Some(ev) = ev else { break };
                let now = Instant::now();
                // What is still queued behind this message is the load the engine is behind by.
                let sip = &border.config().sip;
                let waited = match &ev {
                    Received::Message { at, .. } => now.saturating_duration_since(*at),
                    _ => Duration::ZERO,
                };
                let overloaded = ev_rx.len() > sip.overload_backlog || waited > sip.overload_delay;
                border.set_overloaded(overloaded);
                match ev {
                    Received::Message { flow, bytes, peer, .. } => border.handle_input(now, Inbound {
                        realm: flow.realm,
                        transport: flow.transport,
                        remote: flow.remote,
                        bytes: &bytes,
                        peer: peer.as_deref(),
                    }),
                    Received::Connected { flow, writer, peer } => {
                        if let Some(p) = &peer {
                            let dir = if writer.is_some() { "in" } else { "out" };
                            let realm = &border.config().realms[flow.realm].name;
                            m.tls_connections.with_label_values(&[realm.as_str(), p, dir]).inc();
                        }
                        transports.connected(flow, writer)
                    }
                    Received::Closed { flow } => transports.closed(flow),
                    Received::Unreachable { flow } => {
                        transports.unreachable(flow);
                        border.transport_failed(now, flow);
                    }
                    Received::TlsRefused { realm, inbound, reason, .. } => {
                        let realm = &border.config().realms[realm].name;
                        let dir = if inbound { "in" } else { "out" };
                        m.tls_refused.with_label_values(&[realm, dir, reason]).inc();
                    }
                }
            }
            _ = sleep => border.handle_timeout(Instant::now()),
            got = ng::recv(&mut ng) => ng::serve(&mut ng, got, &mut border, &mut media),
            Some((id, result)) = lookup_rx.recv() => {
                // A TLS target DNS gave must prove the partner the route is for, not merely
                // any partner of the realm: tell the transport who lives there.
                if let Ok(crate::routing::Route::Peer { realm, peer, targets, .. }) = &result {
                    let name = border.config().realms.get(*realm).and_then(|r| r.peers.get(*peer)).map(|p| p.name.clone());
                    if let Some(name) = name {
                        for t in targets.iter().filter(|t| t.transport == crate::config::Transport::Tls) {
                            transports.expect_partner(*realm, t.addr, &name);
                        }
                    }
                }
                border.handle_lookup(Instant::now(), id, result)
            }
            _ = media_tick.tick() => {
                let now = Instant::now();
                media.poll(now);
                if now.duration_since(last_idle_check) >= IDLE_CHECK {
                    last_idle_check = now;
                    let idle = media.idle_flows(now);
                    if !idle.is_empty() {
                        border.media_idle(now, &idle);
                        if let Some(ng) = &mut ng {
                            ng.media_idle(&mut border, &idle);
                        }
                    }
                    m.screened(border.config(), transports.take_screened());
                    let flows = media.snapshot();
                    for r in &flows {
                        m.media_flows.with_label_values(&[&r.realm, "user"]).set(r.flows_user as i64);
                        m.media_flows.with_label_values(&[&r.realm, "kernel"]).set(r.flows_kernel as i64);
                        m.set_relayed(&r.realm, &r.relayed);
                    }
                    // Each partner with its TLS connections (`None`: not a TLS partner).
                    let partners: Vec<_> = border
                        .partner_status(now)
                        .into_iter()
                        .map(|p| {
                            let cfg = border.config();
                            let tls = cfg
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
                        &border.config().name,
                        now.duration_since(started),
                        !admin_state.ready.load(Ordering::Relaxed),
                        border.active_sessions(),
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
                last_reload = Some((reload(&source, &mut border, &mut transports, m), Instant::now()));
                if let Some(f) = &filter { f.reload(border.config()) }
                transports.screen(|ri| border.known_sources(ri));
                notify.send(&format!("READY=1\nSTATUS=ready: {}", border.config().name));
            }
            _ = int.recv() => { tracing::info!("SIGINT"); stop_signal = true }
            _ = term.recv() => { tracing::info!("SIGTERM"); stop_signal = true }
        }
        let now = Instant::now();
        if stop_signal {
            match stop {
                Stop::Running => {
                    let timeout = border.config().service.drain_timeout;
                    tracing::info!(
                        active = border.active_sessions(),
                        "stopping: draining for up to {}s (a second SIGTERM hangs up at once)",
                        timeout.as_secs()
                    );
                    notify.send("STOPPING=1\nSTATUS=draining");
                    admin_state.ready.store(false, Ordering::Relaxed);
                    m.draining.set(1);
                    border.begin_drain();
                    stop = Stop::Draining {
                        until: now + timeout,
                    };
                }
                Stop::Draining { .. } => stop = Stop::Draining { until: now },
                Stop::HangingUp { .. } => {}
            }
        }
        if let Stop::Draining { until } = stop {
            if border.active_sessions() == 0 || now >= until {
                let left = border.active_sessions();
                if left > 0 {
                    tracing::info!(calls = left, "drain time is up: hanging up on both legs");
                }
                notify.send(&format!("STATUS=hanging up {left} calls"));
                border.hang_up_all(now);
                stop = Stop::HangingUp {
                    until: now + HANGUP_GRACE,
                };
            }
        }
        while let Some(cmd) = border.poll_media() {
            media.apply(cmd);
        }
        while let Some(h) = border.poll_connection_hint() {
            transports.connection_hint(h);
        }
        while let Some(t) = border.poll_transmit() {
            transports.send(t);
        }
        while let Some(req) = border.poll_lookup() {
            spawn_lookup(&resolver, border.config_shared(), req, lookup_tx.clone());
        }
        while let Some(ev) = border.poll_event() {
            log_event(&ev);
            m.observe(&ev);
            if let crate::b2bua::Event::TargetFailed { target, .. } = &ev {
                resolver.target_failed(Instant::now(), *target);
            }
        }
        m.sessions_active.set(border.active_sessions() as i64);
        m.set_events_lost(border.events_lost());
        if let Stop::HangingUp { until } = stop {
            if border.hangups_outstanding() == 0 || Instant::now() >= until {
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

/// Runs one route lookup in its own task, bounded by the engine's own lookup timeout (the engine
/// has answered 504 by then; the answer would be ignored).
fn spawn_lookup(
    resolver: &Arc<dns::DnsResolver>,
    cfg: Arc<Config>,
    req: LookupRequest,
    back: mpsc::UnboundedSender<(LookupId, LookupResult)>,
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
        let _ = back.send((req.id, result));
    });
}

/// SIGHUP: reads the configuration again. A bad one is refused (one line per error, each with
/// file, line and field) and the running one kept; one that changes realms, listeners or relay
/// ports is refused as needing a restart; otherwise the engine takes it while calls run.
fn reload(
    source: &ConfigSource,
    border: &mut Border,
    transports: &mut Transports,
    m: &metrics::Metrics,
) -> &'static str {
    let new = match source.load() {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!("reload refused, the running configuration is kept: {e}");
            }
            m.reload(metrics::ReloadResult::Invalid);
            return "invalid";
        }
    };
    // Certificates and keys are checked before anything is applied: a key that does not match
    // its certificate refuses the whole reload.
    let tls = match crate::peering::build(&new) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("reload refused, the running configuration is kept: {e}");
            m.reload(metrics::ReloadResult::Invalid);
            return "invalid";
        }
    };
    let old = border.config().clone();
    let mut kept = Vec::new();
    if new.media != old.media {
        kept.push("[media]");
    }
    if new.admin != old.admin {
        kept.push("[admin]");
    }
    if new.dns != old.dns || dns::server_lists(&new) != dns::server_lists(&old) {
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
    match border.reconfigure(Arc::new(new.clone())) {
        Ok(()) => {
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
            "applied"
        }
        Err(e) => {
            m.reload(metrics::ReloadResult::NeedsRestart);
            tracing::error!(
                "reload refused, the running configuration is kept: {e} (needs restart)"
            );
            "needs_restart"
        }
    }
}
