//! The Debian package (`[package.metadata.deb]` in Cargo.toml): `cargo deb` builds it, and it
//! holds what an operator installs: the binary in /usr/bin, the unit, the sysusers/tmpfiles
//! files, the example configuration as conffiles under /etc/palisade, and maintainer scripts that
//! create the user and reload systemd without enabling or starting the service.
//!
//! To keep CI short the package is made from the debug binary this test run already built
//! (copied where `cargo deb --no-build` looks for it, under a target dir of the test's own), so
//! no release build is needed; `--fast` compression keeps it to seconds. The layout, control
//! fields and scripts do not depend on the profile.
//!
//! Skipped with a note without `cargo-deb` or `dpkg-deb`; the skip fails when
//! `PALISADE_REQUIRE_ROOT_TESTS=1` (CI, where scripts/test installs cargo-deb).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn have(tool: &str, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The package built once for all tests here, or `None` (skip) without the tools.
fn package() -> Option<&'static Path> {
    static DEB: OnceLock<Option<PathBuf>> = OnceLock::new();
    DEB.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        if !have(&cargo, &["deb", "--version"]) || !have("dpkg-deb", &["--version"]) {
            let require = std::env::var("PALISADE_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
            assert!(
                !require,
                "cargo-deb or dpkg-deb missing but PALISADE_REQUIRE_ROOT_TESTS=1 \
                 (scripts/test installs cargo-deb with `cargo install cargo-deb --locked`)"
            );
            eprintln!("cargo-deb or dpkg-deb not installed: skipped");
            return None;
        }
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package");
        let _ = std::fs::remove_dir_all(&work);
        let release = work.join("target/release");
        std::fs::create_dir_all(&release).expect("mkdir staging target dir");
        std::fs::copy(env!("CARGO_BIN_EXE_palisade"), release.join("palisade"))
            .expect("copy the built binary where cargo deb --no-build looks");
        let out = work.join("out");
        run(Command::new(&cargo)
            .args(["deb", "--no-build", "--no-strip", "--fast", "--quiet"])
            .arg("--manifest-path")
            .arg(repo("Cargo.toml"))
            .arg("--output")
            .arg(&out)
            .env("CARGO_TARGET_DIR", work.join("target")));
        let deb = std::fs::read_dir(&out)
            .expect("cargo deb output dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .expect("cargo deb wrote no .deb");
        Some(deb)
    })
    .as_deref()
}

/// `dpkg-deb <how> deb` into a fresh directory `name` of this test's: `-e` (control files) or
/// `-x` (the files).
fn unpack(deb: &Path, how: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("package")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    run(Command::new("dpkg-deb").arg(how).arg(deb).arg(&dir));
    dir
}

/// The package's files: `dpkg-deb -c` lines as (mode, path without the leading `.`).
fn contents(deb: &Path) -> Vec<(String, String)> {
    run(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let mode = f.next()?.to_string();
            let path = f.last()?.trim_start_matches('.').to_string();
            Some((mode, path))
        })
        .collect()
}

#[test]
fn package_lists_binary_unit_system_files_and_example_config() {
    let Some(deb) = package() else { return };
    let files = contents(deb);
    let mode_of = |path: &str| {
        files
            .iter()
            .find(|(_, p)| p == path)
            .map(|(m, _)| m.as_str())
            .unwrap_or_else(|| panic!("package lacks {path}; it has:\n{files:#?}"))
    };
    assert_eq!(mode_of("/usr/bin/palisade"), "-rwxr-xr-x");
    for file in [
        "/usr/lib/systemd/system/palisade.service",
        "/usr/lib/sysusers.d/palisade.conf",
        "/usr/lib/tmpfiles.d/palisade.conf",
        "/usr/share/palisade/sysctl/60-palisade.conf",
        "/etc/palisade/palisade.toml",
        "/etc/palisade/peers/operator-c.toml",
        "/usr/share/palisade/prometheus/palisade.rules.yml",
        "/usr/share/palisade/grafana/palisade.json",
    ] {
        assert_eq!(mode_of(file), "-rw-r--r--", "{file}");
    }
    // Forwarding is switched on by the operator, never by installing the package.
    assert!(
        !files
            .iter()
            .any(|(_, p)| p.starts_with("/usr/lib/sysctl.d/") || p.starts_with("/etc/sysctl.d/")),
        "the package must not enable forwarding by itself"
    );
}

#[test]
fn package_control_fields_and_conffiles() {
    let Some(deb) = package() else { return };
    let field = |name: &str| run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name));
    assert_eq!(field("Package").trim(), "palisade");
    assert_eq!(
        field("Version").trim(),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    assert_eq!(field("Architecture").trim(), arch.trim());
    assert_eq!(field("Section").trim(), "net");
    let depends = field("Depends");
    assert!(depends.contains("libc6"), "Depends: {depends}");
    assert!(depends.contains("systemd"), "Depends: {depends}");
    assert!(field("Maintainer").contains('@'));
    let synopsis = field("Description");
    let first = synopsis.lines().next().unwrap_or_default();
    assert!(
        !first.is_empty() && first.len() <= 80,
        "Debian wants a synopsis of at most 80 characters: {first:?}"
    );

    let info = run(Command::new("dpkg-deb").arg("-I").arg(deb));
    assert!(info.contains(" conffiles"), "no conffiles:\n{info}");
    let ctl = unpack(deb, "-e", "control");
    let conffiles = std::fs::read_to_string(ctl.join("conffiles")).expect("conffiles");
    let mut listed: Vec<&str> = conffiles.lines().collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "/etc/palisade/palisade.toml",
            "/etc/palisade/peers/operator-c.toml"
        ]
    );
}

#[test]
fn maintainer_scripts_create_user_and_reload_without_starting() {
    let Some(deb) = package() else { return };
    let ctl = unpack(deb, "-e", "scripts");
    for script in ["postinst", "prerm", "postrm"] {
        let path = ctl.join(script);
        assert!(path.exists(), "package has no {script}");
        run(Command::new("sh").arg("-n").arg(&path));
    }
    let postinst = std::fs::read_to_string(ctl.join("postinst")).expect("postinst");
    assert!(
        !postinst.contains("#DEBHELPER#"),
        "token not replaced:\n{postinst}"
    );
    let sysusers = postinst
        .find("systemd-sysusers")
        .unwrap_or_else(|| panic!("postinst does not create the user:\n{postinst}"));
    let tmpfiles = postinst
        .find("systemd-tmpfiles --create palisade.conf")
        .unwrap_or_else(|| panic!("postinst does not apply tmpfiles:\n{postinst}"));
    // /etc/palisade is group palisade: the group must exist first.
    assert!(sysusers < tmpfiles, "tmpfiles before sysusers:\n{postinst}");
    assert!(postinst.contains("daemon-reload"), "{postinst}");
    // Installed disabled and stopped: the example configuration must be edited first. The
    // enable step runs only for a unit an earlier install enabled (`debian-installed`), so an
    // operator's `systemctl enable` survives upgrades.
    assert!(
        postinst.contains("deb-systemd-helper debian-installed palisade.service"),
        "{postinst}"
    );
    for starts in [
        "deb-systemd-invoke",
        "Enables the unit on first installation",
    ] {
        assert!(
            !postinst.contains(starts),
            "postinst enables or starts the service ({starts}):\n{postinst}"
        );
    }
    let prerm = std::fs::read_to_string(ctl.join("prerm")).expect("prerm");
    assert!(
        prerm.contains("stop palisade.service"),
        "prerm does not stop the service on removal:\n{prerm}"
    );
}

#[test]
fn packaged_files_are_the_repository_ones_and_the_example_config_checks() {
    let Some(deb) = package() else { return };
    let root = unpack(deb, "-x", "root");
    for (packaged, source) in [
        (
            "usr/lib/systemd/system/palisade.service",
            "systemd/palisade.service",
        ),
        (
            "usr/lib/sysusers.d/palisade.conf",
            "systemd/palisade.sysusers",
        ),
        (
            "usr/lib/tmpfiles.d/palisade.conf",
            "systemd/palisade.tmpfiles",
        ),
        ("etc/palisade/palisade.toml", "policies/example/border.toml"),
    ] {
        let got = std::fs::read(root.join(packaged)).expect(packaged);
        let want = std::fs::read(repo(source)).expect(source);
        assert!(got == want, "{packaged} differs from {source}");
    }
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/palisade.service"))
        .expect("unit");
    assert!(
        unit.lines()
            .any(|l| l == "ExecStart=/usr/bin/palisade run --config /etc/palisade/palisade.toml"),
        "the unit must start the packaged binary on the packaged config:\n{unit}"
    );
    // The shipped example is a valid configuration (its peer file found beside it), checked by
    // the packaged binary itself.
    let out = run(Command::new(root.join("usr/bin/palisade"))
        .arg("check")
        .arg("--config")
        .arg(root.join("etc/palisade/palisade.toml")));
    assert!(out.contains("operator-c"), "check output:\n{out}");
}
