//! Which partner a chain proves, without sockets: certificates made here with rcgen, the check
//! fed a fixed time.

use super::trust::{fingerprint, PartnerTrust, RealmTrust, Refusal, Role};
use crate::config::{PeerTls, PemFile};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use std::path::PathBuf;
use std::time::Duration;

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

/// A leaf with `dns` dNSNames and `uris` URI SANs (none at all: CN `cn` only), serial `serial`.
fn leaf(
    dns: &[&str],
    uris: &[&str],
    cn: &str,
    serial: u64,
    issuer: Option<&Ca>,
) -> CertificateDer<'static> {
    let mut p =
        CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    for u in uris {
        p.subject_alt_names
            .push(SanType::URI(u.to_string().try_into().unwrap()));
    }
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from(serial));
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = match issuer {
        Some(ca) => p
            .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
            .unwrap(),
        None => p.self_signed(&key).unwrap(),
    };
    cert.der().clone()
}

fn pem(text: String) -> PemFile {
    PemFile {
        path: PathBuf::from("test.pem"),
        pem: text,
    }
}

fn by_ca(ca: &Ca, ids: &[&str]) -> PeerTls {
    PeerTls {
        fingerprints: vec![],
        ca: Some(pem(ca.pem.clone())),
        identities: ids.iter().map(|s| s.to_string()).collect(),
        crl: None,
    }
}

fn now() -> UnixTime {
    UnixTime::now()
}

#[test]
fn a_pinned_certificate_is_its_own_identity() {
    let cert = leaf(&["whatever.example"], &[], "x", 1, None);
    let policy = PeerTls {
        fingerprints: vec![fingerprint(&cert)],
        ca: None,
        identities: vec!["operator-b.example".into()],
        crl: None,
    };
    let t = PartnerTrust::new("b", &policy).unwrap();
    assert_eq!(t.check(&[cert], now(), Role::Client), Ok(()));
    let other = leaf(&["operator-b.example"], &[], "x", 2, None);
    assert!(matches!(
        t.check(&[other], now(), Role::Client),
        Err(Refusal::NotPinned(_))
    ));
}

#[test]
fn a_pinned_certificate_past_its_validity_is_expired() {
    let cert = leaf(&["b.example"], &[], "x", 1, None);
    let policy = PeerTls {
        fingerprints: vec![fingerprint(&cert)],
        ca: None,
        identities: vec![],
        crl: None,
    };
    let t = PartnerTrust::new("b", &policy).unwrap();
    // rcgen's default validity ends in 4096; a time after it.
    let later = UnixTime::since_unix_epoch(Duration::from_secs(5_000 * 365 * 86_400));
    assert_eq!(t.check(&[cert], later, Role::Client), Err(Refusal::Expired));
}

#[test]
fn a_ca_chain_must_name_the_partner_by_uri_or_dns_name() {
    let ca = ca("CA of B");
    let t = PartnerTrust::new("b", &by_ca(&ca, &["operator-b.example"])).unwrap();
    let by_uri = leaf(&[], &["sip:operator-b.example"], "other", 1, Some(&ca));
    assert_eq!(t.check(&[by_uri], now(), Role::Server), Ok(()));
    let by_dns = leaf(&["OPERATOR-B.example"], &[], "other", 2, Some(&ca));
    assert_eq!(t.check(&[by_dns], now(), Role::Client), Ok(()));
    let wrong = leaf(&["evil.example"], &[], "operator-b.example", 3, Some(&ca));
    assert!(matches!(
        t.check(&[wrong], now(), Role::Client),
        Err(Refusal::NameMismatch { .. })
    ));
    // RFC 5922 §7.2: no wildcards.
    let wild = leaf(&["*.operator-b.example"], &[], "x", 4, Some(&ca));
    let t2 = PartnerTrust::new("b", &by_ca(&ca, &["*.operator-b.example"])).unwrap();
    assert!(matches!(
        t2.check(&[wild], now(), Role::Client),
        Err(Refusal::NameMismatch { .. })
    ));
}

#[test]
fn the_subject_cn_counts_only_without_subject_alt_names() {
    let ca = ca("CA");
    let t = PartnerTrust::new("b", &by_ca(&ca, &["operator-b.example"])).unwrap();
    let cn_only = leaf(&[], &[], "operator-b.example", 1, Some(&ca));
    assert_eq!(t.check(&[cn_only], now(), Role::Client), Ok(()));
    let cn_and_san = leaf(&["other.example"], &[], "operator-b.example", 2, Some(&ca));
    assert!(t.check(&[cn_and_san], now(), Role::Client).is_err());
}

#[test]
fn another_ca_is_unknown() {
    let ours = ca("ours");
    let theirs = ca("theirs");
    let t = PartnerTrust::new("b", &by_ca(&ours, &["operator-b.example"])).unwrap();
    let cert = leaf(&["operator-b.example"], &[], "x", 1, Some(&theirs));
    assert_eq!(
        t.check(&[cert], now(), Role::Client),
        Err(Refusal::UnknownCa)
    );
}

#[test]
fn a_revoked_certificate_is_refused_with_a_crl() {
    let ca = ca("CA");
    let crl = CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2025, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(7u64),
            revocation_time: rcgen::date_time_ymd(2025, 6, 1),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&Issuer::from_params(&ca.params, &ca.key))
    .unwrap();
    let mut policy = by_ca(&ca, &["operator-b.example"]);
    policy.crl = Some(pem(crl.pem().unwrap()));
    let t = PartnerTrust::new("b", &policy).unwrap();
    let revoked = leaf(&["operator-b.example"], &[], "x", 7, Some(&ca));
    assert_eq!(
        t.check(&[revoked], now(), Role::Client),
        Err(Refusal::Revoked)
    );
    let fine = leaf(&["operator-b.example"], &[], "x", 8, Some(&ca));
    assert_eq!(t.check(&[fine], now(), Role::Client), Ok(()));
}

#[test]
fn a_realm_names_the_partner_the_chain_proves_and_the_most_telling_refusal() {
    let ca_b = ca("B");
    let ca_c = ca("C");
    let realm = RealmTrust {
        partners: vec![
            PartnerTrust::new("b", &by_ca(&ca_b, &["operator-b.example"])).unwrap(),
            PartnerTrust::new("c", &by_ca(&ca_c, &["operator-c.example"])).unwrap(),
        ],
    };
    let c = leaf(&["operator-c.example"], &[], "x", 1, Some(&ca_c));
    assert_eq!(&*realm.identify(&[c], now(), Role::Client).unwrap(), "c");
    // Chains to C's CA but names B: the name is wrong (not "unknown CA" from B's check).
    let c_as_b = leaf(&["operator-b.example"], &[], "x", 2, Some(&ca_c));
    assert!(matches!(
        realm.identify(&[c_as_b], now(), Role::Client),
        Err(Refusal::NameMismatch { .. })
    ));
    assert_eq!(
        realm.identify(&[], now(), Role::Client),
        Err(Refusal::NoCertificate)
    );
}
