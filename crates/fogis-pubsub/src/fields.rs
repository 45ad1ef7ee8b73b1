//! Lenient, path-aware access to the fields of a JSON object.
//!
//! FOGIS data is loosely typed: ids arrive as numbers or strings, empty strings mean "none", and
//! the processed forms write `"N/A"` for unknown. These helpers accept those variants and turn
//! anything else into a [`FieldError`] that names the field, so a reason can say exactly where a
//! match went wrong.

use serde_json::{Map, Value};

/// A field of one match that could not be read, with its path inside the match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error one object level further out (`parent.path`).
    pub fn under(mut self, parent: &str) -> Self {
        self.path = join(parent, &self.path);
        self
    }

    /// The same error inside element `index` of list `list` (`list[index].path`).
    pub fn within(mut self, list: &str, index: usize) -> Self {
        self.path = join(&format!("{list}[{index}]"), &self.path);
        self
    }
}

fn join(parent: &str, child: &str) -> String {
    if child.is_empty() {
        parent.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Longest text field accepted, in bytes (after trimming): names, venues, competitions are
/// served in every feed.
pub const MAX_TEXT_BYTES: usize = 1024;

/// The JSON kind of a value, for error messages (never the value itself: it may be personal data).
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// An integer id given as a number or a string of digits.
pub fn as_i64(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| "expected a whole number".to_string()),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| "expected a whole number or a string of digits".to_string()),
        other => Err(format!("expected a whole number, found {}", kind(other))),
    }
}

/// A borrowed JSON object with lenient typed getters.
#[derive(Debug, Clone, Copy)]
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    /// Treat the string `"N/A"` as absent (processed forms).
    na_is_none: bool,
}

impl<'a> Obj<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Obj {
            map,
            na_is_none: false,
        }
    }

    /// The object inside `v`, or an error naming what `v` is instead.
    pub fn of(v: &'a Value) -> Result<Self, FieldError> {
        match v {
            Value::Object(map) => Ok(Obj::new(map)),
            other => Err(FieldError::new(
                "",
                format!("expected an object, found {}", kind(other)),
            )),
        }
    }

    pub fn not_applicable_is_none(mut self) -> Self {
        self.na_is_none = true;
        self
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    /// A nested object (same "N/A" rule).
    pub fn obj(&self, key: &str) -> Result<Obj<'a>, FieldError> {
        match self.map.get(key) {
            Some(Value::Object(map)) => Ok(Obj {
                map,
                na_is_none: self.na_is_none,
            }),
            Some(other) => Err(FieldError::new(
                key,
                format!("expected an object, found {}", kind(other)),
            )),
            None => Err(FieldError::new(key, "missing")),
        }
    }

    /// The required integer id at `key`.
    pub fn id(&self, key: &str) -> Result<i64, FieldError> {
        match self.map.get(key) {
            None | Some(Value::Null) => {
                Err(FieldError::new(key, "missing: the match id is required"))
            }
            Some(v) => {
                let id = as_i64(v).map_err(|m| FieldError::new(key, m))?;
                if id <= 0 {
                    return Err(FieldError::new(key, "a match id must be positive"));
                }
                Ok(id)
            }
        }
    }

    /// A text field: strings (trimmed; empty means none; at most [`MAX_TEXT_BYTES`]) and
    /// numbers (as written) are accepted.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>, FieldError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                let t = s.trim();
                if t.len() > MAX_TEXT_BYTES {
                    return Err(FieldError::new(
                        key,
                        format!("{} bytes of text, more than {MAX_TEXT_BYTES}", t.len()),
                    ));
                }
                if t.is_empty() || (self.na_is_none && t == "N/A") {
                    Ok(None)
                } else {
                    Ok(Some(t.to_string()))
                }
            }
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(FieldError::new(
                key,
                format!("expected text, found {}", kind(other)),
            )),
        }
    }

    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, FieldError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() || s.trim() == "N/A" => Ok(None),
            Some(v) => as_i64(v).map(Some).map_err(|m| FieldError::new(key, m)),
        }
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, FieldError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| FieldError::new(key, "expected a number")),
            Some(other) => Err(FieldError::new(
                key,
                format!("expected a number, found {}", kind(other)),
            )),
        }
    }

    /// A flag: booleans, and 0/1 as FOGIS sometimes writes them.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, FieldError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) if n.as_i64() == Some(0) => Ok(Some(false)),
            Some(Value::Number(n)) if n.as_i64() == Some(1) => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(FieldError::new(
                key,
                format!("expected true or false, found {}", kind(other)),
            )),
        }
    }

    pub fn opt_list(&self, key: &str) -> Result<Option<&'a Vec<Value>>, FieldError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(FieldError::new(
                key,
                format!("expected a list, found {}", kind(other)),
            )),
        }
    }
}
