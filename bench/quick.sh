#!/usr/bin/env bash
# A quick check, not the benchmark: keep-alive 1 KiB requests per second
# through each binary against the same origin directly, and the proxy's
# peak RSS while relaying a 1 GiB download.
# Needs nginx and wrk (apt-get install nginx-light wrk). Loopback only.
#   bench/quick.sh [seconds]
set -euo pipefail
secs=${1:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; nginx -p "$work" -c nginx.conf -s stop 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$root"
cargo build -q --release -p proxy-std -p proxy-smol

chmod 755 "$work"
mkdir -p "$work/www" "$work/logs"
head -c 1024 /dev/urandom > "$work/www/1k"
truncate -s 1G "$work/www/1g"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
error_log $work/logs/error.log;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:18080; root $work/www; }
}
CONF
nginx -p "$work" -c nginx.conf
sleep 0.3

cat > "$work/abs.lua" <<'LUA'
request = function() return wrk.format("GET", "http://127.0.0.1:18080/1k") end
LUA

# Requests/s and p99; any non-2xx response or socket error fails the run.
rps() {
  local out; out=$(wrk -t2 -c64 -d"${secs}s" --latency "$@")
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then echo "errors in run:" >&2; echo "$out" >&2; exit 1; fi
  awk '/Requests\/sec/ {r=$2} / 99%/ {p=$2} END {print r " req/s, p99 " p}' <<<"$out"
}
check() {  # check URL [curl args]: the 1 KiB file arrives whole
  local n; n=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "$@")
  [ "$n" = "200 1024" ] || { echo "check failed: $n for $*" >&2; exit 1; }
}

check http://127.0.0.1:18080/1k
echo "direct:      $(rps http://127.0.0.1:18080/1k)"
for bin in proxy-std proxy-smol; do
  "target/release/$bin" --listen 127.0.0.1:18888 --quiet 2>/dev/null &
  pid=$!
  sleep 0.3
  check -x http://127.0.0.1:18888 http://127.0.0.1:18080/1k
  echo "$bin: $(rps -s "$work/abs.lua" http://127.0.0.1:18888/)"
  base=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  curl -s -x http://127.0.0.1:18888 -o /dev/null -w "  1 GiB download: %{size_download} bytes in %{time_total}s" http://127.0.0.1:18080/1g
  echo ", peak RSS before ${base} KiB, after $(awk '/VmHWM/ {print $2}' /proc/$pid/status) KiB"
  kill $pid; wait $pid 2>/dev/null || true
done
