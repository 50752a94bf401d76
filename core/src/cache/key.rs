//! What a stored response is found by: the primary key (the request's
//! absolute URI, RFC 9111 §4) and the request fields its `Vary` names
//! (§4.1).

use crate::http::head::Fields;

/// The primary key of a request for `host:port` + `path_and_query`:
/// `http://host:port/path?query`, the host already normalised (lower
/// case, no trailing dot), the port always spelled out so that
/// `http://a/` and `http://a:80/` are one resource.
pub fn primary(host: &str, port: u16, path_and_query: &str) -> String {
    let path = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    format!("http://{host}:{port}{path}")
}

/// A stored response's secondary key (RFC 9111 §4.1): each field its
/// `Vary` names, with the normalised value the request that brought it
/// had (`None`: absent).
pub type Secondary = Vec<(Box<str>, Option<Box<[u8]>>)>;

/// The field names a response's `Vary` lists, lower-cased; `None` for
/// `Vary: *` (a response that can never be selected).
pub fn vary_names(fields: &Fields<'_>) -> Option<Vec<Box<str>>> {
    let mut names: Vec<Box<str>> = Vec::new();
    for token in fields.list("vary") {
        let name = String::from_utf8_lossy(token).to_ascii_lowercase();
        if name == "*" {
            return None;
        }
        if !name.is_empty() && !names.iter().any(|n| **n == *name) {
            names.push(name.into());
        }
    }
    Some(names)
}

/// A request's value of `name` as Vary compares it (RFC 9111 §4.1
/// allows normalising): every line of the field joined by commas, with
/// the whitespace around list items removed and runs of it inside them
/// made one space. `None` when the request has no such field.
pub fn vary_value(fields: &Fields<'_>, name: &str) -> Option<Box<[u8]>> {
    let mut out: Vec<u8> = Vec::new();
    let mut any = false;
    for line in fields.get_all(name) {
        any = true;
        for item in line.split(|&b| b == b',') {
            let item = crate::http::head::trim(item);
            if item.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(b',');
            }
            let mut space = false;
            for &b in item {
                if b == b' ' || b == b'\t' {
                    space = true;
                    continue;
                }
                if space {
                    out.push(b' ');
                    space = false;
                }
                out.push(b);
            }
        }
    }
    any.then(|| out.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_request;

    #[test]
    fn keys_spell_the_port_and_a_path() {
        assert_eq!(primary("a.test", 80, "/x?y"), "http://a.test:80/x?y");
        assert_eq!(primary("a.test", 8080, ""), "http://a.test:8080/");
    }

    #[test]
    fn vary_values_are_normalised() {
        let head = parse_request(
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\nAccept-Language: en ,  fr\r\nAccept-Language: de\r\nX:  a   b \r\n\r\n",
            50,
            1000,
        )
        .unwrap();
        assert_eq!(
            vary_value(&head.fields, "accept-language").as_deref(),
            Some(&b"en,fr,de"[..])
        );
        assert_eq!(vary_value(&head.fields, "x").as_deref(), Some(&b"a b"[..]));
        assert_eq!(vary_value(&head.fields, "y"), None);
    }
}
