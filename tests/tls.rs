//! TLS peering, end to end on the real binary and an independent TLS stack (`openssl
//! s_client`) as the partner:
//! - `handshakes`: operator B's lab border (trusts A by the lab CA plus the identity
//!   `operator-a.example`) and a copy of A's (pins B's certificate; its interconnect also has
//!   plain UDP/TCP listeners and a plain partner C at 127.0.50.2). With A's certificate, from an
//!   address that is not A's, s_client gets a SIP answer (identity, not address); each of
//!   unknown CA, wrong SAN, expired, no client certificate, and (toward A) a certificate that is
//!   not the pinned one, sent from B's own address (another party's valid certificate) gets no
//!   SIP at all and exactly one log line naming its reason, counted in
//!   `palisade_tls_handshake_failures_total`. Plain UDP and TCP from B's address (B is
//!   TLS-only) get nothing, while partner C gets its answer on the same listeners.
//! - `rotation`: both lab borders from a copy; a call crosses; A's certificate and key are
//!   replaced (same CA) and A gets SIGHUP; a new connection to A (s_client) is shown the new
//!   certificate, while the call goes on over the established connection: a re-INVITE and
//!   the BYE from B are answered end to end.
//!
//! harness = false: `cargo test --test tls [-- NAME...]`. Needs openssl (skipped without it;
//! a failure under PALISADE_REQUIRE_ROOT_TESTS=1). No timing assertions: every wait is bounded.

mod common;

use common::harness::{self, ensure, Tally};
use common::instance::{self, signal, Instance};
use common::ua::{sdp, Ua, UaConfig, R};
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GLOBAL_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const WAIT: Duration = Duration::from_secs(10);
const A_TLS: &str = "127.0.20.2:5061";
const B_TLS: &str = "127.0.30.2:5061";
const B_ADMIN: &str = "127.0.0.1:9102";

fn work_dir() -> PathBuf {
    instance::work_dir("tls")
}

fn palisade(args: &[&str]) -> R<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .output()
        .map_err(|e| format!("run palisade: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "palisade {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A key and certificate `dir/name.{key,crt}` for `domain`; `extra` are more `cert new` flags.
fn make_cert(dir: &Path, name: &str, domain: &str, extra: &[&str]) -> R<CertFiles> {
    let prefix = dir.join(name);
    let p = prefix.display().to_string();
    let mut args = vec!["cert", "new", "--domain", domain, "--out", p.as_str()];
    args.extend_from_slice(extra);
    palisade(&args)?;
    Ok((prefix.with_extension("crt"), prefix.with_extension("key")))
}

/// A certificate and its key.
type CertFiles = (PathBuf, PathBuf);

fn lab_ca() -> (String, String) {
    let tls = common::labfiles::shipped_dir().join("tls");
    (
        tls.join("lab-ca.crt").display().to_string(),
        tls.join("lab-ca.key").display().to_string(),
    )
}

fn options(to: &str, n: u32) -> String {
    format!(
        "OPTIONS sip:{to};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKtlsprobe{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@partner.example>;tag=probe{n}\r\n\
         To: <sip:{to}>\r\n\
         Call-ID: tls-probe-{n}@partner.example\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// `openssl s_client` to `dest` from `bind`, presenting `cert` if given; sends `msg` and returns
/// what it printed within a few seconds (the SIP answer, or nothing when refused).
fn s_client(dest: &str, bind: &str, cert: Option<&CertFiles>, msg: &str) -> R<String> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", dest, "-bind", bind, "-quiet"]);
    if let Some((c, k)) = cert {
        cmd.arg("-cert").arg(c).arg("-key").arg(k);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn openssl: {e}"))?;
    instance::register_child(child.id());
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let _ = stdin.write_all(msg.as_bytes());
    let _ = stdin.flush();
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    // An answer comes in milliseconds; a refusal ends the process. Either way, bounded.
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    let out = reader.join().unwrap_or_default();
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until the log holds `n` lines with both `what` and `reason`.
fn wait_log_lines(log: &Path, what: &str, reason: &str, n: usize) -> R<()> {
    let count = || {
        log_text(log)
            .lines()
            .filter(|l| l.contains(what) && l.contains(reason))
            .count()
    };
    let end = Instant::now() + WAIT;
    while count() < n && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    // A little longer: a second line for the same handshake would be a bug too.
    std::thread::sleep(Duration::from_millis(200));
    let got = count();
    ensure(got == n, || {
        format!(
            "{}: {got} line(s) with `{what}` and `{reason}`, expected {n}",
            log.display()
        )
    })
}

fn have_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A copy of the lab with A's interconnect also on plain UDP/TCP and a plain partner C.
fn lab_copy(to: &Path, plain_partner: bool) -> R<()> {
    common::labfiles::copy_dir(&common::labfiles::shipped_dir(), to, &|p, text| {
        if plain_partner && p.file_name().is_some_and(|n| n == "operator-a.toml") {
            text.replace(
                "listen = [\"tls:127.0.20.2:5061\"]",
                "listen = [\"tls:127.0.20.2:5061\", \"udp:127.0.20.2:5060\", \"tcp:127.0.20.2:5060\"]",
            )
            .replace(
                "peers = [\"operator-a/operator-b.toml\"]",
                "peers = [\"operator-a/operator-b.toml\"]\n\n\
                 [[realm.peer]]\n\
                 name = \"operator-c\"\n\
                 domains = [\"operator-c.example\"]\n\
                 sources = [\"127.0.50.2\"]\n\
                 next_hop = \"udp:127.0.50.2:5060\"\n",
            )
        } else {
            text
        }
    })
}

fn handshakes() -> R<()> {
    if !have_openssl() {
        return harness::skip("openssl not installed");
    }
    instance::wait_lab_free(Duration::from_secs(120))?;
    let dir = work_dir().join("handshakes");
    let _ = std::fs::remove_dir_all(&dir);
    lab_copy(&dir, true)?;
    let (a_log, b_log) = (dir.join("a.log"), dir.join("b.log"));
    let _a = Instance::start("operator-a", &dir.join("operator-a.toml"), a_log.clone())?;
    let _b = Instance::start("operator-b", &dir.join("operator-b.toml"), b_log.clone())?;
    let shipped = common::labfiles::shipped_dir().join("tls");
    let a_cert = (
        shipped.join("operator-a.crt"),
        shipped.join("operator-a.key"),
    );
    let b_cert = (
        shipped.join("operator-b.crt"),
        shipped.join("operator-b.key"),
    );
    let (ca, ca_key) = lab_ca();
    let by_ca = [
        "--issuer-cert",
        ca.as_str(),
        "--issuer-key",
        ca_key.as_str(),
    ];
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).map_err(|e| e.to_string())?;

    // Identity, not address: A's certificate from 127.0.0.1 (A sends from 127.0.20.2).
    let got = s_client(
        B_TLS,
        "127.0.0.1",
        Some(&a_cert),
        &options("127.0.30.2:5061", 1),
    )?;
    ensure(got.contains("SIP/2.0 200"), || {
        format!("A's certificate got no 200 from B: {got:?}")
    })?;
    let got = s_client(
        A_TLS,
        "127.0.30.2",
        Some(&b_cert),
        &options("127.0.20.2:5061", 2),
    )?;
    ensure(got.contains("SIP/2.0 200"), || {
        format!("B's pinned certificate got no 200 from A: {got:?}")
    })?;

    // Refused toward B, each with its own reason.
    let self_signed = make_cert(&certs, "self-signed-a", "operator-a.example", &[])?;
    let wrong_san = make_cert(&certs, "wrong-san", "evil.example", &by_ca)?;
    let mut expired_args = by_ca.to_vec();
    expired_args.extend(["--valid-from", "2020-01-01", "--days", "30"]);
    let expired = make_cert(&certs, "expired-a", "operator-a.example", &expired_args)?;
    let cases: [(&str, Option<&CertFiles>, &str); 4] = [
        ("unknown CA", Some(&self_signed), "unknown_ca"),
        ("wrong SAN", Some(&wrong_san), "name_mismatch"),
        ("expired", Some(&expired), "expired"),
        ("no client certificate", None, "no_client_certificate"),
    ];
    for (i, (what, cert, reason)) in cases.iter().enumerate() {
        let got = s_client(
            B_TLS,
            "127.0.20.2",
            *cert,
            &options("127.0.30.2:5061", 10 + i as u32),
        )?;
        ensure(!got.contains("SIP/2.0"), || {
            format!("{what}: B answered SIP: {got:?}")
        })?;
        wait_log_lines(&b_log, "TLS handshake refused", reason, 1)?;
    }
    let (_, page) = common::http::get(B_ADMIN, "/metrics")?;
    for (_, _, reason) in &cases {
        let series = format!(
            "palisade_tls_handshake_failures_total{{direction=\"in\",realm=\"interconnect\",reason=\"{reason}\"}} 1"
        );
        ensure(page.contains(&series), || {
            format!("no `{series}` in B's /metrics")
        })?;
    }

    // Toward A, from B's own address: another party's valid certificates (A's own, and one
    // for B's name from a CA) are not the certificate A pinned.
    let b_by_ca = make_cert(&certs, "b-by-ca", "operator-b.example", &by_ca)?;
    for (i, cert) in [&a_cert, &b_by_ca].into_iter().enumerate() {
        let got = s_client(
            A_TLS,
            "127.0.30.2",
            Some(cert),
            &options("127.0.20.2:5061", 20 + i as u32),
        )?;
        ensure(!got.contains("SIP/2.0"), || {
            format!("unpinned certificate {i}: A answered SIP: {got:?}")
        })?;
        wait_log_lines(&a_log, "TLS handshake refused", "not_pinned", i + 1)?;
    }

    // Plain UDP and TCP from B's address get nothing: B is TLS-only. C, plain by policy, is
    // answered on the same listeners.
    let udp_probe = |from: &str, n: u32| -> R<Option<String>> {
        let s = UdpSocket::bind(format!("{from}:0")).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        let msg = options("127.0.20.2:5060", n).replace(
            "SIP/2.0/TLS 127.0.0.1:5061",
            &format!("SIP/2.0/UDP {}", s.local_addr().unwrap()),
        );
        s.send_to(msg.as_bytes(), "127.0.20.2:5060")
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        Ok(s.recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned()))
    };
    let c = udp_probe("127.0.50.2", 30)?;
    ensure(
        c.as_deref().is_some_and(|r| r.starts_with("SIP/2.0 200")),
        || format!("plain partner C got {c:?} on UDP"),
    )?;
    let b_udp = udp_probe("127.0.30.2", 31)?;
    ensure(b_udp.is_none(), || {
        format!("TLS-only B got an answer over UDP: {b_udp:?}")
    })?;
    let tcp_probe = common::ua::tcp_connect_from(
        "127.0.30.2".parse().unwrap(),
        "127.0.20.2:5060".parse().unwrap(),
    );
    if let Ok(mut t) = tcp_probe {
        let msg = options("127.0.20.2:5060", 32).replace("SIP/2.0/TLS", "SIP/2.0/TCP");
        let _ = t.write_all(msg.as_bytes());
        let _ = t.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 4096];
        let n = t.read(&mut buf).unwrap_or(0);
        ensure(n == 0, || {
            format!(
                "TLS-only B got an answer over TCP: {:?}",
                String::from_utf8_lossy(&buf[..n])
            )
        })?;
    }
    Ok(())
}

const TO_CINDY: &str = "sip:cindy@operator-b.example";

fn rotation() -> R<()> {
    if !have_openssl() {
        return harness::skip("openssl not installed");
    }
    instance::wait_lab_free(Duration::from_secs(120))?;
    let dir = work_dir().join("rotation");
    let _ = std::fs::remove_dir_all(&dir);
    lab_copy(&dir, false)?;
    let a_log = dir.join("a.log");
    let pa = Instance::start("operator-a", &dir.join("operator-a.toml"), a_log.clone())?;
    let _pb = Instance::start(
        "operator-b",
        &dir.join("operator-b.toml"),
        dir.join("b.log"),
    )?;
    let a = Ua::new(UaConfig::a_core("alice"))?;
    let b = Ua::new(UaConfig::b_core("cindy"))?;
    let (tx, mut da) = a.invite(TO_CINDY, &sdp("127.0.10.1", 44_000, 1, "sendrecv"))?;
    let inc = b.wait_request("INVITE", None)?;
    let mut db = b
        .answer_invite(&inc, 200, &sdp("127.0.40.1", 45_000, 1, "sendrecv"))?
        .ok_or("no dialog at B")?;
    let ok = a.wait_final(&tx)?;
    ensure(ok.status() == 200, || format!("caller got {}", ok.start))?;
    a.ack_2xx(&mut da, &ok)?;
    b.wait_ack(&db)?;

    // `palisade status` shows the partner's TLS connection (refreshed once a second).
    let end = Instant::now() + WAIT;
    let mut shown = String::new();
    while Instant::now() < end {
        shown = palisade(&["status", "--admin", "127.0.0.1:9101"]).unwrap_or_default();
        if shown.contains("operator-b") && shown.contains("TLS: 1 connection(s)") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    ensure(shown.contains("TLS: 1 connection(s)"), || {
        format!("palisade status does not show the TLS connection:\n{shown}")
    })?;

    // Rotate A's certificate (same CA, new key), then SIGHUP.
    let (ca, ca_key) = lab_ca();
    let tls = dir.join("tls");
    make_cert(
        &tls,
        "operator-a",
        "operator-a.example",
        &["--issuer-cert", &ca, "--issuer-key", &ca_key],
    )?;
    let new_pem = std::fs::read_to_string(tls.join("operator-a.crt")).map_err(|e| e.to_string())?;
    signal(pa.pid(), "HUP");
    let end = Instant::now() + WAIT;
    while !log_text(&a_log).contains("reload applied") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure(log_text(&a_log).contains("reload applied"), || {
        format!("A did not apply the reload:\n{}", pa.tail())
    })?;

    // A new connection to A presents the new certificate.
    let b_cert = (tls.join("operator-b.crt"), tls.join("operator-b.key"));
    let shown = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            A_TLS,
            "-bind",
            "127.0.30.2",
            "-showcerts",
        ])
        .arg("-cert")
        .arg(&b_cert.0)
        .arg("-key")
        .arg(&b_cert.1)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let shown = String::from_utf8_lossy(&shown.stdout);
    let body: String = new_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let seen: String = shown.lines().filter(|l| !l.starts_with("-----")).collect();
    ensure(seen.contains(&body), || {
        format!("A's listener does not present the new certificate:\n{shown}")
    })?;

    // The call survives: a re-INVITE from B, then B's BYE, both answered end to end.
    let re = b.request(
        &mut db,
        "INVITE",
        Some(&sdp("127.0.40.1", 45_000, 2, "sendrecv")),
    )?;
    let re_a = a.wait_request("INVITE", None)?;
    a.respond(
        &re_a,
        200,
        "OK",
        None,
        Some(&sdp("127.0.10.1", 44_000, 2, "sendrecv")),
    )?;
    let ok = b.wait_final(&re)?;
    ensure(ok.status() == 200, || {
        format!("re-INVITE after rotation got {}", ok.start)
    })?;
    b.ack_2xx(&mut db, &ok)?;
    let bye = b.request(&mut db, "BYE", None)?;
    let bye_a = a.wait_request("BYE", None)?;
    a.respond(&bye_a, 200, "OK", None, None)?;
    let ok = b.wait_final(&bye)?;
    ensure(ok.status() == 200, || {
        format!("BYE after rotation got {}", ok.start)
    })?;

    // A new call from B to A rides A's connection (A's Via offered it, RFC 5923 alias): A sees
    // no connection from B but s_client's.
    let (tx, mut db2) = b.invite(
        "sip:alice@operator-a.example",
        &sdp("127.0.40.1", 45_100, 1, "sendrecv"),
    )?;
    let inc = a.wait_request("INVITE", None)?;
    let da2 = a
        .answer_invite(&inc, 200, &sdp("127.0.10.1", 44_100, 1, "sendrecv"))?
        .ok_or("no dialog at A")?;
    let ok = b.wait_final(&tx)?;
    ensure(ok.status() == 200, || {
        format!("B → A call got {}", ok.start)
    })?;
    b.ack_2xx(&mut db2, &ok)?;
    a.wait_ack(&da2)?;
    let from_b = log_text(&a_log)
        .lines()
        .filter(|l| l.contains("TLS connection from partner"))
        .count();
    ensure(from_b == 1, || {
        format!("A accepted {from_b} TLS connections (want 1, s_client's): B did not use the alias")
    })?;
    let bye = b.request(&mut db2, "BYE", None)?;
    let bye_a = a.wait_request("BYE", None)?;
    a.respond(&bye_a, 200, "OK", None, None)?;
    let ok = b.wait_final(&bye)?;
    ensure(ok.status() == 200, || {
        format!("BYE of the B → A call got {}", ok.start)
    })?;
    Ok(())
}

type Scenario = fn() -> R<()>;

fn main() {
    let all: Vec<(&'static str, Scenario)> =
        vec![("handshakes", handshakes), ("rotation", rotation)];
    let selected = harness::select(all);
    instance::watchdog("tls", GLOBAL_TIMEOUT);
    println!("\nrunning {} TLS scenarios", selected.len());
    let mut tally = Tally::new();
    for (name, f) in &selected {
        tally.run(name, || harness::catch(*f));
    }
    println!("\nlogs: {}", work_dir().display());
    std::process::exit(tally.finish());
}
