//! Replays the committed corpus and the TLS fixtures through the fuzz
//! bodies on stable, so a crash once found stays fixed without cargo-fuzz.

use std::path::Path;

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
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

#[test]
fn client_hello_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for dir in [
        root.join("corpus/client_hello"),
        root.join("../testdata/tls"),
    ] {
        for (name, data) in inputs(&dir) {
            if dir.ends_with("tls") && !name.ends_with(".bin") {
                continue;
            }
            eprintln!("{name}");
            proxy_core::tls::client_hello::fuzz_peek(&data);
            seen += 1;
        }
    }
    assert!(seen > 10, "only {seen} inputs: is the corpus there?");
}

#[test]
fn connection_corpus() {
    use arbitrary::{Arbitrary, Unstructured};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for (name, data) in inputs(&root.join("corpus/connection")) {
        eprintln!("{name}");
        let events =
            Vec::<proxy_core::fuzzing::Event>::arbitrary_take_rest(Unstructured::new(&data))
                .unwrap_or_default();
        proxy_core::fuzzing::connection(&events);
        seen += 1;
    }
    assert!(seen > 0, "no connection corpus");
}
