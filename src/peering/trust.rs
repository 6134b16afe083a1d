//! Which partner a certificate chain proves, or why it proves none.
//!
//! Each partner's policy says how it proves itself: a pinned leaf certificate (its SHA-256
//! fingerprint), or a chain to one of its CA certificates whose leaf names one of its identities
//! (RFC 5922 §7.1: subjectAltName `sip:` URIs, else dNSNames, and the subject CN only when the
//! certificate has no subjectAltName at all; no wildcards, §7.2). The same check serves both
//! directions: a partner's client certificate on our listener, a partner's server certificate on
//! a connection we opened. Pure: fed the chain and the time, no sockets.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sha2::{Digest, Sha256};
use webpki::{CertRevocationList, EndEntityCert, KeyUsage, OwnedCertRevocationList};

use crate::config::PeerTls;

/// Why a certificate chain was refused. Each has its own log reason and metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no client certificate")]
    NoCertificate,
    #[error("unknown CA: the chain leads to no CA of any partner")]
    UnknownCa,
    #[error("name mismatch: the certificate names {presented:?}, no partner of this realm is one of them")]
    NameMismatch { presented: Vec<String> },
    #[error("certificate expired")]
    Expired,
    #[error("certificate not valid yet")]
    NotYetValid,
    #[error("certificate revoked")]
    Revoked,
    #[error("certificate not pinned: SHA-256 {0} is no partner's fingerprint")]
    NotPinned(String),
    #[error("bad certificate: {0}")]
    Bad(String),
}

impl Refusal {
    /// The short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoCertificate => "no_client_certificate",
            Refusal::UnknownCa => "unknown_ca",
            Refusal::NameMismatch { .. } => "name_mismatch",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Revoked => "revoked",
            Refusal::NotPinned(_) => "not_pinned",
            Refusal::Bad(_) => "bad_certificate",
        }
    }

    /// When several partners refuse one chain, the most telling reason wins: one that says the
    /// chain was recognised (expired, revoked, wrong name) over one that says it was not.
    fn rank(&self) -> u8 {
        match self {
            Refusal::Expired | Refusal::NotYetValid | Refusal::Revoked => 5,
            Refusal::NameMismatch { .. } => 4,
            Refusal::Bad(_) => 3,
            Refusal::UnknownCa => 2,
            Refusal::NotPinned(_) => 1,
            Refusal::NoCertificate => 0,
        }
    }
}

/// Which side of a connection the certificate belongs to (the extended key usage it needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A partner connecting to our listener.
    Client,
    /// A partner's listener we connected to.
    Server,
}

/// SHA-256 of a DER certificate, the value a partner pins.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// `SHA256:AB:CD:...`, the form the configuration takes.
pub fn format_fingerprint(fp: &[u8; 32]) -> String {
    let hex: Vec<String> = fp.iter().map(|b| format!("{b:02X}")).collect();
    format!("SHA256:{}", hex.join(":"))
}

/// The SIP identities a certificate names (RFC 5922 §7.1), lower-cased: the hosts of its
/// `sip:` URI subjectAltNames and its dNSNames; its CN only if it has no subjectAltName.
pub fn identities(der: &[u8]) -> Result<Vec<String>, Refusal> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Refusal::Bad(format!("cannot parse the certificate: {e}")))?;
    let mut out = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Refusal::Bad(format!("bad subjectAltName: {e}")))?;
    match san {
        Some(san) => {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => {
                        let lower = u.to_ascii_lowercase();
                        if let Some(rest) = lower.strip_prefix("sip:") {
                            // sip:domain, possibly with a port or parameters after it.
                            let host = rest.split([':', ';', '?']).next().unwrap_or("");
                            out.push(host.to_string());
                        }
                    }
                    GeneralName::DNSName(d) => out.push(d.to_ascii_lowercase()),
                    _ => {}
                }
            }
        }
        None => {
            for cn in cert.subject().iter_common_name() {
                if let Ok(s) = cn.as_str() {
                    out.push(s.to_ascii_lowercase());
                }
            }
        }
    }
    // A certificate usually names its domain both ways (URI and dNSName): once is enough.
    let mut seen = std::collections::HashSet::new();
    out.retain(|n| seen.insert(n.clone()));
    Ok(out)
}

/// Validity period check for a pinned certificate (a CA chain is checked by webpki).
fn check_validity(der: &[u8], now: UnixTime) -> Result<(), Refusal> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Refusal::Bad(format!("cannot parse the certificate: {e}")))?;
    let now = now.as_secs() as i64;
    if now < cert.validity().not_before.timestamp() {
        return Err(Refusal::NotYetValid);
    }
    if now > cert.validity().not_after.timestamp() {
        return Err(Refusal::Expired);
    }
    Ok(())
}

/// One partner's trust, ready to check chains against.
#[derive(Debug)]
pub struct PartnerTrust {
    pub name: Arc<str>,
    pins: Vec<[u8; 32]>,
    anchors: Vec<TrustAnchor<'static>>,
    identities: Vec<String>,
    crls: Vec<CertRevocationList<'static>>,
}

impl PartnerTrust {
    /// Builds it from the partner's `[tls]` policy; errors name the file.
    pub fn new(name: &str, policy: &PeerTls) -> Result<PartnerTrust, String> {
        use rustls_pki_types::pem::PemObject;
        let mut anchors = Vec::new();
        if let Some(ca) = &policy.ca {
            for der in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
                let der = der.map_err(|e| format!("{}: {e}", ca.path.display()))?;
                let anchor = webpki::anchor_from_trusted_cert(&der).map_err(|e| {
                    format!("{}: not a usable CA certificate: {e}", ca.path.display())
                })?;
                anchors.push(anchor.to_owned());
            }
        }
        let mut crls = Vec::new();
        if let Some(crl) = &policy.crl {
            for der in
                rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(crl.pem.as_bytes())
            {
                let der = der.map_err(|e| format!("{}: {e}", crl.path.display()))?;
                let owned = OwnedCertRevocationList::from_der(&der)
                    .map_err(|e| format!("{}: not a usable CRL: {e}", crl.path.display()))?;
                crls.push(CertRevocationList::from(owned));
            }
        }
        Ok(PartnerTrust {
            name: Arc::from(name),
            pins: policy.fingerprints.clone(),
            anchors,
            identities: policy.identities.clone(),
            crls,
        })
    }

    /// Whether `chain` (leaf first) proves this partner at `now`.
    pub fn check(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
        role: Role,
    ) -> Result<(), Refusal> {
        let Some(leaf) = chain.first() else {
            return Err(Refusal::NoCertificate);
        };
        let fp = fingerprint(leaf);
        if self.pins.contains(&fp) {
            // The pin is the identity; the certificate must still be in its validity period.
            return check_validity(leaf, now);
        }
        if self.anchors.is_empty() {
            return Err(Refusal::NotPinned(format_fingerprint(&fp)));
        }
        let ee = EndEntityCert::try_from(leaf)
            .map_err(|e| Refusal::Bad(format!("cannot parse the certificate: {e}")))?;
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = if crl_refs.is_empty() {
            None
        } else {
            // A CRL that does not cover a certificate of the chain does not refuse it: CRLs are
            // optional and may be issued for the leaf's CA only.
            webpki::RevocationOptionsBuilder::new(&crl_refs)
                .ok()
                .map(|b| {
                    b.with_status_policy(webpki::UnknownStatusPolicy::Allow)
                        .build()
                })
        };
        let usage = match role {
            Role::Client => KeyUsage::client_auth(),
            Role::Server => KeyUsage::server_auth(),
        };
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &chain[1..],
            now,
            usage,
            revocation,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::UnknownIssuer => Refusal::UnknownCa,
            webpki::Error::CertExpired { .. } => Refusal::Expired,
            webpki::Error::CertNotValidYet { .. } => Refusal::NotYetValid,
            webpki::Error::CertRevoked => Refusal::Revoked,
            other => Refusal::Bad(other.to_string()),
        })?;
        let presented = identities(leaf)?;
        let named = presented
            .iter()
            .any(|p| !p.contains('*') && self.identities.iter().any(|i| i == p));
        if named {
            Ok(())
        } else {
            Err(Refusal::NameMismatch { presented })
        }
    }

    /// The identities its certificate must name (for `palisade status` and `resolve`).
    pub fn expected(&self) -> &[String] {
        &self.identities
    }
}

/// The partners of one realm: a chain is accepted if it proves one of them, and the one it
/// proves is who the connection is.
#[derive(Debug, Default)]
pub struct RealmTrust {
    pub partners: Vec<PartnerTrust>,
}

impl RealmTrust {
    /// The partner `chain` proves, or the most telling reason it proves none.
    pub fn identify(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
        role: Role,
    ) -> Result<Arc<str>, Refusal> {
        if chain.is_empty() {
            return Err(Refusal::NoCertificate);
        }
        let mut worst: Option<Refusal> = None;
        for p in &self.partners {
            match p.check(chain, now, role) {
                Ok(()) => return Ok(p.name.clone()),
                Err(r) => {
                    if worst.as_ref().is_none_or(|w| r.rank() > w.rank()) {
                        worst = Some(r);
                    }
                }
            }
        }
        Err(worst.unwrap_or(Refusal::UnknownCa))
    }

    pub fn partner(&self, name: &str) -> Option<&PartnerTrust> {
        self.partners.iter().find(|p| &*p.name == name)
    }
}
