//! Reading the ClientHello that opens a CONNECT tunnel, without decrypting
//! or answering anything.
//!
//! A [`HelloPeeker`] is fed the tunnel's first bytes as they arrive and
//! keeps a copy of them (they still have to reach the origin). It answers
//! [`Peek::NeedMore`] until it knows what they are:
//!
//! - [`Peek::NotTls`] as soon as the first byte is not `0x16` (handshake) or
//!   the second is not `3` (the TLS major version), so `GET ` or `SSH-` are
//!   recognised after one byte;
//! - [`Peek::Hello`] once the ClientHello is complete, however it was cut:
//!   into reads of any size, and into several TLS records (a hello over
//!   2^14 bytes must be, and a client may fragment a smaller one);
//! - [`Peek::Malformed`] at the first byte that makes it unreadable (another
//!   record type or handshake message, an impossible length, a ClientHello
//!   that does not parse, an ambiguous server_name);
//! - [`Peek::TooLarge`] as soon as the hello is known to need more than the
//!   configured maximum, often from its handshake header alone.
//!
//! Every answer depends only on the bytes, never on how they were split:
//! the decisions are taken at fixed positions in the stream, and the peeker
//! takes no byte past the one that decided. That is what
//! [`HelloPeeker::feed`]'s count means: the stream is [`HelloPeeker::bytes`]
//! followed by the part of the last `data` that was not taken.
//!
//! GREASE values (RFC 8701) are dropped from the versions and ALPN lists,
//! where they mean nothing. An `encrypted_client_hello` extension sets
//! [`ClientHelloInfo::ech`], but Chrome and Firefox send a GREASE one (random
//! bytes, indistinguishable on the wire from real ECH by design) on every
//! connection, so `ech` says "the SNI may be only the public name", not
//! "ECH is in use".

use serde::{Deserialize, Serialize};
use tls_parser::{
    parse_tls_client_hello_extension, parse_tls_handshake_client_hello, SNIType, TlsExtension,
};

/// A default for [`HelloPeeker::new`]: 16 KiB holds every ClientHello real
/// clients send today, post-quantum key shares included (about 2 KiB).
pub const DEFAULT_MAX_HELLO: usize = 16 * 1024;

/// The largest record length accepted: 2^14 for plaintext (RFC 8446 5.1)
/// plus the 2048 that TLS 1.2 allows ciphertext, the bound a record layer
/// checks at the header, before it knows whether the record is encrypted.
const MAX_RECORD: usize = (1 << 14) + 2048;
const RECORD_HEADER: usize = 5;
const HANDSHAKE_HEADER: usize = 4;
const CONTENT_HANDSHAKE: u8 = 0x16;
const TLS_MAJOR: u8 = 3;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;

const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_ECH: u16 = 0xfe0d;

/// What a peek found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// Not enough bytes yet to decide.
    NeedMore,
    /// A complete ClientHello.
    Hello(ClientHelloInfo),
    /// The first bytes are not a TLS handshake record (e.g. plain HTTP, SSH).
    NotTls,
    /// A TLS handshake that is not a readable ClientHello (malformed, or another message first), with why.
    Malformed(&'static str),
    /// The ClientHello would need more than the configured maximum.
    TooLarge,
}

/// What the ClientHello says, for policy and the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHelloInfo {
    /// server_name (host_name type), lower-cased, trailing dot removed; None if absent.
    pub sni: Option<String>,
    /// ALPN protocol names offered, in order (lossy UTF-8).
    pub alpn: Vec<String>,
    /// TLS versions offered: from supported_versions if present (GREASE values removed), else the legacy version; as strings "TLS1.3", "TLS1.2", "TLS1.1", "TLS1.0", or "0x...." for others.
    pub versions: Vec<String>,
    /// An encrypted_client_hello extension (0xfe0d) is present (the SNI is then the outer, public name).
    pub ech: bool,
    /// The SNI is not a host name (a `host:port`, an IP literal): policy
    /// judged the tunnel by its CONNECT authority (`policy.tls.malformed_sni`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sni_malformed: bool,
}

/// Where the next byte of the stream goes.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// Into a record header, of which `have` bytes are in.
    Header {
        have: usize,
        bytes: [u8; RECORD_HEADER],
    },
    /// Into a record body with `left` bytes still to come.
    Body { left: usize },
}

/// Reassembles and reads a ClientHello from the first bytes a client sends, however they arrive:
/// split across reads (one byte at a time included) and across several TLS records (handshake
/// fragmentation: a hello larger than one record, e.g. with post-quantum key shares).
/// Bounded memory: never holds more than `max` bytes.
///
/// ```
/// use proxy_core::tls::client_hello::{HelloPeeker, Peek, DEFAULT_MAX_HELLO};
///
/// let mut peeker = HelloPeeker::new(DEFAULT_MAX_HELLO);
/// let first_read = b"GET / HTTP/1.1\r\n";
/// let (taken, peek) = peeker.feed(first_read);
/// assert_eq!(peek, Peek::NotTls);
/// // The stream goes on with what was not taken: forward both, in order.
/// assert_eq!([peeker.bytes(), &first_read[taken..]].concat(), first_read);
/// ```
#[derive(Debug, Clone)]
pub struct HelloPeeker {
    max: usize,
    buf: Vec<u8>,
    stage: Stage,
    /// Record headers read so far: a bad first one means NotTls, a bad later
    /// one Malformed.
    records: usize,
    /// Handshake bytes taken (record payloads, concatenated).
    hs_have: usize,
    /// The handshake header, kept apart so its checks need no walk of `buf`.
    hs_header: [u8; HANDSHAKE_HEADER],
    /// Handshake header plus body, once the header is in.
    hs_total: Option<usize>,
    answer: Option<Peek>,
}

impl HelloPeeker {
    /// A peeker that will hold at most `max` bytes; a ClientHello needing
    /// more (record headers included) is [`Peek::TooLarge`].
    pub fn new(max: usize) -> Self {
        HelloPeeker {
            max,
            buf: Vec::new(),
            stage: Stage::Header {
                have: 0,
                bytes: [0; RECORD_HEADER],
            },
            records: 0,
            hs_have: 0,
            hs_header: [0; HANDSHAKE_HEADER],
            hs_total: None,
            answer: None,
        }
    }

    /// Appends `data` (the peeker keeps a copy of every byte it is given, up to `max`, because they must be
    /// forwarded to the origin later) and says what is known now. Once it returns anything but NeedMore the
    /// answer is final and further calls return the same answer without taking more bytes.
    /// Returns how many bytes of `data` it took (all of them while NeedMore, unless `max` is reached), and the Peek.
    ///
    /// The bytes taken stop at the one that decided (the first byte for
    /// NotTls, the last byte of the ClientHello for Hello), so the caller
    /// still owns `data[taken..]`: whatever follows the hello, such as early
    /// data, is forwarded after [`bytes`](Self::bytes).
    pub fn feed(&mut self, data: &[u8]) -> (usize, Peek) {
        let mut used = 0;
        while self.answer.is_none() {
            // Undecided means at least one more byte is needed, so a full
            // buffer is the answer even before more data arrives.
            if self.buf.len() >= self.max {
                self.answer = Some(Peek::TooLarge);
                break;
            }
            let rest = &data[used..];
            let Some(&byte) = rest.first() else { break };
            let room = self.max - self.buf.len();
            let n = match self.stage {
                Stage::Header { have, mut bytes } => {
                    bytes[have] = byte;
                    self.buf.push(byte);
                    self.header_byte(have + 1, bytes);
                    1
                }
                Stage::Body { left } if self.hs_have < HANDSHAKE_HEADER => {
                    self.buf.push(byte);
                    self.stage = Stage::Body { left: left - 1 };
                    self.hs_header_byte(byte);
                    1
                }
                Stage::Body { left } => {
                    let hs_left = self.hs_total.map_or(0, |t| t - self.hs_have);
                    let n = left.min(rest.len()).min(room).min(hs_left);
                    self.buf.extend_from_slice(&rest[..n]);
                    self.hs_have += n;
                    self.stage = Stage::Body { left: left - n };
                    n
                }
            };
            used += n;
            if self.answer.is_none() {
                self.after_step();
            }
        }
        (used, self.answer.clone().unwrap_or(Peek::NeedMore))
    }

    /// Every byte taken so far, in order (to forward to the origin).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the bytes, leaving the peeker empty.
    ///
    /// Meant for after the answer is final. Taken before, the peek is
    /// abandoned (the hello can no longer be reassembled): later calls to
    /// [`feed`](Self::feed) take nothing and answer
    /// `Malformed("peek abandoned")`.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        if self.answer.is_none() {
            self.answer = Some(Peek::Malformed("peek abandoned"));
        }
        std::mem::take(&mut self.buf)
    }

    /// The byte just taken completed `have` bytes of a record header.
    fn header_byte(&mut self, have: usize, bytes: [u8; RECORD_HEADER]) {
        let first = self.records == 0;
        self.stage = Stage::Header { have, bytes };
        let fail = match have {
            1 if bytes[0] != CONTENT_HANDSHAKE => Some(if first {
                Peek::NotTls
            } else {
                Peek::Malformed("another record type inside the ClientHello")
            }),
            2 if bytes[1] != TLS_MAJOR => Some(if first {
                Peek::NotTls
            } else {
                Peek::Malformed("record version is not 3.x")
            }),
            RECORD_HEADER => {
                let len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
                self.records += 1;
                self.stage = Stage::Body { left: len };
                if len == 0 {
                    // RFC 8446 5.1 forbids empty handshake fragments, and
                    // servers refuse them: no origin would read this hello.
                    Some(Peek::Malformed("empty handshake record"))
                } else if len > MAX_RECORD {
                    Some(Peek::Malformed("record longer than 2^14 + 2048 bytes"))
                } else {
                    None
                }
            }
            _ => None,
        };
        self.answer = fail;
    }

    /// The byte just taken is one of the handshake header's four.
    fn hs_header_byte(&mut self, byte: u8) {
        self.hs_header[self.hs_have] = byte;
        self.hs_have += 1;
        if self.hs_have == 1 && byte != HANDSHAKE_CLIENT_HELLO {
            self.answer = Some(Peek::Malformed(
                "first handshake message is not a ClientHello",
            ));
            return;
        }
        if self.hs_have < HANDSHAKE_HEADER {
            return;
        }
        let [_, a, b, c] = self.hs_header;
        let body = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
        let total = HANDSHAKE_HEADER + body;
        self.hs_total = Some(total);
        // The fewest bytes the rest can come in: the current record, then
        // records as large as allowed. Over `max` already means TooLarge now,
        // rather than after buffering `max` bytes of a hopeless hello.
        let left = match self.stage {
            Stage::Body { left } => left,
            Stage::Header { .. } => 0,
        };
        let needed = total - self.hs_have;
        let later = needed - needed.min(left);
        let headers = later.div_ceil(MAX_RECORD) * RECORD_HEADER;
        if self.buf.len() + needed + headers > self.max {
            self.answer = Some(Peek::TooLarge);
        }
    }

    /// After each step: finish a complete hello, or move on to the next
    /// record header.
    fn after_step(&mut self) {
        if self.hs_total == Some(self.hs_have) {
            self.answer = Some(match self.parse() {
                Ok(info) => Peek::Hello(info),
                Err(why) => Peek::Malformed(why),
            });
        } else if let Stage::Body { left: 0 } = self.stage {
            self.stage = Stage::Header {
                have: 0,
                bytes: [0; RECORD_HEADER],
            };
        }
    }

    /// Reads the complete handshake message out of `buf`. A hello spread
    /// over records is copied out once, transiently, to give tls-parser one
    /// slice; that copy is no larger than `max` either.
    fn parse(&self) -> Result<ClientHelloInfo, &'static str> {
        let total = self.hs_total.unwrap_or(0);
        // The common case, a hello in one record, is read in place.
        if let Some(msg) = self.buf.get(RECORD_HEADER..RECORD_HEADER + total) {
            if self.records == 1 {
                return read_client_hello(&msg[HANDSHAKE_HEADER..]);
            }
        }
        let mut msg = Vec::with_capacity(total);
        let mut at = 0;
        while msg.len() < total {
            let header = self
                .buf
                .get(at..at + RECORD_HEADER)
                .ok_or("reassembly lost bytes")?;
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            let start = at + RECORD_HEADER;
            let want = len.min(total - msg.len());
            let payload = self
                .buf
                .get(start..start + want)
                .ok_or("reassembly lost bytes")?;
            msg.extend_from_slice(payload);
            at = start + len;
        }
        read_client_hello(&msg[HANDSHAKE_HEADER..])
    }
}

/// Reads a ClientHello body (after the handshake header). tls-parser reads
/// the fixed fields; the extension block is walked here so that its framing
/// is checked exactly: tls-parser's list parsers stop quietly at the first
/// extension they cannot read, and would let a broken length hide a
/// server_name from us but not from the origin.
fn read_client_hello(body: &[u8]) -> Result<ClientHelloInfo, &'static str> {
    let (rest, hello) =
        parse_tls_handshake_client_hello(body).map_err(|_| "unreadable ClientHello")?;
    if !rest.is_empty() {
        return Err("bytes after the ClientHello extensions");
    }
    let mut info = ClientHelloInfo {
        sni: None,
        alpn: Vec::new(),
        versions: Vec::new(),
        ech: false,
        sni_malformed: false,
    };
    let mut supported_versions = None;
    let mut seen = Vec::new();
    let mut exts = hello.ext.unwrap_or_default();
    while !exts.is_empty() {
        let [t0, t1, l0, l1, ..] = *exts else {
            return Err("truncated extension header");
        };
        let ty = u16::from_be_bytes([t0, t1]);
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let (ext, rest) = exts
            .split_at_checked(4 + len)
            .ok_or("extension longer than the extension block")?;
        exts = rest;
        seen.push(ty);
        match ty {
            EXT_SERVER_NAME => info.sni = Some(read_server_name(ext)?),
            EXT_ALPN => info.alpn = read_alpn(ext)?,
            EXT_SUPPORTED_VERSIONS => supported_versions = Some(read_supported_versions(ext)?),
            EXT_ECH => info.ech = true,
            _ => {}
        }
    }
    // Servers refuse a repeated extension (RFC 8446 4.2); two server_names
    // would also let the origin and the policy read different names.
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err("an extension appears twice");
    }
    info.versions = match supported_versions {
        Some(versions) => versions,
        None => vec![version_name(hello.version.0)],
    };
    Ok(info)
}

/// `ext` is a whole extension, header included, as tls-parser wants it.
fn read_server_name(ext: &[u8]) -> Result<String, &'static str> {
    let Ok((_, TlsExtension::SNI(names))) = parse_tls_client_hello_extension(ext) else {
        return Err("unreadable server_name");
    };
    // tls-parser skips what follows the last name it can read; the sizes
    // must add up to the extension for the list to be exactly these names.
    let listed: usize = names.iter().map(|(_, name)| 3 + name.len()).sum();
    if 4 + 2 + listed != ext.len() {
        return Err("unreadable server_name");
    }
    // RFC 6066 allows one name per type and OpenSSL and BoringSSL accept
    // only a single host_name: anything else is read differently by
    // different servers.
    let [(SNIType::HostName, raw)] = names[..] else {
        return Err("server_name is not exactly one host_name");
    };
    host_name(raw)
}

/// The SNI as policy compares it. Non-ASCII names are kept (some clients
/// send UTF-8 and servers accept it) but must be valid UTF-8: a lossy
/// decoding would give two different names the same spelling.
fn host_name(raw: &[u8]) -> Result<String, &'static str> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    let name = std::str::from_utf8(raw).map_err(|_| "server_name is not UTF-8")?;
    let bad = |c: char| c.is_control() || c.is_whitespace();
    if name.is_empty() || name.ends_with('.') || name.chars().any(bad) {
        return Err("server_name is not a host name");
    }
    Ok(name.to_ascii_lowercase())
}

fn read_alpn(ext: &[u8]) -> Result<Vec<String>, &'static str> {
    let Ok((_, TlsExtension::ALPN(names))) = parse_tls_client_hello_extension(ext) else {
        return Err("unreadable ALPN");
    };
    let listed: usize = names.iter().map(|name| 1 + name.len()).sum();
    if 4 + 2 + listed != ext.len() || names.is_empty() || names.iter().any(|n| n.is_empty()) {
        return Err("unreadable ALPN");
    }
    Ok(names
        .into_iter()
        .filter(|name| !matches!(name, [a, b] if is_grease(u16::from_be_bytes([*a, *b]))))
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect())
}

fn read_supported_versions(ext: &[u8]) -> Result<Vec<String>, &'static str> {
    // tls-parser reads a 2-byte body as a ServerHello's single version; in a
    // ClientHello the body is a 1-byte length and at least one version, so
    // check that shape before asking it.
    let body = &ext[4..];
    let well_formed = matches!(body, [len, rest @ ..] if usize::from(*len) == rest.len() && !rest.is_empty() && rest.len() % 2 == 0);
    let parsed = parse_tls_client_hello_extension(ext);
    match parsed {
        Ok((_, TlsExtension::SupportedVersions(versions))) if well_formed => Ok(versions
            .into_iter()
            .filter(|v| !is_grease(v.0))
            .map(|v| version_name(v.0))
            .collect()),
        _ => Err("unreadable supported_versions"),
    }
}

/// RFC 8701: both bytes equal, each `0x?a`.
fn is_grease(value: u16) -> bool {
    let [hi, lo] = value.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

fn version_name(version: u16) -> String {
    match version {
        0x0304 => "TLS1.3".to_owned(),
        0x0303 => "TLS1.2".to_owned(),
        0x0302 => "TLS1.1".to_owned(),
        0x0301 => "TLS1.0".to_owned(),
        other => format!("0x{other:04x}"),
    }
}

/// The body of the `client_hello` fuzz target, here so that `fuzz/` is a
/// thin wrapper and this code stays in the crate's own lints and tests.
///
/// Feeds `data` whole, in uneven chunks and one byte at a time, with the
/// default maximum and with one smaller than `data`, and checks what must
/// hold for any input: the same answer and the same bytes however it was
/// split, no more than `max` bytes held, every byte taken while NeedMore,
/// final answers final, a normalised SNI.
///
/// # Panics
///
/// When one of those does not hold: that is the bug the fuzzer reports.
pub fn fuzz_peek(data: &[u8]) {
    for max in [DEFAULT_MAX_HELLO, data.len() / 2] {
        let whole = fuzz_run(max, data, &mut std::iter::repeat(data.len().max(1)));
        // Uneven chunk sizes from a small generator seeded by the input, so
        // a failing input replays the same way.
        let mut state = (data.len() as u32 ^ max as u32).wrapping_mul(2_654_435_761) | 1;
        let mut sizes = std::iter::from_fn(|| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            Some(1 + (state % 97) as usize)
        });
        let chunked = fuzz_run(max, data, &mut sizes);
        assert_eq!(whole, chunked, "uneven chunks differ from whole");
        // The slowest split, once: it is most of the time spent per input.
        if max == DEFAULT_MAX_HELLO {
            let bytewise = fuzz_run(max, data, &mut std::iter::repeat(1));
            assert_eq!(whole, bytewise, "one byte at a time differs from whole");
        }
    }
}

/// Feeds `data` in chunks of the given sizes; returns the answer, the count
/// taken and the bytes held, after checking each call's invariants.
fn fuzz_run(
    max: usize,
    data: &[u8],
    sizes: &mut dyn Iterator<Item = usize>,
) -> (Peek, usize, Vec<u8>) {
    let mut peeker = HelloPeeker::new(max);
    let mut at = 0;
    let mut last = Peek::NeedMore;
    let mut taken = 0;
    while at < data.len() {
        let end = data.len().min(at + sizes.next().unwrap_or(1));
        let chunk = &data[at..end];
        let (n, peek) = peeker.feed(chunk);
        assert!(n <= chunk.len());
        if last != Peek::NeedMore {
            assert_eq!((n, &peek), (0, &last), "a final answer changed");
        }
        if peek == Peek::NeedMore {
            assert_eq!(n, chunk.len(), "NeedMore left bytes untaken");
        }
        taken += n;
        last = peek;
        at = end;
    }
    assert!(peeker.bytes().len() <= max, "held more than max");
    assert_eq!(
        peeker.bytes(),
        &data[..taken],
        "held bytes are not the stream's prefix"
    );
    if let Peek::Hello(info) = &last {
        if let Some(sni) = &info.sni {
            assert!(!sni.is_empty() && !sni.ends_with('.') && *sni == sni.to_ascii_lowercase());
        }
    }
    if last != Peek::NeedMore {
        assert_eq!(
            peeker.feed(data),
            (0, last.clone()),
            "a final answer changed"
        );
    }
    let bytes = peeker.take_bytes();
    assert!(peeker.bytes().is_empty());
    (last, taken, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CURL: &[u8] = include_bytes!("../../../testdata/tls/curl.bin");
    const OPENSSL: &[u8] = include_bytes!("../../../testdata/tls/openssl.bin");
    const OPENSSL_NOSNI: &[u8] = include_bytes!("../../../testdata/tls/openssl-nosni.bin");
    const OPENSSL_FRAGMENTED: &[u8] =
        include_bytes!("../../../testdata/tls/openssl-fragmented.bin");
    const PYTHON: &[u8] = include_bytes!("../../../testdata/tls/python.bin");
    const PYTHON_BIG: &[u8] = include_bytes!("../../../testdata/tls/python-big.bin");
    const RUSTLS: &[u8] = include_bytes!("../../../testdata/tls/rustls.bin");
    const CHROMIUM: &[u8] = include_bytes!("../../../testdata/tls/chromium.bin");
    const CHROMIUM_FRAGMENTED: &[u8] =
        include_bytes!("../../../testdata/tls/chromium-fragmented.bin");
    const FIREFOX: &[u8] = include_bytes!("../../../testdata/tls/firefox.bin");

    /// Every fixture, each readable with `max`.
    const FIXTURES: &[(&str, &[u8])] = &[
        ("curl", CURL),
        ("openssl", OPENSSL),
        ("openssl-nosni", OPENSSL_NOSNI),
        ("openssl-fragmented", OPENSSL_FRAGMENTED),
        ("python", PYTHON),
        ("python-big", PYTHON_BIG),
        ("rustls", RUSTLS),
        ("chromium", CHROMIUM),
        ("chromium-fragmented", CHROMIUM_FRAGMENTED),
        ("firefox", FIREFOX),
    ];
    /// Large enough for python-big, the one fixture over the default.
    const BIG: usize = 64 * 1024;

    fn info(sni: Option<&str>, alpn: &[&str], versions: &[&str], ech: bool) -> ClientHelloInfo {
        ClientHelloInfo {
            sni: sni.map(str::to_owned),
            alpn: alpn.iter().map(|s| s.to_string()).collect(),
            versions: versions.iter().map(|s| s.to_string()).collect(),
            ech,
            sni_malformed: false,
        }
    }

    fn peek_whole(max: usize, data: &[u8]) -> (usize, Peek) {
        HelloPeeker::new(max).feed(data)
    }

    fn hello_of(max: usize, data: &[u8]) -> ClientHelloInfo {
        match peek_whole(max, data) {
            (n, Peek::Hello(info)) if n == data.len() => info,
            other => panic!("not a whole hello: {other:?}"),
        }
    }

    /// Feeds `data` in pieces cut at `cuts`; the answer and the count taken.
    fn peek_split(max: usize, data: &[u8], cuts: &[usize]) -> (usize, Peek, Vec<u8>) {
        let mut peeker = HelloPeeker::new(max);
        let mut taken = 0;
        let mut last = Peek::NeedMore;
        let mut at = 0;
        for end in cuts.iter().copied().chain([data.len()]) {
            let end = end.clamp(at, data.len());
            let (n, peek) = peeker.feed(&data[at..end]);
            taken += n;
            last = peek;
            at = end;
        }
        (taken, last, peeker.take_bytes())
    }

    /// The handshake message inside a capture's records.
    fn handshake_of(data: &[u8]) -> Vec<u8> {
        let mut hs = Vec::new();
        let mut at = 0;
        while at + RECORD_HEADER <= data.len() {
            let len = usize::from(u16::from_be_bytes([data[at + 3], data[at + 4]]));
            hs.extend_from_slice(&data[at + RECORD_HEADER..at + RECORD_HEADER + len]);
            at += RECORD_HEADER + len;
        }
        hs
    }

    /// `handshake` cut into handshake records of `size` payload bytes.
    fn records(handshake: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in handshake.chunks(size) {
            out.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// A minimal ClientHello record with these extensions and legacy version.
    fn synthetic(legacy: u16, exts: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = legacy.to_be_bytes().to_vec();
        body.extend_from_slice(&[7; 32]); // random
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[1, 0]); // null compression
        let mut block = Vec::new();
        for (ty, data) in exts {
            block.extend_from_slice(&ty.to_be_bytes());
            block.extend_from_slice(&(data.len() as u16).to_be_bytes());
            block.extend_from_slice(data);
        }
        if !exts.is_empty() {
            body.extend_from_slice(&(block.len() as u16).to_be_bytes());
            body.extend_from_slice(&block);
        }
        let mut hs = vec![HANDSHAKE_CLIENT_HELLO];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        records(&hs, MAX_RECORD)
    }

    fn sni_ext(names: &[(u8, &[u8])]) -> Vec<u8> {
        let mut list = Vec::new();
        for (ty, name) in names {
            list.push(*ty);
            list.extend_from_slice(&(name.len() as u16).to_be_bytes());
            list.extend_from_slice(name);
        }
        let mut ext = (list.len() as u16).to_be_bytes().to_vec();
        ext.extend_from_slice(&list);
        ext
    }

    fn alpn_ext(names: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for name in names {
            list.push(name.len() as u8);
            list.extend_from_slice(name);
        }
        let mut ext = (list.len() as u16).to_be_bytes().to_vec();
        ext.extend_from_slice(&list);
        ext
    }

    const H2_H1: &[&str] = &["h2", "http/1.1"];
    const TLS13_TO_10: &[&str] = &["TLS1.3", "TLS1.2", "TLS1.1", "TLS1.0"];
    const TLS13_12: &[&str] = &["TLS1.3", "TLS1.2"];

    #[test]
    fn curl_hello() {
        let want = info(Some("example.test"), H2_H1, TLS13_TO_10, false);
        assert_eq!(hello_of(DEFAULT_MAX_HELLO, CURL), want);
    }

    #[test]
    fn openssl_hello() {
        let want = info(Some("example.test"), &["http/1.1"], TLS13_TO_10, false);
        assert_eq!(hello_of(DEFAULT_MAX_HELLO, OPENSSL), want);
    }

    #[test]
    fn openssl_hello_without_sni() {
        assert_eq!(
            hello_of(DEFAULT_MAX_HELLO, OPENSSL_NOSNI),
            info(None, &[], TLS13_TO_10, false)
        );
    }

    #[test]
    fn python_hello_name_is_normalised() {
        // Sent as "Example.TEST." on the wire.
        let want = info(Some("example.test"), H2_H1, TLS13_12, false);
        assert_eq!(hello_of(DEFAULT_MAX_HELLO, PYTHON), want);
    }

    #[test]
    fn rustls_post_quantum_hello() {
        let want = info(Some("example.test"), H2_H1, TLS13_12, false);
        assert_eq!(hello_of(DEFAULT_MAX_HELLO, RUSTLS), want);
    }

    #[test]
    fn chromium_hello_drops_grease_and_shows_ech() {
        // supported_versions is [0xcaca, 1.3, 1.2]; ECH is Chrome's GREASE one.
        let want = info(Some("example.test"), H2_H1, TLS13_12, true);
        assert_eq!(hello_of(DEFAULT_MAX_HELLO, CHROMIUM), want);
    }

    #[test]
    fn firefox_hello() {
        let want = info(Some("example.test"), H2_H1, TLS13_12, true);
        assert_eq!(hello_of(DEFAULT_MAX_HELLO, FIREFOX), want);
    }

    #[test]
    fn openssl_fragmented_hello_across_four_records() {
        let got = hello_of(DEFAULT_MAX_HELLO, OPENSSL_FRAGMENTED);
        assert_eq!(got.sni.as_deref(), Some("fragmented.example.test"));
        assert_eq!(got.alpn.len(), 26);
        assert_eq!(got.alpn[..2], ["h2", "http/1.1"]);
        assert_eq!(got.alpn[25], format!("x-proto-023-{}", "p".repeat(40)));
        assert_eq!(got.versions, TLS13_TO_10);
    }

    #[test]
    fn chromium_hello_with_handshake_header_split_across_records() {
        // First record: 2 bytes, half the handshake header.
        assert_eq!(
            hello_of(DEFAULT_MAX_HELLO, CHROMIUM_FRAGMENTED),
            hello_of(DEFAULT_MAX_HELLO, CHROMIUM)
        );
    }

    #[test]
    fn python_big_hello_spans_two_records() {
        let got = hello_of(BIG, PYTHON_BIG);
        assert_eq!(got.sni.as_deref(), Some("big.example.test"));
        assert_eq!(got.alpn.len(), 82);
        assert_eq!(got.versions, TLS13_12);
    }

    #[test]
    fn python_big_hello_is_too_large_from_its_handshake_header() {
        // The 16,865-byte handshake cannot fit 16 KiB: known after 9 bytes.
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, PYTHON_BIG),
            (9, Peek::TooLarge)
        );
    }

    #[test]
    fn every_fixture_keeps_its_bytes() {
        for (name, data) in FIXTURES {
            let mut peeker = HelloPeeker::new(BIG);
            let (n, peek) = peeker.feed(data);
            assert!(matches!(peek, Peek::Hello(_)), "{name}");
            assert_eq!(n, data.len(), "{name}");
            assert_eq!(peeker.bytes(), *data, "{name}");
            assert_eq!(peeker.take_bytes(), *data, "{name}");
            assert!(peeker.bytes().is_empty(), "{name}");
            // Still final after the bytes are gone.
            assert_eq!(peeker.feed(b"more"), (0, peek), "{name}");
        }
    }

    #[test]
    fn one_byte_at_a_time_equals_whole() {
        for (name, data) in FIXTURES {
            let mut peeker = HelloPeeker::new(BIG);
            for (i, byte) in data.iter().enumerate() {
                let (n, peek) = peeker.feed(std::slice::from_ref(byte));
                assert_eq!(n, 1, "{name} at {i}");
                if i + 1 < data.len() {
                    assert_eq!(peek, Peek::NeedMore, "{name} at {i}");
                } else {
                    assert_eq!(peek, peek_whole(BIG, data).1, "{name}");
                }
            }
            assert_eq!(peeker.bytes(), *data, "{name}");
        }
    }

    #[test]
    fn refragmented_fixtures_read_the_same() {
        for (name, data) in FIXTURES {
            let want = hello_of(BIG, data);
            let hs = handshake_of(data);
            for size in [1, 2, 3, 4, 5, 100, 1000, 1 << 14] {
                let cut = records(&hs, size);
                assert_eq!(
                    hello_of(cut.len(), &cut),
                    want,
                    "{name} in records of {size}"
                );
            }
        }
    }

    #[test]
    fn bytes_after_the_hello_are_not_taken() {
        let mut stream = CHROMIUM.to_vec();
        stream.extend_from_slice(&[0x17, 3, 3, 0, 2, 0xaa, 0xbb]); // early data
        let mut peeker = HelloPeeker::new(DEFAULT_MAX_HELLO);
        let (n, peek) = peeker.feed(&stream);
        assert_eq!(n, CHROMIUM.len());
        assert!(matches!(peek, Peek::Hello(_)));
        assert_eq!(peeker.bytes(), CHROMIUM);
    }

    #[test]
    fn plain_http_is_not_tls_after_one_byte() {
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            (1, Peek::NotTls)
        );
        let mut peeker = HelloPeeker::new(DEFAULT_MAX_HELLO);
        assert_eq!(peeker.feed(b"G"), (1, Peek::NotTls));
        assert_eq!(peeker.feed(b"ET /"), (0, Peek::NotTls));
        assert_eq!(peeker.bytes(), b"G");
    }

    #[test]
    fn ssh_is_not_tls_after_one_byte() {
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, b"SSH-2.0-OpenSSH_9.2\r\n"),
            (1, Peek::NotTls)
        );
    }

    #[test]
    fn wrong_record_major_version_is_not_tls_after_two_bytes() {
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &[0x16, 0x04, 0x01, 0, 5]),
            (2, Peek::NotTls)
        );
        // SSLv2-style hello.
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &[0x80, 0x2e, 0x01]),
            (1, Peek::NotTls)
        );
    }

    #[test]
    fn an_alert_first_is_not_tls() {
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &[0x15, 3, 3, 0, 2, 2, 40]),
            (1, Peek::NotTls)
        );
    }

    #[test]
    fn empty_input_needs_more() {
        assert_eq!(peek_whole(DEFAULT_MAX_HELLO, b""), (0, Peek::NeedMore));
    }

    #[test]
    fn every_truncation_needs_more() {
        for (name, data) in FIXTURES {
            for len in 0..data.len() {
                assert_eq!(
                    peek_whole(BIG, &data[..len]),
                    (len, Peek::NeedMore),
                    "{name} cut at {len}"
                );
            }
        }
    }

    #[test]
    fn another_handshake_message_first_is_malformed() {
        let mut server_hello = CURL.to_vec();
        server_hello[5] = 2;
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &server_hello),
            (
                6,
                Peek::Malformed("first handshake message is not a ClientHello")
            )
        );
    }

    #[test]
    fn bad_record_lengths_are_malformed() {
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &[0x16, 3, 1, 0, 0, 1]),
            (5, Peek::Malformed("empty handshake record"))
        );
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &[0x16, 3, 1, 0x48, 0x01, 1]),
            (5, Peek::Malformed("record longer than 2^14 + 2048 bytes"))
        );
        // 2^14 + 2048 itself is tolerated.
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &[0x16, 3, 1, 0x48, 0x00, 1]),
            (6, Peek::NeedMore)
        );
    }

    #[test]
    fn another_record_type_inside_the_hello_is_malformed() {
        let mut stream = CHROMIUM_FRAGMENTED[..7].to_vec(); // the 2-byte record
        stream.extend_from_slice(&[0x14, 3, 3, 0, 1, 1]); // change_cipher_spec
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &stream),
            (
                8,
                Peek::Malformed("another record type inside the ClientHello")
            )
        );
        let mut stream = CHROMIUM_FRAGMENTED[..7].to_vec();
        stream.extend_from_slice(&[0x16, 2]);
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &stream),
            (9, Peek::Malformed("record version is not 3.x"))
        );
    }

    #[test]
    fn over_max_is_too_large_and_holds_at_most_max() {
        for (name, data) in FIXTURES {
            let max = data.len() - 1;
            let mut peeker = HelloPeeker::new(max);
            let (n, peek) = peeker.feed(data);
            assert_eq!(peek, Peek::TooLarge, "{name}");
            assert!(n <= max && peeker.bytes().len() <= max, "{name}");
            // Known from the handshake header when the hello is in one record.
            if data.len() == handshake_of(data).len() + RECORD_HEADER {
                assert_eq!(n, RECORD_HEADER + HANDSHAKE_HEADER, "{name}");
            }
            // Exactly enough room is enough.
            assert!(
                matches!(peek_whole(data.len(), data).1, Peek::Hello(_)),
                "{name}"
            );
        }
    }

    #[test]
    fn too_large_when_small_records_overflow_max() {
        // With 1-byte records, the handshake header arrives after 24 bytes
        // and the fewest bytes the rest could take fit in `max`; but these
        // records cost 6 bytes each: found out when the buffer is full.
        let cut = records(&handshake_of(CURL), 1);
        let max = CURL.len() + 30;
        assert_eq!(peek_whole(max, &cut), (max, Peek::TooLarge));
        // Without waiting for another byte once full.
        let mut peeker = HelloPeeker::new(max);
        assert_eq!(peeker.feed(&cut[..max]), (max, Peek::TooLarge));
        // With less room, known from the handshake header.
        assert_eq!(peek_whole(CURL.len(), &cut), (24, Peek::TooLarge));
    }

    #[test]
    fn zero_max_is_too_large_at_once() {
        assert_eq!(peek_whole(0, b"GET"), (0, Peek::TooLarge));
    }

    #[test]
    fn taking_bytes_early_abandons_the_peek() {
        let mut peeker = HelloPeeker::new(DEFAULT_MAX_HELLO);
        assert_eq!(peeker.feed(&CURL[..100]), (100, Peek::NeedMore));
        assert_eq!(peeker.take_bytes(), &CURL[..100]);
        assert_eq!(
            peeker.feed(&CURL[100..]),
            (0, Peek::Malformed("peek abandoned"))
        );
    }

    #[test]
    fn hello_without_extensions_reports_its_legacy_version() {
        assert_eq!(
            hello_of(DEFAULT_MAX_HELLO, &synthetic(0x0301, &[])),
            info(None, &[], &["TLS1.0"], false)
        );
        assert_eq!(
            hello_of(DEFAULT_MAX_HELLO, &synthetic(0x0300, &[])).versions,
            ["0x0300"]
        );
        assert_eq!(
            hello_of(DEFAULT_MAX_HELLO, &synthetic(0x0302, &[])).versions,
            ["TLS1.1"]
        );
    }

    #[test]
    fn grease_is_dropped_from_versions_and_alpn() {
        let hello = synthetic(
            0x0303,
            &[
                (0x1a1a, b""),
                (
                    EXT_SUPPORTED_VERSIONS,
                    &[8, 0x2a, 0x2a, 0x03, 0x04, 0x7f, 0x1c, 0x03, 0x03],
                ),
                (EXT_ALPN, &alpn_ext(&[b"\x3a\x3a", b"h2", b"\x3a\x3b"])),
                (0x2a2a, b"\0"),
            ],
        );
        assert_eq!(
            hello_of(DEFAULT_MAX_HELLO, &hello),
            info(None, &["h2", ":;"], &["TLS1.3", "0x7f1c", "TLS1.2"], false)
        );
    }

    #[test]
    fn alpn_is_lossy_utf8() {
        let hello = synthetic(0x0303, &[(EXT_ALPN, &alpn_ext(&[b"h\xff"]))]);
        assert_eq!(hello_of(DEFAULT_MAX_HELLO, &hello).alpn, ["h\u{fffd}"]);
    }

    #[test]
    fn sni_is_lower_cased_without_its_trailing_dot() {
        let hello = synthetic(
            0x0303,
            &[(EXT_SERVER_NAME, &sni_ext(&[(0, b"WWW.Example.COM.")]))],
        );
        assert_eq!(
            hello_of(DEFAULT_MAX_HELLO, &hello).sni.as_deref(),
            Some("www.example.com")
        );
        let hello = synthetic(
            0x0303,
            &[(EXT_SERVER_NAME, &sni_ext(&[(0, "Bücher.de".as_bytes())]))],
        );
        assert_eq!(
            hello_of(DEFAULT_MAX_HELLO, &hello).sni.as_deref(),
            Some("bücher.de")
        );
    }

    #[test]
    fn ambiguous_or_bad_server_names_are_malformed() {
        let cases: &[(Vec<u8>, &str)] = &[
            (
                sni_ext(&[(0, b"a.test"), (0, b"b.test")]),
                "server_name is not exactly one host_name",
            ),
            (
                sni_ext(&[(1, b"a.test")]),
                "server_name is not exactly one host_name",
            ),
            (sni_ext(&[]), "server_name is not exactly one host_name"),
            (sni_ext(&[(0, b"")]), "server_name is not a host name"),
            (sni_ext(&[(0, b".")]), "server_name is not a host name"),
            (
                sni_ext(&[(0, b"a.test..")]),
                "server_name is not a host name",
            ),
            (
                sni_ext(&[(0, b"a.test\0.evil")]),
                "server_name is not a host name",
            ),
            (sni_ext(&[(0, b"a test")]), "server_name is not a host name"),
            (sni_ext(&[(0, b"a\xff.test")]), "server_name is not UTF-8"),
            (
                [sni_ext(&[(0, b"a.test")]), vec![0]].concat(),
                "unreadable server_name",
            ),
            (vec![], "unreadable server_name"),
            (vec![0, 9, 0, 0, 6, b'a'], "unreadable server_name"),
        ];
        for (ext, why) in cases {
            let hello = synthetic(0x0303, &[(EXT_SERVER_NAME, ext)]);
            assert_eq!(
                peek_whole(DEFAULT_MAX_HELLO, &hello).1,
                Peek::Malformed(why),
                "{ext:?}"
            );
        }
        // The list length claims less than the extension holds.
        let mut ext = sni_ext(&[(0, b"a.test")]);
        ext.extend_from_slice(&[0, 0, 6]);
        ext.extend_from_slice(b"b.test");
        let hello = synthetic(0x0303, &[(EXT_SERVER_NAME, &ext)]);
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &hello).1,
            Peek::Malformed("unreadable server_name")
        );
    }

    #[test]
    fn duplicate_extensions_are_malformed() {
        let a = sni_ext(&[(0, b"allowed.test")]);
        let b = sni_ext(&[(0, b"blocked.test")]);
        let hello = synthetic(0x0303, &[(EXT_SERVER_NAME, &a), (EXT_SERVER_NAME, &b)]);
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &hello).1,
            Peek::Malformed("an extension appears twice")
        );
        let hello = synthetic(0x0303, &[(0x1a1a, b""), (0x1a1a, b"")]);
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &hello).1,
            Peek::Malformed("an extension appears twice")
        );
    }

    #[test]
    fn bad_alpn_and_supported_versions_are_malformed() {
        for ext in [
            alpn_ext(&[]),
            alpn_ext(&[b""]),
            vec![0, 5, 2, b'h', b'2'],
            vec![0, 3, 2, b'h', b'2', 0],
        ] {
            let hello = synthetic(0x0303, &[(EXT_ALPN, &ext)]);
            assert_eq!(
                peek_whole(DEFAULT_MAX_HELLO, &hello).1,
                Peek::Malformed("unreadable ALPN"),
                "{ext:?}"
            );
        }
        // A 2-byte body is a ServerHello's shape, which tls-parser would accept.
        for ext in [&[3, 4][..], &[], &[0], &[3, 3, 4, 3], &[2, 3, 4, 3, 3]] {
            let hello = synthetic(0x0303, &[(EXT_SUPPORTED_VERSIONS, ext)]);
            let want = Peek::Malformed("unreadable supported_versions");
            assert_eq!(peek_whole(DEFAULT_MAX_HELLO, &hello).1, want, "{ext:?}");
        }
    }

    #[test]
    fn broken_extension_framing_is_malformed() {
        // An extension claiming more than the block holds, the block length
        // claiming more than the hello holds, and a stray byte at the end.
        let mut hello = synthetic(0x0303, &[(0x0017, b"")]);
        let last = hello.len() - 1;
        hello[last] = 1;
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &hello).1,
            Peek::Malformed("extension longer than the extension block")
        );
        let mut hello = synthetic(0x0303, &[(0x0017, b"")]);
        let at = hello.len() - 6;
        hello[at] = 9;
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &hello).1,
            Peek::Malformed("bytes after the ClientHello extensions")
        );
        // The extension's length cut to 0 leaves 3 bytes: half a header.
        let mut hello = synthetic(0x0303, &[(0x0017, b"\x00\x00\x00")]);
        let at = hello.len() - 4;
        hello[at] = 0;
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &hello).1,
            Peek::Malformed("truncated extension header")
        );
    }

    #[test]
    fn unreadable_fixed_fields_are_malformed() {
        // Session id length 33 is over the limit of 32.
        let mut hello = synthetic(0x0303, &[]);
        hello[RECORD_HEADER + HANDSHAKE_HEADER + 34] = 33;
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &hello).1,
            Peek::Malformed("unreadable ClientHello")
        );
        // A handshake length of zero.
        assert_eq!(
            peek_whole(DEFAULT_MAX_HELLO, &[0x16, 3, 1, 0, 4, 1, 0, 0, 0]),
            (9, Peek::Malformed("unreadable ClientHello"))
        );
    }

    #[test]
    fn ech_extension_is_reported() {
        let hello = synthetic(0x0303, &[(EXT_ECH, b"\0\x00\x01\x00\x01")]);
        assert!(hello_of(DEFAULT_MAX_HELLO, &hello).ech);
    }

    #[test]
    fn info_round_trips_through_serde() {
        let info = hello_of(DEFAULT_MAX_HELLO, CHROMIUM);
        let text = ron::to_string(&info).unwrap();
        assert_eq!(ron::from_str::<ClientHelloInfo>(&text).unwrap(), info);
    }

    #[test]
    fn fuzz_body_accepts_the_fixtures() {
        for (_, data) in FIXTURES {
            fuzz_peek(data);
            fuzz_peek(&data[..data.len() / 2]);
        }
        fuzz_peek(b"");
        fuzz_peek(b"GET / HTTP/1.1\r\n\r\n");
    }

    /// A fixture and cut points into it.
    fn fixture_and_cuts() -> impl Strategy<Value = (usize, Vec<usize>)> {
        (0..FIXTURES.len()).prop_flat_map(|i| {
            let len = FIXTURES[i].1.len();
            (Just(i), proptest::collection::vec(0..=len, 0..12))
        })
    }

    proptest! {
        #[test]
        fn any_split_equals_whole((i, mut cuts) in fixture_and_cuts()) {
            let data = FIXTURES[i].1;
            cuts.sort_unstable();
            let (n, peek) = peek_whole(BIG, data);
            prop_assert_eq!(peek_split(BIG, data, &cuts), (n, peek, data.to_vec()));
        }

        #[test]
        fn any_split_equals_whole_when_too_large((i, mut cuts) in fixture_and_cuts(), shrink in 1usize..64) {
            let data = FIXTURES[i].1;
            let max = data.len().saturating_sub(shrink);
            cuts.sort_unstable();
            let (n, peek) = peek_whole(max, data);
            prop_assert_eq!(&peek, &Peek::TooLarge);
            prop_assert_eq!(peek_split(max, data, &cuts), (n, peek, data[..n].to_vec()));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            tls_prefix in any::<bool>(),
            mut data in proptest::collection::vec(any::<u8>(), 0..2048),
            max in 0usize..4096,
        ) {
            if tls_prefix {
                // Get past NotTls to the record and handshake checks.
                data.splice(0..0, [0x16, 3, 1]);
            }
            let (n, _) = peek_whole(max, &data);
            prop_assert!(n <= data.len() && n <= max);
            fuzz_peek(&data);
        }

        #[test]
        fn mutated_fixtures_never_panic_and_ignore_splits(
            (i, mut cuts) in fixture_and_cuts(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut data = FIXTURES[i].1.to_vec();
            for (at, byte) in edits {
                let at = at.index(data.len());
                data[at] = byte;
            }
            cuts.sort_unstable();
            let (n, peek) = peek_whole(BIG, &data);
            prop_assert_eq!(peek_split(BIG, &data, &cuts), (n, peek, data[..n].to_vec()));
            fuzz_peek(&data);
        }
    }
}
