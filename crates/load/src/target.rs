//! Where requests go: the server's base URL with any path prefix kept, the endpoint, and the API key, which is
//! held in a type that never prints it.

use std::fmt;
use std::path::PathBuf;

use crate::LoadError;

/// Which certificates an https target may present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Trust {
    /// Mozilla's root programme, compiled in.
    #[default]
    PublicRoots,
    /// The CA certificates in a PEM file (a private or self-signed CA).
    CaFile(PathBuf),
    /// Anything (`--insecure`): traffic is encrypted but the server is not authenticated.
    AnyCertificate,
}

#[cfg(feature = "tls")]
pub(crate) type TlsConfig = std::sync::Arc<tokio_rustls::rustls::ClientConfig>;
/// Without the `tls` feature an https URL is refused when parsed, so no target holds a TLS setup.
#[cfg(not(feature = "tls"))]
pub(crate) type TlsConfig = std::convert::Infallible;

#[cfg(feature = "tls")]
fn tls_config(trust: &Trust) -> Result<TlsConfig, LoadError> {
    crate::tls::client_config(trust)
}

#[cfg(not(feature = "tls"))]
fn tls_config(_: &Trust) -> Result<TlsConfig, LoadError> {
    unreachable!("https URLs are refused without the tls feature")
}

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
    /// Set for https targets.
    pub(crate) tls: Option<TlsConfig>,
}

impl Target {
    /// Parses `http[s]://host[:port][/prefix]`; https trusts the public roots until [`Target::with_trust`].
    /// A trailing `/v1` is treated as part of the API path, not the prefix, since users paste either form.
    pub fn parse(url: &str, api_key: Option<ApiKey>) -> Result<Target, LoadError> {
        let bad = |reason: &str| LoadError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (rest, secure) = if let Some(rest) = url.strip_prefix("http://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("https://") {
            if cfg!(not(feature = "tls")) {
                return Err(bad(
                    "this build has no TLS support (built without the `tls` feature)",
                ));
            }
            (rest, true)
        } else {
            return Err(bad("must start with http:// or https://"));
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
            _ => (authority, if secure { 443 } else { 80 }),
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
            tls: if secure {
                Some(tls_config(&Trust::PublicRoots)?)
            } else {
                None
            },
        })
    }

    /// Sets which certificates an https target may present; plain-HTTP targets are unchanged.
    pub fn with_trust(mut self, trust: &Trust) -> Result<Target, LoadError> {
        if self.tls.is_some() {
            self.tls = Some(tls_config(trust)?);
        }
        Ok(self)
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
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
        format!("{}://{}{}", self.scheme(), self.authority(), self.base_path)
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
        for bad in ["ftp://x", "http://", "http://h:notaport", "http://u:p@h:1"] {
            let err = Target::parse(bad, None).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn https_defaults_to_port_443_and_keeps_its_scheme() {
        let parsed = Target::parse("https://api.example.com/v1", None);
        if cfg!(feature = "tls") {
            let t = parsed.unwrap();
            assert_eq!((t.port, t.scheme()), (443, "https"));
            assert_eq!(t.display_url(), "https://api.example.com:443");
        } else {
            let e = parsed.unwrap_err().to_string();
            assert!(e.contains("no TLS support"), "{e}");
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
