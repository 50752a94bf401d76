# Accept one TCP connection on 127.0.0.1:PORT, save the first bytes the client sends
# (until it goes quiet for 1.5 s, waiting for a ServerHello that never comes), then close.
import socket, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(1)
print("listening", flush=True)
c, _ = s.accept(); c.settimeout(1.5)
data = b""
try:
    while True:
        chunk = c.recv(65536)
        if not chunk: break
        data += chunk
except socket.timeout:
    pass
open(out, "wb").write(data)
print("saved", len(data), flush=True)
c.close()
