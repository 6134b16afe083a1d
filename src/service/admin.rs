//! The admin HTTP listener: a minimal HTTP/1.1 server on tokio (one request per connection,
//! `Connection: close`) serving `GET /metrics` (Prometheus text format), `/healthz` (200 while
//! the drive loop runs), `/readyz` (200 when ready for calls, 503 while draining) and `/status`
//! (JSON for `palisade status`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::metrics::Metrics;

/// What the listener reads, shared with the drive loop.
pub struct AdminState {
    pub metrics: Metrics,
    pub ready: AtomicBool,
    pub token: Option<String>,
    /// The last `/status` document the drive loop wrote (see `service::status`).
    pub status: std::sync::Mutex<String>,
}

const MAX_CONNECTIONS: usize = 16;
const MAX_REQUEST: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the listener (errors name the address) and serves it on a task of its own.
pub async fn start(listen: SocketAddr, state: Arc<AdminState>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("admin.listen: cannot bind {listen}: {e}"))?;
    tracing::info!("admin listening on http://{listen} (/metrics, /healthz, /readyz)");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                continue; // too many at once: the connection is closed unanswered
            };
            let state = state.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(READ_TIMEOUT, serve(conn, &state)).await;
                drop(permit);
            });
        }
    });
    Ok(())
}

async fn serve(mut conn: TcpStream, state: &AdminState) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let (status, ctype, body) = respond(&head, state);
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(reply.as_bytes()).await?;
    conn.write_all(&body).await?;
    conn.shutdown().await
}

fn respond(head: &str, state: &AdminState) -> (&'static str, &'static str, Vec<u8>) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let mut lines = head.split("\r\n");
    let mut request = lines.next().unwrap_or("").split(' ');
    let (method, target) = (request.next().unwrap_or(""), request.next().unwrap_or(""));
    if let Some(token) = &state.token {
        let authorized = lines.any(|l| {
            l.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("authorization")
                    && value.trim().strip_prefix("Bearer ").map(str::trim) == Some(token.as_str())
            })
        });
        if !authorized {
            return ("401 Unauthorized", TEXT, b"unauthorized\n".to_vec());
        }
    }
    if method != "GET" {
        return ("405 Method Not Allowed", TEXT, b"GET only\n".to_vec());
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(),
        ),
        "/healthz" => ("200 OK", TEXT, b"ok\n".to_vec()),
        "/status" => (
            "200 OK",
            "application/json",
            state
                .status
                .lock()
                .map(|s| s.clone().into_bytes())
                .unwrap_or_default(),
        ),
        "/readyz" if state.ready.load(Ordering::Relaxed) => ("200 OK", TEXT, b"ready\n".to_vec()),
        "/readyz" => (
            "503 Service Unavailable",
            TEXT,
            b"not ready (draining)\n".to_vec(),
        ),
        _ => ("404 Not Found", TEXT, b"not found\n".to_vec()),
    }
}
