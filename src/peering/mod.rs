//! TLS peering between operators: who a partner is, by the certificate its connection proved.
//!
//! `trust` decides which partner a certificate chain proves (pinned fingerprint, or CA plus SIP
//! identity) and why it proves none; `tls` turns a realm's certificate and its partners' trust
//! into rustls configurations for both directions; `cert` is the engineer's tooling
//! (`palisade cert new|ca|show`). The transport runs the handshakes and attaches the proven
//! partner name to everything a connection carries; the engine selects the partner policy by
//! that name, never by the connection's source address.

pub mod cert;
pub mod tls;
pub mod trust;

pub use tls::{build, refusal_of, RealmTls, TlsSetupError};
pub use trust::{fingerprint, format_fingerprint, RealmTrust, Refusal, Role};

#[cfg(test)]
mod tests;
