//! JSON Pointers (RFC 6901) for the fields a violation is about.
//!
//! The checker keeps a stack of path segments while it walks an event and renders a pointer
//! only when it records a violation, so valid events never pay for string building.

use std::fmt::Write;

/// One step from a JSON value to one of its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// A member of an object.
    Key(&'a str),
    /// An element of an array.
    Index(usize),
}

/// Renders `segments` as an RFC 6901 pointer (`""` for the whole document).
pub fn render(segments: &[Segment<'_>]) -> String {
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        match segment {
            Segment::Key(key) => push_escaped(&mut out, key),
            Segment::Index(index) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "{index}");
            }
        }
    }
    out
}

/// Appends one escaped reference token: `~` becomes `~0` and `/` becomes `~1`.
pub fn push_escaped(out: &mut String, token: &str) {
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_root_as_empty_string() {
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn renders_keys_and_indexes() {
        let path = [
            Segment::Key("data"),
            Segment::Key("dataReferences"),
            Segment::Index(2),
        ];
        assert_eq!(render(&path), "/data/dataReferences/2");
    }

    #[test]
    fn escapes_tilde_and_slash() {
        assert_eq!(render(&[Segment::Key("a/b~c")]), "/a~1b~0c");
    }
}
