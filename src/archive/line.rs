//! The data line of an archive: `{"_id":…,"_routing":…,"_source":…}` and a
//! newline, built by copying the raw JSON of each field from the server's
//! answer. Nothing is parsed into a value, so big integers and key order
//! survive exactly and a line costs one `memcpy` per field.

use serde_json::value::RawValue;

/// Appends one data line to `out`. `id` and `routing` are JSON strings as
/// the server sent them (quotes included), `source` a JSON object.
#[inline]
pub fn push_line(out: &mut Vec<u8>, id: &RawValue, routing: Option<&RawValue>, source: &RawValue) {
    let (id, source) = (id.get().as_bytes(), source.get().as_bytes());
    out.reserve(id.len() + source.len() + 48);
    out.extend_from_slice(b"{\"_id\":");
    out.extend_from_slice(id);
    if let Some(r) = routing {
        out.extend_from_slice(b",\"_routing\":");
        out.extend_from_slice(r.get().as_bytes());
    }
    out.extend_from_slice(b",\"_source\":");
    out.extend_from_slice(source);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn line_copies_fields_verbatim() {
        let mut out = Vec::new();
        let src = raw(r#"{"z":1,"big":9223372036854775807,"f":1.50,"u":"\u00e9é"}"#);
        push_line(&mut out, &raw(r#""id\"1""#), Some(&raw(r#""r1""#)), &src);
        push_line(&mut out, &raw(r#""2""#), None, &raw("{}"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"_id":"id\"1","_routing":"r1","_source":{"z":1,"big":9223372036854775807,"f":1.50,"u":"\u00e9é"}}"#,
                "\n",
                r#"{"_id":"2","_source":{}}"#,
                "\n"
            )
        );
    }
}
