//! SDP inspection for the leak checks and for failure messages.

/// Every problem that makes `sdp` (received by one side) reveal the other operator:
/// an address starting with one of `foreign_prefixes`, or the far end's media port
/// `foreign_port` as a whitespace-delimited token.
pub fn leaks(
    sdp: &str,
    foreign_prefixes: &[&str],
    foreign: &str,
    foreign_port: u16,
) -> Vec<String> {
    let mut out = Vec::new();
    for l in sdp.lines() {
        let l = l.trim();
        if let Some(p) = foreign_prefixes.iter().find(|p| l.contains(*p)) {
            out.push(format!(
                "still contains an address of {foreign}'s side ({p}x): `{l}`"
            ));
            continue;
        }
        let port = foreign_port.to_string();
        let addr_line =
            l.starts_with("a=candidate:") || l.starts_with("m=") || l.starts_with("a=rtcp:");
        if addr_line && l.split_whitespace().any(|t| t == port) {
            out.push(format!(
                "still contains {foreign}'s media port {port}: `{l}`"
            ));
        }
    }
    out
}

/// Checks that must hold for any SDP that crossed the borders: the WebRTC
/// attributes the border must leave untouched are still there.
pub fn webrtc_attributes_kept(original: &str, seen: &str) -> Vec<String> {
    let keep = |l: &&str| {
        [
            "a=ice-ufrag:",
            "a=ice-pwd:",
            "a=fingerprint:",
            "a=setup:",
            "a=group:BUNDLE",
            "a=rtcp-mux",
        ]
        .iter()
        .any(|p| l.starts_with(p))
    };
    let seen_lines: Vec<&str> = seen.lines().map(str::trim).collect();
    original
        .lines()
        .map(str::trim)
        .filter(keep)
        .filter(|l| !seen_lines.contains(l))
        .map(|l| format!("lost or changed `{l}`"))
        .collect()
}

/// Short one-line view of the address-bearing lines of `sdp`, for messages.
pub fn addr_lines(sdp: &str) -> String {
    sdp.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("c=") || l.starts_with("m=") || l.starts_with("a=candidate"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The media endpoint `sdp` names: its first candidate's address, else c= and the m= port.
pub fn media_endpoint(sdp: &str) -> Option<(String, u16)> {
    let cand = sdp.lines().find_map(|l| {
        let f: Vec<&str> = l
            .trim()
            .strip_prefix("a=candidate:")?
            .split_whitespace()
            .collect();
        Some((f.get(4)?.to_string(), f.get(5)?.parse().ok()?))
    });
    cand.or_else(|| {
        let c = sdp
            .lines()
            .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
            .trim()
            .to_string();
        let m = sdp
            .lines()
            .find_map(|l| l.trim().strip_prefix("m="))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((c, m))
    })
}
