//! Writes the seed corpus of `envelope_open`: valid envelopes of several value types, compressed
//! and not, so the fuzzer starts from inputs that pass the header checks. `scripts/fuzz` runs it
//! (the corpus is generated, never committed).

use std::collections::BTreeMap;
use std::path::Path;

use cache_runtime::__private::bench::seal;

#[path = "../../fuzz_targets/values.rs"]
mod values;
use values::{Product, Value};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: seeds <corpus dir>");
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("corpus dir");
    let product = Product {
        id: 42,
        name: "lamp ".repeat(100),
        price_cents: Some(1999),
        tags: vec!["home".into(), "light".into()],
        ratings: BTreeMap::from([("alice".into(), (5, -1)), ("bob".into(), (3, 7))]),
    };
    let value = Value::List(vec![
        Value::Text("x".repeat(500)),
        Value::Record {
            id: 7,
            product: Some(product.clone()),
        },
        Value::Map(BTreeMap::from([(
            "k".into(),
            Value::Float(1.5f64.to_bits()),
        )])),
    ]);
    let mut n = 0;
    let mut write = |bytes: Vec<u8>| {
        std::fs::write(dir.join(format!("seed-{n:02}")), bytes).expect("write seed");
        n += 1;
    };
    for compress_above in [0, usize::MAX] {
        write(seal(&product, compress_above));
        write(seal(&value, compress_above));
        write(seal(&"a string value".repeat(40), compress_above));
        write(seal(&(0..300u64).collect::<Vec<_>>(), compress_above));
        write(seal(&Some((7u32, "pair".to_string())), compress_above));
        write(seal(&None::<(u32, String)>, compress_above));
        write(seal(&seeds_map(), compress_above));
    }
    println!("{n} seeds in {}", dir.display());
}

fn seeds_map() -> BTreeMap<String, Vec<u8>> {
    (0..50)
        .map(|i| (format!("key{i}"), vec![i as u8; 20]))
        .collect()
}
