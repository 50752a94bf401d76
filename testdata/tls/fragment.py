# Re-cuts a captured ClientHello into handshake records of the given payload sizes
# (the last record takes the rest): python3 fragment.py IN OUT 2 1000
import sys
data = open(sys.argv[1], "rb").read()
hs, i = b"", 0
while i + 5 <= len(data):
    n = int.from_bytes(data[i + 3:i + 5], "big")
    hs += data[i + 5:i + 5 + n]
    i += 5 + n
version = data[1:3]
out, at = b"", 0
for size in [int(s) for s in sys.argv[3:]] + [len(hs)]:
    part = hs[at:at + size]
    if part:
        out += b"\x16" + version + len(part).to_bytes(2, "big") + part
    at += len(part)
open(sys.argv[2], "wb").write(out)
