//! Cost of installing kernel flows: flow number 1, 1,000 and 10,000 (one install + flush with
//! N-1 present), batched 1,000-at-once throughput, removal and a counter read at 10 k flows.
//! Root only (else prints a skip note); runs in its own network namespace, never the host's.

use std::process::Command;
use std::time::{Duration, Instant};

use palisade::media::kernel::{KernelFlow, KernelPath};
use palisade::media::FlowId;

fn flow(i: u32) -> KernelFlow {
    let (hi, lo) = (i / 250, i % 250 + 1);
    KernelFlow {
        a_local: format!("10.203.1.1:{}", 10000 + i % 50000).parse().unwrap(),
        a_remote: format!("10.203.{}.{lo}:5000", 10 + hi % 200)
            .parse()
            .unwrap(),
        b_local: format!("10.203.2.1:{}", 10000 + i % 50000).parse().unwrap(),
        b_remote: format!("10.204.{}.{lo}:6000", 10 + hi % 200)
            .parse()
            .unwrap(),
    }
}

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn fill(kp: &KernelPath, from: u32, to: u32) {
    for i in from..to {
        kp.install(FlowId(i as u64), flow(i));
    }
    kp.flush().expect("flush");
}

fn one(kp: &KernelPath, n: u32) -> Duration {
    let t = Instant::now();
    kp.install(FlowId(n as u64), flow(n));
    kp.flush().expect("flush");
    t.elapsed()
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!(
            "kernel_install: skipped (needs root for a private network namespace and nftables)"
        );
        return;
    }
    let ns = Ns(format!("pal-bench-{}", std::process::id()));
    let ok = Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        println!("kernel_install: skipped (cannot create a network namespace)");
        return;
    }
    let kp = KernelPath::start_in_netns("palisade_bench", Some(&ns.0)).expect("start");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut rows: Vec<(String, f64, String)> = Vec::new();

    rows.push((
        "install flow #1 (0 present)".into(),
        ms(one(&kp, 0)),
        String::new(),
    ));
    fill(&kp, 1, 999);
    rows.push((
        "install flow #1,000 (999 present)".into(),
        ms(one(&kp, 999)),
        String::new(),
    ));
    let t = Instant::now();
    fill(&kp, 1000, 9999);
    let d = t.elapsed();
    rows.push((
        "install 8,999 in one batch".into(),
        ms(d),
        format!("{:.3} ms/flow", ms(d) / 8999.0),
    ));
    rows.push((
        "install flow #10,000 (9,999 present)".into(),
        ms(one(&kp, 9999)),
        String::new(),
    ));
    let t = Instant::now();
    fill(&kp, 10000, 11000);
    let d = t.elapsed();
    rows.push((
        "install 1,000 at once (10 k present)".into(),
        ms(d),
        format!("{:.0} flows/s", 1000.0 / d.as_secs_f64()),
    ));
    assert_eq!(kp.installed(), 11000);
    let t = Instant::now();
    let c = kp.counters().expect("counters");
    rows.push((
        "read counters, 11 k flows".into(),
        ms(t.elapsed()),
        format!("{} flows", c.len()),
    ));
    let t = Instant::now();
    kp.remove(FlowId(5000));
    kp.flush().expect("flush");
    rows.push((
        "remove one flow (11 k present)".into(),
        ms(t.elapsed()),
        String::new(),
    ));
    let t = Instant::now();
    for i in 10000..11000 {
        kp.remove(FlowId(i as u64));
    }
    kp.flush().expect("flush");
    let d = t.elapsed();
    rows.push((
        "remove 1,000 at once".into(),
        ms(d),
        format!("{:.0} flows/s", 1000.0 / d.as_secs_f64()),
    ));

    println!("\nkernel fast path, nft {}", nft_version());
    println!("{:<40} {:>10}  note", "operation", "ms");
    for (what, t, note) in rows {
        println!("{what:<40} {t:>10.2}  {note}");
    }
    kp.shutdown().expect("shutdown");
}

fn nft_version() -> String {
    Command::new("nft")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
