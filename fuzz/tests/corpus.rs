//! Replays every committed corpus (fuzz/corpus/<target>/) and the TLS
//! fixtures through the fuzz bodies on stable, so what a fuzzer once
//! found stays fixed without cargo-fuzz. Each target reads its input as
//! its `fuzz_target!` does: bytes, or a structured value taken from them
//! with `arbitrary`.

use arbitrary::{Arbitrary, Unstructured};
use proxy_core::fuzzing;
use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && path.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| (path.display().to_string(), std::fs::read(&path).unwrap()))
        .collect()
}

fn structured<'a, T: Arbitrary<'a>>(data: &'a [u8]) -> Option<T> {
    T::arbitrary_take_rest(Unstructured::new(data)).ok()
}

/// Runs `body` over fuzz/corpus/`target`; at least `min` inputs must be
/// there.
fn replay(target: &str, min: usize, body: impl Fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let all = inputs(&dir);
    for (name, data) in &all {
        eprintln!("{name}");
        body(data);
    }
    assert!(
        all.len() >= min,
        "{target}: {} inputs: is the corpus there?",
        all.len()
    );
}

#[test]
fn client_hello_corpus() {
    replay("client_hello", 5, proxy_core::tls::client_hello::fuzz_peek);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/tls");
    for (name, data) in inputs(&fixtures) {
        if name.ends_with(".bin") {
            proxy_core::tls::client_hello::fuzz_peek(&data);
        }
    }
}

#[test]
fn connection_corpus() {
    replay("connection", 10, |data| {
        fuzzing::connection(&structured::<Vec<fuzzing::Event>>(data).unwrap_or_default())
    });
}

#[test]
fn head_corpora() {
    replay("request_head", 20, fuzzing::heads::request_head);
    replay("response_head", 20, fuzzing::heads::response_head);
}

#[test]
fn chunked_corpora() {
    replay("chunked", 3, fuzzing::chunked::decode);
    replay("chunked_round_trip", 4, |data| {
        if let Some(body) = structured(data) {
            fuzzing::chunked::round_trip(&body);
        }
    });
}

#[test]
fn file_and_credential_corpora() {
    replay("config", 5, fuzzing::files::config);
    replay("list", 2, fuzzing::files::list);
    replay("htpasswd", 3, fuzzing::files::htpasswd);
    replay("proxy_auth", 5, fuzzing::files::basic);
}

#[test]
fn proxy_header_corpus() {
    replay("proxy_header", 4, proxy_core::proxy_protocol::fuzz_parse);
}

#[test]
fn cache_corpus() {
    replay("cache", 6, |data| {
        if let Some(script) = structured(data) {
            fuzzing::cache::cache(&script);
        }
    });
}
