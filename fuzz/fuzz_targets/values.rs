//! The value types the targets decode and round-trip: the shapes cached functions return.

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use serde::{Deserialize, Serialize};

/// A record, as most cached functions return.
#[derive(Arbitrary, Serialize, Deserialize, PartialEq, Debug, Clone)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub price_cents: Option<u32>,
    pub tags: Vec<String>,
    pub ratings: BTreeMap<String, (u8, i64)>,
}

/// Any nesting of the serde data model's shapes (floats as bits: `NaN != NaN`).
#[derive(Arbitrary, Serialize, Deserialize, PartialEq, Debug, Clone)]
pub enum Value {
    Unit,
    Bool(bool),
    Signed(i128),
    Unsigned(u64),
    Float(u64),
    Char(char),
    Text(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Pair(Box<Value>, Option<Box<Value>>),
    Record { id: u32, product: Option<Product> },
}
