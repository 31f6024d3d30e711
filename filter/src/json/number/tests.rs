use super::parse_f64;

/// Reads `text` as core does and as `parse_f64` does: the same f64, bit for bit.
fn same(text: &str) {
    let expected = text.parse::<f64>().ok().map(f64::to_bits);
    let got = parse_f64(text).map(f64::to_bits);
    assert_eq!(
        got.map(f64::from_bits),
        expected.map(f64::from_bits),
        "{text}"
    );
    assert_eq!(got, expected, "{text} (bits)");
}

/// xorshift64*: the tests' numbers, the same every run.
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn numbers_a_token_or_a_request_may_hold_read_as_core_reads_them() {
    for text in [
        "0", "-0", "1", "4096", "4096.0", "4e3", "4E+3", "1767225600.5", "1767225600.999999",
        "0.1", "0.3", "123.456e-7", "-2.5", "1e22", "1e23", "9007199254740993",
        "9007199254740993.0000000001", "18446744073709551615.5", "1e400", "-1e400", "1e-400",
        "2.4703282292062327e-324", "2.4703282292062328e-324", "4.9406564584124654e-324",
        "2.2250738585072011e-308", "2.2250738585072014e-308", "1.7976931348623157e308",
        "1.7976931348623158e308", "1.7976931348623159e308", "0.000000000000000000000000001",
        "1e1000000000000", "1e-1000000000000", "0e400", "00012", "1.000000000000000000000001",
    ] {
        same(text);
    }
    same(&"1".repeat(30));
    same(&"9".repeat(400));
    same(&format!("0.{}1", "0".repeat(330)));
    same(&format!("1.{}1", "0".repeat(900)));
}

#[test]
fn text_that_is_not_a_json_number_is_none() {
    for text in ["", "-", "1.", ".5", "1e", "1e+", "e5", "1x", "--1", "1.2.3", "+1", " 1"] {
        assert_eq!(parse_f64(text), None, "{text:?}");
    }
}

#[test]
fn random_decimals_read_as_core_reads_them() {
    let mut numbers = Numbers(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let digits: String = (0..1 + numbers.below(40))
            .map(|_| char::from(b'0' + numbers.below(10) as u8))
            .collect();
        let point = numbers.below(digits.len() as u64 + 1) as usize;
        let mut text = digits[..point.max(1)].to_string();
        if point > 0 && point < digits.len() {
            text.push('.');
            text.push_str(&digits[point..]);
        }
        if numbers.below(2) == 0 {
            text.push_str(&format!("e{}", numbers.below(700) as i64 - 350));
        }
        same(&text);
    }
}

#[test]
fn every_f64_written_shortest_or_long_reads_back_as_core_reads_it() {
    let mut numbers = Numbers(0x2545_f491_4f6c_dd1d);
    for _ in 0..20_000 {
        let x = f64::from_bits(numbers.next() & !(1 << 63));
        if !x.is_finite() {
            continue;
        }
        same(&format!("{x:e}"));
        same(&format!("{:.*e}", numbers.below(30) as usize, x));
    }
}

/// The decimal integer `digits` less one.
fn one_less(digits: &str) -> String {
    let mut bytes = digits.as_bytes().to_vec();
    for digit in bytes.iter_mut().rev() {
        if *digit == b'0' {
            *digit = b'9';
        } else {
            *digit -= 1;
            break;
        }
    }
    String::from_utf8(bytes).unwrap_or_default()
}

#[test]
fn values_halfway_between_two_f64s_and_next_to_halfway_round_as_core_rounds_them() {
    // x = m × 2^k; halfway to the next f64 is (2m + 1) × 2^(k - 1), written exactly: an
    // integer for k ≥ 1, else (2m + 1) × 5^j / 10^j with j = 1 - k.
    let mut numbers = Numbers(0xdead_beef_cafe_f00d);
    for _ in 0..20_000 {
        let m = (1u128 << 52) | u128::from(numbers.next() & ((1 << 52) - 1));
        let k = numbers.below(100) as i32 - 30;
        let odd = 2 * m + 1;
        let (digits, exponent) = if k >= 1 {
            match odd.checked_shl(k as u32 - 1).filter(|v| v >> (k - 1) == odd) {
                Some(v) => (v.to_string(), 0),
                None => continue,
            }
        } else {
            let j = (1 - k) as u32;
            match 5u128.checked_pow(j).and_then(|p| odd.checked_mul(p)) {
                Some(v) => (v.to_string(), -(j as i64)),
                None => continue,
            }
        };
        same(&format!("{digits}e{exponent}"));
        // A hair above and below halfway.
        same(&format!("{digits}{}1e{}", "0".repeat(20), exponent - 21));
        same(&format!("{}{}e{}", one_less(&digits), "9".repeat(25), exponent - 25));
        // Halfway with 900 more digits, the last non-zero: past what is kept.
        same(&format!("{digits}{}1e{}", "0".repeat(900), exponent - 901));
    }
}
