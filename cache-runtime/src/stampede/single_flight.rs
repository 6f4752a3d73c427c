//! In-process single-flight: concurrent calls with the same key share one leader.
//!
//! The first caller of a key becomes its [`Leader`]: it does the Redis round trip and, on a miss,
//! runs the function; every caller that arrives meanwhile follows, and receives the leader's
//! [`Outcome`]: the envelope bytes the leader read or wrote (each follower decodes its own copy, so
//! the value needs no `Clone`). This holds while Redis is down too, so an outage does not
//! multiply the load on the database.
//!
//! A leader that is cancelled or panics drops its [`Leader`] without publishing: its followers see
//! the channel close and race to lead again, so nobody is stranded.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// A call's identity: the function's site and the hash of its arguments.
pub(crate) type FlightId = (usize, u128);

/// What a leader hands to its followers.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// An envelope (fresh, stale, or just computed): decode it.
    Entry(Arc<Vec<u8>>),
    /// The function returned the policy's empty value (`None`), which is not stored.
    Absent,
    /// The leader's value cannot be shared (an `Err`, or it could not be encoded): run the
    /// function yourself.
    RunYourself,
}

/// A flight's channel to its followers, created by the first follower: a leader nobody waits
/// for (the common case, a hit) costs one map insert and one remove, nothing else.
type Slot = Option<watch::Sender<Option<Outcome>>>;

/// The calls in flight in one [`Cache`](crate::Cache).
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<FlightId, Slot>>,
}

/// The caller's role for one attempt.
pub(crate) enum Join<'a> {
    Lead(Leader<'a>),
    Follow(Follower),
}

impl Flights {
    /// Leads the flight for `id`, or follows the one already in the air.
    pub(crate) fn join(&self, id: FlightId) -> Join<'_> {
        match self.lock().entry(id) {
            Entry::Occupied(mut flight) => {
                let tx = flight
                    .get_mut()
                    .get_or_insert_with(|| watch::channel(None).0);
                Join::Follow(Follower(tx.subscribe()))
            }
            Entry::Vacant(slot) => {
                slot.insert(None);
                Join::Lead(Leader {
                    flights: self,
                    id,
                    landed: false,
                })
            }
        }
    }

    /// Flights in the air; zero when the process is idle.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FlightId, Slot>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the flight; its channel, if any follower opened one.
    fn land(&self, id: FlightId) -> Slot {
        self.lock().remove(&id).flatten()
    }
}

/// The caller doing the work for a key. Dropping it without [`Leader::publish`] (cancellation,
/// panic) releases the followers to try again.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    id: FlightId,
    landed: bool,
}

impl Leader<'_> {
    /// Hands `outcome` to every follower. A caller arriving afterwards starts a new flight (and
    /// finds what the leader stored).
    pub(crate) fn publish(self, outcome: Outcome) {
        self.publish_with(|| outcome);
    }

    /// [`Leader::publish`], building the outcome only if someone follows.
    pub(crate) fn publish_with(mut self, outcome: impl FnOnce() -> Outcome) {
        self.landed = true;
        if let Some(tx) = self.flights.land(self.id) {
            tx.send_replace(Some(outcome()));
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.landed {
            // Dropping the channel closes it: the followers try again.
            self.flights.land(self.id);
        }
    }
}

/// A caller waiting for a leader.
pub(crate) struct Follower(watch::Receiver<Option<Outcome>>);

impl Follower {
    /// The leader's outcome, or `None` if the leader went away without one.
    pub(crate) async fn outcome(mut self) -> Option<Outcome> {
        match self.0.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_outcome_and_the_table_empties() {
        let flights = Flights::default();
        let Join::Lead(leader) = flights.join((1, 7)) else {
            panic!("first caller leads")
        };
        let Join::Follow(follower) = flights.join((1, 7)) else {
            panic!("second caller follows")
        };
        assert!(matches!(flights.join((1, 8)), Join::Lead(_)), "other key");
        leader.publish(Outcome::Absent);
        assert!(matches!(follower.outcome().await, Some(Outcome::Absent)));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_followers() {
        let flights = Flights::default();
        let leader = flights.join((1, 7));
        let Join::Follow(follower) = flights.join((1, 7)) else {
            panic!("second caller follows")
        };
        drop(leader);
        assert!(follower.outcome().await.is_none());
        assert_eq!(flights.len(), 0);
        assert!(matches!(flights.join((1, 7)), Join::Lead(_)));
    }
}
