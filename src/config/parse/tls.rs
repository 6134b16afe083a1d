//! The `tls` tables: a realm's certificate and key, a partner's trust (pinned fingerprints, or a
//! CA plus the identities its certificate must name). Files are read and checked here, so a
//! missing key or a PEM file without a certificate is reported with the field that names it,
//! not at the first handshake.

use super::*;
use rustls_pki_types::pem::{PemObject, SectionKind};

/// `a/b/../c` → `a/c`, without touching the filesystem (the path is for reading and for
/// messages; a symlinked directory is not resolved, as a shell's `cd ..` would not either).
fn lexical(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Reads a PEM file named by `s` (relative to the directory of the file that names it) and
/// checks it holds at least one section of `kind`.
fn pem_file(cx: &mut Ctx, s: &Sp<String>, kind: SectionKind, what: &str) -> Option<PemFile> {
    let base = cx.srcs[s.src]
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let path = lexical(&base.join(&s.v));
    let text = match (cx.read)(&path) {
        Ok(t) => t,
        Err(e) => {
            cx.err_at(
                s,
                Kind::Io,
                format!("cannot read {what} {}: {e}", path.display()),
            );
            return None;
        }
    };
    let mut found = false;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes()) {
        match section {
            Ok((k, _)) if k == kind => found = true,
            Ok(_) => {}
            Err(e) => {
                cx.err_at(
                    s,
                    Kind::BadValue,
                    format!("{}: not a valid PEM file: {e}", path.display()),
                );
                return None;
            }
        }
    }
    if !found {
        cx.err_at(
            s,
            Kind::BadValue,
            format!("{}: holds no {what} (PEM)", path.display()),
        );
        return None;
    }
    Some(PemFile { path, pem: text })
}

/// `tls = { certificate = "...", key = "..." }` of a realm.
pub(super) fn realm_tls(cx: &mut Ctx, realm: &Tab) -> Option<RealmTls> {
    let t = realm.table(cx, "tls")?;
    t.check_keys(cx, REALM_TLS_KEYS);
    let cert = t.req_str(cx, "certificate");
    let key = t.req_str(cx, "key");
    let certificate = cert.and_then(|c| pem_file(cx, &c, SectionKind::Certificate, "certificate"));
    let key = key.and_then(|k| {
        let base = cx.srcs[k.src]
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let text = (cx.read)(&lexical(&base.join(&k.v))).unwrap_or_default();
        // Any of the three private key encodings rustls takes.
        let kind = [
            SectionKind::PrivateKey,
            SectionKind::EcPrivateKey,
            SectionKind::RsaPrivateKey,
        ]
        .into_iter()
        .find(|kind| {
            <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes())
                .any(|s| s.is_ok_and(|(k, _)| k == *kind))
        })
        .unwrap_or(SectionKind::PrivateKey);
        pem_file(cx, &k, kind, "private key")
    });
    Some(RealmTls {
        certificate: certificate?,
        key: key?,
    })
}

/// Parses `SHA256:AB:CD:...`, `ab:cd:...` or plain hex (what `palisade cert show` and
/// `openssl x509 -fingerprint -sha256` print).
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    let s = s
        .strip_prefix("SHA256:")
        .or_else(|| s.strip_prefix("sha256:"))
        .or_else(|| s.strip_prefix("SHA-256:"))
        .unwrap_or(s);
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The `[tls]` table of a partner.
pub(super) fn peer_tls(cx: &mut Ctx, peer: &Tab, domains: &[Sp<String>]) -> Option<PeerTls> {
    let t = peer.table(cx, "tls")?;
    t.check_keys(cx, PEER_TLS_KEYS);
    let mut fingerprints = Vec::new();
    if let Some(list) = t.str_list(cx, "fingerprints") {
        for f in list.v {
            match parse_fingerprint(&f.v) {
                Some(fp) => fingerprints.push(fp),
                None => cx.err_at(
                    &f,
                    Kind::BadValue,
                    format!(
                        "`{}`: expected a SHA-256 fingerprint, 32 hex bytes (\"SHA256:AB:CD:...\", as `palisade cert show` prints)",
                        f.v
                    ),
                ),
            }
        }
    }
    let ca = t
        .str(cx, "ca")
        .and_then(|c| pem_file(cx, &c, SectionKind::Certificate, "CA certificate"));
    let crl = t
        .str(cx, "crl")
        .and_then(|c| pem_file(cx, &c, SectionKind::Crl, "certificate revocation list"));
    let identities = match t.str_list(cx, "identities") {
        Some(l) => l.v.into_iter().map(|i| i.v.to_ascii_lowercase()).collect(),
        None => domains.iter().map(|d| d.v.to_ascii_lowercase()).collect(),
    };
    if fingerprints.is_empty() && ca.is_none() && t.get("ca").is_none() {
        let span = peer.key_span("tls").unwrap_or(0..0);
        cx.err(
            t.src,
            span,
            &peer.field("tls"),
            Kind::MissingField,
            "a TLS partner needs `fingerprints` (pinned certificates) or `ca` (its CA bundle)",
        );
    }
    Some(PeerTls {
        fingerprints,
        ca,
        identities,
        crl,
    })
}
