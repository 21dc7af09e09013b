//! Exact COBOL numbers: zoned decimal (`DISPLAY`), packed decimal (`COMP-3`) and big-endian
//! binary (`COMP`), read into and written from an unscaled `i128` plus the picture's scale.
//!
//! Never floats: a benefit amount read as `S9(7)V99` bytes is the integer of cents and the scale
//! 2, formatted or turned into a `rust_decimal::Decimal` without rounding. Pictures have at most
//! 28 digits (what `Decimal` holds exactly), so every unscaled value fits an `i128` with room to
//! spare and the digit loops cannot overflow.
//!
//! The sign rules are strict, because a lenient reader turns a misaligned layout into plausible
//! wrong amounts instead of an error:
//!
//! - Zoned, unsigned picture: every byte `F0`–`F9`, except that the last byte may also carry the
//!   positive zone `C` (`C0`–`C9`, as some producers write after a signed `MOVE`). A `D` zone
//!   (negative) in an unsigned field is refused.
//! - Zoned, signed with an overpunched sign (trailing, the default, or `SIGN IS LEADING`): the
//!   sign byte's zone is `C` (+), `D` (−) or `F` (+, "unsigned positive"); every other byte is
//!   `F0`–`F9`. The other sign zones IBM hardware tolerates (`A`, `B`, `E`) are refused with
//!   [`DecodeProblem::BadSign`]; any other non-digit byte is [`DecodeProblem::NotADigit`].
//! - Zoned with a separate sign: a `+` (0x4E) or `-` (0x60) byte before or after `F0`–`F9` digits.
//! - Packed: the last nibble is the sign, `C` or `F` positive and `D` negative (signed pictures),
//!   `C` or `F` (unsigned pictures); `A`, `B`, `E` and digits are refused. Every other nibble is a
//!   digit 0–9, and when the picture has an even number of digits the first (pad) nibble is 0.
//! - Binary: big-endian two's complement for signed pictures, plain unsigned for unsigned ones,
//!   in 2 (1–4 digits), 4 (5–9) or 8 (10–18) bytes; a value with more digits than the picture
//!   (COBOL `TRUNC(STD)`) is [`DecodeProblem::BinaryOverflow`].
//!
//! Writing uses the preferred forms: `C`/`D` signs for signed fields, `F` for unsigned ones.

use std::fmt;

use rust_decimal::Decimal;

use super::codec::DecodeProblem;
use super::copybook::{Sign, Usage};
use super::ebcdic::{MINUS, PLUS};

/// Most digits a numeric picture may have: `Decimal` holds 28 digits exactly.
pub(crate) const MAX_DIGITS: u8 = 28;

/// Most digits of a binary picture: 8 bytes hold every 18-digit value.
pub(crate) const MAX_BINARY_DIGITS: u8 = 18;

/// 10^n for n in 0..=38, so range checks need no `pow` on the hot path.
const POW10: [u128; 39] = {
    let mut table = [1u128; 39];
    let mut n = 1;
    while n < 39 {
        table[n] = table[n - 1] * 10;
        n += 1;
    }
    table
};

/// 10^n as an `i128`; `n` is at most 28 wherever it is called.
fn pow10(n: u32) -> i128 {
    POW10.get(n as usize).map_or(i128::MAX, |&p| p as i128)
}

/// The shape of one numeric field: what the picture and usage say about its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NumSpec {
    /// Total digits, integer and fraction.
    pub(crate) digits: u8,
    /// Digits after the implied point.
    pub(crate) scale: u8,
    /// Where the sign is (`Unsigned` when the picture has no `S`).
    pub(crate) sign: Sign,
    /// Zoned, packed or binary.
    pub(crate) usage: Usage,
}

/// Why a value cannot be written into a numeric field. Names limits, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberError {
    /// More integer digits than the picture has.
    IntegerDigits {
        /// Integer digits the picture holds.
        allowed: u8,
    },
    /// More (non-zero) fraction digits than the scale: refused rather than rounded.
    FractionDigits {
        /// The picture's scale.
        scale: u8,
    },
    /// A negative value for a picture without `S`.
    Negative,
}

impl fmt::Display for NumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IntegerDigits { allowed } => {
                write!(f, "has more integer digits than the picture's {allowed}")
            }
            Self::FractionDigits { scale } => write!(
                f,
                "has more decimal places than the picture's {scale} (values are never rounded)"
            ),
            Self::Negative => write!(f, "is negative and the picture has no sign"),
        }
    }
}

impl NumSpec {
    /// Checks that the picture is one the codec can read exactly.
    pub(crate) fn new(digits: u8, scale: u8, sign: Sign, usage: Usage) -> Result<Self, String> {
        if digits == 0 || digits > MAX_DIGITS {
            return Err(format!(
                "has {digits} digits; 1 to {MAX_DIGITS} are supported"
            ));
        }
        if scale > digits {
            return Err(format!("has scale {scale} above its {digits} digits"));
        }
        if matches!(usage, Usage::Binary | Usage::NativeBinary) && digits > MAX_BINARY_DIGITS {
            return Err(format!(
                "is binary with {digits} digits; at most {MAX_BINARY_DIGITS} fit 8 bytes"
            ));
        }
        Ok(Self {
            digits,
            scale,
            sign,
            usage,
        })
    }

    /// Whether the picture has an `S`.
    pub(crate) fn signed(&self) -> bool {
        self.sign != Sign::Unsigned
    }

    /// Bytes the field takes.
    pub(crate) fn byte_len(&self) -> usize {
        let digits = usize::from(self.digits);
        match self.usage {
            Usage::Display => match self.sign {
                Sign::LeadingSeparate | Sign::TrailingSeparate => digits + 1,
                _ => digits,
            },
            Usage::Packed => digits / 2 + 1,
            Usage::Binary | Usage::NativeBinary => match self.digits {
                0..=4 => 2,
                5..=9 => 4,
                _ => 8,
            },
        }
    }

    /// Reads the field as an unscaled integer (the value times 10^scale). Negative zero reads
    /// as 0. `bytes` must be exactly [`NumSpec::byte_len`] long.
    pub(crate) fn decode_unscaled(&self, bytes: &[u8]) -> Result<i128, DecodeProblem> {
        if bytes.len() != self.byte_len() {
            return Err(DecodeProblem::ShortRecord {
                needed: self.byte_len(),
                actual: bytes.len(),
            });
        }
        match self.usage {
            Usage::Display => decode_zoned(bytes, self.sign),
            Usage::Packed => decode_packed(bytes, self.digits, self.signed()),
            Usage::Binary => decode_binary(bytes, Some(self.digits), self.signed()),
            Usage::NativeBinary => decode_binary(bytes, None, self.signed()),
        }
    }

    /// Reads the field as an exact decimal that keeps the picture's scale (`-120.50`).
    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<Decimal, DecodeProblem> {
        let unscaled = self.decode_unscaled(bytes)?;
        // |unscaled| < 10^28 < 2^96 and scale <= 28, so this always succeeds.
        Decimal::try_from_i128_with_scale(unscaled, u32::from(self.scale)).map_err(|_| {
            DecodeProblem::BinaryOverflow {
                value: unscaled,
                digits: self.digits,
            }
        })
    }

    /// The unscaled integer for `value` at this picture's scale, refusing rather than rounding.
    pub(crate) fn unscaled(&self, value: Decimal) -> Result<i128, NumberError> {
        let mantissa = value.mantissa();
        let from = value.scale();
        let to = u32::from(self.scale);
        let unscaled = if from > to {
            let divisor = pow10(from - to);
            if mantissa % divisor != 0 {
                return Err(NumberError::FractionDigits { scale: self.scale });
            }
            mantissa / divisor
        } else {
            mantissa
                .checked_mul(pow10(to - from))
                .ok_or(NumberError::IntegerDigits {
                    allowed: self.digits - self.scale,
                })?
        };
        self.check(unscaled)?;
        Ok(unscaled)
    }

    /// Refuses an unscaled value the picture cannot hold.
    pub(crate) fn check(&self, unscaled: i128) -> Result<(), NumberError> {
        if unscaled < 0 && !self.signed() {
            return Err(NumberError::Negative);
        }
        // Native binary (COMP-5) is bounded by its bytes, which `encode_binary` checks.
        if self.usage != Usage::NativeBinary
            && unscaled.unsigned_abs() >= POW10[usize::from(self.digits)]
        {
            return Err(NumberError::IntegerDigits {
                allowed: self.digits - self.scale,
            });
        }
        Ok(())
    }

    /// Writes `value` into `out` (exactly [`NumSpec::byte_len`] bytes).
    pub(crate) fn encode(&self, value: Decimal, out: &mut [u8]) -> Result<(), NumberError> {
        let unscaled = self.unscaled(value)?;
        self.encode_unscaled(unscaled, out)
    }

    /// Writes an unscaled value into `out`; refuses one the picture cannot hold.
    pub(crate) fn encode_unscaled(
        &self,
        unscaled: i128,
        out: &mut [u8],
    ) -> Result<(), NumberError> {
        self.check(unscaled)?;
        let too_big = NumberError::IntegerDigits {
            allowed: self.digits - self.scale,
        };
        if out.len() != self.byte_len() {
            return Err(too_big);
        }
        let negative = unscaled < 0;
        let magnitude = unscaled.unsigned_abs();
        match self.usage {
            Usage::Display => encode_zoned(magnitude, negative, self.sign, out),
            Usage::Packed => encode_packed(magnitude, negative, self.signed(), out),
            Usage::Binary | Usage::NativeBinary => {
                encode_binary(unscaled, self.signed(), out).ok_or(too_big)?
            }
        }
        Ok(())
    }
}

/// Zoned decimal: one byte per digit, the sign overpunched in a zone or in a separate byte.
fn decode_zoned(bytes: &[u8], sign: Sign) -> Result<i128, DecodeProblem> {
    let (digits, separate) = match sign {
        Sign::LeadingSeparate => match bytes.split_first() {
            Some((&sign, digits)) => (digits, Some(sign)),
            None => (bytes, None),
        },
        Sign::TrailingSeparate => match bytes.split_last() {
            Some((&sign, digits)) => (digits, Some(sign)),
            None => (bytes, None),
        },
        _ => (bytes, None),
    };
    let sign_index = match sign {
        Sign::Leading => Some(0),
        Sign::Trailing | Sign::Unsigned => digits.len().checked_sub(1),
        Sign::LeadingSeparate | Sign::TrailingSeparate => None,
    };
    let mut negative = match separate {
        Some(PLUS) => false,
        Some(MINUS) => true,
        Some(byte) => return Err(DecodeProblem::BadSeparateSign { byte }),
        None => false,
    };
    let mut value: i128 = 0;
    for (index, &byte) in digits.iter().enumerate() {
        let zone = byte >> 4;
        let digit = byte & 0x0F;
        if digit > 9 {
            return Err(DecodeProblem::NotADigit { byte });
        }
        if zone != 0xF {
            if Some(index) != sign_index {
                return Err(DecodeProblem::NotADigit { byte });
            }
            match (sign, zone) {
                (_, 0xC) => {}
                (Sign::Unsigned, _) => return Err(DecodeProblem::NotADigit { byte }),
                (_, 0xD) => negative = true,
                (_, 0xA | 0xB | 0xE) => return Err(DecodeProblem::BadSign { nibble: zone }),
                _ => return Err(DecodeProblem::NotADigit { byte }),
            }
        }
        value = value * 10 + i128::from(digit);
    }
    Ok(if negative { -value } else { value })
}

/// Packed decimal: two digits per byte, high nibble first, the sign in the last nibble.
fn decode_packed(bytes: &[u8], digits: u8, signed: bool) -> Result<i128, DecodeProblem> {
    let Some((&last, body)) = bytes.split_last() else {
        return Ok(0);
    };
    let pad = digits.is_multiple_of(2);
    let mut value: i128 = 0;
    for (index, &byte) in body.iter().enumerate() {
        let high = byte >> 4;
        let low = byte & 0x0F;
        if high > 9 || (pad && index == 0 && high != 0) {
            return Err(DecodeProblem::BadPackedDigit { nibble: high });
        }
        if low > 9 {
            return Err(DecodeProblem::BadPackedDigit { nibble: low });
        }
        value = value * 100 + i128::from(high) * 10 + i128::from(low);
    }
    let high = last >> 4;
    if high > 9 || (pad && body.is_empty() && high != 0) {
        return Err(DecodeProblem::BadPackedDigit { nibble: high });
    }
    value = value * 10 + i128::from(high);
    match (last & 0x0F, signed) {
        (0xC | 0xF, _) => Ok(value),
        (0xD, true) => Ok(-value),
        (nibble, _) => Err(DecodeProblem::BadSign { nibble }),
    }
}

/// Binary: big-endian, two's complement when signed, at most `digits` decimal digits.
/// Big-endian two's complement; `digits` bounds the value (`None` for COMP-5, bounded only by
/// its bytes).
fn decode_binary(bytes: &[u8], digits: Option<u8>, signed: bool) -> Result<i128, DecodeProblem> {
    let value: i128 = match (bytes, signed) {
        (&[a, b], true) => i16::from_be_bytes([a, b]).into(),
        (&[a, b], false) => u16::from_be_bytes([a, b]).into(),
        (&[a, b, c, d], true) => i32::from_be_bytes([a, b, c, d]).into(),
        (&[a, b, c, d], false) => u32::from_be_bytes([a, b, c, d]).into(),
        (&[a, b, c, d, e, f, g, h], true) => i64::from_be_bytes([a, b, c, d, e, f, g, h]).into(),
        (&[a, b, c, d, e, f, g, h], false) => u64::from_be_bytes([a, b, c, d, e, f, g, h]).into(),
        _ => {
            return Err(DecodeProblem::ShortRecord {
                needed: 8,
                actual: bytes.len(),
            });
        }
    };
    if let Some(digits) = digits
        && value.unsigned_abs() >= POW10[usize::from(digits)]
    {
        return Err(DecodeProblem::BinaryOverflow { value, digits });
    }
    Ok(value)
}

fn encode_zoned(mut magnitude: u128, negative: bool, sign: Sign, out: &mut [u8]) {
    let (digits, separate) = match sign {
        Sign::LeadingSeparate => match out.split_first_mut() {
            Some((sign, digits)) => (digits, Some(sign)),
            None => return,
        },
        Sign::TrailingSeparate => match out.split_last_mut() {
            Some((sign, digits)) => (digits, Some(sign)),
            None => return,
        },
        _ => (out, None),
    };
    for byte in digits.iter_mut().rev() {
        *byte = 0xF0 | (magnitude % 10) as u8;
        magnitude /= 10;
    }
    let zone = if negative { 0xD0 } else { 0xC0 };
    match sign {
        Sign::Unsigned => {}
        Sign::Trailing => {
            if let Some(last) = digits.last_mut() {
                *last = zone | (*last & 0x0F);
            }
        }
        Sign::Leading => {
            if let Some(first) = digits.first_mut() {
                *first = zone | (*first & 0x0F);
            }
        }
        Sign::LeadingSeparate | Sign::TrailingSeparate => {
            if let Some(sign) = separate {
                *sign = if negative { MINUS } else { PLUS };
            }
        }
    }
}

fn encode_packed(mut magnitude: u128, negative: bool, signed: bool, out: &mut [u8]) {
    let sign = match (signed, negative) {
        (false, _) => 0x0F,
        (true, false) => 0x0C,
        (true, true) => 0x0D,
    };
    let mut low_is_sign = true;
    for byte in out.iter_mut().rev() {
        let low = if low_is_sign {
            low_is_sign = false;
            sign
        } else {
            let digit = (magnitude % 10) as u8;
            magnitude /= 10;
            digit
        };
        let high = (magnitude % 10) as u8;
        magnitude /= 10;
        *byte = (high << 4) | low;
    }
}

fn encode_binary(value: i128, signed: bool, out: &mut [u8]) -> Option<()> {
    match (out.len(), signed) {
        (2, true) => out.copy_from_slice(&i16::try_from(value).ok()?.to_be_bytes()),
        (2, false) => out.copy_from_slice(&u16::try_from(value).ok()?.to_be_bytes()),
        (4, true) => out.copy_from_slice(&i32::try_from(value).ok()?.to_be_bytes()),
        (4, false) => out.copy_from_slice(&u32::try_from(value).ok()?.to_be_bytes()),
        (8, true) => out.copy_from_slice(&i64::try_from(value).ok()?.to_be_bytes()),
        (8, false) => out.copy_from_slice(&u64::try_from(value).ok()?.to_be_bytes()),
        _ => return None,
    }
    Some(())
}

/// The exact decimal text of an unscaled value: every scale digit written (`"1500.00"`,
/// `"-0.05"`, `"42"`), no exponent, no float on the way.
pub(crate) fn format_unscaled(unscaled: i128, scale: u8) -> String {
    // The digits, right-aligned. 128-bit division is slow, so it is done at most twice, to
    // split the magnitude into 19-digit chunks that 64-bit arithmetic turns into digits.
    const CHUNK: u128 = 10_000_000_000_000_000_000;
    let mut digits = [b'0'; 40];
    let mut at = digits.len();
    let mut magnitude = unscaled.unsigned_abs();
    loop {
        let (mut chunk, rest) = if magnitude >= CHUNK {
            ((magnitude % CHUNK) as u64, magnitude / CHUNK)
        } else {
            (magnitude as u64, 0)
        };
        let chunk_end = at;
        while chunk > 0 {
            at -= 1;
            digits[at] = b'0' + (chunk % 10) as u8;
            chunk /= 10;
        }
        magnitude = rest;
        if magnitude == 0 {
            break;
        }
        // A chunk below the top one keeps its leading zeros.
        at = chunk_end - 19;
    }
    let scale = usize::from(scale);
    // At least one digit before the point.
    let first = at.min(digits.len() - scale - 1);
    let point = digits.len() - scale;
    let mut out = [0u8; 42];
    let mut len = 0;
    if unscaled < 0 {
        out[0] = b'-';
        len = 1;
    }
    for (index, &digit) in digits.iter().enumerate().skip(first) {
        if index == point {
            out[len] = b'.';
            len += 1;
        }
        out[len] = digit;
        len += 1;
    }
    // Only ASCII digits, `-` and `.` were written.
    String::from(std::str::from_utf8(&out[..len]).unwrap_or_default())
}

/// Parses a strict decimal text: optional sign, digits, optional point and digits. No
/// exponent, blanks, underscores or thousands separators (which `Decimal::from_str` would
/// accept), so a request value means exactly what it says.
pub(crate) fn parse_decimal(text: &str) -> Option<Decimal> {
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    Decimal::from_str_exact(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(digits: u8, scale: u8, sign: Sign, usage: Usage) -> NumSpec {
        NumSpec::new(digits, scale, sign, usage).expect("valid picture")
    }

    fn dec(text: &str) -> Decimal {
        parse_decimal(text).expect("a decimal")
    }

    fn read(spec: NumSpec, bytes: &[u8]) -> Result<String, DecodeProblem> {
        spec.decode(bytes).map(|d| d.to_string())
    }

    fn write(spec: NumSpec, value: &str) -> Result<Vec<u8>, NumberError> {
        let mut out = vec![0u8; spec.byte_len()];
        spec.encode(dec(value), &mut out).map(|()| out)
    }

    #[test]
    fn byte_lengths_follow_the_usage() {
        assert_eq!(spec(5, 0, Sign::Unsigned, Usage::Display).byte_len(), 5);
        assert_eq!(
            spec(5, 0, Sign::TrailingSeparate, Usage::Display).byte_len(),
            6
        );
        assert_eq!(spec(5, 0, Sign::Trailing, Usage::Packed).byte_len(), 3);
        assert_eq!(spec(4, 0, Sign::Trailing, Usage::Packed).byte_len(), 3);
        assert_eq!(spec(1, 0, Sign::Trailing, Usage::Packed).byte_len(), 1);
        assert_eq!(spec(4, 0, Sign::Trailing, Usage::Binary).byte_len(), 2);
        assert_eq!(spec(9, 0, Sign::Trailing, Usage::Binary).byte_len(), 4);
        assert_eq!(spec(18, 0, Sign::Trailing, Usage::Binary).byte_len(), 8);
        assert!(NumSpec::new(19, 0, Sign::Trailing, Usage::Binary).is_err());
        assert!(NumSpec::new(29, 0, Sign::Trailing, Usage::Packed).is_err());
        assert!(NumSpec::new(0, 0, Sign::Trailing, Usage::Display).is_err());
        assert!(NumSpec::new(3, 4, Sign::Trailing, Usage::Display).is_err());
    }

    #[test]
    fn zoned_trailing_overpunch_reads_c_d_and_f_zones() {
        let s = spec(7, 2, Sign::Trailing, Usage::Display);
        // 12050 with the last digit 0 overpunched: C0 = +, D0 = -, F0 = unsigned positive.
        assert_eq!(
            read(s, &[0xF0, 0xF0, 0xF1, 0xF2, 0xF0, 0xF5, 0xC0]),
            Ok("120.50".into())
        );
        assert_eq!(
            read(s, &[0xF0, 0xF0, 0xF1, 0xF2, 0xF0, 0xF5, 0xD0]),
            Ok("-120.50".into())
        );
        assert_eq!(
            read(s, &[0xF0, 0xF0, 0xF1, 0xF2, 0xF0, 0xF5, 0xF0]),
            Ok("120.50".into())
        );
        // Negative zero reads as zero, scale kept.
        assert_eq!(
            read(
                s,
                &[0xF0; 6].iter().copied().chain([0xD0]).collect::<Vec<_>>()
            ),
            Ok("0.00".into())
        );
    }

    #[test]
    fn zoned_refuses_other_zones_and_non_digits() {
        let s = spec(3, 0, Sign::Trailing, Usage::Display);
        assert_eq!(
            read(s, &[0xF1, 0xF2, 0xA3]),
            Err(DecodeProblem::BadSign { nibble: 0xA })
        );
        assert_eq!(
            read(s, &[0xF1, 0xF2, 0xB3]),
            Err(DecodeProblem::BadSign { nibble: 0xB })
        );
        assert_eq!(
            read(s, &[0xF1, 0xF2, 0xE3]),
            Err(DecodeProblem::BadSign { nibble: 0xE })
        );
        assert_eq!(
            read(s, &[0xF1, 0xF2, 0x40]),
            Err(DecodeProblem::NotADigit { byte: 0x40 })
        );
        assert_eq!(
            read(s, &[0xF1, 0xC2, 0xF3]),
            Err(DecodeProblem::NotADigit { byte: 0xC2 })
        );
        assert_eq!(
            read(s, &[0xF1, 0xFA, 0xF3]),
            Err(DecodeProblem::NotADigit { byte: 0xFA })
        );
        assert_eq!(
            read(s, &[0x40, 0x40, 0x40]),
            Err(DecodeProblem::NotADigit { byte: 0x40 })
        );
    }

    #[test]
    fn zoned_unsigned_takes_f_everywhere_and_c_last() {
        let s = spec(3, 0, Sign::Unsigned, Usage::Display);
        assert_eq!(read(s, &[0xF1, 0xF2, 0xF3]), Ok("123".into()));
        assert_eq!(read(s, &[0xF1, 0xF2, 0xC3]), Ok("123".into()));
        assert_eq!(
            read(s, &[0xF1, 0xF2, 0xD3]),
            Err(DecodeProblem::NotADigit { byte: 0xD3 })
        );
        assert_eq!(
            read(s, &[0xC1, 0xF2, 0xF3]),
            Err(DecodeProblem::NotADigit { byte: 0xC1 })
        );
        assert_eq!(write(s, "123"), Ok(vec![0xF1, 0xF2, 0xF3]));
        assert_eq!(write(s, "-1"), Err(NumberError::Negative));
    }

    #[test]
    fn zoned_leading_overpunch_is_on_the_first_byte() {
        let s = spec(4, 1, Sign::Leading, Usage::Display);
        assert_eq!(read(s, &[0xD1, 0xF2, 0xF3, 0xF4]), Ok("-123.4".into()));
        assert_eq!(read(s, &[0xC1, 0xF2, 0xF3, 0xF4]), Ok("123.4".into()));
        assert_eq!(
            read(s, &[0xF1, 0xF2, 0xF3, 0xD4]),
            Err(DecodeProblem::NotADigit { byte: 0xD4 })
        );
        assert_eq!(write(s, "-123.4"), Ok(vec![0xD1, 0xF2, 0xF3, 0xF4]));
        assert_eq!(write(s, "5"), Ok(vec![0xC0, 0xF0, 0xF5, 0xF0]));
    }

    #[test]
    fn zoned_separate_signs() {
        let lead = spec(3, 0, Sign::LeadingSeparate, Usage::Display);
        let trail = spec(3, 0, Sign::TrailingSeparate, Usage::Display);
        assert_eq!(read(lead, &[0x60, 0xF0, 0xF4, 0xF2]), Ok("-42".into()));
        assert_eq!(read(lead, &[0x4E, 0xF0, 0xF4, 0xF2]), Ok("42".into()));
        assert_eq!(read(trail, &[0xF0, 0xF4, 0xF2, 0x60]), Ok("-42".into()));
        assert_eq!(
            read(trail, &[0xF0, 0xF4, 0xF2, 0x40]),
            Err(DecodeProblem::BadSeparateSign { byte: 0x40 })
        );
        assert_eq!(
            read(lead, &[0xF0, 0xF4, 0xF2, 0x4E]),
            Err(DecodeProblem::BadSeparateSign { byte: 0xF0 })
        );
        // The digits of a separate-sign field carry no overpunch.
        assert_eq!(
            read(trail, &[0xF0, 0xF4, 0xC2, 0x4E]),
            Err(DecodeProblem::NotADigit { byte: 0xC2 })
        );
        assert_eq!(write(lead, "-42"), Ok(vec![0x60, 0xF0, 0xF4, 0xF2]));
        assert_eq!(write(trail, "0"), Ok(vec![0xF0, 0xF0, 0xF0, 0x4E]));
    }

    #[test]
    fn packed_reads_and_writes_signs_and_pad_nibbles() {
        let s = spec(7, 2, Sign::Trailing, Usage::Packed);
        assert_eq!(read(s, &[0x01, 0x23, 0x45, 0x6D]), Ok("-1234.56".into()));
        assert_eq!(read(s, &[0x01, 0x23, 0x45, 0x6C]), Ok("1234.56".into()));
        assert_eq!(read(s, &[0x01, 0x23, 0x45, 0x6F]), Ok("1234.56".into()));
        assert_eq!(read(s, &[0x00, 0x00, 0x00, 0x0D]), Ok("0.00".into()));
        assert_eq!(write(s, "-1234.56"), Ok(vec![0x01, 0x23, 0x45, 0x6D]));
        assert_eq!(write(s, "0"), Ok(vec![0x00, 0x00, 0x00, 0x0C]));
        // Even digit count: the first nibble is padding and must be 0.
        let even = spec(4, 0, Sign::Trailing, Usage::Packed);
        assert_eq!(read(even, &[0x01, 0x23, 0x4C]), Ok("1234".into()));
        assert_eq!(
            read(even, &[0x11, 0x23, 0x4C]),
            Err(DecodeProblem::BadPackedDigit { nibble: 1 })
        );
        assert_eq!(write(even, "-1234"), Ok(vec![0x01, 0x23, 0x4D]));
        assert_eq!(
            write(even, "12345"),
            Err(NumberError::IntegerDigits { allowed: 4 })
        );
        let unsigned = spec(3, 0, Sign::Unsigned, Usage::Packed);
        assert_eq!(write(unsigned, "123"), Ok(vec![0x12, 0x3F]));
        assert_eq!(read(unsigned, &[0x12, 0x3C]), Ok("123".into()));
        assert_eq!(
            read(unsigned, &[0x12, 0x3D]),
            Err(DecodeProblem::BadSign { nibble: 0xD })
        );
    }

    #[test]
    fn packed_refuses_bad_nibbles() {
        let s = spec(5, 0, Sign::Trailing, Usage::Packed);
        for nibble in [0x0, 0x5, 0x9, 0xA, 0xB, 0xE] {
            assert_eq!(
                read(s, &[0x12, 0x34, 0x50 | nibble]),
                Err(DecodeProblem::BadSign { nibble })
            );
        }
        assert_eq!(
            read(s, &[0x1A, 0x34, 0x5C]),
            Err(DecodeProblem::BadPackedDigit { nibble: 0xA })
        );
        assert_eq!(
            read(s, &[0xF2, 0x34, 0x5C]),
            Err(DecodeProblem::BadPackedDigit { nibble: 0xF })
        );
        assert_eq!(
            read(s, &[0x12, 0x34, 0xCC]),
            Err(DecodeProblem::BadPackedDigit { nibble: 0xC })
        );
        let one = spec(1, 0, Sign::Trailing, Usage::Packed);
        assert_eq!(read(one, &[0x7D]), Ok("-7".into()));
        let two = spec(2, 0, Sign::Trailing, Usage::Packed);
        assert_eq!(
            read(two, &[0x10, 0x7D]),
            Err(DecodeProblem::BadPackedDigit { nibble: 1 })
        );
    }

    /// COMP-5 may use its bytes' whole range: `PIC S9(4) COMP-5` holds 32 767 and -32 768,
    /// `PIC 9(4) COMP-5` 65 535, where COMP refuses anything past 9 999.
    #[test]
    fn native_binary_uses_the_whole_range_of_its_bytes() {
        let s4 = spec(4, 0, Sign::Trailing, Usage::NativeBinary);
        assert_eq!(s4.byte_len(), 2);
        assert_eq!(read(s4, &[0x7F, 0xFF]), Ok("32767".into()));
        assert_eq!(read(s4, &[0x80, 0x00]), Ok("-32768".into()));
        assert_eq!(write(s4, "32767"), Ok(vec![0x7F, 0xFF]));
        assert_eq!(write(s4, "-32768"), Ok(vec![0x80, 0x00]));
        assert!(write(s4, "32768").is_err(), "past the 2 bytes");
        let u4 = spec(4, 2, Sign::Unsigned, Usage::NativeBinary);
        assert_eq!(read(u4, &[0xFF, 0xFF]), Ok("655.35".into()));
        assert!(write(u4, "-1").is_err(), "negative into unsigned");
        let u18 = spec(18, 0, Sign::Unsigned, Usage::NativeBinary);
        assert_eq!(read(u18, &[0xFF; 8]), Ok("18446744073709551615".into()));
        // The same bytes as COMP are refused, never read as a number the picture cannot hold.
        let comp = spec(4, 0, Sign::Trailing, Usage::Binary);
        assert!(matches!(
            read(comp, &[0x7F, 0xFF]),
            Err(DecodeProblem::BinaryOverflow { .. })
        ));
    }

    #[test]
    fn binary_reads_twos_complement_and_checks_digits() {
        let s4 = spec(4, 0, Sign::Trailing, Usage::Binary);
        assert_eq!(read(s4, &[0xFF, 0xFE]), Ok("-2".into()));
        assert_eq!(read(s4, &[0x27, 0x0F]), Ok("9999".into()));
        assert_eq!(
            read(s4, &[0x27, 0x10]),
            Err(DecodeProblem::BinaryOverflow {
                value: 10000,
                digits: 4
            })
        );
        let u4 = spec(4, 2, Sign::Unsigned, Usage::Binary);
        assert_eq!(read(u4, &[0x00, 0x7B]), Ok("1.23".into()));
        assert_eq!(
            read(u4, &[0xFF, 0xFE]),
            Err(DecodeProblem::BinaryOverflow {
                value: 65534,
                digits: 4
            })
        );
        let s9 = spec(9, 0, Sign::Trailing, Usage::Binary);
        assert_eq!(read(s9, &[0xFF, 0xFF, 0xFF, 0x85]), Ok("-123".into()));
        assert_eq!(write(s9, "-123"), Ok(vec![0xFF, 0xFF, 0xFF, 0x85]));
        let s18 = spec(18, 0, Sign::Trailing, Usage::Binary);
        assert_eq!(
            read(s18, &[0x0D, 0xE0, 0xB6, 0xB3, 0xA7, 0x63, 0xFF, 0xFF]),
            Ok("999999999999999999".into())
        );
        assert_eq!(write(s18, "-1"), Ok(vec![0xFF; 8]));
        let u18 = spec(18, 0, Sign::Unsigned, Usage::Binary);
        assert_eq!(
            read(u18, &[0xFF; 8]),
            Err(DecodeProblem::BinaryOverflow {
                value: i128::from(u64::MAX),
                digits: 18
            })
        );
    }

    #[test]
    fn encoding_refuses_rather_than_rounds() {
        let s = spec(5, 2, Sign::Trailing, Usage::Packed);
        assert_eq!(
            write(s, "1.005"),
            Err(NumberError::FractionDigits { scale: 2 })
        );
        assert_eq!(write(s, "1.500"), Ok(vec![0x00, 0x15, 0x0C]));
        assert_eq!(
            write(s, "1000"),
            Err(NumberError::IntegerDigits { allowed: 3 })
        );
        assert_eq!(write(s, "999.99"), Ok(vec![0x99, 0x99, 0x9C]));
        assert_eq!(write(s, "-0"), Ok(vec![0x00, 0x00, 0x0C]));
    }

    #[test]
    fn maximum_digits_round_trip() {
        let s = spec(28, 0, Sign::Trailing, Usage::Packed);
        let nines = "9".repeat(28);
        let mut out = vec![0u8; s.byte_len()];
        s.encode(dec(&format!("-{nines}")), &mut out).expect("fits");
        assert_eq!(out.first(), Some(&0x09));
        assert_eq!(out.last(), Some(&0x9D));
        assert_eq!(read(s, &out), Ok(format!("-{nines}")));
        let z = spec(28, 10, Sign::LeadingSeparate, Usage::Display);
        let mut out = vec![0u8; z.byte_len()];
        let text = "123456789012345678.9012345678";
        z.encode(dec(text), &mut out).expect("fits");
        assert_eq!(read(z, &out), Ok(text.into()));
    }

    #[test]
    fn formats_every_scale_digit() {
        assert_eq!(format_unscaled(150000, 2), "1500.00");
        assert_eq!(format_unscaled(-5, 2), "-0.05");
        assert_eq!(format_unscaled(42, 0), "42");
        assert_eq!(format_unscaled(0, 0), "0");
        assert_eq!(format_unscaled(0, 3), "0.000");
        assert_eq!(format_unscaled(-7, 1), "-0.7");
        assert_eq!(format_unscaled(i128::MIN, 0), i128::MIN.to_string());
        assert_eq!(
            format_unscaled(-(10i128.pow(28) - 1), 28),
            format!("-0.{}", "9".repeat(28))
        );
    }

    proptest::proptest! {
        #[test]
        fn formatting_agrees_with_decimal(
            unscaled in -(10i128.pow(28) - 1)..10i128.pow(28),
            scale in 0u8..=28,
        ) {
            let expected = Decimal::from_i128_with_scale(unscaled, u32::from(scale)).to_string();
            proptest::prop_assert_eq!(format_unscaled(unscaled, scale), expected);
        }
    }

    #[test]
    fn formats_across_the_64_bit_chunks() {
        let e19 = 10i128.pow(19);
        assert_eq!(format_unscaled(e19, 0), "10000000000000000000");
        assert_eq!(format_unscaled(e19 + 5, 2), "100000000000000000.05");
        assert_eq!(
            format_unscaled(-(e19 * 7 + 1), 19),
            "-7.0000000000000000001"
        );
        assert_eq!(
            format_unscaled(12_345_678_901_234_567_890_123_456, 2),
            "123456789012345678901234.56"
        );
    }

    #[test]
    fn parses_only_plain_decimals() {
        assert_eq!(
            parse_decimal("-120.50").map(|d| d.to_string()),
            Some("-120.50".into())
        );
        assert_eq!(parse_decimal("+7"), Some(Decimal::from(7)));
        assert_eq!(
            parse_decimal(".5").map(|d| d.to_string()),
            Some("0.5".into())
        );
        for bad in [
            "", "-", ".", "1_000", "1e3", " 1", "1 ", "1.2.3", "0x10", "١٢",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }
}
