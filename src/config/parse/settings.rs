//! The `[sip]` and `[media]` tables.

use super::*;

pub(super) fn sip_settings(cx: &mut Ctx, root: &Tab) -> SipSettings {
    let mut s = SipSettings::default();
    let Some(t) = root.table(cx, "sip") else {
        return s;
    };
    t.check_keys(cx, SIP_KEYS);
    const MS: u64 = 86_400_000;
    const S: u64 = 86_400 * 365;
    const N: u64 = u32::MAX as u64;
    let t1 = t.int(cx, "t1_ms", 1, MS);
    let t2 = t.int(cx, "t2_ms", 1, MS);
    if let Some(v) = &t1 {
        s.t1 = Duration::from_millis(v.v);
    }
    if let Some(v) = &t2 {
        s.t2 = Duration::from_millis(v.v);
    }
    let t1_bad = t.get("t1_ms").is_some() && t1.is_none();
    let t2_bad = t.get("t2_ms").is_some() && t2.is_none();
    if s.t2 < s.t1 && !t1_bad && !t2_bad {
        // Point at whichever the engineer wrote; t2 if both.
        let at = t2.as_ref().or(t1.as_ref());
        if let Some(at) = at {
            cx.err_at(
                at,
                Kind::Conflict,
                format!(
                    "t2 ({} ms) must not be smaller than t1 ({} ms)",
                    s.t2.as_millis(),
                    s.t1.as_millis()
                ),
            );
        }
    }
    if let Some(v) = t.int(cx, "t4_ms", 1, MS) {
        s.t4 = Duration::from_millis(v.v);
    }
    if let Some(v) = t.int(cx, "timer_c_s", 1, S) {
        s.timer_c = Duration::from_secs(v.v);
    }
    if let Some(v) = t.int(cx, "lookup_timeout_ms", 1, MS) {
        s.lookup_timeout = Duration::from_millis(v.v);
    }
    // The service's input queue holds 4096 messages; shedding must start before it is full.
    if let Some(v) = t.int(cx, "overload_backlog", 1, 4000) {
        s.overload_backlog = v.v as usize;
    }
    if let Some(v) = t.int(cx, "overload_delay_ms", 1, MS) {
        s.overload_delay = Duration::from_millis(v.v);
    }
    if let Some(v) = t.int(cx, "admission_delay_ms", 0, MS) {
        s.admission_delay = Duration::from_millis(v.v);
    }
    if let Some(v) = t.int(cx, "max_message_size", 1, N) {
        s.max_message_size = v.v as usize;
    }
    if let Some(v) = t.int(cx, "max_headers", 1, N) {
        s.max_headers = v.v as usize;
    }
    if let Some(v) = t.int(cx, "max_forwards", 1, 255) {
        s.max_forwards = v.v as u8;
    }
    if let Some(v) = t.int(cx, "max_calls", 1, N) {
        s.max_calls = v.v as usize;
    }
    if let Some(v) = t.int(cx, "max_tcp_connections", 1, N) {
        s.max_tcp_connections = v.v as usize;
    }
    if let Some(v) = t.int(cx, "tcp_idle_timeout_s", 1, S) {
        s.tcp_idle_timeout = Duration::from_secs(v.v);
    }
    if let Some(v) = t.int(cx, "keepalive_interval_s", 0, S) {
        s.keepalive_interval = Duration::from_secs(v.v);
    }
    if let Some(v) = t.int(cx, "partial_message_timeout_ms", 1, MS) {
        s.partial_message_timeout = Duration::from_millis(v.v);
    }
    if let Some(v) = t.int(cx, "max_connections_per_source", 1, N) {
        s.max_connections_per_source = v.v as usize;
    }
    if let Some(v) = t.int(cx, "max_connections_per_partner", 1, N) {
        s.max_connections_per_partner = v.v as usize;
    }
    if let Some(v) = t.int(cx, "tls_handshake_timeout_ms", 1, MS) {
        s.tls_handshake_timeout = Duration::from_millis(v.v);
    }
    if let Some(v) = t.int(cx, "reconnect_backoff_max_s", 1, S) {
        s.reconnect_backoff_max = Duration::from_secs(v.v);
    }
    if let Some(v) = t.int(cx, "dialog_idle_timeout_s", 1, S) {
        s.dialog_idle_timeout = Duration::from_secs(v.v);
    }
    if let Some(list) = t.str_list(cx, "extensions") {
        s.extensions = list.v.into_iter().map(|e| e.v).collect();
    }
    if let Some(v) = t.boolean(cx, "kernel_filter") {
        s.kernel_filter = v;
    }
    if let Some(v) = t.int(cx, "kernel_filter_learned_hold_s", 1, S) {
        s.kernel_filter_learned_hold = Duration::from_secs(v.v);
    }
    s
}

pub(super) fn media_settings(cx: &mut Ctx, root: &Tab) -> MediaSettings {
    let mut m = MediaSettings::default();
    let Some(t) = root.table(cx, "media") else {
        return m;
    };
    t.check_keys(cx, MEDIA_KEYS);
    if let Some(b) = t.boolean(cx, "kernel") {
        m.kernel = b;
    }
    if let Some(l) = t.str(cx, "latching") {
        match l.v.as_str() {
            "symmetric" => m.strict_latching = false,
            "strict" => m.strict_latching = true,
            other => cx.err_at(
                &l,
                Kind::BadValue,
                format!("`{other}`: expected \"symmetric\" or \"strict\""),
            ),
        }
    }
    if let Some(v) = t.int(cx, "inactivity_timeout_s", 1, 86_400) {
        m.inactivity_timeout = Duration::from_secs(v.v);
    }
    if let Some(v) = t.int(cx, "relay_threads", 1, 256) {
        m.relay_threads = v.v as usize;
    }
    if let Some(v) = t.str(cx, "nft_table") {
        if v.v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            m.nft_table = v.v;
        } else {
            cx.err_at(&v, Kind::BadValue, "only letters, digits, `_` and `-`");
        }
    }
    m
}

pub(super) fn service_settings(cx: &mut Ctx, root: &Tab) -> ServiceSettings {
    let mut s = ServiceSettings::default();
    let Some(t) = root.table(cx, "service") else {
        return s;
    };
    t.check_keys(cx, SERVICE_KEYS);
    if let Some(v) = t.int(cx, "drain_timeout_s", 0, 86_400) {
        s.drain_timeout = Duration::from_secs(v.v);
    }
    if let Some(v) = t.int(cx, "shards", 0, 256) {
        s.shards = v.v as usize;
    }
    s
}

pub(super) fn admin_settings(cx: &mut Ctx, root: &Tab) -> AdminSettings {
    let mut a = AdminSettings::default();
    let Some(t) = root.table(cx, "admin") else {
        return a;
    };
    t.check_keys(cx, ADMIN_KEYS);
    if let Some(b) = t.boolean(cx, "enabled") {
        a.enabled = b;
    }
    if let Some(tok) = t.str(cx, "token") {
        if tok.v.len() < 16 || !tok.v.chars().all(|c| c.is_ascii_graphic()) {
            cx.err_at(
                &tok,
                Kind::BadValue,
                "at least 16 printable ASCII characters without spaces",
            );
        } else {
            a.token = Some(tok.v.clone());
        }
    }
    if let Some(l) = t.str(cx, "listen") {
        match l.v.parse::<SocketAddr>() {
            Err(_) => cx.err_at(
                &l,
                Kind::BadValue,
                format!(
                    "`{}`: expected IP:PORT, e.g. \"127.0.0.1:9101\" or \"[::1]:9101\"",
                    l.v
                ),
            ),
            Ok(addr) if !addr.ip().is_loopback() && t.get("token").is_none() => cx.err_at(
                &l,
                Kind::Conflict,
                format!(
                    "`{addr}` is not a loopback address: set `token` to expose the admin listener"
                ),
            ),
            Ok(addr) => a.listen = addr,
        }
    }
    a
}
