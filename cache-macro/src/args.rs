//! The attribute's options: `#[redis_cache(ttl = 300, skip(db), version = 2, ...)]`.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Lit, LitBool, LitInt, LitStr, Token};

use crate::errors::Errors;

mod kw {
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(skip);
    syn::custom_keyword!(version);
    syn::custom_keyword!(name);
    syn::custom_keyword!(cache);
    syn::custom_keyword!(none_ttl);
    syn::custom_keyword!(include_self);
    syn::custom_keyword!(stale);
    syn::custom_keyword!(early_refresh);
    syn::custom_keyword!(jitter);
    syn::custom_keyword!(lock);
    syn::custom_keyword!(companions);
    syn::custom_keyword!(local);
    syn::custom_keyword!(local_ttl);
    syn::custom_keyword!(condition);
    syn::custom_keyword!(key);
    syn::custom_keyword!(unless);
    syn::custom_keyword!(refresh);
    syn::custom_keyword!(tags);
    syn::custom_keyword!(batch);
    syn::custom_keyword!(codec);
    syn::custom_keyword!(soft_timeout);
}

/// Every option, in the order the error messages list them.
const OPTIONS: &[&str] = &[
    "ttl",
    "skip",
    "version",
    "name",
    "cache",
    "none_ttl",
    "include_self",
    "stale",
    "early_refresh",
    "jitter",
    "lock",
    "companions",
    "local",
    "local_ttl",
    "condition",
    "key",
    "unless",
    "refresh",
    "tags",
    "batch",
    "codec",
    "soft_timeout",
];

/// The codecs, as `codec = "..."` and the runtime's cargo features spell them, each with the
/// runtime's variant and whether its feature is on in this build (the runtime's features turn
/// on the macro's of the same names).
pub(crate) const CODECS: &[(&str, &str, bool)] = &[
    ("bincode", "Bincode", cfg!(feature = "bincode")),
    ("postcard", "Postcard", cfg!(feature = "postcard")),
    ("json", "Json", cfg!(feature = "json")),
    ("msgpack", "MsgPack", cfg!(feature = "msgpack")),
];

/// The options of the `cached` crate's `#[cached]` and `#[io_cached]` that are not options here,
/// and what does their job: someone migrating reaches for them first.
const CACHED_OPTIONS: &[(&str, &str)] = &[
    (
        "size",
        "`local = N` keeps up to N decoded values in the process; in Redis, entries leave by their `ttl`",
    ),
    ("time", "`ttl = SECONDS` (or `ttl = \"5m\"`)"),
    (
        "time_refresh",
        "a hit does not extend an entry; hot entries are refreshed before they expire (`early_refresh`, on by default) and `stale = N` serves an expired one while it is refreshed",
    ),
    (
        "sync_writes",
        "on by default, per key and across processes (`lock = false` never waits)",
    ),
    (
        "convert",
        "`key = EXPR`, an expression over the arguments, e.g. `key = id`",
    ),
    (
        "result",
        "the default: an `Err` is returned and never stored",
    ),
    (
        "option",
        "the default: a `None` is not stored (`none_ttl = N` stores it for N seconds)",
    ),
    (
        "ty",
        "`cache = EXPR`, a `Cache` built with `Cache::builder()`",
    ),
    (
        "create",
        "`cache = EXPR`, a `Cache` built with `Cache::builder()`",
    ),
    (
        "unbound",
        "every entry needs a `ttl`; Redis's `maxmemory-policy` bounds the whole cache",
    ),
    (
        "map_error",
        "nothing: cache errors never reach the caller, the function runs instead",
    ),
    (
        "with_cached_flag",
        "`{fn}_with_outcome(..)`, generated next to the function, returns `(value, CallOutcome)`: whether this call was a hit, and the entry's age",
    ),
    (
        "cache_prefix_block",
        "`name = \"...\"` for the function's key segment, `Cache::builder().prefix(...)` for a whole cache",
    ),
    ("redis", "nothing: entries are always in Redis"),
    ("disk", "nothing: entries are in Redis"),
];

/// The parsed and checked options of one `#[redis_cache(...)]`.
pub(crate) struct Args {
    /// Seconds an entry lives; required, at least 1 (0 with a `ttl` expression or closure).
    pub ttl: u64,
    /// `ttl = EXPR` (evaluated per call) or `ttl = |v: &T| ...` (from the value).
    pub ttl_rule: Option<TtlRule>,
    /// `unless = |v: &T| ...`: `true` returns the value without storing it.
    pub unless: Option<Expr>,
    /// Parameters left out of the key.
    pub skip: Vec<Ident>,
    /// Bumped by the user when the stored shape changes; part of the key's fingerprint.
    pub version: u32,
    /// Replaces `module_path::fn_name` in the key.
    pub name: Option<LitStr>,
    /// An expression that derefs to `redis_cached::Cache`, instead of the global default.
    pub cache: Option<Expr>,
    /// Seconds a `None` is kept (0 with a `none_ttl` expression); `None` is not cached when
    /// absent.
    pub none_ttl: Option<(u64, Span)>,
    /// `none_ttl = EXPR`: seconds (`u64`) or a `Duration`, evaluated per call.
    pub none_ttl_expr: Option<Expr>,
    /// `self` is hashed into the key (the receiver must then be `Serialize`).
    pub include_self: Option<Span>,
    /// Seconds an entry may be served stale after its TTL while one caller refreshes it.
    pub stale: u64,
    /// Probabilistic early refresh (XFetch); on unless `early_refresh = false`.
    pub early_refresh: bool,
    /// Fraction of the TTL by which expiries are randomly shortened; the runtime's default when
    /// absent.
    pub jitter: Option<f32>,
    /// The cross-process per-key lock on a miss; on unless `lock = false`.
    pub lock: bool,
    /// The `_invalidate` and `_refresh` companions; generated unless `companions = false` (which
    /// trait impls need: they cannot have extra methods).
    pub companions: bool,
    /// Entries of this function kept decoded in this process (`local = N`); 0: no local tier.
    pub local: Option<(u64, Span)>,
    /// Seconds a local copy may be served without Redis's confirmation; the runtime's default
    /// when absent.
    pub local_ttl: Option<(u64, Span)>,
    /// A `bool` expression over the arguments: `false` runs the function without the cache.
    pub condition: Option<Expr>,
    /// A `Serialize` expression hashed instead of the arguments.
    pub key: Option<Expr>,
    /// Where `skip(...)` was written, for the error when `key` is given too.
    pub skip_span: Option<Span>,
    /// `tags("product:{id}", "catalog")`: templates over the arguments, rendered per call.
    pub tags: Vec<LitStr>,
    /// `tags = |v: &T| ...`: tags from the value to be stored.
    pub tags_of: Option<Expr>,
    /// `refresh = "background"`: early and stale refreshes run in a spawned task (where it was
    /// written, for the errors about parameters that cannot go there).
    pub background_refresh: Option<Span>,
    /// `batch = ids`: the parameter holding the keys of a batch function.
    pub batch: Option<Ident>,
    /// `soft_timeout = "200ms"` (milliseconds) or `soft_timeout = EXPR` (a `Duration` per call):
    /// a call refreshing an entry it could serve waits that long at most.
    pub soft_timeout: Option<SoftTimeout>,
    /// `codec = "json"`: the runtime's `Codec` variant this function's values are stored in,
    /// whatever its cache's codec.
    pub codec: Option<Ident>,
}

enum Opt {
    Ttl(TtlOpt),
    Skip(Punctuated<Ident, Token![,]>),
    Version(LitInt),
    Name(LitStr),
    Cache(Expr),
    NoneTtl(TtlOpt),
    IncludeSelf(Span),
    Stale(Secs),
    EarlyRefresh(LitBool),
    Jitter(Lit),
    Lock(LitBool),
    Companions(LitBool),
    Local(LitInt),
    LocalTtl(LitInt),
    Condition(Expr),
    Key(Expr),
    Unless(Expr),
    Refresh(LitStr),
    Tags(Span, Punctuated<LitStr, Token![,]>),
    TagsOf(Expr),
    Batch(Ident),
    Codec(LitStr),
    SoftTimeout(SoftTimeout),
}

/// How `soft_timeout` was written.
pub(crate) enum SoftTimeout {
    /// A duration string, in milliseconds (at least 1).
    Millis(u64, Span),
    /// An expression evaluated per call, a `Duration`.
    Expr(Expr),
}

impl SoftTimeout {
    pub(crate) fn span(&self) -> Span {
        match self {
            SoftTimeout::Millis(_, span) => *span,
            SoftTimeout::Expr(expr) => expr.span(),
        }
    }
}

/// How `ttl` was written.
pub(crate) enum TtlOpt {
    Secs(Secs),
    Expr(Expr),
}

/// A `ttl` computed at run time.
pub(crate) enum TtlRule {
    /// Seconds (`u64`) or a `Duration`, evaluated on each call.
    Expr(Expr),
    /// `|v: &T| -> Duration`, from the value to be stored.
    Closure(Expr),
}

impl Args {
    /// The option that makes the body outlive the call (a refresh in a spawned task, so every
    /// parameter must be owned and `Send + 'static`), as its errors name it, and where it was
    /// written.
    pub(crate) fn detached(&self) -> Option<(Span, &'static str)> {
        match (&self.background_refresh, &self.soft_timeout) {
            (Some(span), _) => Some((*span, "`refresh = \"background\"`")),
            (None, Some(bound)) => Some((bound.span(), "`soft_timeout`")),
            (None, None) => None,
        }
    }
}

impl Parse for Opt {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let look = input.lookahead1();
        if look.peek(kw::ttl) {
            assign::<kw::ttl>(input)?;
            Ok(Opt::Ttl(parse_ttl(input, "ttl", "300")?))
        } else if look.peek(kw::skip) {
            input.parse::<kw::skip>()?;
            let content;
            syn::parenthesized!(content in input);
            Ok(Opt::Skip(
                content.parse_terminated(Ident::parse, Token![,])?,
            ))
        } else if look.peek(kw::version) {
            assign::<kw::version>(input)?;
            Ok(Opt::Version(parse_int(input, "version", "version = 2")?))
        } else if look.peek(kw::name) {
            assign::<kw::name>(input)?;
            Ok(Opt::Name(input.parse()?))
        } else if look.peek(kw::cache) {
            assign::<kw::cache>(input)?;
            Ok(Opt::Cache(input.parse()?))
        } else if look.peek(kw::none_ttl) {
            assign::<kw::none_ttl>(input)?;
            Ok(Opt::NoneTtl(parse_ttl(input, "none_ttl", "30")?))
        } else if look.peek(kw::include_self) {
            let kw = input.parse::<kw::include_self>()?;
            Ok(Opt::IncludeSelf(kw.span))
        } else if look.peek(kw::stale) {
            assign::<kw::stale>(input)?;
            Ok(Opt::Stale(parse_secs(input, "stale", "60")?))
        } else if look.peek(kw::early_refresh) {
            assign::<kw::early_refresh>(input)?;
            Ok(Opt::EarlyRefresh(parse_bool(input, "early_refresh")?))
        } else if look.peek(kw::jitter) {
            assign::<kw::jitter>(input)?;
            reject_negative(input, jitter_message)?;
            let lit = input
                .parse::<Lit>()
                .map_err(|err| syn::Error::new(err.span(), jitter_message()))?;
            Ok(Opt::Jitter(lit))
        } else if look.peek(kw::lock) {
            assign::<kw::lock>(input)?;
            Ok(Opt::Lock(parse_bool(input, "lock")?))
        } else if look.peek(kw::tags) {
            let keyword = input.parse::<kw::tags>()?;
            if input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
                return Ok(Opt::TagsOf(input.parse()?));
            }
            let content;
            syn::parenthesized!(content in input);
            let tags = content.parse_terminated(
                |input| {
                    input
                        .parse::<LitStr>()
                        .map_err(|err| syn::Error::new(err.span(), TAGS_MESSAGE))
                },
                Token![,],
            )?;
            Ok(Opt::Tags(keyword.span, tags))
        } else if look.peek(kw::soft_timeout) {
            assign::<kw::soft_timeout>(input)?;
            if input.peek(LitStr) {
                let lit: LitStr = input.parse()?;
                return match duration_millis(&lit.value()) {
                    Some(ms) if ms > 0 => Ok(Opt::SoftTimeout(SoftTimeout::Millis(ms, lit.span()))),
                    _ => Err(syn::Error::new(lit.span(), SOFT_TIMEOUT_MESSAGE)),
                };
            }
            if input.peek(Lit) {
                let lit: Lit = input.parse()?;
                return Err(syn::Error::new(lit.span(), SOFT_TIMEOUT_MESSAGE));
            }
            Ok(Opt::SoftTimeout(SoftTimeout::Expr(input.parse()?)))
        } else if look.peek(kw::codec) {
            assign::<kw::codec>(input)?;
            let lit: LitStr = input
                .parse()
                .map_err(|err| syn::Error::new(err.span(), codec_message("")))?;
            Ok(Opt::Codec(lit))
        } else if look.peek(kw::refresh) {
            assign::<kw::refresh>(input)?;
            let lit: LitStr = input
                .parse()
                .map_err(|err| syn::Error::new(err.span(), REFRESH_MESSAGE))?;
            Ok(Opt::Refresh(lit))
        } else if look.peek(kw::unless) {
            assign::<kw::unless>(input)?;
            Ok(Opt::Unless(input.parse()?))
        } else if look.peek(kw::key) {
            assign::<kw::key>(input)?;
            if input.peek(LitStr) {
                // `cached`'s `key = "u32"` names a type; here a string would be one key for
                // every call.
                let lit: LitStr = input.parse()?;
                return Err(syn::Error::new(lit.span(), KEY_STRING_MESSAGE));
            }
            Ok(Opt::Key(input.parse()?))
        } else if look.peek(kw::condition) {
            assign::<kw::condition>(input)?;
            Ok(Opt::Condition(input.parse()?))
        } else if look.peek(kw::local_ttl) {
            assign::<kw::local_ttl>(input)?;
            Ok(Opt::LocalTtl(parse_int(
                input,
                "local_ttl",
                "local_ttl = 30",
            )?))
        } else if look.peek(kw::local) {
            assign::<kw::local>(input)?;
            Ok(Opt::Local(parse_int(input, "local", "local = 10_000")?))
        } else if look.peek(kw::batch) {
            assign::<kw::batch>(input)?;
            let param = input
                .parse::<Ident>()
                .map_err(|err| syn::Error::new(err.span(), BATCH_MESSAGE))?;
            Ok(Opt::Batch(param))
        } else if look.peek(kw::companions) {
            assign::<kw::companions>(input)?;
            Ok(Opt::Companions(parse_bool(input, "companions")?))
        } else if input.peek(Ident) {
            let unknown: Ident = input.parse()?;
            Err(unknown_option(&unknown))
        } else {
            Err(look.error())
        }
    }
}

const KEY_STRING_MESSAGE: &str = "`key` takes an expression over the arguments, e.g. `key = id` \
    or `key = (user.id, &region)`, not a string: a string would be the same key for every call \
    (`cached`'s `key = \"u32\"` + `convert = ...` is `key = ...` here, with the conversion's \
    expression)";

const BATCH_MESSAGE: &str = "`batch` names the parameter holding the keys, e.g. `batch = ids` for \
    `ids: Vec<u64>`: the function is called once with the keys that are not cached and returns \
    a map from each key it found to its value";

const TAGS_MESSAGE: &str = "`tags(...)` lists string templates over the arguments, e.g. \
    `tags(\"product:{id}\", \"catalog\")` (`{name}` or `{name.field}` is replaced by that \
    argument's `Display`); for tags from the value write `tags = |v: &T| ...`";

const REFRESH_MESSAGE: &str = "`refresh` is where early and stale refreshes run: \
    `refresh = \"background\"` (in a spawned task; every caller is served the current value at \
    once) or `refresh = \"inline\"` (the default: the caller chosen to refresh waits for it)";

const SOFT_TIMEOUT_MESSAGE: &str = "`soft_timeout` is how long a call waits for a refresh while \
    it has a stale value to serve: a duration string with its unit, `soft_timeout = \"200ms\"` \
    (`\"2s\"`, `\"1s500ms\"`), or an expression of type `Duration`";

/// `"200ms"`, `"2s"`, `"1s500ms"`, `"1m"`: whole numbers with the units `h`, `m`, `s`, `ms`, each
/// at most once and from the largest down, in milliseconds. `None` for anything else.
fn duration_millis(text: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("ms", 1), ("m", 60_000), ("s", 1_000)];
    const ORDER: [&str; 4] = ["h", "m", "s", "ms"];
    let mut rest = text;
    let mut total: u64 = 0;
    let mut last: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // `ms` before `m`: the longest unit that matches.
        let (unit, factor) = UNITS.iter().find(|(unit, _)| rest.starts_with(unit))?;
        let rank = ORDER.iter().position(|u| u == unit)?;
        if last.is_some_and(|last| rank <= last) {
            return None;
        }
        last = Some(rank);
        rest = &rest[unit.len()..];
        total = total.checked_add(number.checked_mul(*factor)?)?;
    }
    last.map(|_| total)
}

/// What `codec = "..."` may be; `given` is what was written instead, if anything.
fn codec_message(given: &str) -> String {
    let names = |enabled: bool| {
        CODECS
            .iter()
            .filter(|(_, _, on)| *on == enabled)
            .map(|(name, _, _)| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (enabled, disabled) = (names(true), names(false));
    match CODECS.iter().find(|(name, _, _)| *name == given) {
        Some((name, _, _)) => format!(
            "the `{name}` codec is not enabled in this build (enabled: {enabled}); turn on the \
             `{name}` feature of redis-cached in Cargo.toml: \
             `redis-cached = {{ version = \"...\", features = [\"{name}\"] }}`"
        ),
        None if disabled.is_empty() => format!(
            "`codec` is the format this function's values are stored in: one of {enabled}, \
             e.g. `codec = \"json\"`; leave it out to use its cache's codec"
        ),
        None => format!(
            "`codec` is the format this function's values are stored in: one of {enabled} \
             (enabled in this build), or {disabled} (each behind the cargo feature of that name); \
             leave it out to use its cache's codec"
        ),
    }
}

/// A TTL: a literal alone is seconds or a duration string; anything else (a literal with a
/// method call included) is an expression evaluated on each call.
fn parse_ttl(input: ParseStream<'_>, option: &str, example: &str) -> syn::Result<TtlOpt> {
    let fork = input.fork();
    let literal = input.peek(Token![-])
        || (fork.parse::<Lit>().is_ok() && (fork.is_empty() || fork.peek(Token![,])));
    if literal {
        Ok(TtlOpt::Secs(parse_secs(input, option, example)?))
    } else {
        Ok(TtlOpt::Expr(input.parse()?))
    }
}

/// Parses the option's keyword and the `=` after it.
fn assign<K: Parse>(input: ParseStream<'_>) -> syn::Result<()> {
    input.parse::<K>()?;
    input.parse::<Token![=]>()?;
    Ok(())
}

/// A leading `-` is an error spanning the whole number, with `message`.
fn reject_negative(input: ParseStream<'_>, message: impl FnOnce() -> String) -> syn::Result<()> {
    if input.peek(Token![-]) {
        let minus: Token![-] = input.parse()?;
        let rest: proc_macro2::TokenTree = input.parse()?;
        return Err(syn::Error::new_spanned(
            quote::quote!(#minus #rest),
            message(),
        ));
    }
    Ok(())
}

fn parse_int(input: ParseStream<'_>, option: &str, example: &str) -> syn::Result<LitInt> {
    reject_negative(input, || {
        format!("`{option}` cannot be negative, e.g. `{example}`")
    })?;
    input.parse::<LitInt>().map_err(|err| {
        syn::Error::new(
            err.span(),
            format!("`{option}` takes a whole number as a literal, e.g. `{example}`"),
        )
    })
}

fn parse_bool(input: ParseStream<'_>, option: &str) -> syn::Result<LitBool> {
    input.parse::<LitBool>().map_err(|err| {
        syn::Error::new(
            err.span(),
            format!("`{option}` takes `true` or `false`, e.g. `{option} = false`"),
        )
    })
}

/// The most entries `local` may ask for: a per-function bound, not a way to turn it off.
const MAX_LOCAL_ENTRIES: u64 = 100_000_000;

/// The most of the TTL jitter may take away: more would make the TTL meaningless.
const MAX_JITTER: f64 = 0.5;

fn jitter_value(lit: &Lit) -> syn::Result<f32> {
    let value = match lit {
        Lit::Float(f) => f.base10_parse::<f64>().ok(),
        Lit::Int(i) => i.base10_parse::<u64>().ok().map(|v| v as f64),
        _ => None,
    };
    match value {
        Some(v) if (0.0..=MAX_JITTER).contains(&v) => Ok(v as f32),
        _ => Err(syn::Error::new(lit.span(), jitter_message())),
    }
}

fn jitter_message() -> String {
    format!(
        "`jitter` is the fraction of the TTL by which expiries are randomly shortened, \
         from 0.0 (none) to {MAX_JITTER}, e.g. `jitter = 0.1`"
    )
}

fn unknown_option(unknown: &Ident) -> syn::Error {
    let given = unknown.to_string();
    let valid = OPTIONS
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some((_, here)) = CACHED_OPTIONS.iter().find(|(o, _)| *o == given) {
        return syn::Error::new(
            unknown.span(),
            format!(
                "unknown option `{given}`: that is an option of the `cached` crate; here: {here}\n\
                 (docs/migrating-from-cached.md maps every `cached` option)"
            ),
        );
    }
    let mut msg = format!("unknown option `{given}`; the options are {valid}");
    if let Some(close) = OPTIONS.iter().find(|o| edit_distance(o, &given) <= 2) {
        msg.push_str(&format!("\nhelp: did you mean `{close}`?"));
    }
    syn::Error::new(unknown.span(), msg)
}

/// Levenshtein distance, for "did you mean" on a misspelt option.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

impl Args {
    /// Parses `ttl = 300, skip(a, b), ...` and checks each value; used through `syn::parse::Parser`.
    pub fn parse_terminated(input: ParseStream<'_>) -> syn::Result<Self> {
        let opts = Punctuated::<Opt, Token![,]>::parse_terminated(input)?;
        let mut seen: Vec<(&'static str, Span)> = Vec::new();
        let mut errors = Errors::default();
        let mut args = Args {
            ttl: 0,
            ttl_rule: None,
            unless: None,
            skip: Vec::new(),
            version: 0,
            name: None,
            cache: None,
            none_ttl: None,
            none_ttl_expr: None,
            include_self: None,
            stale: 0,
            early_refresh: true,
            jitter: None,
            lock: true,
            companions: true,
            local: None,
            local_ttl: None,
            condition: None,
            key: None,
            skip_span: None,
            background_refresh: None,
            tags: Vec::new(),
            tags_of: None,
            batch: None,
            codec: None,
            soft_timeout: None,
        };
        let mut ttl_given = false;
        for pair in opts.into_pairs() {
            let opt = pair.into_value();
            let (key, span) = match &opt {
                Opt::Ttl(TtlOpt::Secs(v)) => ("ttl", v.span()),
                Opt::Ttl(TtlOpt::Expr(v)) => ("ttl", v.span()),
                Opt::Skip(v) => ("skip", v.span()),
                Opt::Version(v) => ("version", v.span()),
                Opt::Name(v) => ("name", v.span()),
                Opt::Cache(v) => ("cache", v.span()),
                Opt::NoneTtl(TtlOpt::Secs(v)) => ("none_ttl", v.span()),
                Opt::NoneTtl(TtlOpt::Expr(v)) => ("none_ttl", v.span()),
                Opt::IncludeSelf(span) => ("include_self", *span),
                Opt::Stale(v) => ("stale", v.span()),
                Opt::EarlyRefresh(v) => ("early_refresh", v.span()),
                Opt::Jitter(v) => ("jitter", v.span()),
                Opt::Lock(v) => ("lock", v.span()),
                Opt::Companions(v) => ("companions", v.span()),
                Opt::Local(v) => ("local", v.span()),
                Opt::LocalTtl(v) => ("local_ttl", v.span()),
                Opt::Condition(v) => ("condition", v.span()),
                Opt::Key(v) => ("key", v.span()),
                Opt::Unless(v) => ("unless", v.span()),
                Opt::Refresh(v) => ("refresh", v.span()),
                Opt::Tags(span, _) => ("tags(...)", *span),
                Opt::TagsOf(v) => ("tags = ...", v.span()),
                Opt::Batch(v) => ("batch", v.span()),
                Opt::Codec(v) => ("codec", v.span()),
                Opt::SoftTimeout(v) => ("soft_timeout", v.span()),
            };
            if seen.iter().any(|(k, _)| *k == key) {
                errors.push(span, format!("`{key}` is given twice; keep one of them"));
                continue;
            }
            seen.push((key, span));
            match opt {
                Opt::Ttl(TtlOpt::Expr(expr)) => {
                    ttl_given = true;
                    args.ttl_rule = Some(match expr {
                        Expr::Closure(_) => TtlRule::Closure(expr),
                        expr => TtlRule::Expr(expr),
                    });
                }
                Opt::Ttl(TtlOpt::Secs(lit)) => {
                    ttl_given = true;
                    match positive_secs(&lit, "ttl", "300") {
                        Ok(secs) => args.ttl = secs,
                        Err(err) => errors.add(err),
                    }
                }
                Opt::Skip(names) => {
                    args.skip_span = Some(span);
                    args.skip = names.into_iter().collect();
                }
                Opt::Version(lit) => match lit.base10_parse::<u32>() {
                    Ok(v) => args.version = v,
                    Err(_) => errors.push(
                        lit.span(),
                        "`version` must fit in a u32, e.g. `version = 2`",
                    ),
                },
                Opt::Name(lit) => match check_name(&lit.value()) {
                    Ok(()) => args.name = Some(lit),
                    Err(msg) => errors.push(lit.span(), msg),
                },
                Opt::Cache(expr) => args.cache = Some(expr),
                Opt::NoneTtl(TtlOpt::Secs(lit)) => match positive_secs(&lit, "none_ttl", "30") {
                    Ok(secs) => args.none_ttl = Some((secs, lit.span())),
                    Err(err) => errors.add(err),
                },
                Opt::NoneTtl(TtlOpt::Expr(Expr::Closure(closure))) => errors.push_spanned(
                    closure,
                    "`none_ttl` has no value to look at (it is the TTL of a `None`): give seconds, a \
                     duration string or an expression, e.g. `none_ttl = \"30s\"` or \
                     `none_ttl = settings().missing_ttl`",
                ),
                Opt::NoneTtl(TtlOpt::Expr(expr)) => {
                    args.none_ttl = Some((0, expr.span()));
                    args.none_ttl_expr = Some(expr);
                }
                Opt::IncludeSelf(span) => args.include_self = Some(span),
                Opt::Stale(lit) => match lit.secs("stale", "60") {
                    Ok(secs) => args.stale = secs,
                    Err(err) => errors.add(err),
                },
                Opt::EarlyRefresh(lit) => args.early_refresh = lit.value,
                Opt::Jitter(lit) => match jitter_value(&lit) {
                    Ok(j) => args.jitter = Some(j),
                    Err(err) => errors.add(err),
                },
                Opt::Lock(lit) => args.lock = lit.value,
                Opt::Companions(lit) => args.companions = lit.value,
                Opt::Local(lit) => match lit.base10_parse::<u64>() {
                    Ok(n) if (1..=MAX_LOCAL_ENTRIES).contains(&n) => {
                        args.local = Some((n, lit.span()));
                    }
                    _ => errors.push(
                        lit.span(),
                        format!(
                            "`local` is how many entries of this function to keep in this process, \
                             from 1 to {MAX_LOCAL_ENTRIES}, e.g. `local = 10_000`; leave it out \
                             for no local tier"
                        ),
                    ),
                },
                Opt::Condition(expr) => args.condition = Some(expr),
                Opt::Key(expr) => args.key = Some(expr),
                Opt::Unless(expr) => match expr {
                    Expr::Closure(_) => args.unless = Some(expr),
                    other => errors.push(
                        other.span(),
                        "`unless` takes a closure over the value to be stored, returning `true` \
                         to skip storing it: `unless = |v: &T| v.is_empty()`",
                    ),
                },
                Opt::Tags(span, tags) if tags.is_empty() => errors.push(span, TAGS_MESSAGE),
                Opt::Tags(_, tags) => args.tags = tags.into_iter().collect(),
                Opt::TagsOf(expr) => match expr {
                    Expr::Closure(_) => args.tags_of = Some(expr),
                    other => errors.push_spanned(
                        other,
                        "`tags = ...` takes a closure over the value to be stored, returning the \
                         tags it depends on: `tags = |page: &Vec<Item>| page.iter().map(|i| \
                         format!(\"product:{}\", i.id)).collect::<Vec<_>>()`; for tags from the \
                         arguments write `tags(\"product:{id}\")`",
                    ),
                },
                Opt::Batch(param) => args.batch = Some(param),
                Opt::SoftTimeout(bound) => args.soft_timeout = Some(bound),
                Opt::Codec(lit) => match CODECS.iter().find(|(name, _, _)| *name == lit.value()) {
                    Some((_, variant, true)) => {
                        args.codec = Some(Ident::new(variant, lit.span()));
                    }
                    _ => errors.push(lit.span(), codec_message(&lit.value())),
                },
                Opt::Refresh(lit) => match lit.value().as_str() {
                    "background" => args.background_refresh = Some(lit.span()),
                    "inline" => {}
                    _ => errors.push(lit.span(), REFRESH_MESSAGE),
                },
                Opt::LocalTtl(lit) => match lit.base10_parse::<u64>() {
                    Ok(secs) if secs > 0 => args.local_ttl = Some((secs, lit.span())),
                    _ => errors.push(
                        lit.span(),
                        "`local_ttl` is how many seconds a local copy may be served without \
                         Redis's confirmation that it is current, at least 1, e.g. \
                         `local_ttl = 30`",
                    ),
                },
            }
        }
        if let Some(bound) = &args.soft_timeout {
            let why = if args.stale == 0 {
                Some(
                    "`soft_timeout` bounds how long a call waits for a refresh while it has a \
                     stale value to serve: it needs `stale = N` (how long an expired entry may be \
                     served), e.g. `stale = \"1m\"`",
                )
            } else if args.background_refresh.is_some() {
                Some(
                    "`soft_timeout` with `refresh = \"background\"`: a background refresh never \
                     makes a caller wait, so there is nothing to bound; keep one of them",
                )
            } else if args.batch.is_some() {
                Some("`soft_timeout` is not available for a batch function (`batch = ...`)")
            } else {
                None
            };
            if let Some(why) = why {
                errors.push(bound.span(), why);
            }
        }
        if let Some(skip) = args.skip_span.filter(|_| args.key.is_some()) {
            errors.push(
                skip,
                "`skip` and `key` together: with `key = ...` only that expression is hashed, so no \
                 argument is part of the key and none needs skipping; remove `skip(...)`",
            );
        }
        if let (Some(batch), Some(key)) = (&args.batch, &args.key) {
            errors.push_spanned(
                key,
                format!(
                    "`batch` and `key` together: with `batch = {batch}` each element of `{batch}` \
                     is hashed into its own item's key, with the other arguments; remove \
                     `key = ...` (leave arguments out of the keys with `skip(...)`)"
                ),
            );
        }
        if let Some(span) = args.include_self.filter(|_| args.key.is_some()) {
            errors.push(
                span,
                "`include_self` and `key` together: with `key = ...` only that expression is \
                 hashed; put what the key needs from `self` into it, e.g. `key = (self.tenant, id)`",
            );
        }
        if let (Some((_, span)), None) = (args.local_ttl, args.local) {
            errors.push(
                span,
                "`local_ttl` bounds the copies of the local tier, which `local = N` turns on: \
                 add `local = 10_000` (how many entries to keep in this process), or remove `local_ttl`",
            );
        }
        if !ttl_given {
            errors.push(Span::call_site(), "missing `ttl`: say how long entries live, in seconds, e.g. `#[redis_cache(ttl = 300)]`");
        }
        errors.finish(args)
    }
}

/// A number of seconds as written: `300`, or a duration string such as `"5m"` or `"1h30m"`.
pub(crate) enum Secs {
    Int(LitInt),
    Str(LitStr),
}

impl Secs {
    fn span(&self) -> Span {
        match self {
            Secs::Int(lit) => lit.span(),
            Secs::Str(lit) => lit.span(),
        }
    }

    /// The seconds it says; an error spanned on it otherwise.
    fn secs(&self, option: &str, example: &str) -> syn::Result<u64> {
        let secs = match self {
            Secs::Int(lit) => lit.base10_parse::<u64>().ok(),
            Secs::Str(lit) => duration_secs(&lit.value()),
        };
        secs.ok_or_else(|| syn::Error::new(self.span(), secs_message(option, example)))
    }
}

fn secs_message(option: &str, example: &str) -> String {
    format!(
        "`{option}` takes seconds, `{option} = {example}`, or a duration: `\"90s\"`, `\"5m\"`, \
         `\"2h\"`, `\"1d\"`, or units combined from the largest, `\"1h30m\"`"
    )
}

/// `"90s"`, `"5m"`, `"2h"`, `"1d"`, `"1h30m"`, `"1d12h"`: whole numbers with the units `d`, `h`,
/// `m`, `s`, each at most once and from the largest down. `None` for anything else or an
/// overflow.
fn duration_secs(text: &str) -> Option<u64> {
    const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let mut rest = text;
    let mut total: u64 = 0;
    let mut next_unit = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: u64 = rest[..digits].parse().ok()?;
        let unit = rest[digits..].chars().next()?;
        let at = UNITS[next_unit..].iter().position(|(u, _)| *u == unit)? + next_unit;
        total = total.checked_add(number.checked_mul(UNITS[at].1)?)?;
        next_unit = at + 1;
        rest = &rest[digits + unit.len_utf8()..];
    }
    Some(total)
}

fn parse_secs(input: ParseStream<'_>, option: &str, example: &str) -> syn::Result<Secs> {
    if input.peek(LitStr) {
        return Ok(Secs::Str(input.parse()?));
    }
    reject_negative(input, || secs_message(option, example))?;
    input
        .parse::<LitInt>()
        .map(Secs::Int)
        .map_err(|err| syn::Error::new(err.span(), secs_message(option, example)))
}

fn positive_secs(lit: &Secs, option: &str, example: &str) -> syn::Result<u64> {
    match lit.secs(option, example)? {
        0 => Err(syn::Error::new(
            lit.span(),
            format!(
                "`{option}` must be at least 1 second: Redis cannot store an entry that expires at once; \
                 remove #[redis_cache] to disable caching"
            ),
        )),
        secs => Ok(secs),
    }
}

/// A name becomes part of every key of the function, so it must not contain characters that
/// Redis glob patterns interpret (`* ? [ ] \`), whitespace, or be empty.
fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/');
    if name.is_empty() || name.len() > 128 {
        return Err(
            "`name` must be 1 to 128 characters long, e.g. `name = \"catalog::product\"`".into(),
        );
    }
    match name.chars().find(|c| !allowed(*c)) {
        Some(c) => Err(format!(
            "`name` cannot contain {c:?}: it becomes part of the Redis key, where only ASCII letters, \
             digits and `_ - . : /` are allowed (no glob or space characters)"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::duration_secs;

    #[test]
    fn duration_strings_are_units_from_the_largest_down() {
        for (text, secs) in [
            ("90s", 90),
            ("5m", 300),
            ("2h", 7_200),
            ("1d", 86_400),
            ("1h30m", 5_400),
            ("1d12h", 129_600),
            ("0s", 0),
        ] {
            assert_eq!(duration_secs(text), Some(secs), "{text}");
        }
        for text in [
            "",
            "5",
            "m",
            "5x",
            "30m1h",
            "1h1h",
            "1.5h",
            " 5m",
            "5m ",
            "-5m",
            "99999999999999999999d",
        ] {
            assert_eq!(duration_secs(text), None, "{text}");
        }
    }
}
