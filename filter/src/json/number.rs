//! A JSON number read as the nearest f64, as `str::parse::<f64>` reads it (round half to
//! even), without core's float parser: its table of powers of five alone is 11 KB of the
//! module, for the two places a number may have a fraction (a token's times, a request's
//! output limit). Most numbers take the exact fast path (at most 15 digits, a power of ten
//! up to 22); the rest are divided out exactly in big integers.

/// The nearest f64 to `text`, a JSON number (`-`, digits, a fraction, an exponent); `None`
/// for other text. Past f64's range: infinity; below its least step: zero.
pub fn parse_f64(text: &str) -> Option<f64> {
    let (negative, decimal) = Decimal::read(text.as_bytes())?;
    let magnitude = decimal.nearest_f64();
    Some(if negative { -magnitude } else { magnitude })
}

/// Significant digits kept: every value halfway between two f64s has at most 767, so past
/// 800 whether any other digit is non-zero is all that can change the rounding.
const MAX_DIGITS: usize = 800;

/// `digits × 10^exponent`, a little more when `truncated`.
#[derive(Debug)]
struct Decimal {
    /// Significant digits (0–9), no leading or trailing zeros.
    digits: Vec<u8>,
    exponent: i64,
    /// Non-zero digits were left out after the kept ones.
    truncated: bool,
}

impl Decimal {
    fn read(text: &[u8]) -> Option<(bool, Decimal)> {
        let (negative, text) = match text.strip_prefix(b"-") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let integer_end = text.iter().position(|b| !b.is_ascii_digit()).unwrap_or(text.len());
        let (integer, rest) = text.split_at(integer_end);
        let (fraction, rest) = match rest.strip_prefix(b".") {
            Some(rest) => {
                let end = rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
                if end == 0 {
                    return None;
                }
                rest.split_at(end)
            }
            None => (&rest[..0], rest),
        };
        if integer.is_empty() {
            return None;
        }
        let written_exponent = match rest {
            [] => 0,
            [b'e' | b'E', exponent @ ..] => read_exponent(exponent)?,
            _ => return None,
        };
        let mut decimal = Decimal {
            digits: Vec::new(),
            exponent: 0,
            truncated: false,
        };
        for &digit in integer.iter().chain(fraction) {
            let digit = digit - b'0';
            if decimal.digits.is_empty() && digit == 0 {
                continue;
            }
            if decimal.digits.len() < MAX_DIGITS {
                decimal.digits.push(digit);
            } else {
                decimal.truncated |= digit != 0;
                decimal.exponent += 1;
            }
        }
        // The digits written stand for an integer; the fraction's are its last ones.
        decimal.exponent -= fraction.len() as i64;
        while decimal.digits.last() == Some(&0) {
            decimal.digits.pop();
            decimal.exponent += 1;
        }
        decimal.exponent += written_exponent;
        Some((negative, decimal))
    }

    fn nearest_f64(&self) -> f64 {
        if self.digits.is_empty() {
            return 0.0;
        }
        let count = self.digits.len() as i64;
        // The value is below 10^(count + exponent) and at least a tenth of it.
        if count + self.exponent > 310 {
            return f64::INFINITY;
        }
        if count + self.exponent < -326 {
            return 0.0;
        }
        if !self.truncated && count <= 15 && (-22..=22).contains(&self.exponent) {
            // Both exact in f64: one operation, rounded once, as the nearest.
            let digits = self.digits.iter().fold(0u64, |n, &d| n * 10 + u64::from(d)) as f64;
            let power = POWERS_OF_TEN[self.exponent.unsigned_abs() as usize];
            return if self.exponent >= 0 {
                digits * power
            } else {
                digits / power
            };
        }
        self.divided_out()
    }

    /// The nearest f64 by exact division: `digits × 10^exponent` as a quotient of two big
    /// integers, scaled by a power of two so it has 54 or 55 bits, then rounded.
    fn divided_out(&self) -> f64 {
        let mut numerator = Big::from_digits(&self.digits);
        let mut denominator = Big::one();
        if self.exponent >= 0 {
            numerator.mul_pow10(self.exponent as u32);
        } else {
            denominator.mul_pow10(self.exponent.unsigned_abs() as u32);
        }
        // The value lies between 2^(estimate - 1) and 2^(estimate + 1).
        let estimate = numerator.bits() as i64 - denominator.bits() as i64;
        let scale = 54 - estimate;
        if scale >= 0 {
            numerator.shl(scale as u32);
        } else {
            denominator.shl(scale.unsigned_abs() as u32);
        }
        // value × 2^scale = quotient + remainder / denominator, quotient in [2^53, 2^55).
        let (quotient, exact) = numerator.divide(&denominator);
        let bits = 64 - i64::from(quotient.leading_zeros());
        // The weight of the last bit kept: 53 bits, or fewer below f64's least exponent.
        let shift = (bits - 53).max(scale - 1074);
        if shift > 63 {
            return 0.0;
        }
        let mut mantissa = quotient >> shift;
        let half = 1u64 << (shift - 1);
        let round = quotient & half != 0;
        let sticky = quotient & (half - 1) != 0 || !exact || self.truncated;
        if round && (sticky || mantissa & 1 == 1) {
            mantissa += 1;
        }
        let mut weight = shift - scale;
        if mantissa == 1 << 53 {
            mantissa >>= 1;
            weight += 1;
        }
        if mantissa < 1 << 52 {
            // Subnormal (weight is f64's least, 2^-1074), or zero.
            return f64::from_bits(mantissa);
        }
        let biased = weight + 52 + 1023;
        if biased >= 2047 {
            return f64::INFINITY;
        }
        f64::from_bits((biased as u64) << 52 | (mantissa & ((1 << 52) - 1)))
    }
}

/// An exponent's digits after the `e`, with its sign; a huge one is as good as ±10^6.
fn read_exponent(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0i64, |n, &d| (n * 10 + i64::from(d - b'0')).min(1_000_000));
    Some(if negative { -value } else { value })
}

/// 10^0 to 10^22: every one exact in f64.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// An unsigned big integer, 32 bits a limb, least significant first.
#[derive(Debug, Clone)]
struct Big(Vec<u32>);

impl Big {
    fn one() -> Big {
        Big(vec![1])
    }

    fn from_digits(digits: &[u8]) -> Big {
        let mut n = Big(Vec::with_capacity(digits.len() / 9 + 1));
        for group in digits.chunks(9) {
            let value = group.iter().fold(0u32, |v, &d| v * 10 + u32::from(d));
            n.mul_add(10u32.pow(group.len() as u32), value);
        }
        n
    }

    /// self × factor + addend.
    fn mul_add(&mut self, factor: u32, addend: u32) {
        let mut carry = u64::from(addend);
        for limb in &mut self.0 {
            let product = u64::from(*limb) * u64::from(factor) + carry;
            *limb = product as u32;
            carry = product >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
    }

    fn mul_pow10(&mut self, mut power: u32) {
        while power > 0 {
            let step = power.min(9);
            self.mul_add(10u32.pow(step), 0);
            power -= step;
        }
    }

    fn bits(&self) -> u32 {
        match self.0.iter().rposition(|&l| l != 0) {
            Some(top) => 32 * top as u32 + 32 - self.0[top].leading_zeros(),
            None => 0,
        }
    }

    fn shl(&mut self, bits: u32) {
        let (limbs, bits) = ((bits / 32) as usize, bits % 32);
        if bits > 0 {
            let mut carry = 0;
            for limb in &mut self.0 {
                let next = *limb >> (32 - bits);
                *limb = *limb << bits | carry;
                carry = next;
            }
            if carry != 0 {
                self.0.push(carry);
            }
        }
        self.0.splice(0..0, std::iter::repeat_n(0, limbs));
    }

    fn shr1(&mut self) {
        let mut carry = 0;
        for limb in self.0.iter_mut().rev() {
            let next = *limb << 31;
            *limb = *limb >> 1 | carry;
            carry = next;
        }
    }

    /// self >= other.
    fn at_least(&self, other: &Big) -> bool {
        let len = self.0.len().max(other.0.len());
        for at in (0..len).rev() {
            let (a, b) = (self.0.get(at).copied().unwrap_or(0), other.0.get(at).copied().unwrap_or(0));
            if a != b {
                return a > b;
            }
        }
        true
    }

    /// self -= other, where self >= other.
    fn subtract(&mut self, other: &Big) {
        let mut borrow = false;
        for (at, limb) in self.0.iter_mut().enumerate() {
            let (value, under) = limb.overflowing_sub(other.0.get(at).copied().unwrap_or(0));
            let (value, under_again) = value.overflowing_sub(u32::from(borrow));
            *limb = value;
            borrow = under || under_again;
        }
    }

    /// The quotient self / divisor when it fits 64 bits (here: 54 or 55), and whether the
    /// division was exact. Bit by bit: it runs only for numbers the fast path cannot take.
    fn divide(mut self, divisor: &Big) -> (u64, bool) {
        let steps = self.bits().saturating_sub(divisor.bits()).min(63);
        let mut shifted = divisor.clone();
        shifted.shl(steps);
        let mut quotient = 0u64;
        for _ in 0..=steps {
            quotient <<= 1;
            if self.at_least(&shifted) {
                self.subtract(&shifted);
                quotient |= 1;
            }
            shifted.shr1();
        }
        (quotient, self.bits() == 0)
    }
}

#[cfg(test)]
mod tests;
