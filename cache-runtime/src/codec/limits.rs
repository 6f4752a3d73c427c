//! What one decode of untrusted bytes may take (nesting depth, decoded memory), and the
//! accounting of what is left as [`super::guard`]'s adapter goes.

use std::cell::Cell;

use serde::de;

/// Nesting levels a decoded value may have.
pub(crate) const MAX_DEPTH: u32 = 256;

/// A decode's budget, as a multiple of the largest entry the cache stores: decoded values are
/// larger than their encoding (an empty `String` is one byte encoded and 24 in memory), and a
/// compressed entry expands.
pub(crate) const BUDGET_FACTOR: usize = 64;

/// The budget whatever the configured `max_value_bytes`: values smaller than this always fit.
pub(crate) const MIN_BUDGET: usize = 1 << 20;

/// What one decode may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The largest entry read at all (header and stored payload): the cache's
    /// `max_value_bytes`, which no entry it writes exceeds.
    pub stored: usize,
    pub depth: u32,
    /// Bytes of decoded memory (estimated: elements' sizes and strings' lengths), also the
    /// largest length a compressed payload may expand to.
    pub budget: usize,
}

impl Limits {
    /// The limits of a cache storing entries of at most `max_value_bytes`.
    pub(crate) fn for_values(max_value_bytes: usize) -> Limits {
        Limits {
            stored: max_value_bytes,
            depth: MAX_DEPTH,
            budget: max_value_bytes
                .saturating_mul(BUDGET_FACTOR)
                .max(MIN_BUDGET),
        }
    }
}

/// What is left of a decode's limits, shared by every adapter of one decode.
pub(crate) struct Left {
    depth: Cell<u32>,
    budget: Cell<usize>,
    /// A limit was reached: the decode failed for that, not for the bytes' shape.
    exceeded: Cell<bool>,
}

impl Left {
    pub(crate) fn new(limits: Limits) -> Self {
        Left {
            depth: Cell::new(limits.depth),
            budget: Cell::new(limits.budget),
            exceeded: Cell::new(false),
        }
    }

    /// Whether the decode reached one of its limits.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.get()
    }

    /// One level deeper, until the returned guard is dropped.
    pub(super) fn enter<E: de::Error>(&self) -> Result<Level<'_>, E> {
        let depth = self.depth.get();
        if depth == 0 {
            self.exceeded.set(true);
            return Err(E::custom("the value nests deeper than the decoder allows"));
        }
        self.depth.set(depth - 1);
        Ok(Level(self))
    }

    /// Charges `bytes` of decoded memory.
    pub(super) fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        match self.budget.get().checked_sub(bytes) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom(
                    "the value would take more memory than the decoder allows",
                ))
            }
        }
    }
}

/// A level of nesting, given back when dropped.
pub(super) struct Level<'a>(&'a Left);

impl Drop for Level<'_> {
    fn drop(&mut self) {
        self.0.depth.set(self.0.depth.get() + 1);
    }
}
