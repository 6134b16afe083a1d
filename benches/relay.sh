#!/usr/bin/env bash
# Palisade's media relay in the shared RTP bench (../shared/bench/run-rtp-relay.sh), driven over
# the ng control protocol as rtpengine is, beside rtpengine and the minimal C relay (udprelay)
# measured in the same run (targets interleaved per repeat); then, with KERNEL=1 (the default
# when run as root), the kernel-mode variant beside the harness's nftables NAT relay (`nft`).
#
#   benches/relay.sh                               # both runs, the harness's default streams
#   REPEATS=1 STREAMS="500 1000 1500 2000" KERNEL=0 benches/relay.sh
#
# Prints one table per run: packets/s per core of relay CPU, the ratios to rtpengine and udprelay
# (user space) or the machine CPU per packet against nft (kernel), KiB per call and loss, each at
# the target's highest passing step (medians over repeats). PALISADE_BIN picks the binary
# (default target/release/palisade, built if missing); BENCH the harness directory. Other
# settings (STREAMS, REPEATS, SECS, PPS, WORK, ...) go to run-rtp-relay.sh as they are.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH="${BENCH:-../shared/bench}"
BIN="${PALISADE_BIN:-target/release/palisade}"
KERNEL="${KERNEL:-$([ "$(id -u)" = 0 ] && echo 1 || echo 0)}"
[ -x "$BENCH/run-rtp-relay.sh" ] || { echo "no shared bench at $BENCH (set BENCH)"; exit 2; }
if ! command -v rtpengine >/dev/null || ! command -v conntrack >/dev/null; then
    bash "$BENCH/install-deps.sh"
fi
[ -x "$BIN" ] || cargo build --release --bin palisade

# One run of the harness; its log goes to stderr as it runs, the run directory is echoed.
run() {
    local conf="$1"; shift
    local out; out=$(mktemp)
    RELAY_START_HOOK="exec $BIN run --config $conf" "$BENCH/run-rtp-relay.sh" "$@" 2>&1 | tee "$out" >&2
    sed -n 's/.*run dir: \([^ ]*\) .*/\1/p' "$out" | head -1
    rm -f "$out"
}

# The table of a run: per target at its highest passing step (medians over repeats).
table() {
    python3 - "$1/summary.tsv" "$2" <<'EOF'
import csv, sys, statistics as S
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
mode = sys.argv[2]
def med(v):
    v = [float(a) for a in v if a not in ("", "nan")]
    return S.median(v) if v else float("nan")
f = lambda x, fmt: "-" if x is None or x != x else fmt % x
targets = list(dict.fromkeys(r["target"] for r in rows))
def passing(t, n):
    return [r for r in rows if r["target"] == t and int(r["streams"]) == n and r["pass"] == "PASS"]
def highest(t):
    reps = {}
    for r in rows:
        if r["target"] == t:
            reps.setdefault(r["repeat"], []).append(r)
    return med(max([int(r["streams"]) for r in g if r["pass"] == "PASS"] or [0]) for g in reps.values())
steps = sorted({int(r["streams"]) for r in rows})
common = max([n for n in steps if all(passing(t, n) for t in targets)] or [0])
at = {t: {k: med(r[k] for r in passing(t, common)) for k in
          ("sent_pps", "relay_pps_per_core", "machine_us_per_pkt", "relay_us_per_pkt",
           "relay_kib_per_call", "loss_pct", "reorder", "lat_p50_us")} for t in targets} if common else {}
name = lambda t: ("palisade (kernel)" if mode == "kernel" else "palisade") if t == "external" else t
print()
if not common:
    print("no stream count passed for every target: %s" % ", ".join("%s %s" % (t, highest(t)) for t in targets))
    sys.exit(0)
print("figures at %d streams (%d calls), the highest step every target passed; medians over repeats" % (common, common // 2))
print()
if mode == "user":
    print("| target | highest passing streams | relay pps/core | x rtpengine | x udprelay | KiB/call | loss % | reordered | p50 µs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in targets:
        b = at[t]
        ratio = lambda ref: b["relay_pps_per_core"] / at[ref]["relay_pps_per_core"] if ref in at else None
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (name(t), f(highest(t), "%.0f"),
              f(b["relay_pps_per_core"], "%.0f"), f(ratio("rtpengine"), "%.2f"), f(ratio("udprelay"), "%.2f"),
              f(b["relay_kib_per_call"], "%.1f"), f(b["loss_pct"], "%.4f"), f(b["reorder"], "%.0f"), f(b["lat_p50_us"], "%.0f")))
    print("\ntargets: >= 2x rtpengine and >= 1.2x udprelay packets/s per core, KiB/call <= rtpengine's, zero loss")
else:
    print("| target | highest passing streams | machine µs/packet | x nft | relay process µs/packet | loss % | p50 µs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for t in targets:
        b = at[t]
        r = b["machine_us_per_pkt"] / at["nft"]["machine_us_per_pkt"] if "nft" in at else None
        print("| %s | %s | %s | %s | %s | %s | %s |" % (name(t), f(highest(t), "%.0f"), f(b["machine_us_per_pkt"], "%.2f"),
              f(r, "%.2f"), f(b["relay_us_per_pkt"] if t == "external" else None, "%.2f"), f(b["loss_pct"], "%.4f"),
              f(b["lat_p50_us"], "%.0f")))
    print("\ntarget: machine CPU per packet within 1.2x of nft's (kernel forwarding is charged to no process)")
EOF
}

# Another bench on this machine (rtpengine, Kamailio) holding the relay addresses makes
# Palisade's binds fail and the packets go elsewhere: say so before measuring.
busy=$(ss -Hlun 2>/dev/null | awk '{print $4}' | grep -E '^127\.0\.0\.(10|20):|^127\.0\.0\.1:22223$' || true)
[ -z "$busy" ] || echo "relay.sh: warning: already bound (figures may be wrong): $(echo $busy)" >&2

user_run=$(run benches/relay.toml rtpengine udprelay external)
kernel_run=""
if [ "$KERNEL" = 1 ]; then
    kernel_run=$(run benches/relay-kernel.toml nft external)
fi
echo
echo "== user space ($(nproc) cores, $(uname -r), loadavg $(cut -d' ' -f1-3 /proc/loadavg)); raw: $user_run"
table "$user_run" user
if [ -n "$kernel_run" ]; then
    echo
    echo "== kernel mode; raw: $kernel_run"
    table "$kernel_run" kernel
fi
