//! TLS connections: the handshake in both directions, who the certificate proved, and one log
//! line plus one [`Received::TlsRefused`] for every handshake that fails. After the handshake a
//! connection is an ordinary stream ([`super::stream::run`]) whose messages carry the partner.

use super::Inbox;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls_pki_types::{ServerName, UnixTime};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::stream::{self, StreamCfg};
use super::{Received, SharedTls};
use crate::config::Transport;
use crate::peering::{refusal_of, RealmTls, Role};
use crate::transaction::Flow;

/// Why a handshake failed, as a metric label, and the text for the log.
fn why(e: &std::io::Error) -> (&'static str, String) {
    match refusal_of(e) {
        Some(r) => (r.reason(), r.to_string()),
        None => {
            // The far side refused us (an alert), or it spoke no TLS at all.
            let text = e.to_string();
            let reason = if text.contains("received fatal alert") {
                "refused_by_peer"
            } else {
                "handshake_failed"
            };
            (reason, text)
        }
    }
}

pub(super) async fn acceptor(
    realm: usize,
    listener: TcpListener,
    events: Inbox,
    cfg: StreamCfg,
    tls: SharedTls,
) {
    loop {
        let Ok((tcp, remote)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let Some(slot) = cfg.admit(remote, "TLS") else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        // The configuration current at this accept: a reload changes the next handshake, not
        // this one.
        let Some(realm_tls) = tls.read().ok().and_then(|m| m.get(&realm).cloned()) else {
            continue;
        };
        let (events, cfg) = (events.clone(), cfg.clone());
        tokio::spawn(async move {
            let _slot = slot;
            accept_one(realm, tcp, remote, realm_tls, events, cfg).await
        });
    }
}

async fn accept_one(
    realm: usize,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    realm_tls: RealmTls,
    events: Inbox,
    cfg: StreamCfg,
) {
    let refused = |reason: &'static str| Received::TlsRefused {
        realm,
        remote,
        inbound: true,
        reason,
    };
    let acceptor = TlsAcceptor::from(realm_tls.server.clone());
    let conn = match tokio::time::timeout(cfg.handshake, acceptor.accept(tcp)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let (reason, text) = why(&e);
            tracing::warn!(%remote, reason, "TLS handshake refused (incoming): {text}");
            let _ = events.send(refused(reason)).await;
            return;
        }
        Err(_) => {
            tracing::warn!(%remote, reason = "handshake_timeout", "TLS handshake refused (incoming): not completed in time");
            let _ = events.send(refused("handshake_timeout")).await;
            return;
        }
    };
    // The verifier accepted the chain, so it proves a partner; ask which.
    let chain = conn.get_ref().1.peer_certificates().unwrap_or_default();
    let partner = match realm_tls
        .trust
        .identify(chain, UnixTime::now(), Role::Client)
    {
        Ok(p) => p,
        Err(r) => {
            tracing::warn!(%remote, reason = r.reason(), "TLS connection closed: {r}");
            let _ = events.send(refused(r.reason())).await;
            return;
        }
    };
    if !cfg.take_partner_slot(realm, &partner) {
        tracing::warn!(%remote, %partner, "TLS connection closed: the partner has max_connections_per_partner open");
        let _ = events.send(refused("too_many_connections")).await;
        return;
    }
    tracing::info!(%remote, %partner, "TLS connection from partner");
    let flow = Flow {
        realm,
        transport: Transport::Tls,
        remote,
    };
    let (tx, rx) = mpsc::channel(256);
    let up = Received::Connected {
        flow,
        writer: Some(tx),
        peer: Some(partner.clone()),
    };
    if events.send(up).await.is_err() {
        cfg.free_partner_slot(realm, &partner);
        return;
    }
    stream::run(conn, flow, Some(partner), false, rx, events, cfg).await;
}

/// The name to ask for (SNI): the partner's SIP domain when it is expected, else the address.
fn server_name(realm_tls: &RealmTls, expect: Option<&str>, ip: IpAddr) -> ServerName<'static> {
    expect
        .and_then(|p| realm_tls.trust.partner(p))
        .and_then(|p| p.expected().first())
        .and_then(|d| ServerName::try_from(d.clone()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(ip.into()))
}

pub(super) async fn connect(
    flow: Flow,
    local: Option<IpAddr>,
    expect: Option<Arc<str>>,
    realm_tls: RealmTls,
    rx: mpsc::Receiver<Vec<u8>>,
    events: Inbox,
    cfg: StreamCfg,
) {
    let remote = flow.remote;
    let fail = |reason: Option<&'static str>| {
        let events = events.clone();
        async move {
            if let Some(reason) = reason {
                let ev = Received::TlsRefused {
                    realm: flow.realm,
                    remote,
                    inbound: false,
                    reason,
                };
                let _ = events.send(ev).await;
            }
            let _ = events.send(Received::Unreachable { flow }).await;
        }
    };
    let tcp = match stream::open_tcp(remote, local).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(%remote, "TLS connect failed: {e}");
            return fail(None).await;
        }
    };
    let connector = TlsConnector::from(realm_tls.client.clone());
    let name = server_name(&realm_tls, expect.as_deref(), remote.ip());
    let conn = match tokio::time::timeout(cfg.handshake, connector.connect(name, tcp)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let (reason, text) = why(&e);
            tracing::warn!(%remote, reason, "TLS handshake refused (outgoing): {text}");
            return fail(Some(reason)).await;
        }
        Err(_) => {
            tracing::warn!(%remote, reason = "handshake_timeout", "TLS handshake refused (outgoing): not completed in time");
            return fail(Some("handshake_timeout")).await;
        }
    };
    let chain = conn.get_ref().1.peer_certificates().unwrap_or_default();
    let partner = match realm_tls
        .trust
        .identify(chain, UnixTime::now(), Role::Server)
    {
        Ok(p) => p,
        Err(r) => {
            tracing::warn!(%remote, reason = r.reason(), "TLS connection closed: {r}");
            return fail(Some(r.reason())).await;
        }
    };
    if let Some(want) = expect.as_ref().filter(|w| **w != partner) {
        // Another partner's valid certificate at this partner's address: not who we meant to
        // reach, whatever the address says.
        tracing::warn!(%remote, reason = "wrong_partner", "TLS connection closed: it proved partner {partner}, this address is partner {want}'s");
        return fail(Some("wrong_partner")).await;
    }
    if !cfg.take_partner_slot(flow.realm, &partner) {
        tracing::warn!(%remote, %partner, "TLS connection not used: the partner has max_connections_per_partner open");
        return fail(Some("too_many_connections")).await;
    }
    tracing::info!(%remote, %partner, "TLS connection to partner");
    let up = Received::Connected {
        flow,
        writer: None,
        peer: Some(partner.clone()),
    };
    let _ = events.send(up).await;
    stream::run(conn, flow, Some(partner), true, rx, events, cfg).await;
}
