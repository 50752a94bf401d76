#!/usr/bin/env python3
"""Slowloris and friends against one proxy binary, while a normal client
keeps making keep-alive requests; loopback only, bounded in time.

    bench/attack.py target/release/proxy-smol            # 5,000 / 1,000 / 1,000, 60 s
    bench/attack.py target/release/proxy-std --short     # 500 / 100 / 100, 38 s (CI)

Attackers, all opened at the start:
  - slow heads: a request head dribbled one byte every 5 s, never
    finished: closed at `timeouts.head_read` (15 s) with 408;
  - stalled bodies: a whole head announcing 1 MB, 10 bytes of it, then
    nothing: closed at `timeouts.body_read` (20 s). The origin here
    answers at once, as one refusing an upload early would, so the client
    has that answer; an origin that waits for the body makes it a 408;
  - silent tunnels: CONNECT answered 200, then no ClientHello: after
    `policy.tls.hello_timeout` (10 s) silence counts as not TLS, which
    `policy.tls.not_tls: Allow` (the default) relays as a plain tunnel,
    closed after `timeouts.tunnel_idle` without a byte (set to 20 s here,
    5 minutes by default): 30 s in all.
Meanwhile one client sends GET after GET on one keep-alive connection.

Prints, then checks (exit 1 on any failure): the normal client's p50/p99
and errors (p99 must stay under --p99-ms, 20 by default), when each kind
of attacker was closed (each within its timeout plus --slack seconds,
none earlier than the timeout), and the proxy's peak RSS (under
--max-rss-mib). Needs only Python 3.
"""

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


async def origin_handler(reader, writer):
    body = b"x" * 1024
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def hold_handler(reader, writer):
    # The tunnels' destination: accepts and waits.
    try:
        await reader.read()
    except ConnectionError:
        pass
    writer.close()


async def open_conn(proxy):
    return await asyncio.open_connection(proxy[0], proxy[1], limit=1 << 16)


async def wait_closed(reader, start, closes, kind):
    """Reads until the proxy closes; records when, and what it said."""
    said = b""
    try:
        while True:
            chunk = await reader.read(4096)
            if not chunk:
                break
            said += chunk
    except ConnectionError:
        pass
    closes.append((kind, time.monotonic() - start, said[:12]))


async def slow_head(proxy, target, start, closes, stop):
    try:
        reader, writer = await open_conn(proxy)
    except OSError as e:
        closes.append(("slow-head", -1.0, str(e).encode()))
        return
    waiter = asyncio.ensure_future(wait_closed(reader, start, closes, "slow-head"))
    head = f"GET {target} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode() + b"a" * 1000
    for i in range(len(head)):
        if waiter.done() or stop.is_set():
            break
        try:
            writer.write(head[i:i + 1])
            await writer.drain()
        except ConnectionError:
            break
        try:
            await asyncio.wait_for(asyncio.shield(waiter), 5)
        except asyncio.TimeoutError:
            pass
    await waiter
    writer.close()


async def stalled_body(proxy, target, start, closes):
    try:
        reader, writer = await open_conn(proxy)
        writer.write(f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".encode() + b"0123456789")
        await writer.drain()
    except OSError as e:
        closes.append(("stalled-body", -1.0, str(e).encode()))
        return
    await wait_closed(reader, start, closes, "stalled-body")
    writer.close()


async def silent_tunnel(proxy, dest, start, closes):
    try:
        reader, writer = await open_conn(proxy)
        writer.write(f"CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n".encode())
        await writer.drain()
    except OSError as e:
        closes.append(("silent-tunnel", -1.0, str(e).encode()))
        return
    await wait_closed(reader, start, closes, "silent-tunnel")
    writer.close()


async def normal_client(proxy, target, stop, latencies, errors):
    reader = writer = None
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    while not stop.is_set():
        try:
            if writer is None:
                reader, writer = await open_conn(proxy)
            t0 = time.monotonic()
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head[:40])
                writer.close()
                writer = None
                continue
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await asyncio.wait_for(reader.readexactly(length), 5)
            latencies.append(time.monotonic() - t0)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            errors.append(repr(e).encode())
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.01)


async def main_async(args, proxy_addr, origin_port, hold_port, pid):
    target = f"http://127.0.0.1:{origin_port}/1k"
    dest = f"127.0.0.1:{hold_port}"
    start = time.monotonic()
    closes = []
    stop = asyncio.Event()
    latencies, errors = [], []
    rss = [rss_kib(pid)]

    async def sample():
        while not stop.is_set():
            rss.append(rss_kib(pid))
            await asyncio.sleep(0.5)

    tasks = [asyncio.ensure_future(sample()),
             asyncio.ensure_future(normal_client(proxy_addr, target, stop, latencies, errors))]
    # Opened in batches so the listen backlog is not the test.
    for kind, n in (("slow", args.slow), ("body", args.bodies), ("tunnel", args.tunnels)):
        for i in range(n):
            if kind == "slow":
                tasks.append(asyncio.ensure_future(slow_head(proxy_addr, target, start, closes, stop)))
            elif kind == "body":
                tasks.append(asyncio.ensure_future(stalled_body(proxy_addr, target, start, closes)))
            else:
                tasks.append(asyncio.ensure_future(silent_tunnel(proxy_addr, dest, start, closes)))
            if i % 200 == 199:
                await asyncio.sleep(0.05)
    opened = time.monotonic() - start
    await asyncio.sleep(max(0.0, args.secs - (time.monotonic() - start)))
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return closes, latencies, errors, rss, opened


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("binary")
    p.add_argument("--short", action="store_true", help="500/100/100 attackers for 38 s (CI)")
    p.add_argument("--slow", type=int, default=5000)
    p.add_argument("--bodies", type=int, default=1000)
    p.add_argument("--tunnels", type=int, default=1000)
    p.add_argument("--secs", type=float, default=60)
    p.add_argument("--p99-ms", type=float, default=20)
    p.add_argument("--slack", type=float, default=3)
    p.add_argument("--max-rss-mib", type=float, default=200)
    args = p.parse_args()
    if args.short:
        args.slow, args.bodies, args.tunnels, args.secs = 500, 100, 100, 38

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    origin = loop.run_until_complete(asyncio.start_server(origin_handler, "127.0.0.1", 0))
    hold = loop.run_until_complete(asyncio.start_server(hold_handler, "127.0.0.1", 0))
    origin_port = origin.sockets[0].getsockname()[1]
    hold_port = hold.sockets[0].getsockname()[1]

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    proxy_port = s.getsockname()[1]
    s.close()
    config = tempfile.NamedTemporaryFile("w", suffix=".ron", delete=False)
    # Defaults for every timeout but the tunnels' idle one (5 minutes);
    # loopback destinations allowed, any port.
    config.write("(policy: (allow_private_destinations: true, connect_ports: []),"
                 " timeouts: (tunnel_idle: \"20s\"))\n")
    config.close()
    proxy = subprocess.Popen(
        [args.binary, "--listen", f"127.0.0.1:{proxy_port}", "--quiet", "--config", config.name],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", proxy_port), 1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proxy.poll() is not None:
                sys.exit(f"the proxy did not start: {proxy.stderr.read().decode()}")
            time.sleep(0.05)
    # The port answers before start-up is over (executors, the log writer
    # and the probe connection still come and go): count once two reads
    # 200 ms apart agree (at most 5 s), or it reads 13 before and 17 after at random.
    fds_before = -1
    for _ in range(25):
        time.sleep(0.2)
        fds_now = len(os.listdir(f"/proc/{proxy.pid}/fd"))
        if fds_now == fds_before:
            break
        fds_before = fds_now
    try:
        closes, latencies, errors, rss, opened = loop.run_until_complete(
            main_async(args, ("127.0.0.1", proxy_port), origin_port, hold_port, proxy.pid))
        time.sleep(1)
        fds_after = len(os.listdir(f"/proc/{proxy.pid}/fd"))
        alive = proxy.poll() is None
    finally:
        # A second SIGTERM ends the shutdown's grace period at once.
        proxy.terminate()
        try:
            proxy.wait(2)
        except subprocess.TimeoutExpired:
            proxy.terminate()
            proxy.wait(10)
        os.unlink(config.name)

    failures = []
    name = os.path.basename(args.binary)
    print(f"{name}: {args.slow} slow heads, {args.bodies} stalled bodies, {args.tunnels} silent tunnels "
          f"(opened in {opened:.1f} s), {args.secs:.0f} s")
    latencies.sort()
    if latencies:
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(f"  normal client: {len(latencies)} requests, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
              f"max {latencies[-1] * 1000:.1f} ms, {len(errors)} errors")
        if p99 > args.p99_ms:
            failures.append(f"normal client p99 {p99:.1f} ms over {args.p99_ms} ms")
    else:
        failures.append("the normal client completed no request")
    if errors:
        failures.append(f"the normal client saw {len(errors)} errors, first {errors[0][:60]!r}")
    for kind, n, timeout in (("slow-head", args.slow, 15), ("stalled-body", args.bodies, 20),
                             ("silent-tunnel", args.tunnels, 10 + 20)):
        times = sorted(t for k, t, _ in closes if k == kind)
        said = {s for k, _, s in closes if k == kind}
        if n == 0:
            continue
        if len(times) < n:
            failures.append(f"{kind}: only {len(times)} of {n} closed by the proxy")
        if times:
            print(f"  {kind}: {len(times)} of {n} closed, after {times[0]:.1f} to {times[-1]:.1f} s "
                  f"(timeout {timeout} s); answers {sorted(said)}")
            if times[0] < 0:
                failures.append(f"{kind}: a connection failed to open")
            elif times[0] < timeout - 0.5:
                failures.append(f"{kind}: closed after {times[0]:.1f} s, before its {timeout} s timeout")
            if times[-1] > timeout + args.slack + opened:
                failures.append(f"{kind}: the last closed after {times[-1]:.1f} s")
    peak = max(rss) / 1024
    print(f"  proxy RSS: {rss[0] / 1024:.1f} MiB at start, peak {peak:.1f} MiB; "
          f"descriptors {fds_before} before, {fds_after} after")
    if peak > args.max_rss_mib:
        failures.append(f"peak RSS {peak:.1f} MiB over {args.max_rss_mib} MiB")
    if fds_after > fds_before + 2:
        failures.append(f"descriptors: {fds_before} before, {fds_after} after")
    if not alive:
        failures.append("the proxy exited")
    for f in failures:
        print(f"  FAILED: {f}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
