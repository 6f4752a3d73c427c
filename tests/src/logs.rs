//! Captures `tracing` events in memory, to check what the cache logs and how often.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The events logged while a [`Capture`] was the thread's default subscriber.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    events: Arc<Mutex<Vec<(Level, String)>>>,
}

impl Capture {
    /// Installs a capture for the current thread until the guard drops. Use it with a
    /// current-thread runtime, so every task logs on this thread.
    pub fn install() -> (Capture, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let guard = tracing::subscriber::set_default(capture.clone());
        (capture, guard)
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<(Level, String)> {
        self.events.lock().unwrap().clone()
    }

    /// Whether any event, at any level, has `text` in its message or fields.
    pub fn mentions(&self, text: &str) -> bool {
        self.events
            .lock()
            .unwrap()
            .iter()
            .any(|(_, message)| message.contains(text))
    }

    /// How many events at `level` contain `text` in their message or fields.
    pub fn count(&self, level: Level, text: &str) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, message)| *l == level && message.contains(text))
            .count()
    }
}

struct Message(String);

/// The message, then every other field as ` name=value`.
impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        self.events
            .lock()
            .unwrap()
            .push((*event.metadata().level(), message.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}
