//! `/_status` as a person sees it: loaded in headless Chromium (Debian's
//! `chromium`, which `.ci/run` installs), whose rendered DOM must show the
//! uptime, counters this test caused, the destination it used and the
//! refusal it provoked.
//!
//! Without Chromium on PATH these tests fail, saying so, unless
//! `E2E_SKIP_CHROMIUM=1` is set. Chromium is kept off the network: no
//! proxy, every name resolves to nothing, and the only address it is given
//! is the proxy's on 127.0.0.1.

use crate::request;
use proxy_tests::{cases, chromium, Origin, Proxy, Reply};

/// The text of the element with `id`, in a serialised DOM.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("id=\"{id}\">");
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no element #{id} in the DOM:\n{dom}"))
        + open.len();
    let end = start + dom[start..].find('<').expect("element closes");
    &dom[start..end]
}

cases! {
    /// Two forwarded GETs and one denied name, then the page in Chromium.
    fn status_page_renders_in_chromium(bin) {
        let Some(chromium) = chromium::executable() else { return };
        let origin = Origin::start(|_| Reply::ok("hello"));
        let proxy = Proxy::start_with_config(
            bin,
            "(policy: (deny: [\"blocked.test\"]))",
            &["--resolve", "blocked.test=127.0.0.1"],
        );
        let mut c = proxy.connect();
        for path in ["/one", "/two"] {
            c.send(request("GET", &origin.url(path), &[], b""));
            assert_eq!(c.read_response("GET").status(), 200);
        }
        c.send(request("GET", "http://blocked.test/secret", &[], b""));
        assert_eq!(c.read_response("GET").status(), 403);
        drop(c);

        let url = format!("http://{}/_status", proxy.addr());
        let dom = chromium::dump_dom(&chromium, &url, &["--no-proxy-server".to_owned()]);

        assert!(dom.contains("<title>proxy-rs status</title>"), "{dom}");
        // The uptime: `Ns`, `Nm Ns`, ...
        let uptime = text_of(&dom, "uptime");
        assert!(
            uptime.ends_with('s') && uptime.chars().any(|c| c.is_ascii_digit()),
            "uptime {uptime:?}"
        );
        // Counters this test caused.
        assert_eq!(text_of(&dom, "requests"), "3");
        assert_eq!(text_of(&dom, "allowed"), "2");
        assert_eq!(text_of(&dom, "refused"), "1");
        assert_eq!(text_of(&dom, "responses-2xx"), "2");
        assert_eq!(text_of(&dom, "responses-4xx"), "1");
        // The destination, counted twice.
        let destination = format!("<tr><td>{}</td><td class=\"n\">2</td></tr>", origin.authority());
        assert!(dom.contains(&destination), "no {destination} in:\n{dom}");
        // The refusal: target, decision and rule.
        let refusals = &dom[dom.find("id=\"refusals\"").expect("a refusals table")..];
        assert!(refusals.contains("GET http://blocked.test/secret"), "{refusals}");
        assert!(refusals.contains("<td>403</td><td>denied_domain</td>"), "{refusals}");
        assert!(refusals.contains("deny blocked.test"), "{refusals}");
        // Chromium's own request was answered by the proxy and logged.
        let line = proxy.wait_for_record("GET", "/_status");
        assert_eq!(line.status, 200);
    }
}
