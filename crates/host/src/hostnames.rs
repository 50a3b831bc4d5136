//! `collect --redact-hosts`: a bundle sent outside the company should not map its network. Host names, IP and
//! MAC addresses are replaced by stable pseudonyms (`host-1`, `ip-2`, `mac-1`), the same in every file.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use crate::redact::Redactions;

/// Names shorter than this would be replaced inside ordinary words.
const SHORTEST_HOST_NAME: usize = 4;

/// The pseudonyms handed out so far, shared by every copy: the same address reads the same in every file.
#[derive(Clone, Debug, Default)]
pub struct HostPseudonyms {
    /// Host names known by value (this machine's, the servers' in the URLs), longest first.
    names: Vec<String>,
    given: Arc<Mutex<Given>>,
}

#[derive(Debug, Default)]
struct Given {
    /// Original → pseudonym.
    by_original: BTreeMap<String, String>,
    /// Pseudonyms handed out per kind, to number the next one.
    counts: BTreeMap<&'static str, usize>,
}

/// The three kinds of name replaced, as the pseudonyms and the redaction counts call them.
#[derive(Clone, Copy)]
enum Kind {
    Host,
    Ip,
    Mac,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Host => "host",
            Kind::Ip => "ip",
            Kind::Mac => "mac",
        }
    }

    fn count_name(self) -> &'static str {
        match self {
            Kind::Host => "host_name",
            Kind::Ip => "ip_address",
            Kind::Mac => "mac_address",
        }
    }
}

impl HostPseudonyms {
    /// A host name to replace wherever it stands as a name of its own; loopback names and short ones are kept.
    pub fn name(&mut self, name: &str) {
        let name = name.trim().trim_end_matches('.');
        if name.len() < SHORTEST_HOST_NAME
            || name.eq_ignore_ascii_case("localhost")
            || name.trim_matches(['[', ']']).parse::<IpAddr>().is_ok()
            || self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
        {
            return;
        }
        self.names.push(name.to_string());
        self.names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// Every pseudonym given, original first: the key a user keeps to read the answers about their bundle.
    pub fn key(&self) -> BTreeMap<String, String> {
        self.lock().by_original.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Given> {
        // A panic elsewhere while holding the lock leaves the map whole: every insert is one step.
        self.given.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pseudonym(&self, original: &str, kind: Kind, counts: &mut Redactions) -> String {
        let mut given = self.lock();
        counts.count(kind.count_name());
        let key = original.to_ascii_lowercase();
        if let Some(p) = given.by_original.get(&key) {
            return p.clone();
        }
        let n = given.counts.entry(kind.prefix()).or_default();
        *n += 1;
        let pseudonym = format!("{}-{n}", kind.prefix());
        given.by_original.insert(key, pseudonym.clone());
        pseudonym
    }

    /// `text` with the known names and every non-loopback address replaced.
    pub fn replace(&self, text: &str, counts: &mut Redactions) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while !rest.is_empty() {
            let start = rest
                .find(|c: char| is_name_char(c) || c == ':')
                .unwrap_or(rest.len());
            out.push_str(&rest[..start]);
            rest = &rest[start..];
            let end = rest
                .find(|c: char| !(is_name_char(c) || c == ':' || c == '.'))
                .unwrap_or(rest.len());
            let token = &rest[..end];
            out.push_str(&self.replace_token(token, counts));
            rest = &rest[end..];
        }
        out
    }

    /// One run of name characters, dots and colons: an address, a name, or text holding them.
    fn replace_token(&self, token: &str, counts: &mut Redactions) -> String {
        if let Some(kind) = address_kind(token) {
            return self.pseudonym(token, kind, counts);
        }
        // `10.0.0.1:8000`, `eth0:10.0.0.1`, `gpu-host:1234`: colons join what is not one address.
        if token.contains(':') {
            return token
                .split(':')
                .map(|piece| self.replace_token(piece, counts))
                .collect::<Vec<_>>()
                .join(":");
        }
        // An address ending a sentence; `10.1.2.3.4` is no address.
        if let Some(head) = token.strip_suffix('.')
            && let Some(kind) = address_kind(head)
        {
            return format!("{}.", self.pseudonym(head, kind, counts));
        }
        self.replace_names(token, counts)
    }

    /// The known names inside a token, each standing as a name: `gpu-node-7.corp` holds `gpu-node-7`, but
    /// `gpu-node-70` does not.
    fn replace_names(&self, token: &str, counts: &mut Redactions) -> String {
        let lower = token.to_ascii_lowercase();
        for name in &self.names {
            let name_lower = name.to_ascii_lowercase();
            let mut from = 0;
            while let Some(found) = lower[from..].find(&name_lower) {
                let at = from + found;
                let end = at + name.len();
                let stands_alone =
                    !token[..at].ends_with(is_name_char) && !token[end..].starts_with(is_name_char);
                if stands_alone {
                    return format!(
                        "{}{}{}",
                        self.replace_names(&token[..at], counts),
                        self.pseudonym(&token[at..end], Kind::Host, counts),
                        self.replace_names(&token[end..], counts)
                    );
                }
                from = at + 1;
            }
        }
        token.to_string()
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Which address a whole token is, if any. Loopback and unspecified addresses say nothing about a network and
/// are kept; a MAC is six pairs of hex digits; an IPv6 address needs `::` or seven colons, so that a clock's
/// `14:28:47` stays a time.
fn address_kind(token: &str) -> Option<Kind> {
    if let Ok(v4) = token.parse::<Ipv4Addr>() {
        return (!v4.is_loopback() && !v4.is_unspecified()).then_some(Kind::Ip);
    }
    let groups: Vec<&str> = token.split(':').collect();
    if groups.len() == 6
        && groups
            .iter()
            .all(|g| g.len() == 2 && g.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Some(Kind::Mac);
    }
    if (token.contains("::") || groups.len() == 8)
        && let Ok(v6) = token.parse::<Ipv6Addr>()
    {
        return (!v6.is_loopback() && !v6.is_unspecified()).then_some(Kind::Ip);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replaced(pseudonyms: &HostPseudonyms, text: &str) -> (String, Vec<(&'static str, u64)>) {
        let mut counts = Redactions::default();
        let out = pseudonyms.replace(text, &mut counts);
        (out, counts.0.into_iter().collect())
    }

    #[test]
    fn names_and_addresses_get_the_same_pseudonym_everywhere() {
        let mut hosts = HostPseudonyms::default();
        hosts.name("gpu-node-7");
        hosts.name("vllm.internal.example.com");
        let (out, counts) = replaced(
            &hosts,
            "GET http://vllm.internal.example.com:8000/health from 10.1.2.3:51234 on gpu-node-7.corp\n\
             Dec 05 14:28:47 gpu-node-7 kernel: eth0 link 0c:42:a1:5e:00:01 fe80::1c2:3ff:fe4d:5e6f up\n\
             10.1.2.3 again, GPU-NODE-7 again; gpu-node-70 and 10.1.2.3.4 and 1.2.3 are other things.\n",
        );
        assert_eq!(
            out,
            "GET http://host-1:8000/health from ip-1:51234 on host-2.corp\n\
             Dec 05 14:28:47 host-2 kernel: eth0 link mac-1 ip-2 up\n\
             ip-1 again, host-2 again; gpu-node-70 and 10.1.2.3.4 and 1.2.3 are other things.\n"
        );
        assert_eq!(
            counts,
            vec![("host_name", 4), ("ip_address", 3), ("mac_address", 1)]
        );
        let key = hosts.key();
        assert_eq!(key["gpu-node-7"], "host-2");
        assert_eq!(key["10.1.2.3"], "ip-1");
    }

    /// Loopback says nothing about the network, and the metric and version numbers a bundle is full of are not
    /// addresses.
    #[test]
    fn loopback_times_versions_and_metrics_are_kept() {
        let mut hosts = HostPseudonyms::default();
        hosts.name("localhost");
        hosts.name("ab");
        let text = "http://127.0.0.1:8000 http://localhost:8000 [::1]:80 0.0.0.0 at 14:28:47.123 \
                    driver 590.48.01 cuda 12.8 vllm:num_requests_running{engine=\"0\"} 3.0 ab:cd\n";
        assert_eq!(replaced(&hosts, text), (text.to_string(), vec![]));
    }
}
