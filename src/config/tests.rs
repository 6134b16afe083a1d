use super::ConfigErrorKind as Kind;
use super::*;
use std::collections::HashMap;

const NODE: &str = r#"name = "palisade-a"
home_domains = ["operator-a.example"]

[[realm]]
name = "home"
kind = "home"
listen = ["udp:127.0.10.2:5060", "tcp:127.0.10.2:5060"]
core = "udp:127.0.10.1:5060"

[[realm]]
name = "interconnect"
kind = "peer"
listen = ["udp:127.0.20.2:5060"]
peers = ["peers/b.toml"]
"#;

const PEER_B: &str = r#"name = "operator-b"
domains = ["operator-b.example"]
sources = ["127.0.30.2"]
next_hop = "udp:127.0.30.2:5060"
"#;

fn files(extra: &[(&str, &str)]) -> HashMap<PathBuf, String> {
    let mut m = HashMap::new();
    m.insert(
        PathBuf::from("/etc/palisade/peers/b.toml"),
        PEER_B.to_string(),
    );
    for (p, t) in extra {
        m.insert(PathBuf::from(p), t.to_string());
    }
    m
}

fn parse_with(text: &str, files: &HashMap<PathBuf, String>) -> Result<Config, ConfigErrors> {
    let read = |p: &Path| {
        files
            .get(p)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not found"))
    };
    parse(text, Path::new("/etc/palisade/node.toml"), &read)
}

fn errors(text: &str) -> Vec<ConfigError> {
    parse_with(text, &files(&[])).expect_err("should fail").0
}

fn kinds(errors: &[ConfigError]) -> Vec<Kind> {
    errors.iter().map(|e| e.kind).collect()
}

/// The one error expected.
fn one_error(text: &str) -> ConfigError {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{}", ConfigErrors(e.clone()));
    e.into_iter().next().unwrap()
}

#[test]
fn minimal_node_gets_defaults() {
    let c = parse_with(NODE, &files(&[])).unwrap();
    assert_eq!(c.name, "palisade-a");
    assert_eq!(c.ioi, "operator-a.example");
    assert_eq!(c.log, "info");
    assert_eq!(c.sip, SipSettings::default());
    let home = c.home();
    assert_eq!(home.advertise, "127.0.10.2".parse::<IpAddr>().unwrap());
    assert_eq!(
        home.core_sources,
        vec!["127.0.10.1".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(home.trust, Trust::Trusted);
    assert_eq!(home.headers.allow.len(), 38);
    assert!(home.headers.bodies.iter().any(|b| b == "application/sdp"));
    assert_eq!(home.listen[1].transport, Transport::Tcp);
    let ic = c.realm("interconnect").unwrap();
    let b = &ic.peers[0];
    assert_eq!(b.realm, "interconnect");
    assert_eq!(b.trust, Trust::Untrusted);
    assert_eq!(b.refer, ReferPolicy::Relay);
    assert_eq!(b.ioi, "operator-b.example");
    assert_eq!(b.max_calls, 1000);
    assert_eq!(b.allowed_methods.len(), 12);
    assert_eq!(b.origin, PathBuf::from("/etc/palisade/peers/b.toml"));
    assert_eq!(b.next_hop.to_string(), "udp:127.0.30.2:5060");
}

#[test]
fn ipv6_listen_and_sip_settings() {
    let text = NODE
        .replace("udp:127.0.20.2:5060", "udp:[::1]:5070")
        .replace(
            "name = \"palisade-a\"\n",
            "name = \"palisade-a\"\nlog = \"debug\"\n[sip]\nt1_ms = 250\nmax_forwards = 20\n",
        );
    // [sip] table must come after top-level keys: move home_domains above it.
    let text = text.replace("home_domains = [\"operator-a.example\"]\n", "");
    let text = format!("home_domains = [\"operator-a.example\"]\n{text}");
    let c = parse_with(&text, &files(&[])).unwrap();
    assert_eq!(c.sip.t1, Duration::from_millis(250));
    assert_eq!(c.sip.max_forwards, 20);
    assert_eq!(c.log, "debug");
    let l = &c.realm("interconnect").unwrap().listen[0];
    assert_eq!(l.addr, "[::1]:5070".parse().unwrap());
    assert_eq!(l.to_string(), "udp:[::1]:5070");
}

#[test]
fn log_format_is_auto_by_default_and_named_on_error() {
    assert_eq!(
        parse_with(NODE, &files(&[])).unwrap().log_format,
        LogFormat::Auto
    );
    let json = NODE.replace(
        "name = \"palisade-a\"\n",
        "name = \"palisade-a\"\nlog_format = \"json\"\n",
    );
    assert_eq!(
        parse_with(&json, &files(&[])).unwrap().log_format,
        LogFormat::Json
    );
    let e = one_error(&NODE.replace(
        "name = \"palisade-a\"\n",
        "name = \"palisade-a\"\nlog_format = \"yaml\"\n",
    ));
    assert_eq!(e.field, "log_format");
    assert_eq!(e.kind, Kind::BadValue);
    assert_eq!(e.line, 2);
    assert!(e.message.contains("`yaml`: expected"), "{}", e.message);
}

#[test]
fn syntax_error_has_position() {
    let e = one_error("name = \"x\"\nhome_domains = [\"a\"\n");
    assert_eq!(e.field, "(syntax)");
    assert_eq!(e.kind, Kind::Syntax);
    assert_eq!(e.line, 2);
}

#[test]
fn unknown_key_names_key_and_alternatives() {
    let text = NODE.replace("core = ", "cores = ");
    let e = errors(&text);
    let unk = e.iter().find(|e| e.field == "realm.home.cores").unwrap();
    assert_eq!((unk.line, unk.column), (8, 1));
    assert_eq!(unk.kind, Kind::UnknownKey);
    assert!(unk.message.contains("`cores`"), "{}", unk.message);
    assert!(unk.message.contains("core_sources"));
    // and the missing core is reported too
    assert!(e
        .iter()
        .any(|e| e.field == "realm.home.core" && e.kind == Kind::MissingField));
}

#[test]
fn wrong_type() {
    let e = one_error(&NODE.replace("name = \"palisade-a\"", "name = 7"));
    assert_eq!(e.field, "name");
    assert_eq!((e.line, e.column), (1, 8));
    assert_eq!(e.kind, Kind::WrongType);
    assert!(e.message.contains("expected a string, found an integer"));
}

#[test]
fn bad_address_and_port_zero() {
    let e = errors(
        &NODE
            .replace("udp:127.0.10.2:5060", "127.0.10.2:5060")
            .replace("tcp:127.0.10.2:5060", "tcp:127.0.10.2:0"),
    );
    assert_eq!(e.len(), 2, "{}", ConfigErrors(e.clone()));
    assert_eq!(kinds(&e), [Kind::BadValue, Kind::BadValue]);
    assert_eq!(e[0].field, "realm.home.listen[0]");
    assert!(e[0].message.contains("expected transport:ip:port"));
    assert_eq!((e[0].line, e[0].column), (7, 11));
    assert_eq!(e[1].field, "realm.home.listen[1]");
    assert!(e[1].message.contains("port 0"));
}

#[test]
fn home_realm_rules() {
    let e = one_error(&NODE.replace("core = \"udp:127.0.10.1:5060\"\n", ""));
    assert_eq!(e.field, "realm.home.core");
    assert_eq!(e.kind, Kind::MissingField);
    assert_eq!(e.line, 4);

    let e = errors(
        &NODE
            .replace(
                "kind = \"peer\"",
                "kind = \"home\"\ncore = \"udp:1.2.3.4:5060\"",
            )
            .replace("peers = [\"peers/b.toml\"]\n", ""),
    );
    let two = e.iter().find(|e| e.kind == Kind::Duplicate).unwrap();
    assert!(
        two.message.contains("realm.home is already home"),
        "{}",
        two.message
    );
    assert_eq!(
        (two.line, two.field.as_str()),
        (12, "realm.interconnect.kind")
    );
}

#[test]
fn needs_a_peer_realm_and_unique_names() {
    let text = NODE.replace(
        "kind = \"peer\"",
        "kind = \"home\"\ncore = \"udp:1.2.3.4:5060\"",
    );
    let e = errors(&text.replace("peers = [\"peers/b.toml\"]\n", ""));
    assert!(e
        .iter()
        .any(|e| e.field == "realm" && e.kind == Kind::MissingField));

    let e = one_error(&NODE.replace("name = \"interconnect\"", "name = \"home\""));
    // The name field itself is addressed by index: the name is what is in question.
    assert_eq!(e.field, "realm[1].name");
    assert_eq!(e.kind, Kind::Duplicate);
    assert_eq!(e.line, 11);
    assert!(e.message.contains("already used by realm[0].name"));
}

#[test]
fn peer_keys_only_in_peer_realm() {
    let e = one_error(&NODE.replace(
        "core = \"udp:127.0.10.1:5060\"",
        "core = \"udp:127.0.10.1:5060\"\npeers = []",
    ));
    assert_eq!(e.field, "realm.home.peers");
    assert_eq!(e.kind, Kind::Misplaced);
}

#[test]
fn same_listen_twice() {
    // The default media port ranges then collide too, but that is not reported twice.
    let e = one_error(&NODE.replace("udp:127.0.20.2:5060", "udp:127.0.10.2:5060"));
    assert_eq!(e.field, "realm.interconnect.listen[0]");
    assert_eq!(e.kind, Kind::Conflict);
    assert!(e.message.contains("realm.home.listen[0]"), "{}", e.message);
}

#[test]
fn media_settings_and_port_ranges() {
    let text = format!(
        "{NODE}\n[media]\nkernel = true\nlatching = \"strict\"\ninactivity_timeout_s = 30\n"
    );
    let c = parse_with(&text, &files(&[])).unwrap();
    assert!(c.media.kernel && c.media.strict_latching);
    assert_eq!(c.media.inactivity_timeout.as_secs(), 30);
    assert_eq!(c.realms[0].media_ports, crate::config::DEFAULT_MEDIA_PORTS);
    assert_eq!(c.realms[0].media_address, c.realms[0].advertise);
    let bad = format!("{NODE}\n[media]\nkernel = \"yes\"\nlatching = \"loose\"\n");
    let errs = parse_with(&bad, &files(&[])).unwrap_err().0;
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(errs[0].field, "media.kernel");
    assert_eq!(errs[1].field, "media.latching");
    assert_eq!(kinds(&errs), [Kind::WrongType, Kind::BadValue]);
    let overlap = NODE.replace(
        "listen = [\"udp:127.0.20.2:5060\"]",
        "listen = [\"udp:127.0.20.2:5060\"]\nmedia_address = \"127.0.10.2\"\nmedia_ports = \"29000-30999\"",
    );
    let e = one_error(&overlap);
    assert_eq!(e.field, "realm.interconnect.media_ports");
    assert_eq!(e.kind, Kind::Conflict);
    assert!(e.message.contains("realm `home`"), "{}", e.message);
}

#[test]
fn wildcard_listen_needs_advertise() {
    let e = one_error(&NODE.replace("udp:127.0.20.2:5060", "udp:0.0.0.0:5070"));
    assert_eq!(e.field, "realm.interconnect.listen[0]");
    assert_eq!(e.kind, Kind::MissingField);
    assert!(e.message.contains("advertise"));
    let ok = NODE.replace(
        "listen = [\"udp:127.0.20.2:5060\"]",
        "listen = [\"udp:0.0.0.0:5070\"]\nadvertise = \"192.0.2.7\"",
    );
    let c = parse_with(&ok, &files(&[])).unwrap();
    assert_eq!(
        c.realm("interconnect").unwrap().advertise.to_string(),
        "192.0.2.7"
    );
}

#[test]
fn empty_listen() {
    let e = one_error(&NODE.replace("listen = [\"udp:127.0.20.2:5060\"]", "listen = []"));
    assert_eq!(e.field, "realm.interconnect.listen");
    assert_eq!(e.kind, Kind::BadValue);
}

#[test]
fn sip_timers() {
    let text = "[sip]\nt1_ms = 0\nt2_ms = 100\nt4_ms = 5000\n";
    let e = errors(&NODE.replace(
        "\n[[realm]]\nname = \"home\"",
        &format!("\n{text}\n[[realm]]\nname = \"home\""),
    ));
    assert_eq!(e.len(), 1, "{}", ConfigErrors(e.clone()));
    assert_eq!(e[0].field, "sip.t1_ms");
    assert_eq!(e[0].kind, Kind::BadValue);
    assert_eq!(e[0].message, "must be greater than 0");

    let e = errors(&NODE.replace(
        "\n[[realm]]\nname = \"home\"",
        "\n[sip]\nt2_ms = 100\n\n[[realm]]\nname = \"home\"",
    ));
    assert_eq!(e.len(), 1, "{}", ConfigErrors(e.clone()));
    assert_eq!(e[0].field, "sip.t2_ms");
    assert_eq!(e[0].kind, Kind::Conflict);
    assert!(e[0].message.contains("t2 (100 ms)"));
}

#[test]
fn peer_file_unreadable() {
    let e = one_error(&NODE.replace("peers/b.toml", "peers/c.toml"));
    assert_eq!(e.file, PathBuf::from("/etc/palisade/node.toml"));
    assert_eq!(e.field, "realm.interconnect.peers[0]");
    assert_eq!(e.kind, Kind::Io);
    assert_eq!((e.line, e.column), (14, 10));
    assert!(
        e.message.contains("/etc/palisade/peers/c.toml"),
        "{}",
        e.message
    );
}

#[test]
fn error_in_peer_file_names_it() {
    let bad = PEER_B.replace("udp:127.0.30.2:5060", "udp:127.0.30.2") + "realm = \"other\"\n";
    let f = files(&[("/etc/palisade/peers/b.toml", &bad)]);
    let e = parse_with(NODE, &f).unwrap_err().0;
    assert_eq!(e.len(), 2, "{}", ConfigErrors(e.clone()));
    assert!(e
        .iter()
        .all(|e| e.file == Path::new("/etc/palisade/peers/b.toml")));
    assert_eq!((e[0].field.as_str(), e[0].line), ("next_hop", 4));
    assert_eq!((e[1].field.as_str(), e[1].line), ("realm", 5));
    assert_eq!(kinds(&e), [Kind::BadValue, Kind::Conflict]);
}

#[test]
fn inline_peers_and_conflicts() {
    let text = format!(
        "{NODE}\n[[realm.peer]]\nname = \"operator-b\"\ndomains = [\"Operator-A.example\", \"operator-b.example\"]\nsources = [\"127.0.10.1\", \"127.0.30.2\"]\nnext_hop = \"udp:127.0.30.9:5060\"\n"
    );
    let e = errors(&text);
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "realm.interconnect.peer[0].name",
            "realm.interconnect.peer.operator-b.domains[0]",
            "realm.interconnect.peer.operator-b.domains[1]",
            "realm.interconnect.peer.operator-b.sources[0]",
            "realm.interconnect.peer.operator-b.sources[1]",
        ],
        "{}",
        ConfigErrors(e.clone())
    );
    assert_eq!(
        kinds(&e),
        [
            Kind::Duplicate,
            Kind::Conflict,
            Kind::Duplicate,
            Kind::Conflict,
            Kind::Duplicate
        ]
    );
    assert!(e[0].message.contains("/etc/palisade/peers/b.toml"));
    assert!(e[1].message.contains("home_domains"));
    assert!(e[2].message.contains("peer `operator-b`"));
    assert!(e[3].message.contains("realm.home"), "{}", e[3].message);
    assert!(e[4].message.contains("peer `operator-b`"));
}

#[test]
fn all_errors_reported_together() {
    let text = NODE
        .replace(
            "name = \"palisade-a\"",
            "name = \"palisade-a\"\ncolour = \"blue\"",
        )
        .replace("kind = \"peer\"", "kind = \"border\"")
        .replace("udp:127.0.10.1:5060", "udp:127.0.10.1");
    let e = errors(&text);
    let got: Vec<(usize, &str)> = e.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        [
            (2, "colour"),
            (9, "realm.home.core"),
            (13, "realm.interconnect.kind")
        ],
        "{}",
        ConfigErrors(e.clone())
    );
    assert_eq!(
        kinds(&e),
        [Kind::UnknownKey, Kind::BadValue, Kind::BadValue]
    );
    let shown = ConfigErrors(e).to_string();
    assert_eq!(shown.lines().count(), 3);
    assert!(shown.starts_with("/etc/palisade/node.toml:2:1: colour: unknown key"));
}

#[test]
fn describe_round_trips() {
    let c = parse_with(NODE, &files(&[])).unwrap();
    let text = c.describe();
    assert!(text.contains("t1_ms = 500"));
    assert!(text.contains("\"udp:127.0.10.2:5060\""));
    let mut again = parse_with(&text, &HashMap::new()).unwrap();
    for p in again.realms.iter_mut().flat_map(|r| r.peers.iter_mut()) {
        p.origin = PathBuf::from("/etc/palisade/peers/b.toml");
    }
    assert_eq!(again, c);
}

#[test]
fn refer_policy_is_read_printed_and_checked() {
    let refuse = PEER_B.to_string() + "refer = \"refuse\"\n";
    let c = parse_with(NODE, &files(&[("/etc/palisade/peers/b.toml", &refuse)])).unwrap();
    assert_eq!(c.realms[1].peers[0].refer, ReferPolicy::Refuse);
    assert!(c.describe().contains("refer = \"refuse\""));
    let terminate = PEER_B.to_string() + "refer = \"terminate\"\n";
    let c = parse_with(NODE, &files(&[("/etc/palisade/peers/b.toml", &terminate)])).unwrap();
    assert_eq!(c.realms[1].peers[0].refer, ReferPolicy::Terminate);
    assert!(c.describe().contains("refer = \"terminate\""));
    let bad = PEER_B.to_string() + "refer = \"transfer\"\n";
    let e = parse_with(NODE, &files(&[("/etc/palisade/peers/b.toml", &bad)]))
        .unwrap_err()
        .0;
    assert_eq!(e.len(), 1, "{}", ConfigErrors(e.clone()));
    assert_eq!(e[0].file, PathBuf::from("/etc/palisade/peers/b.toml"));
    assert_eq!((e[0].field.as_str(), e[0].line), ("refer", 5));
    assert_eq!(e[0].kind, Kind::BadValue);
    assert!(
        e[0].message
            .contains("\"relay\", \"refuse\" or \"terminate\""),
        "{}",
        e[0].message
    );
}

#[test]
fn embedded_default_parses() {
    let c = parse(EMBEDDED_DEFAULT, Path::new("<built-in>"), &|_| {
        Err(std::io::Error::other("no files"))
    })
    .unwrap();
    assert_eq!(c.name, "palisade-a");
    assert_eq!(c.realm("interconnect").unwrap().peers[0].name, "operator-b");
}

#[test]
fn syntax_error_in_peer_file_names_it() {
    let f = files(&[(
        "/etc/palisade/peers/b.toml",
        "name = \"operator-b\"\ndomains = [\n",
    )]);
    let e = parse_with(NODE, &f).unwrap_err().0;
    assert_eq!(e.len(), 1, "{}", ConfigErrors(e.clone()));
    assert_eq!(e[0].file, PathBuf::from("/etc/palisade/peers/b.toml"));
    assert_eq!(e[0].field, "(syntax)");
    assert_eq!(e[0].kind, Kind::Syntax);
}

#[test]
fn wrong_element_type_and_bad_values() {
    let bad = PEER_B
        .replace("[\"127.0.30.2\"]", "[\"127.0.30.2\", 5, \"host.example\"]")
        .replace(
            "name = \"operator-b\"",
            "name = \"operator-b\"\ntrust = \"yes\"\nmax_calls = 0\nallowed_methods = [\"invite\"]",
        );
    let f = files(&[("/etc/palisade/peers/b.toml", &bad)]);
    let e = parse_with(NODE, &f).unwrap_err().0;
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "trust",
            "max_calls",
            "allowed_methods[0]",
            "sources[1]",
            "sources[2]"
        ],
        "{}",
        ConfigErrors(e.clone())
    );
    assert_eq!(
        kinds(&e),
        [
            Kind::BadValue,
            Kind::BadValue,
            Kind::BadValue,
            Kind::WrongType,
            Kind::BadValue
        ]
    );
    assert!(e[3].message.contains("expected a string, found an integer"));
    assert!(e[4].message.contains("`host.example`"), "{}", e[4].message);
}

#[test]
fn inline_peer_realm_mismatch() {
    let text = NODE.replace("peers = [\"peers/b.toml\"]\n", "")
        + "[[realm.peer]]\nname = \"c\"\nrealm = \"home\"\ndomains = [\"c.example\"]\nsources = [\"192.0.2.3\"]\nnext_hop = \"tcp:[2001:db8::3]:5061\"\n";
    let e = one_error(&text);
    assert_eq!(e.field, "realm.interconnect.peer.c.realm");
    assert_eq!(e.kind, Kind::Conflict);
    assert_eq!(e.line, 16);
    let ok = text.replace("realm = \"home\"\n", "");
    let c = parse_with(&ok, &HashMap::new()).unwrap();
    let p = &c.realm("interconnect").unwrap().peers[0];
    assert_eq!(p.next_hop.to_string(), "tcp:[2001:db8::3]:5061");
    assert_eq!(p.origin, PathBuf::from("/etc/palisade/node.toml"));
}

const CERT_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBTDCB8qADAgECAhQ=\n-----END CERTIFICATE-----\n";
const KEY_PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgE=\n-----END PRIVATE KEY-----\n";

#[test]
fn tls_listener_needs_the_realms_certificate() {
    let text = NODE.replace(
        "listen = [\"udp:127.0.20.2:5060\"]",
        "listen = [\"tls:127.0.20.2:5061\"]",
    );
    let e = one_error(&text);
    assert_eq!(e.kind, Kind::MissingField);
    assert_eq!(e.field, "realm.interconnect.listen[0]");
    assert!(e.message.contains("tls = {"), "{e}");
}

#[test]
fn tls_partner_policy_is_read_and_checked() {
    let node = NODE.replace(
        "listen = [\"udp:127.0.20.2:5060\"]",
        "listen = [\"tls:127.0.20.2:5061\"]\ntls = { certificate = \"tls/a.crt\", key = \"tls/a.key\" }",
    );
    let peer =
        "name = \"operator-b\"\ndomains = [\"operator-b.example\"]\nsources = [\"127.0.30.2\"]\n\
                next_hop = \"tls:127.0.30.2:5061\"\n\n[tls]\nca = \"../tls/ca.crt\"\n";
    let fs = files(&[
        ("/etc/palisade/peers/b.toml", peer),
        ("/etc/palisade/tls/a.crt", CERT_PEM),
        ("/etc/palisade/tls/a.key", KEY_PEM),
        ("/etc/palisade/tls/ca.crt", CERT_PEM),
    ]);
    let cfg = parse_with(&node, &fs).expect("valid");
    let r = &cfg.realms[1];
    assert_eq!(
        r.tls.as_ref().unwrap().certificate.path,
        PathBuf::from("/etc/palisade/tls/a.crt")
    );
    let t = r.peers[0].tls.as_ref().expect("partner tls");
    // The CA path is relative to the peer file; identities default to its domains.
    assert_eq!(
        t.ca.as_ref().unwrap().path,
        PathBuf::from("/etc/palisade/tls/ca.crt")
    );
    assert_eq!(t.identities, vec!["operator-b.example".to_string()]);

    // A bad fingerprint, a plain next hop for a TLS partner, a CA file without a certificate.
    let bad = peer
        .replace("tls:127.0.30.2:5061", "udp:127.0.30.2:5060")
        .replace(
            "ca = \"../tls/ca.crt\"",
            "ca = \"../tls/a.key\"\nfingerprints = [\"AB:CD\"]",
        );
    let fs = files(&[
        ("/etc/palisade/peers/b.toml", bad.as_str()),
        ("/etc/palisade/tls/a.crt", CERT_PEM),
        ("/etc/palisade/tls/a.key", KEY_PEM),
    ]);
    let e = parse_with(&node, &fs).expect_err("invalid").0;
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert!(
        fields.contains(&"tls.fingerprints[0]"),
        "{}",
        ConfigErrors(e.clone())
    );
    assert!(fields.contains(&"tls.ca"), "{}", ConfigErrors(e.clone()));
    assert!(fields.contains(&"next_hop"), "{}", ConfigErrors(e.clone()));
    assert!(e
        .iter()
        .all(|e| e.file == Path::new("/etc/palisade/peers/b.toml")));
}

#[test]
fn tls_partner_without_trust_is_an_error() {
    let peer =
        "name = \"operator-b\"\ndomains = [\"operator-b.example\"]\nsources = [\"127.0.30.2\"]\n\
                next_hop = \"tls:127.0.30.2:5061\"\n";
    let e = parse_with(NODE, &files(&[("/etc/palisade/peers/b.toml", peer)]))
        .expect_err("invalid")
        .0;
    assert!(
        e.iter()
            .any(|e| e.field == "next_hop" && e.message.contains("[tls]")),
        "{}",
        ConfigErrors(e.clone())
    );
}

#[test]
fn ng_is_off_by_default_and_checked_against_the_realms() {
    let c = parse_with(NODE, &files(&[])).unwrap();
    assert_eq!(c.ng.listen, None);
    let on = format!("{NODE}\n[ng]\ndirections = {{ internal = \"home\" }}\n");
    let c = parse_with(&on, &files(&[])).unwrap();
    assert_eq!(c.ng.listen, Some(SocketAddr::from(DEFAULT_NG_LISTEN)));
    assert_eq!(
        c.ng.directions,
        [("internal".to_string(), "home".to_string())]
    );
    let e = one_error(&format!("{NODE}\n[ng]\ndirections = {{ x = \"mars\" }}\n"));
    assert_eq!(
        (e.field.as_str(), e.kind),
        ("ng.directions.x", Kind::BadValue)
    );
    assert!(e.message.contains("`mars` is not a realm"), "{}", e.message);
    let e = one_error(&format!("{NODE}\n[ng]\nlisten = \"192.0.2.1:22223\"\n"));
    assert_eq!((e.field.as_str(), e.kind), ("ng.listen", Kind::Conflict));
    let ok = format!("{NODE}\n[ng]\nlisten = \"192.0.2.1:22223\"\nsources = [\"192.0.2.9\"]\n");
    assert!(parse_with(&ok, &files(&[])).is_ok());
    let e = one_error(&format!("{NODE}\n[ng]\ndefault_direction = [\"home\"]\n"));
    assert_eq!(e.field, "ng.default_direction");
}
