//! Byte scans and comparisons eight bytes at a time, for the ≈ 1 KB bearer token and the
//! strings every request writes. On wasm a byte loop, and slice equality (compiler-builtins'
//! `memcmp`), costs about ten instructions a byte at the Worker's `opt-level = "z"`
//! (BENCHMARKS.md, change 57). A leaf module.
//!
//! The lane tests are the classic SWAR ones: a lane that meets the test sets its high bit.
//! They are exact for "some lane does": a lane borrows from (or carries into) the next only
//! when it meets the test itself.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each lane of `v` under `bound` (at most 0x80), and maybe of lanes above one.
pub const fn below(v: u64, bound: u8) -> u64 {
    v.wrapping_sub(ONES * bound as u64) & !v & HIGH
}

/// The high bit of each lane of `v` equal to `byte`, and maybe of lanes above one.
pub const fn equal(v: u64, byte: u8) -> u64 {
    below(v ^ (ONES * byte as u64), 1)
}

/// The high bit of each lane of `v` at 0x7f or above, and maybe of lanes above one.
const fn from_del(v: u64) -> u64 {
    (v.wrapping_add(ONES) | v) & HIGH
}

/// Whether any eight-byte word of `bytes` has a lane `test` flags, or any byte of its tail
/// meets `tail`.
pub fn any(bytes: &[u8], test: impl Fn(u64) -> u64, tail: impl Fn(u8) -> bool) -> bool {
    let (words, rest) = bytes.as_chunks::<8>();
    words.iter().any(|w| test(u64::from_le_bytes(*w)) != 0) || rest.iter().any(|&b| tail(b))
}

/// Whether every byte of `bytes` is visible ASCII or a space (0x20..=0x7e).
pub fn visible_ascii(bytes: &[u8]) -> bool {
    !any(
        bytes,
        |v| below(v, 0x20) | from_del(v),
        |b| !(0x20..0x7f).contains(&b),
    )
}

/// Whether `a` and `b` are the same bytes, every word of them compared (no early exit, so the
/// time depends on the length alone: fit for secrets, and for the verified-token cache's full
/// compare of a token).
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (wa, ra) = a.as_chunks::<8>();
    let (wb, rb) = b.as_chunks::<8>();
    let words = wa.iter().zip(wb).fold(0, |diff, (x, y)| {
        diff | (u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y))
    });
    let rest = ra.iter().zip(rb).fold(0, |diff, (x, y)| diff | (x ^ y));
    words == 0 && rest == 0
}

/// Where the first byte of `bytes` is that `test` flags in its word (or `tail` meets in the
/// tail), looked for eight bytes at a time. Exact: the lowest lane a test flags is always a
/// true one (only lanes above a true one may be flagged falsely).
pub fn first(bytes: &[u8], test: impl Fn(u64) -> u64, tail: impl Fn(u8) -> bool) -> Option<usize> {
    let (words, rest) = bytes.as_chunks::<8>();
    for (i, w) in words.iter().enumerate() {
        let flagged = test(u64::from_le_bytes(*w));
        if flagged != 0 {
            return Some(i * 8 + (flagged.trailing_zeros() / 8) as usize);
        }
    }
    let start = words.len() * 8;
    rest.iter().position(|&b| tail(b)).map(|p| start + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_ascii_is_exact_for_every_byte_anywhere_in_a_word_or_the_tail() {
        let plain = [b'a'; 19];
        for b in 0..=255u8 {
            for at in 0..plain.len() {
                for len in [at + 1, plain.len()] {
                    let mut v = plain;
                    v[at] = b;
                    // A neighbour at the range's edges, where a borrow or a carry would show.
                    for edge in [0x20, 0x7e, b'a'] {
                        if at + 1 < len {
                            v[at + 1] = edge;
                        }
                        let bytes = &v[..len];
                        let want = bytes.iter().all(|c| (0x20..0x7f).contains(c));
                        assert_eq!(visible_ascii(bytes), want, "{bytes:?}");
                    }
                }
            }
        }
        assert!(visible_ascii(b""));
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let token: Vec<u8> = (0..1_031u32).map(|i| (i * 7 % 251) as u8).collect();
        assert!(same_bytes(&token, &token.clone()));
        assert!(same_bytes(b"", b""));
        // Any one byte differing, in a word or in the tail, and any length difference.
        for i in [0, 7, 8, 500, 1_023, 1_024, 1_030] {
            let mut other = token.clone();
            other[i] ^= 0x20;
            assert!(!same_bytes(&token, &other), "byte {i}");
        }
        assert!(!same_bytes(&token, &token[..1_030]));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"abcd"));
        for n in 0..20 {
            let a = &token[..n];
            assert!(same_bytes(a, a));
            assert_eq!(same_bytes(a, &token[1..=n]), a == &token[1..=n]);
        }
    }

    #[test]
    fn first_finds_quotes_and_backslashes_at_every_position() {
        let find = |bytes: &[u8]| {
            first(
                bytes,
                |v| equal(v, b'"') | equal(v, b'\\'),
                |b| b == b'"' || b == b'\\',
            )
        };
        for len in 0..20 {
            for at in 0..len {
                for c in [b'"', b'\\'] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = c;
                    // A byte next to the two in value must not be taken for them.
                    if at > 0 {
                        bytes[at - 1] = c ^ 1;
                    }
                    assert_eq!(find(&bytes), Some(at), "{len} {at}");
                    // Two in one word: the first is found.
                    if at + 1 < len {
                        bytes[at + 1] = b'"';
                        assert_eq!(find(&bytes), Some(at), "{len} {at}");
                        bytes[at + 1] = b'a';
                    }
                    bytes[at] = c + 128;
                    assert_eq!(find(&bytes), None, "{len} {at}");
                }
            }
        }
    }
}
