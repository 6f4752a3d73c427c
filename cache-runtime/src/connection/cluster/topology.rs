//! Where the slots are: the slot map is read with `CLUSTER SLOTS` before the first command (from
//! a configured node), and again in a spawned task after a command fails or finds its primary's
//! breaker open (at most once per the breakers' shortest open interval, [`super::pacer`]), from
//! a primary that answers. A failover gives the failed primary's slots to the promoted replica,
//! whose breaker starts closed; a primary that left the map is disconnected and its breaker
//! retired.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::{AsyncConnectionConfig, Client, Cmd, ConnectionAddr, RedisError, Value};

use super::slot_map::SlotRange;
use super::{Cluster, Primary};
use crate::breaker::Allow;
use crate::connection::CommandError;
use crate::connection::deployment::{Deployment, Node, client_at};
use crate::connection::refusal::Refusal;
use crate::connection::server::Server;

impl Cluster {
    /// The primaries serving slots, from a map read now.
    pub(in crate::connection) async fn primaries(
        self: &Arc<Self>,
    ) -> Result<Vec<Node>, CommandError> {
        Box::pin(self.read(true)).await?;
        Ok(self
            .map
            .serving()
            .iter()
            .map(|shard| Node::At {
                host: shard.host.clone(),
                port: shard.port,
            })
            .collect())
    }

    /// Reads the map in the call (`again`: even if one is known), through the slot map's
    /// breaker: one caller reads, the others wait for its outcome, all within the connect
    /// timeout.
    pub(super) async fn read(self: &Arc<Self>, again: bool) -> Result<(), CommandError> {
        let topology = &self.topology;
        let deadline = tokio::time::Instant::now() + self.timeouts.connect;
        let Ok(_gate) = tokio::time::timeout_at(deadline, self.reading.lock()).await else {
            return Err(CommandError::Timeout);
        };
        if !again && self.map.is_known() {
            return Ok(());
        }
        // Asked after the gate: the callers that waited for a failed read do not each repeat
        // it, the breaker (now open) sends them away.
        if topology.allow() == Allow::Skip {
            return Err(CommandError::Unavailable);
        }
        match tokio::time::timeout_at(deadline, self.read_map(true)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                if let CommandError::Redis(err) = &err {
                    // Wrong credentials or certificates: say what to fix.
                    Refusal::log_once(&self.refusals_logged, err);
                }
                topology.trip(&format_args!("no node says where the slots are: {err}"));
                Err(err)
            }
            Err(_elapsed) => {
                topology.trip(&format_args!(
                    "no slot map within {:?}",
                    self.timeouts.connect
                ));
                Err(CommandError::Timeout)
            }
        }
    }

    /// Reads `CLUSTER SLOTS` from a current primary whose breaker is closed, else (if `seeds`)
    /// from the configured nodes, all at once (the first answer wins: one node that hangs does
    /// not hold the others up), and installs it.
    pub(super) async fn read_map(&self, seeds: bool) -> Result<(), CommandError> {
        let mut last = CommandError::Unavailable;
        for shard in self.map.serving() {
            if shard.server.breaker().is_open() {
                continue;
            }
            match shard.server.run::<Value>(&slots_command()).await {
                Ok(reply) => match self.install(reply, &shard.host) {
                    Ok(()) => return Ok(()),
                    Err(err) => last = err,
                },
                Err(err) => last = err,
            }
        }
        if !seeds {
            return Err(last);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(Some(self.timeouts.command));
        let mut asking = tokio::task::JoinSet::new();
        for seed in &self.seeds {
            let (seed, config) = (seed.clone(), config.clone());
            // A connection of its own, closed when done: the primaries' are kept instead.
            asking.spawn(async move {
                let mut conn = seed
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                let reply = slots_command().query_async::<Value>(&mut conn).await?;
                Ok::<_, RedisError>((reply, host_of(&seed)))
            });
        }
        // Dropping the set (an answer, or the caller's deadline) aborts the other attempts.
        while let Some(done) = asking.join_next().await {
            match done {
                Ok(Ok((reply, host))) => match self.install(reply, &host) {
                    Ok(()) => return Ok(()),
                    Err(err) => last = err,
                },
                Ok(Err(err)) => last = CommandError::Redis(err),
                Err(_panicked_or_aborted) => {}
            }
        }
        Err(last)
    }

    /// Installs a `CLUSTER SLOTS` reply from the node at `host`. Primaries that left the map
    /// (replaced by a promoted replica) are disconnected and their breakers retired.
    pub(super) fn install(&self, reply: Value, host: &str) -> Result<(), CommandError> {
        let ranges = parse_slots(reply, host).map_err(CommandError::Redis)?;
        if ranges.is_empty() {
            return Err(CommandError::Unavailable);
        }
        let left = self
            .map
            .install(&ranges, |address| self.make_primary(address));
        // Let go of the primaries that left (a failover, a node replaced): their counts stay
        // in the totals.
        for primary in left {
            self.retire(&primary);
        }
        self.topology.success();
        Ok(())
    }

    /// Reads the map again in a spawned task, unless one runs or ran within `min_open`. The
    /// configured nodes are asked too (at most once per `max_open`) when no known primary
    /// answers: the whole cluster may have moved.
    pub(super) fn refresh_soon(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(claim) = self.refresh.claim() else {
            return;
        };
        let this = Arc::clone(self);
        runtime.spawn(async move {
            let _claim = claim;
            let budget = this.timeouts.connect + this.timeouts.command;
            let read = tokio::time::timeout(budget, this.read_map(false)).await;
            if !matches!(read, Ok(Ok(())))
                && let Some(_seeding) = this.reseed.claim()
            {
                let _ = tokio::time::timeout(budget, this.read_map(true)).await;
            }
        });
    }

    /// The primary at `address`, if the slot map lists it: a reply naming another address (a
    /// redirection) is not followed there, and no connection, with the configured credentials,
    /// is made to anything the map does not list.
    pub(super) fn primary_at(&self, address: &str) -> Option<Arc<Primary>> {
        self.map.known(address)
    }

    pub(super) fn make_primary(&self, address: &str) -> Option<Primary> {
        let (host, port) = address.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let client = client_at(self.seeds.first()?, host, port).ok()?;
        let announce = !self.announced.swap(true, Ordering::Relaxed);
        Some(Primary {
            address: address.to_string(),
            host: host.to_string(),
            port,
            server: Server::new(
                Deployment::Standalone(client),
                address.to_string(),
                self.timeouts,
                self.settings,
                &self.cache,
                announce,
            ),
        })
    }
}

fn slots_command() -> Cmd {
    redis::cmd("CLUSTER").arg("SLOTS").to_owned()
}

/// Whether a node's announced host says nothing: empty or NULL (it does not know its own
/// address: a cluster of one node, or `cluster-preferred-endpoint-type unknown-endpoint`), or a
/// wildcard. Such a node is reached at the address the reply came from.
pub(super) fn unannounced(host: &str) -> bool {
    matches!(host, "" | "0.0.0.0" | "::")
}

/// The host a client connects to.
fn host_of(client: &Client) -> String {
    match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
        _ => String::new(),
    }
}

/// `CLUSTER SLOTS` from the node at `from`: `[[first, last, [host, port, id, ...], replicas...],
/// ...]`. A range whose primary has no usable address (`?`: a hostname it does not have) is left
/// out, as redis-rs does.
fn parse_slots(reply: Value, from: &str) -> Result<Vec<SlotRange>, RedisError> {
    let Value::Array(ranges) = reply else {
        return Ok(Vec::new());
    };
    // One range per slot at most: a longer reply is not a slot map.
    if ranges.len() > usize::from(super::slot_map::SLOTS) {
        return Err(malformed("more ranges than slots"));
    }
    let mut parsed: Vec<SlotRange> = Vec::new();
    let mut primaries = std::collections::HashSet::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let (Some(first), Some(last), Some(Value::Array(primary))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let (Some(host), Some(port)) = (primary.first(), primary.get(1)) else {
            continue;
        };
        let host: String = match host {
            Value::Nil => String::new(),
            host => redis::from_redis_value_ref(host)?,
        };
        let host = match host.as_str() {
            "?" => continue,
            announced if unannounced(announced) => from.to_string(),
            _ => host,
        };
        let port: u16 = redis::from_redis_value_ref(port)?;
        let primary = format!("{host}:{port}");
        if !primaries.contains(&primary) {
            if primaries.len() == MAX_PRIMARIES {
                return Err(malformed("more primaries than a cluster has"));
            }
            primaries.insert(primary.clone());
        }
        parsed.push(SlotRange {
            first: redis::from_redis_value_ref(first)?,
            last: redis::from_redis_value_ref(last)?,
            primary,
        });
    }
    Ok(parsed)
}

/// The most primaries a slot map may name: Redis Cluster is designed for up to 1000 nodes. A
/// reply naming more is refused (the map read fails, the last good one stays), so a hostile or
/// broken node cannot make this process connect to, and keep, any number of addresses.
pub(super) const MAX_PRIMARIES: usize = 1000;

fn malformed(what: &'static str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Parse,
        "CLUSTER SLOTS reply refused",
        what.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_read_from_cluster_slots() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383), node("::1", 7001)]),
        ]);
        let ranges = parse_slots(reply, "10.0.0.9").unwrap();
        assert_eq!(
            ranges,
            [
                SlotRange {
                    first: 0,
                    last: 5460,
                    primary: "10.0.0.1:7000".into()
                },
                SlotRange {
                    first: 5461,
                    last: 16383,
                    primary: "::1:7001".into()
                }
            ]
        );
        assert!(parse_slots(Value::Nil, "10.0.0.9").unwrap().is_empty());
        // A node that does not know its address (a cluster of one, unknown-endpoint) is where
        // the reply came from; one with a hostname it does not have (`?`) is left out.
        let unknown = |host: Value, first: i64| {
            Value::Array(vec![
                Value::Int(first),
                Value::Int(first),
                Value::Array(vec![
                    host,
                    Value::Int(7000),
                    Value::BulkString(b"id".to_vec()),
                ]),
            ])
        };
        let reply = Value::Array(vec![
            unknown(Value::Nil, 0),
            unknown(Value::BulkString(Vec::new()), 1),
            unknown(Value::BulkString(b"0.0.0.0".to_vec()), 2),
            unknown(Value::BulkString(b"?".to_vec()), 3),
        ]);
        let primaries: Vec<String> = parse_slots(reply, "10.0.0.9")
            .unwrap()
            .into_iter()
            .map(|r| r.primary)
            .collect();
        assert_eq!(primaries, ["10.0.0.9:7000"; 3]);
    }

    #[test]
    fn a_map_naming_more_primaries_than_a_cluster_has_is_refused() {
        let range = |slot: usize, port: usize| {
            Value::Array(vec![
                Value::Int(slot as i64),
                Value::Int(slot as i64),
                Value::Array(vec![
                    Value::BulkString(format!("10.0.{}.{}", port / 256, port % 256).into_bytes()),
                    Value::Int(7000),
                ]),
            ])
        };
        let at_most = (0..MAX_PRIMARIES).map(|i| range(i, i)).collect();
        assert_eq!(
            parse_slots(Value::Array(at_most), "x").unwrap().len(),
            MAX_PRIMARIES
        );
        let over = (0..=MAX_PRIMARIES).map(|i| range(i, i)).collect();
        assert!(parse_slots(Value::Array(over), "x").is_err());
        // Many ranges of few primaries are a map; more ranges than slots are not.
        let shared = (0..16384).map(|i| range(i, i % 3)).collect();
        assert_eq!(parse_slots(Value::Array(shared), "x").unwrap().len(), 16384);
        let too_long = (0..16385).map(|i| range(i % 16384, 0)).collect();
        assert!(parse_slots(Value::Array(too_long), "x").is_err());
    }
}
