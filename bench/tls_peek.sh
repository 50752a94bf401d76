#!/usr/bin/env bash
# The cost of the TLS ClientHello peek on CONNECT tunnels: tunnel set-up
# rate (new connection, CONNECT, full TLS handshake to a local rustls
# origin, one GET) through each release binary with
# `policy: (tls: (peek: false))`, the default, and `delay_connect: true`,
# with the ratio to `peek: false`. Loopback only; needs nothing but cargo.
#   bench/tls_peek.sh                 # 300 tunnels a round, 7 rounds, 1 and 8 clients
#   TLS_PEEK_N=3000 TLS_PEEK_ROUNDS=5 TLS_PEEK_CLIENTS=1,4,16 bench/tls_peek.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# The test builds the release binaries itself before starting them.
cargo test -q --release -p proxy-tests --test tls_peek_bench -- \
  --ignored --nocapture --test-threads 1 2>&1 | grep -v '^$'
