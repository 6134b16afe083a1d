//! SDP inspection for the leak checks and for failure messages.

/// Every problem that makes `sdp` (received by one side) reveal the other side:
/// an address with `foreign_prefix`, or the other side's media port `foreign_port`
/// as a whitespace-delimited token.
pub fn leaks(sdp: &str, foreign_prefix: &str, foreign_ip: &str, foreign_port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for l in sdp.lines() {
        let l = l.trim();
        if l.contains(foreign_prefix) {
            out.push(format!(
                "still contains an address of {foreign_ip}'s side ({foreign_prefix}x): `{l}`"
            ));
            continue;
        }
        let port = foreign_port.to_string();
        let addr_line =
            l.starts_with("a=candidate:") || l.starts_with("m=") || l.starts_with("a=rtcp:");
        if addr_line && l.split_whitespace().any(|t| t == port) {
            out.push(format!(
                "still contains {foreign_ip}'s media port {port}: `{l}`"
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
