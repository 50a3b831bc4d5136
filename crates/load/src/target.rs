//! Where requests go: the server's base URL with any path prefix kept, the endpoint, and the API key, which is
//! held in a type that never prints it.

use std::borrow::Cow;
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
    /// A key to send as a bearer token; `None` for a blank one. A key that cannot travel in an HTTP header (a
    /// control character, often a pasted newline) is refused with its position, never its text.
    pub fn new(key: String) -> Result<Option<ApiKey>, LoadError> {
        let key = key.trim();
        if let Some(position) = key.chars().position(char::is_control) {
            return Err(LoadError::BadApiKey(format!(
                "it has a control character at position {} of {} (a pasted line break?); the key is not shown",
                position + 1,
                key.chars().count()
            )));
        }
        Ok((!key.is_empty()).then(|| ApiKey(key.to_string())))
    }

    pub(crate) fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// `text` with every copy of the key replaced by `[redacted]`, and a key cut off at the end of the text
    /// (messages are truncated) replaced too: a server that echoes the `Authorization` header must not put the
    /// key into a record, a file or the terminal.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let key = self.0.as_str();
        let mut scrubbed = if text.contains(key) {
            Cow::Owned(text.replace(key, REDACTED))
        } else {
            Cow::Borrowed(text)
        };
        let cut_off = (SHORTEST_CUT_KEY..key.len())
            .rev()
            .find(|&n| key.is_char_boundary(n) && scrubbed.ends_with(&key[..n]));
        if let Some(n) = cut_off {
            let mut owned = scrubbed.into_owned();
            owned.truncate(owned.len() - n);
            owned.push_str(REDACTED);
            scrubbed = Cow::Owned(owned);
        }
        scrubbed
    }
}

/// What a scrubbed key reads as.
const REDACTED: &str = "[redacted]";
/// The shortest start of the key recognised at the end of a truncated text; shorter ends are too common to mean it.
const SHORTEST_CUT_KEY: usize = 4;

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
            url: without_credentials(url),
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
        // A password may hold a '/' that ends the authority early: any '@' before the query counts.
        if before_query(rest).contains('@') {
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
        // Every request line and Host header is built from these, so what cannot be sent is refused here.
        if let Some((at, c)) = base_path
            .chars()
            .enumerate()
            .find(|(_, c)| c.is_whitespace() || c.is_control())
        {
            return Err(bad(&format!(
                "the path has {c:?} at character {} of `{base_path}`; percent-encode it (a space is %20)",
                at + 1
            )));
        }
        if !base_path.is_empty() && base_path.parse::<hyper::http::uri::PathAndQuery>().is_err() {
            return Err(bad("the path is not a valid URL path"));
        }
        let target = Target {
            host: host.to_string(),
            port,
            base_path,
            api_key,
            tls: if secure {
                Some(tls_config(&Trust::PublicRoots)?)
            } else {
                None
            },
        };
        if target.host.is_empty()
            || target
                .authority()
                .parse::<hyper::http::uri::Authority>()
                .is_err()
        {
            return Err(bad("the host is not a valid host name or address"));
        }
        Ok(target)
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

    /// `text` from the server with the API key scrubbed out (see [`ApiKey::scrub`]).
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.api_key {
            Some(key) => key.scrub(text),
            None => Cow::Borrowed(text),
        }
    }

    /// The base URL as the user would recognise it (never carries the key).
    pub fn display_url(&self) -> String {
        format!("{}://{}{}", self.scheme(), self.authority(), self.base_path)
    }
}

/// The URL with any `user:password@` replaced, for messages: a password must not reach the terminal or a log.
fn without_credentials(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // Not the first '/': a password may contain one. Hiding too much of an odd path beats showing a password.
    match before_query(rest).rfind('@') {
        Some(at) if scheme.is_empty() => format!("***@{}", &rest[at + 1..]),
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// A URL's text before its query or fragment.
fn before_query(rest: &str) -> &str {
    &rest[..rest.find(['?', '#']).unwrap_or(rest.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_password_holding_a_slash_is_never_printed() {
        for url in [
            "http://admin:s3cr/et@host:8000",
            "http://admin:s3cr/et@host:8000/v1?x=1",
            "admin:s3cr/et@host",
        ] {
            let shown = without_credentials(url);
            assert!(!shown.contains("s3cr") && !shown.contains("et@"), "{shown}");
        }
        let err = Target::parse("http://admin:s3cr/et@host:8000", None).unwrap_err();
        assert!(!err.to_string().contains("s3cr"), "{err}");
    }

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
        for bad in ["ftp://x", "http://", "http://h:notaport", "http://ho st:1"] {
            let err = Target::parse(bad, None).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn a_url_with_a_space_in_its_path_is_refused_with_the_position() {
        let err = Target::parse("http://h:1/my proxy/v1", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("' ' at character 4 of `/my proxy`") && err.contains("%20"),
            "{err}"
        );
        let err = Target::parse("http://h:1/a\tb", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'\\t'"), "{err}");
    }

    #[test]
    fn a_password_in_the_url_is_never_printed_even_when_refused() {
        for url in [
            "http://user:hunter2-pw@h:1/v1",
            "https://user:hunter2-pw@h",
            "http://user:hunter2-pw@h:notaport",
        ] {
            let err = Target::parse(url, None).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains("://***@h"), "{err}");
        }
    }

    #[test]
    fn an_api_key_with_a_control_character_is_refused_without_showing_it() {
        let err = ApiKey::new("sk-abc\ndef".into()).unwrap_err().to_string();
        assert!(err.contains("position 7 of 10"), "{err}");
        assert!(!err.contains("sk-abc") && !err.contains("def"), "{err}");
        assert!(ApiKey::new("  \n".into()).unwrap().is_none());
        assert!(ApiKey::new(" sk-ok \n".into()).unwrap().is_some());
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
    fn the_key_is_scrubbed_from_server_text_even_when_cut_off() {
        let key = ApiKey::new("sk-echo-123456".into()).unwrap().unwrap();
        assert_eq!(
            key.scrub("bad header Authorization: Bearer sk-echo-123456; again sk-echo-123456"),
            "bad header Authorization: Bearer [redacted]; again [redacted]"
        );
        assert_eq!(
            key.scrub("truncated: Bearer sk-echo-12"),
            "truncated: Bearer [redacted]"
        );
        assert_eq!(key.scrub("nothing here"), "nothing here");
        let t = Target::parse("http://h:1", None).unwrap();
        assert_eq!(
            t.scrub("sk-echo-123456"),
            "sk-echo-123456",
            "no key, nothing to hide"
        );
    }

    #[test]
    fn api_key_never_prints() {
        let key = ApiKey::new("sk-secret".into()).unwrap().unwrap();
        let t = Target::parse("http://h:1", Some(key)).unwrap();
        assert!(!format!("{t:?}").contains("sk-secret"));
        assert!(!t.display_url().contains("sk-secret"));
    }
}
