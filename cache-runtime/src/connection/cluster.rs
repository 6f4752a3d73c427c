//! A Redis Cluster, routed by the cache: each key's commands go to the primary serving its slot,
//! over that primary's own connection, through that primary's own circuit breaker.
//!
//! So a failing primary costs only its own keys: while it fails over, calls for the other
//! primaries' keys keep hitting, and calls for its keys run the function at once (once its
//! breaker is open) instead of waiting on it. A connection shared by the whole cluster (redis-rs's
//! cluster client) holds every command while it refreshes its slot map, and there one dead
//! node's timeout stalled all shards for the length of the command timeout
//! (`a_failing_primary_sends_only_its_own_keys_to_the_function` in `tests/tests/cluster.rs`).
//!
//! - The slot map ([`SlotMap`]) is read with `CLUSTER SLOTS` before the first command (from a
//!   configured node), and again in a spawned task after a command fails or finds its primary's
//!   breaker open (at most once per the breakers' shortest open interval), from a primary that
//!   answers. A failover gives the failed primary's slots to the promoted replica, whose breaker
//!   starts closed.
//! - `MOVED` (a slot moved: resharding, failover): the command is sent once more, to the named
//!   node, which the map records at once. `ASK` (a slot being migrated, the key moved already):
//!   sent once more to the named node, after `ASKING`. A second redirection fails the command
//!   (the call falls back to the function).
//! - A multi-key `UNLINK` is split by slot (the cluster refuses keys of several slots in one
//!   command), one pipeline per primary.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, FromRedisValue, RedisError, RedisResult,
    Value,
};

use super::server::Server;
use super::shards::{Primary, SlotMap, SlotRange, slot_of};
use super::target::{Node, Target, client_at};
use super::{CommandError, Refusal, Timeouts};
use crate::breaker::{Allow, Breaker, BreakerSettings, BreakerStats};

/// The cache's view of one Redis Cluster.
pub(super) struct Cluster {
    /// The configured nodes, for the pub/sub and tracking clients.
    target: Target,
    /// Their clients: where the slot map is read when no known primary answers.
    seeds: Vec<Client>,
    /// The breaker of reading the slot map from the configured nodes (named after them).
    topology: Breaker,
    map: SlotMap<Shard>,
    timeouts: Timeouts,
    settings: BreakerSettings,
    /// The cache's key prefix, naming it in logs and metrics.
    cache: String,
    /// One read of an unknown map at a time: the callers that need it wait for it.
    reading: tokio::sync::Mutex<()>,
    /// Background reads of the map: one at a time, at most once per `min_open`.
    refresh: Pacer,
    /// Reads from the configured nodes in the background: at most once per `max_open`.
    reseed: Pacer,
    /// The first primary made logs the server's health.
    announced: AtomicBool,
    /// Refusals of the slot map's reads already logged (bits of [`Refusal`]).
    refusals_logged: AtomicU8,
}

/// One primary: its address as the cluster announces it, and its connection and breaker.
pub(super) struct Shard {
    address: String,
    host: String,
    port: u16,
    server: Server,
}

impl Primary for Shard {
    fn address(&self) -> &str {
        &self.address
    }
}

impl Cluster {
    /// The cluster of `target`'s configured nodes, which `address` describes.
    pub(super) fn new(
        target: Target,
        address: String,
        timeouts: Timeouts,
        settings: BreakerSettings,
        cache: &str,
    ) -> Self {
        let seeds = match &target {
            Target::Cluster { nodes } => nodes.clone(),
            _ => Vec::new(),
        };
        Cluster {
            target,
            seeds,
            topology: Breaker::new(settings, cache.to_string(), address),
            map: SlotMap::new(),
            timeouts,
            settings,
            cache: cache.to_string(),
            reading: tokio::sync::Mutex::new(()),
            refresh: Pacer::new(settings.min_open, timeouts),
            reseed: Pacer::new(settings.max_open, timeouts),
            announced: AtomicBool::new(false),
            refusals_logged: AtomicU8::new(0),
        }
    }

    pub(super) fn target(&self) -> &Target {
        &self.target
    }

    /// Runs a command about `key` on the primary serving its slot, following one redirection.
    pub(super) async fn run<T: FromRedisValue>(
        self: &Arc<Self>,
        key: &[u8],
        cmd: &Cmd,
    ) -> Result<T, CommandError> {
        let shard = self.shard_for(key).await?;
        match shard.server.run(cmd).await {
            Ok(value) => Ok(value),
            // Boxed: rare, and every command's future would carry it.
            Err(err) => Box::pin(self.after_failure(&shard, err, cmd)).await,
        }
    }

    /// A command failed: follows a redirection, or reads the map again if the failure says the
    /// topology may have changed.
    async fn after_failure<T: FromRedisValue>(
        self: &Arc<Self>,
        from: &Shard,
        err: CommandError,
        cmd: &Cmd,
    ) -> Result<T, CommandError> {
        if let CommandError::Redis(redis) = &err
            && let Some((address, slot)) = redis.redirect_node()
        {
            let ask = redis.code() == Some("ASK");
            // A node that does not know its own address names it `:port`: the same host.
            let address = match address.rsplit_once(':') {
                Some((host, port)) if unannounced(host) => format!("{}:{port}", from.host),
                _ => address.to_string(),
            };
            let Some(target) = self.shard(&address) else {
                return Err(err);
            };
            if ask {
                return target.server.run_asking(cmd).await;
            }
            self.map.moved(slot, &target);
            self.refresh_soon();
            return target.server.run(cmd).await;
        }
        if suggests_new_topology(&err) {
            self.refresh_soon();
        }
        Err(err)
    }

    /// [`Cluster::run`] for a command that is not about a key, on one primary (any: the first
    /// whose breaker is closed).
    pub(super) async fn run_on<T: FromRedisValue>(
        self: &Arc<Self>,
        cmd: &Cmd,
        node: &Node,
    ) -> Result<T, CommandError> {
        let shard = match node {
            Node::At { host, port } => self.shard(&format!("{host}:{port}")),
            Node::Any => {
                if !self.map.is_known() {
                    Box::pin(self.read(false)).await?;
                }
                let serving = self.map.serving();
                let open = |shard: &&Arc<Shard>| shard.server.breaker().is_open();
                serving
                    .iter()
                    .find(|shard| !open(shard))
                    .or(serving.first())
                    .cloned()
            }
        };
        let shard = shard.ok_or(CommandError::Unavailable)?;
        let reply = shard.server.run(cmd).await;
        if let Err(err) = &reply
            && suggests_new_topology(err)
        {
            self.refresh_soon();
        }
        reply
    }

    /// The primaries serving slots, from a map read now.
    pub(super) async fn primaries(self: &Arc<Self>) -> Result<Vec<Node>, CommandError> {
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

    /// `UNLINK` of keys of any slots: one command per slot, sent as one pipeline per primary;
    /// how many existed. A command that meets a redirection (its slot on the move) is sent
    /// again on its own, following it.
    pub(super) async fn unlink(self: &Arc<Self>, keys: &[String]) -> Result<u64, CommandError> {
        let mut by_slot: BTreeMap<u16, Vec<&String>> = BTreeMap::new();
        for key in keys {
            by_slot
                .entry(slot_of(key.as_bytes()))
                .or_default()
                .push(key);
        }
        let mut by_shard: Vec<(Arc<Shard>, Vec<Vec<&String>>)> = Vec::new();
        for keys in by_slot.into_values() {
            let shard = self.shard_for(keys[0].as_bytes()).await?;
            match by_shard.iter_mut().find(|(s, _)| Arc::ptr_eq(s, &shard)) {
                Some((_, groups)) => groups.push(keys),
                None => by_shard.push((shard, vec![keys])),
            }
        }
        let mut removed = 0;
        for (shard, groups) in by_shard {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for keys in &groups {
                pipe.cmd("UNLINK").arg(keys);
            }
            let replies = match shard
                .server
                .run_pipeline::<Vec<RedisResult<u64>>>(&pipe)
                .await
            {
                Ok(replies) => replies,
                Err(err) => {
                    if suggests_new_topology(&err) {
                        self.refresh_soon();
                    }
                    return Err(err);
                }
            };
            for (keys, reply) in groups.iter().zip(replies) {
                match reply {
                    Ok(count) => removed += count,
                    // The slot is on the move: this group again, following the redirection.
                    Err(err) if err.redirect_node().is_some() => {
                        let cmd = redis::cmd("UNLINK").arg(keys).to_owned();
                        removed += self.run::<u64>(keys[0].as_bytes(), &cmd).await?;
                    }
                    Err(err) => return Err(CommandError::Redis(err)),
                }
            }
        }
        Ok(removed)
    }

    /// The breakers summed up: open while the slot map's or a current primary's is, with the
    /// openings and closings of every primary this cache has known.
    pub(super) fn breaker_totals(&self) -> BreakerStats {
        let current = std::iter::once(self.topology.stats())
            .chain(
                self.map
                    .serving()
                    .iter()
                    .map(|s| s.server.breaker().stats()),
            )
            .collect::<Vec<_>>();
        let all = self.all_breakers();
        BreakerStats {
            state: BreakerStats::sum(&current).state,
            ..BreakerStats::sum(&all)
        }
    }

    /// The slot map's breaker, then each current primary's, by address.
    pub(super) fn breakers(&self) -> Vec<(String, BreakerStats)> {
        let topology = (self.topology.address().to_string(), self.topology.stats());
        let shards = self.map.serving().into_iter().map(|shard| {
            let breaker = shard.server.breaker();
            (breaker.address().to_string(), breaker.stats())
        });
        std::iter::once(topology).chain(shards).collect()
    }

    /// The slot map's breaker and those of every primary this cache has known.
    pub(super) fn all_breakers(&self) -> Vec<BreakerStats> {
        let shards = self.map.all().into_iter();
        std::iter::once(self.topology.stats())
            .chain(shards.map(|shard| shard.server.breaker().stats()))
            .collect()
    }

    /// A write went through: each primary logs its refusals again if they come back.
    pub(super) fn write_succeeded(&self) {
        for shard in self.map.all() {
            shard.server.write_succeeded();
        }
    }

    /// The primary serving `key`'s slot, reading the map first if none is known.
    async fn shard_for(self: &Arc<Self>, key: &[u8]) -> Result<Arc<Shard>, CommandError> {
        let slot = slot_of(key);
        if let Some(shard) = self.map.owner(slot) {
            return Ok(shard);
        }
        if self.map.is_known() {
            // A map read while the cluster was forming, or a slot no primary serves right now.
            self.refresh_soon();
            return Err(CommandError::Unavailable);
        }
        Box::pin(self.read(false)).await?;
        self.map.owner(slot).ok_or(CommandError::Unavailable)
    }

    /// Reads the map in the call (`again`: even if one is known), through the slot map's
    /// breaker: one caller reads, the others wait for its outcome, all within the connect
    /// timeout.
    async fn read(self: &Arc<Self>, again: bool) -> Result<(), CommandError> {
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
    async fn read_map(&self, seeds: bool) -> Result<(), CommandError> {
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
    fn install(&self, reply: Value, host: &str) -> Result<(), CommandError> {
        let ranges = parse_slots(reply, host).map_err(CommandError::Redis)?;
        if ranges.is_empty() {
            return Err(CommandError::Unavailable);
        }
        self.map.install(&ranges, |address| self.make(address));
        let serving = self.map.serving();
        for shard in self.map.all() {
            if !serving.iter().any(|s| Arc::ptr_eq(s, &shard)) {
                shard.server.breaker().retire();
                shard.server.disconnect();
            }
        }
        self.topology.success();
        Ok(())
    }

    /// Reads the map again in a spawned task, unless one runs or ran within `min_open`. The
    /// configured nodes are asked too (at most once per `max_open`) when no known primary
    /// answers: the whole cluster may have moved.
    fn refresh_soon(self: &Arc<Self>) {
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

    /// The primary at `address` (`host:port`), made if never seen.
    fn shard(&self, address: &str) -> Option<Arc<Shard>> {
        self.map.at(address, || self.make(address))
    }

    fn make(&self, address: &str) -> Option<Shard> {
        let (host, port) = address.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let client = client_at(self.seeds.first()?, host, port).ok()?;
        let announce = !self.announced.swap(true, Ordering::Relaxed);
        Some(Shard {
            address: address.to_string(),
            host: host.to_string(),
            port,
            server: Server::new(
                Target::Standalone(client),
                address.to_string(),
                self.timeouts,
                self.settings,
                &self.cache,
                announce,
            ),
        })
    }
}

/// Whether a failed command hints that slots moved: no answer, or a cluster in flux.
fn suggests_new_topology(err: &CommandError) -> bool {
    match err {
        CommandError::Timeout | CommandError::Unavailable => true,
        CommandError::WrongType => false,
        // No code: not a server's reply (a dropped connection, I/O).
        CommandError::Redis(err) => {
            matches!(
                err.code(),
                None | Some("CLUSTERDOWN" | "TRYAGAIN" | "READONLY")
            )
        }
    }
}

fn slots_command() -> Cmd {
    redis::cmd("CLUSTER").arg("SLOTS").to_owned()
}

/// Whether a node's announced host says nothing: empty or NULL (it does not know its own
/// address: a cluster of one node, or `cluster-preferred-endpoint-type unknown-endpoint`), or a
/// wildcard. Such a node is reached at the address the reply came from.
fn unannounced(host: &str) -> bool {
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
    let mut parsed = Vec::new();
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
        parsed.push(SlotRange {
            first: redis::from_redis_value_ref(first)?,
            last: redis::from_redis_value_ref(last)?,
            primary: format!("{host}:{port}"),
        });
    }
    Ok(parsed)
}

/// Lets something happen at most once per interval, and one at a time (for at most a lease: a
/// claim whose task never ran, on a runtime no longer driven, does not block the next forever).
struct Pacer {
    interval: Duration,
    lease: Duration,
    /// When the last claim was made, in nanoseconds since `origin` (0: never).
    last: AtomicU64,
    running: Arc<AtomicBool>,
    origin: Instant,
}

/// A claim of a [`Pacer`]; dropping it (done, failed or cancelled) lets the next one run.
struct Claim(Arc<AtomicBool>);

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Pacer {
    fn new(interval: Duration, timeouts: Timeouts) -> Self {
        Pacer {
            interval,
            // Twice what a read of the map may take (a primary, then the configured nodes).
            lease: (timeouts.connect + timeouts.command) * 4 + interval,
            last: AtomicU64::new(0),
            running: Arc::new(AtomicBool::new(false)),
            origin: Instant::now(),
        }
    }

    fn claim(&self) -> Option<Claim> {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let now = nanos(self.origin.elapsed()).max(1);
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < nanos(self.interval) {
            return None;
        }
        let expired = now.saturating_sub(last) >= nanos(self.lease);
        if self.running.swap(true, Ordering::AcqRel) && !expired {
            return None;
        }
        self.last.store(now, Ordering::Relaxed);
        Some(Claim(self.running.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts(both: Duration) -> Timeouts {
        Timeouts {
            connect: both,
            command: both,
        }
    }

    #[test]
    fn a_pacer_lets_one_through_per_interval() {
        let pacer = Pacer::new(Duration::from_secs(60), timeouts(Duration::from_secs(1)));
        let claim = pacer.claim().expect("the first");
        assert!(pacer.claim().is_none(), "one at a time");
        drop(claim);
        assert!(pacer.claim().is_none(), "not again within the interval");
        let pacer = Pacer::new(Duration::ZERO, timeouts(Duration::from_secs(1)));
        drop(pacer.claim().expect("the first"));
        assert!(
            pacer.claim().is_some(),
            "the interval passed, and the first ended"
        );
        // A claim never dropped (its task never ran) blocks the next for its lease only.
        let pacer = Pacer::new(Duration::ZERO, timeouts(Duration::ZERO));
        let stuck = pacer.claim().expect("the first");
        assert!(pacer.claim().is_some(), "the lease of the first ran out");
        drop(stuck);
    }

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
    fn only_failures_that_hint_at_a_move_read_the_map_again() {
        // An error reply as a server sends it.
        let reply = |line: &str| {
            let value = redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap();
            CommandError::Redis(value.extract_error().unwrap_err())
        };
        assert_eq!(
            match reply("TRYAGAIN Multiple keys request during rehashing of slot") {
                CommandError::Redis(err) => err.code().map(str::to_string),
                _ => None,
            },
            Some("TRYAGAIN".to_string()),
            "the helper makes real error replies"
        );
        assert!(suggests_new_topology(&CommandError::Timeout));
        assert!(suggests_new_topology(&CommandError::Unavailable));
        assert!(suggests_new_topology(&reply(
            "CLUSTERDOWN The cluster is down"
        )));
        assert!(suggests_new_topology(&reply(
            "TRYAGAIN Multiple keys request"
        )));
        assert!(suggests_new_topology(&reply("READONLY You can't write")));
        assert!(!suggests_new_topology(&CommandError::WrongType));
        assert!(!suggests_new_topology(&reply("OOM command not allowed")));
        assert!(!suggests_new_topology(&reply("NOPERM no permissions")));
    }
}
