//! What operators write (the RON configuration, allow and deny lists,
//! htpasswd files) and what clients send as credentials. None of it may
//! take the proxy down; errors name a place that exists; what is read
//! back is what was written.

use crate::config::Config;
use crate::http::target::Host;
use crate::policy::auth::{parse_basic, Htpasswd};
use crate::policy::domain::Action;
use crate::policy::list::parse_list;
use crate::policy::{Policy, PolicyConfig, Sources};
use base64::Engine;

/// Lines in `text` as `str::lines` counts them (an error may point one
/// past the last, at the end of the file).
fn lines(text: &str) -> usize {
    text.lines().count() + 1
}

/// A configuration file: loaded or refused with a line and column inside
/// it; a loaded one validates or not without panicking, and written back
/// out it loads to the same configuration.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_ron(text) {
        Ok(config) => {
            let _ = config.validate();
            let again = Config::from_ron(&config.to_ron())
                .unwrap_or_else(|e| panic!("what we write we cannot read: {e}"));
            assert_eq!(again, config, "a configuration changed on the way back");
        }
        Err(e) => {
            assert!(
                e.line <= lines(text),
                "error on line {} of {}",
                e.line,
                lines(text)
            );
            assert!(!e.to_string().is_empty());
        }
    }
}

/// An allow or deny list: every bad line is named by its number; what
/// loads compiles into a policy that answers for any host.
pub fn list(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let entries = parse_list("list.txt", text, Action::Deny);
    for e in &entries.errors {
        assert!(e.origin.line as usize <= lines(text), "{e}");
    }
    let listed = entries.domains.len() + entries.nets.len() + entries.errors.len();
    assert!(listed <= text.lines().count(), "more entries than lines");
    let config = PolicyConfig {
        deny_lists: vec!["list.txt".to_owned()],
        ..PolicyConfig::default()
    };
    let sources = Sources::from([("list.txt".to_owned(), text.to_owned())]);
    if let Ok((policy, _)) = Policy::compile(&config, &sources) {
        for host in [
            "example.com",
            "a.b.example.com",
            "192.0.2.1",
            "[2001:db8::1]",
            "xn--bcher-kva.example",
        ] {
            if let Ok(host) = Host::parse(host) {
                let _ = policy.check_host(&host);
            }
        }
    }
}

/// An htpasswd file: every bad line is named by its number, and no more
/// users load than there are lines. (Passwords are not checked here: a
/// fuzzed bcrypt cost would only measure patience.)
pub fn htpasswd(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for allow_plaintext in [false, true] {
        let (users, errors) = Htpasswd::parse(text, allow_plaintext);
        for e in &errors {
            assert!(e.line <= lines(text), "error on line {}", e.line);
        }
        assert!(users.len() <= text.lines().count());
    }
}

/// A `Proxy-Authorization` value: decoded or refused; what decodes is a
/// non-empty user and a password, and encoding them again decodes to the
/// same.
pub fn basic(data: &[u8]) {
    if let Some((user, password)) = parse_basic(data) {
        assert!(!user.is_empty() && !user.contains(':'));
        let again = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        assert_eq!(parse_basic(again.as_bytes()), Some((user, password)));
    }
}
