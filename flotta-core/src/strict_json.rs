//! A strict first pass over JSON from outside: refuses what `serde_json` would
//! quietly accept or what costs the server too much.
//!
//! `serde_json` keeps the *last* of two equal keys in a map and errors only on
//! some structs, so `{"directive": "heartbeat", "directive": "enrolment"}` would mean
//! whatever the parser happens to pick; an object nested thousands deep costs stack
//! and time before any type is checked. [`check`] walks the document once, without
//! building it, and refuses duplicate keys (with the object's path), nesting deeper
//! than [`MAX_DEPTH`], numbers outside what an `f64` can hold, invalid UTF-8 and
//! trailing bytes. [`from_slice`] runs it and then deserializes as usual.
//!
//! ```
//! use flotta_core::strict_json::{self, StrictJsonError};
//!
//! let error = strict_json::check(br#"{"a": {"b": 1, "b": 2}}"#).unwrap_err();
//! assert!(matches!(error, StrictJsonError::DuplicateKey { .. }));
//! assert_eq!(error.to_string(), r#"duplicate key "b" in the object at $.a"#);
//! assert!(strict_json::check(br#"{"a": [1, 2.5, "x", null]}"#).is_ok());
//! ```

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Deepest nesting of arrays and objects accepted (the top-level value is depth 1).
pub const MAX_DEPTH: usize = 64;

/// Why a JSON document is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StrictJsonError {
    /// An object holds the same key twice.
    #[error("duplicate key {key:?} in the object at {path}")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// Path of the object holding it, `$` for the top level.
        path: String,
    },
    /// Arrays and objects are nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {limit} levels at {path}")]
    TooDeep {
        /// Path of the value past the limit.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// Not JSON: syntax, invalid UTF-8, an out-of-range number, trailing bytes.
    #[error("malformed JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    /// Valid JSON, but not the expected shape (from [`from_slice`]).
    #[error("{path}: {source}")]
    Shape {
        /// Path of the offending value, `.` for the top level.
        path: String,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },
}

/// A step of the path to a value.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The path to the value being read, as a stack-allocated linked list, rendered
/// only when something is wrong.
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    step: Option<Step<'a>>,
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parent {
            Some(parent) => write!(f, "{parent}")?,
            None => write!(f, "$")?,
        }
        match self.step {
            Some(Step::Key(key)) if is_plain_key(key) => write!(f, ".{key}"),
            Some(Step::Key(key)) => write!(f, "[{key:?}]"),
            Some(Step::Index(index)) => write!(f, "[{index}]"),
            None => Ok(()),
        }
    }
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// What the walk found wrong, kept outside serde's error so that it comes back typed.
enum Found {
    Duplicate { key: String, path: String },
    TooDeep { path: String },
}

struct Walk<'p, 'f> {
    path: Path<'p>,
    depth: usize,
    found: &'f std::cell::RefCell<Option<Found>>,
}

impl Walk<'_, '_> {
    fn fail<E: de::Error>(&self, found: Found) -> E {
        let text = match &found {
            Found::Duplicate { key, path } => format!("duplicate key {key:?} at {path}"),
            Found::TooDeep { path } => format!("too deep at {path}"),
        };
        *self.found.borrow_mut() = Some(found);
        E::custom(text)
    }

    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(self.fail(Found::TooDeep {
                path: self.path.to_string(),
            }));
        }
        Ok(depth)
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.enter()?;
        let mut index = 0;
        loop {
            let child = Walk {
                path: Path {
                    parent: Some(&self.path),
                    step: Some(Step::Index(index)),
                },
                depth,
                found: self.found,
            };
            if seq.next_element_seed(child)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.enter()?;
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(self.fail(Found::Duplicate {
                    key,
                    path: self.path.to_string(),
                }));
            }
            let child = Walk {
                path: Path {
                    parent: Some(&self.path),
                    step: Some(Step::Key(&key)),
                },
                depth,
                found: self.found,
            };
            map.next_value_seed(child)?;
            seen.insert(key);
        }
        Ok(())
    }
}

/// Checks that `input` is one strict JSON document: valid UTF-8 and syntax, no
/// duplicate keys, nesting at most [`MAX_DEPTH`], numbers within `f64` range, nothing
/// after the value but whitespace.
pub fn check(input: &[u8]) -> Result<(), StrictJsonError> {
    let found = std::cell::RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    let walk = Walk {
        path: Path {
            parent: None,
            step: None,
        },
        depth: 0,
        found: &found,
    };
    let walked = walk
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    match (walked, found.into_inner()) {
        (_, Some(Found::Duplicate { key, path })) => {
            Err(StrictJsonError::DuplicateKey { key, path })
        }
        (_, Some(Found::TooDeep { path })) => Err(StrictJsonError::TooDeep {
            path,
            limit: MAX_DEPTH,
        }),
        (Err(error), None) => Err(StrictJsonError::Syntax(error)),
        (Ok(()), None) => Ok(()),
    }
}

/// [`check`], then deserializes `input` as `T`; a shape error names the field path.
pub fn from_slice<T: DeserializeOwned>(input: &[u8]) -> Result<T, StrictJsonError> {
    check(input)?;
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let source = e.into_inner();
        if source.is_syntax() || source.is_eof() {
            StrictJsonError::Syntax(source)
        } else {
            StrictJsonError::Shape { path, source }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_documents_pass() {
        for ok in [
            &br#"{"a": 1, "b": [true, false, null, "x", -3, 1.5e300], "c": {"a": 1}}"#[..],
            b"[]",
            b"{}",
            b"  42  ",
            br#"[{"k": 1}, {"k": 2}]"#,
        ] {
            check(ok).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(ok)));
        }
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_path() {
        let error = check(br#"{"content": {"workloads": [{"name": "a", "name": "b"}]}}"#)
            .expect_err("duplicate");
        assert_eq!(
            error.to_string(),
            r#"duplicate key "name" in the object at $.content.workloads[0]"#
        );
        let error = check(br#"{"x": 1, "x": 1}"#).expect_err("duplicate at top");
        assert!(matches!(error, StrictJsonError::DuplicateKey { ref path, .. } if path == "$"));
        let error = check(br#"{"a b": {"k": 1, "k": 2}}"#).expect_err("quoted path");
        assert!(error.to_string().ends_with(r#"$["a b"]"#), "{error}");
    }

    #[test]
    fn deep_nesting_is_refused_before_serde_json_gives_up() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        check(ok.as_bytes()).expect("at the limit");
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let error = check(deep.as_bytes()).expect_err("too deep");
        assert!(matches!(error, StrictJsonError::TooDeep { limit, .. } if limit == MAX_DEPTH));
        let very_deep = "[".repeat(100_000);
        assert!(matches!(
            check(very_deep.as_bytes()),
            Err(StrictJsonError::TooDeep { .. })
        ));
    }

    #[test]
    fn malformed_input_is_a_syntax_error() {
        for bad in [
            &b"{"[..],
            b"{} {}",
            b"\"\xff\xfe\"",
            b"1e400",
            b"-1e99999",
            b"",
            b"{\"a\": 01}",
        ] {
            assert!(
                matches!(check(bad), Err(StrictJsonError::Syntax(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn typed_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Message {
            count: u32,
        }
        let error = from_slice::<Message>(br#"{"count": 99999999999999999999}"#).expect_err("big");
        assert!(error.to_string().starts_with("count:"), "{error}");
        let error = from_slice::<Message>(br#"{"count": 1, "count": 2}"#).expect_err("dup");
        assert!(matches!(error, StrictJsonError::DuplicateKey { .. }));
        assert_eq!(
            from_slice::<Message>(br#"{"count": 7}"#)
                .expect("valid")
                .count,
            7
        );
    }
}
