//! Secrets must never reach a bundle that is handed to someone else: every text collected passes through here,
//! which replaces the secrets it was told of and anything shaped like a credential, counting what it replaced.

use std::collections::BTreeMap;

use infer_doctor_core::secret::is_secret_name;
use serde::Serialize;

use crate::hostnames::HostPseudonyms;

/// What a redacted secret reads as.
pub const REDACTED: &str = "[redacted]";
/// Known values shorter than this are not replaced: they would match ordinary text everywhere.
const SHORTEST_SECRET: usize = 4;
/// Environment values shorter than this are settings (`1`, `true`, `auto`), not credentials.
const SHORTEST_ENVIRONMENT_SECRET: usize = 8;

/// How many secrets of each kind were replaced in one text (never the values).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Redactions(pub BTreeMap<&'static str, u64>);

impl Redactions {
    pub(crate) fn count(&mut self, kind: &'static str) {
        *self.0.entry(kind).or_default() += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds another text's counts, for an item made of several files.
    pub fn add(&mut self, other: Redactions) {
        for (kind, n) in other.0 {
            *self.0.entry(kind).or_default() += n;
        }
    }
}

/// Replaces the secrets it knows by value, then credential-shaped text: `Bearer …`, `hf_…` tokens, URL
/// passwords, and the values of `NAME=…`, `NAME: …` and `--name …` whose name says it holds a secret.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    known: Vec<(String, &'static str)>,
    /// With `--redact-hosts`: host names and addresses become pseudonyms too.
    hosts: Option<HostPseudonyms>,
}

impl Redactor {
    /// A secret known by value (the API key, a URL's password); `kind` names it in the counts.
    pub fn secret(&mut self, kind: &'static str, value: &str) {
        let value = value.trim();
        if value.len() >= SHORTEST_SECRET && !self.known.iter().any(|(v, _)| v == value) {
            self.known.push((value.to_string(), kind));
            // Longest first, so a secret that contains another is replaced whole.
            self.known.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        }
    }

    /// The values of the variables whose names say they are secrets. Short ones are left: a `USE_KEY=true`
    /// replaced everywhere would break every JSON file of the bundle, and hides no credential.
    pub fn environment(&mut self, vars: impl IntoIterator<Item = (String, String)>) {
        for (name, value) in vars {
            if is_secret_name(&name) && value.trim().len() >= SHORTEST_ENVIRONMENT_SECRET {
                self.secret("environment_secret", &value);
            }
        }
    }

    /// Replaces host names and addresses too, from now on.
    pub fn hide_hosts(&mut self, hosts: HostPseudonyms) {
        self.hosts = Some(hosts);
    }

    /// The pseudonyms given so far, original first; `None` when hosts are not hidden.
    pub fn host_key(&self) -> Option<BTreeMap<String, String>> {
        self.hosts.as_ref().map(HostPseudonyms::key)
    }

    /// Only the secrets known by value (and the hosts, when hidden): for infer-doctor's own records (run.json, requests.jsonl), whose
    /// structure the credential shapes could break and which hold no credential but one echoed back.
    pub fn redact_known(&self, text: &str) -> (String, Redactions) {
        let mut counts = Redactions::default();
        let mut text = text.to_string();
        for (value, kind) in &self.known {
            let n = text.matches(value.as_str()).count();
            if n > 0 {
                text = text.replace(value.as_str(), REDACTED);
                *counts.0.entry(kind).or_default() += n as u64;
            }
        }
        if let Some(hosts) = &self.hosts {
            text = hosts.replace(&text, &mut counts);
        }
        (text, counts)
    }

    /// A JSON document read as JSON first, so secrets that words cannot find go too: an env entry's value with
    /// spaces or digits only under a secret's name (`{"name": "DB_PASSWORD", "value": "correct horse"}`), and
    /// `kubectl apply`'s last-applied-configuration annotation, the whole spec again as one escaped string. Then
    /// as text, like any other file. Text that is not JSON is only redacted as text.
    pub fn redact_json(&self, text: &str) -> (String, Redactions) {
        let Ok(mut document) = serde_json::from_str::<serde_json::Value>(text) else {
            return self.redact(text);
        };
        let mut counts = Redactions::default();
        hide_named_values(&mut document, &mut counts);
        let pretty = serde_json::to_string_pretty(&document).unwrap_or_else(|_| text.to_string());
        let (text, more) = self.redact(&pretty);
        counts.add(more);
        (text, counts)
    }

    /// The known secrets and the credential shapes: for text from elsewhere (logs, commands, the server).
    pub fn redact(&self, text: &str) -> (String, Redactions) {
        let (text, mut counts) = self.redact_known(text);
        let mut out = String::with_capacity(text.len());
        let mut previous = "";
        // Inside a JSON object whose `"name"` is a secret's (a pod spec's env entry, `{"name": "HF_TOKEN",
        // "value": "…"}`, which kubectl prints over several lines, keys sorted so `name` comes first): its
        // `"value"` is the secret.
        let mut named_secret = false;
        for piece in text.split_inclusive(char::is_whitespace) {
            let word = piece.trim_end_matches(char::is_whitespace);
            let space = &piece[word.len()..];
            let key = json_key(previous);
            let redacted = if named_secret && key == Some("value") && is_scalar_value(word) {
                replace_value(word, "secret_value", &mut counts)
            } else {
                redact_word(word, previous, &mut counts)
            };
            if key == Some("name") {
                named_secret = is_secret_identifier(word.trim_matches(is_wrapping));
            }
            if word.contains('}') {
                named_secret = false;
            }
            out.push_str(&redacted);
            out.push_str(space);
            // A secret's name and value are one line's neighbours: a name at a line's end names nothing.
            previous = if space.contains('\n') { "" } else { word };
        }
        (out, counts)
    }
}

/// In every object: the `value` beside a secret's `name`, and annotations that copy a whole object.
fn hide_named_values(value: &mut serde_json::Value, counts: &mut Redactions) {
    /// `kubectl apply` keeps the applied object, env values and all, in this annotation.
    const APPLIED_COPY: &str = "kubectl.kubernetes.io/last-applied-configuration";
    match value {
        serde_json::Value::Object(object) => {
            let secret = object
                .get("name")
                .and_then(|name| name.as_str())
                .is_some_and(is_secret_identifier);
            for (key, inner) in object.iter_mut() {
                let hide = (secret && key == "value" && !inner.is_null() && !inner.is_object())
                    || (key == APPLIED_COPY && inner.is_string());
                if hide && inner.as_str() != Some(REDACTED) {
                    *inner = serde_json::Value::String(REDACTED.to_string());
                    counts.count("secret_value");
                } else {
                    hide_named_values(inner, counts);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                hide_named_values(item, counts);
            }
        }
        _ => {}
    }
}

/// A secret's name standing alone as a variable, key or flag: not a word inside other text (a metric's
/// `time_to_first_token_seconds{engine="0"}` names no secret).
fn is_secret_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && is_secret_name(name)
}

/// The key a word such as `"name":` or `{"value":` introduces.
fn json_key(word: &str) -> Option<&str> {
    word.trim_start_matches(is_wrapping)
        .strip_suffix(':')
        .map(|key| key.trim_matches(is_wrapping))
}

/// A value that can be a credential: not another flag, not a JSON array or object, not a number or literal.
fn is_scalar_value(word: &str) -> bool {
    let bare = word.trim_matches(is_wrapping);
    !word.starts_with("--")
        // A one-item list is a value too: vLLM prints `'api_key': ['sk-…']`.
        && !word.starts_with('{')
        && bare.parse::<f64>().is_err()
        && !matches!(bare, "true" | "false" | "null")
}

/// Punctuation a value sits in (quotes, JSON, a shell line) that is kept around the replacement.
fn is_wrapping(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ',' | ';' | ')' | '(' | '}' | '{' | ']' | '[' | '`'
    )
}

/// `value` replaced, keeping its wrapping punctuation; not counted again when it was replaced already.
fn replace_value(value: &str, kind: &'static str, counts: &mut Redactions) -> String {
    if value.contains(REDACTED) {
        return value.to_string();
    }
    let start = value.len() - value.trim_start_matches(is_wrapping).len();
    let end = value.trim_end_matches(is_wrapping).len().max(start);
    let inner = &value[start..end];
    if inner.is_empty() {
        return value.to_string();
    }
    counts.count(kind);
    format!("{}{REDACTED}{}", &value[..start], &value[end..])
}

fn redact_word(word: &str, previous: &str, counts: &mut Redactions) -> String {
    let bare_previous = previous.trim_matches(is_wrapping);
    if bare_previous.eq_ignore_ascii_case("bearer") {
        return replace_value(word, "bearer_token", counts);
    }
    // `--api-key VALUE`, `"api_key": "VALUE"`, `HF_TOKEN: VALUE`.
    let named = bare_previous
        .strip_prefix("--")
        .filter(|flag| !flag.contains('='))
        .or_else(|| {
            bare_previous
                .strip_suffix(':')
                .map(|n| n.trim_matches(is_wrapping))
        })
        .or_else(|| {
            previous
                .strip_suffix(':')
                .map(|n| n.trim_matches(is_wrapping))
        });
    if named.is_some_and(is_secret_identifier) && is_scalar_value(word) {
        return replace_value(word, "secret_value", counts);
    }
    // `NAME=VALUE`, `--api-key=VALUE`, `"key=VALUE"`.
    if let Some((name, value)) = word.split_once('=') {
        let name = name.trim_start_matches(is_wrapping).trim_start_matches('-');
        if is_secret_identifier(name) && !value.is_empty() {
            return format!(
                "{}={}",
                &word[..word.len() - value.len() - 1],
                replace_value(value, "secret_value", counts)
            );
        }
    }
    let mut word = word.to_string();
    if let Some(redacted) = url_password(&word, counts) {
        word = redacted;
    }
    hf_tokens(&word, counts)
}

/// `scheme://user:password@host` with the password replaced.
fn url_password(word: &str, counts: &mut Redactions) -> Option<String> {
    let scheme_end = word.find("://")? + 3;
    let rest = &word[scheme_end..];
    // The last '@' before the path's end: a password may itself hold '/' or '@'.
    let authority_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    let colon = rest[..at].find(':')?;
    let password = &rest[colon + 1..at];
    if password.is_empty() || password == REDACTED {
        return None;
    }
    counts.count("url_password");
    Some(format!(
        "{}{}{REDACTED}{}",
        &word[..scheme_end],
        &rest[..=colon],
        &rest[at..]
    ))
}

/// Hugging Face tokens (`hf_` and 30-odd letters and digits) wherever they appear in a word.
fn hf_tokens(word: &str, counts: &mut Redactions) -> String {
    const SHORTEST_HF_TOKEN: usize = 20;
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(at) = rest.find("hf_") {
        let starts_word = !rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let body_len = rest[at + 3..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len() - at - 3);
        out.push_str(&rest[..at]);
        if starts_word && body_len >= SHORTEST_HF_TOKEN {
            counts.count("hf_token");
            out.push_str(REDACTED);
        } else {
            out.push_str(&rest[at..at + 3 + body_len]);
        }
        rest = &rest[at + 3 + body_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_under_secret_names_go_whatever_their_words() {
        let pod = r#"{"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration":
            "{\"env\":[{\"name\":\"DB_PASSWORD\",\"value\":\"hunter2\"}]}"}},
          "spec": {"containers": [{"env": [
            {"name": "DB_PASSWORD", "value": "correct horse battery"},
            {"name": "API_KEY", "value": "20240101"},
            {"name": "VLLM_PORT", "value": "8000"}]}]}}"#;
        let (text, counts) = Redactor::default().redact_json(pod);
        for secret in ["hunter2", "correct", "horse", "battery", "20240101"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("\"8000\""), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(back["spec"]["containers"][0]["env"][0]["value"], REDACTED);
        assert!(counts.0.values().sum::<u64>() >= 3, "{counts:?}");
        // Not JSON: redacted as text.
        let (text, _) = Redactor::default().redact_json("--api-key sk-abcdef123456 not json");
        assert!(!text.contains("sk-abcdef123456"), "{text}");
    }

    fn redact(text: &str) -> (String, Vec<(&'static str, u64)>) {
        let mut r = Redactor::default();
        r.secret("api_key", "sk-live-123456");
        let (out, counts) = r.redact(text);
        (out, counts.0.into_iter().collect())
    }

    #[test]
    fn names_are_judged_by_word() {
        for secret in [
            "HF_TOKEN",
            "OPENAI_API_KEY",
            "SOME_API_KEY",
            "db-password",
            "apikey",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            assert!(is_secret_name(secret), "{secret}");
        }
        for setting in [
            "max_num_batched_tokens",
            "max-tokens",
            "VLLM_USE_V1",
            "keyboard",
            "PATH",
        ] {
            assert!(!is_secret_name(setting), "{setting}");
        }
    }

    #[test]
    fn known_values_and_credential_shapes_are_replaced_and_counted() {
        let (out, counts) = redact(
            "INFO args: --api-key sk-live-123456 --max-num-batched-tokens 8192 HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz012345\n\
             curl -H \"Authorization: Bearer tok-999888777\" http://admin:hunter22@10.0.0.1:8000/v1\n\
             {\"api_key\": \"abc12345\", \"max_tokens\": 16} and a loose hf_ZYXWVUTSRQPONMLKJIHGFEDCBA in text\n\
             --hf-token=hf_qqqqqqqqqqqqqqqqqqqqqqqq\n",
        );
        for secret in [
            "sk-live", "hf_abc", "tok-999", "hunter22", "abc12345", "hf_ZYX", "hf_qqq",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("--max-num-batched-tokens 8192"), "{out}");
        assert!(out.contains("\"max_tokens\": 16"), "{out}");
        assert!(
            out.contains("http://admin:[redacted]@10.0.0.1:8000/v1"),
            "{out}"
        );
        assert!(out.contains("Bearer [redacted]\""), "{out}");
        // vLLM's arguments line prints the key as a one-item list.
        let (line, _) = Redactor::default().redact(
            "non-default args: {'model': 'm', 'api_key': ['sk-listed-987654'], 'port': 8000}",
        );
        assert!(!line.contains("sk-listed"), "{line}");
        assert!(
            line.contains("'api_key': ['[redacted]'], 'port': 8000"),
            "{line}"
        );
        assert_eq!(
            counts,
            vec![
                ("api_key", 1),
                ("bearer_token", 1),
                ("hf_token", 1),
                ("secret_value", 3),
                ("url_password", 1)
            ]
        );
    }

    /// Found by collecting from the simulator: a run record's `"events_per_token": [` and a stored scrape's
    /// `first_token_seconds_bucket{engine="0"}` lost their values, and run.json no longer parsed.
    #[test]
    fn records_and_metrics_that_merely_mention_tokens_are_kept() {
        let text = "\"events_per_token\": [\n  \"prompt_tokens\": 12,\n \"max_token\": 16,\n\
                    x\\nvllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.5\"} 3.0\n";
        let (out, counts) = redact(text);
        assert_eq!((out.as_str(), counts), (text, vec![]));
    }

    #[test]
    fn short_environment_values_are_settings_not_secrets() {
        let mut r = Redactor::default();
        r.environment([
            ("USE_KEY".to_string(), "true".to_string()),
            ("MY_TOKEN".to_string(), "tok-12345678".to_string()),
        ]);
        let (out, _) = r.redact_known("{\"stream\": true, \"t\": \"tok-12345678\"}");
        assert_eq!(out, "{\"stream\": true, \"t\": \"[redacted]\"}");
    }

    /// A pod spec's environment, as `kubectl get pod -o json` prints it: the secret's name on one line, its
    /// value on the next; other entries and values taken from a Secret are kept.
    #[test]
    fn a_pod_specs_secret_environment_value_is_replaced() {
        let spec = "\"env\": [\n  {\n    \"name\": \"VLLM_API_KEY\",\n    \"value\": \"sk-pod-5f3a9c1e7b\"\n  },\n  \
                    {\n    \"name\": \"VLLM_LOGGING_LEVEL\",\n    \"value\": \"INFO\"\n  },\n  \
                    {\"name\": \"HF_TOKEN\", \"valueFrom\": {\"secretKeyRef\": {\"key\": \"token\"}}},\n  \
                    {\"name\": \"DB_PASSWORD\", \"value\": \"hunter2hunter2\"}, {\"name\": \"PORT\", \"value\": \"8000x\"}\n]";
        let (out, counts) = redact(spec);
        assert!(!out.contains("sk-pod") && !out.contains("hunter2"), "{out}");
        assert!(out.contains("\"value\": \"[redacted]\"\n"), "{out}");
        assert!(out.contains("\"value\": \"INFO\""), "{out}");
        assert!(out.contains("\"value\": \"8000x\"}"), "{out}");
        // The secretKeyRef's `"key"` is replaced too, by the `"key": value` shape: a name, but harmless to hide.
        assert_eq!(counts, vec![("secret_value", 3)]);
        serde_json::from_str::<serde_json::Value>(&format!("{{{out}}}")).expect("still JSON");
    }

    #[test]
    fn a_name_at_the_end_of_a_line_names_nothing_on_the_next() {
        let (out, counts) = redact("the key:\nvalue stays\n");
        assert_eq!((out.as_str(), counts), ("the key:\nvalue stays\n", vec![]));
    }
}
