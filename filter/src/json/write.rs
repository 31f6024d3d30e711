//! Writing the few JSON documents the filter sends or keeps — refusal bodies, usage reports,
//! its records in shared data — field by field, byte for byte as serde_json's compact writer
//! writes them (the same escapes, no spaces), so what the control plane reads with serde
//! does not change. serde's derive would compile a serializer per type; this is one small
//! writer, and each type says its fields next to its reader.
//!
//! Reading is `node`'s and `raw`'s.

use std::collections::HashMap;

/// A value written as JSON.
pub trait ToJson {
    fn write_json(&self, out: &mut String);
}

/// `value` as JSON text.
pub fn to_string(value: &(impl ToJson + ?Sized)) -> String {
    let mut out = String::new();
    value.write_json(&mut out);
    out
}

/// `value` as JSON bytes.
pub fn to_vec(value: &(impl ToJson + ?Sized)) -> Vec<u8> {
    to_string(value).into_bytes()
}

/// Writes an object: `members` adds its fields in order.
pub fn object(out: &mut String, members: impl FnOnce(&mut Members<'_>)) {
    out.push('{');
    members(&mut Members { out, empty: true });
    out.push('}');
}

/// The members of an object being written.
pub struct Members<'a> {
    out: &'a mut String,
    empty: bool,
}

impl Members<'_> {
    pub fn field(&mut self, name: &str, value: &dyn ToJson) -> &mut Self {
        if !std::mem::take(&mut self.empty) {
            self.out.push(',');
        }
        name.write_json(self.out);
        self.out.push(':');
        value.write_json(self.out);
        self
    }
}

/// An object whose members a closure writes: a nested object, without a type for it.
pub struct Fields<F>(F);

pub fn fields<F: Fn(&mut Members<'_>)>(members: F) -> Fields<F> {
    Fields(members)
}

impl<F: Fn(&mut Members<'_>)> ToJson for Fields<F> {
    fn write_json(&self, out: &mut String) {
        object(out, |members| (self.0)(members));
    }
}

impl ToJson for str {
    /// As serde_json escapes: `"`, `\` and control characters, the common ones short.
    fn write_json(&self, out: &mut String) {
        out.reserve(self.len() + 2);
        out.push('"');
        let mut plain = 0;
        for (at, byte) in self.bytes().enumerate() {
            let short = match byte {
                b'"' => '"',
                b'\\' => '\\',
                b'\n' => 'n',
                b'\r' => 'r',
                b'\t' => 't',
                0x08 => 'b',
                0x0c => 'f',
                0..=0x1f => 'u',
                _ => continue,
            };
            out.push_str(&self[plain..at]);
            plain = at + 1;
            out.push('\\');
            out.push(short);
            if short == 'u' {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("00");
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
        }
        out.push_str(&self[plain..]);
        out.push('"');
    }
}

impl ToJson for String {
    fn write_json(&self, out: &mut String) {
        self.as_str().write_json(out);
    }
}

impl ToJson for u64 {
    fn write_json(&self, out: &mut String) {
        push_u64(out, *self);
    }
}

/// Appends `n` in decimal. Wasm has no 64-bit multiply-high, so a `u64` division by 10 is a
/// real division in the engine: eight digits at a time are split off in `u64`, and each
/// eight written in `u32` arithmetic (which compiles to multiplications). Rate-limit headers
/// write several numbers of up to 20 digits on every answer of a plan.
pub(crate) fn push_u64(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        let mut eight = (rest % 100_000_000) as u32;
        rest /= 100_000_000;
        if rest == 0 {
            // The leading digits: no zeros in front.
            loop {
                at -= 1;
                digits[at] = b'0' + (eight % 10) as u8;
                eight /= 10;
                if eight == 0 {
                    break;
                }
            }
            break;
        }
        for _ in 0..8 {
            at -= 1;
            digits[at] = b'0' + (eight % 10) as u8;
            eight /= 10;
        }
    }
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

impl ToJson for u32 {
    fn write_json(&self, out: &mut String) {
        u64::from(*self).write_json(out);
    }
}

impl ToJson for u16 {
    fn write_json(&self, out: &mut String) {
        u64::from(*self).write_json(out);
    }
}

impl ToJson for bool {
    fn write_json(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

impl<T: ToJson> ToJson for Option<T> {
    fn write_json(&self, out: &mut String) {
        match self {
            Some(value) => value.write_json(out),
            None => out.push_str("null"),
        }
    }
}

impl<T: ToJson> ToJson for [T] {
    fn write_json(&self, out: &mut String) {
        out.push('[');
        for (i, item) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            item.write_json(out);
        }
        out.push(']');
    }
}

impl<T: ToJson, const N: usize> ToJson for [T; N] {
    fn write_json(&self, out: &mut String) {
        self.as_slice().write_json(out);
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn write_json(&self, out: &mut String) {
        self.as_slice().write_json(out);
    }
}

/// In the map's order, as serde_json writes a `HashMap`.
impl<T: ToJson> ToJson for HashMap<String, T> {
    fn write_json(&self, out: &mut String) {
        object(out, |members| {
            for (key, value) in self {
                members.field(key, value);
            }
        });
    }
}

impl<T: ToJson + ?Sized> ToJson for &T {
    fn write_json(&self, out: &mut String) {
        (**self).write_json(out);
    }
}

#[cfg(test)]
mod tests;
