//! Property tests for the JSON stream parser: no input makes it panic, and
//! the way the input is split into chunks never changes the results.

use proptest::prelude::*;
use qapi::json::{to_json, JsonError, JsonStreamParser};
use serde_json::{Map, Value};

type Results = Vec<Result<Value, JsonError>>;

/// Feed `input` split at the given chunk lengths (cycled), then flush.
fn run_chunked(input: &[u8], chunks: &[usize]) -> Results {
    let mut p = JsonStreamParser::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut sizes = chunks.iter().cycle();
    while at < input.len() {
        let len = sizes.next().copied().unwrap_or(input.len()).max(1);
        let end = (at + len).min(input.len());
        out.extend(p.feed(&input[at..end]));
        at = end;
    }
    out.extend(p.flush());
    out
}

fn check_chunking(input: &[u8], chunks: &[usize]) -> Result<(), TestCaseError> {
    let whole = run_chunked(input, &[usize::MAX]);
    let bytewise = run_chunked(input, &[1]);
    prop_assert_eq!(&whole, &bytewise);
    if !chunks.is_empty() {
        let chunked = run_chunked(input, chunks);
        prop_assert_eq!(&whole, &chunked);
    }
    Ok(())
}

/// Bytes that matter to the lexer, to make random input interesting.
const SPECIAL: &[u8] =
    b"\x00\x01\t\n\r \x7f\x80\xc0\xc3\xed\xef\xfe\xff\"'\\/{}[]:,-+.0123456789eEuabfnrtl%";

fn nasty_byte() -> impl Strategy<Value = u8> {
    prop_oneof![any::<u8>(), proptest::sample::select(SPECIAL)]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[a-z\"'\\\\/\\u{0}-\\u{1f}é😀\u{ffff}]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec(("[a-c]{0,2}", inner), 0..5)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), nasty_byte()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<usize>(), nasty_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(input: &mut Vec<u8>, m: &Mutation) {
    let len = input.len();
    match *m {
        Mutation::Replace(i, b) if len > 0 => input[i % len] = b,
        Mutation::Insert(i, b) => input.insert(i % (len + 1), b),
        Mutation::Delete(i) if len > 0 => {
            input.remove(i % len);
        }
        Mutation::Truncate(i) => input.truncate(i % (len + 1)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic_and_ignore_chunking(
        input in proptest::collection::vec(nasty_byte(), 0..300),
        chunks in proptest::collection::vec(1usize..9, 0..6),
    ) {
        check_chunking(&input, &chunks)?;
    }

    #[test]
    fn mutated_json_never_panics_and_ignores_chunking(
        values in proptest::collection::vec(json_value(), 1..4),
        pretty in any::<bool>(),
        mutations in proptest::collection::vec(mutation(), 0..4),
        chunks in proptest::collection::vec(1usize..9, 0..6),
    ) {
        let mut input = Vec::new();
        for v in &values {
            input.extend(to_json(v, pretty).into_bytes());
            input.push(b'\n');
        }
        for m in &mutations {
            apply(&mut input, m);
        }
        check_chunking(&input, &chunks)?;
    }

    /// Writing a value and reading it back is stable after one round
    /// (the first round turns `-0.0` into the integer 0, like QEMU).  The
    /// text need not be: members sharing a hash bucket come out in reverse
    /// insertion order, so each round trip swaps them.
    #[test]
    fn write_read_reaches_a_fixed_point(value in json_value(), pretty in any::<bool>()) {
        let read = |text: String| {
            let mut p = JsonStreamParser::new();
            let mut out = p.feed(text.as_bytes());
            out.extend(p.flush());
            out
        };
        let first = read(to_json(&value, pretty));
        prop_assert_eq!(first.len(), 1);
        let Some(Ok(v1)) = first.into_iter().next() else {
            return Err(TestCaseError::fail("writer output did not parse"));
        };
        let second = read(to_json(&v1, pretty));
        prop_assert_eq!(second.len(), 1);
        let Some(Ok(v2)) = second.into_iter().next() else {
            return Err(TestCaseError::fail("second round did not parse"));
        };
        // serde_json's map equality ignores member order.
        prop_assert_eq!(&v2, &v1);
        let third = read(to_json(&v2, pretty));
        prop_assert_eq!(to_json(&v2, pretty).len(), to_json(&v1, pretty).len());
        prop_assert_eq!(third.len(), 1);
    }
}
