#!/usr/bin/env bash
# Re-records the golden traces from real clients (curl and Python) talking
# through the proxy binaries to a local origin. Run from the repository root:
#   testdata/traces/record.sh [proxy-std|proxy-smol]   # default: both
#   ONLY=REGEX testdata/traces/record.sh ...           # only matching scenarios
# Each scenario is recorded once per binary, as NAME.std.ron / NAME.smol.ron:
# the two runtimes read and wait differently, and the driver they share
# must replay both.
# Needs curl, python3 and openssl. Traces are deterministic to replay but not
# to record (timings, ports), so re-recording changes them; prefer
# re-blessing (BLESS=1 cargo test -p proxy-tests --test golden) after a core
# change, and re-record only to add or renew a scenario.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -eq 0 ]; then
  "$here/record.sh" proxy-std
  exec "$here/record.sh" proxy-smol
fi
bin=$1
short=${bin#proxy-}
root=$(cd "$here/../.." && pwd)
cargo build -q -p "$bin"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin=$(free_port)
python3 "$here/origin.py" "$origin" &
# A TLS origin for the CONNECT trace: openssl's test server with a throwaway cert.
tls=$(free_port)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" -days 1 -subj /CN=localhost 2>/dev/null
openssl s_server -quiet -accept "$tls" -cert "$work/cert.pem" -key "$work/key.pem" -www >/dev/null 2>&1 &
sleep 0.5
# The origins are on loopback, which the default policy guards; CONNECT
# must reach the TLS origin's port too.
cat > "$work/loopback.ron" <<'RON'
(policy: (allow_private_destinations: true, connect_ports: []))
RON
echo '(policy: (allow_private_destinations: false))' > "$work/strict.ron"
printf '# trace blocklist\nblocked.test   # a whole domain\n*.ads.test\n' > "$work/block.txt"
echo '(timeouts: (head_read: "1s"))' > "$work/short-head.ron"
echo '(cache: (enabled: true))' > "$work/cache.ron"
# alice:password, as `htpasswd -s` makes it.
printf 'alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n' > "$work/users"

record() {  # record NAME NOTE [proxy flags...] -- command...
  local name=$1 note=$2; shift 2
  if [ -n "${ONLY:-}" ] && ! [[ $name =~ $ONLY ]]; then return 0; fi
  local flags=()
  while [ "$1" != "--" ]; do flags+=("$1"); shift; done
  shift
  mkdir -p "$work/rec"; rm -f "$work/rec"/*
  local port; port=$(free_port)
  # From inside the work folder, so files are named as an operator would.
  (cd "$work" && exec "$root/target/debug/$bin" --listen "127.0.0.1:$port" --record rec --config loopback.ron --resolve gone.test= --resolve origin.test=127.0.0.1 --resolve blocked.test=127.0.0.1 "${flags[@]}" >/dev/null 2>&1) &
  local pid=$!
  sleep 0.3
  PROXY=$port PROXY_PID=$pid "$@" >/dev/null 2>&1 || { echo "scenario $name failed" >&2; kill $pid; exit 1; }
  sleep 0.3
  kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
  local n=0
  for f in "$work/rec"/*.ron; do
    n=$((n + 1))
    local out="$here/$name.$short.ron"
    [ "$n" -gt 1 ] && out="$here/$name-$n.$short.ron"
    python3 - "$f" "$out" "$note" <<'PY'
import json, sys
src, dst, note = sys.argv[1:]
# The note says what the trace is; a JSON string is a valid RON string.
open(dst, "w").write(open(src).read().replace('note: ""', "note: " + json.dumps(note), 1))
PY
    echo "recorded $out"
  done
}

sh_curl() { curl -sS --max-time 10 -x "http://127.0.0.1:$PROXY" "$@"; }
export -f sh_curl

record curl-get "curl GET, Content-Length response" -- bash -c "sh_curl http://origin.test:$origin/index.html"
record curl-head "curl -I: HEAD, no body despite Content-Length" -- bash -c "sh_curl -I http://127.0.0.1:$origin/head"
record curl-post-chunked "curl POST with a chunked request body" -- bash -c "printf 'hello chunked world' | sh_curl -H 'Transfer-Encoding: chunked' --data-binary @- http://127.0.0.1:$origin/upload"
record curl-chunked-response "curl GET of a chunked response with a trailer" -- bash -c "sh_curl --raw http://127.0.0.1:$origin/chunked"
record curl-keepalive "curl, two URLs on one kept-alive connection" -- bash -c "sh_curl http://127.0.0.1:$origin/a http://127.0.0.1:$origin/b"
record curl-connect-tls "curl HTTPS through a CONNECT tunnel to a local TLS server" -- bash -c "sh_curl -k https://localhost:$tls/"
record curl-dns-error "curl to an unresolvable name: 502 dns_error" -- bash -c "sh_curl http://gone.test/ ; true"
record curl-refused "curl to a closed port: 502 connection_refused" -- bash -c "sh_curl http://127.0.0.1:1/ ; true"
record python-keepalive "Python http.client, two GETs on one connection" -- bash -c "python3 '$here/clients.py' keepalive \$PROXY $origin"
record python-post "Python http.client POST with Content-Length" -- bash -c "python3 '$here/clients.py' post \$PROXY $origin"
record python-bad-framing "Python raw socket: Content-Length with Transfer-Encoding, 400 and close" -- bash -c "python3 '$here/clients.py' bad_framing \$PROXY $origin"
record python-pipelined "Python raw socket: two pipelined GETs, then half-close" -- bash -c "python3 '$here/clients.py' pipelined \$PROXY $origin"
record python-connect "Python http.client CONNECT tunnel carrying plain HTTP" -- bash -c "python3 '$here/clients.py' connect \$PROXY $origin"
record curl-blocked-domain "curl to a name on the blocklist: 403 denied_domain naming the rule" --blocklist block.txt -- bash -c "sh_curl http://www.blocked.test/ ; true"
record curl-auth "curl without credentials (407), then with them (200) on one connection" --auth-file users -- bash -c "sh_curl --proxy-anyauth -U alice:password http://127.0.0.1:$origin/private"
record python-ssrf-literal "Python http.client to a private IP literal under the default policy: 403 destination_ip_prohibited" --config strict.ron -- bash -c "python3 '$here/clients.py' private_literal \$PROXY $origin"
record curl-sni-denied "curl HTTPS with SNI blocked.test through a CONNECT to an IP literal: judged by the SNI, refused with a TLS alert, logged 403 denied_tls" --blocklist block.txt -- bash -c "sh_curl -k --connect-to blocked.test:443:127.0.0.1:$tls https://blocked.test/ ; true"
record python-head-timeout "Python raw socket: half a head, then silence: 408 after head_read" --config short-head.ron -- bash -c "python3 '$here/clients.py' head_timeout \$PROXY $origin"
record curl-shutdown "curl GET of a slow response; SIGTERM while it is in flight: answered whole with Connection: close" -- bash -c "sh_curl http://127.0.0.1:$origin/slow & sleep 0.4; kill -TERM \$PROXY_PID; wait"
record python-upgrade "Python raw socket: an upgrade (101) to an echo protocol, relayed both ways" -- bash -c "python3 '$here/clients.py' upgrade \$PROXY $origin"
record python-upstream-reset "Python http.client: the origin resets in the middle of the body; the client is cut off" -- bash -c "python3 '$here/clients.py' reset \$PROXY $origin"
record curl-spliced-body "curl GET of a 256 KiB body, which goes from the origin to the client unread (splice)" -- bash -c "sh_curl -o /dev/null http://127.0.0.1:$origin/big"
record curl-cache-hit "curl, one URL twice on a connection with the cache on: a miss that is stored, then a hit from memory" --config cache.ron -- bash -c "sh_curl http://127.0.0.1:$origin/cacheable http://127.0.0.1:$origin/cacheable"
record python-cache-revalidate "Python http.client with the cache on: a GET, then the same once stale, revalidated with If-None-Match and answered from the refreshed entry after a 304" --config cache.ron -- bash -c "python3 '$here/clients.py' revalidate \$PROXY $origin"
record python-cache-collapsed "Python raw sockets with the cache on: two GETs of one slow resource 100 ms apart; the second waits for the first one's fetch (collapsed) and is answered from it" --config cache.ron -- bash -c "python3 '$here/clients.py' collapsed \$PROXY $origin"
