//! Helpers shared by the JSON integration tests: a deterministic PRNG and
//! generators of JSON text in QEMU's dialect (nasty strings and numbers,
//! random layout), plus byte-level mutations.

#![allow(dead_code)]

/// SplitMix64: tiny, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn pick_bytes<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
        items[self.below(items.len())]
    }
}

const WHITESPACE: &[&[u8]] = &[b"", b"", b"", b" ", b"\t", b"\r\n", b"\n  "];

fn ws(rng: &mut Rng, out: &mut Vec<u8>) {
    out.extend_from_slice(rng.pick_bytes(WHITESPACE));
}

/// Integer literals around every boundary QEMU cares about.
fn integer(rng: &mut Rng) -> String {
    const FIXED: &[&str] = &[
        "0",
        "-0",
        "1",
        "-1",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
        "-123456789012345678901234567890",
        "9007199254740993",
        "4294967296",
    ];
    match rng.below(4) {
        0 => rng.pick(FIXED).to_string(),
        1 => (rng.next_u64() as i64).to_string(),
        2 => rng.next_u64().to_string(),
        _ => (rng.next_u64() % 1000).to_string(),
    }
}

/// Float literals: random doubles, overflow, underflow, odd spellings.
fn float(rng: &mut Rng) -> String {
    const FIXED: &[&str] = &[
        "0.0",
        "-0.0",
        "1e999",
        "-1e999",
        "1e-400",
        "-1e-400",
        "4.9e-324",
        "2.2250738585072011e-308",
        "1.7976931348623157e308",
        "0.1",
        "100.0",
        "1E+2",
        "1e-7",
        "1.0000076293945312",
        "1.00000762939453125",
        "123456789012345678.0",
        "0.30000000000000004",
        "5e-5",
        "1e16",
        "1e17",
        "-0e0",
        "0.000001",
    ];
    match rng.below(5) {
        0 | 1 => rng.pick(FIXED).to_string(),
        2 => {
            let x = f64::from_bits(rng.next_u64());
            if x.is_finite() {
                format!("{x:e}")
            } else {
                "2.5".into()
            }
        }
        3 => {
            let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
                * 10f64.powi(rng.below(40) as i32 - 20);
            let s = format!("{x:?}");
            if s.contains('.') || s.contains('e') {
                s
            } else {
                format!("{s}.0")
            }
        }
        _ => format!(
            "{}{}.{}e{}{}",
            if rng.chance(30) { "-" } else { "" },
            rng.below(1000),
            rng.below(100000),
            rng.pick(&["", "+", "-"]),
            rng.below(330)
        ),
    }
}

const HEX4: &[&str] = &[
    "0000", "0001", "001f", "001F", "0020", "0022", "0027", "005c", "007f", "0080", "00e9", "00FF",
    "07ff", "0800", "20ac", "d7ff", "d800", "dbff", "dc00", "DFFF", "e000", "fdd0", "FDEF", "fdf0",
    "fffd", "fffe", "FFFF", "feff",
];

/// Body (without quotes) of a string in quote style `quote`.
fn string_body(rng: &mut Rng, quote: u8, out: &mut Vec<u8>) {
    let pieces = rng.below(8);
    for _ in 0..pieces {
        match rng.below(14) {
            0 => out.extend_from_slice(b"abc"),
            1 => out.extend_from_slice(rng.pick_bytes(&[
                &br#"\""#[..],
                br"\\",
                br"\/",
                br"\b",
                br"\f",
                br"\n",
                br"\r",
                br"\t",
                br"\'",
            ])),
            2 => {
                out.extend_from_slice(b"\\u");
                out.extend_from_slice(rng.pick(HEX4).as_bytes());
            }
            3 => {
                // Surrogate pair, usually valid.
                let hi = 0xD800 + rng.below(0x400);
                let lo = if rng.chance(80) {
                    0xDC00 + rng.below(0x400)
                } else {
                    rng.below(0x10000)
                };
                out.extend_from_slice(format!("\\u{hi:04x}\\u{lo:04X}").as_bytes());
            }
            4 => {
                let cp = rng.below(0x110000) as u32;
                if let Some(c) = char::from_u32(cp) {
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
            5 => out.extend_from_slice(
                rng.pick(&[
                    "é€😀",
                    "\u{7f}",
                    "\u{ffff}",
                    "\u{fdd0}",
                    "\u{10ffff}",
                    "\u{fffd}",
                ])
                .as_bytes(),
            ),
            6 => out.extend_from_slice(rng.pick_bytes(&[
                &b"\xC0\x80"[..],
                b"\xC3",
                b"\x80",
                b"\xED\xA0\x80",
                b"\xF4\x90\x80\x80",
                b"\xC1\xBF",
                b"\xE0\x80\x80",
                b"\xF8\x88\x80\x80\x80",
            ])),
            7 => out.push(if quote == b'"' { b'\'' } else { b'"' }),
            8 => out.extend_from_slice(b"%s %%"),
            9 => out.extend_from_slice(b"/"),
            10 => {
                out.extend_from_slice(rng.pick_bytes(&[&br"\x"[..], br"\u12", br"\U0041", br"\0"]))
            }
            _ => {
                for _ in 0..rng.below(6) {
                    out.push(b' ' + rng.below(95) as u8);
                }
                // Keep the string well-formed for the lexer.
                let last = out.len();
                for b in &mut out[last.saturating_sub(6)..] {
                    if *b == quote || *b == b'\\' {
                        *b = b'_';
                    }
                }
            }
        }
    }
}

fn string(rng: &mut Rng, out: &mut Vec<u8>) {
    let quote = if rng.chance(25) { b'\'' } else { b'"' };
    out.push(quote);
    string_body(rng, quote, out);
    out.push(quote);
}

fn key(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.chance(70) {
        let k = rng.pick(&[
            "a",
            "b",
            "id",
            "execute",
            "arguments",
            "k10",
            "k11",
            "",
            "x y",
            "é",
        ]);
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.push(b'"');
    } else {
        string(rng, out);
    }
}

/// A random JSON value in QEMU's dialect (may contain invalid strings).
pub fn value(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
    let kind = if depth >= 4 {
        rng.below(6)
    } else {
        rng.below(9)
    };
    match kind {
        0 => out.extend_from_slice(integer(rng).as_bytes()),
        1 => out.extend_from_slice(float(rng).as_bytes()),
        2 | 3 => string(rng, out),
        4 => out.extend_from_slice(rng.pick_bytes(&[&b"true"[..], b"false", b"null"])),
        5 => out.extend_from_slice(integer(rng).as_bytes()),
        6 | 7 => {
            out.push(b'[');
            let n = rng.below(5);
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                ws(rng, out);
                value(rng, depth + 1, out);
                ws(rng, out);
            }
            out.push(b']');
        }
        _ => {
            out.push(b'{');
            let n = rng.below(5);
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                ws(rng, out);
                key(rng, out);
                ws(rng, out);
                out.push(b':');
                ws(rng, out);
                value(rng, depth + 1, out);
            }
            ws(rng, out);
            out.push(b'}');
        }
    }
}

/// A `query-version` command whose `id` is a random value.
pub fn command(rng: &mut Rng) -> Vec<u8> {
    let mut id = Vec::new();
    value(rng, 0, &mut id);
    let mut members: Vec<Vec<u8>> = vec![
        b"\"execute\": \"query-version\"".to_vec(),
        [&b"\"id\": "[..], &id].concat(),
    ];
    if rng.chance(10) {
        members.push(b"'arguments': {}".to_vec());
    }
    if rng.chance(50) {
        members.reverse();
    }
    let mut out = b"{".to_vec();
    out.extend(members.join(&b", "[..]));
    out.push(b'}');
    out
}

const SPECIAL: &[u8] =
    b"\x00\x01\x1f\x7f\x80\xc0\xc3\xfe\xff\"'\\{}[]:,\n\t -0123456789.eE+uatrfln%";

/// Apply one to three random byte mutations.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        let len = input.len();
        let at = rng.below(len + 1);
        match rng.below(6) {
            0 if at < len => input[at] = *rng.pick(SPECIAL),
            1 => input.insert(at, *rng.pick(SPECIAL)),
            2 if at < len => {
                input.remove(at);
            }
            3 if at < len => input[at] = rng.next_u64() as u8,
            4 if len > 0 => {
                let end = (at + rng.below(8)).min(len);
                let piece = input[at.min(end)..end].to_vec();
                let to = rng.below(len + 1);
                input.splice(to..to, piece);
            }
            _ => input.truncate(at),
        }
    }
}

/// Random bytes, biased towards JSON-significant ones.
pub fn noise(rng: &mut Rng) -> Vec<u8> {
    (0..rng.below(40))
        .map(|_| {
            if rng.chance(60) {
                *rng.pick(SPECIAL)
            } else {
                rng.next_u64() as u8
            }
        })
        .collect()
}
