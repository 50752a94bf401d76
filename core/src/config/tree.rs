//! A syntax tree of RON text that remembers where every value came from.
//!
//! `ron` itself parses configuration into [`Config`](super::Config); this
//! tree is what layering and error messages need besides: deep-merging
//! several files key by key while keeping, for every value, the file and
//! byte range it was written in, so that an error found after merging (or
//! by validation) can still name the file, line and column that set the
//! value. It is only ever built from text `ron` has accepted, so it can be
//! lenient about what it does not need to understand (the insides of
//! strings and numbers are kept as opaque text).

use std::fmt;
use std::ops::Range;

/// Byte range in a text.
pub(super) type Span = Range<usize>;

/// A value: a struct, tuple, list, map, or anything else as opaque text.
#[derive(Debug, Clone)]
pub(super) struct Node {
    /// Which layer (file) it was written in.
    pub file: usize,
    /// Where, in that file.
    pub span: Span,
    /// Where, in the merged text (set by [`emit`]).
    pub out: Span,
    /// What it is.
    pub kind: Kind,
}

/// The shapes of RON value the tree tells apart.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// `(key: value, ...)` or `Name(key: value, ...)`.
    Struct {
        /// The struct name, if written.
        name: Option<String>,
        /// The fields, in order.
        fields: Vec<Field>,
    },
    /// `(a, b)`, `Some(x)`, `Variant(a, b)`.
    Tuple {
        /// The name (`Some`, a variant), if written.
        name: Option<String>,
        /// The items.
        items: Vec<Node>,
    },
    /// `[a, b]`.
    Seq(Vec<Node>),
    /// `{k: v}`.
    Map(Vec<(Node, Node)>),
    /// A string, number, char, identifier (`true`, `None`, a unit
    /// variant), or `()`: kept as its text.
    Atom,
}

/// `key: value` in a struct.
#[derive(Debug, Clone)]
pub(super) struct Field {
    /// The key.
    pub key: String,
    /// Where the key is written (in `value.file`).
    pub key_span: Span,
    /// Where the key is in the merged text.
    pub key_out: Span,
    /// The value.
    pub value: Node,
}

/// A parsed file: its `#![enable(...)]` attributes and its value.
#[derive(Debug, Clone)]
pub(super) struct Doc {
    /// The raw text of each attribute.
    pub attributes: Vec<String>,
    /// The top-level value.
    pub root: Node,
}

/// A step on the way from the top of a configuration to one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A struct field.
    Key(String),
    /// A list element.
    Index(usize),
    /// A map entry, by its key (a string's value, unquoted).
    MapKey(String),
}

/// Where a value is in a configuration: `policy.users["bob"].methods[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<PathSeg>);

impl KeyPath {
    /// The top level.
    pub fn root() -> KeyPath {
        KeyPath(Vec::new())
    }

    /// This path, one field further.
    pub fn key(&self, key: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(PathSeg::Key(key.to_owned()));
        p
    }

    /// This path, one list element further.
    pub fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(PathSeg::Index(i));
        p
    }

    /// This path, one map entry further.
    pub fn map_key(&self, k: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(PathSeg::MapKey(k.to_owned()));
        p
    }

    /// The path without its last step.
    pub fn parent(&self) -> KeyPath {
        let mut p = self.clone();
        p.0.pop();
        p
    }

    /// The name of the last field on the path, if it ends in one (or in
    /// an element of one: `connect_ports` for `policy.connect_ports[2]`).
    pub fn last_key(&self) -> Option<&str> {
        self.0.iter().rev().find_map(|s| match s {
            PathSeg::Key(k) => Some(k.as_str()),
            _ => None,
        })
    }

    /// Whether this is the top level.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                PathSeg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                PathSeg::Index(i) => write!(f, "[{i}]")?,
                PathSeg::MapKey(k) => write!(f, "[{k:?}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// Parses `text` (layer number `file`). The error is a byte offset and
/// what was wrong.
pub(super) fn parse(text: &str, file: usize) -> Result<Doc, (usize, String)> {
    let mut p = Parser {
        b: text.as_bytes(),
        text,
        pos: 0,
        file,
        depth: 0,
    };
    p.skip_ws()?;
    let mut attributes = Vec::new();
    while p.b[p.pos..].starts_with(b"#!") {
        let start = p.pos;
        let end = text[start..]
            .find(']')
            .ok_or((start, "unterminated attribute".to_owned()))?;
        p.pos = start + end + 1;
        attributes.push(text[start..p.pos].to_owned());
        p.skip_ws()?;
    }
    let root = p.value()?;
    p.skip_ws()?;
    if p.pos != p.b.len() {
        return Err((p.pos, "unexpected text after the configuration".to_owned()));
    }
    Ok(Doc { attributes, root })
}

/// Most nesting accepted (ron's own default limit is 128).
const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    b: &'a [u8],
    text: &'a str,
    pos: usize,
    file: usize,
    depth: usize,
}

type PResult<T> = Result<T, (usize, String)>;

impl Parser<'_> {
    fn err<T>(&self, msg: &str) -> PResult<T> {
        Err((self.pos, msg.to_owned()))
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<u8> {
        self.b.get(self.pos + n).copied()
    }

    /// Skips whitespace and comments (`// ...`, nested `/* ... */`).
    fn skip_ws(&mut self) -> PResult<()> {
        loop {
            match self.peek() {
                Some(c) if c.is_ascii_whitespace() => self.pos += 1,
                Some(b'/') if self.peek_at(1) == Some(b'/') => {
                    while let Some(c) = self.peek() {
                        self.pos += 1;
                        if c == b'\n' {
                            break;
                        }
                    }
                }
                Some(b'/') if self.peek_at(1) == Some(b'*') => {
                    let start = self.pos;
                    self.pos += 2;
                    let mut level = 1;
                    while level > 0 {
                        match (self.peek(), self.peek_at(1)) {
                            (Some(b'*'), Some(b'/')) => {
                                level -= 1;
                                self.pos += 2;
                            }
                            (Some(b'/'), Some(b'*')) => {
                                level += 1;
                                self.pos += 2;
                            }
                            (Some(_), _) => self.pos += 1,
                            (None, _) => return Err((start, "unclosed comment".to_owned())),
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn expect(&mut self, c: u8) -> PResult<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(&format!("expected `{}`", c as char))
        }
    }

    fn node(&self, start: usize, kind: Kind) -> Node {
        Node {
            file: self.file,
            span: start..self.pos,
            out: 0..0,
            kind,
        }
    }

    fn value(&mut self) -> PResult<Node> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err("nested too deeply");
        }
        let v = self.value_inner();
        self.depth -= 1;
        v
    }

    fn value_inner(&mut self) -> PResult<Node> {
        self.skip_ws()?;
        let start = self.pos;
        match self.peek() {
            None => self.err("expected a value"),
            Some(b'(') => self.paren(start, None),
            Some(b'[') => {
                self.pos += 1;
                let items = self.items(b']')?;
                Ok(self.node(start, Kind::Seq(items)))
            }
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                loop {
                    self.skip_ws()?;
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        break;
                    }
                    let k = self.value()?;
                    self.skip_ws()?;
                    self.expect(b':')?;
                    let v = self.value()?;
                    entries.push((k, v));
                    self.skip_ws()?;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {}
                        _ => return self.err("expected `,` or `}`"),
                    }
                }
                Ok(self.node(start, Kind::Map(entries)))
            }
            Some(b'"') => {
                self.string()?;
                Ok(self.node(start, Kind::Atom))
            }
            Some(b'r') if matches!(self.peek_at(1), Some(b'"' | b'#')) && self.raw_string()? => {
                Ok(self.node(start, Kind::Atom))
            }
            Some(b'b') if matches!(self.peek_at(1), Some(b'"' | b'\'')) => {
                self.pos += 1;
                if self.peek() == Some(b'"') {
                    self.string()?;
                } else {
                    self.char_lit()?;
                }
                Ok(self.node(start, Kind::Atom))
            }
            Some(b'\'') => {
                self.char_lit()?;
                Ok(self.node(start, Kind::Atom))
            }
            Some(c) if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.') => {
                self.number();
                Ok(self.node(start, Kind::Atom))
            }
            Some(c) if is_ident_start(c) => {
                let name = self.ident()?;
                let after = self.pos;
                self.skip_ws()?;
                if self.peek() == Some(b'(') {
                    self.paren(start, Some(name))
                } else {
                    self.pos = after;
                    Ok(self.node(start, Kind::Atom))
                }
            }
            Some(_) => self.err("expected a value"),
        }
    }

    /// `(` ... `)`: a struct if it starts with `ident:`, else a tuple.
    fn paren(&mut self, start: usize, name: Option<String>) -> PResult<Node> {
        self.expect(b'(')?;
        self.skip_ws()?;
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(match name {
                None => self.node(start, Kind::Atom),
                Some(n) => self.node(
                    start,
                    Kind::Tuple {
                        name: Some(n),
                        items: Vec::new(),
                    },
                ),
            });
        }
        if self.starts_field()? {
            let mut fields = Vec::new();
            loop {
                self.skip_ws()?;
                if self.peek() == Some(b')') {
                    self.pos += 1;
                    break;
                }
                let key_start = self.pos;
                let key = self.ident()?;
                let key_span = key_start..self.pos;
                self.skip_ws()?;
                self.expect(b':')?;
                let value = self.value()?;
                fields.push(Field {
                    key: key.trim_start_matches("r#").to_owned(),
                    key_span,
                    key_out: 0..0,
                    value,
                });
                self.skip_ws()?;
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b')') => {}
                    _ => return self.err("expected `,` or `)`"),
                }
            }
            Ok(self.node(start, Kind::Struct { name, fields }))
        } else {
            let items = self.items(b')')?;
            Ok(self.node(start, Kind::Tuple { name, items }))
        }
    }

    /// Whether the next thing is `ident :` (not `ident ::`), without moving.
    fn starts_field(&mut self) -> PResult<bool> {
        let save = self.pos;
        let field = match self.peek() {
            Some(c) if is_ident_start(c) => {
                self.ident()?;
                self.skip_ws()?;
                self.peek() == Some(b':') && self.peek_at(1) != Some(b':')
            }
            _ => false,
        };
        self.pos = save;
        Ok(field)
    }

    /// Comma-separated values up to `close` (a trailing comma allowed).
    fn items(&mut self, close: u8) -> PResult<Vec<Node>> {
        let mut items = Vec::new();
        loop {
            self.skip_ws()?;
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value()?);
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return self.err(&format!("expected `,` or `{}`", close as char)),
            }
        }
    }

    fn ident(&mut self) -> PResult<String> {
        let start = self.pos;
        if self.b[self.pos..].starts_with(b"r#") {
            self.pos += 2;
        }
        match self.peek() {
            Some(c) if is_ident_start(c) => self.pos += 1,
            _ => return self.err("expected a name"),
        }
        while matches!(self.peek(), Some(c) if is_ident_char(c)) {
            self.pos += 1;
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn string(&mut self) -> PResult<()> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err((start, "unterminated string".to_owned())),
                Some(b'\\') => self.pos += 2,
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// `r"..."`, `r#"..."#`; false (and nothing consumed) if it is a raw
    /// identifier (`r#name`) instead.
    fn raw_string(&mut self) -> PResult<bool> {
        let start = self.pos;
        let mut p = self.pos + 1;
        let mut hashes = 0;
        while self.b.get(p) == Some(&b'#') {
            hashes += 1;
            p += 1;
        }
        if self.b.get(p) != Some(&b'"') {
            return Ok(false);
        }
        let close = format!("\"{}", "#".repeat(hashes)).into_bytes();
        let body = p + 1;
        match self.b[body..].windows(close.len()).position(|w| w == close) {
            Some(i) => {
                self.pos = body + i + close.len();
                Ok(true)
            }
            None => Err((start, "unterminated raw string".to_owned())),
        }
    }

    fn char_lit(&mut self) -> PResult<()> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err((start, "unterminated character".to_owned())),
                Some(b'\\') => self.pos += 2,
                Some(b'\'') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    fn number(&mut self) {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let sign_in_exponent = matches!(c, b'+' | b'-')
                && (self.pos == start
                    || (matches!(self.b[self.pos - 1], b'e' | b'E')
                        && !self.text[start..self.pos].contains(['x', 'X'])));
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || sign_in_exponent {
                self.pos += 1;
            } else {
                break;
            }
        }
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Deep-merges `over` into `base`: structs and maps key by key (recursively),
/// `Some(x)` into `Some(y)` as `x` into `y`; anything else is replaced.
pub(super) fn merge(base: Node, over: Node, texts: &[&str]) -> Node {
    match (base.kind, over.kind) {
        (
            Kind::Struct {
                name: bname,
                fields: mut bfields,
            },
            Kind::Struct {
                name: oname,
                fields: ofields,
            },
        ) => {
            for of in ofields {
                match bfields.iter().position(|f| f.key == of.key) {
                    Some(i) => {
                        let old = bfields.remove(i);
                        bfields.insert(
                            i,
                            Field {
                                value: merge(old.value, of.value, texts),
                                ..of
                            },
                        );
                    }
                    None => bfields.push(of),
                }
            }
            Node {
                kind: Kind::Struct {
                    name: oname.or(bname),
                    fields: bfields,
                },
                ..over
            }
        }
        (
            Kind::Tuple {
                name: bname,
                items: mut bitems,
            },
            Kind::Tuple {
                name: oname,
                items: mut oitems,
            },
        ) if bname == oname && bitems.len() == 1 && oitems.len() == 1 => {
            let merged = merge(bitems.remove(0), oitems.remove(0), texts);
            Node {
                kind: Kind::Tuple {
                    name: oname,
                    items: vec![merged],
                },
                ..over
            }
        }
        (Kind::Map(mut bentries), Kind::Map(oentries)) => {
            // Keys are compared by their text, as written.
            let text = |k: &Node| texts[k.file][k.span.clone()].trim();
            for (ok, ov) in oentries {
                match bentries.iter().position(|(k, _)| text(k) == text(&ok)) {
                    Some(i) => {
                        let (_, old) = bentries.remove(i);
                        bentries.insert(i, (ok, merge(old, ov, texts)));
                    }
                    None => bentries.push((ok, ov)),
                }
            }
            Node {
                kind: Kind::Map(bentries),
                ..over
            }
        }
        (_, kind) => Node { kind, ..over },
    }
}

/// Writes the (merged) document as RON text, recording in every node
/// (and key) where its text landed. `texts` are the layers' sources.
pub(super) fn emit(attributes: &[String], root: &mut Node, texts: &[&str]) -> String {
    let mut out = String::new();
    for a in attributes {
        out.push_str(a);
        out.push('\n');
    }
    emit_node(root, texts, &mut out);
    out
}

fn emit_node(node: &mut Node, texts: &[&str], out: &mut String) {
    let start = out.len();
    let src = texts[node.file];
    match &mut node.kind {
        Kind::Atom => out.push_str(&src[node.span.clone()]),
        Kind::Struct { name, fields } => {
            if let Some(n) = name {
                out.push_str(n);
            }
            out.push('(');
            for f in fields.iter_mut() {
                let ks = out.len();
                out.push_str(&texts[f.value.file][f.key_span.clone()]);
                f.key_out = ks..out.len();
                out.push_str(": ");
                emit_node(&mut f.value, texts, out);
                out.push_str(",\n");
            }
            out.push(')');
        }
        Kind::Tuple { name, items } => {
            if let Some(n) = name {
                out.push_str(n);
            }
            out.push('(');
            for (i, n) in items.iter_mut().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit_node(n, texts, out);
            }
            out.push(')');
        }
        Kind::Seq(items) => {
            out.push('[');
            for (i, n) in items.iter_mut().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit_node(n, texts, out);
            }
            out.push(']');
        }
        Kind::Map(entries) => {
            out.push('{');
            for (k, v) in entries.iter_mut() {
                emit_node(k, texts, out);
                out.push_str(": ");
                emit_node(v, texts, out);
                out.push_str(",\n");
            }
            out.push('}');
        }
    }
    node.out = start..out.len();
}

/// The unquoted value of a string atom (`"bob"` → `bob`); other text as is.
fn unquote(text: &str) -> String {
    let t = text.trim();
    match t.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => inner.to_owned(),
        _ => t.to_owned(),
    }
}

/// Where a value or key was found.
#[derive(Debug, Clone)]
pub(super) struct Hit {
    /// Its path from the top.
    pub path: KeyPath,
    /// The layer it was written in.
    pub file: usize,
    /// Byte offset of its start in that layer.
    pub at: usize,
    /// Byte offset of its end in that layer.
    pub end: usize,
}

/// Which range of a node a search is about: where it is in its own file,
/// or where it is in the merged text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum In {
    /// `span`: the node's own file.
    Source,
    /// `out`: the merged text.
    Merged,
}

struct Candidate {
    range: Span,
    depth: usize,
    hit: Hit,
    container: bool,
}

fn collect(
    node: &Node,
    texts: &[&str],
    which: In,
    path: &KeyPath,
    depth: usize,
    out: &mut Vec<Candidate>,
) {
    let range = match which {
        In::Source => node.span.clone(),
        In::Merged => node.out.clone(),
    };
    out.push(Candidate {
        range,
        depth,
        hit: Hit {
            path: path.clone(),
            file: node.file,
            at: node.span.start,
            end: node.span.end,
        },
        container: !matches!(node.kind, Kind::Atom),
    });
    match &node.kind {
        Kind::Struct { fields, .. } => {
            for f in fields {
                let p = path.key(&f.key);
                out.push(Candidate {
                    range: match which {
                        In::Source => f.key_span.clone(),
                        In::Merged => f.key_out.clone(),
                    },
                    depth: depth + 1,
                    hit: Hit {
                        path: p.clone(),
                        file: f.value.file,
                        at: f.key_span.start,
                        end: f.key_span.end,
                    },
                    container: false,
                });
                collect(&f.value, texts, which, &p, depth + 1, out);
            }
        }
        // `Some(x)` and variants are transparent in paths.
        Kind::Tuple { items, .. } if items.len() == 1 => {
            collect(&items[0], texts, which, path, depth + 1, out);
        }
        Kind::Tuple { items, .. } | Kind::Seq(items) => {
            for (i, n) in items.iter().enumerate() {
                collect(n, texts, which, &path.index(i), depth + 1, out);
            }
        }
        Kind::Map(entries) => {
            for (k, v) in entries {
                let key = unquote(&texts[k.file][k.span.clone()]);
                let p = path.map_key(&key);
                collect(k, texts, which, &p, depth + 1, out);
                collect(v, texts, which, &p, depth + 1, out);
            }
        }
        Kind::Atom => {}
    }
}

/// How `ron` positions an error relative to what it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Anchor {
    /// At the start of the offending value (`expected an integer`).
    Start,
    /// Just after the offending value or key (`unknown field`, a value a
    /// type refused).
    End,
    /// At the closing bracket of the offending struct (`missing field`).
    Close,
}

/// The value or key an error at byte `offset` is about.
pub(super) fn culprit(
    root: &Node,
    texts: &[&str],
    which: In,
    offset: usize,
    anchor: Anchor,
) -> Option<Hit> {
    let mut all = Vec::new();
    collect(root, texts, which, &KeyPath::root(), 0, &mut all);
    let best = |pred: &dyn Fn(&Candidate) -> bool, deepest: bool| {
        let it = all.iter().filter(|c| pred(c));
        if deepest {
            it.max_by_key(|c| c.depth).map(|c| c.hit.clone())
        } else {
            it.min_by_key(|c| c.depth).map(|c| c.hit.clone())
        }
    };
    let starts = |c: &Candidate| c.range.start == offset;
    let ends = |c: &Candidate| c.range.end == offset && !c.range.is_empty();
    let closes = |c: &Candidate| c.container && c.range.end == offset + 1;
    let contains = |c: &Candidate| c.range.contains(&offset);
    let found = match anchor {
        Anchor::Start => best(&starts, false).or_else(|| best(&ends, true)),
        Anchor::End => best(&ends, true).or_else(|| best(&starts, false)),
        Anchor::Close => best(&closes, true),
    };
    found.or_else(|| best(&contains, true))
}

/// Finds the value at `path`, if this document sets it. With `Some(x)`
/// the hit is `x`. Returns `(exact, hit)`: `exact` is false when only a
/// prefix of the path is set here (a list or struct that holds it).
pub(super) fn locate(root: &Node, texts: &[&str], path: &KeyPath) -> Option<(bool, Hit)> {
    let mut node = root;
    let mut here = KeyPath::root();
    let mut last_hit: Option<Hit> = None;
    for seg in &path.0 {
        node = transparent(node);
        let next = match (seg, &node.kind) {
            (PathSeg::Key(k), Kind::Struct { fields, .. }) => {
                fields.iter().find(|f| &f.key == k).map(|f| &f.value)
            }
            (PathSeg::Index(i), Kind::Seq(items) | Kind::Tuple { items, .. }) => items.get(*i),
            (PathSeg::MapKey(k), Kind::Map(entries)) => entries
                .iter()
                .find(|(key, _)| unquote(&texts[key.file][key.span.clone()]) == *k)
                .map(|(_, v)| v),
            _ => None,
        };
        match next {
            Some(n) => {
                here.0.push(seg.clone());
                node = n;
                last_hit = Some(Hit {
                    path: here.clone(),
                    file: n.file,
                    at: n.span.start,
                    end: n.span.end,
                });
            }
            None => return last_hit.map(|h| (false, h)),
        }
    }
    let node = transparent(node);
    Some((
        true,
        Hit {
            path: path.clone(),
            file: node.file,
            at: node.span.start,
            end: node.span.end,
        },
    ))
}

/// `Some(x)` → `x`.
fn transparent(mut node: &Node) -> &Node {
    while let Kind::Tuple { items, .. } = &node.kind {
        if items.len() != 1 {
            break;
        }
        node = &items[0];
    }
    node
}

/// The struct keys present anywhere in a document, with their paths
/// (list indices and map keys left out): for "did you mean" across
/// sections.
pub(super) fn key_paths(node: &Node, prefix: &KeyPath, out: &mut Vec<KeyPath>) {
    match &transparent(node).kind {
        Kind::Struct { fields, .. } => {
            for f in fields {
                let p = prefix.key(&f.key);
                out.push(p.clone());
                key_paths(&f.value, &p, out);
            }
        }
        Kind::Map(entries) => {
            for (_, v) in entries {
                key_paths(v, prefix, out);
            }
        }
        _ => {}
    }
}

/// Byte offset → 1-based line and column (in characters).
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// `ron`'s 1-based line and byte column → byte offset.
pub(super) fn ron_offset(text: &str, line: usize, col: usize) -> usize {
    let mut start = 0;
    for _ in 1..line.max(1) {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    (start + col.saturating_sub(1)).min(text.len())
}

/// 1-based line and column in characters (as [`line_col`] gives them) →
/// byte offset.
pub(super) fn char_offset(text: &str, line: usize, col: usize) -> usize {
    let start = ron_offset(text, line, 1);
    let rest = &text[start..];
    rest.char_indices()
        .nth(col.saturating_sub(1))
        .map_or(text.len(), |(i, _)| start + i)
}

/// The byte range of the innermost struct field (`key: value`), list
/// element or map entry containing `offset`, with the comma after it if
/// there is one: what to blank out of the text so the rest still parses
/// without it. `None` if only the top level contains `offset`.
pub(super) fn entry_at(root: &Node, text: &str, offset: usize) -> Option<Span> {
    fn walk(node: &Node, offset: usize, best: &mut Option<Span>) {
        let mut visit = |range: Span, inner: &Node| {
            if range.start <= offset && offset <= range.end {
                *best = Some(range);
                walk(inner, offset, best);
            }
        };
        match &node.kind {
            Kind::Struct { fields, .. } => {
                for f in fields {
                    visit(f.key_span.start..f.value.span.end, &f.value);
                }
            }
            Kind::Tuple { items, .. } | Kind::Seq(items) => {
                for n in items {
                    visit(n.span.clone(), n);
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries {
                    visit(k.span.start..v.span.end, v);
                }
            }
            Kind::Atom => {}
        }
    }
    let mut best = None;
    walk(root, offset, &mut best);
    let mut span = best?;
    let after = &text[span.end..];
    let ws = after.len() - after.trim_start().len();
    if after[ws..].starts_with(',') {
        span.end += ws + 1;
    }
    Some(span)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Doc {
        parse(text, 0).unwrap_or_else(|(at, e)| panic!("{at}: {e}"))
    }

    #[test]
    fn parses_every_shape_with_comments() {
        let text = r##"#![enable(implicit_some)]
// a comment
(
    a: (b: 1, c: "x)y", /* nested /* block */ comment */ d: r#"raw "q""#),
    e: [1, -2.5e-3, 0x1F, 'c', '\''],
    f: {"k": Some(Name(x: 1)), "l": None},
    g: Variant(1, 2),
    h: (),
    r#type: true,
)"##;
        let d = doc(text);
        assert_eq!(d.attributes, vec!["#![enable(implicit_some)]"]);
        let Kind::Struct { fields, .. } = &d.root.kind else {
            panic!("{:?}", d.root)
        };
        let keys: Vec<&str> = fields.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["a", "e", "f", "g", "h", "type"]);
        let texts = [text];
        let (exact, hit) = locate(&d.root, &texts, &KeyPath::root().key("a").key("d")).unwrap();
        assert!(exact);
        assert!(text[hit.at..].starts_with("r#\"raw"));
        let p = KeyPath::root().key("f").map_key("k").key("x");
        let (exact, hit) = locate(&d.root, &texts, &p).unwrap();
        assert!(exact, "{hit:?}");
        assert!(text[hit.at..].starts_with("1)"));
        assert_eq!(p.to_string(), "f[\"k\"].x");
    }

    #[test]
    fn merges_key_by_key_and_keeps_origins() {
        let a = "(x: (p: 1, q: 2), l: [1, 2], m: {\"a\": (u: 1)}, o: Some((s: 1)))";
        let b = "(x: (q: 3), l: [9], m: {\"b\": (u: 2)}, o: Some((t: 2)))";
        let texts = [a, b];
        let da = parse(a, 0).unwrap();
        let db = parse(b, 1).unwrap();
        let mut m = merge(da.root, db.root, &texts);
        let out = emit(&[], &mut m, &texts);
        let compact: String = out.split_whitespace().collect();
        assert_eq!(
            compact,
            "(x:(p:1,q:3,),l:[9],m:{\"a\":(u:1,),\"b\":(u:2,),},o:Some((s:1,t:2,)),)"
        );
        let q = KeyPath::root().key("x").key("q");
        let (_, hit) = locate(&m, &texts, &q).unwrap();
        assert_eq!(hit.file, 1);
        let p = KeyPath::root().key("x").key("p");
        let (_, hit) = locate(&m, &texts, &p).unwrap();
        assert_eq!(hit.file, 0);
        // Positions in the merged text lead back to the files.
        let at = out.find("3").unwrap();
        let hit = culprit(&m, &texts, In::Merged, at + 1, Anchor::End).unwrap();
        assert_eq!((hit.file, hit.path.to_string()), (1, "x.q".to_owned()));
    }

    #[test]
    fn line_and_column() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, t.find('f').unwrap()), (3, 1));
        assert_eq!(ron_offset(t, 2, 2), 4);
        assert_eq!(line_col(t, ron_offset(t, 3, 1)), (3, 1));
    }
}
