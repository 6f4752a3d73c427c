//! Reading the configuration from the environment: the `ENV_*` variable names and
//! [`CacheBuilder::from_env`].

use std::time::Duration;

use super::{CacheBuilder, ConfigError};

/// Environment variable holding the Redis URL (`redis://`, `rediss://` for TLS, credentials in
/// the URL).
pub const ENV_URL: &str = "REDIS_URL";
/// Environment variable listing the nodes of a Redis Cluster, `host:port,host:port,...` (or
/// URLs, `rediss://` for TLS); a few are enough, the rest are discovered. Selects cluster mode.
pub const ENV_CLUSTER_URLS: &str = "REDIS_CLUSTER_URLS";
/// Environment variable listing Sentinel addresses, `host:port,...` (or URLs, with the
/// sentinels' own credentials). Selects Sentinel mode, with [`ENV_SENTINEL_MASTER`].
pub const ENV_SENTINEL_URLS: &str = "REDIS_SENTINEL_URLS";
/// Environment variable naming the primary the sentinels monitor (`sentinel monitor <name>`).
pub const ENV_SENTINEL_MASTER: &str = "REDIS_SENTINEL_MASTER";
/// Environment variable holding the URL of a read-only replica endpoint: lookups go there,
/// everything else to the primary.
pub const ENV_READER_URL: &str = "REDIS_READER_URL";
/// Environment variable holding the ACL username for the Redis servers (overrides the URLs').
pub const ENV_USERNAME: &str = "REDIS_USERNAME";
/// Environment variable holding the password for the Redis servers (overrides the URLs').
pub const ENV_PASSWORD: &str = "REDIS_PASSWORD";
/// Environment variable naming a PEM file of CA certificates to trust for TLS, instead of the
/// system's and the web's roots (`tls` feature).
pub const ENV_TLS_CA_FILE: &str = "REDIS_TLS_CA_FILE";
/// Environment variable naming the PEM client certificate for mutual TLS (`tls` feature), with
/// [`ENV_TLS_KEY_FILE`].
pub const ENV_TLS_CERT_FILE: &str = "REDIS_TLS_CERT_FILE";
/// Environment variable naming the PEM private key of the client certificate (`tls` feature).
pub const ENV_TLS_KEY_FILE: &str = "REDIS_TLS_KEY_FILE";
/// Environment variable holding the connect timeout in milliseconds.
pub const ENV_CONNECT_TIMEOUT_MS: &str = "REDIS_CONNECT_TIMEOUT_MS";
/// Environment variable holding the command timeout in milliseconds.
pub const ENV_COMMAND_TIMEOUT_MS: &str = "REDIS_COMMAND_TIMEOUT_MS";
/// Environment variable holding the key prefix.
pub const ENV_PREFIX: &str = "REDIS_CACHE_PREFIX";
/// Set to anything, silences the lines the cache prints on stderr when no `tracing` subscriber
/// is installed (Redis unreachable, caching off or bypassed).
pub use crate::notice::ENV_QUIET;

impl CacheBuilder {
    /// The defaults, overridden by the environment:
    ///
    /// - where Redis is: one of [`ENV_URL`] (`REDIS_URL`), [`ENV_CLUSTER_URLS`]
    ///   (`REDIS_CLUSTER_URLS`), or [`ENV_SENTINEL_URLS`] with [`ENV_SENTINEL_MASTER`]; setting
    ///   two of them is an error;
    /// - [`ENV_READER_URL`], [`ENV_USERNAME`], [`ENV_PASSWORD`];
    /// - [`ENV_TLS_CA_FILE`], [`ENV_TLS_CERT_FILE`], [`ENV_TLS_KEY_FILE`] (read now; `tls`
    ///   feature);
    /// - `REDIS_CONNECT_TIMEOUT_MS`, `REDIS_COMMAND_TIMEOUT_MS` and `REDIS_CACHE_PREFIX`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut builder = CacheBuilder::default();
        let get = |var: &str| get(var).filter(|value| !value.trim().is_empty());
        let url = get(ENV_URL);
        let cluster = get(ENV_CLUSTER_URLS);
        let sentinels = get(ENV_SENTINEL_URLS);
        let chosen = [
            (ENV_URL, &url),
            (ENV_CLUSTER_URLS, &cluster),
            (ENV_SENTINEL_URLS, &sentinels),
        ];
        let set: Vec<&str> = chosen
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
        if set.len() > 1 {
            return Err(ConfigError::new(format!(
                "{} are all set: set only one of {ENV_URL}, {ENV_CLUSTER_URLS} and {ENV_SENTINEL_URLS}",
                set.join(" and ")
            )));
        }
        if let Some(url) = url {
            builder = builder.url(url);
        }
        if let Some(nodes) = cluster {
            builder = builder.cluster(split_list(&nodes));
        }
        if let Some(list) = sentinels {
            let master = get(ENV_SENTINEL_MASTER).ok_or_else(|| {
                ConfigError::new(format!(
                    "{ENV_SENTINEL_URLS} is set but {ENV_SENTINEL_MASTER} is not: name the primary the sentinels monitor"
                ))
            })?;
            builder = builder.sentinel(split_list(&list), master);
        }
        builder.endpoints.reader = get(ENV_READER_URL);
        builder.endpoints.username = get(ENV_USERNAME);
        builder.endpoints.password = get(ENV_PASSWORD);
        let files = [ENV_TLS_CA_FILE, ENV_TLS_CERT_FILE, ENV_TLS_KEY_FILE]
            .map(|var| get(var).map(|path| (var, path)));
        #[cfg(not(feature = "tls"))]
        if let Some((var, _)) = files.iter().flatten().next() {
            return Err(ConfigError::new(format!(
                "{var} is set, but TLS certificates need redis-cached's `tls` feature"
            )));
        }
        #[cfg(feature = "tls")]
        {
            let read = |file: &Option<(&str, String)>| -> Result<Option<Vec<u8>>, ConfigError> {
                file.as_ref()
                    .map(|(var, path)| {
                        std::fs::read(path).map_err(|err| {
                            ConfigError::new(format!("{var}={path:?} cannot be read: {err}"))
                        })
                    })
                    .transpose()
            };
            let [ca, cert, key] = &files;
            builder.endpoints.tls.ca = read(ca)?;
            builder.endpoints.tls.client = match (read(cert)?, read(key)?) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => {
                    return Err(ConfigError::new(format!(
                        "set both {ENV_TLS_CERT_FILE} and {ENV_TLS_KEY_FILE}, or neither"
                    )));
                }
            };
        }
        if let Some(prefix) = get(ENV_PREFIX) {
            builder.prefix = prefix;
        }
        let millis = |var: &'static str| -> Result<Option<Duration>, ConfigError> {
            get(var)
                .map(|value| match value.trim().parse::<u64>() {
                    Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                    _ => Err(ConfigError::new(format!(
                        "{var}={value:?} is not a positive number of milliseconds"
                    ))),
                })
                .transpose()
        };
        if let Some(d) = millis(ENV_CONNECT_TIMEOUT_MS)? {
            builder.timeouts.connect = d;
        }
        if let Some(d) = millis(ENV_COMMAND_TIMEOUT_MS)? {
            builder.timeouts.command = d;
        }
        Ok(builder)
    }
}

/// A comma-separated list, without empty entries.
fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The first time any cache of this process finds Redis unreachable.
pub(crate) fn say_unreachable(address: &str, why: &dyn std::fmt::Display) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    crate::notice::once_on_stderr(&SAID, || {
        format!(
            "cannot reach Redis at {address} ({why}); cached functions run uncached until it \
             answers. Set {ENV_URL} to your Redis, install a `tracing` subscriber for details, \
             or set {ENV_QUIET}=1 to silence this line."
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_COMMAND_TIMEOUT;
    use crate::connection::Servers;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |var| {
            pairs
                .iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn environment_overrides_defaults() {
        let b = CacheBuilder::from_lookup(env(&[
            (ENV_URL, "redis://10.0.0.1:7000/2"),
            (ENV_PREFIX, "svc"),
            (ENV_CONNECT_TIMEOUT_MS, "40"),
        ]))
        .unwrap();
        assert!(b.endpoints.servers == Servers::Single("redis://10.0.0.1:7000/2".into()));
        assert_eq!(b.prefix, "svc");
        assert_eq!(b.timeouts.connect, Duration::from_millis(40));
        assert_eq!(b.timeouts.command, DEFAULT_COMMAND_TIMEOUT);
    }

    #[test]
    fn bad_numbers_prefixes_and_urls_are_errors() {
        assert!(CacheBuilder::from_lookup(env(&[(ENV_COMMAND_TIMEOUT_MS, "soon")])).is_err());
        assert!(CacheBuilder::from_lookup(env(&[(ENV_COMMAND_TIMEOUT_MS, "0")])).is_err());
        assert!(CacheBuilder::default().prefix("a*b").build().is_err());
        assert!(CacheBuilder::default().prefix("").build().is_err());
        let err = CacheBuilder::default()
            .url("http://user:hunter2@host")
            .build()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn the_environment_selects_cluster_or_sentinel_and_rejects_two_at_once() {
        let b = CacheBuilder::from_lookup(env(&[(
            ENV_CLUSTER_URLS,
            "10.0.0.1:7000, rediss://10.0.0.2:7001,",
        )]))
        .unwrap();
        let nodes = vec![
            "redis://10.0.0.1:7000".into(),
            "rediss://10.0.0.2:7001".into(),
        ];
        assert!(b.endpoints.servers == Servers::Cluster(nodes));

        let b = CacheBuilder::from_lookup(env(&[
            (ENV_SENTINEL_URLS, "s1:26379,s2:26379"),
            (ENV_SENTINEL_MASTER, "cache"),
            (ENV_READER_URL, "redis://replica:6379"),
            (ENV_USERNAME, "app"),
            (ENV_PASSWORD, "hunter2"),
        ]))
        .unwrap();
        assert!(
            matches!(&b.endpoints.servers, Servers::Sentinel { sentinels, master }
            if sentinels.len() == 2 && master == "cache")
        );
        assert_eq!(b.endpoints.reader.as_deref(), Some("redis://replica:6379"));
        assert!(!format!("{b:?}").contains("hunter2"));

        let two =
            CacheBuilder::from_lookup(env(&[(ENV_URL, "redis://a"), (ENV_CLUSTER_URLS, "b:1")]));
        assert!(two.unwrap_err().to_string().contains("set only one"));
        let no_master = CacheBuilder::from_lookup(env(&[(ENV_SENTINEL_URLS, "s1:26379")]));
        assert!(
            no_master
                .unwrap_err()
                .to_string()
                .contains(ENV_SENTINEL_MASTER)
        );
        assert!(
            CacheBuilder::default()
                .cluster(Vec::<String>::new())
                .build()
                .is_err()
        );
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn certificate_files_without_the_tls_feature_are_an_error() {
        let err = CacheBuilder::from_lookup(env(&[(ENV_TLS_CA_FILE, "/ca.pem")])).unwrap_err();
        assert!(err.to_string().contains("`tls` feature"), "{err}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn an_unreadable_certificate_file_is_an_error_naming_it() {
        let err = CacheBuilder::from_lookup(env(&[(ENV_TLS_CA_FILE, "/nonexistent/ca.pem")]))
            .unwrap_err();
        assert!(err.to_string().contains(ENV_TLS_CA_FILE), "{err}");
    }
}
