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
    // `1994.0` and `1.994e3` are integers written as floats. Decided on the
    // exact decimal text, not through f64, which would round `1e-400` to 0
    // and `1994.0000000000000001` to 1994.
    exact_integer(&n.to_string())
}

/// A JSON number's parts: sign, integer digits, fraction digits, exponent
/// (saturated far beyond any meaningful value).
fn number_parts(text: &str) -> (bool, &str, &str, i64) {
    let (negative, s) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let (exp_negative, digits) = match exp.as_bytes().first() {
        Some(b'-') => (true, &exp[1..]),
        Some(b'+') => (false, &exp[1..]),
        _ => (false, exp),
    };
    let digits = digits.trim_start_matches('0');
    let magnitude = if digits.len() > 15 {
        i64::MAX / 4
    } else {
        digits.parse::<i64>().unwrap_or(0)
    };
    let exponent = if exp_negative { -magnitude } else { magnitude };
    (negative, int, frac, exponent)
}

/// The JSON number `text` as an i64 when its value is a whole number in
/// range, exactly.
pub(super) fn exact_integer(text: &str) -> Option<i64> {
    let (negative, int, frac, exponent) = number_parts(text);
    let digits = format!("{int}{frac}");
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Some(0);
    }
    let trimmed = significant.trim_end_matches('0');
    // value = trimmed × 10^scale
    let scale = exponent - frac.len() as i64 + (significant.len() - trimmed.len()) as i64;
    if scale < 0 || trimmed.len() as i64 + scale > 19 {
        return None;
    }
    let magnitude: i128 = format!("{trimmed}{}", "0".repeat(scale as usize))
        .parse()
        .ok()?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// PostgreSQL's `numeric` limits (PG 15, `numeric.c`): an exponent whose
/// magnitude reaches `INT_MAX / 2` is refused outright; the display scale
/// (digits after the point once the exponent is applied) is at most
/// 16,383; the first significant digit sits at most 131,071 places before
/// the point (a weight of 32,767 base-10,000 digits).
const NUMERIC_EXPONENT_LIMIT: i64 = (i32::MAX / 2) as i64;
const NUMERIC_DSCALE_MAX: i64 = 0x3FFF;
const NUMERIC_DIGITS_BEFORE_POINT: i64 = 4 * 32_768;

/// Whether `numeric`, and so `jsonb`, can hold the JSON number `text`
/// (`1e200000` and `1e-16384` it cannot). Checked against PostgreSQL 15
/// by `tests/isolation.rs`.
pub fn numeric_fits(text: &str) -> bool {
    let (_, int, frac, exponent) = number_parts(text);
    if exponent.abs() >= NUMERIC_EXPONENT_LIMIT {
        return false;
    }
    if (frac.len() as i64 - exponent).max(0) > NUMERIC_DSCALE_MAX {
        return false;
    }
    match int.bytes().chain(frac.bytes()).position(|b| b != b'0') {
        None => true,
        Some(first) => int.len() as i64 - 1 - first as i64 + exponent < NUMERIC_DIGITS_BEFORE_POINT,
    }
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
    // There is no year 0 (1 BC is followed by AD 1): PostgreSQL refuses
    // `0000-06-15`, and sent in binary it would silently become 1 BC.
    if num(0..4) == 0 {
        return Err(format!(
            "\"{field}\" year must be 0001 to 9999, got {}",
            shown(value)
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Fields {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn year_zero_is_rejected_with_its_reason() {
        let err = date(&fields(r#"{"d":"0000-06-15"}"#), "d").unwrap_err();
        assert!(err.contains("0001 to 9999"), "{err}");
        assert_eq!(
            date(&fields(r#"{"d":"0001-01-01"}"#), "d").unwrap(),
            NaiveDate::from_ymd_opt(1, 1, 1)
        );
        assert_eq!(
            date(&fields(r#"{"d":"9999-12-31"}"#), "d").unwrap(),
            NaiveDate::from_ymd_opt(9999, 12, 31)
        );
    }

    #[test]
    fn integers_are_decided_on_the_exact_decimal_text() {
        let int = |j: &str| integer(&fields(&format!(r#"{{"n":{j}}}"#)), "n");
        assert_eq!(int("1994.0"), Ok(Some(1994)));
        assert_eq!(int("1.994e3"), Ok(Some(1994)));
        assert_eq!(int("199400e-2"), Ok(Some(1994)));
        assert_eq!(int("-0.0"), Ok(Some(0)));
        assert_eq!(int("9223372036854775807.0"), Ok(Some(i64::MAX)));
        assert_eq!(int("-9223372036854775808.0"), Ok(Some(i64::MIN)));
        assert!(int("9223372036854775808.0").is_err());
        assert!(int("1e-400").is_err());
        assert!(int("1994.0000000000000001").is_err());
        assert!(int("1e200000").is_err());
        assert!(int("1e99999999999999999999").is_err());
        let year = |j: &str| integer_i32(&fields(&format!(r#"{{"n":{j}}}"#)), "n");
        assert_eq!(year("2147483647"), Ok(Some(i32::MAX)));
        assert!(year("2147483648").is_err());
    }

    #[test]
    fn ratings_are_finite_doubles() {
        let num = |j: &str| number(&fields(&format!(r#"{{"n":{j}}}"#)), "n");
        assert!(num("1e200000").is_err());
        assert!(num("-1e309").is_err());
        assert_eq!(num("1e-400"), Ok(Some(0.0)));
        assert_eq!(num("4.5"), Ok(Some(4.5)));
    }

    #[test]
    fn numeric_limits() {
        for ok in [
            "0",
            "-0.0",
            "1e131071",
            "9.9e131071",
            "0.00001e131076",
            "1e-16383",
            "123e-16381",
            "0e200000",
            "0e1073741822",
            "1E+5",
        ] {
            assert!(numeric_fits(ok), "{ok}");
        }
        for bad in [
            "1e131072",
            "1e200000",
            "0.00001e131077",
            "1e-16384",
            "1.5e-16383",
            "0e-200000",
            "0e1073741823",
            "1e99999999999999999999",
            "-1e-200000",
        ] {
            assert!(!numeric_fits(bad), "{bad}");
        }
    }
}
