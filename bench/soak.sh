#!/usr/bin/env bash
# The soak: many keep-alive clients and a few hundred CONNECT tunnels
# through one proxy binary for minutes; every response and every tunnel
# byte checked, RSS sampled every 5 s (printed as a curve), descriptors
# counted before and after; then SIGTERM under load (up to 500 clients):
# the proxy must exit 0 within its grace, every response a client got
# must have its access record, and none may be dropped. Exits 1 on any
# failure, memory that keeps growing after the warm-up, a descriptor left
# behind, or a record lost at shutdown (bench/README.md, "The soak").
#   bench/soak.sh                              # proxy-smol, 8,000 clients, 200 tunnels, 10 minutes
#   bench/soak.sh target/release/proxy-std --conns 2000 --secs 60
# Needs nginx and wrk (bench/run.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
# Two descriptors per client and per tunnel in the proxy, one per client in wrk.
ulimit -n "$(ulimit -Hn)"
cargo build -q --release -p proxy-std -p proxy-smol -p proxy-bench
binary=${1:-target/release/proxy-smol}
[ $# -gt 0 ] && shift
exec target/release/proxy-bench soak "$binary" "$@"
