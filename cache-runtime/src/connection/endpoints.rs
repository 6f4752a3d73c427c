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

/// Hides the password of a URL, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((auth, host)) => {
            let user = auth.split(':').next().unwrap_or("");
            let hidden = if auth.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://:p@h"), "redis://:***@h");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
