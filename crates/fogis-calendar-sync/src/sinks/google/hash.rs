//! The deployed Python service's `calendarHash`, byte for byte.
//!
//! The Python service hashes `json.dumps(obj, sort_keys=True)` of seven raw FOGIS fields, so an
//! event it wrote can be recognised as unchanged only by reproducing that text exactly:
//!
//! - separators `", "` and `": "`, keys sorted (by code point) at every depth;
//! - `ensure_ascii`: `"` and `\` escaped, `\n \r \t \b \f` as such, every other character outside
//!   printable ASCII (`' '..='~'`) as lower-case `\uXXXX`, astral characters as surrogate pairs;
//! - integers as written, floats as Python's `repr` (shortest round trip, exponent form when the
//!   decimal exponent is below -4 or above 15, always with a `.` or an exponent);
//! - the raw values as received: whole referee and contact objects with every field, lists in
//!   their order.
//!
//! The reference values in the tests were computed by CPython 3.11's `json` and `hashlib`.

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

/// The seven fields the deployed service hashes; the two lists default to `[]` when absent.
const FIELDS: [&str; 5] = [
    "lag1namn",
    "lag2namn",
    "anlaggningnamn",
    "tid",
    "tavlingnamn",
];
const LISTS: [&str; 2] = ["kontaktpersoner", "domaruppdraglista"];

/// `calendarHash` of one raw FOGIS match (lower-case hex SHA-256).
pub fn calendar_hash(raw: &Value) -> String {
    let mut obj = Map::new();
    for key in FIELDS {
        obj.insert(key.into(), raw.get(key).cloned().unwrap_or(Value::Null));
    }
    for key in LISTS {
        // `match.get(key, [])`: a present `null` stays `null`.
        let value = raw
            .get(key)
            .cloned()
            .unwrap_or_else(|| Value::Array(vec![]));
        obj.insert(key.into(), value);
    }
    let text = python_dumps(&Value::Object(obj));
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Whether `raw` is a raw FOGIS match (the form the deployed service hashed), rather than a
/// processed or legacy one whose fields have other names.
pub fn is_raw_fogis(raw: &Value) -> bool {
    raw.get("matchid").is_some()
}

/// Python's `json.dumps(value, sort_keys=True)` with its default arguments.
pub fn python_dumps(value: &Value) -> String {
    let mut out = String::with_capacity(1024);
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            // UTF-8 byte order is code point order, which is how Python sorts `str`.
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(key, out);
                out.push_str(": ");
                write_value(&map[key.as_str()], out);
            }
            out.push('}');
        }
    }
}

fn write_number(n: &Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        out.push_str(&python_float_repr(f));
    }
}

/// Python's `repr(float)`.
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` is the shortest round-trip form, like Python's: `d.ddde±x`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    // Python's `decpt`: the value is 0.DIGITS x 10^decpt.
    let decpt = exp + 1;
    let mut out = String::new();
    if f < 0.0 {
        out.push('-');
    }
    let n = digits.len() as i32;
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        out.push_str(&format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()));
    } else if decpt <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-decpt) as usize));
        out.push_str(digits);
    } else if decpt >= n {
        out.push_str(digits);
        out.push_str(&"0".repeat((decpt - n) as usize));
        out.push_str(".0");
    } else {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    }
    out
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Values computed by CPython 3.11: `json.dumps(obj, sort_keys=True)` and `hashlib.sha256`.
    const ODD_INPUT: &str = r#"{"lag1namn": "Åtvidabergs FF \"U19\"", "lag2namn": "Malmö\\Öster\t😀\u007f\u0001\n",
        "anlaggningnamn": "Ängsvallen, Örebro", "tid": "/Date(1893456000000)/", "tavlingnamn": null,
        "domaruppdraglista": [{"z": 1, "a": [1.5, 5.0, -0.0, 1e-05, 0.0001, 1e16, 9999999999999998.0,
            1.2345678901234568e+17, 57.697617, 12.028288, 1e100, -2.5e-7],
            "m": {"ü": true, "b": false, "n": null}}, {}]}"#;
    const ODD_DUMPS: &str = r#"{"anlaggningnamn": "\u00c4ngsvallen, \u00d6rebro", "domaruppdraglista": [{"a": [1.5, 5.0, -0.0, 1e-05, 0.0001, 1e+16, 9999999999999998.0, 1.2345678901234568e+17, 57.697617, 12.028288, 1e+100, -2.5e-07], "m": {"b": false, "n": null, "\u00fc": true}, "z": 1}, {}], "kontaktpersoner": [], "lag1namn": "\u00c5tvidabergs FF \"U19\"", "lag2namn": "Malm\u00f6\\\u00d6ster\t\ud83d\ude00\u007f\u0001\n", "tavlingnamn": null, "tid": "/Date(1893456000000)/"}"#;
    const ODD_HASH: &str = "0893db63f171d5ce2ed3f75c1ed57d61a5e086f4435ebbab81871247bc3b0948";

    #[test]
    fn matches_python_on_escapes_floats_sorting_and_defaults() {
        let raw: Value = serde_json::from_str(ODD_INPUT).unwrap();
        let mut obj = Map::new();
        for key in FIELDS {
            obj.insert(key.into(), raw.get(key).cloned().unwrap_or(Value::Null));
        }
        for key in LISTS {
            obj.insert(
                key.into(),
                raw.get(key).cloned().unwrap_or(Value::Array(vec![])),
            );
        }
        assert_eq!(python_dumps(&Value::Object(obj)), ODD_DUMPS);
        assert_eq!(calendar_hash(&raw), ODD_HASH);
    }

    #[test]
    fn matches_python_on_the_production_fixture() {
        let path = format!(
            "{}/../../fixtures/processor_match_updates.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let msg: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let expected = [
            (
                6186203,
                "a0a70d9e33b142c2212dddc9d6b5cdba79f44545d0fcb819e2215e467fa17d75",
            ),
            (
                6186300,
                "a23480f091e0ffc0604b6134e654ef5b8d2b9a8de9ba7e376f6eedc1586c729b",
            ),
            (
                6186400,
                "8237e4fbdf37adce6cbf25a1836359638a02c23a98babe5b05400b8adc71bd23",
            ),
        ];
        let matches = msg["payload"]["matches"].as_array().unwrap();
        for (m, (id, hash)) in matches.iter().zip(expected) {
            assert_eq!(m["matchid"], id);
            assert!(is_raw_fogis(m));
            assert_eq!(calendar_hash(m), hash, "match {id}");
            // The state keeps the raw match as text and reads it back: same hash.
            let again: Value = serde_json::from_str(&m.to_string()).unwrap();
            assert_eq!(calendar_hash(&again), hash);
        }
    }

    #[test]
    fn float_repr_follows_python() {
        for (f, text) in [
            (1.5, "1.5"),
            (5.0, "5.0"),
            (-0.0, "-0.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123.456, "123.456"),
            (-2.5e-7, "-2.5e-07"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(python_float_repr(f), text, "{f}");
        }
    }
}
