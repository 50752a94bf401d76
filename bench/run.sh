#!/usr/bin/env bash
# The benchmark: proxy-std, proxy-smol, HAProxy, tinyproxy and Squid (cache
# off) and a minimal relay against direct-to-origin, with the same load, in
# one run; prints one
# Markdown table with ratios (see bench/README.md). Not part of the tests.
#   bench/run.sh [--secs N] [--only proxy-std,proxy-smol,...] [--out FILE]
#                [--idle-conns N] [--idle-tunnels N]
# Installs what it needs from Debian (as root), and stops the services
# that the install started. Exits 1 if any figure failed. Takes about 15
# minutes on 2 cores with the default 10 s per figure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Debian's packages, installed only when a program is missing; the package
# lists are refreshed only if the first try fails.
missing=()
for program in nginx wrk tinyproxy squid haproxy; do
  command -v "$program" >/dev/null 2>&1 || missing+=("$program")
done
if [ ${#missing[@]} -gt 0 ]; then
  packages="nginx-light wrk tinyproxy squid haproxy"
  echo "bench/run.sh: installing $packages (missing: ${missing[*]})" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y $packages >&2 ||
    { apt-get update >&2 && apt-get install -y $packages >&2; }
  # Debian's postinst may have started the services of what was just
  # installed: nginx on 80, Squid on 3128 and tinyproxy on 8888, the port
  # our proxy listens on by default. Stop those (the run starts its own, on
  # ports 18000-19999); a service that was already installed is left alone.
  for name in "${missing[@]}"; do
    [ "$name" = wrk ] && continue
    if service "$name" status >/dev/null 2>&1; then
      echo "bench/run.sh: stopping the $name service that installing it started" >&2
      service "$name" stop >&2 || true
    fi
  done
fi
# Our servers use ports 18000-19999, so services that were running before
# (squid on 3128, tinyproxy on 8888, nginx on 80) are left alone.

# 10,000 idle connections held by us, two descriptors per idle tunnel in
# the proxy: every process of the run inherits this limit.
ulimit -n "$(ulimit -Hn)"

cargo build -q --release -p proxy-std -p proxy-smol -p proxy-bench
exec target/release/proxy-bench run --proxy-config bench/proxy.ron "$@"
