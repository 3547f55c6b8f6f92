//! Field coercions: lenient where the meaning is unambiguous, strict
//! elsewhere. Each function returns `Ok(None)` for a missing field or JSON
//! `null`, and an error in words that becomes the rejected record's reason.

use chrono::NaiveDate;
use serde_json::{Map, Number, Value};

pub type Fields = Map<String, Value>;

fn present<'a>(data: &'a Fields, field: &str) -> Option<&'a Value> {
    data.get(field).filter(|v| !v.is_null())
}

/// PostgreSQL `text` cannot hold U+0000, so a value containing it cannot be
/// stored as given; rejecting keeps the record whole in `rejected_records`.
fn check_text(field: &str, s: &str) -> Result<(), String> {
    if s.contains('\0') {
        return Err(format!(
            "\"{field}\" contains a NUL character (\\u0000), which PostgreSQL text cannot store"
        ));
    }
    Ok(())
}

/// A JSON string, or a JSON number taken as its JSON text.
pub fn text(data: &Fields, field: &str) -> Result<Option<String>, String> {
    match present(data, field) {
        None => Ok(None),
        Some(Value::String(s)) => {
            check_text(field, s)?;
            Ok(Some(s.clone()))
        }
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!("\"{field}\" must be text, got {}", kind(other))),
    }
}

pub fn required_text(data: &Fields, field: &str) -> Result<String, String> {
    text(data, field)?.ok_or_else(|| format!("missing required field \"{field}\""))
}

fn int_from_number(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    // `1994.0` is an integer written as a float. The range check uses the
    // exact f64 bounds: i64::MAX itself is not representable.
    let f = n.as_f64()?;
    (f.is_finite()
        && f.fract() == 0.0
        && f >= -9.223_372_036_854_775_808e18
        && f < 9.223_372_036_854_775_808e18)
        .then_some(f as i64)
}

/// A JSON integer, a float with no fraction, or a string holding an integer.
pub fn integer(data: &Fields, field: &str) -> Result<Option<i64>, String> {
    let value = match present(data, field) {
        None => return Ok(None),
        Some(v) => v,
    };
    let parsed = match value {
        Value::Number(n) => int_from_number(n),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| format!("\"{field}\" must be an integer, got {}", shown(value)))
}

pub fn integer_i32(data: &Fields, field: &str) -> Result<Option<i32>, String> {
    match integer(data, field)? {
        None => Ok(None),
        Some(i) => i32::try_from(i)
            .map(Some)
            .map_err(|_| format!("\"{field}\" is out of range for an integer column: {i}")),
    }
}

pub fn non_negative(data: &Fields, field: &str) -> Result<Option<i64>, String> {
    match integer(data, field)? {
        Some(i) if i < 0 => Err(format!("\"{field}\" must be >= 0, got {i}")),
        other => Ok(other),
    }
}

/// A JSON number or a string holding a number; never NaN or infinite, which
/// no real rating is and which would compare oddly in `is_awesome`.
pub fn number(data: &Fields, field: &str) -> Result<Option<f64>, String> {
    let value = match present(data, field) {
        None => return Ok(None),
        Some(v) => v,
    };
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(f) if f.is_finite() => Ok(Some(f)),
        _ => Err(format!(
            "\"{field}\" must be a finite number, got {}",
            shown(value)
        )),
    }
}

/// A JSON boolean or the strings "true"/"false" in any case.
pub fn boolean(data: &Fields, field: &str) -> Result<Option<bool>, String> {
    match present(data, field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(format!(
            "\"{field}\" must be a boolean, got {}",
            shown(other)
        )),
    }
}

/// `YYYY-MM-DD`, exactly, and a real calendar date.
pub fn date(data: &Fields, field: &str) -> Result<Option<NaiveDate>, String> {
    let value = match present(data, field) {
        None => return Ok(None),
        Some(v) => v,
    };
    let bad = || {
        format!(
            "\"{field}\" must be a YYYY-MM-DD calendar date, got {}",
            shown(value)
        )
    };
    let Value::String(s) = value else {
        return Err(bad());
    };
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
    NaiveDate::from_ymd_opt(num(0..4) as i32, num(5..7), num(8..10))
        .map(Some)
        .ok_or_else(bad)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value for an error message: short, and never a whole nested document.
fn shown(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => kind(v).to_string(),
        _ => {
            let s = v.to_string();
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(60).collect::<String>())
            } else {
                s
            }
        }
    }
}
