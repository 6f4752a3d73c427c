//! Auto-pipelining of the lookups one server is asked for at once.
//!
//! A lookup (`GET`) made while no other is in flight on the link is sent at once, alone: a call
//! that is alone pays nothing for this. One made while another is in flight opens a window
//! instead: it yields for the rest of the scheduler's turn, and every lookup asked for meanwhile
//! joins it; then the opener sends them all as one pipeline and hands each caller its own reply.
//! Under load that is one write, one read and one wake of the connection's task per window
//! instead of one each, which is most of what a hit costs the client (the performance page has
//! the figures). The first caller of a burst still goes alone; a window adds at most the rest of
//! one scheduler turn to the calls in it.
//!
//! Each caller keeps its own reply: a key holding another type is that caller's `WRONGTYPE`, not
//! the window's. A window that fails (a timeout, a dropped connection) fails every caller in it,
//! with the error it would have had alone, and counts once toward the breaker: it was one round
//! trip. A caller whose opener is cancelled or panics before sending sends its own `GET`; one
//! whose opener is held up (its task on a worker that blocking code holds) waits at most the
//! connect and command deadlines, then times out as it would have alone.

use std::sync::Mutex;

use tokio::sync::oneshot;

use super::CommandError;

/// The most lookups one window sends; a lookup that finds the window full is sent alone.
pub(super) const MAX_WINDOW: usize = 256;

/// What a lookup of one key returns.
pub(super) type Reply = Result<Option<Vec<u8>>, CommandError>;

/// One server's lookups in flight and its open window.
#[derive(Debug, Default)]
pub(super) struct Lookups {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Lookups (alone or windows) sent and not yet answered.
    in_flight: usize,
    /// The window open for joiners, if any: their keys and where their replies go.
    open: Option<Vec<Joined>>,
}

/// A lookup waiting in a window.
#[derive(Debug)]
pub(super) struct Joined {
    pub key: String,
    pub reply: oneshot::Sender<Reply>,
}

/// How a lookup goes out.
#[derive(Debug)]
pub(super) enum Turn<'a> {
    /// Nothing else in flight (or the window is full): send it alone, now.
    Alone(InFlight<'a>),
    /// It joined an open window: its reply comes from the window's opener.
    Join(oneshot::Receiver<Reply>),
    /// It opened a window: yield, then [`Window::close`] it and send what joined.
    Open(Window<'a>),
}

impl Lookups {
    /// How a lookup of `key` goes out.
    pub(super) fn turn(&self, key: &str) -> Turn<'_> {
        let mut state = crate::sync::guard(&self.state);
        if let Some(open) = &mut state.open
            && open.len() < MAX_WINDOW
        {
            let (reply, joined) = oneshot::channel();
            open.push(Joined {
                key: key.to_owned(),
                reply,
            });
            return Turn::Join(joined);
        }
        if state.in_flight == 0 || state.open.is_some() {
            state.in_flight += 1;
            return Turn::Alone(InFlight { lookups: self });
        }
        state.open = Some(Vec::new());
        Turn::Open(Window {
            lookups: self,
            open: true,
        })
    }

    fn sent(&self) {
        crate::sync::guard(&self.state).in_flight -= 1;
    }
}

/// A lookup in flight; it is counted until dropped.
#[derive(Debug)]
pub(super) struct InFlight<'a> {
    lookups: &'a Lookups,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.lookups.sent();
    }
}

/// The window a lookup opened. Dropped before it is closed (the opener was cancelled), it sends
/// its joiners off to send their own lookups.
#[derive(Debug)]
pub(super) struct Window<'a> {
    lookups: &'a Lookups,
    open: bool,
}

impl<'a> Window<'a> {
    /// Closes the window: the lookups that joined it, and the window counted in flight.
    pub(super) fn close(mut self) -> (Vec<Joined>, InFlight<'a>) {
        self.open = false;
        let mut state = crate::sync::guard(&self.lookups.state);
        let joined = state.open.take().unwrap_or_default();
        state.in_flight += 1;
        (
            joined,
            InFlight {
                lookups: self.lookups,
            },
        )
    }
}

impl Drop for Window<'_> {
    fn drop(&mut self) {
        if self.open {
            // Dropping the joiners' senders tells them to go alone.
            let joined = crate::sync::guard(&self.lookups.state).open.take();
            drop(joined);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_goes_alone_while_nothing_else_is_in_flight() {
        let lookups = Lookups::default();
        let first = lookups.turn("a");
        assert!(matches!(first, Turn::Alone(_)));
        drop(first);
        assert!(matches!(lookups.turn("b"), Turn::Alone(_)));
    }

    #[test]
    fn lookups_made_while_one_is_in_flight_share_a_window() {
        let lookups = Lookups::default();
        let _alone = lookups.turn("a");
        let Turn::Open(window) = lookups.turn("b") else {
            panic!("a lookup behind one in flight opens a window");
        };
        let Turn::Join(_c) = lookups.turn("c") else {
            panic!("joins the open window");
        };
        let Turn::Join(_d) = lookups.turn("d") else {
            panic!("joins the open window");
        };
        let (joined, _in_flight) = window.close();
        let keys: Vec<&str> = joined.iter().map(|j| j.key.as_str()).collect();
        assert_eq!(keys, ["c", "d"]);
        // The window is in flight: the next lookup opens another.
        assert!(matches!(lookups.turn("e"), Turn::Open(_)));
    }

    #[test]
    fn a_full_window_sends_the_next_lookup_alone() {
        let lookups = Lookups::default();
        let _alone = lookups.turn("a");
        let _window = lookups.turn("b");
        let _joined: Vec<_> = (0..MAX_WINDOW)
            .map(|i| lookups.turn(&i.to_string()))
            .collect();
        assert!(matches!(lookups.turn("z"), Turn::Alone(_)));
    }

    #[test]
    fn a_cancelled_opener_sends_its_joiners_off_alone() {
        let lookups = Lookups::default();
        let alone = lookups.turn("a");
        let window = lookups.turn("b");
        let Turn::Join(mut joined) = lookups.turn("c") else {
            panic!("joins the open window");
        };
        drop(window);
        assert!(matches!(
            joined.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        // Nothing is left open or counted: once the first lookup is answered, the next goes
        // alone.
        drop(alone);
        assert!(matches!(lookups.turn("d"), Turn::Alone(_)));
    }

    #[test]
    fn a_closed_window_is_counted_until_its_reply() {
        let lookups = Lookups::default();
        let alone = lookups.turn("a");
        let Turn::Open(window) = lookups.turn("b") else {
            panic!("opens a window");
        };
        let (_, in_flight) = window.close();
        drop(alone);
        assert!(matches!(lookups.turn("c"), Turn::Open(_)));
        drop(in_flight);
        assert!(matches!(lookups.turn("d"), Turn::Alone(_)));
    }
}
