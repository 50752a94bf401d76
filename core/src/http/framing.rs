//! Message body framing (RFC 9112 §6): deciding how long a body is, and
//! walking a body as it streams past without copying it.

use super::head::{Fields, RequestHead, ResponseHead, Version};
use crate::error::RequestError;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the sender closes (responses only).
    UntilClose,
}

/// What is wrong with a message's framing fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// Content-Length and Transfer-Encoding together.
    Conflicting,
    /// A Content-Length that is not a number, or several that differ.
    BadLength,
    /// A Transfer-Encoding we cannot delimit.
    BadCoding,
}

impl FramingError {
    /// A short phrase for error pages and logs.
    pub fn describe(self) -> &'static str {
        match self {
            FramingError::Conflicting => "both Content-Length and Transfer-Encoding",
            FramingError::BadLength => "invalid or conflicting Content-Length",
            FramingError::BadCoding => "unsupported Transfer-Encoding",
        }
    }
}

impl From<FramingError> for RequestError {
    fn from(e: FramingError) -> RequestError {
        match e {
            FramingError::Conflicting => RequestError::ConflictingFraming,
            FramingError::BadLength => RequestError::BadContentLength,
            FramingError::BadCoding => RequestError::BadTransferEncoding,
        }
    }
}

/// The single Content-Length all `Content-Length` lines agree on.
/// Identical repeated values are accepted (RFC 9112 §6.3 item 5); anything
/// else is an error.
fn content_length(fields: &Fields) -> Result<Option<u64>, FramingError> {
    let mut found = None;
    for v in fields.get_all("content-length") {
        // Lists like "5, 5" are a repeated field folded into one line.
        for part in v.split(|&b| b == b',') {
            let part = super::head::trim(part);
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(FramingError::BadLength);
            }
            let n: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(FramingError::BadLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(FramingError::BadLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// Whether the Transfer-Encoding list ends in exactly one `chunked`.
/// `None` when there is no Transfer-Encoding.
fn ends_chunked(fields: &Fields) -> Result<Option<bool>, FramingError> {
    if !fields.contains("transfer-encoding") {
        return Ok(None);
    }
    let codings: Vec<&[u8]> = fields.list("transfer-encoding").collect();
    let is_chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
    let chunked_count = codings.iter().filter(|c| is_chunked(c)).count();
    match codings.last() {
        None => Err(FramingError::BadCoding),
        Some(last) if is_chunked(last) && chunked_count == 1 => Ok(Some(true)),
        // chunked anywhere but last, or twice, can never be delimited.
        _ if chunked_count > 0 => Err(FramingError::BadCoding),
        _ => Ok(Some(false)),
    }
}

/// The framing of a request body. Stricter than the RFC's minimum: any
/// message a front end and a back end could disagree on is refused.
pub fn request_framing(head: &RequestHead) -> Result<Framing, FramingError> {
    let te = ends_chunked(&head.fields)?;
    let cl = content_length(&head.fields)?;
    match (te, cl) {
        (Some(_), Some(_)) => Err(FramingError::Conflicting),
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
        (Some(_), None) if head.version == Version::Http10 => Err(FramingError::BadCoding),
        // RFC 9112 §6.3: a request whose final coding is not chunked
        // cannot be delimited: 400.
        (Some(true), None) => Ok(Framing::Chunked),
        (Some(false), None) => Err(FramingError::BadCoding),
        (None, Some(0)) | (None, None) => Ok(Framing::None),
        (None, Some(n)) => Ok(Framing::Length(n)),
    }
}

/// The framing of a response to a request with `method` (RFC 9112 §6.3).
pub fn response_framing(method: &str, head: &ResponseHead) -> Result<Framing, FramingError> {
    if method == "HEAD" || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(Framing::None);
    }
    let te = ends_chunked(&head.fields)?;
    let cl = content_length(&head.fields)?;
    match (te, cl) {
        (Some(_), Some(_)) => Err(FramingError::Conflicting),
        (Some(_), None) if head.version == Version::Http10 => Err(FramingError::BadCoding),
        (Some(true), None) => Ok(Framing::Chunked),
        (Some(false), None) => Ok(Framing::UntilClose),
        (None, Some(0)) => Ok(Framing::None),
        (None, Some(n)) => Ok(Framing::Length(n)),
        (None, None) => Ok(Framing::UntilClose),
    }
}

/// A run of consecutive body bytes of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// Payload bytes.
    Data(usize),
    /// Chunk framing (size lines, CRLFs, trailers).
    Framing(usize),
}

impl Segment {
    /// How many input bytes it covers.
    pub fn bytes(self) -> usize {
        match self {
            Segment::Data(n) | Segment::Framing(n) => n,
        }
    }
}

/// Why a chunked body is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size { value: u64, digits: u8 },
    Ext { size: u64 },
    SizeLf { size: u64 },
    Data { remaining: u64 },
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

/// Walks a chunked body incrementally, reporting which input bytes are
/// payload and which are framing, so the caller can pass the body on
/// verbatim or strip the framing, without copying either.
///
/// Strict: chunk lines must end in CRLF, sizes are bounded hexadecimal,
/// data must be followed by CRLF, and trailer lines may not be folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: ChunkState,
    line_len: usize,
    trailer_len: usize,
    max_line: usize,
    max_trailer: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new(max_line: usize, max_trailer: usize) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
            },
            line_len: 0,
            trailer_len: 0,
            max_line,
            max_trailer,
        }
    }

    /// Whether the whole body, trailers included, has been seen.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Bytes of chunk data left in the current chunk; zero while in a
    /// chunk line, between chunks or in the trailers.
    pub fn data_remaining(&self) -> u64 {
        match self.state {
            ChunkState::Data { remaining } => remaining,
            _ => 0,
        }
    }

    /// Accounts for `n` bytes of the current chunk's data (at most
    /// [`data_remaining`](ChunkedDecoder::data_remaining)) that went on
    /// without being decoded.
    pub fn skip_data(&mut self, n: u64) {
        if let ChunkState::Data { remaining } = self.state {
            let left = remaining - n.min(remaining);
            self.state = if left == 0 {
                ChunkState::DataCr
            } else {
                ChunkState::Data { remaining: left }
            };
        }
    }

    /// Consumes as much of `input` as belongs to the body, calling `emit`
    /// with consecutive segments that together cover the consumed prefix.
    /// Returns how many bytes were consumed; fewer than `input.len()` only
    /// when the body ended. On an error, the segments emitted cover the
    /// input before the offending byte.
    pub fn decode(
        &mut self,
        input: &[u8],
        mut emit: impl FnMut(Segment),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        let mut framing_run = 0usize;
        macro_rules! flush_framing {
            () => {
                if framing_run > 0 {
                    emit(Segment::Framing(framing_run));
                    framing_run = 0;
                }
            };
        }
        while i < input.len() && self.state != ChunkState::Done {
            if let ChunkState::Data { remaining } = self.state {
                let take = remaining.min((input.len() - i) as u64) as usize;
                flush_framing!();
                emit(Segment::Data(take));
                i += take;
                let left = remaining - take as u64;
                self.state = if left == 0 {
                    ChunkState::DataCr
                } else {
                    ChunkState::Data { remaining: left }
                };
                continue;
            }
            match self.step(input[i]) {
                Ok(next) => self.state = next,
                Err(e) => {
                    // What came before the offending byte is reported, so
                    // the same bytes go on however the body was split.
                    if framing_run > 0 {
                        emit(Segment::Framing(framing_run));
                    }
                    return Err(e);
                }
            }
            i += 1;
            framing_run += 1;
        }
        if framing_run > 0 {
            emit(Segment::Framing(framing_run));
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<ChunkState, ChunkError> {
        use ChunkState::*;
        Ok(match self.state {
            Size { value, digits } => {
                self.bump_line()?;
                match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 16 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        Size {
                            value: value << 4 | d,
                            digits: digits + 1,
                        }
                    }
                    _ if digits == 0 => return Err(ChunkError("invalid chunk size")),
                    b';' | b' ' | b'\t' => Ext { size: value },
                    b'\r' => SizeLf { size: value },
                    _ => return Err(ChunkError("invalid chunk size")),
                }
            }
            Ext { size } => {
                self.bump_line()?;
                match b {
                    b'\r' => SizeLf { size },
                    b'\t' | b' '..=b'~' | 0x80.. => Ext { size },
                    _ => return Err(ChunkError("invalid chunk extension")),
                }
            }
            SizeLf { size } => {
                if b != b'\n' {
                    return Err(ChunkError("chunk size line not ended by CRLF"));
                }
                self.line_len = 0;
                if size == 0 {
                    TrailerStart
                } else {
                    Data { remaining: size }
                }
            }
            DataCr if b == b'\r' => DataLf,
            DataLf if b == b'\n' => Size {
                value: 0,
                digits: 0,
            },
            DataCr | DataLf => return Err(ChunkError("chunk data not followed by CRLF")),
            TrailerStart => {
                self.bump_trailer()?;
                match b {
                    b'\r' => FinalLf,
                    b' ' | b'\t' => return Err(ChunkError("folded trailer line")),
                    b'\n' => return Err(ChunkError("trailer line not ended by CRLF")),
                    _ => TrailerLine,
                }
            }
            TrailerLine => {
                self.bump_trailer()?;
                match b {
                    b'\r' => TrailerLf,
                    b'\n' => return Err(ChunkError("trailer line not ended by CRLF")),
                    _ => TrailerLine,
                }
            }
            TrailerLf if b == b'\n' => TrailerStart,
            FinalLf if b == b'\n' => Done,
            TrailerLf | FinalLf => return Err(ChunkError("trailer line not ended by CRLF")),
            Data { .. } | Done => unreachable!("handled by decode"),
        })
    }

    fn bump_line(&mut self) -> Result<(), ChunkError> {
        self.line_len += 1;
        if self.line_len > self.max_line {
            return Err(ChunkError("chunk size line too long"));
        }
        Ok(())
    }

    fn bump_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_len += 1;
        if self.trailer_len > self.max_trailer {
            return Err(ChunkError("trailer section too large"));
        }
        Ok(())
    }
}

/// Tracks a body of known framing as it streams past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyReader {
    /// Counting down a Content-Length.
    Length {
        /// Bytes still to come.
        remaining: u64,
    },
    /// Walking chunked framing.
    Chunked(ChunkedDecoder),
    /// Taking everything until end of stream.
    UntilClose,
}

impl BodyReader {
    /// A reader for `framing`; `None` when there is no body to read.
    pub fn new(framing: Framing, max_chunk_line: usize, max_trailer: usize) -> Option<BodyReader> {
        match framing {
            Framing::None | Framing::Length(0) => None,
            Framing::Length(n) => Some(BodyReader::Length { remaining: n }),
            Framing::Chunked => Some(BodyReader::Chunked(ChunkedDecoder::new(
                max_chunk_line,
                max_trailer,
            ))),
            Framing::UntilClose => Some(BodyReader::UntilClose),
        }
    }

    /// Consumes the part of `input` that belongs to the body, reporting its
    /// segments in order. Returns the count consumed.
    pub fn read(
        &mut self,
        input: &[u8],
        mut emit: impl FnMut(Segment),
    ) -> Result<usize, ChunkError> {
        match self {
            BodyReader::Length { remaining } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                if take > 0 {
                    emit(Segment::Data(take));
                }
                *remaining -= take as u64;
                Ok(take)
            }
            BodyReader::Chunked(d) => d.decode(input, emit),
            BodyReader::UntilClose => {
                if !input.is_empty() {
                    emit(Segment::Data(input.len()));
                }
                Ok(input.len())
            }
        }
    }

    /// Whether the body is complete. A close-delimited body is complete
    /// only at end of stream, which the caller knows, not the reader.
    pub fn is_done(&self) -> bool {
        match self {
            BodyReader::Length { remaining } => *remaining == 0,
            BodyReader::Chunked(d) => d.is_done(),
            BodyReader::UntilClose => false,
        }
    }

    /// How many of the next input bytes are payload, passed on as they
    /// are whatever else happens: the remaining length, the rest of the
    /// current chunk's data (zero while in framing), or `u64::MAX` until
    /// end of stream.
    pub fn verbatim_run(&self) -> u64 {
        match self {
            BodyReader::Length { remaining } => *remaining,
            BodyReader::Chunked(d) => d.data_remaining(),
            BodyReader::UntilClose => u64::MAX,
        }
    }

    /// Accounts for `n` payload bytes (at most [`verbatim_run`]) that went
    /// on without being [`read`](BodyReader::read).
    ///
    /// [`verbatim_run`]: BodyReader::verbatim_run
    pub fn skip_verbatim(&mut self, n: u64) {
        match self {
            BodyReader::Length { remaining } => *remaining -= n.min(*remaining),
            BodyReader::Chunked(d) => d.skip_data(n),
            BodyReader::UntilClose => {}
        }
    }

    /// Whether the body ends only when the sender closes.
    pub fn is_close_delimited(&self) -> bool {
        matches!(self, BodyReader::UntilClose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, parse_response};

    fn decode_all(input: &[u8], split: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new(64, 64);
        let mut data = Vec::new();
        let mut consumed = 0;
        for piece in input.chunks(split.max(1)) {
            let mut off = 0;
            let n = d.decode(piece, |s| {
                match s {
                    Segment::Data(n) => data.extend_from_slice(&piece[off..off + n]),
                    Segment::Framing(_) => {}
                }
                off += match s {
                    Segment::Data(n) | Segment::Framing(n) => n,
                };
            })?;
            assert_eq!(off, n, "segments cover exactly the consumed prefix");
            consumed += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((data, consumed, d.is_done()))
    }

    #[test]
    fn chunked_body_decodes_identically_at_any_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\nNEXT";
        for split in 1..body.len() {
            let (data, consumed, done) = decode_all(body, split).unwrap();
            assert_eq!(data, b"hello world", "split {split}");
            assert_eq!(consumed, body.len() - 4, "split {split}");
            assert!(done);
        }
    }

    /// Found by the `response_head` fuzzer: a bad trailer line after a
    /// valid last chunk reported nothing when it came in one read, but its
    /// first part when split, so a client got different bytes.
    #[test]
    fn an_error_reports_the_bytes_before_it_at_any_split() {
        let body = b"3\r\nabc\r\n0\r\nX-A: 1\r\nTl: x\nmore";
        // The bare LF ending "Tl: x" is the offending byte.
        let bad = 24;
        assert_eq!(&body[bad - 1..=bad], b"x\n");
        for split in 1..=body.len() {
            let mut d = ChunkedDecoder::new(64, 64);
            let mut covered = 0;
            for piece in body.chunks(split) {
                let mut here = 0;
                let result = d.decode(piece, |s| here += s.bytes());
                covered += here;
                if result.is_err() {
                    break;
                }
            }
            assert_eq!(covered, bad, "split {split}");
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"11111111111111111\r\n",
            b"\r\n",
            b"0\r\n folded\r\n\r\n",
            b"0\r\n\n",
            b"5;a\x01b\r\n",
        ] {
            assert!(
                decode_all(bad, 100).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn chunk_line_and_trailer_limits_hold() {
        let long_ext = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(100));
        assert_eq!(
            decode_all(long_ext.as_bytes(), 7).unwrap_err(),
            ChunkError("chunk size line too long")
        );
        let big_trailer = format!("0\r\nX: {}\r\n\r\n", "t".repeat(100));
        assert_eq!(
            decode_all(big_trailer.as_bytes(), 7).unwrap_err(),
            ChunkError("trailer section too large")
        );
    }

    fn req(text: &str) -> RequestHead<'_> {
        parse_request(text.as_bytes(), 20, 1000).unwrap()
    }

    #[test]
    fn request_framing_is_strict() {
        let f = |t: &str| request_framing(&req(t));
        assert_eq!(f("GET http://a/ HTTP/1.1\r\n\r\n"), Ok(Framing::None));
        assert_eq!(
            f("POST http://a/ HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            f("POST http://a/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            f("POST http://a/ HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            f("POST http://a/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Err(FramingError::BadLength)
        );
        assert_eq!(
            f("POST http://a/ HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
            Err(FramingError::BadLength)
        );
        assert_eq!(
            f("POST http://a/ HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n"),
            Err(FramingError::BadLength)
        );
        assert_eq!(
            f("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            f("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            f("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Err(FramingError::BadCoding)
        );
        assert_eq!(f("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), Err(FramingError::BadCoding));
        assert_eq!(
            f("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(FramingError::BadCoding)
        );
        assert_eq!(f("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), Err(FramingError::Conflicting));
        assert_eq!(
            f("POST http://a/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(FramingError::BadCoding)
        );
    }

    #[test]
    fn response_framing_follows_rfc_9112_section_6_3() {
        fn res(t: &str) -> ResponseHead<'_> {
            parse_response(t.as_bytes(), 20).unwrap()
        }
        let ok = res("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(response_framing("GET", &ok), Ok(Framing::Length(3)));
        assert_eq!(response_framing("HEAD", &ok), Ok(Framing::None));
        for status in ["204 No Content", "304 Not Modified", "100 Continue"] {
            let text = format!("HTTP/1.1 {status}\r\nContent-Length: 3\r\n\r\n");
            let r = res(&text);
            assert_eq!(response_framing("GET", &r), Ok(Framing::None), "{status}");
        }
        assert_eq!(
            response_framing("GET", &res("HTTP/1.1 200 OK\r\n\r\n")),
            Ok(Framing::UntilClose)
        );
        assert_eq!(
            response_framing(
                "GET",
                &res("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
            ),
            Ok(Framing::UntilClose)
        );
        assert_eq!(
            response_framing(
                "GET",
                &res("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
            ),
            Err(FramingError::Conflicting)
        );
    }

    #[test]
    fn length_reader_stops_at_the_end() {
        let mut r = BodyReader::new(Framing::Length(5), 10, 10).unwrap();
        let mut segs = Vec::new();
        assert_eq!(r.read(b"abc", |s| segs.push(s)), Ok(3));
        assert!(!r.is_done());
        assert_eq!(r.read(b"defGET", |s| segs.push(s)), Ok(2));
        assert!(r.is_done());
        assert_eq!(segs, vec![Segment::Data(3), Segment::Data(2)]);
    }
}
