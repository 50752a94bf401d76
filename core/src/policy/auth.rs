//! Basic proxy authentication against an htpasswd file.
//!
//! The runtime reads the file and hands its text to [`Htpasswd::parse`]; the
//! runtime decodes nothing itself: [`parse_basic`] takes the raw
//! `Proxy-Authorization` value and [`Htpasswd::check`] answers yes or no at
//! once, or hands back a [`VerifyJob`] when the answer takes a bcrypt run.
//! bcrypt is slow on purpose (tens to hundreds of milliseconds), so the job
//! runs where it cannot hold up other connections: the connection asks its
//! runtime for it as an operation, and [`Htpasswd::verified`] takes the
//! answer.
//!
//! Supported hashes are the ones worth trusting that `htpasswd` writes:
//! bcrypt (`htpasswd -B`) and `{SHA}` (`htpasswd -s`, unsalted but at least
//! not the password). Plain-text passwords load only when the operator opts
//! in. Apache's MD5 (`$apr1$`) and `crypt(3)` are refused with a message that
//! says how to re-hash, rather than implemented: both are weak, and a proxy
//! that silently accepted them would invite keeping them.

use crate::time::Instant;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How long a successful bcrypt verification is remembered.
///
/// Long enough that a browser's burst of requests costs one bcrypt run, short
/// enough that a password removed from the file by hand (without a reload)
/// stops working soon; a reload drops the cache at once.
pub const CACHE_TTL: Duration = Duration::from_secs(5 * 60);

/// The most verifications remembered at once.
pub const CACHE_CAPACITY: usize = 10_000;

/// A SHA-1 digest; the unit every fast comparison is made in.
type Digest20 = [u8; 20];

/// How one user's password is checked.
enum Credential {
    /// A bcrypt hash string, validated at parse time.
    Bcrypt(String),
    /// `{SHA}`: the SHA-1 of the password.
    Sha1(Digest20),
    /// A plain-text password, kept only as its SHA-1 so that the comparison
    /// is over fixed-length digests and the password is not held in memory.
    Plain(Digest20),
}

impl Credential {
    fn kind(&self) -> &'static str {
        match self {
            Credential::Bcrypt(_) => "bcrypt",
            Credential::Sha1(_) => "sha1",
            Credential::Plain(_) => "plain",
        }
    }
}

/// A remembered successful verification.
struct CacheEntry {
    /// SHA-1 of `user\0password`: enough to recognise the password again
    /// without keeping it.
    digest: Digest20,
    expires: Instant,
}

/// A parsed htpasswd file.
///
/// Shared by every connection (it is `Send + Sync`); a reload parses a new
/// one, which also discards the verification cache.
pub struct Htpasswd {
    users: HashMap<String, Credential>,
    /// What an unknown user's password is checked against, so that the time
    /// taken does not tell whether the name exists. `None` when no user has a
    /// bcrypt hash (every check is then a fast digest comparison anyway).
    dummy_bcrypt: Option<String>,
    /// Keyed by user name: one remembered password per user is all a
    /// legitimate client needs, and it bounds the map by the user count.
    cache: Mutex<HashMap<String, CacheEntry>>,
    #[cfg(test)]
    bcrypt_runs: std::sync::atomic::AtomicUsize,
}

/// What [`Htpasswd::check`] could tell at once.
#[derive(Debug)]
pub enum Check {
    /// The answer.
    Known(bool),
    /// The answer needs this bcrypt run.
    Slow(VerifyJob),
}

/// One bcrypt verification, to run where its cost (deliberately tens to
/// hundreds of milliseconds of CPU) holds up no other connection: its
/// [`run`](VerifyJob::run) is pure computation and may go to any thread.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyJob {
    user: String,
    password: String,
    hash: String,
    /// SHA-1 of `user\0password`, remembered on success.
    digest: Digest20,
    /// False for an unknown user, checked against a dummy hash so that it
    /// costs the same: never a success.
    known_user: bool,
}

impl VerifyJob {
    /// Runs bcrypt: whether the password matches the hash.
    pub fn run(&self) -> bool {
        // The hash was validated when the file was parsed, so an error here
        // cannot come from the file; refusing is the safe answer regardless.
        bcrypt::verify(&self.password, &self.hash).unwrap_or(false)
    }

    /// The user name the credential gave.
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl fmt::Debug for VerifyJob {
    // Neither the password nor the hash belongs in a log or a panic.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyJob")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A bad line, reported with its 1-based number; the good lines still load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// 1-based line number in the file.
    pub line: usize,
    /// What is wrong, and what to do about it.
    pub message: String,
    /// The user whose password must be hashed again (with `htpasswd -B`)
    /// to load: the caller, who knows the file, says the command.
    pub rehash: Option<String>,
    /// The line looks like a plain-text password, refused because
    /// `allow_plaintext` is off.
    pub plaintext: bool,
}

impl fmt::Debug for Htpasswd {
    // Hashes stay out of logs and panic messages: a `{SHA}` digest or a
    // low-cost bcrypt hash is an offline-crackable secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut users: Vec<(&str, &str)> = self
            .users
            .iter()
            .map(|(u, c)| (u.as_str(), c.kind()))
            .collect();
        users.sort_unstable();
        f.debug_struct("Htpasswd").field("users", &users).finish()
    }
}

impl Htpasswd {
    /// Parses `user:hash` lines: bcrypt `$2y$`/`$2b$`/`$2a$` (as `htpasswd -B`
    /// makes), `{SHA}base64(sha1)`, and plain `user:password` only when
    /// `allow_plaintext` (else that line is a [`LineError`] saying to opt in).
    ///
    /// `#` comments and blank lines are skipped; surrounding whitespace on a
    /// line is ignored. Duplicate users: the last line wins, and the later
    /// line also gets a [`LineError`] as a warning. Anything else
    /// unrecognised (`$apr1$` MD5, `crypt(3)`, …) is a [`LineError`] naming
    /// the format.
    pub fn parse(text: &str, allow_plaintext: bool) -> (Htpasswd, Vec<LineError>) {
        let mut users: HashMap<String, Credential> = HashMap::new();
        let mut first_seen: HashMap<String, usize> = HashMap::new();
        let mut errors = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut error = |message: String| {
                errors.push(LineError {
                    line,
                    message,
                    rehash: None,
                    plaintext: false,
                })
            };
            let Some((user, secret)) = trimmed.split_once(':') else {
                error("expected `user:hash`, found no colon".to_owned());
                continue;
            };
            if user.is_empty() {
                error("empty user name".to_owned());
                continue;
            }
            let credential = match parse_secret(secret, allow_plaintext) {
                Ok((credential, warning)) => {
                    if let Some(warning) = warning {
                        error(warning);
                    }
                    credential
                }
                Err(refused) => {
                    errors.push(LineError {
                        line,
                        message: format!("user {user:?}: {}", refused.message),
                        rehash: Some(user.to_owned()),
                        plaintext: refused.plaintext,
                    });
                    continue;
                }
            };
            if let Some(earlier) = first_seen.get(user) {
                error(format!(
                    "duplicate user {user:?} (first on line {earlier}); this later line wins"
                ));
            } else {
                first_seen.insert(user.to_owned(), line);
            }
            users.insert(user.to_owned(), credential);
        }
        let dummy_bcrypt = dummy_bcrypt_for(&users);
        let htpasswd = Htpasswd {
            users,
            dummy_bcrypt,
            cache: Mutex::new(HashMap::new()),
            #[cfg(test)]
            bcrypt_runs: std::sync::atomic::AtomicUsize::new(0),
        };
        (htpasswd, errors)
    }

    /// How many users were loaded.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user was loaded (every request will be refused).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// How many users have plain-text passwords (the runtime warns at start-up).
    pub fn plaintext_users(&self) -> usize {
        self.users
            .values()
            .filter(|c| matches!(c, Credential::Plain(_)))
            .count()
    }

    /// Whether `password` is right for `user`, if that can be told at
    /// once: a digest comparison, or a bcrypt verification remembered from
    /// earlier. Otherwise the [`VerifyJob`] that tells; give its answer to
    /// [`verified`](Htpasswd::verified).
    ///
    /// Digests are compared in constant time, and an unknown user costs about
    /// as much as a known one (a bcrypt run against a dummy hash of the
    /// file's usual cost), so neither passwords nor user names can be probed
    /// by timing. Successful bcrypt verifications are remembered until
    /// `now + CACHE_TTL`, because bcrypt is deliberately slow and clients send
    /// the same credential with every request; failures are never remembered.
    pub fn check(&self, user: &str, password: &str, now: Instant) -> Check {
        match self.users.get(user) {
            Some(Credential::Sha1(expected) | Credential::Plain(expected)) => {
                Check::Known(ct_eq(&sha1(&[password.as_bytes()]), expected))
            }
            Some(Credential::Bcrypt(hash)) => {
                let digest = sha1(&[user.as_bytes(), b"\0", password.as_bytes()]);
                if self.cached(user, &digest, now) {
                    return Check::Known(true);
                }
                Check::Slow(VerifyJob {
                    user: user.to_owned(),
                    password: password.to_owned(),
                    hash: hash.clone(),
                    digest,
                    known_user: true,
                })
            }
            // Same work as a known user with a wrong password; the result
            // is thrown away.
            None => match &self.dummy_bcrypt {
                Some(hash) => Check::Slow(VerifyJob {
                    user: user.to_owned(),
                    password: password.to_owned(),
                    hash: hash.clone(),
                    digest: [0; 20],
                    known_user: false,
                }),
                None => {
                    let _ = ct_eq(&sha1(&[password.as_bytes()]), &[0; 20]);
                    Check::Known(false)
                }
            },
        }
    }

    /// Takes the answer of a [`VerifyJob`] this file gave out: remembers a
    /// success (see [`check`](Htpasswd::check)). Returns the answer.
    pub fn verified(&self, job: &VerifyJob, ok: bool, now: Instant) -> bool {
        let ok = ok && job.known_user;
        if ok {
            self.remember(&job.user, job.digest, now);
        }
        ok
    }

    /// [`check`](Htpasswd::check), running any job here: for tests.
    #[cfg(test)]
    pub(crate) fn verify(&self, user: &str, password: &str, now: Instant) -> bool {
        match self.check(user, password, now) {
            Check::Known(ok) => ok,
            Check::Slow(job) => {
                self.bcrypt_runs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let ok = job.run();
                self.verified(&job, ok, now)
            }
        }
    }

    fn lock_cache(&self) -> MutexGuard<'_, HashMap<String, CacheEntry>> {
        // A panic elsewhere while holding the lock leaves the map consistent
        // (every update is a single insert or clear), so poisoning is ignored.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, user: &str, digest: &Digest20, now: Instant) -> bool {
        let cache = self.lock_cache();
        cache
            .get(user)
            .is_some_and(|entry| now < entry.expires && ct_eq(&entry.digest, digest))
    }

    fn remember(&self, user: &str, digest: Digest20, now: Instant) {
        let mut cache = self.lock_cache();
        if cache.len() >= CACHE_CAPACITY && !cache.contains_key(user) {
            cache.retain(|_, entry| now < entry.expires);
            if cache.len() >= CACHE_CAPACITY {
                // Forgetting costs only one more bcrypt run per user, so a
                // blunt clear beats the bookkeeping of an LRU.
                cache.clear();
            }
        }
        cache.insert(
            user.to_owned(),
            CacheEntry {
                digest,
                expires: now + CACHE_TTL,
            },
        );
    }

    #[cfg(test)]
    fn bcrypt_runs(&self) -> usize {
        self.bcrypt_runs.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Why a password field was not loaded.
struct Refused {
    message: String,
    /// It may be a plain-text password.
    plaintext: bool,
}

impl Refused {
    fn new(message: String) -> Refused {
        Refused {
            message,
            plaintext: false,
        }
    }
}

impl From<String> for Refused {
    fn from(message: String) -> Refused {
        Refused::new(message)
    }
}

/// Recognises one password field. `Ok` may carry a warning for the line.
fn parse_secret(
    secret: &str,
    allow_plaintext: bool,
) -> Result<(Credential, Option<String>), Refused> {
    if let Some(encoded) = secret.strip_prefix("{SHA}") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| Refused::new("{SHA} hash is not valid base64".to_owned()))?;
        let digest: Digest20 = bytes.try_into().map_err(|bytes: Vec<u8>| {
            Refused::new(format!(
                "{{SHA}} hash decodes to {} bytes, expected 20",
                bytes.len()
            ))
        })?;
        return Ok((Credential::Sha1(digest), None));
    }
    if ["$2y$", "$2b$", "$2a$"]
        .iter()
        .any(|prefix| secret.starts_with(prefix))
    {
        let parts: bcrypt::HashParts = secret
            .parse()
            .map_err(|e| Refused::new(format!("malformed bcrypt hash: {e}")))?;
        // The bcrypt crate would only notice a bad cost when verifying;
        // catching it here turns a silent never-matches into a reported line.
        let cost = parts.get_cost();
        if !(4..=31).contains(&cost) {
            return Err(Refused::new(format!(
                "bcrypt cost {cost} is outside 4..=31"
            )));
        }
        return Ok((Credential::Bcrypt(secret.to_owned()), None));
    }
    if let Some(format) = unsupported_format(secret) {
        return Err(Refused::new(format!(
            "{format} is not supported (weak): hash the password again with bcrypt"
        )));
    }
    if !allow_plaintext {
        return Err(Refused {
            message: "not a recognised hash; a plain-text password loads only with \
                 policy.auth.allow_plaintext: true (insecure), or hash it with bcrypt"
                .to_owned(),
            plaintext: true,
        });
    }
    if secret.is_empty() {
        return Err(Refused::new("empty password".to_owned()));
    }
    let warning = looks_like_des_crypt(secret).then(|| {
        "value looks like a crypt(3) DES hash, which is not supported; \
         it was loaded as a plain-text password"
            .to_owned()
    });
    Ok((Credential::Plain(sha1(&[secret.as_bytes()])), warning))
}

/// Names the hash formats we recognise but refuse, so the operator is told
/// what they have instead of "bad line".
fn unsupported_format(secret: &str) -> Option<&'static str> {
    const PREFIXES: [(&str, &str); 8] = [
        ("$apr1$", "Apache MD5 ($apr1$)"),
        ("$1$", "MD5-crypt ($1$)"),
        (
            "$2x$",
            "bcrypt $2x$ (the legacy variant for a buggy implementation)",
        ),
        ("$2$", "original bcrypt ($2$)"),
        ("$5$", "SHA-256-crypt ($5$)"),
        ("$6$", "SHA-512-crypt ($6$)"),
        ("$y$", "yescrypt ($y$)"),
        ("{SSHA}", "salted SHA ({SSHA})"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| secret.starts_with(prefix))
        .map(|(_, name)| *name)
        .or_else(|| {
            if secret.starts_with('$') {
                Some("a `$...$` crypt(3) hash")
            } else if secret.starts_with('{') && secret.contains('}') {
                Some("a `{SCHEME}` hash other than {SHA}")
            } else {
                None
            }
        })
}

/// `crypt(3)` DES: 13 characters from `./0-9A-Za-z`, the default of old
/// `htpasswd` on Unix. Indistinguishable from some plain passwords, hence
/// only a warning.
fn looks_like_des_crypt(secret: &str) -> bool {
    secret.len() == 13
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

/// A syntactically valid bcrypt hash of the cost most users have, matching
/// no password. Verifying against it costs what a real user's check costs.
fn dummy_bcrypt_for(users: &HashMap<String, Credential>) -> Option<String> {
    let mut costs: HashMap<u32, usize> = HashMap::new();
    for credential in users.values() {
        if let Credential::Bcrypt(hash) = credential {
            if let Ok(parts) = hash.parse::<bcrypt::HashParts>() {
                *costs.entry(parts.get_cost()).or_default() += 1;
            }
        }
    }
    let (cost, _) = costs
        .into_iter()
        .max_by_key(|&(cost, count)| (count, cost))?;
    // Salt and digest of an arbitrary real hash; only the cost matters.
    Some(format!(
        "$2b${cost:02}$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie"
    ))
}

fn sha1(parts: &[&[u8]]) -> Digest20 {
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Equality whose running time does not depend on where the digests differ.
fn ct_eq(a: &Digest20, b: &Digest20) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold back into an early exit.
    std::hint::black_box(diff) == 0
}

/// Decodes a `Proxy-Authorization` value: scheme `Basic` case-insensitive,
/// one space or more, base64 of `user:password` (split at the first colon;
/// the password may contain colons; the user may not be empty).
///
/// Returns `None` for anything else: other schemes, bad base64, no colon,
/// non-UTF-8. Missing base64 padding is tolerated, as some clients omit it.
pub fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    let value = value.trim_ascii();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"Basic") {
        return None;
    }
    let token = rest.trim_ascii_start();
    if token.is_empty() {
        return None;
    }
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = LENIENT.decode(token).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::ZERO;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn load(text: &str) -> Htpasswd {
        let (h, errors) = Htpasswd::parse(text, false);
        assert_eq!(errors, vec![]);
        h
    }

    #[test]
    fn bcrypt_hashes_made_by_the_crate_verify() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let h = load(&format!("alice:{hash}\n"));
        assert_eq!(h.len(), 1);
        assert!(h.verify("alice", "s3cret", T0));
        assert!(!h.verify("alice", "S3cret", T0));
        assert!(!h.verify("alice", "", T0));
    }

    #[test]
    fn bcrypt_2y_as_htpasswd_makes_it_verifies() {
        // `htpasswd -B` writes `$2y$` with cost 5.
        let parts = bcrypt::hash_with_salt("hunter2", 5, *b"0123456789abcdef").unwrap();
        let hash = parts.format_for_version(bcrypt::Version::TwoY);
        assert!(hash.starts_with("$2y$05$"));
        let h = load(&format!("bob:{hash}"));
        assert!(h.verify("bob", "hunter2", T0));
        assert!(!h.verify("bob", "hunter3", T0));
    }

    #[test]
    fn literal_hashes_from_other_implementations_verify() {
        // PHP's `password_hash` documentation example ($2y$, cost 7), and a
        // `$2b$` hash made by python's bcrypt (from the bcrypt crate's tests).
        let text = "\
            rasmus:$2y$07$BCryptRequires22Chrcte/VlQH0piJtjXl.0t1XkA8pw9dMXTpOq\n\
            py:$2b$04$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie\n\
            node:$2a$04$n4Uy0eSnMfvnESYL.bLwuuj0U/ETSsoTpRT9GVk5bektyVVa5xnIi\n";
        let h = load(text);
        assert!(h.verify("rasmus", "rasmuslerdorf", T0));
        assert!(h.verify("py", "correctbatteryhorsestapler", T0));
        assert!(h.verify("node", "correctbatteryhorsestapler", T0));
        assert!(!h.verify("py", "correctbatteryhorse", T0));
    }

    #[test]
    fn sha_hash_verifies() {
        let h = load("carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
        assert!(h.verify("carol", "password", T0));
        assert!(!h.verify("carol", "Password", T0));
        assert_eq!(h.plaintext_users(), 0);
    }

    #[test]
    fn plaintext_needs_opt_in() {
        let (h, errors) = Htpasswd::parse("dave:letmein\n", false);
        assert!(h.is_empty());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 1);
        assert!(errors[0].message.contains("plain-text"), "{}", errors[0]);
        assert!(
            errors[0].message.contains("allow_plaintext"),
            "{}",
            errors[0]
        );
        assert!(errors[0].plaintext);
        assert!(!h.verify("dave", "letmein", T0));

        let (h, errors) = Htpasswd::parse("dave:letmein\n", true);
        assert_eq!(errors, vec![]);
        assert_eq!(h.plaintext_users(), 1);
        assert!(h.verify("dave", "letmein", T0));
        assert!(!h.verify("dave", "letmein ", T0));
        assert!(!h.verify("dave", "letmei", T0));
    }

    #[test]
    fn plaintext_that_looks_like_des_crypt_loads_with_a_warning() {
        let (h, errors) = Htpasswd::parse("erin:rl0mgGKdfTVo.\n", true);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("crypt(3)"), "{}", errors[0]);
        assert!(h.verify("erin", "rl0mgGKdfTVo.", T0));
    }

    #[test]
    fn unknown_user_and_wrong_password_are_refused() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let h = load(&format!(
            "alice:{hash}\ncarol:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"
        ));
        assert!(!h.verify("mallory", "pw", T0));
        assert!(!h.verify("mallory", "password", T0));
        assert!(!h.verify("Alice", "pw", T0));
        assert!(!h.verify("alice", "password", T0));
        assert!(!h.verify("carol", "pw", T0));
        // Each unknown user did a bcrypt run too, so it cost the same as
        // alice's wrong password; carol's {SHA} check needs none.
        assert_eq!(h.bcrypt_runs(), 4);
    }

    #[test]
    fn dummy_hash_uses_the_most_common_cost_and_never_matches() {
        let a = bcrypt::hash("a", 4).unwrap();
        let b = bcrypt::hash("b", 4).unwrap();
        let c = bcrypt::hash("c", 5).unwrap();
        let h = load(&format!("a:{a}\nb:{b}\nc:{c}\n"));
        let dummy = h.dummy_bcrypt.as_deref().unwrap();
        assert!(dummy.starts_with("$2b$04$"));
        assert!(dummy.parse::<bcrypt::HashParts>().is_ok());
        assert!(!bcrypt::verify("", dummy).unwrap());

        let only_sha = load("carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
        assert!(only_sha.dummy_bcrypt.is_none());
        assert!(!only_sha.verify("nobody", "password", T0));
    }

    #[test]
    fn cache_hit_skips_bcrypt() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let h = load(&format!("alice:{hash}\n"));
        assert!(h.verify("alice", "pw", T0));
        assert_eq!(h.bcrypt_runs(), 1);
        assert!(h.verify("alice", "pw", T0 + Duration::from_secs(60)));
        assert_eq!(h.bcrypt_runs(), 1);
        // A wrong password is not answered from the cache, either way.
        assert!(!h.verify("alice", "px", T0 + Duration::from_secs(61)));
        assert_eq!(h.bcrypt_runs(), 2);
        assert!(h.verify("alice", "pw", T0 + Duration::from_secs(62)));
        assert_eq!(h.bcrypt_runs(), 2);
    }

    #[test]
    fn failures_are_not_cached() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let h = load(&format!("alice:{hash}\n"));
        assert!(!h.verify("alice", "wrong", T0));
        assert!(!h.verify("alice", "wrong", T0));
        assert_eq!(h.bcrypt_runs(), 2);
        assert!(h.lock_cache().is_empty());
    }

    #[test]
    fn cache_expires_after_ttl() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let h = load(&format!("alice:{hash}\n"));
        assert!(h.verify("alice", "pw", T0));
        let almost = T0 + (CACHE_TTL - Duration::from_micros(1));
        assert!(h.verify("alice", "pw", almost));
        assert_eq!(h.bcrypt_runs(), 1);
        assert!(h.verify("alice", "pw", T0 + CACHE_TTL));
        assert_eq!(h.bcrypt_runs(), 2);
    }

    #[test]
    fn cache_stays_bounded() {
        let h = load("");
        for i in 0..CACHE_CAPACITY {
            h.remember(&format!("u{i}"), [0; 20], T0);
        }
        assert_eq!(h.lock_cache().len(), CACHE_CAPACITY);
        // Expired entries go first, before anything still valid is dropped.
        let later = T0 + CACHE_TTL;
        h.remember("fresh", [1; 20], later);
        assert_eq!(h.lock_cache().len(), 1);
        for i in 0..CACHE_CAPACITY + 10 {
            h.remember(&format!("v{i}"), [0; 20], later);
            assert!(h.lock_cache().len() <= CACHE_CAPACITY);
        }
        // Re-remembering a user already present never triggers a purge.
        let len = h.lock_cache().len();
        h.remember(&format!("v{}", CACHE_CAPACITY + 9), [2; 20], later);
        assert_eq!(h.lock_cache().len(), len);
    }

    #[test]
    fn comments_blank_lines_and_whitespace_are_skipped() {
        let text =
            "# users\n\n   \n  # indented comment\r\ncarol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=  \r\n";
        let h = load(text);
        assert_eq!(h.len(), 1);
        assert!(h.verify("carol", "password", T0));
    }

    #[test]
    fn bad_lines_are_reported_and_good_lines_load() {
        let text = "\
            ok:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n\
            md5:$apr1$abcdefgh$0123456789abcdef012345\n\
            nocolon\n\
            :{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n\
            short:{SHA}AAAA\n\
            junk:{SHA}!!!\n\
            sha512:$6$salt$hash\n\
            trunc:$2y$05$tooshort\n\
            cost:$2b$99$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie\n\
            ssha:{SSHA}abcd\n\
            legacy:$2x$05$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie\n";
        let (h, errors) = Htpasswd::parse(text, true);
        assert_eq!(h.len(), 1);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert!(errors[0].message.contains("$apr1$"), "{}", errors[0]);
        assert!(errors[0].message.contains("bcrypt"), "{}", errors[0]);
        assert_eq!(errors[0].rehash.as_deref(), Some("md5"));
        assert!(!errors[0].plaintext);
        assert!(errors[5].message.contains("SHA-512"), "{}", errors[5]);
        assert!(errors[7].message.contains("cost"), "{}", errors[7]);
        assert!(errors[8].message.contains("SSHA"), "{}", errors[8]);
        assert!(errors[9].message.contains("$2x$"), "{}", errors[9]);
        assert_eq!(errors[0].to_string().split(':').next(), Some("line 2"));
    }

    #[test]
    fn duplicate_user_last_wins_with_a_warning() {
        let text = "carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\ncarol:hunter2\n";
        let (h, errors) = Htpasswd::parse(text, true);
        assert_eq!(h.len(), 1);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].message.contains("line 1"), "{}", errors[0]);
        assert!(h.verify("carol", "hunter2", T0));
        assert!(!h.verify("carol", "password", T0));
    }

    #[test]
    fn debug_does_not_print_hashes() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let text = format!("alice:{hash}\ncarol:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
        let (h, _) = Htpasswd::parse(&(text + "dave:letmein\n"), true);
        let shown = format!("{h:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains(&hash[7..]), "{shown}");
        assert!(!shown.contains("W6ph5"), "{shown}");
        assert!(!shown.contains("letmein"), "{shown}");
    }

    #[test]
    fn htpasswd_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Htpasswd>();
    }

    #[test]
    fn ct_eq_compares_whole_digests() {
        let a = [7u8; 20];
        let mut b = a;
        assert!(ct_eq(&a, &b));
        b[19] ^= 1;
        assert!(!ct_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!ct_eq(&a, &b));
    }

    #[test]
    fn parse_basic_accepts_the_usual_forms() {
        let v = format!("Basic {}", b64("alice:pw"));
        assert_eq!(
            parse_basic(v.as_bytes()),
            Some(("alice".into(), "pw".into()))
        );
        let v = format!("basic {}", b64("alice:pw"));
        assert_eq!(
            parse_basic(v.as_bytes()),
            Some(("alice".into(), "pw".into()))
        );
        let v = format!("BASIC    {}  ", b64("alice:pw"));
        assert_eq!(
            parse_basic(v.as_bytes()),
            Some(("alice".into(), "pw".into()))
        );
        let v = format!("Basic {}", b64("alice:p:w:"));
        assert_eq!(
            parse_basic(v.as_bytes()),
            Some(("alice".into(), "p:w:".into()))
        );
        let v = format!("Basic {}", b64("alice:"));
        assert_eq!(parse_basic(v.as_bytes()), Some(("alice".into(), "".into())));
        let v = format!("Basic {}", b64("zoë:pässword"));
        assert_eq!(
            parse_basic(v.as_bytes()),
            Some(("zoë".into(), "pässword".into()))
        );
        // "alice:pw" unpadded.
        assert_eq!(
            parse_basic(b"Basic YWxpY2U6cHc"),
            Some(("alice".into(), "pw".into()))
        );
    }

    #[test]
    fn parse_basic_refuses_everything_else() {
        let no_colon = format!("Basic {}", b64("alicepw"));
        let no_user = format!("Basic {}", b64(":pw"));
        let bearer = format!("Bearer {}", b64("alice:pw"));
        let glued = format!("Basic{}", b64("alice:pw"));
        let tab = format!("Basic\t{}", b64("alice:pw"));
        let inner_space = format!("Basic {} x", b64("alice:pw"));
        let non_utf8 = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(b"al\xffce:pw")
        );
        for value in [
            no_colon.as_bytes(),
            no_user.as_bytes(),
            bearer.as_bytes(),
            glued.as_bytes(),
            tab.as_bytes(),
            inner_space.as_bytes(),
            non_utf8.as_bytes(),
            b"Basic !!!notbase64!!!",
            b"Basic ",
            b"Basic",
            b"",
            b"Digest username=\"alice\"",
            b"Basicx YWxpY2U6cHc=",
        ] {
            assert_eq!(
                parse_basic(value),
                None,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
