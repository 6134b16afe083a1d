//! The IO edge of the ng control protocol ([`crate::ng`]): the UDP socket of `[ng] listen`,
//! read by the service's coordinating loop. Each request is served against an anchoring of its
//! own (a slice of the relay ports no B2BUA shard uses, flow ids from [`FLOW_BASE`] up), the media
//! commands it queued are performed before the reply leaves (so the relay ports an `offer`'s
//! SDP names are bound when the proxy learns them), and the reply goes back to the sender.

use std::collections::HashSet;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

use super::media::MediaPlane;
use crate::b2bua::media::Anchoring;
use crate::config::Config;
use crate::media::FlowId;

/// The largest UDP payload: an ng request is one datagram.
const MAX_REQUEST: usize = 65_535;

/// The ng control path's flow ids start here, far above any shard's (`b2bua::media`).
pub const FLOW_BASE: u64 = 1 << 48;

pub struct NgListener {
    sock: UdpSocket,
    buf: Vec<u8>,
    server: crate::ng::Server,
    anchoring: Anchoring,
}

impl NgListener {
    /// Binds `[ng] listen`; `None` when the protocol is off.
    /// Its relay ports are slice `slice` of `slices`.
    pub async fn bind(
        cfg: &Config,
        slice: usize,
        slices: usize,
    ) -> anyhow::Result<Option<NgListener>> {
        let Some(addr) = cfg.ng.listen else {
            return Ok(None);
        };
        let sock = UdpSocket::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("ng control socket {addr}: {e}"))?;
        tracing::info!(%addr, "ng control protocol listening");
        Ok(Some(NgListener {
            sock,
            buf: vec![0; MAX_REQUEST],
            server: crate::ng::Server::new(cfg),
            anchoring: Anchoring::with_flow_ids(&cfg.port_slice(slice, slices), FLOW_BASE, 1),
        }))
    }

    /// The next request's length and sender (cancel-safe; a receive error is logged and
    /// skipped).
    async fn recv(&mut self) -> (usize, SocketAddr) {
        loop {
            match self.sock.recv_from(&mut self.buf).await {
                Ok(got) => return got,
                Err(e) => tracing::debug!("ng control socket: {e}"),
            }
        }
    }

    /// Serves the request in the buffer and sends its reply.
    fn serve(&mut self, len: usize, from: SocketAddr, media: &mut MediaPlane) {
        if !self.server.accepts(from.ip()) {
            tracing::debug!(%from, "ng request from a source not in [ng] sources dropped");
            return;
        }
        let reply = self.server.handle(&mut self.anchoring, &self.buf[..len]);
        while let Some(cmd) = self.anchoring.poll_command() {
            media.apply(cmd);
        }
        match reply {
            Some(r) => {
                if let Err(e) = self.sock.try_send_to(&r, from) {
                    tracing::debug!(%from, "ng reply not sent: {e}");
                }
            }
            None => tracing::debug!(%from, "ng datagram without a cookie dropped"),
        }
    }

    /// Deletes the ng calls whose media has been idle for the inactivity timeout.
    pub fn media_idle(&mut self, idle: &HashSet<FlowId>, media: &mut MediaPlane) {
        let n = self.server.media_idle(&mut self.anchoring, idle);
        while let Some(cmd) = self.anchoring.poll_command() {
            media.apply(cmd);
        }
        if n > 0 {
            tracing::info!(calls = n, "ng calls without media deleted");
        }
    }
}

/// Receives the next ng request when the listener runs; never completes when it does not.
pub async fn recv(l: &mut Option<NgListener>) -> (usize, SocketAddr) {
    match l {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

/// Serves what [`recv`] received.
pub fn serve(l: &mut Option<NgListener>, (len, from): (usize, SocketAddr), media: &mut MediaPlane) {
    if let Some(l) = l {
        l.serve(len, from, media);
    }
}
