#!/usr/bin/env python3
"""A small HTTP/1.1 origin for recording golden traces: keep-alive, GET/HEAD
of generated content, POST/PUT echoing what was received (Content-Length or
chunked bodies), a chunked response at /chunked, a slow one at /slow
(answers after a second), a 256 KiB one at /big, an upgrade to an echo
protocol at /upgrade (101, then every byte back), and a connection reset
in the middle of a body at /reset; for the cache, /cacheable (fresh for an
hour), /revalidate (fresh for a second, then 304 to its ETag) and
/slow-cacheable (fresh for an hour, after half a second).

Usage: origin.py PORT
"""
import socket
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "origin/1"

    def log_message(self, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def reply(self, status, body, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(1)
        if self.path.startswith("/big"):
            self.reply(200, bytes(b"abcdefghijklmnopqrstuvwxyz012345"[i % 32] for i in range(256 * 1024)))
            return
        if self.path.startswith("/upgrade"):
            self.send_response(101)
            self.send_header("Upgrade", "echo")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.connection.recv(4096)
                if not data:
                    break
                self.connection.sendall(data)
            self.close_connection = True
            return
        if self.path.startswith("/reset"):
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it")
            self.wfile.flush()
            time.sleep(0.2)
            # SO_LINGER 0: the close is a reset, not an end of stream.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if self.path.startswith("/cacheable"):
            self.reply(200, b"stored once, served twice\n",
                       [("Cache-Control", "max-age=3600"), ("ETag", '"c1"')])
            return
        if self.path.startswith("/slow-cacheable"):
            time.sleep(0.5)
            self.reply(200, b"fetched once for everyone\n", [("Cache-Control", "max-age=3600")])
            return
        if self.path.startswith("/revalidate"):
            fresh = [("Cache-Control", "max-age=1"), ("ETag", '"r1"')]
            if self.headers.get("If-None-Match") == '"r1"':
                self.send_response(304)
                for k, v in fresh:
                    self.send_header(k, v)
                self.end_headers()
                return
            self.reply(200, b"still the same\n", fresh)
            return
        if self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Checksum")
            self.end_headers()
            for piece in (b"first chunk\n", b"second chunk\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\nX-Checksum: 42\r\n\r\n")
            return
        self.reply(200, ("you asked for %s\n" % self.path).encode())

    do_HEAD = do_GET

    def do_POST(self):
        body = self.read_body()
        self.reply(200, b"received %d bytes: %s\n" % (len(body), body[:64]))

    do_PUT = do_POST


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
