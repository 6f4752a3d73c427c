//! Payloads decoded into recursive and sequence-heavy types (a category tree, an expression, a
//! list of lists, a sequence of zero-sized values) on a thread with a small stack (half a Tokio
//! worker's), compressed or not: the decoder's depth limit keeps any nesting off the stack's end
//! and its budget keeps any claimed length, or any expansion, inside the memory cap
//! (`scripts/fuzz` runs this with `-malloc_limit_mb`). A stack overflow aborts the run.
//!
//! The fuzzer writes the payload only: the envelope's header around it is made here, so every
//! input reaches the decoder. Bit 0 of the first byte flags the rest as compressed (an original
//! length, then an LZ4 block, the way the cache stores large values), so a small input can
//! expand to a large payload; its bits 1 to 2 pick the codec that decodes it. The seeds (`seeds --nested`) are the hostile payloads found so far.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use redis_cached::__private::bench::{open_in, seal_in};
use redis_cached::Codec;
use serde::Deserialize;

mod values;
use values::Value;

/// Half the stack of a Tokio worker thread (2 MiB).
const STACK: usize = 1024 * 1024;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Category {
    id: u32,
    children: Vec<Category>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum Expr {
    Leaf(u64),
    Neg(Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    List(Vec<Expr>),
    Named(BTreeMap<String, Expr>),
    Maybe(Option<Box<Expr>>),
}

/// An envelope around `payload` (`lz4`: flagged as compressed), as the cache stores values.
fn envelope(codec: Codec, payload: &[u8], lz4: bool) -> Vec<u8> {
    // A sealed unit value: a header (then the payload, replaced below).
    let mut out = seal_in(codec, &(), usize::MAX).expect("a unit encodes");
    out.truncate(28);
    if lz4 {
        out[4] |= 1;
    }
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, payload)) = input.split_first() else {
        return;
    };
    let codec = Codec::ENABLED[usize::from(mode >> 1) % Codec::ENABLED.len()];
    let bytes = envelope(codec, payload, mode & 1 == 1);
    let decoded = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let _ = open_in::<Category>(codec, &bytes);
            let _ = open_in::<Expr>(codec, &bytes);
            let _ = open_in::<Value>(codec, &bytes);
            let _ = open_in::<Vec<Vec<Vec<String>>>>(codec, &bytes);
            let _ = open_in::<Vec<()>>(codec, &bytes);
            let _ = open_in::<Vec<Option<()>>>(codec, &bytes);
            let _ = open_in::<Vec<String>>(codec, &bytes);
            let _ = open_in::<BTreeMap<u32, Vec<()>>>(codec, &bytes);
        })
        .expect("spawn the decoding thread")
        .join();
    assert!(decoded.is_ok(), "decoding panicked");
});
