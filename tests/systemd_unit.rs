//! The shipped systemd unit: `systemd-analyze verify` accepts it (with ExecStart pointing at
//! the binary just built) and `systemd-analyze security --offline=true` rates its exposure at
//! 2.0 or below. Skipped (with a note) where systemd-analyze is not installed.

use std::path::Path;
use std::process::Command;

fn unit_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/palisade.service")
}

fn have_analyze() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn unit_is_type_notify_with_reload_and_capabilities() {
    let unit = std::fs::read_to_string(unit_path()).expect("unit readable");
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=palisade",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
}

#[test]
fn unit_verifies() {
    if !have_analyze() {
        eprintln!("systemd-analyze not installed: skipped");
        return;
    }
    let unit = std::fs::read_to_string(unit_path()).expect("unit readable");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("systemd_unit");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let copy = dir.join("palisade.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/palisade", env!("CARGO_BIN_EXE_palisade")),
    )
    .expect("write unit copy");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify:\n{text}");
    assert!(
        !text.contains("palisade.service"),
        "verify complained about the unit:\n{text}"
    );
}

#[test]
fn unit_exposure_is_at_most_2() {
    if !have_analyze() {
        eprintln!("systemd-analyze not installed: skipped");
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_path())
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for palisade.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(level <= 2.0, "exposure {level} above 2.0:\n{text}");
}
