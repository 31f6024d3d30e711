//! Whether stream events may report usage, found by one look through their bytes: a stream
//! of 2 MB is looked through chunk by chunk, and this search is most of what the filter does
//! with a chunk that reports nothing.

/// Whether stream events (their data, or their raw bytes) may report usage. Every provider
/// reports it under a key with the word `usage` in it (`usage`, `usageMetadata`). Where the
/// word appears only as `"usage":null` (every chunk of a chat stream that asked for usage)
/// or not at all, there is none, unless the bytes have escapes, which could spell the word.
pub(crate) fn may_carry_usage(bytes: &[u8]) -> bool {
    // A block at a time, and one byte more to see the byte after each: a block where no
    // byte is `\` or a `u` before an `s` holds neither a `\u` nor the start of a `usage`.
    let wanted = block::Wanted::new();
    let mut at = 0;
    while let Some(window) = bytes[at..].first_chunk::<{ BLOCK + 1 }>() {
        if wanted.may_start_a_match(window) && matches_in(bytes, at, at + BLOCK) {
            return true;
        }
        at += BLOCK;
    }
    // The last block, padded with zeros (neither `\` nor `u` nor `s`).
    let mut last = [0; BLOCK + 1];
    last[..bytes.len() - at].copy_from_slice(&bytes[at..]);
    wanted.may_start_a_match(&last) && matches_in(bytes, at, bytes.len())
}

/// Bytes looked at together: four Wasm SIMD vectors, one test.
const BLOCK: usize = 64;

/// Whether a `\u` or a `usage` not followed by `":null` starts in `bytes[from..to]`.
fn matches_in(bytes: &[u8], from: usize, to: usize) -> bool {
    (from..to).any(|at| match bytes[at] {
        b'\\' => bytes.get(at + 1) == Some(&b'u'),
        b'u' => {
            let rest = &bytes[at..];
            rest.starts_with(b"usage") && !rest[5..].starts_with(b"\":null")
        }
        _ => false,
    })
}

/// Wasm SIMD: sixteen bytes compared at once.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod block {
    use core::arch::wasm32::{
        i8x16_eq, u8x16_splat, v128, v128_and, v128_any_true, v128_load, v128_or,
    };

    /// The bytes looked for, in every lane. Taken by value, so they stay in registers.
    #[derive(Clone, Copy)]
    pub struct Wanted {
        backslash: v128,
        u: v128,
        s: v128,
    }

    impl Wanted {
        pub fn new() -> Wanted {
            // Splatted from bytes the compiler cannot see, once: as constants, each comparison
            // in the loop would build its own (V8 does not move them out of it).
            let byte = |b: u8| u8x16_splat(std::hint::black_box(b));
            Wanted {
                backslash: byte(b'\\'),
                u: byte(b'u'),
                s: byte(b's'),
            }
        }

        /// Whether some byte of the block is `\`, or `u` with `s` after it.
        #[inline(always)]
        pub fn may_start_a_match(self, window: &[u8; super::BLOCK + 1]) -> bool {
            // Written out four times: the module is built for size, which would keep a loop.
            v128_any_true(v128_or(
                v128_or(self.lane(window, 0), self.lane(window, 16)),
                v128_or(self.lane(window, 32), self.lane(window, 48)),
            ))
        }

        /// The bytes of `window` from `from` that are `\`, or `u` with `s` after it.
        #[inline(always)]
        fn lane(self, window: &[u8; super::BLOCK + 1], from: usize) -> v128 {
            debug_assert!(from + 17 <= window.len());
            // SAFETY: `from` is at most BLOCK - 16, so both loads (16 bytes from `from` and
            // from `from + 1`) read inside `window`; `v128_load` has no alignment
            // requirement.
            let (bytes, next) = unsafe {
                let here = window.as_ptr().add(from);
                (
                    v128_load(here.cast::<v128>()),
                    v128_load(here.add(1).cast::<v128>()),
                )
            };
            v128_or(
                i8x16_eq(bytes, self.backslash),
                v128_and(i8x16_eq(bytes, self.u), i8x16_eq(next, self.s)),
            )
        }
    }
}

/// The same test a byte at a time, where there is no Wasm SIMD (native builds: the tests).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod block {
    #[derive(Clone, Copy)]
    pub struct Wanted;

    impl Wanted {
        pub fn new() -> Wanted {
            Wanted
        }

        /// Whether some byte of the block is `\`, or `u` with `s` after it.
        pub fn may_start_a_match(self, window: &[u8; super::BLOCK + 1]) -> bool {
            window
                .windows(2)
                .any(|pair| pair[0] == b'\\' || pair == b"us")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::may_carry_usage;

    #[test]
    fn a_usage_or_an_escape_is_found_wherever_it_falls_against_the_blocks() {
        let filler = b"{\"choices\":[{\"delta\":{\"content\":\"the gateway\"}}],";
        for cut in 0..140 {
            for (needle, found) in [
                (&b"\"usage\":{\"total_tokens\":3}}"[..], true),
                (b"\"usageMetadata\":{}}", true),
                (b"\"\\u0075sage\":{}}", true),
                (b"\"usage\":null}", false),
                (b"\"usage\":nul", true),
                (b"\"usag", false),
                (b"\"us", false),
                (b"\\", false),
                (b"\\u", true),
                (b"\"used\":1}", false),
            ] {
                let mut bytes = filler[..cut.min(filler.len())].to_vec();
                bytes.resize(cut, b' ');
                bytes.extend_from_slice(needle);
                assert_eq!(
                    may_carry_usage(&bytes),
                    found,
                    "{:?} after {cut} bytes",
                    String::from_utf8_lossy(needle)
                );
                // And with more bytes after it, so it is not in the tail.
                bytes.extend_from_slice(&[b' '; 140]);
                assert_eq!(may_carry_usage(&bytes), found, "{:?} + 140", String::from_utf8_lossy(needle));
            }
        }
    }

    #[test]
    fn only_nulls_and_plain_text_carry_none() {
        let event = b"data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"us, thus\"}}],\"usage\":null}\n\n";
        assert!(!may_carry_usage(&event.repeat(20)));
        assert!(!may_carry_usage(b""));
        let mut reported = event.repeat(20);
        reported.extend_from_slice(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n");
        assert!(may_carry_usage(&reported));
    }
}
