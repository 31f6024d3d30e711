//! Turns the fuzzer's input into a sequence of small decisions. Reading past the end yields
//! zeros, so every input is a complete program: the fuzzer never needs a length field right.

/// A cursor over the fuzzer's bytes.
#[derive(Debug, Clone)]
pub struct Choices<'a> {
    bytes: &'a [u8],
}

impl<'a> Choices<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Choices { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&first, rest)) => {
                self.bytes = rest;
                first
            }
            None => 0,
        }
    }

    /// A number below `bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            return 0;
        }
        usize::from(self.byte()) % bound
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub fn u64(&mut self) -> u64 {
        let mut out = [0u8; 8];
        for slot in &mut out {
            *slot = self.byte();
        }
        u64::from_le_bytes(out)
    }

    /// What is left, consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

/// Splits `data` into consecutive chunks whose lengths come from `seed` (1 to 64 bytes each,
/// sometimes a single byte): the same stream cut at fuzzer-chosen boundaries.
pub fn chunks(data: &[u8], seed: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut sizes = Choices::new(seed);
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let size = if sizes.is_empty() {
            data.len() - at
        } else {
            1 + sizes.below(64)
        };
        let end = at.saturating_add(size).min(data.len());
        out.push(at..end);
        at = end;
    }
    out
}
