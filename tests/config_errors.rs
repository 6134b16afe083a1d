//! The shipped configuration files load and agree with each other, and broken files are reported
//! with the right file, line and field.

use palisade::config::{
    self, Config, ConfigError, ConfigErrorKind as Kind, Listen, RealmKind, Transport, Trust,
};
use std::path::{Path, PathBuf};

fn lab(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies/lab")
        .join(name)
}

fn load_lab(name: &str) -> Config {
    config::load(&lab(name)).unwrap_or_else(|e| panic!("{name} does not load:\n{e}"))
}

fn listen(c: &Config, realm: &str, transport: Transport) -> Listen {
    c.realm(realm)
        .unwrap()
        .listen
        .iter()
        .find(|l| l.transport == transport)
        .cloned()
        .unwrap()
}

#[test]
fn lab_files_load_and_face_each_other() {
    let a = load_lab("operator-a.toml");
    let b = load_lab("operator-b.toml");
    assert_eq!(a.name, "palisade-a");
    assert_eq!(b.name, "palisade-b");

    for (me, other) in [(&a, &b), (&b, &a)] {
        let ic = me.realm("interconnect").unwrap();
        assert_eq!(ic.kind, RealmKind::Peer);
        assert_eq!(ic.peers.len(), 1);
        let partner = &ic.peers[0];
        assert_eq!(partner.trust, Trust::Trusted);
        // The partner's domains are the other operator's home domains.
        assert_eq!(partner.domains, other.home_domains);
        assert_eq!(partner.ioi, other.ioi);
        // Our next hop is the other border's interconnect listener...
        let theirs = listen(other, "interconnect", partner.next_hop.transport);
        assert_eq!(partner.next_hop.addr, theirs.addr);
        // ...and it sends to us from its advertised interconnect address.
        let their_ic = other.realm("interconnect").unwrap();
        assert_eq!(partner.sources, vec![their_ic.advertise]);
        // Home side: the core is local and distinct from everything on the interconnect.
        let home = me.home();
        // The core, and 127.0.0.1 for lab clients whose sockets are not bound to the core
        // address (a UA on 0.0.0.0, unbound TCP connections).
        assert_eq!(
            home.core_sources,
            vec![
                home.core.as_ref().unwrap().addr.ip(),
                "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
            ]
        );
        assert!(home.listen.iter().all(|l| l.addr.port() == 5060));
    }
    // The two labs use disjoint addresses, so both borders run on one host.
    for ra in &a.realms {
        for rb in &b.realms {
            for la in &ra.listen {
                assert!(!rb.listen.contains(la), "{la} used by both labs");
            }
        }
    }
}

#[test]
fn embedded_default_is_lab_a_with_inline_partner() {
    let d = config::parse(config::EMBEDDED_DEFAULT, Path::new("<built-in>"), &|p| {
        Err(std::io::Error::other(format!(
            "the built-in configuration cannot read {}",
            p.display()
        )))
    })
    .unwrap_or_else(|e| panic!("embedded default does not parse:\n{e}"));
    // The lab with its interconnect made plain: the built-in file cannot name certificates.
    let mut a = load_lab("operator-a.toml").plain_udp();
    for p in a.realms.iter_mut().flat_map(|r| r.peers.iter_mut()) {
        p.origin = PathBuf::from("<built-in>");
    }
    let mut d = d;
    // The built-in file also listens on TCP on the interconnect.
    for r in &mut d.realms {
        if r.kind == config::RealmKind::Peer {
            r.listen.retain(|l| l.transport == config::Transport::Udp);
        }
    }
    assert_eq!(d, a);
}

#[test]
fn describe_shows_defaults_and_parses_back() {
    let a = load_lab("operator-a.toml");
    let text = a.describe();
    for needle in [
        "name = \"palisade-a\"",
        "ioi = \"operator-a.example\"",
        "timer_c_s = 180",
        "listen = [\"udp:127.0.10.2:5060\", \"tcp:127.0.10.2:5060\"]",
        "next_hop = \"tls:127.0.30.2:5061\"",
        "fingerprints = [\"SHA256:",
        "max_calls = 1000",
        "\"P-Charging-Vector\", \"P-Early-Media\"",
        "# from ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // The certificate files named (by absolute path) are read again.
    let again = config::parse(&text, &lab("operator-a.toml"), &|p| {
        std::fs::read_to_string(p)
    })
    .unwrap();
    let mut a2 = a.clone();
    for p in a2.realms.iter_mut().flat_map(|r| r.peers.iter_mut()) {
        p.origin = lab("operator-a.toml");
    }
    assert_eq!(again, a2);
}

/// A directory of files for one test, under the system temp dir.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str, files: &[(&str, &str)]) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("palisade-config-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Dir(dir)
    }

    fn load(&self, name: &str) -> Vec<ConfigError> {
        match config::load(&self.0.join(name)) {
            Ok(_) => panic!("{name} should not load"),
            Err(e) => {
                eprintln!("{e}");
                e.0
            }
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const NODE: &str = r#"name = "border"
home_domains = ["home.example"]

[[realm]]
name = "home"
kind = "home"
listen = ["udp:192.0.2.1:5060"]
core = "udp:192.0.2.10:5060"

[[realm]]
name = "interconnect"
kind = "peer"
listen = ["udp:198.51.100.1:5060", "tcp:198.51.100.1:5060"]
peers = ["peers/far.toml"]
"#;

const FAR: &str = r#"name = "far"
domains = ["far.example"]
sources = ["203.0.113.5"]
next_hop = "udp:203.0.113.5:5060"
trust = "untrusted"
"#;

/// (file name, line, column, field) of each error.
fn summary(errors: &[ConfigError]) -> Vec<(String, usize, usize, String)> {
    errors
        .iter()
        .map(|e| {
            (
                e.file.file_name().unwrap().to_string_lossy().into_owned(),
                e.line,
                e.column,
                e.field.clone(),
            )
        })
        .collect()
}

fn kinds(errors: &[ConfigError]) -> Vec<Kind> {
    errors.iter().map(|e| e.kind).collect()
}

#[test]
fn good_base_loads() {
    let d = Dir::new("good", &[("node.toml", NODE), ("peers/far.toml", FAR)]);
    let c = config::load(&d.0.join("node.toml")).unwrap();
    let far = &c.realm("interconnect").unwrap().peers[0];
    assert_eq!(far.origin, d.0.join("peers/far.toml"));
    assert_eq!(far.trust, Trust::Untrusted);
}

#[test]
fn missing_node_file() {
    let d = Dir::new("missing-node", &[]);
    let e = d.load("nowhere.toml");
    assert_eq!(e.len(), 1);
    assert!(e[0].file.ends_with("nowhere.toml"));
    assert_eq!(e[0].kind, Kind::Io);
    assert!(e[0].message.contains("cannot read"));
}

#[test]
fn syntax_error() {
    let bad = NODE.replace("kind = \"home\"", "kind = home");
    let d = Dir::new("syntax", &[("node.toml", &bad), ("peers/far.toml", FAR)]);
    let e = d.load("node.toml");
    assert_eq!(summary(&e), [("node.toml".into(), 6, 8, "(syntax)".into())]);
    assert_eq!(kinds(&e), [Kind::Syntax]);
}

#[test]
fn unreadable_peer_file_names_reference_and_path() {
    let d = Dir::new("unreadable", &[("node.toml", NODE)]);
    let e = d.load("node.toml");
    assert_eq!(
        summary(&e),
        [(
            "node.toml".into(),
            14,
            10,
            "realm.interconnect.peers[0]".into()
        )]
    );
    assert_eq!(kinds(&e), [Kind::Io]);
    let wanted = d.0.join("peers/far.toml");
    assert!(
        e[0].message.contains(&wanted.display().to_string()),
        "{}",
        e[0].message
    );
}

#[test]
fn error_inside_peer_file_names_peer_file() {
    let far = FAR
        .replace("trust = \"untrusted\"", "trust = \"maybe\"")
        .replace("name = \"far\"", "name = \"far\"\nrealm = \"home\"");
    let d = Dir::new("in-peer", &[("node.toml", NODE), ("peers/far.toml", &far)]);
    let e = d.load("node.toml");
    assert_eq!(
        summary(&e),
        [
            ("far.toml".into(), 2, 9, "realm".into()),
            ("far.toml".into(), 6, 9, "trust".into()),
        ]
    );
    assert_eq!(kinds(&e), [Kind::Conflict, Kind::BadValue]);
    assert!(e[0].message.contains("interconnect"));
    assert!(e[1].message.contains("\"trusted\" or \"untrusted\""));
}

#[test]
fn three_errors_in_one_file_all_reported() {
    // An unknown key, a listen without transport, a peer realm with a home-only key.
    let bad = NODE
        .replace("name = \"border\"", "name = \"border\"\nmax_call = 5")
        .replace("udp:192.0.2.1:5060", "192.0.2.1:5060")
        .replace(
            "kind = \"peer\"",
            "kind = \"peer\"\ncore_sources = [\"192.0.2.10\"]",
        );
    let d = Dir::new("three", &[("node.toml", &bad), ("peers/far.toml", FAR)]);
    let e = d.load("node.toml");
    assert_eq!(
        summary(&e),
        [
            ("node.toml".into(), 2, 1, "max_call".into()),
            ("node.toml".into(), 8, 11, "realm.home.listen[0]".into()),
            (
                "node.toml".into(),
                14,
                1,
                "realm.interconnect.core_sources".into()
            ),
        ]
    );
    assert_eq!(
        kinds(&e),
        [Kind::UnknownKey, Kind::BadValue, Kind::Misplaced]
    );
    assert!(e[0].message.contains("`max_call`"));
    assert!(e[0].message.contains("allowed: name, home_domains"));
    assert!(e[1].message.contains("missing transport"));
    assert!(e[1].message.contains("expected transport:ip:port"));
    assert!(e[2].message.contains("home realm"));
    // Display: one `file:line:col: field: message` per error.
    let shown = config::ConfigErrors(e).to_string();
    assert_eq!(shown.lines().count(), 3);
    for line in shown.lines() {
        assert!(line.contains("node.toml:"), "{line}");
    }
}

#[test]
fn conflicts_between_peers_point_at_the_later_file() {
    let near = r#"name = "near"
domains = ["far.example", "home.example"]
sources = ["192.0.2.10"]
next_hop = "udp:203.0.113.9:5060"
"#;
    let node = NODE.replace(
        "peers = [\"peers/far.toml\"]",
        "peers = [\"peers/far.toml\", \"peers/near.toml\", \"peers/far.toml\"]",
    );
    let d = Dir::new(
        "conflicts",
        &[
            ("node.toml", &node),
            ("peers/far.toml", FAR),
            ("peers/near.toml", near),
        ],
    );
    let e = d.load("node.toml");
    assert_eq!(
        summary(&e),
        [
            // far.toml named twice
            (
                "node.toml".into(),
                14,
                47,
                "realm.interconnect.peers[2]".into()
            ),
            ("near.toml".into(), 2, 12, "domains[0]".into()),
            ("near.toml".into(), 2, 27, "domains[1]".into()),
            ("near.toml".into(), 3, 12, "sources[0]".into()),
        ]
    );
    assert_eq!(
        kinds(&e),
        [
            Kind::Duplicate,
            Kind::Duplicate,
            Kind::Conflict,
            Kind::Conflict
        ]
    );
    assert!(e[0].message.contains("realm.interconnect.peers[0]"));
    assert!(e[1].message.contains("peer `far`"));
    assert!(e[2].message.contains("home_domains"));
    assert!(
        e[3].message.contains("(realm.home.core)"),
        "{}",
        e[3].message
    );
}

#[test]
fn realm_structure_errors() {
    // Two realms on one socket, duplicate realm name, bad timer ordering.
    let bad = NODE
        .replace("name = \"interconnect\"", "name = \"home\"")
        .replace("udp:198.51.100.1:5060", "udp:192.0.2.1:5060")
        .replace(
            "\n[[realm]]\nname = \"home\"\nkind = \"home\"",
            "\n[sip]\nt1_ms = 1000\nt2_ms = 500\n\n[[realm]]\nname = \"home\"\nkind = \"home\"",
        );
    let d = Dir::new("structure", &[("node.toml", &bad), ("peers/far.toml", FAR)]);
    let e = d.load("node.toml");
    let s = summary(&e);
    let fields: Vec<&str> = s.iter().map(|x| x.3.as_str()).collect();
    assert_eq!(fields, ["sip.t2_ms", "realm[1].name", "realm[1].listen[0]"]);
    assert_eq!(kinds(&e), [Kind::Conflict, Kind::Duplicate, Kind::Conflict]);
    assert_eq!(s[2].1, 17);
    assert!(e[2].message.contains("of realm.home.listen[0]"));
}

#[test]
fn example_files_load() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/example/border.toml");
    let c = config::load(&path).unwrap_or_else(|e| panic!("example does not load:\n{e}"));
    let home = c.home();
    assert_eq!(home.core_sources.len(), 2);
    assert_eq!(home.headers.allow.len(), 31);
    let c_peer = &c.realm("interconnect").unwrap().peers[0];
    assert_eq!(c_peer.name, "operator-c");
    assert_eq!(c_peer.trust, Trust::Untrusted);
    assert_eq!(c_peer.allowed_methods.len(), 12);
    assert_eq!(c_peer.headers.allow.len(), 18);
    assert_eq!(c.sip, config::SipSettings::default());
}

#[test]
fn service_and_admin_keys_default_and_validate() {
    let d = Dir::new("svc-good", &[("node.toml", NODE), ("peers/far.toml", FAR)]);
    let c = config::load(&d.0.join("node.toml")).unwrap();
    assert_eq!(c.service.drain_timeout, std::time::Duration::from_secs(30));
    assert!(c.admin.enabled);
    assert_eq!(c.admin.listen, "127.0.0.1:9101".parse().unwrap());
    assert_eq!(c.admin.token, None);

    let bad = NODE.replace(
        "[[realm]]\nname = \"home\"",
        "[service]\ndrain_timeout_s = \"soon\"\n\n[admin]\nlisten = \"0.0.0.0:9101\"\nbogus = 1\n\n[[realm]]\nname = \"home\"",
    );
    let d = Dir::new("svc-bad", &[("node.toml", &bad), ("peers/far.toml", FAR)]);
    let e = d.load("node.toml");
    assert_eq!(
        summary(&e),
        vec![
            ("node.toml".into(), 5, 19, "service.drain_timeout_s".into()),
            ("node.toml".into(), 8, 10, "admin.listen".into()),
            ("node.toml".into(), 9, 1, "admin.bogus".into()),
        ]
    );
    assert_eq!(
        kinds(&e),
        vec![Kind::WrongType, Kind::Conflict, Kind::UnknownKey]
    );
    assert!(e[1].message.contains("token"));

    // With a token, a non-loopback admin address is accepted.
    let ok = NODE.replace(
        "[[realm]]\nname = \"home\"",
        "[admin]\nlisten = \"0.0.0.0:9101\"\ntoken = \"0123456789abcdef\"\n\n[[realm]]\nname = \"home\"",
    );
    let d = Dir::new("svc-token", &[("node.toml", &ok), ("peers/far.toml", FAR)]);
    let c = config::load(&d.0.join("node.toml")).unwrap();
    assert_eq!(c.admin.token.as_deref(), Some("0123456789abcdef"));
    assert!(
        !c.describe().contains("0123456789abcdef"),
        "token not printed"
    );
}

#[test]
fn enum_lab_loads_and_describes_back() {
    let a = load_lab("operator-a-enum.toml");
    assert_eq!(a.dns.servers, ["127.0.53.53:53".parse().unwrap()]);
    assert_eq!(a.dns.timeout, std::time::Duration::from_millis(1000));
    assert_eq!(a.dns.hold_down, std::time::Duration::from_secs(30));
    let e = a.enum_routing.as_ref().expect("[enum] is configured");
    assert_eq!(e.suffixes, ["e164.arpa"]);
    assert_eq!((e.fallback.as_deref(), e.no_record_status), (None, 404));
    let b = &a.realm("interconnect").unwrap().peers[0];
    assert_eq!(b.dns.route, config::PeerRoute::Dns);
    assert_eq!(b.dns.transports, [Transport::Tls]);
    assert!(
        b.tls.is_some(),
        "B proves itself by certificate, as in operator-a.toml"
    );
    // Same addresses as the static lab instance.
    let plain = load_lab("operator-a.toml");
    for (x, y) in a.realms.iter().zip(&plain.realms) {
        assert_eq!(x.listen, y.listen);
        assert_eq!(x.advertise, y.advertise);
    }
    let text = a.describe();
    for needle in [
        "[dns]\nservers = [\"127.0.53.53:53\"]\ntimeout_ms = 1000\nattempts = 2\n",
        "[enum]\nservers = []\nsuffixes = [\"e164.arpa\"]\nno_record_status = 404\n",
        "route = \"dns\"\ntransports = [\"tls\"]\n",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // The certificate files named (by absolute path) are read again.
    let again = config::parse(&text, &lab("operator-a-enum.toml"), &|p| {
        std::fs::read_to_string(p)
    })
    .unwrap();
    let mut a2 = a.clone();
    for p in a2.realms.iter_mut().flat_map(|r| r.peers.iter_mut()) {
        p.origin = lab("operator-a-enum.toml");
    }
    assert_eq!(again, a2);
}

#[test]
fn dns_and_enum_errors_name_file_line_field() {
    let node = NODE.replace(
        "home_domains = [\"home.example\"]\n",
        "home_domains = [\"home.example\"]\n\n[dns]\nservers = [\"127.0.53.53:53\", \"nope\"]\n\
         timeout_ms = 0\nhold_down_s = \"30\"\n\n[enum]\nsuffixes = [\"e164.arpa\"]\n\
         fallback = \"nobody\"\nno_record_status = 500\n",
    )
    .replace(
        "core = \"udp:192.0.2.10:5060\"\n",
        "core = \"udp:192.0.2.10:5060\"\ndns_servers = [\"127.0.0.1:53\"]\n",
    )
    .replace(
        "peers = [\"peers/far.toml\"]\n",
        "peers = [\"peers/far.toml\"]\ndns_servers = [\"nope\"]\n",
    );
    let far = format!("{FAR}route = \"dnss\"\ntransports = [\"udp\", \"sctp\", \"udp\"]\n");
    let d = Dir::new(
        "dns-enum",
        &[("node.toml", &node), ("peers/far.toml", &far)],
    );
    let mut e = d.load("node.toml");
    // node.toml, then peers/far.toml.
    e.sort_by_key(|e| (e.file.clone(), e.line, e.column));
    let got: Vec<(String, usize, String, Kind)> = e
        .iter()
        .map(|e| {
            (
                e.file.file_name().unwrap().to_string_lossy().into_owned(),
                e.line,
                e.field.clone(),
                e.kind,
            )
        })
        .collect();
    let want: Vec<(String, usize, String, Kind)> = [
        ("node.toml", 5, "dns.servers[1]", Kind::BadValue),
        ("node.toml", 6, "dns.timeout_ms", Kind::BadValue),
        ("node.toml", 7, "dns.hold_down_s", Kind::WrongType),
        ("node.toml", 11, "enum.fallback", Kind::BadValue),
        ("node.toml", 12, "enum.no_record_status", Kind::BadValue),
        ("node.toml", 19, "realm.home.dns_servers", Kind::Misplaced),
        (
            "node.toml",
            26,
            "realm.interconnect.dns_servers[0]",
            Kind::BadValue,
        ),
        ("far.toml", 6, "route", Kind::BadValue),
        ("far.toml", 7, "transports[1]", Kind::BadValue),
        ("far.toml", 7, "transports[2]", Kind::Duplicate),
    ]
    .into_iter()
    .map(|(f, l, p, k)| (f.to_string(), l, p.to_string(), k))
    .collect();
    assert_eq!(got, want, "{}", config::ConfigErrors(e.clone()));
    let msg = |field: &str| e.iter().find(|e| e.field == field).unwrap().message.clone();
    assert!(msg("dns.servers[1]").contains("IP:PORT"));
    assert!(msg("enum.fallback").contains("not the name of a configured peer"));
    assert!(msg("enum.no_record_status").contains("404 or 604"));
    assert!(msg("transports[1]").contains("\"udp\", \"tcp\" or \"tls\""));
}
