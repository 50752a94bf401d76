//! The access-log sinks: the console (stdout) or a file with size-based
//! rotation, in any of the core's formats.
//!
//! Records are formatted on the caller's thread and handed through a
//! bounded channel to one writer thread, so a request never waits for a
//! disk or a terminal: when the channel is full (the disk is slow, or
//! full and failing) the record is dropped and counted ([`dropped`]), and
//! the writer says so on stderr now and then. The counters are the core's
//! ([`AccessLogCounters`], handed in with [`Options`]), so `/_metrics`
//! shows what was written and dropped without a second count to keep in
//! step.
//!
//! The file is rotated between whole lines: when the next line would take
//! it past `max_size`, `access.log` becomes `access.log.1`, `.1` becomes
//! `.2`, ... up to `backups` files (the oldest is deleted), and a fresh
//! `access.log` is started. Each line is written once, to exactly one
//! file.
//!
//! [`dropped`]: AccessLog::dropped

use crate::clock::wall_now;
use crate::diag;
use proxy_core::config::{LogFormat, Logging};
use proxy_core::metrics::AccessLogCounters;
use proxy_core::units::format_size;
use proxy_core::AccessRecord;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records waiting for the writer, by default: at a few hundred bytes
/// each, a few MiB of memory at most, and seconds of a busy proxy's log.
pub const DEFAULT_CAPACITY: usize = 16 * 1024;

/// Pending lines are written at the latest when this many bytes pile up.
const BATCH_BYTES: usize = 256 * 1024;

/// How long the writer rests after each write, letting records pile up.
///
/// A writer waiting on the channel is woken by each record sent (a futex
/// wake-up on the request's thread, a context switch to the writer, a
/// write per line: three system calls per request, the most of any step
/// of a proxied request after the socket operations). Resting between
/// writes means that under load the request path finds nobody to wake and
/// the records go out together, at most this late; an idle proxy's
/// records still go out at once.
const GATHER: Duration = Duration::from_millis(10);

/// How often the writer may say that records were dropped.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// How the writer is fed, and where it counts what it did.
#[derive(Debug, Clone)]
pub struct Options {
    /// Records that may wait for the writer.
    pub capacity: usize,
    /// Wait for room instead of dropping the record when the channel is
    /// full. Never for a running proxy (it would stall clients behind a
    /// slow disk); for tests that must not lose a record.
    pub block_when_full: bool,
    /// Where records written and dropped are counted: a running proxy
    /// hands in the counters of its metrics
    /// ([`proxy_core::metrics::Metrics::access_log`]).
    pub counters: Arc<AccessLogCounters>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            capacity: DEFAULT_CAPACITY,
            block_when_full: false,
            counters: Arc::default(),
        }
    }
}

/// Size-based rotation of a log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate when the next line would take the file past this many
    /// bytes (a single longer line still gets a file of its own).
    pub max_size: u64,
    /// Rotated files kept: `FILE.1` (newest) to `FILE.N`; 0 starts the
    /// file afresh at each rotation.
    pub backups: u32,
}

/// Where access records go. Cheap to clone; every clone feeds the same
/// writer.
#[derive(Debug, Clone)]
pub struct AccessLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    format: AtomicU8,
    tx: Option<SyncSender<Msg>>,
    block: bool,
    counters: Arc<AccessLogCounters>,
    describe: String,
}

#[derive(Debug)]
enum Msg {
    Line(String),
    Flush(mpsc::Sender<()>),
    Reopen,
}

fn format_to_u8(f: LogFormat) -> u8 {
    match f {
        LogFormat::Human => 0,
        LogFormat::Json => 1,
        LogFormat::Squid => 2,
        LogFormat::Combined => 3,
    }
}

fn format_from_u8(n: u8) -> LogFormat {
    match n {
        1 => LogFormat::Json,
        2 => LogFormat::Squid,
        3 => LogFormat::Combined,
        _ => LogFormat::Human,
    }
}

/// The format's name as `--log-format` spells it.
pub fn format_name(f: LogFormat) -> &'static str {
    match f {
        LogFormat::Human => "human",
        LogFormat::Json => "json",
        LogFormat::Squid => "squid",
        LogFormat::Combined => "combined",
    }
}

impl AccessLog {
    /// A console sink writing human lines; `quiet` drops every record.
    pub fn console(quiet: bool) -> Self {
        if quiet {
            AccessLog::off()
        } else {
            AccessLog::console_with(LogFormat::Human, Options::default())
        }
    }

    /// A sink that drops every record (`--quiet`).
    pub fn off() -> Self {
        AccessLog::off_counting(Arc::default())
    }

    /// [`off`](AccessLog::off), reading `counters` (which stay at zero:
    /// a record silenced on purpose is not a record lost).
    fn off_counting(counters: Arc<AccessLogCounters>) -> Self {
        AccessLog {
            inner: Arc::new(Inner {
                format: AtomicU8::new(format_to_u8(LogFormat::Human)),
                tx: None,
                block: false,
                counters,
                describe: "off (--quiet)".to_owned(),
            }),
        }
    }

    /// Lines in `format` on stdout.
    pub fn console_with(format: LogFormat, options: Options) -> Self {
        let describe = format!("console ({})", format_name(format));
        AccessLog::start(Out::Console, format, options, describe)
            .expect("the console needs no file")
    }

    /// Lines in `format` appended to the file at `path` (created if
    /// missing, with its directory), rotated as `rotation` says. Fails if
    /// the file cannot be opened.
    pub fn file(
        path: &Path,
        format: LogFormat,
        rotation: Rotation,
        options: Options,
    ) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let describe = format!(
            "{} ({}, rotate at {}, keep {})",
            path.display(),
            format_name(format),
            format_size(rotation.max_size),
            rotation.backups
        );
        let sink = FileSink {
            path: path.to_path_buf(),
            file: Some(file),
            size,
            rotation,
            failing: false,
        };
        AccessLog::start(Out::File(sink), format, options, describe)
    }

    /// The sink `logging` describes (`quiet` silences it), counting what
    /// it writes and drops in `counters`.
    pub fn from_config(
        logging: &Logging,
        quiet: bool,
        counters: &Arc<AccessLogCounters>,
    ) -> io::Result<Self> {
        if quiet {
            return Ok(AccessLog::off_counting(Arc::clone(counters)));
        }
        let options = Options {
            counters: Arc::clone(counters),
            ..Options::default()
        };
        match &logging.file {
            None => Ok(AccessLog::console_with(logging.format, options)),
            Some(path) => AccessLog::file(
                Path::new(path),
                logging.format,
                Rotation {
                    max_size: logging.max_size as u64,
                    backups: logging.backups,
                },
                options,
            )
            .map_err(|e| io::Error::new(e.kind(), format!("access log {path}: {e}"))),
        }
    }

    fn start(out: Out, format: LogFormat, options: Options, describe: String) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(options.capacity.max(1));
        let counters = options.counters;
        let writer = Writer {
            out,
            counters: Arc::clone(&counters),
            batch: Vec::with_capacity(BATCH_BYTES),
            batch_lines: 0,
            reported_drops: 0,
            last_report: None,
        };
        std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || writer.run(rx))?;
        Ok(AccessLog {
            inner: Arc::new(Inner {
                format: AtomicU8::new(format_to_u8(format)),
                tx: Some(tx),
                block: options.block_when_full,
                counters,
                describe,
            }),
        })
    }

    /// Writes one record, stamped with the current wall time. Never
    /// blocks (unless built with `block_when_full`): when the writer is
    /// behind, the record is dropped and counted.
    pub fn write(&self, record: &AccessRecord) {
        let Some(tx) = &self.inner.tx else {
            return;
        };
        let mut line = record.format(self.format(), wall_now());
        line.push('\n');
        self.send_line(tx, line);
    }

    /// Queues one already formatted line (ending in `\n`).
    fn send_line(&self, tx: &SyncSender<Msg>, line: String) {
        let sent = if self.inner.block {
            tx.send(Msg::Line(line)).is_ok()
        } else {
            match tx.try_send(Msg::Line(line)) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            }
        };
        if !sent {
            self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped so far: the writer was behind, or a write failed.
    pub fn dropped(&self) -> u64 {
        self.inner.counters.dropped.load(Ordering::Relaxed)
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.inner.counters.written.load(Ordering::Relaxed)
    }

    /// The format in use.
    pub fn format(&self) -> LogFormat {
        format_from_u8(self.inner.format.load(Ordering::Relaxed))
    }

    /// Switches format from the next record on (on reload).
    pub fn set_format(&self, format: LogFormat) {
        self.inner
            .format
            .store(format_to_u8(format), Ordering::Relaxed);
    }

    /// Where records go, for a person: `console (human)`,
    /// `/var/log/proxy/access.log (json, rotate at 10MiB, keep 5)`.
    pub fn describe(&self) -> &str {
        &self.inner.describe
    }

    /// Waits (up to `timeout`) until every record written before this
    /// call is on its way to the disk or terminal. For shutdown, and
    /// tests. Returns whether it finished in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(tx) = &self.inner.tx else {
            return true;
        };
        let (ack, done) = mpsc::channel();
        let deadline = Instant::now() + timeout;
        let mut msg = Msg::Flush(ack);
        loop {
            match tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(m)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    msg = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        done.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Closes and opens the file again (after an outside tool such as
    /// logrotate moved it away); nothing for the console.
    pub fn reopen(&self) {
        if let Some(tx) = &self.inner.tx {
            // Blocking is fine here: this is not the request path.
            let _ = tx.send(Msg::Reopen);
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The backup `n` of `path`: `access.log.3`.
pub fn backup_path(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

enum Out {
    Console,
    File(FileSink),
}

struct FileSink {
    path: PathBuf,
    /// `None` after a failed rotation or reopen, until the next try.
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    rotation: Rotation,
    /// Whether the last write failed (to report trouble once, and
    /// recovery once).
    failing: bool,
}

impl FileSink {
    /// Whether `len` more bytes (after `pending` not yet written) call for
    /// a rotation first.
    fn must_rotate(&self, pending: usize, len: usize) -> bool {
        let before = self.size + pending as u64;
        before > 0 && before + len as u64 > self.rotation.max_size
    }

    /// Shifts the backups and starts a new file.
    fn rotate(&mut self) {
        self.file = None;
        let result = (|| -> io::Result<()> {
            let keep = self.rotation.backups;
            if keep == 0 {
                return remove_if_present(&self.path);
            }
            remove_if_present(&backup_path(&self.path, keep))?;
            for n in (1..keep).rev() {
                rename_if_present(&backup_path(&self.path, n), &backup_path(&self.path, n + 1))?;
            }
            rename_if_present(&self.path, &backup_path(&self.path, 1))
        })();
        if let Err(e) = result {
            diag::warn(format_args!(
                "access log: cannot rotate {}: {e}; writing on",
                self.path.display()
            ));
        }
        self.open();
    }

    /// (Re)opens the file for appending.
    fn open(&mut self) {
        match open_append(&self.path).and_then(|f| Ok((f.metadata()?.len(), f))) {
            Ok((size, f)) => {
                self.size = size;
                self.file = Some(f);
            }
            Err(e) => {
                if !self.failing {
                    diag::error(format_args!(
                        "access log: cannot open {}: {e}; dropping records until it can",
                        self.path.display()
                    ));
                }
                self.failing = true;
                self.file = None;
            }
        }
    }

    /// Appends whole lines; false if they could not be written (then
    /// nothing of them is left in the file, as far as it can be undone).
    fn write(&mut self, bytes: &[u8]) -> bool {
        if self.file.is_none() {
            self.open();
        }
        let Some(f) = &mut self.file else {
            return false;
        };
        match f.write_all(bytes) {
            Ok(()) => {
                self.size += bytes.len() as u64;
                if self.failing {
                    diag::info(format_args!(
                        "access log: writing to {} again",
                        self.path.display()
                    ));
                    self.failing = false;
                }
                true
            }
            Err(e) => {
                // Cut off a partial line, so the file stays whole lines.
                let _ = f.set_len(self.size);
                if !self.failing {
                    diag::error(format_args!(
                        "access log: cannot write to {}: {e}; dropping records until it can",
                        self.path.display()
                    ));
                }
                self.failing = true;
                false
            }
        }
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The writer thread's state.
struct Writer {
    out: Out,
    counters: Arc<AccessLogCounters>,
    /// Lines not yet written.
    batch: Vec<u8>,
    batch_lines: u64,
    reported_drops: u64,
    last_report: Option<Instant>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let msg = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.report_drops();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.handle(msg);
            // Take what else is waiting, then write it in one go.
            while self.batch.len() < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(m) => self.handle(m),
                    Err(_) => break,
                }
            }
            self.write_batch();
            self.report_drops();
            std::thread::sleep(GATHER);
        }
        self.write_batch();
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Line(line) => {
                if let Out::File(f) = &self.out {
                    if f.must_rotate(self.batch.len(), line.len()) {
                        self.write_batch();
                        if let Out::File(f) = &mut self.out {
                            f.rotate();
                        }
                    }
                }
                self.batch.extend_from_slice(line.as_bytes());
                self.batch_lines += 1;
            }
            Msg::Flush(ack) => {
                self.write_batch();
                let _ = ack.send(());
            }
            Msg::Reopen => {
                self.write_batch();
                if let Out::File(f) = &mut self.out {
                    f.file = None;
                    f.open();
                }
            }
        }
    }

    fn write_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let ok = match &mut self.out {
            Out::Console => {
                let mut out = io::stdout().lock();
                out.write_all(&self.batch)
                    .and_then(|()| out.flush())
                    .is_ok()
            }
            Out::File(f) => f.write(&self.batch),
        };
        let counter = if ok {
            &self.counters.written
        } else {
            &self.counters.dropped
        };
        counter.fetch_add(self.batch_lines, Ordering::Relaxed);
        self.batch.clear();
        self.batch_lines = 0;
    }

    /// Says (at most every [`DROP_REPORT_EVERY`]) how many records were
    /// dropped since it last said.
    fn report_drops(&mut self) {
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        if dropped == self.reported_drops {
            return;
        }
        if self
            .last_report
            .is_some_and(|t| t.elapsed() < DROP_REPORT_EVERY)
        {
            return;
        }
        diag::warn(format_args!(
            "access log: {} records dropped (the log cannot keep up, or writes fail); {dropped} in all",
            dropped - self.reported_drops
        ));
        self.reported_drops = dropped;
        self.last_report = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_core::metrics::Metrics;
    use proxy_core::{ConnId, ExchangeKind};
    use std::collections::HashMap;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("proxy-access-log-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn record(target: String) -> AccessRecord {
        AccessRecord {
            conn: ConnId(1),
            client: "127.0.0.1:5000".parse().unwrap(),
            method: "GET".into(),
            target,
            upstream: None,
            status: 200,
            bytes_to_client: 10,
            bytes_from_client: 10,
            duration: Duration::ZERO,
            kind: ExchangeKind::Http,
            error: None,
            user: None,
            decision: proxy_core::Decision::Allowed,
            rule: None,
            tls: None,
            cache: None,
            agent: None,
            parent: false,
            balancer: None,
        }
    }

    fn blocking() -> Options {
        Options {
            capacity: 1024,
            block_when_full: true,
            ..Options::default()
        }
    }

    /// The lines of `path` and its backups, oldest file first.
    fn all_lines(path: &Path, backups: u32) -> Vec<String> {
        let mut files: Vec<PathBuf> = (1..=backups).rev().map(|n| backup_path(path, n)).collect();
        files.push(path.to_path_buf());
        let mut lines = Vec::new();
        for f in files {
            if let Ok(text) = std::fs::read_to_string(&f) {
                assert!(
                    text.is_empty() || text.ends_with('\n'),
                    "{} ends mid-line",
                    f.display()
                );
                lines.extend(text.lines().map(str::to_owned));
            }
        }
        lines
    }

    #[test]
    fn rotates_at_the_size_keeping_n_backups() {
        let dir = temp_dir("rotate");
        let path = dir.join("access.log");
        let log = AccessLog::file(
            &path,
            LogFormat::Squid,
            Rotation {
                max_size: 1000,
                backups: 3,
            },
            blocking(),
        )
        .unwrap();
        // Squid lines of a fixed length: 100 bytes each with the newline.
        let mut line_len = 0;
        for i in 0..100 {
            let r = record(format!("http://example.com/{i:04}"));
            let line = r.squid(wall_now());
            if i == 0 {
                line_len = line.len() + 1;
            }
            assert_eq!(line.len() + 1, line_len);
            log.write(&r);
        }
        assert!(log.flush(Duration::from_secs(10)));
        assert_eq!(log.dropped(), 0);
        assert_eq!(log.written(), 100);
        let per_file = 1000 / line_len;
        // Every file is whole lines, none over the size.
        for n in 1..=3 {
            let size = std::fs::metadata(backup_path(&path, n)).unwrap().len() as usize;
            assert_eq!(size, per_file * line_len, "access.log.{n}");
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 1000);
        assert!(!backup_path(&path, 4).exists(), "only 3 backups are kept");
        // The newest records are kept, in order, oldest file first.
        let lines = all_lines(&path, 3);
        let first = 100 - lines.len();
        for (i, l) in lines.iter().enumerate() {
            assert!(l.contains(&format!("/{:04} ", first + i)), "line {i}: {l}");
        }
        let current = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            current.lines().count(),
            100 % per_file + if 100 % per_file == 0 { per_file } else { 0 }
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn zero_backups_start_the_file_afresh() {
        let dir = temp_dir("zero-backups");
        let path = dir.join("access.log");
        let log = AccessLog::file(
            &path,
            LogFormat::Human,
            Rotation {
                max_size: 300,
                backups: 0,
            },
            blocking(),
        )
        .unwrap();
        for i in 0..20 {
            log.write(&record(format!("http://a.test/{i}")));
        }
        assert!(log.flush(Duration::from_secs(10)));
        assert!(!backup_path(&path, 1).exists());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.len() <= 300 && text.ends_with("/19 -> - 200 10B 0ms\n"),
            "{text}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_existing_file_is_appended_to_and_counts_toward_the_size() {
        let dir = temp_dir("append");
        let path = dir.join("sub").join("access.log");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "old line\n".repeat(10)).unwrap();
        let log = AccessLog::file(
            &path,
            LogFormat::Json,
            Rotation {
                max_size: 100,
                backups: 2,
            },
            blocking(),
        )
        .unwrap();
        assert_eq!(
            log.describe(),
            format!("{} (json, rotate at 100B, keep 2)", path.display())
        );
        log.write(&record("http://a.test/".into()));
        assert!(log.flush(Duration::from_secs(10)));
        // 90 bytes were there; the record would pass 100: rotated first.
        assert_eq!(
            std::fs::read_to_string(backup_path(&path, 1)).unwrap(),
            "old line\n".repeat(10)
        );
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(
            now.starts_with("{\"time\":") && now.ends_with("\"conn\":1}\n"),
            "{now}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// 8 threads × 5,000 records, rotating every few hundred: the union
    /// of the files holds every record exactly once, whole.
    #[test]
    fn concurrent_writers_lose_and_duplicate_nothing_across_rotations() {
        const THREADS: usize = 8;
        const EACH: usize = 5_000;
        let dir = temp_dir("concurrent");
        let path = dir.join("access.log");
        let rotation = Rotation {
            max_size: 64 * 1024,
            backups: 1_000,
        };
        let log = AccessLog::file(&path, LogFormat::Human, rotation, blocking()).unwrap();
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        log.write(&record(format!("http://t{t}.test/{i}")));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(log.flush(Duration::from_secs(30)));
        assert_eq!(log.dropped(), 0);
        assert_eq!(log.written(), (THREADS * EACH) as u64);
        let lines = all_lines(&path, rotation.backups);
        let rotated = (1..=rotation.backups)
            .take_while(|&n| backup_path(&path, n).exists())
            .count();
        assert!(rotated >= 5, "only {rotated} rotations");
        for n in 1..=rotated as u32 {
            let size = std::fs::metadata(backup_path(&path, n)).unwrap().len();
            assert!(size <= rotation.max_size, "access.log.{n} is {size} bytes");
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for l in &lines {
            let target = l
                .split(' ')
                .nth(3)
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            assert!(l.ends_with(" 200 10B 0ms"), "bad line {l:?}");
            *seen.entry(target.to_owned()).or_default() += 1;
        }
        assert_eq!(lines.len(), THREADS * EACH);
        for t in 0..THREADS {
            // Each thread's records are in its order.
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| {
                    l.split(' ')
                        .nth(3)?
                        .strip_prefix(&format!("http://t{t}.test/"))?
                        .parse()
                        .ok()
                })
                .collect();
            assert_eq!(mine, (0..EACH).collect::<Vec<_>>(), "thread {t}");
        }
        assert!(seen.values().all(|&n| n == 1));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Also: the proxy's `/_metrics` reads the same counts, since the log
    /// counts in the counters the metrics handed it.
    #[test]
    fn a_full_channel_drops_and_counts_instead_of_blocking() {
        let dir = temp_dir("full");
        let path = dir.join("access.log");
        let metrics = Metrics::new();
        let log = AccessLog::file(
            &path,
            LogFormat::Human,
            Rotation {
                max_size: 1 << 30,
                backups: 1,
            },
            Options {
                capacity: 4,
                block_when_full: false,
                counters: Arc::clone(metrics.access_log()),
            },
        )
        .unwrap();
        let started = Instant::now();
        // A fast writer thread may keep up with 20,000 for a while: go on
        // until one was dropped, which is what this test is about.
        let mut sent = 0u64;
        while sent < 20_000 || (log.dropped() == 0 && started.elapsed() < Duration::from_secs(5)) {
            log.write(&record(format!("http://a.test/{sent}")));
            sent += 1;
        }
        let took = started.elapsed();
        assert!(log.flush(Duration::from_secs(10)));
        let lines = all_lines(&path, 0).len() as u64;
        assert_eq!(lines + log.dropped(), sent);
        assert_eq!(lines, log.written());
        assert!(log.dropped() > 0, "4 places for {sent} records");
        assert!(took < Duration::from_secs(10), "{took:?}");
        let text = metrics.render_prometheus(proxy_core::Instant::ZERO, 0, None);
        let sample = |name: &str| -> u64 {
            let prefix = format!("{name} ");
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
                .parse()
                .unwrap()
        };
        assert_eq!(
            sample("proxy_access_log_dropped_records_total"),
            log.dropped()
        );
        assert_eq!(sample("proxy_access_log_written_records_total"), lines);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn quiet_drops_everything_and_describes_itself() {
        let log = AccessLog::console(true);
        log.write(&record("http://a.test/".into()));
        assert!(log.flush(Duration::from_secs(1)));
        assert_eq!(log.describe(), "off (--quiet)");
        assert_eq!(AccessLog::console(false).describe(), "console (human)");
    }

    #[test]
    fn reopen_follows_a_file_moved_away() {
        let dir = temp_dir("reopen");
        let path = dir.join("access.log");
        let log = AccessLog::file(
            &path,
            LogFormat::Human,
            Rotation {
                max_size: 1 << 20,
                backups: 1,
            },
            blocking(),
        )
        .unwrap();
        log.write(&record("http://a.test/1".into()));
        assert!(log.flush(Duration::from_secs(10)));
        std::fs::rename(&path, dir.join("moved.log")).unwrap();
        log.reopen();
        log.write(&record("http://a.test/2".into()));
        assert!(log.flush(Duration::from_secs(10)));
        assert!(std::fs::read_to_string(dir.join("moved.log"))
            .unwrap()
            .contains("/1 "));
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(now.contains("/2 ") && !now.contains("/1 "), "{now}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
