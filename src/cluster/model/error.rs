//! The error body Elasticsearch and OpenSearch send with a non-2xx status:
//! `{"error":{"type":…,"reason":…,"root_cause":[…]},"status":…}`, or in
//! older versions and proxies a plain string. Amazon OpenSearch Service
//! answers requests it refuses before the cluster sees them (a wrong SigV4
//! signature, an IAM denial) with `{"message":…}` or `{"Message":…}`.

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct ErrorBody {
    error: Value,
}

/// The body of AWS's own refusals.
#[derive(Deserialize)]
struct AwsMessage {
    #[serde(alias = "Message")]
    message: String,
}

/// The Elasticsearch exception types an error body names: its `type` and
/// those of its root causes (`resource_already_exists_exception`,
/// `search_context_missing_exception`, ...). Empty for bodies without
/// them (a proxy's page, a plain-string error).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorTypes(Box<[String]>);

impl ErrorTypes {
    pub fn of(body: &[u8]) -> ErrorTypes {
        let mut types = Vec::new();
        if let Ok(ErrorBody {
            error: Value::Object(map),
        }) = serde_json::from_slice::<ErrorBody>(body)
        {
            let mut push = |v: Option<&Value>| {
                if let Some(t) = v.and_then(Value::as_str) {
                    if !types.iter().any(|x| x == t) {
                        types.push(t.to_string());
                    }
                }
            };
            push(map.get("type"));
            if let Some(Value::Array(causes)) = map.get("root_cause") {
                for cause in causes {
                    push(cause.get("type"));
                }
            }
            let mut caused_by = map.get("caused_by");
            while let Some(cause) = caused_by {
                push(cause.get("type"));
                caused_by = cause.get("caused_by");
            }
        }
        ErrorTypes(types.into_boxed_slice())
    }

    /// Whether `kind` is the error's type or one of its causes' types.
    pub fn is(&self, kind: &str) -> bool {
        self.0.iter().any(|t| t == kind)
    }

    /// The error's own type, if it has one.
    pub fn primary(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }
}

/// A one-line reason from an error body: `type: reason`, the first root
/// cause when the top-level reason is empty, or the start of the raw text.
pub fn reason(body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        return match parsed.error {
            Value::String(s) => one_line(&s),
            Value::Object(map) => {
                let kind = map.get("type").and_then(Value::as_str).unwrap_or("error");
                let root = map.get("root_cause").and_then(|r| r.get(0));
                let root_reason = root.and_then(|r| r.get("reason")).and_then(Value::as_str);
                let reason = map
                    .get("reason")
                    .and_then(Value::as_str)
                    .filter(|r| !r.is_empty())
                    .or(root_reason)
                    .unwrap_or("");
                let mut text = format!("{kind}: {reason}");
                // The root cause often says what happened ("all shards
                // failed" does not): keep it when it is another error.
                if let Some(root_kind) = root.and_then(|r| r.get("type")).and_then(Value::as_str) {
                    if root_kind != kind {
                        text.push_str(&format!(
                            " (caused by {root_kind}: {})",
                            root_reason.unwrap_or("")
                        ));
                    }
                }
                one_line(&text)
            }
            other => one_line(&other.to_string()),
        };
    }
    if let Ok(aws) = serde_json::from_slice::<AwsMessage>(body) {
        return one_line(&aws.message);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "empty response body".into()
    } else {
        one_line(text)
    }
}

fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 300 {
        let cut: String = flat.chars().take(300).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::reason;

    #[test]
    fn error_types_and_causes() {
        let body = br#"{"error":{"root_cause":[{"type":"search_context_missing_exception","reason":"No search context found for id [1]"}],"type":"search_phase_execution_exception","reason":"all shards failed","caused_by":{"type":"illegal_state_exception","caused_by":{"type":"io_exception"}}},"status":404}"#;
        let types = super::ErrorTypes::of(body);
        assert_eq!(types.primary(), Some("search_phase_execution_exception"));
        for t in [
            "search_context_missing_exception",
            "illegal_state_exception",
            "io_exception",
        ] {
            assert!(types.is(t), "{t}");
        }
        assert!(!types.is("all shards failed"));
        assert_eq!(
            super::ErrorTypes::of(br#"{"error":"no handler found"}"#),
            super::ErrorTypes::default()
        );
        assert_eq!(
            super::ErrorTypes::of(b"<html>"),
            super::ErrorTypes::default()
        );
    }

    #[test]
    fn aws_refusal() {
        let body = br#"{"message":"The request signature we calculated does not match the signature you provided."}"#;
        assert_eq!(
            reason(body),
            "The request signature we calculated does not match the signature you provided."
        );
        let body = br#"{"Message":"User: anonymous is not authorized to perform: es:ESHttpGet"}"#;
        assert_eq!(
            reason(body),
            "User: anonymous is not authorized to perform: es:ESHttpGet"
        );
    }

    #[test]
    fn structured_error() {
        let body = br#"{"error":{"root_cause":[{"type":"index_not_found_exception","reason":"no such index [x]"}],"type":"index_not_found_exception","reason":"no such index [x]"},"status":404}"#;
        assert_eq!(reason(body), "index_not_found_exception: no such index [x]");
    }

    #[test]
    fn a_different_root_cause_is_kept() {
        let body = br#"{"error":{"root_cause":[{"type":"search_context_missing_exception","reason":"No search context found for id [1]"}],"type":"search_phase_execution_exception","reason":"all shards failed"},"status":404}"#;
        assert_eq!(
            reason(body),
            "search_phase_execution_exception: all shards failed (caused by search_context_missing_exception: No search context found for id [1])"
        );
    }

    #[test]
    fn string_error_and_plain_text() {
        assert_eq!(
            reason(br#"{"error":"Incorrect HTTP method"}"#),
            "Incorrect HTTP method"
        );
        assert_eq!(
            reason(b"<html>\n bad gateway </html>"),
            "<html> bad gateway </html>"
        );
        assert_eq!(reason(b""), "empty response body");
    }
}
