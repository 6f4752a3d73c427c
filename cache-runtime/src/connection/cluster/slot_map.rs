//! A Redis Cluster's slot map: which primary serves each of the 16384 slots, and the key slot
//! function the cluster uses. The routing ([`super`]) keeps one connection and one
//! circuit breaker per primary in it.
//!
//! Only the primaries of the last map read are kept: a node that left it (a failover, a pod
//! replaced) is let go, so the list follows the cluster, not every address it ever had.

use std::sync::{Arc, RwLock};

/// Hash slots of a Redis Cluster.
pub(crate) const SLOTS: u16 = 16384;

/// No primary is known to serve the slot.
const UNKNOWN: u16 = u16::MAX;

/// The slot of `key`: CRC16 (XMODEM) of its hash tag (the first non-empty `{...}`) or of the
/// whole key, modulo [`SLOTS`]: the cluster's own rule.
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            Some(&rest[..close])
        })
        .filter(|tag| !tag.is_empty());
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % SLOTS
}

/// A range of slots and the address (`host:port`) of the primary serving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotRange {
    pub first: u16,
    pub last: u16,
    pub primary: String,
}

/// What the map keeps per primary: anything that knows its `host:port`.
pub(crate) trait Addressed {
    fn address(&self) -> &str;
}

/// Which primary serves each slot.
pub(crate) struct SlotMap<P> {
    inner: RwLock<Owners<P>>,
}

struct Owners<P> {
    /// Per slot, the index in `primaries` of its primary, or [`UNKNOWN`].
    owner: Box<[u16]>,
    /// Every primary seen so far.
    primaries: Vec<Arc<P>>,
}

impl<P: Addressed> SlotMap<P> {
    pub(crate) fn new() -> Self {
        SlotMap {
            inner: RwLock::new(Owners {
                owner: vec![UNKNOWN; usize::from(SLOTS)].into_boxed_slice(),
                primaries: Vec::new(),
            }),
        }
    }

    /// The primary serving `slot`, if the map names one.
    pub(crate) fn owner(&self, slot: u16) -> Option<Arc<P>> {
        let inner = crate::sync::read(&self.inner);
        let owner = *inner.owner.get(usize::from(slot))?;
        inner.primaries.get(usize::from(owner)).cloned()
    }

    /// The primaries of many slots, with one look at the map: per slot, the position of its
    /// primary in the list returned with them (`None`: the map names none).
    pub(crate) fn route(&self, slots: &[u16]) -> (Vec<Option<usize>>, Vec<Arc<P>>) {
        let inner = crate::sync::read(&self.inner);
        let mut used: Vec<(u16, usize)> = Vec::new();
        let mut primaries = Vec::new();
        let at = slots
            .iter()
            .map(|&slot| {
                let owner = *inner.owner.get(usize::from(slot))?;
                let primary = inner.primaries.get(usize::from(owner))?;
                match used.iter().find(|(o, _)| *o == owner) {
                    Some((_, at)) => Some(*at),
                    None => {
                        primaries.push(primary.clone());
                        used.push((owner, primaries.len() - 1));
                        Some(primaries.len() - 1)
                    }
                }
            })
            .collect();
        (at, primaries)
    }

    /// Whether the map names a primary for any slot.
    pub(crate) fn is_known(&self) -> bool {
        let inner = crate::sync::read(&self.inner);
        inner.owner.iter().any(|&owner| owner != UNKNOWN)
    }

    /// The primary at `address`, if the map lists it.
    pub(crate) fn known(&self, address: &str) -> Option<Arc<P>> {
        crate::sync::read(&self.inner)
            .primaries
            .iter()
            .find(|p| p.address() == address)
            .cloned()
    }

    /// `slot` moved to `primary` (a `MOVED` reply), ahead of the next full read.
    pub(crate) fn moved(&self, slot: u16, primary: &Arc<P>) {
        let mut inner = crate::sync::write(&self.inner);
        let Some(index) = inner
            .primaries
            .iter()
            .position(|p| Arc::ptr_eq(p, primary))
            .and_then(|i| u16::try_from(i).ok())
        else {
            return;
        };
        if let Some(owner) = inner.owner.get_mut(usize::from(slot)) {
            *owner = index;
        }
    }

    /// Installs a map read with `CLUSTER SLOTS`: its primaries (the ones already known kept,
    /// with their connections and breakers; a new one made with `make`) replace the list.
    /// Returns the primaries that left it. An empty map (nothing read) changes nothing.
    pub(crate) fn install(
        &self,
        ranges: &[SlotRange],
        mut make: impl FnMut(&str) -> Option<P>,
    ) -> Vec<Arc<P>> {
        if ranges.is_empty() {
            return Vec::new();
        }
        let mut inner = crate::sync::write(&self.inner);
        let mut primaries: Vec<Arc<P>> = Vec::new();
        let mut owner = vec![UNKNOWN; usize::from(SLOTS)].into_boxed_slice();
        for range in ranges {
            let index = match primaries.iter().position(|p| p.address() == range.primary) {
                Some(index) => index,
                None => {
                    let known = inner
                        .primaries
                        .iter()
                        .find(|p| p.address() == range.primary)
                        .cloned();
                    let Some(primary) = known.or_else(|| make(&range.primary).map(Arc::new)) else {
                        continue;
                    };
                    primaries.push(primary);
                    primaries.len() - 1
                }
            };
            // At most 16384 primaries (one slot each): the index fits, below `UNKNOWN`.
            let Some(index) = u16::try_from(index).ok().filter(|&i| i != UNKNOWN) else {
                continue;
            };
            let slots = usize::from(range.first)..=usize::from(range.last.min(SLOTS - 1));
            if let Some(slots) = owner.get_mut(slots) {
                slots.fill(index);
            }
        }
        let left: Vec<Arc<P>> = inner
            .primaries
            .iter()
            .filter(|old| !primaries.iter().any(|new| Arc::ptr_eq(old, new)))
            .cloned()
            .collect();
        inner.primaries = primaries;
        inner.owner = owner;
        left
    }

    /// The primaries serving slots now, by address.
    pub(crate) fn serving(&self) -> Vec<Arc<P>> {
        let inner = crate::sync::read(&self.inner);
        let mut serves = vec![false; inner.primaries.len()];
        for &owner in inner.owner.iter() {
            if let Some(serves) = serves.get_mut(usize::from(owner)) {
                *serves = true;
            }
        }
        let mut serving: Vec<Arc<P>> = inner
            .primaries
            .iter()
            .zip(serves)
            .filter(|(_, serves)| *serves)
            .map(|(p, _)| p.clone())
            .collect();
        serving.sort_by(|a, b| a.address().cmp(b.address()));
        serving
    }

    /// Every primary of the map.
    pub(crate) fn all(&self) -> Vec<Arc<P>> {
        crate::sync::read(&self.inner).primaries.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Named(String);

    impl Addressed for Named {
        fn address(&self) -> &str {
            &self.0
        }
    }

    fn range(first: u16, last: u16, primary: &str) -> SlotRange {
        SlotRange {
            first,
            last,
            primary: primary.into(),
        }
    }

    fn named(address: &str) -> Option<Named> {
        Some(Named(address.to_string()))
    }

    fn owner(map: &SlotMap<Named>, key: &[u8]) -> Option<String> {
        map.owner(slot_of(key)).map(|p| p.0.clone())
    }

    #[test]
    fn slots_are_the_clusters() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"bar"), 5061);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(
            slot_of(b"foo{}{bar}"),
            8363,
            "an empty tag hashes the whole key"
        );
        assert_eq!(slot_of(b"foo{{bar}}zap"), 4015);
        assert_eq!(slot_of(b"p:f:0:{abc}"), 7638);
        assert_eq!(slot_of(b"p:f:0:#{abc}:lock"), 7638, "an entry and its lock");
    }

    #[test]
    fn each_slot_finds_its_primary_and_a_failover_moves_it() {
        let map = SlotMap::new();
        assert!(!map.is_known());
        assert_eq!(owner(&map, b"foo"), None, "no map yet");
        map.install(
            &[
                range(0, 5460, "a:1"),
                range(5461, 10922, "b:1"),
                range(10923, 16383, "c:1"),
            ],
            named,
        );
        assert!(map.is_known());
        assert_eq!(owner(&map, b"foo").as_deref(), Some("c:1")); // slot 12182
        assert_eq!(owner(&map, b"bar").as_deref(), Some("a:1")); // slot 5061
        let c = map.owner(12182).unwrap();
        // The replica d:1 took over c's slots.
        map.install(
            &[
                range(0, 5460, "a:1"),
                range(5461, 10922, "b:1"),
                range(10923, 16383, "d:1"),
            ],
            named,
        );
        assert_eq!(owner(&map, b"foo").as_deref(), Some("d:1"));
        let listed: Vec<String> = map.serving().iter().map(|p| p.0.clone()).collect();
        assert_eq!(listed, ["a:1", "b:1", "d:1"]);
        assert_eq!(map.all().len(), 3, "c left the map");
        assert!(map.known("c:1").is_none());
        // A primary that stays is the same one (its connection and breaker kept).
        let a = map.known("a:1").unwrap();
        let left = map.install(&[range(0, 10922, "a:1"), range(10923, 16383, "d:1")], named);
        assert!(Arc::ptr_eq(&a, &map.known("a:1").unwrap()));
        assert_eq!(left.len(), 1, "b left");
        // A MOVED reply for one slot, to a primary of the map.
        map.moved(5061, &map.known("d:1").unwrap());
        assert_eq!(owner(&map, b"bar").as_deref(), Some("d:1"));
        drop(c);
        // A failed read leaves the map alone.
        assert!(map.install(&[], named).is_empty());
        assert_eq!(owner(&map, b"foo").as_deref(), Some("d:1"));
    }
}
