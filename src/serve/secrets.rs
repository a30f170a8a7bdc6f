//! The secrets of the configured clusters (passwords, API keys, bearer
//! tokens), to scrub from whatever a job records: an engine error that
//! quoted one must reach neither the API nor the state folder.

use serde_json::Value;

use super::config::ServeConfig;
use crate::cluster::Auth;

/// The secrets of the configured clusters, to scrub from anything a job
/// records: an engine error that quoted one must not reach the API.
#[derive(Default, Clone)]
pub struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} hidden)", self.0.len())
    }
}

impl Secrets {
    pub fn of(config: &ServeConfig) -> Secrets {
        let secrets = config
            .clusters
            .values()
            .filter_map(|c| match &c.auth {
                Auth::Basic { password, .. } => Some(password.clone()),
                Auth::ApiKey(key) => Some(key.clone()),
                Auth::Bearer(token) => Some(token.clone()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
            .collect();
        Secrets(secrets)
    }

    pub fn redact(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_string(), |text, secret| text.replace(secret, "***"))
    }

    pub fn redact_json(&self, value: Value) -> Value {
        let text = value.to_string();
        let clean = self.redact(&text);
        if clean == text {
            value
        } else {
            serde_json::from_str(&clean).unwrap_or(Value::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_scrubbed_from_text_and_reports() {
        let secrets = Secrets(vec!["hunter2".into()]);
        assert_eq!(secrets.redact("401 for hunter2 at x"), "401 for *** at x");
        let report = secrets.redact_json(json!({"warnings": ["pw hunter2"], "n": 1}));
        assert_eq!(report, json!({"warnings": ["pw ***"], "n": 1}));
    }
}
