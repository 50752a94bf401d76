//! Writes the seed corpora of the byte-input fuzz targets from the golden
//! traces and the test fixtures, into fuzz/corpus/<target>/seed-*:
//!
//!   cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus
//!
//! Request heads are what clients sent in the traces, response heads and
//! chunked bodies what origins sent (each after a split byte, as the
//! targets read them); configurations, lists, htpasswd files and
//! credentials come from testdata/ and the forms the documentation shows.
//! Re-running it rewrites the seeds; what the fuzzers found beside them
//! stays.

use proxy_core::driver::Input;
use proxy_core::trace::Trace;
use proxy_core::Side;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut requests = BTreeSet::new();
    let mut responses = BTreeSet::new();
    let mut chunked = BTreeSet::new();
    let traces = root.join("testdata/traces");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&traces)
        .expect("testdata/traces")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ron"))
        .collect();
    names.sort();
    for path in names {
        let trace = Trace::from_ron(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (mut client, mut upstream) = (Vec::new(), Vec::new());
        for step in &trace.steps {
            if let Input::Read(side, bytes) = &step.input {
                match side {
                    Side::Client => client.extend_from_slice(&bytes.0),
                    Side::Upstream => upstream.extend_from_slice(&bytes.0),
                }
            }
        }
        // The split byte first: the middle of what follows.
        let seed = |bytes: &[u8]| [&[127u8][..], &bytes[..bytes.len().min(8192)]].concat();
        if !client.is_empty() {
            requests.insert(seed(&client));
        }
        if upstream.starts_with(b"HTTP/1.") {
            responses.insert(seed(&upstream));
        }
    }
    for seed in &responses {
        // The body after a chunked head.
        let text = &seed[1..];
        if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&text[..end]).to_ascii_lowercase();
            if head.contains("transfer-encoding: chunked") {
                let mut body = vec![1u8, 100];
                body.extend_from_slice(&text[end + 4..]);
                chunked.insert(body);
            }
        }
    }
    chunked.insert(b"\x02\x20\x90a;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n".to_vec());
    chunked.insert(b"\x00FFFFFFFFFFFFFFFFFF\r\n".to_vec());

    let config: Vec<Vec<u8>> = vec![
        std::fs::read(root.join("testdata/configs/example.ron")).unwrap(),
        b"(proxy_name: \"edge-1\", timeouts: (head_read: \"10s\", connect: \"5s\"), limits: (max_head_bytes: \"32KiB\"))".to_vec(),
        b"(policy: (allow_private_destinations: true, connect_ports: []), cache: (enabled: true, memory: \"1MiB\"))".to_vec(),
        b"(policy: (deny: [\"*.ads.example\", \"203.0.113.0/24\"], users: {\"admin\": (connect_ports: Some([22]))}))".to_vec(),
        b"(timeouts: (conect: \"3s\"))".to_vec(),
    ];
    let lists: Vec<Vec<u8>> = vec![
        b"# blocklist\nexample.com\n*.ads.example   # trailing comment\n=exact.example\n10.0.0.0/8\n2001:db8::/32\n192.0.2.1\n".to_vec(),
        b"b\xc3\xbccher.example\nxn--bcher-kva.example\nbad entry\n*.\n300.1.1.1\n".to_vec(),
    ];
    let htpasswd: Vec<Vec<u8>> = vec![
        b"alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n".to_vec(),
        b"bob:$2y$05$abcdefghijklmnopqrstuuN8qoWp0ZOZ2nH4vY.wr7y0aTtFEMo5G\n# comment\ncarol:plaintext\n:empty\nnocolon\nalice:{SHA}x\n".to_vec(),
        b"dave:$apr1$abc$def\n".to_vec(),
    ];
    let basic: Vec<Vec<u8>> = vec![
        b"Basic YWxpY2U6cGFzc3dvcmQ=".to_vec(),
        b"basic   YWxpY2U6cGFzczp3b3Jk".to_vec(),
        b"Basic YWxpY2U".to_vec(),
        b"Bearer abc".to_vec(),
        b"Basic Og==".to_vec(),
    ];
    // The structured targets read their input through `arbitrary`: any
    // bytes are a script; a few fixed ones start them off.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    };
    let cache: Vec<Vec<u8>> = (0..6).map(|i| noise(64 << i)).collect();
    let round_trip: Vec<Vec<u8>> = (0..4).map(|i| noise(32 << i)).collect();
    for (target, seeds) in [
        ("cache", cache),
        ("chunked_round_trip", round_trip),
        ("request_head", requests.into_iter().collect::<Vec<_>>()),
        ("response_head", responses.into_iter().collect()),
        ("chunked", chunked.into_iter().collect()),
        ("config", config),
        ("list", lists),
        ("htpasswd", htpasswd),
        ("proxy_auth", basic),
    ] {
        let dir = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
        }
        println!("{target}: {} seeds", seeds.len());
    }
}
