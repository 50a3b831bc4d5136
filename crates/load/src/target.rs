//! Where requests go: the server's base URL with any path prefix kept, the endpoint, and the API key, which is
//! held in a type that never prints it.

use std::fmt;

use crate::LoadError;

/// An API key. `Debug` and `Display` print `***`, so it cannot leak through logs or error messages.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> Option<ApiKey> {
        (!key.trim().is_empty()).then(|| ApiKey(key.trim().to_string()))
    }

    pub(crate) fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which OpenAI API the load uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Completions,
    Chat,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::Chat => "/v1/chat/completions",
        }
    }
}

/// The server's base URL, split into what a connection and a request line need.
#[derive(Clone, Debug)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// Path prefix before `/v1/...`, without a trailing slash (e.g. `/proxy/llm`), often empty.
    pub base_path: String,
    pub api_key: Option<ApiKey>,
}

impl Target {
    /// Parses `http://host[:port][/prefix]`. A trailing `/v1` is treated as part of the API path, not the
    /// prefix, since users paste either form.
    pub fn parse(url: &str, api_key: Option<ApiKey>) -> Result<Target, LoadError> {
        let bad = |reason: &str| LoadError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(bad(
                "https is not supported by this build yet; put a plain-HTTP port or a local proxy in front",
            ));
        } else {
            return Err(bad("must start with http://"));
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not supported; use --api-key or OPENAI_API_KEY",
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>().map_err(|_| bad("bad port"))?,
            ),
            _ => (authority, 80),
        };
        let mut base_path = path
            .split(['?', '#'])
            .next()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string();
        if base_path.ends_with("/v1") {
            base_path.truncate(base_path.len() - 3);
        }
        Ok(Target {
            host: host.to_string(),
            port,
            base_path,
            api_key,
        })
    }

    /// `host:port` for the Host header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The request path for an API path such as `/v1/models`.
    pub fn path(&self, api_path: &str) -> String {
        format!("{}{}", self.base_path, api_path)
    }

    /// The base URL as the user would recognise it (never carries the key).
    pub fn display_url(&self) -> String {
        format!("http://{}{}", self.authority(), self.base_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_path_prefix_and_drops_a_trailing_v1() {
        let t = Target::parse("http://127.0.0.1:8000/proxy/llm/v1/", None).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8000));
        assert_eq!(t.path("/v1/completions"), "/proxy/llm/v1/completions");
        let t = Target::parse("http://localhost", None).unwrap();
        assert_eq!((t.port, t.path("/v1/models").as_str()), (80, "/v1/models"));
        let t = Target::parse("http://[::1]:9000/x", None).unwrap();
        assert_eq!(
            (t.host.as_str(), t.authority().as_str()),
            ("::1", "[::1]:9000")
        );
    }

    #[test]
    fn rejects_what_it_cannot_use_with_the_url_named() {
        for bad in [
            "ftp://x",
            "https://x",
            "http://",
            "http://h:notaport",
            "http://u:p@h:1",
        ] {
            let err = Target::parse(bad, None).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn api_key_never_prints() {
        let key = ApiKey::new("sk-secret".into()).unwrap();
        let t = Target::parse("http://h:1", Some(key)).unwrap();
        assert!(!format!("{t:?}").contains("sk-secret"));
        assert!(!t.display_url().contains("sk-secret"));
    }
}
