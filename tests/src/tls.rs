//! TLS for the tests of the ClientHello peek on CONNECT tunnels: a
//! throwaway self-signed certificate, a TLS origin on loopback that
//! counts what reaches it, and a TLS client that goes through a proxy's
//! tunnel and reports how the handshake ended (a response, an alert, a
//! bare close).
//!
//! rustls with the `ring` provider on both sides; nothing is verified
//! against anything but the certificate made here.

use crate::IO_TIMEOUT;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{AlertDescription, ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The names the test certificate is valid for (and 127.0.0.1).
pub const CERT_NAMES: &[&str] = &["good.test", "other.test", "blocked.test", "bench.test"];

/// The TLS alert record a proxy sends before closing a refused tunnel:
/// TLS 1.2 record version, fatal (2), access_denied (49).
pub const ACCESS_DENIED_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31];

/// `200 Connection established`, as the proxy sends it.
pub const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

struct Identity {
    cert: CertificateDer<'static>,
    key: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

/// The certificate and its key, made once per process.
fn identity() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| {
        let mut names: Vec<String> = CERT_NAMES.iter().map(|n| n.to_string()).collect();
        names.push("127.0.0.1".to_owned());
        let made = rcgen::generate_simple_self_signed(names).expect("make a test certificate");
        Identity {
            cert: made.cert.der().clone(),
            key: made.signing_key.serialize_der(),
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
        }
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The origin's configuration: the test certificate, TLS 1.2 and 1.3.
pub fn server_config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let id = identity();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key.clone()));
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![id.cert.clone()], key)
            .expect("server certificate");
        Arc::new(config)
    }))
}

/// A client configuration trusting only the test certificate. `sni`
/// off: the ClientHello carries no server_name extension whatever name
/// is verified. Each call makes a new one, so no session is resumed
/// across calls.
pub fn client_config(sni: bool) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(identity().cert.clone())
        .expect("trust the test certificate");
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.enable_sni = sni;
    Arc::new(config)
}

/// `name` as a rustls server name (a DNS name or an IP address).
pub fn server_name(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap_or_else(|e| panic!("server name {name:?}: {e}"))
}

/// `openssl s_server -www` on 127.0.0.1 with the test certificate: a TLS
/// origin as lenient as the ones real clients meet (it ignores an SNI
/// that is not a host name, which rustls refuses), answering every
/// request with `HTTP/1.0 200 ok` and a status page. Killed on drop.
pub struct OpensslOrigin {
    port: u16,
    child: std::process::Child,
    _files: [crate::TempFile; 2],
}

impl OpensslOrigin {
    /// Starts one (`openssl` must be on PATH) and waits until it accepts.
    pub fn start() -> OpensslOrigin {
        let id = identity();
        let cert = crate::TempFile::new("origin-cert.pem", &id.cert_pem);
        let key = crate::TempFile::new("origin-key.pem", &id.key_pem);
        let port = crate::free_port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert.path())
            .arg("-key")
            .arg(key.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let origin = OpensslOrigin {
            port,
            child,
            _files: [cert, key],
        };
        let deadline = Instant::now() + IO_TIMEOUT;
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        origin
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for OpensslOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicUsize,
    finished: AtomicUsize,
    bytes_in: AtomicU64,
    handshakes: AtomicUsize,
    server_names: Mutex<Vec<Option<String>>>,
    stop: AtomicBool,
}

/// A TLS origin on 127.0.0.1 with the test certificate. On each
/// connection: the handshake, one request head, then
/// `200 OK` with the body `hello over TLS, sni=<name or ->` and
/// `Connection: close`, a close_notify and the close. Counts
/// connections, the bytes they brought (handshake included) and the
/// names clients asked for.
pub struct TlsOrigin {
    addr: SocketAddr,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for TlsOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOrigin")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TlsOrigin {
    /// Starts one, each connection on its own thread.
    pub fn start() -> TlsOrigin {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind TLS origin on loopback");
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let s = Arc::clone(&stats);
        let config = server_config();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let (s, config) = (Arc::clone(&s), Arc::clone(&config));
                std::thread::spawn(move || {
                    serve_tls(stream, config, &s);
                    s.finished.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        TlsOrigin { addr, stats }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    /// Connections that have ended.
    pub fn finished(&self) -> usize {
        self.stats.finished.load(Ordering::SeqCst)
    }

    /// Bytes received on all connections so far.
    pub fn bytes_received(&self) -> u64 {
        self.stats.bytes_in.load(Ordering::SeqCst)
    }

    /// Handshakes completed.
    pub fn handshakes(&self) -> usize {
        self.stats.handshakes.load(Ordering::SeqCst)
    }

    /// The SNI of each completed handshake, in order.
    pub fn server_names(&self) -> Vec<Option<String>> {
        self.stats.server_names.lock().unwrap().clone()
    }

    /// Waits until every accepted connection has ended; panics after
    /// [`IO_TIMEOUT`].
    pub fn wait_idle(&self) {
        let deadline = Instant::now() + IO_TIMEOUT;
        while self.finished() < self.connections() {
            assert!(
                Instant::now() < deadline,
                "TLS origin: {} of {} connections still open",
                self.connections() - self.finished(),
                self.connections()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.stats.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A socket that counts what it reads.
struct Counting<'a> {
    stream: TcpStream,
    count: &'a AtomicU64,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

fn serve_tls(stream: TcpStream, config: Arc<ServerConfig>, stats: &Stats) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut io = Counting {
        stream,
        count: &stats.bytes_in,
    };
    let Ok(mut conn) = ServerConnection::new(config) else {
        return;
    };
    while conn.is_handshaking() {
        if conn.complete_io(&mut io).is_err() {
            // Drain what is left so the count is complete.
            let mut sink = [0u8; 4096];
            while matches!(io.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
    }
    let sni = conn.server_name().map(str::to_owned);
    stats.handshakes.fetch_add(1, Ordering::SeqCst);
    stats.server_names.lock().unwrap().push(sni.clone());
    let mut tls = rustls::Stream::new(&mut conn, &mut io);
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let body = format!("hello over TLS, sni={}", sni.as_deref().unwrap_or("-"));
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if tls.write_all(response.as_bytes()).is_err() {
        return;
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let _ = io.stream.shutdown(Shutdown::Write);
    // Wait for the peer's close so ours is a FIN, not a reset.
    let _ = io.stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 4096];
    while matches!(io.read(&mut sink), Ok(n) if n > 0) {}
}

/// Connects to `proxy`, sends `CONNECT target`, and reads the response
/// head byte by byte (so nothing after it is consumed). Returns the
/// socket (nodelay, [`IO_TIMEOUT`] on reads and writes) and the head.
pub fn connect_tunnel_raw(proxy: SocketAddr, target: &str) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect_timeout(&proxy, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {proxy}: {e}"));
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .expect("send CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => break,
            Err(e) => panic!(
                "reading the CONNECT response: {e}; got {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    (stream, head)
}

/// [`connect_tunnel_raw`], asserting the answer is exactly
/// [`ESTABLISHED`].
pub fn connect_tunnel(proxy: SocketAddr, target: &str) -> TcpStream {
    let (stream, head) = connect_tunnel_raw(proxy, target);
    assert_eq!(
        String::from_utf8_lossy(&head),
        String::from_utf8_lossy(ESTABLISHED),
        "CONNECT {target}"
    );
    stream
}

/// Reads until the peer closes (EOF or reset); panics if nothing ends
/// the stream within its read timeout.
pub fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return out
            }
            Err(e) => panic!("stream not closed: {e}; read so far {out:02x?}"),
        }
    }
}

/// The first flight rustls sends for `name` with `config`: the
/// ClientHello record(s), and the connection that continues from there.
pub fn client_hello(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> (ClientConnection, Vec<u8>) {
    let mut conn = ClientConnection::new(config, name).expect("client connection");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("write into a Vec");
    }
    (conn, hello)
}

/// How the client sends its ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloWrite {
    /// In one write.
    Whole,
    /// One byte per write (the socket is nodelay), with this pause
    /// between writes.
    Bytewise(Duration),
    /// Re-cut into TLS records of at most this many payload bytes (see
    /// [`fragment_records`]), one write per record.
    Records(usize),
}

/// How a TLS exchange through a tunnel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsOutcome {
    /// The handshake completed and the whole response arrived: its bytes.
    Response(Vec<u8>),
    /// The peer sent this alert.
    Alert(AlertDescription),
    /// The connection closed (EOF or reset) without an alert; whether
    /// the handshake had completed.
    Closed {
        /// The handshake had completed.
        handshake_done: bool,
    },
    /// Anything else (a certificate error, a timeout, ...).
    Failed(String),
}

impl TlsOutcome {
    /// The response as text; panics on any other outcome.
    pub fn text(&self) -> String {
        match self {
            TlsOutcome::Response(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("expected a response over TLS, got {other:?}"),
        }
    }
}

/// Over `stream` (an established tunnel): a TLS handshake for `name`
/// with `config`, the hello sent as `hello`, then
/// `GET / HTTP/1.1` with `Host: host` and `Connection: close`, and
/// everything the server sends until its close_notify.
pub fn tls_get(
    stream: &mut TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    host: &str,
    hello: HelloWrite,
) -> TlsOutcome {
    let (mut conn, first) = client_hello(config, name);
    let sent = match hello {
        HelloWrite::Whole => stream.write_all(&first),
        HelloWrite::Bytewise(pause) => first.iter().try_for_each(|b| {
            stream.write_all(std::slice::from_ref(b))?;
            std::thread::sleep(pause);
            Ok(())
        }),
        HelloWrite::Records(size) => {
            let records = fragment_records(&first, size);
            let mut rest = &records[..];
            let mut result = Ok(());
            while rest.len() >= 5 && result.is_ok() {
                let len = 5 + u16::from_be_bytes([rest[3], rest[4]]) as usize;
                result = stream.write_all(&rest[..len]);
                rest = &rest[len..];
            }
            result
        }
    };
    if let Err(e) = sent {
        return classify(&conn, e);
    }
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    // Buffered until the handshake is done.
    conn.writer()
        .write_all(request.as_bytes())
        .expect("buffer the request");
    let mut out = Vec::new();
    let result = rustls::Stream::new(&mut conn, stream).read_to_end(&mut out);
    match result {
        Ok(_) => TlsOutcome::Response(out),
        Err(e) => classify(&conn, e),
    }
}

fn classify(conn: &ClientConnection, e: io::Error) -> TlsOutcome {
    let handshake_done = !conn.is_handshaking();
    if let Some(rustls::Error::AlertReceived(d)) =
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
    {
        return TlsOutcome::Alert(*d);
    }
    match e.kind() {
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => {
            TlsOutcome::Closed { handshake_done }
        }
        _ => TlsOutcome::Failed(e.to_string()),
    }
}

/// Through `proxy`: `CONNECT target`, then [`tls_get`] with SNI `sni`
/// (`None`: verify 127.0.0.1 and send no SNI) and the hello in one
/// write.
pub fn tls_get_through(proxy: SocketAddr, target: &str, sni: Option<&str>) -> TlsOutcome {
    let mut stream = connect_tunnel(proxy, target);
    let (config, name, host) = match sni {
        Some(n) => (client_config(true), server_name(n), n),
        None => (client_config(false), server_name("127.0.0.1"), "127.0.0.1"),
    };
    tls_get(&mut stream, config, name, host, HelloWrite::Whole)
}

/// `flight` (TLS records, as [`client_hello`] gives) with the payload of
/// its handshake records re-cut into records of at most `size` bytes:
/// the same ClientHello, fragmented across several records as TLS
/// allows.
pub fn fragment_records(flight: &[u8], size: usize) -> Vec<u8> {
    assert!(size > 0);
    let mut payload = Vec::new();
    let mut header = None;
    let mut rest = flight;
    while rest.len() >= 5 {
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        assert_eq!(rest[0], 0x16, "not a handshake record: {rest:02x?}");
        header.get_or_insert([rest[0], rest[1], rest[2]]);
        payload.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    assert!(rest.is_empty(), "trailing bytes after the records");
    let header = header.expect("at least one record");
    let mut out = Vec::new();
    for piece in payload.chunks(size) {
        out.extend_from_slice(&header);
        out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}
