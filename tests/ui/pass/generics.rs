//! Generic functions: type parameters with bounds and where-clauses, generic return types,
//! lifetimes, and const generics.
#![deny(warnings)]

use std::fmt::Debug;
use std::str::FromStr;

use redis_cached::redis_cache;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[redis_cache(ttl = 60)]
async fn describe<T>(value: T) -> String
where
    T: Serialize + Debug + Send,
{
    format!("{value:?}")
}

/// The return type is a type parameter; `Option<T>` of it.
#[redis_cache(ttl = 60, version = 1)]
async fn parse<T: FromStr + Serialize + DeserializeOwned>(text: &str) -> Option<T> {
    text.parse().ok()
}

/// `Result<T, E>` with generic `T` and `E`.
#[redis_cache(ttl = 60)]
async fn convert<T, E>(input: Vec<u8>) -> Result<T, E>
where
    T: Serialize + DeserializeOwned + TryFrom<Vec<u8>, Error = E>,
{
    T::try_from(input)
}

/// A const generic parameter (part of the key).
#[redis_cache(ttl = 60)]
async fn chunks<const N: usize>(data: Vec<u8>) -> Vec<Vec<u8>> {
    data.chunks(N).map(<[u8]>::to_vec).collect()
}

/// Explicit lifetimes on borrowed arguments.
#[redis_cache(ttl = 60)]
async fn join<'a, 'b: 'a>(left: &'a str, right: &'b [String]) -> String {
    format!("{left}{}", right.concat())
}

/// Everything at once: lifetime, type and const parameters, and a where-clause.
#[redis_cache(ttl = 60, skip(ignored))]
async fn mixed<'a, T, const N: u8>(items: &'a [T], ignored: &'a dyn Debug) -> Vec<T>
where
    T: Serialize + DeserializeOwned + Clone + Sync,
{
    let _ = ignored;
    items.iter().take(usize::from(N)).cloned().collect()
}

fn main() {
    // Referenced, never called: nothing here may reach Redis.
    let _ = describe::<u32>;
    let _ = parse::<u64>;
    let _ = convert::<String, std::string::FromUtf8Error>;
    let _ = chunks::<4>;
    let _ = join;
    let _ = mixed::<u32, 2>;
}
