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
best = {}
for t in dict.fromkeys(r["target"] for r in rows):
    reps = {}
    for r in rows:
        if r["target"] == t:
            reps.setdefault(r["repeat"], []).append(r)
    tops = [max((r for r in g if r["pass"] == "PASS"), key=lambda r: int(r["streams"]), default=None)
            for g in reps.values()]
    tops = [r for r in tops if r]
    best[t] = None if not tops else {k: med(r[k] for r in tops) for k in
        ("streams", "sent_pps", "relay_pps_per_core", "relay_us_per_pkt", "machine_us_per_pkt",
         "relay_kib_per_call", "loss_pct", "reorder", "lat_p50_us")}
f = lambda x, fmt: "-" if x is None or x != x else fmt % x
ext = best.get("external")
print()
if mode == "user":
    print("| target | streams | packets/s | relay pps/core | x rtpengine | x udprelay | KiB/call | loss % | reordered | p50 µs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t, b in best.items():
        if not b:
            print("| %s | no passing step | | | | | | | | |" % t); continue
        ratio = lambda ref: (b["relay_pps_per_core"] / best[ref]["relay_pps_per_core"]
                             if best.get(ref) and best[ref]["relay_pps_per_core"] == best[ref]["relay_pps_per_core"] else None)
        print("| %s | %d | %.0f | %s | %s | %s | %s | %s | %d | %.0f |" % (
            "palisade" if t == "external" else t, b["streams"], b["sent_pps"], f(b["relay_pps_per_core"], "%.0f"),
            f(ratio("rtpengine"), "%.2f"), f(ratio("udprelay"), "%.2f"), f(b["relay_kib_per_call"], "%.1f"),
            f(b["loss_pct"], "%.4f"), b["reorder"], b["lat_p50_us"]))
    print("\ntargets: >= 2x rtpengine and >= 1.2x udprelay packets/s per core, KiB/call <= rtpengine's, zero loss")
else:
    print("| target | streams | packets/s | machine µs/packet | x nft | relay process µs/packet | loss % | p50 µs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    nft = best.get("nft")
    for t, b in best.items():
        if not b:
            print("| %s | no passing step | | | | | | |" % t); continue
        r = b["machine_us_per_pkt"] / nft["machine_us_per_pkt"] if nft else None
        print("| %s | %d | %.0f | %s | %s | %s | %s | %.0f |" % (
            "palisade (kernel)" if t == "external" else t, b["streams"], b["sent_pps"],
            f(b["machine_us_per_pkt"], "%.2f"), f(r, "%.2f"), f(b["relay_us_per_pkt"] if t == "external" else None, "%.2f"),
            f(b["loss_pct"], "%.4f"), b["lat_p50_us"]))
    print("\ntarget: machine CPU per packet within 1.2x of nft's (kernel forwarding is not charged to any process)")
EOF
}

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
