//! The running service: binds the transports, starts the media plane, owns the clock, and drives
//! the sans-IO [`Border`] engine — feeding it what arrives and the time, performing the
//! transmits and media commands it returns.

pub mod media;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::b2bua::{Border, Inbound};
use crate::config::Config;
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
/// per-request detail at debug). Metrics and call records will read the same stream.
fn log_event(ev: &crate::b2bua::Event) {
    use crate::b2bua::Event;
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

/// Runs one border instance until SIGINT or SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    raise_fd_limit();
    let cfg = Arc::new(cfg);
    let (ev_tx, mut ev_rx) = mpsc::channel::<Received>(4096);
    let mut transports = Transports::bind(&cfg, ev_tx).await?;
    let mut media = media::MediaPlane::start(&cfg)?;
    let seed = rand::random::<u64>();
    let mut border = Border::new(cfg.clone(), seed);
    tracing::info!(name = %cfg.name, "palisade ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut media_tick = tokio::time::interval(MEDIA_POLL);
    media_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_idle_check = Instant::now();
    loop {
        let deadline = border.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            ev = ev_rx.recv() => {
                let Some(ev) = ev else { break };
                let now = Instant::now();
                match ev {
                    Received::Message { flow, bytes } => border.handle_input(now, Inbound {
                        realm: flow.realm,
                        transport: flow.transport,
                        remote: flow.remote,
                        bytes: &bytes,
                    }),
                    Received::Connected { flow, writer } => transports.register(flow, writer),
                    Received::Closed { flow } => transports.closed(flow),
                }
            }
            _ = sleep => border.handle_timeout(Instant::now()),
            _ = media_tick.tick() => {
                let now = Instant::now();
                media.poll(now);
                if now.duration_since(last_idle_check) >= IDLE_CHECK {
                    last_idle_check = now;
                    let idle = media.idle_flows(now);
                    if !idle.is_empty() {
                        border.media_idle(now, &idle);
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: stopping"); break }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break }
        }
        while let Some(cmd) = border.poll_media() {
            media.apply(cmd);
        }
        while let Some(t) = border.poll_transmit() {
            transports.send(t);
        }
        while let Some(ev) = border.poll_event() {
            log_event(&ev);
        }
    }
    media.shutdown();
    Ok(())
}
