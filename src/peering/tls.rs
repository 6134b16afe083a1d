//! The rustls configurations of each realm: the server side of its TLS listener and the client
//! side of the connections it opens, both presenting the realm's certificate and both insisting
//! on a partner's certificate ([`RealmTrust`]). Protocol TLS 1.2 and 1.3 only; the ring
//! provider's suites, all AEAD (AES-GCM, ChaCha20-Poly1305), with ECDSA P-256/P-384 and RSA
//! signatures: the TS 33.210 / 33.310 profile. `SSLKEYLOGFILE`, when set in the environment,
//! receives the session keys (NSS key log) so a capture of the interconnect can be decrypted.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::trust::{PartnerTrust, RealmTrust, Refusal, Role};
use crate::config::{Config, RealmKind};

/// The TLS side of one realm.
#[derive(Clone)]
pub struct RealmTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    pub trust: Arc<RealmTrust>,
}

impl std::fmt::Debug for RealmTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealmTls")
            .field("partners", &self.trust.partners.len())
            .finish()
    }
}

/// The ring provider. rustls 0.23.48 marks it deprecated for lacking post-quantum key
/// exchange; the interconnect profile (TS 33.210) asks for none, and aws-lc-rs would add a
/// cmake/C build to every checkout (see the README's design notes).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Turns a refusal into the error rustls carries to the handshake (and to our log).
fn to_rustls(r: Refusal) -> rustls::Error {
    let cert = match r {
        Refusal::NoCertificate => return rustls::Error::NoCertificatesPresented,
        Refusal::UnknownCa => CertificateError::UnknownIssuer,
        Refusal::Expired => CertificateError::Expired,
        Refusal::NotYetValid => CertificateError::NotValidYet,
        Refusal::Revoked => CertificateError::Revoked,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(cert)
}

/// What a failed handshake's error says, as one of our reasons (`None`: not about a
/// certificate, e.g. the peer hung up or spoke no TLS).
pub fn refusal_of(e: &std::io::Error) -> Option<Refusal> {
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match inner {
        rustls::Error::NoCertificatesPresented => Refusal::NoCertificate,
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => Refusal::UnknownCa,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Refusal::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Refusal::NotYetValid
            }
            CertificateError::Revoked => Refusal::Revoked,
            CertificateError::Other(OtherError(o)) => match o.downcast_ref::<Refusal>() {
                Some(r) => r.clone(),
                None => Refusal::Bad(o.to_string()),
            },
            other => Refusal::Bad(format!("{other:?}")),
        },
        _ => return None,
    })
}

/// Accepts a chain that proves one of the realm's partners, in either role.
#[derive(Debug)]
struct PartnerVerifier {
    trust: Arc<RealmTrust>,
    provider: Arc<CryptoProvider>,
}

impl PartnerVerifier {
    /// Whether the chain proves one of the realm's partners, as the error rustls carries.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        role: Role,
    ) -> Result<(), rustls::Error> {
        let mut chain = vec![end_entity.clone()];
        chain.extend(intermediates.iter().cloned());
        self.trust
            .identify(&chain, now, role)
            .map(|_| ())
            .map_err(to_rustls)
    }
}

impl ServerCertVerifier for PartnerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The server name is not what decides: the partner policies are (RFC 5922 §7.3 matches
        // the certificate against the partner's SIP domain, which is in its policy).
        self.check(end_entity, intermediates, now, Role::Server)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for PartnerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a partner sends the one certificate it has for this interconnect.
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, Role::Client)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(self)
    }
}

/// Why a realm's TLS cannot be set up; names the realm and file.
#[derive(Debug, thiserror::Error)]
#[error("realm {realm}: {message}")]
pub struct TlsSetupError {
    pub realm: String,
    pub message: String,
}

/// Builds the TLS side of every realm that has a `tls` certificate: realm index → configs.
pub fn build(cfg: &Config) -> Result<HashMap<usize, RealmTls>, TlsSetupError> {
    let mut out = HashMap::new();
    for (ri, realm) in cfg.realms.iter().enumerate() {
        let Some(own) = &realm.tls else { continue };
        let err = |message: String| TlsSetupError {
            realm: realm.name.clone(),
            message,
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(own.certificate.pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| err(format!("{}: {e}", own.certificate.path.display())))?;
        let key = PrivateKeyDer::from_pem_slice(own.key.pem.as_bytes())
            .map_err(|e| err(format!("{}: {e}", own.key.path.display())))?;
        let mut trust = RealmTrust::default();
        if realm.kind == RealmKind::Peer {
            for p in &realm.peers {
                if let Some(policy) = &p.tls {
                    trust.partners.push(
                        PartnerTrust::new(&p.name, policy)
                            .map_err(|m| err(format!("partner {}: {m}", p.name)))?,
                    );
                }
            }
        }
        let trust = Arc::new(trust);
        let provider = provider();
        let verifier = Arc::new(PartnerVerifier {
            trust: trust.clone(),
            provider: provider.clone(),
        });
        let versions = &[&rustls::version::TLS13, &rustls::version::TLS12];
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| err(e.to_string()))?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| {
                err(format!(
                    "{} / {}: {e}",
                    own.certificate.path.display(),
                    own.key.path.display()
                ))
            })?;
        server.key_log = Arc::new(rustls::KeyLogFile::new());
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| err(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, key)
            .map_err(|e| err(e.to_string()))?;
        client.key_log = Arc::new(rustls::KeyLogFile::new());
        out.insert(
            ri,
            RealmTls {
                server: Arc::new(server),
                client: Arc::new(client),
                trust,
            },
        );
    }
    Ok(out)
}
