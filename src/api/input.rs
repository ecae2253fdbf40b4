//! One input discipline for every route: JSON bodies parsed strictly (a duplicate key is
//! refused, since a proxy that keeps the first of two keys would see another request, and
//! numbers that some parser would round are refused rather than silently changed), text
//! free of control characters, and lengths counted in characters, as the messages say.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::ApiError;

/// A `return_url`: an absolute http(s) URL without credentials, at most 2048 characters,
/// returned as given. Any other scheme (`javascript:`, `data:`) would run in the payer's
/// page when followed, so it is refused.
pub fn return_url(field: &str, s: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::param(field, format!("{field} must be an http or https URL of at most 2048 characters, without credentials"))
    };
    if s.len() > 2048 || has_control(s) {
        return Err(bad());
    }
    let url = url::Url::parse(s).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad());
    }
    Ok(s.to_string())
}

/// The largest integer every JSON parser keeps exactly (2^53).
const MAX_EXACT: u64 = 1 << 53;

/// Parses a JSON body strictly. The error names what is wrong, never echoing the body.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = StrictValue
        .deserialize(&mut de)
        .map_err(|e| ApiError::invalid(describe(&e)))?;
    de.end()
        .map_err(|_| ApiError::invalid("the body is not valid JSON"))?;
    Ok(v)
}

fn describe(e: &serde_json::Error) -> String {
    let m = e.to_string();
    if m.starts_with("duplicate key") || m.starts_with("number ") {
        // Our own messages, without serde's position suffix.
        m.split(" at line ").next().unwrap_or(&m).to_string()
    } else {
        "the body is not valid JSON".into()
    }
}

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        if v.unsigned_abs() > MAX_EXACT {
            return Err(E::custom(
                "number beyond ±2^53: send it as a string to keep it exact",
            ));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        if v > MAX_EXACT {
            return Err(E::custom(
                "number beyond ±2^53: send it as a string to keep it exact",
            ));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        // Integers too large for 64 bits arrive here already rounded: refuse them, and any
        // other number no parser can keep exactly.
        if !v.is_finite() || v.abs() > MAX_EXACT as f64 {
            return Err(E::custom(
                "number beyond ±2^53: send it as a string to keep it exact",
            ));
        }
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(StrictValue)?;
            if out.insert(k.clone(), v).is_some() {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key {:?} in the body",
                    truncate(&k, 40)
                )));
            }
        }
        Ok(Value::Object(out))
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Whether `s` holds a control character (C0, DEL or C1), which no field accepts: NUL
/// cannot be stored, and the rest only ever serve to forge logs or confuse parsers.
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A text field: at most `max` characters (counted as characters, not bytes) and no
/// control characters; the 400 names `field`.
pub fn text(field: &str, s: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(ApiError::param(
            field,
            format!("{field} must be {min} to {max} characters"),
        ));
    }
    if has_control(s) {
        return Err(ApiError::param(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

/// Refuses control characters anywhere in a JSON value, keys included; the 400 names
/// `field`.
pub fn no_control_in(field: &str, v: &Value) -> Result<(), ApiError> {
    let bad = match v {
        Value::String(s) => has_control(s),
        Value::Array(a) => return a.iter().try_for_each(|x| no_control_in(field, x)),
        Value::Object(m) => {
            for (k, x) in m {
                if has_control(k) {
                    return Err(ApiError::param(
                        field,
                        format!("{field} keys must not contain control characters"),
                    ));
                }
                no_control_in(field, x)?;
            }
            false
        }
        _ => false,
    };
    if bad {
        return Err(ApiError::param(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

/// A query string's parameters: each at most once, each one of `allowed`, and no value
/// with a control character. The 400 names the parameter.
pub fn query(raw: &str, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            let name: String = k.chars().filter(|c| !c.is_control()).take(64).collect();
            return Err(ApiError::param(&name, format!("unknown parameter {name}")));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(ApiError::param(&k, format!("{k} given more than once")));
        }
        if has_control(&v) {
            return Err(ApiError::param(
                &k,
                format!("{k} must not contain control characters"),
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(parse_json(br#"{"a":1,"b":2}"#).is_ok());
        for bad in [
            &br#"{"amount":"1","amount":"2"}"#[..],
            br#"{"metadata":{"k":1,"k":2}}"#,
            br#"[{"x":1,"x":1}]"#,
        ] {
            let e = parse_json(bad).expect_err("duplicate");
            assert!(e.to_string().contains("duplicate key"), "{e}");
        }
    }

    #[test]
    fn numbers_are_kept_exact_or_refused() {
        let v =
            parse_json(br#"{"n":9007199254740992,"m":-9007199254740992,"f":1.5}"#).expect("exact");
        assert_eq!(v["n"], 9_007_199_254_740_992u64);
        for bad in [
            &br#"{"n":9007199254740993}"#[..],
            br#"{"n":123456789012345678901234567890}"#,
            br#"{"n":-18446744073709551615}"#,
            br#"{"n":1e300}"#,
        ] {
            let e = parse_json(bad).expect_err("inexact");
            assert!(e.to_string().contains("2^53"), "{e}");
        }
        assert!(parse_json(b"{").is_err());
        assert!(parse_json(b"{} x").is_err());
    }

    #[test]
    fn text_counts_characters_and_refuses_control_characters() {
        assert!(text("order_id", &"é".repeat(255), 1, 255).is_ok());
        assert!(text("order_id", &"é".repeat(256), 1, 255).is_err());
        for bad in ["a\u{0}b", "a\nb", "\u{7f}", "\u{85}"] {
            let e = text("order_id", bad, 1, 255).expect_err("control");
            assert!(e.to_string().contains("control"), "{e}");
        }
        let v = serde_json::json!({"k": ["ok", {"n\u{0}": 1}]});
        assert!(no_control_in("metadata", &v).is_err());
        assert!(no_control_in("metadata", &serde_json::json!({"k": "v"})).is_ok());
    }

    #[test]
    fn query_parameters_are_known_single_and_clean() {
        let q = query("limit=5&status=pending", &["limit", "status"]).expect("ok");
        assert_eq!(q.len(), 2);
        assert!(query("foo=bar", &["limit"]).is_err());
        assert!(query("limit=5&limit=6", &["limit"]).is_err());
        assert!(query("event=%00", &["event"]).is_err());
        assert!(query("", &[]).expect("empty").is_empty());
    }
}
