//! The shipped monitoring files: the Prometheus alert rules pass `promtool check rules`, the
//! Grafana dashboard is valid JSON with panels, and every metric either of them names is one
//! the service exports (so an alert can never watch a series that does not exist).
//! Without promtool the rules check is skipped with a note, and fails when
//! `PALISADE_REQUIRE_ROOT_TESTS=1` (CI installs Debian's `prometheus` package).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn read(p: &str) -> String {
    std::fs::read_to_string(repo(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// `palisade_*` and `process_*` names in a text, with the histogram suffixes folded onto their
/// family.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["palisade_", "process_"] {
        names_with(prefix, text, &mut out);
    }
    out
}

fn names_with(prefix: &str, text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(family.to_string());
        rest = &tail[end..];
    }
}

fn exported() -> BTreeSet<String> {
    metric_names(&read("src/service/metrics.rs"))
}

#[test]
fn alert_rules_pass_promtool() {
    let path = repo("systemd/prometheus/palisade.rules.yml");
    match Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check rules:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) if std::env::var("PALISADE_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") => {
            panic!("promtool is required (Debian package prometheus)")
        }
        Err(_) => eprintln!("promtool not installed: rules check skipped"),
    }
}

#[test]
fn dashboard_parses_and_has_panels() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("systemd/grafana/palisade.json")).expect("dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for p in panels {
        let targets = p["targets"].as_array().expect("every panel has queries");
        assert!(targets.iter().all(|t| t["expr"].as_str().is_some()));
    }
}

#[test]
fn rules_and_dashboard_name_only_exported_metrics() {
    let exported = exported();
    assert!(
        exported.contains("palisade_sessions_active"),
        "{exported:?}"
    );
    for file in [
        "systemd/prometheus/palisade.rules.yml",
        "systemd/grafana/palisade.json",
    ] {
        let named = metric_names(&read(file));
        assert!(!named.is_empty(), "{file} names no metric");
        let unknown: Vec<_> = named.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics nobody exports: {unknown:?}"
        );
    }
}

/// `palisade_*`/`process_*` names in the first cell of the README's metric table rows.
fn catalogue() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in read("README.md").lines() {
        if !(line.starts_with("| `palisade_") || line.starts_with("| `process_")) {
            continue;
        }
        let cell = line.split('|').nth(1).unwrap_or("");
        out.extend(metric_names(cell));
    }
    out
}

#[test]
fn readme_catalogue_lists_every_exported_metric_and_no_other() {
    // A bare prefix in the code (`process_*` in a comment) names no metric.
    let exported: BTreeSet<String> = exported()
        .into_iter()
        .filter(|n| !n.ends_with('_'))
        .collect();
    let listed = catalogue();
    assert!(listed.contains("palisade_engine_held_bytes"), "{listed:?}");
    let missing: Vec<_> = exported.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "exported but not in README: {missing:?}"
    );
    let stale: Vec<_> = listed.difference(&exported).collect();
    assert!(stale.is_empty(), "in README but not exported: {stale:?}");
}

#[test]
fn rules_page_on_what_the_noc_needs() {
    let rules = read("systemd/prometheus/palisade.rules.yml");
    for (alert, watches) in [
        (
            "PalisadePartnerUnreachable",
            "palisade_transaction_timeouts_total",
        ),
        ("PalisadeShedding", "palisade_sip_rejected_total"),
        ("PalisadeKernelPathUnavailable", "palisade_media_flows"),
        (
            "PalisadeKernelPathNotForwarding",
            "palisade_media_packets_relayed_total",
        ),
        (
            "PalisadeTlsHandshakeFailures",
            "palisade_tls_handshake_failures_total",
        ),
        ("PalisadeReloadFailed", "palisade_reloads_total"),
    ] {
        let at = rules
            .find(&format!("alert: {alert}\n"))
            .unwrap_or_else(|| panic!("no alert {alert}"));
        let body = &rules[at..];
        let body = &body[..body[1..].find("- alert:").map_or(body.len(), |n| n + 1)];
        assert!(body.contains(watches), "{alert} does not watch {watches}");
    }
}
