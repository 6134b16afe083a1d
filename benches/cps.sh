#!/usr/bin/env bash
# Palisade in the shared capacity bench (../shared/bench/run-sip-cps.sh), beside Kamailio as a
# plain stateful proxy, measured in the same run (interleaved ramp by ramp). Palisade hides the
# topology and anchors every call's media in user space (benches/anchor.toml).
#
#   benches/cps.sh                       # plain + external, the default ramp
#   STEPS="1000 2000 3000" REPEATS=1 benches/cps.sh plain topoh-rtpengine
#
# PALISADE_BIN picks the binary (default target/release/palisade, built here if missing) and
# ANCHOR_CONFIG the configuration (default benches/anchor.toml).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH="${BENCH:-../shared/bench}"
BIN="${PALISADE_BIN:-target/release/palisade}"
CONF="${ANCHOR_CONFIG:-benches/anchor.toml}"
[ -x "$BIN" ] || cargo build --release --bin palisade
[ -x "$BENCH/run-sip-cps.sh" ] || { echo "no shared bench at $BENCH (set BENCH)"; exit 2; }
variants=("$@")
((${#variants[@]})) || variants=(plain)
# The open-files limit of the systemd unit (LimitNOFILE=1048576): four relay sockets per call.
export PROXY_START_HOOK="ulimit -n 1048576 2>/dev/null; exec $BIN run --config $CONF"
exec "$BENCH/run-sip-cps.sh" "${variants[@]}" external
