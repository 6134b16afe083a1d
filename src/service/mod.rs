//! The running service: binds the transports, owns the clock, and drives the sans-IO
//! [`Border`] engine — feeding it what arrives and the time, performing the transmits it returns.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::b2bua::{Border, Inbound};
use crate::config::Config;
use crate::transport::{Received, Transports};

/// Runs one border instance until SIGINT or SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let (ev_tx, mut ev_rx) = mpsc::channel::<Received>(4096);
    let mut transports = Transports::bind(&cfg, ev_tx).await?;
    let seed = rand::random::<u64>();
    let mut border = Border::new(cfg.clone(), seed);
    tracing::info!(name = %cfg.name, "palisade ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
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
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: stopping"); break }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break }
        }
        while let Some(t) = border.poll_transmit() {
            transports.send(t);
        }
    }
    Ok(())
}
