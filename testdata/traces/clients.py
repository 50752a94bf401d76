#!/usr/bin/env python3
"""Python clients used to record golden traces through the proxy.

Usage: clients.py SCENARIO PROXY_PORT ORIGIN_PORT
"""
import http.client
import socket
import sys
import time


def keepalive(proxy, origin):
    """Two GETs on one proxy connection with http.client."""
    c = http.client.HTTPConnection("127.0.0.1", proxy)
    for path in ("/one", "/two"):
        c.request("GET", "http://127.0.0.1:%d%s" % (origin, path))
        r = c.getresponse()
        assert r.status == 200, r.status
        r.read()
    c.close()


def post(proxy, origin):
    """A POST with a Content-Length body."""
    c = http.client.HTTPConnection("127.0.0.1", proxy)
    c.request("POST", "http://127.0.0.1:%d/form" % origin, body=b"name=value&x=1",
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    assert r.status == 200, r.status
    r.read()
    c.close()


def raw(proxy, data):
    s = socket.create_connection(("127.0.0.1", proxy))
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out


def bad_framing(proxy, origin):
    """Content-Length and Transfer-Encoding together: 400 and close."""
    out = raw(proxy, b"POST http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % origin)
    assert out.startswith(b"HTTP/1.1 400 "), out


def pipelined(proxy, origin):
    """Two requests in one write, answered in order; the client half-closes."""
    req = b"GET http://127.0.0.1:%d/p%d HTTP/1.1\r\nHost: x\r\n\r\n"
    out = raw(proxy, req % (origin, 1) + req % (origin, 2))
    assert out.index(b"/p1") < out.index(b"/p2"), out


def connect(proxy, origin):
    """A CONNECT tunnel carrying a plain HTTP request to the origin."""
    c = http.client.HTTPConnection("127.0.0.1", proxy)
    c.set_tunnel("127.0.0.1", origin)
    c.request("GET", "/through-tunnel")
    r = c.getresponse()
    assert r.status == 200, r.status
    r.read()
    c.close()


def private_literal(proxy, origin):
    """With the default policy (no loopback allowance), a private IP literal
    is refused before any connection is made."""
    c = http.client.HTTPConnection("127.0.0.1", proxy)
    c.request("GET", "http://10.0.0.1:%d/internal" % origin)
    r = c.getresponse()
    assert r.status == 403, r.status
    r.read()
    c.close()


def head_timeout(proxy, origin):
    """Half a request head, then silence: 408 when head_read runs out."""
    s = socket.create_connection(("127.0.0.1", proxy))
    s.sendall(b"GET http://127.0.0.1:%d/late HTTP/1.1\r\nHo" % origin)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    assert out.startswith(b"HTTP/1.1 408 "), out


def upgrade(proxy, origin):
    """An upgrade (101) to the origin's echo protocol, two round trips."""
    s = socket.create_connection(("127.0.0.1", proxy))
    s.sendall(b"GET http://127.0.0.1:%d/upgrade HTTP/1.1\r\nHost: x\r\n"
              b"Upgrade: echo\r\nConnection: Upgrade\r\n\r\n" % origin)
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    for word in (b"ping", b"pong"):
        s.sendall(word)
        got = b""
        while len(got) < len(word):
            got += s.recv(64)
        assert got == word, got
    s.close()


def reset(proxy, origin):
    """The origin resets in the middle of the body: the client is cut off."""
    c = http.client.HTTPConnection("127.0.0.1", proxy)
    c.request("GET", "http://127.0.0.1:%d/reset" % origin)
    r = c.getresponse()
    assert r.status == 200, r.status
    try:
        r.read()
        raise AssertionError("the body should be cut short")
    except http.client.IncompleteRead:
        pass
    c.close()


def revalidate(proxy, origin):
    """A GET of a response fresh for a second, then the same GET once it
    went stale: the cache asks with If-None-Match, the origin says 304."""
    c = http.client.HTTPConnection("127.0.0.1", proxy)
    for pause in (1.2, 0):
        c.request("GET", "http://127.0.0.1:%d/revalidate" % origin)
        r = c.getresponse()
        assert r.status == 200, r.status
        r.read()
        time.sleep(pause)
    c.close()


def collapsed(proxy, origin):
    """Two clients ask for the same slow resource 100 ms apart: the second
    waits for the first one's fetch instead of asking the origin."""
    request = b"GET http://127.0.0.1:%d/slow-cacheable HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % origin
    first = socket.create_connection(("127.0.0.1", proxy))
    first.sendall(request)
    time.sleep(0.1)
    second = socket.create_connection(("127.0.0.1", proxy))
    second.sendall(request)
    for s in (first, second):
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        assert out.startswith(b"HTTP/1.1 200"), out
        s.close()


if __name__ == "__main__":
    globals()[sys.argv[1]](int(sys.argv[2]), int(sys.argv[3]))
