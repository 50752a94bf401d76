//! HTTP/1.1 message syntax and the rules an intermediary follows.

pub mod date;
pub mod framing;
pub mod head;
pub mod page;
pub mod rewrite;
pub mod target;
