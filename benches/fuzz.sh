#!/usr/bin/env bash
# Runs every cargo-fuzz target for MINUTES minutes each (default 5), seeded from the vendored
# corpora, and prints one line per target: executions, coverage, crashes found.
#
#   benches/fuzz.sh [MINUTES] [TARGET...]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). Crashes are
# left in fuzz/artifacts/TARGET/; each one found becomes a regression test (see README).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
minutes=${1:-5}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(parse_message sdp_rewrite config_load engine)

seed() {
    local t=$1 dir=fuzz/corpus/$1
    mkdir -p "$dir"
    case $t in
    parse_message)
        cp -n tests/corpus/rfc4475/*.dat tests/corpus/rfc5118/* "$dir"/ 2>/dev/null || true
        find tests/corpus/protos-c07-sip -type f | head -500 | xargs -I{} cp -n {} "$dir"/ || true ;;
    sdp_rewrite)
        # The SDP bodies of the corpus messages.
        for f in tests/corpus/rfc4475/*.dat; do
            python3 - "$f" "$dir/$(basename "$f").sdp" <<'PY'
import sys
data = open(sys.argv[1], 'rb').read()
for sep in (b'\r\n\r\n', b'\n\n'):
    if sep in data:
        body = data.split(sep, 1)[1]
        if body.startswith(b'v=0'):
            open(sys.argv[2], 'wb').write(body)
        break
PY
        done ;;
    config_load)
        cp -n policies/default.toml "$dir/default.toml" || true
        cp -n policies/example/border.toml "$dir/border.toml" || true ;;
    engine)
        # Records of the engine target: op (0: from A's core), 2-byte length, message.
        for f in tests/corpus/rfc4475/*.dat; do
            python3 - "$f" "$dir/$(basename "$f").rec" <<'PY'
import sys
data = open(sys.argv[1], 'rb').read()[:65535]
open(sys.argv[2], 'wb').write(bytes([0]) + len(data).to_bytes(2, 'big') + data + bytes([3, 0, 0]))
PY
        done ;;
    esac
}

printf '%-14s %12s %8s %8s %s\n' target executions cov ft crashes
for t in "${targets[@]}"; do
    seed "$t"
    log=fuzz/target/fuzz-$t.log
    mkdir -p fuzz/target
    (cd fuzz && cargo +nightly fuzz run "$t" "corpus/$t" -- \
        -max_total_time=$((minutes * 60)) -print_final_stats=1) >"$log" 2>&1 || true
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
    crashes=$(find "fuzz/artifacts/$t" -type f 2>/dev/null | wc -l)
    printf '%-14s %12s %8s %8s %s\n' "$t" "${execs:-0}" "${cov:-0}" "${ft:-0}" "$crashes"
done
