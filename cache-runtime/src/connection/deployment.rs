//! Which Redis deployment the cache talks to, and how each one is connected: one server, a Redis
//! Cluster, or a primary found through Sentinel, each optionally over TLS with ACL credentials.
//!
//! Connecting is deployment-specific and lives here; routing a cluster's commands to the primary
//! serving each key is [`super::cluster`]'s. A key and its lock share a hash tag (`{...}`), so
//! scripts touching both run on one node of a cluster.

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    ProtocolVersion, RedisError, RedisResult,
};

use super::{Endpoints, Servers, Timeouts, redact};

/// A node of the deployment, for the commands that are not about one key (`SCAN`, `INFO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// Whichever server the link talks to (the only one, or any primary of a cluster).
    Any,
    /// One node of a cluster, by the address the cluster announces.
    At { host: String, port: u16 },
}

/// What to connect to.
pub(super) enum Deployment {
    Standalone(Client),
    Cluster {
        /// One client per configured node: where the slot map is first read, and the pub/sub
        /// connection (a cluster forwards every `PUBLISH` to all its nodes, so a subscription
        /// on any node hears every lock's release). Each primary gets its own client, with
        /// these settings ([`client_at`]).
        nodes: Vec<Client>,
    },
    Sentinel {
        /// Boxed: every primary of a cluster holds a `Deployment` too.
        sentinel: Box<tokio::sync::Mutex<SentinelClient>>,
        /// The primary the sentinels named last, for pub/sub.
        primary: std::sync::Mutex<Option<Client>>,
    },
}

/// An established connection to one server; cloning it shares the socket. A cluster has one
/// per primary ([`super::cluster`]).
pub(super) type Link = MultiplexedConnection;

impl Deployment {
    /// Checks the configuration and prepares the clients; nothing connects yet.
    pub(super) fn open(endpoints: &Endpoints) -> Result<Deployment, String> {
        #[cfg(feature = "tls")]
        install_crypto_provider();
        match &endpoints.servers {
            Servers::Single(url) => Ok(Deployment::Standalone(client(url, endpoints)?)),
            Servers::Cluster(nodes) => {
                let nodes = nodes
                    .iter()
                    .map(|url| client(url, endpoints))
                    .collect::<Result<Vec<_>, _>>()?;
                if nodes.is_empty() {
                    return Err("a Redis Cluster needs at least one node".to_string());
                }
                Ok(Deployment::Cluster { nodes })
            }
            Servers::Sentinel { sentinels, master } => {
                let infos = sentinels
                    .iter()
                    .map(|url| {
                        url.as_str()
                            .into_connection_info()
                            .map_err(|err| invalid(url, &err))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let addrs = infos.iter().map(|info| info.addr().clone());
                let mut builder =
                    SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)
                        .map_err(|err| format!("invalid Sentinel configuration: {err}"))?;
                // The sentinels' own credentials come with their URLs; the primary's are the
                // cache's.
                if let Some(settings) = infos.first().map(ConnectionInfo::redis_settings) {
                    if let Some(username) = settings.username() {
                        builder = builder.set_client_to_sentinel_username(username);
                    }
                    if let Some(password) = settings.password() {
                        builder = builder.set_client_to_sentinel_password(password);
                    }
                }
                if let Some(username) = &endpoints.username {
                    builder = builder.set_client_to_redis_username(username);
                }
                if let Some(password) = &endpoints.password {
                    builder = builder.set_client_to_redis_password(password);
                }
                #[cfg(feature = "tls")]
                if infos
                    .first()
                    .is_some_and(|info| matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }))
                {
                    builder = builder
                        .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
                    if let (Some(to_redis), Some(to_sentinel)) =
                        (endpoints.tls.certificates(), endpoints.tls.certificates())
                    {
                        builder = builder
                            .set_client_to_redis_certificates(to_redis)
                            .set_client_to_sentinel_certificates(to_sentinel);
                    }
                }
                let sentinel = builder
                    .build()
                    .map_err(|err| format!("invalid Sentinel configuration: {err}"))?;
                Ok(Deployment::Sentinel {
                    sentinel: Box::new(tokio::sync::Mutex::new(sentinel)),
                    primary: std::sync::Mutex::new(None),
                })
            }
        }
    }

    /// Opens the command connection: one multiplexed connection. A cluster has none of its own:
    /// each primary has one.
    pub(super) async fn connect(&self, timeouts: &Timeouts) -> RedisResult<Link> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.command));
        match self {
            Deployment::Standalone(client) => {
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
            }
            Deployment::Cluster { .. } => Err(RedisError::from((
                redis::ErrorKind::Client,
                "a cluster connects to each primary, not to the cluster",
            ))),
            Deployment::Sentinel { sentinel, primary } => {
                // Asks the sentinels which server is the primary now: after a failover, the
                // reconnect that follows the lost connection finds the new one.
                let found = sentinel.lock().await.async_get_client().await?;
                let conn = found
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                *crate::sync::guard(primary) = Some(found);
                Ok(conn)
            }
        }
    }

    /// RESP3 clients for the local tier's invalidation channel: the server, the current primary
    /// behind Sentinel, or each of `primaries` of a cluster (by the address the cluster
    /// announces, with the configured nodes' credentials and TLS settings).
    pub(super) fn tracking_clients(&self, primaries: &[Node]) -> RedisResult<Vec<Client>> {
        let resp3 = |client: Client| {
            let info = client.get_connection_info().clone();
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            Client::open(info.set_redis_settings(settings))
        };
        match self {
            Deployment::Cluster { nodes, .. } => {
                let Some(seed) = nodes.first() else {
                    return Ok(Vec::new());
                };
                primaries
                    .iter()
                    .filter_map(|node| match node {
                        Node::At { host, port } => {
                            Some(client_at(seed, host, *port).and_then(resp3))
                        }
                        Node::Any => None,
                    })
                    .collect()
            }
            _ => self.pubsub_clients().into_iter().map(resp3).collect(),
        }
    }

    /// Clients for the pub/sub connection, to try in order.
    pub(super) fn pubsub_clients(&self) -> Vec<Client> {
        match self {
            Deployment::Standalone(client) => vec![client.clone()],
            Deployment::Cluster { nodes, .. } => nodes.clone(),
            Deployment::Sentinel { primary, .. } => {
                crate::sync::guard(primary).iter().cloned().collect()
            }
        }
    }
}

/// A client for the cluster node at `host:port` (as the cluster announces it), with the settings
/// of `seed`, a configured node: credentials, TLS and its certificates.
pub(super) fn client_at(seed: &Client, host: &str, port: u16) -> RedisResult<Client> {
    let info = seed.get_connection_info().clone();
    let addr = match info.addr().clone() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure,
            tls_params,
        },
        _ => ConnectionAddr::Tcp(host.to_string(), port),
    };
    Client::open(info.set_addr(addr))
}

/// The URL's connection settings, with the cache's username and password when it has them.
fn info(url: &str, endpoints: &Endpoints) -> Result<ConnectionInfo, String> {
    let info = url
        .into_connection_info()
        .map_err(|err| invalid(url, &err))?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &endpoints.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &endpoints.password {
        settings = settings.set_password(password);
    }
    Ok(info.set_redis_settings(settings))
}

/// A client for one server.
pub(super) fn client(url: &str, endpoints: &Endpoints) -> Result<Client, String> {
    let info = info(url, endpoints)?;
    #[cfg(feature = "tls")]
    if let Some(certs) = endpoints.tls.certificates() {
        return Client::build_with_tls(info, certs).map_err(|err| invalid(url, &err));
    }
    Client::open(info).map_err(|err| invalid(url, &err))
}

fn invalid(url: &str, err: &RedisError) -> String {
    let hint = if url.starts_with("rediss://") && cfg!(not(feature = "tls")) {
        " (rediss:// needs redis-cached's `tls` feature)"
    } else {
        ""
    };
    format!("invalid Redis URL {}: {err}{hint}", redact(url))
}

/// redis-rs leaves rustls's crypto provider to the application: unless it installed one, ring
/// (built by this crate's `tls` feature) is.
#[cfg(feature = "tls")]
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: then there is a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
