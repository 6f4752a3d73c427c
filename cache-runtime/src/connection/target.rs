//! Which Redis deployment the cache talks to, and how each one is connected: one server, a Redis
//! Cluster, or a primary found through Sentinel, each optionally over TLS with ACL credentials.
//!
//! Everything deployment-specific lives here. The rest of the crate sends commands through a
//! [`Link`], which routes a key's commands to the node that owns the key; a key and its lock
//! share a hash tag (`{...}`), so scripts touching both run on one node of a cluster.

use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue,
    IntoConnectionInfo, ProtocolVersion, RedisError, RedisResult,
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
pub(super) enum Target {
    Standalone(Client),
    Cluster {
        client: ClusterClient,
        /// One client per configured node, for pub/sub: a cluster forwards every `PUBLISH` to
        /// all its nodes, so a subscription on any node hears every lock's release.
        nodes: Vec<Client>,
    },
    Sentinel {
        sentinel: tokio::sync::Mutex<SentinelClient>,
        /// The primary the sentinels named last, for pub/sub.
        primary: std::sync::Mutex<Option<Client>>,
    },
}

/// An established connection; cloning it shares the underlying sockets.
#[derive(Clone)]
pub(super) enum Link {
    Single(MultiplexedConnection),
    /// redis-rs's cluster connection: one multiplexed connection per primary, following `MOVED`
    /// and `ASK` redirections and refreshing the slot map on failover by itself.
    Cluster(ClusterConnection),
}

impl Link {
    /// Sends a command about keys; a cluster routes it by its key.
    pub(super) async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T, RedisError> {
        match self {
            Link::Single(conn) => cmd.query_async(conn).await,
            Link::Cluster(conn) => cmd.query_async(conn).await,
        }
    }

    /// Sends a command to one node (on a single server, to it).
    pub(super) async fn query_node<T: FromRedisValue>(
        &mut self,
        cmd: &Cmd,
        node: &Node,
    ) -> Result<T, RedisError> {
        let Link::Cluster(conn) = self else {
            return self.query(cmd).await;
        };
        let route = match node {
            Node::Any => SingleNodeRoutingInfo::RandomPrimary,
            Node::At { host, port } => SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            },
        };
        let value = conn
            .route_command(cmd.clone(), RoutingInfo::SingleNode(route))
            .await?;
        Ok(redis::from_redis_value(value)?)
    }

    /// Whether a broken connection should be dropped and a new one opened by the next call.
    /// A cluster connection reconnects its nodes and refreshes its slot map itself.
    pub(super) fn reconnects_itself(&self) -> bool {
        matches!(self, Link::Cluster(_))
    }

    /// The primaries to scan: the single server, or each primary of the cluster's slot map.
    pub(super) async fn primaries(&mut self) -> Result<Vec<Node>, RedisError> {
        let Link::Cluster(conn) = self else {
            return Ok(vec![Node::Any]);
        };
        // `CLUSTER SLOTS`: [[start, end, [host, port, id, ...], replicas...], ...].
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
        let mut primaries = Vec::new();
        for range in slots {
            let redis::Value::Array(fields) = range else {
                continue;
            };
            let Some(redis::Value::Array(primary)) = fields.get(2) else {
                continue;
            };
            let (Some(host), Some(port)) = (primary.first(), primary.get(1)) else {
                continue;
            };
            let host: String = redis::from_redis_value_ref(host)?;
            let port: u16 = redis::from_redis_value_ref(port)?;
            let node = Node::At { host, port };
            if !primaries.contains(&node) {
                primaries.push(node);
            }
        }
        Ok(primaries)
    }
}

impl Target {
    /// Checks the configuration and prepares the clients; nothing connects yet.
    pub(super) fn open(endpoints: &Endpoints, timeouts: &Timeouts) -> Result<Target, String> {
        #[cfg(feature = "tls")]
        install_crypto_provider();
        match &endpoints.servers {
            Servers::Single(url) => Ok(Target::Standalone(client(url, endpoints)?)),
            Servers::Cluster(nodes) => {
                let infos = nodes
                    .iter()
                    .map(|url| info(url, endpoints))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut builder = ClusterClientBuilder::new(infos)
                    .connection_timeout(timeouts.connect)
                    .response_timeout(timeouts.command);
                if let Some(username) = &endpoints.username {
                    builder = builder.username(username);
                }
                if let Some(password) = &endpoints.password {
                    builder = builder.password(password);
                }
                #[cfg(feature = "tls")]
                if let Some(certs) = endpoints.tls.certificates() {
                    builder = builder.certs(certs);
                }
                let cluster = builder
                    .build()
                    .map_err(|err| format!("invalid Redis Cluster configuration: {err}"))?;
                let nodes = nodes
                    .iter()
                    .map(|url| client(url, endpoints))
                    .collect::<Result<_, _>>()?;
                Ok(Target::Cluster {
                    client: cluster,
                    nodes,
                })
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
                Ok(Target::Sentinel {
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    primary: std::sync::Mutex::new(None),
                })
            }
        }
    }

    /// Opens the command connection: one multiplexed connection (a cluster: one per primary).
    pub(super) async fn connect(&self, timeouts: &Timeouts) -> RedisResult<Link> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.command));
        match self {
            Target::Standalone(client) => client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map(Link::Single),
            Target::Cluster { client, .. } => {
                client.get_async_connection().await.map(Link::Cluster)
            }
            Target::Sentinel { sentinel, primary } => {
                // Asks the sentinels which server is the primary now: after a failover, the
                // reconnect that follows the lost connection finds the new one.
                let found = sentinel.lock().await.async_get_client().await?;
                let conn = found
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                *crate::sync::guard(primary) = Some(found);
                Ok(Link::Single(conn))
            }
        }
    }

    /// RESP3 clients for the local tier's invalidation channel: the server, the current primary
    /// behind Sentinel, or each of `primaries` of a cluster (by the address the cluster
    /// announces, with the configured nodes' credentials and TLS settings).
    pub(super) fn tracking_clients(&self, primaries: &[Node]) -> RedisResult<Vec<Client>> {
        let resp3 = |client: &Client, at: Option<(&str, u16)>| {
            let info = client.get_connection_info().clone();
            let info = match (at, info.addr().clone()) {
                (Some((host, port)), ConnectionAddr::Tcp(..)) => {
                    info.set_addr(ConnectionAddr::Tcp(host.to_string(), port))
                }
                (
                    Some((host, port)),
                    ConnectionAddr::TcpTls {
                        insecure,
                        tls_params,
                        ..
                    },
                ) => info.set_addr(ConnectionAddr::TcpTls {
                    host: host.to_string(),
                    port,
                    insecure,
                    tls_params,
                }),
                _ => info,
            };
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            Client::open(info.set_redis_settings(settings))
        };
        match self {
            Target::Cluster { nodes, .. } => {
                let Some(seed) = nodes.first() else {
                    return Ok(Vec::new());
                };
                primaries
                    .iter()
                    .filter_map(|node| match node {
                        Node::At { host, port } => Some(resp3(seed, Some((host, *port)))),
                        Node::Any => None,
                    })
                    .collect()
            }
            _ => self
                .pubsub_clients()
                .iter()
                .map(|client| resp3(client, None))
                .collect(),
        }
    }

    /// Clients for the pub/sub connection, to try in order.
    pub(super) fn pubsub_clients(&self) -> Vec<Client> {
        match self {
            Target::Standalone(client) => vec![client.clone()],
            Target::Cluster { nodes, .. } => nodes.clone(),
            Target::Sentinel { primary, .. } => {
                crate::sync::guard(primary).iter().cloned().collect()
            }
        }
    }
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
        " (rediss:// needs cache-runtime's `tls` feature)"
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
