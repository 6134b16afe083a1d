//! `/status` on the admin listener and the `palisade status` command that reads it: what an
//! engineer asks first of a border — is it ready, which partners have calls and when each was
//! last heard from, where media flows run, how the last reload went. The drive loop writes the
//! document once a second ([`render`]); the listener only serves the last one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::media::RealmMedia;
use crate::b2bua::PartnerStatus;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub instance: String,
    pub uptime_s: u64,
    pub draining: bool,
    pub sessions_active: usize,
    pub partners: Vec<Partner>,
    pub media: Vec<Media>,
    pub last_reload: Option<Reload>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Partner {
    pub realm: String,
    pub partner: String,
    pub active: usize,
    pub retired: bool,
    /// Seconds since it last sent anything; `None`: never.
    pub last_heard_s: Option<f64>,
    /// TLS connections open with it (both directions); `None`: not a TLS partner.
    #[serde(default)]
    pub tls_connections: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Media {
    pub realm: String,
    pub user: usize,
    pub kernel: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reload {
    pub result: String,
    pub ago_s: u64,
}

/// One partner table from each shard's: calls added up, last heard the most recent, retired if
/// any shard says so, in the order partners first appear.
pub fn merge_partners(shards: impl IntoIterator<Item = Vec<PartnerStatus>>) -> Vec<PartnerStatus> {
    let mut out: Vec<PartnerStatus> = Vec::new();
    for p in shards.into_iter().flatten() {
        match out
            .iter_mut()
            .find(|q| q.realm == p.realm && q.name == p.name)
        {
            Some(q) => {
                q.active += p.active;
                q.retired |= p.retired;
                q.last_heard = match (q.last_heard, p.last_heard) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            None => out.push(p),
        }
    }
    out
}

/// The status document as JSON.
pub fn render(
    instance: &str,
    uptime: Duration,
    draining: bool,
    sessions_active: usize,
    partners: &[(PartnerStatus, Option<usize>)],
    media: &[RealmMedia],
    last_reload: Option<(&str, Duration)>,
) -> String {
    let status = Status {
        instance: instance.to_string(),
        uptime_s: uptime.as_secs(),
        draining,
        sessions_active,
        partners: partners
            .iter()
            .map(|(p, tls)| Partner {
                realm: p.realm.to_string(),
                partner: p.name.to_string(),
                active: p.active,
                retired: p.retired,
                last_heard_s: p
                    .last_heard
                    .map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
                tls_connections: *tls,
            })
            .collect(),
        media: media
            .iter()
            .map(|m| Media {
                realm: m.realm.clone(),
                user: m.flows_user,
                kernel: m.flows_kernel,
            })
            .collect(),
        last_reload: last_reload.map(|(result, ago)| Reload {
            result: result.to_string(),
            ago_s: ago.as_secs(),
        }),
    };
    serde_json::to_string_pretty(&status).unwrap_or_default() + "\n"
}

/// Fetches `/status` from an admin listener (plain HTTP/1.1, as the listener speaks it).
pub fn fetch(addr: SocketAddr, token: Option<&str>) -> Result<Status, String> {
    let timeout = Duration::from_secs(5);
    let mut conn = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot reach the admin listener at {addr}: {e}"))?;
    let _ = conn.set_read_timeout(Some(timeout));
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        conn,
        "GET /status HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .map_err(|e| format!("{addr}: {e}"))?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)
        .map_err(|e| format!("{addr}: {e}"))?;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: not an HTTP answer"))?;
    let status_line = head.lines().next().unwrap_or("");
    if !status_line.contains(" 200 ") {
        return Err(format!("{addr}: {status_line}: {}", body.trim()));
    }
    if body.trim().is_empty() {
        return Err(format!("{addr}: no status yet (the border is starting)"));
    }
    serde_json::from_str(body).map_err(|e| format!("{addr}: bad status document: {e}"))
}

/// The status as an engineer reads it.
pub fn describe(s: &Status) -> String {
    let mut o = format!(
        "{}: {}, up {} s, {} session(s) active\n",
        s.instance,
        if s.draining { "draining" } else { "ready" },
        s.uptime_s,
        s.sessions_active
    );
    o.push_str("partners:\n");
    if s.partners.is_empty() {
        o.push_str("  (none)\n");
    }
    for p in &s.partners {
        let heard = match p.last_heard_s {
            Some(h) => format!("last heard {h} s ago"),
            None => "never heard from".to_string(),
        };
        let retired = if p.retired {
            " (removed, calls ending)"
        } else {
            ""
        };
        let tls = match p.tls_connections {
            Some(0) => ", TLS: no connection".to_string(),
            Some(n) => format!(", TLS: {n} connection(s)"),
            None => String::new(),
        };
        o.push_str(&format!(
            "  {}/{}{}: {} call(s), {}{}\n",
            p.realm, p.partner, retired, p.active, heard, tls
        ));
    }
    o.push_str("media flows:\n");
    for m in &s.media {
        o.push_str(&format!(
            "  {}: {} in user space, {} in the kernel\n",
            m.realm, m.user, m.kernel
        ));
    }
    match &s.last_reload {
        Some(r) => o.push_str(&format!("last reload: {} {} s ago\n", r.result, r.ago_s)),
        None => o.push_str("last reload: none since start\n"),
    }
    o
}
