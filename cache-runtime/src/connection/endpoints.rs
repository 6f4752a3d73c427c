//! Where the servers are and how to log in: one server, a cluster or Sentinel, a reader
//! endpoint, credentials and TLS certificates. `Debug` and [`redact`] keep secrets out of logs.

use std::fmt;

/// The servers of one deployment.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Servers {
    Single(String),
    Cluster(Vec<String>),
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

/// Where the cache's Redis is and how to log in. `Debug` shows no password, key or certificate.
#[derive(Clone)]
pub(crate) struct Endpoints {
    pub servers: Servers,
    /// A replica endpoint for lookups.
    pub reader: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    #[cfg(feature = "tls")]
    pub tls: TlsFiles,
}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls = |urls: &[String]| urls.iter().map(|u| redact(u)).collect::<Vec<_>>();
        let mut out = f.debug_struct("Endpoints");
        match &self.servers {
            Servers::Single(url) => out.field("url", &redact(url)),
            Servers::Cluster(nodes) => out.field("cluster", &urls(nodes)),
            Servers::Sentinel { sentinels, master } => out
                .field("sentinels", &urls(sentinels))
                .field("master", master),
        };
        out.field("reader", &self.reader.as_deref().map(redact))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"));
        #[cfg(feature = "tls")]
        out.field("tls", &self.tls);
        out.finish()
    }
}

impl Endpoints {
    /// Where the servers are, for messages: the URLs without passwords.
    pub(crate) fn describe(&self) -> String {
        let urls = |urls: &[String]| {
            urls.iter()
                .map(|u| redact(u))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.servers {
            Servers::Single(url) => redact(url),
            Servers::Cluster(nodes) => format!("the cluster of {}", urls(nodes)),
            Servers::Sentinel { sentinels, master } => {
                format!(
                    "the primary {master:?} of the sentinels {}",
                    urls(sentinels)
                )
            }
        }
    }
}

/// Certificates for TLS, as PEM bytes.
#[cfg(feature = "tls")]
#[derive(Clone, Default)]
pub(crate) struct TlsFiles {
    pub ca: Option<Vec<u8>>,
    /// Certificate and private key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

#[cfg(feature = "tls")]
impl TlsFiles {
    /// redis-rs's form, when anything is set (otherwise the default roots apply).
    pub(crate) fn certificates(&self) -> Option<redis::TlsCertificates> {
        if self.ca.is_none() && self.client.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.ca.clone(),
        })
    }
}

#[cfg(feature = "tls")]
impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("custom_ca", &self.ca.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// `host:port` as a URL; URLs unchanged.
pub(crate) fn with_scheme(node: String) -> String {
    let node = node.trim();
    if node.contains("://") {
        node.to_string()
    } else {
        format!("redis://{node}")
    }
}

/// A URL for messages (logs, errors, `Debug`, metrics labels): the password hidden, as the URL
/// parser redis-rs connects with sees it (the password ends at the *last* `@` of the authority,
/// and a `redis+unix://` URL carries it in its `pass` query parameter). A URL that does not parse
/// is shown up to its scheme only, with every character after the last `@` it may hold.
pub(crate) fn redact(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return match (url.split_once("://"), url.rfind('@')) {
            (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
            (None, Some(at)) => format!("***{}", &url[at..]),
            _ if url.contains("pass") => "(a URL that does not parse, not shown)".to_string(),
            _ => url.to_string(),
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let secret = |name: &str| matches!(name, "pass" | "password");
    if parsed.query_pairs().any(|(name, _)| secret(&name)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if secret(&name) {
                    "***".into()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string().replace("%2A%2A%2A", "***")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://:p@h"), "redis://:***@h");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert_eq!(redact("rediss://u:p@h:1"), "rediss://u:***@h:1");
    }

    #[test]
    fn redact_sees_the_password_the_parser_sees() {
        // The password ends at the last `@`: `s3cr@tpart`, not `s3cr`.
        let shown = redact("redis://app:s3cr@tpart@127.0.0.1:6390");
        assert!(
            !shown.contains("tpart") && !shown.contains("s3cr"),
            "{shown}"
        );
        assert!(shown.ends_with("@127.0.0.1:6390"), "{shown}");
        for password in ["p@ss", "p:ss", "p%2Fss", "p%40ss", "a@b:c%2Fd"] {
            let shown = redact(&format!("redis://user:{password}@h:1/0"));
            assert_eq!(shown, "redis://user:***@h:1/0", "{password}");
        }
        // A `/` in a password must be percent-encoded: raw, the URL does not parse (redis-rs
        // refuses it too), and nothing before the last `@` is shown.
        assert_eq!(redact("redis://user:p/ss@h:1/0"), "redis://***@h:1/0");
        let unix = redact("redis+unix:///tmp/r.sock?db=2&pass=secret&user=me");
        assert!(
            !unix.contains("secret") && unix.contains("user=me"),
            "{unix}"
        );
        assert!(!redact("unix:///tmp/r.sock?password=secret").contains("secret"));
        // Not a URL: nothing after the scheme up to the last `@` is shown.
        let broken = redact("redis//app:pw@d@host:1");
        assert!(
            !broken.contains("pw") && broken.ends_with("@host:1"),
            "{broken}"
        );
        assert_eq!(redact("redis//127.0.0.1:6390"), "redis//127.0.0.1:6390");
    }
}
