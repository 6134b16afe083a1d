#!/usr/bin/env bash
# The overload targets of issue #20, in the shared bench topology (benches/anchor.toml:
# SIPp UAC 127.0.0.11 -> 127.0.0.10 [Palisade] 127.0.0.20 -> SIPp UAS 127.0.0.21), every figure
# against a baseline measured in the same run:
#
#   overload  a ramp finds the highest passing call rate R; then 3R is offered for FLOOD_SECS
#             while one long call carries RTP both ways (benches/flood/longcall.py; the UAS
#             echoes it back with SIPp -rtp_echo): calls set up vs R, every other new call
#             answered 503 + Retry-After (p99 of that answer), Palisade's memory (PSS) sampled
#             every second, the long call's loss and longest gap; then a step at R must pass.
#   unknown   the same ramp without and with a UDP flood from an unknown source (127.0.0.99) to
#             the peer-side SIP port at FLOOD_PPS (benches/flooder.rs): the passing rates' ratio;
#             then once more flooded with `[sip] kernel_filter = true` (needs root), where the
#             flood is dropped by nftables before Palisade reads it.
#
#   benches/flood.sh [overload] [unknown]        # both by default
#
# Settings: STEPS ("500 1000 1500 2000 2500 3000"), STEP_SECS (10), FLOOD_SECS (60),
# FLOOD_PPS (80000, the relay harness's packet rate), BENCH (../shared/bench, for its uas.xml),
# PALISADE_BIN, ANCHOR_CONFIG, WORK (/tmp/palisade-flood). Writes only under WORK; stops only
# what it started. The pass rule of a step is the shared bench's (< 0.1 % failed, >= 95 % of the
# offered rate achieved).
#
# As root it runs in a network namespace of its own (same addresses, its own loopback), so a
# bench or lab of someone else on the shared machine neither collides with it nor adds traffic
# to it; FLOOD_NETNS=0 runs it on the host's loopback instead. The CPU stays shared.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "${FLOOD_NETNS:-1}" = 1 ] && [ "$(id -u)" = 0 ]; then
    ns=palisade-flood-$$
    ip netns add "$ns"
    trap 'ip netns del "$ns"' EXIT
    ip -n "$ns" link set lo up
    rc=0
    FLOOD_NETNS=0 ip netns exec "$ns" "$0" "$@" || rc=$?
    exit $rc
fi
ROOT=$PWD
# As the systemd unit does (LimitNOFILE=1048576): every call holds four relay sockets, and a
# shell's usual limit would cap the border at a few thousand calls (it then refuses with 503).
ulimit -n 1048576 2>/dev/null || true
BENCH="$(cd "${BENCH:-../shared/bench}" && pwd)"
BIN="${PALISADE_BIN:-target/release/palisade}"
CONF="${ANCHOR_CONFIG:-benches/anchor.toml}"
STEPS="${STEPS:-500 1000 1500 2000 2500 3000}"
STEP_SECS="${STEP_SECS:-10}"
FLOOD_SECS="${FLOOD_SECS:-60}"
FLOOD_PPS="${FLOOD_PPS:-80000}"
RUN="${WORK:-/tmp/palisade-flood}/run-$(date +%Y%m%d-%H%M%S)"
UAS_XML="$BENCH/sipp/uas.xml"
UAC_XML="$ROOT/benches/flood/uac.xml"
parts=("$@")
((${#parts[@]})) || parts=(overload unknown)
[ -f "$UAS_XML" ] || { echo "no shared bench at $BENCH (set BENCH)"; exit 2; }
command -v sipp >/dev/null || { echo "needs sipp (Debian sip-tester)"; exit 2; }
[ -x "$BIN" ] || cargo build --release --bin palisade
cargo bench --bench flooder --no-run -q 2>/dev/null
FLOODER=$(ls -t target/release/deps/flooder-* | grep -v '\.d$' | head -1)
mkdir -p "$RUN"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$RUN/summary.txt" >&2; }

PIDS=()
stop_all() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM -- "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL -- "$p" 2>/dev/null || true; done
    PIDS=()
}
trap stop_all EXIT

PAL=""
start_palisade() {
    setsid "$BIN" run --config "${2:-$CONF}" >"$RUN/palisade-$1.log" 2>&1 </dev/null &
    PAL=$!
    PIDS+=("$PAL")
    for _ in $(seq 50); do
        ss -Hlun 'sport = :5060' | grep -q 127.0.0.10 && break
        sleep 0.1
    done
    sleep 0.5
}
start_uas() {
    (cd "$RUN" && exec sipp -sf "$UAS_XML" -i 127.0.0.21 -p 5060 -mi 127.0.0.21 -mp 6000 \
        -rtp_echo -nostdin -buff_size 8388608 -max_recv_loops 10000 -max_sched_loops 10000 \
        -timeout 3600 >"$RUN/uas-$1.out" 2>&1) &
    PIDS+=("$!")
    sleep 0.5
}
pss() { awk '/^Pss:/{print $2; exit}' "/proc/$PAL/smaps_rollup" 2>/dev/null || echo 0; }
dropped_unknown() {
    curl -s http://127.0.0.1:9190/metrics |
        awk '/^palisade_sip_dropped_total\{.*unknown_source/{s+=$2} END{printf "%d", s}'
}

# step NAME RATE SECS -> the step's line (see benches/flood/step.py); exit status 0 if it passed
step() {
    local name=$1 rate=$2 secs=$3 dir="$RUN/$1"
    local calls=$((rate * secs))
    mkdir -p "$dir"
    (cd "$dir" && exec sipp 127.0.0.10:5060 -sf "$UAC_XML" -s bob -i 127.0.0.11 -p 5060 \
        -r "$rate" -m "$calls" -l $((rate * 6 + 1000)) -d 1000 -nostdin -buff_size 8388608 \
        -max_recv_loops 10000 -max_sched_loops 10000 -default_behaviors all,-abortunexp \
        -recv_timeout 8000 -timeout $((secs + 30)) -trace_logs -trace_err >uac.out 2>&1) || true
    local line
    line=$(python3 "$ROOT/benches/flood/step.py" "$dir" "$calls" "$rate")
    log "$name: offered $rate/s for ${secs}s ($calls calls): $line"
    echo "$line" >"$dir/result"
    [[ $line == *pass=1 ]]
}

# ramp TAG -> echoes the highest passing rate (0 if none)
ramp() {
    local best=0 r
    for r in $STEPS; do
        if step "$1-$r" "$r" "$STEP_SECS" >/dev/null; then best=$r; else break; fi
        sleep 2
    done
    echo "$best"
}

field() { grep -o "$2=[0-9.a-z]*" "$RUN/$1/result" | cut -d= -f2; }

log "run dir $RUN; machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) (shared with other work)"
for part in "${parts[@]}"; do
    case $part in
    overload)
        start_palisade overload
        start_uas overload
        idle=$(pss)
        best=$(ramp ramp)
        log "highest passing rate R = $best calls/s; Palisade PSS idle $idle KiB"
        ((best > 0)) || { log "no passing step: nothing to flood against"; stop_all; continue; }
        flood=$((best * 3))
        python3 benches/flood/longcall.py 127.0.0.11:5070 127.0.0.10:5060 127.0.0.11:30000 \
            $((FLOOD_SECS + 6)) >"$RUN/longcall.out" 2>&1 &
        long=$!
        sleep 2
        (while kill -0 "$PAL" 2>/dev/null; do echo "$(date +%s) $(pss)"; sleep 1; done) \
            >"$RUN/pss.txt" &
        sampler=$!
        step flood "$flood" "$FLOOD_SECS" || true
        wait "$long" || true
        log "long call during the flood: $(cat "$RUN/longcall.out")"
        sleep 5
        step after "$best" "$STEP_SECS" && after=PASS || after=FAIL
        kill "$sampler" 2>/dev/null || true
        ok=$(field flood ok)
        read -r peak last < <(awk '{if ($2 > m) m = $2; l = $2} END {print m, l}' "$RUN/pss.txt")
        log "RESULT part=overload R=$best offered=$flood ok_per_s=$((ok / FLOOD_SECS)) ok_vs_R=$(python3 -c "print('%.2f' % ($ok / $FLOOD_SECS / $best))") refused=$(field flood refused) failed=$(field flood failed) refused_p99_ms=$(field flood refused_p99_ms) pss_idle_kib=$idle pss_peak_kib=$peak pss_end_kib=$last after_1x=$after"
        stop_all
        sleep 2
        ;;
    unknown)
        start_palisade unknown
        start_uas unknown
        quiet=$(ramp quiet)
        d0=$(dropped_unknown)
        "$FLOODER" 127.0.0.99 127.0.0.20:5060 "$FLOOD_PPS" 3600 >"$RUN/flooder.out" 2>&1 &
        fl=$!
        PIDS+=("$fl")
        sleep 2
        flooded=$(ramp flooded)
        kill -INT "$fl" 2>/dev/null || true
        d1=$(dropped_unknown)
        rate=$(tail -1 "$RUN/flooder.out")
        stop_all
        sleep 2
        # The same flood with the kernel filter on: a copy of the configuration that says so.
        filtered=-
        if [ "$(id -u)" = 0 ]; then
            mkdir -p "$RUN/conf" && cp -r "$(dirname "$CONF")"/. "$RUN/conf/"
            kconf="$RUN/conf/$(basename "$CONF")"
            sed -i 's/^\[sip\]$/[sip]\nkernel_filter = true/' "$kconf"
            start_palisade filtered "$kconf"
            start_uas filtered
            "$FLOODER" 127.0.0.99 127.0.0.20:5060 "$FLOOD_PPS" 3600 >"$RUN/flooder-filtered.out" 2>&1 &
            PIDS+=("$!")
            sleep 2
            filtered=$(ramp filtered)
            k=$(curl -s http://127.0.0.1:9190/metrics | awk '/^palisade_sip_kernel_dropped_total/{s+=$2} END{printf "%d", s}')
            log "kernel filter: $k packets dropped by nftables, $(dropped_unknown) reached Palisade"
            stop_all
            sleep 2
        fi
        log "RESULT part=unknown quiet_max_cps=$quiet flooded_max_cps=$flooded ratio=$(python3 -c "print('%.2f' % ($flooded / max($quiet, 1)))") filtered_max_cps=$filtered flood: $rate palisade_dropped_unknown=$((d1 - d0))"
        ;;
    *) echo "unknown part $part (overload, unknown)"; exit 2 ;;
    esac
done
