//! Anchoring rewrite: the other side sees only the border's relay endpoints.

use std::net::IpAddr;

use super::{parse_m, split_attr, Anchor, Sdp};

/// `IN IP4 a` / `IN IP6 a`.
fn net_addr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("IN IP4 {v4}"),
        IpAddr::V6(v6) => format!("IN IP6 {v6}"),
    }
}

fn attr_name(line: &str) -> Option<&str> {
    line.strip_prefix("a=").map(|v| split_attr(v).0)
}

fn is_attr(line: &str, name: &str) -> bool {
    attr_name(line).is_some_and(|n| n.eq_ignore_ascii_case(name))
}

impl Sdp {
    /// Rewrites the body so that every address it reveals is the border's.
    ///
    /// `anchors[i]` is the relay endpoint for m-line `i` (missing entries count as `None`).
    /// - `o=`: address and addrtype become `origin`, the username `-` (it names the user or the
    ///   equipment); sess-id and version are kept. `s=` becomes `-`; the free-text and contact
    ///   fields `i=`, `u=`, `e=`, `p=` and `a=tool` are dropped: they name sites, equipment and
    ///   people.
    /// - `a=path` (MSRP, RFC 4975) names hosts: dropped (such streams are not relayed).
    /// - session `c=`: the first anchor of an accepted (port ≠ 0) m-line, else the first
    ///   anchor, else `origin`. Media `c=`: that m-line's anchor, else the session choice.
    ///   An accepted m-line whose effective connection would differ from its anchor (or that
    ///   has none) gets a media-level `c=` inserted after its `m=` (and `i=`) line.
    /// - `m=` port: the anchor's `rtp_port`; a port-0 m-line stays 0 whatever its anchor and
    ///   is kept verbatim; an m-line with no anchor gets port 0. A port count (`/2`) is
    ///   dropped on rewritten lines.
    /// - `a=rtcp`: `<rtcp_port or, when muxed, rtp_port> IN IP4|IP6 <anchor>`; dropped on
    ///   m-lines without an active anchor, and when not muxed with `rtcp_port` `None`.
    /// - `a=candidate`: all removed; an accepted m-line gets one host candidate per component
    ///   on its anchor, at the place of the first removed one, or — if it had none but ICE is
    ///   in use (`a=ice-ufrag` at session or media level) — before `a=end-of-candidates` or at
    ///   the end of the section. `a=remote-candidates` is dropped.
    /// - At session level, where they are invalid, `a=candidate`, `a=remote-candidates` and
    ///   `a=rtcp` are dropped so that no address slips through.
    /// - Everything else is kept verbatim and in order.
    pub fn rewrite(&self, anchors: &[Option<Anchor>], origin: IpAddr) -> Sdp {
        let (session_range, media_ranges) = self.sections();
        let session = self.section(session_range);
        let infos = self.media();
        let anchor_of = |i: usize| anchors.get(i).copied().flatten();
        let port_of = |i: usize| infos.get(i).map_or(0, |m| m.port);

        let default_addr = (0..media_ranges.len())
            .find_map(|i| anchor_of(i).filter(|_| port_of(i) != 0))
            .or_else(|| anchors.iter().flatten().next().copied())
            .map_or(origin, |a| a.addr);
        let session_has_c = session.iter().any(|l| l.starts_with("c="));

        let mut out: Vec<String> = Vec::with_capacity(self.lines.len() + 4);
        for line in session {
            if let Some(v) = line.strip_prefix("o=") {
                out.push(rewrite_origin(v, origin).unwrap_or_else(|| line.clone()));
            } else if line.starts_with("s=") {
                out.push("s=-".to_string());
            } else if is_text_field(line) {
                // Free text and contacts: never needed for the session, often revealing.
            } else if line.starts_with("c=") {
                out.push(format!("c={}", net_addr(default_addr)));
            } else if is_attr(line, "candidate")
                || is_attr(line, "remote-candidates")
                || is_attr(line, "rtcp")
            {
                // Not valid at session level; never let an address through.
            } else {
                out.push(line.clone());
            }
        }

        for (i, range) in media_ranges.into_iter().enumerate() {
            let lines = self.section(range);
            let anchor = anchor_of(i);
            let orig_port = port_of(i);
            let active = anchor.filter(|_| orig_port != 0);
            let rtcp_mux = infos.get(i).is_some_and(|m| m.rtcp_mux);
            let ice = self.uses_ice(session, lines);
            let media_addr = anchor.map_or(default_addr, |a| a.addr);

            let has_media_c = lines.iter().any(|l| l.starts_with("c="));
            let mut pending_c = match active {
                Some(a) if !has_media_c => !session_has_c || default_addr != a.addr,
                _ => false,
            };
            let mut new_candidates: Vec<String> = Vec::new();
            if let Some(a) = active {
                new_candidates.push(format!(
                    "a=candidate:1 1 udp 2130706431 {} {} typ host",
                    a.addr, a.rtp_port
                ));
                if let (false, Some(p)) = (rtcp_mux, a.rtcp_port) {
                    new_candidates.push(format!(
                        "a=candidate:1 2 udp 2130706430 {} {p} typ host",
                        a.addr
                    ));
                }
            }
            let mut inserted = active.is_none();

            for line in lines {
                if pending_c && !line.starts_with("m=") && !line.starts_with("i=") {
                    out.push(format!("c={}", net_addr(media_addr)));
                    pending_c = false;
                }
                if let Some(v) = line.strip_prefix("m=") {
                    out.push(
                        rewrite_m(v, active.map(|a| a.rtp_port)).unwrap_or_else(|| line.clone()),
                    );
                } else if line.starts_with("c=") {
                    out.push(format!("c={}", net_addr(media_addr)));
                } else if is_attr(line, "candidate") {
                    if !inserted {
                        out.append(&mut new_candidates);
                        inserted = true;
                    }
                } else if is_attr(line, "remote-candidates") || is_text_field(line) {
                } else if is_attr(line, "rtcp") {
                    if let Some(a) = active {
                        let port = if rtcp_mux {
                            Some(a.rtp_port)
                        } else {
                            a.rtcp_port
                        };
                        if let Some(p) = port {
                            out.push(format!("a=rtcp:{p} {}", net_addr(a.addr)));
                        }
                    }
                } else if is_attr(line, "end-of-candidates") {
                    if !inserted && ice {
                        out.append(&mut new_candidates);
                        inserted = true;
                    }
                    out.push(line.clone());
                } else {
                    out.push(line.clone());
                }
            }
            if pending_c {
                out.push(format!("c={}", net_addr(media_addr)));
            }
            if !inserted && ice {
                out.append(&mut new_candidates);
            }
        }
        Sdp { lines: out }
    }
}

/// The ICE attributes (RFC 8839 §5) an `ICE=remove` request of the ng protocol strips.
const ICE_ATTRS: &[&str] = &[
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "ice-pacing",
];

impl Sdp {
    /// The body without any ICE attribute, at session and media level (rtpengine's
    /// `ICE=remove`: the far side then sends media straight to the relay address without
    /// connectivity checks).
    pub fn without_ice(&self) -> Sdp {
        Sdp {
            lines: self
                .lines
                .iter()
                .filter(|l| !ICE_ATTRS.iter().any(|a| is_attr(l, a)))
                .cloned()
                .collect(),
        }
    }
}

/// Lines that carry text about the session's people, sites and software rather than the
/// session (RFC 4566 §5.4-5.6 `i=`, `u=`, `e=`, `p=`; `a=tool`), or hosts (`a=path`).
fn is_text_field(line: &str) -> bool {
    ["i=", "u=", "e=", "p="].iter().any(|p| line.starts_with(p))
        || is_attr(line, "tool")
        || is_attr(line, "path")
}

/// `o=<user> <sess-id> <version> IN <addrtype> <addr>` with the user `-` and the address
/// replaced.
fn rewrite_origin(value: &str, origin: IpAddr) -> Option<String> {
    let f: Vec<&str> = value.split_whitespace().collect();
    let [_user, id, version, ..] = f.as_slice() else {
        return None;
    };
    Some(format!("o=- {id} {version} {}", net_addr(origin)))
}

/// The m-line with its port replaced by `port`, or by 0 when `None`. A line whose port is
/// already 0 is kept verbatim.
fn rewrite_m(value: &str, port: Option<u16>) -> Option<String> {
    let m = parse_m(value).ok()?;
    if m.port == 0 {
        return None;
    }
    let rest: Vec<&str> = value.split_whitespace().skip(2).collect();
    Some(format!(
        "m={} {} {}",
        m.kind,
        port.unwrap_or(0),
        rest.join(" ")
    ))
}
