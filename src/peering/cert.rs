//! `palisade cert`: what two operators need to exchange certificates. `new` makes a key and a
//! certificate (self-signed, signed by a CA of the operator's, or a certificate request for a
//! CA) with the SIP domain in subjectAltName both as dNSName and as `sip:` URI (RFC 5922 §7.1)
//! and both key usages, since one certificate serves the listener and the connections this
//! border opens; `ca` makes a CA for a small interconnect or a lab; `show` prints what the
//! partner needs to write into its policy (subject, names, validity, SHA-256 fingerprint).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::trust::{fingerprint, format_fingerprint, identities};

/// What to make.
#[derive(Debug, Clone)]
pub struct NewCert {
    pub domain: String,
    /// Writes `PREFIX.key` and `PREFIX.crt` (or `PREFIX.csr`).
    pub out: PathBuf,
    pub csr: bool,
    pub days: u32,
    /// `YYYY-MM-DD`; default today.
    pub valid_from: Option<String>,
    /// Sign with this CA (certificate and key PEM files) instead of self-signing.
    pub issuer: Option<(PathBuf, PathBuf)>,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

fn write(path: PathBuf, text: &str, secret: bool) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(path)
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn validity(params: &mut CertificateParams, from: Option<&str>, days: u32) -> anyhow::Result<()> {
    let start = match from {
        Some(d) => {
            let parts: Vec<&str> = d.split('-').collect();
            let bad = || anyhow::anyhow!("--valid-from {d}: expected YYYY-MM-DD");
            if parts.len() != 3 {
                return Err(bad());
            }
            rcgen::date_time_ymd(
                parts[0].parse().map_err(|_| bad())?,
                parts[1].parse().map_err(|_| bad())?,
                parts[2].parse().map_err(|_| bad())?,
            )
        }
        None => time::OffsetDateTime::now_utc(),
    };
    params.not_before = start;
    params.not_after = start + time::Duration::days(i64::from(days));
    Ok(())
}

/// Makes the files; returns the paths written.
pub fn new_cert(req: &NewCert) -> anyhow::Result<Vec<PathBuf>> {
    let domain = req.domain.to_ascii_lowercase();
    let mut params = CertificateParams::new(vec![domain.clone()])?;
    params
        .subject_alt_names
        .push(SanType::URI(format!("sip:{domain}").try_into()?));
    params.distinguished_name.push(DnType::CommonName, &domain);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, req.valid_from.as_deref(), req.days)?;
    let key = KeyPair::generate()?;
    let mut written = vec![write(
        with_ext(&req.out, "key"),
        &key.serialize_pem(),
        true,
    )?];
    if req.csr {
        let csr = params.serialize_request(&key)?;
        written.push(write(with_ext(&req.out, "csr"), &csr.pem()?, false)?);
        return Ok(written);
    }
    let cert = match &req.issuer {
        Some((cert, ca_key)) => {
            let ca_key = KeyPair::from_pem(&read(ca_key)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", ca_key.display()))?;
            let issuer = Issuer::from_ca_cert_pem(&read(cert)?, ca_key)
                .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
            params.signed_by(&key, &issuer)?
        }
        None => params.self_signed(&key)?,
    };
    written.push(write(with_ext(&req.out, "crt"), &cert.pem(), false)?);
    Ok(written)
}

/// A CA certificate and key (`PREFIX.crt`, `PREFIX.key`) named `name`.
pub fn new_ca(name: &str, out: &Path, days: u32) -> anyhow::Result<Vec<PathBuf>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, None, days)?;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(vec![
        write(with_ext(out, "key"), &key.serialize_pem(), true)?,
        write(with_ext(out, "crt"), &cert.pem(), false)?,
    ])
}

/// What `cert show` prints for every certificate in a PEM file.
pub fn show(path: &Path) -> anyhow::Result<String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    use std::fmt::Write;
    let text = read(path)?;
    let mut out = String::new();
    let mut n = 0;
    for der in CertificateDer::pem_slice_iter(text.as_bytes()) {
        let der = der.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| anyhow::anyhow!("{}: certificate {n}: {e}", path.display()))?;
        if n > 0 {
            out.push('\n');
        }
        n += 1;
        let names = identities(&der).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        writeln!(out, "subject:     {}", cert.subject())?;
        writeln!(out, "issuer:      {}", cert.issuer())?;
        writeln!(
            out,
            "identities:  {}",
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            }
        )?;
        writeln!(out, "not before:  {}", cert.validity().not_before)?;
        writeln!(out, "not after:   {}", cert.validity().not_after)?;
        writeln!(out, "CA:          {}", cert.is_ca())?;
        writeln!(
            out,
            "fingerprint: {}",
            format_fingerprint(&fingerprint(&der))
        )?;
    }
    if n == 0 {
        anyhow::bail!("{}: holds no certificate (PEM)", path.display());
    }
    Ok(out)
}
