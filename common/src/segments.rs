//! SMS segment counting as carriers bill it (GSM-7 septets or UCS-2 code units).
//!
//! A body is GSM-7 when every character is in the 3GPP TS 23.038 default
//! alphabet or its basic extension table; extension characters cost two
//! septets (escape + character). Anything else is sent as UCS-2 (UTF-16 as
//! carriers handle it), where characters outside the BMP cost two code units.
//!
//! Concatenated messages lose room to the user data header, so each part holds
//! fewer units than a single message, and neither an escape pair nor a
//! surrogate pair is ever split across two parts: the part ends early instead.

use serde::{Deserialize, Serialize};

/// Septets that fit in a single (non-concatenated) GSM-7 SMS.
pub const GSM7_SINGLE_SEGMENT_SEPTETS: u32 = 160;
/// Septets that fit in each part of a concatenated GSM-7 SMS.
pub const GSM7_MULTI_SEGMENT_SEPTETS: u32 = 153;
/// UTF-16 code units that fit in a single (non-concatenated) UCS-2 SMS.
pub const UCS2_SINGLE_SEGMENT_UNITS: u32 = 70;
/// UTF-16 code units that fit in each part of a concatenated UCS-2 SMS.
pub const UCS2_MULTI_SEGMENT_UNITS: u32 = 67;

/// How an SMS body is encoded on the air interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsEncoding {
    /// GSM 03.38 default alphabet plus the basic extension table.
    Gsm7,
    /// UCS-2 / UTF-16 code units.
    Ucs2,
}

/// The billing view of one SMS body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SegmentCount {
    /// Encoding the body needs.
    pub encoding: SmsEncoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2) in the body.
    pub units: u32,
    /// Segments the carrier bills.
    pub segments: u32,
}

/// Septet cost of each ASCII code point: 0 = not GSM-7, 1 = default alphabet,
/// 2 = basic extension table (escape + character).
const ASCII_GSM7_COST: [u8; 128] = build_ascii_table();

const fn build_ascii_table() -> [u8; 128] {
    let mut table = [0u8; 128];
    // Printable ASCII is in the default alphabet, with the exceptions below.
    let mut b = 0x20;
    while b <= 0x7E {
        table[b] = 1;
        b += 1;
    }
    // Grave accent has no GSM-7 representation at all.
    table[b'`' as usize] = 0;
    // Basic extension table characters cost an escape plus the character.
    let ext = b"^{}\\[~]|";
    let mut i = 0;
    while i < ext.len() {
        table[ext[i] as usize] = 2;
        i += 1;
    }
    table[0x0A] = 1; // LF
    table[0x0D] = 1; // CR
    table[0x0C] = 2; // form feed (extension table)
    table
}

/// Septets `c` costs in GSM-7, or 0 if `c` cannot be encoded in GSM-7.
#[inline]
fn gsm7_cost(c: char) -> u32 {
    let cp = c as u32;
    if cp < 0x80 {
        return u32::from(ASCII_GSM7_COST[cp as usize]);
    }
    match c {
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ' | 'Λ' | 'Ω' | 'Π'
        | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä' | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö'
        | 'ñ' | 'ü' | 'à' => 1,
        '€' => 2,
        _ => 0,
    }
}

/// Greedy packer that fills concatenated parts without splitting a character.
struct Packer {
    multi_limit: u32,
    units: u32,
    parts: u32,
    used: u32,
}

impl Packer {
    const fn new(multi_limit: u32) -> Self {
        Self {
            multi_limit,
            units: 0,
            parts: 1,
            used: 0,
        }
    }

    #[inline]
    fn push(&mut self, cost: u32) {
        if self.used + cost > self.multi_limit {
            self.parts = self.parts.saturating_add(1);
            self.used = 0;
        }
        self.used += cost;
        self.units = self.units.saturating_add(cost);
    }

    const fn finish(&self, encoding: SmsEncoding, single_limit: u32) -> SegmentCount {
        SegmentCount {
            encoding,
            units: self.units,
            segments: if self.units <= single_limit { 1 } else { self.parts },
        }
    }
}

/// Counts the segments of an SMS body.
pub fn count_segments(body: &str) -> SegmentCount {
    let mut gsm = Packer::new(GSM7_MULTI_SEGMENT_SEPTETS);
    for c in body.chars() {
        match gsm7_cost(c) {
            0 => return count_ucs2(body),
            cost => gsm.push(cost),
        }
    }
    gsm.finish(SmsEncoding::Gsm7, GSM7_SINGLE_SEGMENT_SEPTETS)
}

fn count_ucs2(body: &str) -> SegmentCount {
    let mut ucs2 = Packer::new(UCS2_MULTI_SEGMENT_UNITS);
    for c in body.chars() {
        // `len_utf16` is 1 or 2, so the cast is lossless.
        ucs2.push(c.len_utf16() as u32);
    }
    ucs2.finish(SmsEncoding::Ucs2, UCS2_SINGLE_SEGMENT_UNITS)
}

/// True when every character of `body` is in the GSM-7 default alphabet or its extension table.
pub fn is_gsm7(body: &str) -> bool {
    body.chars().all(|c| gsm7_cost(c) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The GSM 03.38 default alphabet in table order, without ESC (0x1B).
    const DEFAULT_ALPHABET: &str = concat!(
        "@£$¥èéùìòÇ\nØø\rÅå",
        "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ",
        " !\"#¤%&'()*+,-./",
        "0123456789:;<=>?",
        "¡ABCDEFGHIJKLMNO",
        "PQRSTUVWXYZÄÖÑÜ§",
        "¿abcdefghijklmno",
        "pqrstuvwxyzäöñüà",
    );
    /// The basic extension table (each costs escape + character).
    const EXTENSION: &str = "\u{000C}^{}\\[~]|€";

    fn reference_cost(c: char) -> u32 {
        if DEFAULT_ALPHABET.contains(c) {
            1
        } else if EXTENSION.contains(c) {
            2
        } else {
            0
        }
    }

    /// Naive reference: materialise the parts one character at a time.
    fn reference_count(body: &str) -> SegmentCount {
        let gsm = body.chars().all(|c| reference_cost(c) != 0);
        let (encoding, single, multi) = if gsm {
            (SmsEncoding::Gsm7, 160, 153)
        } else {
            (SmsEncoding::Ucs2, 70, 67)
        };
        let costs: Vec<u32> = body
            .chars()
            .map(|c| if gsm { reference_cost(c) } else { c.len_utf16() as u32 })
            .collect();
        let units: u32 = costs.iter().sum();
        if units <= single {
            return SegmentCount {
                encoding,
                units,
                segments: 1,
            };
        }
        let mut parts: Vec<Vec<u32>> = vec![Vec::new()];
        for cost in costs {
            let last = parts.last_mut().expect("non-empty");
            if last.iter().sum::<u32>() + cost <= multi {
                last.push(cost);
            } else {
                parts.push(vec![cost]);
            }
        }
        SegmentCount {
            encoding,
            units,
            segments: parts.len() as u32,
        }
    }

    fn gsm(units: u32, segments: u32) -> SegmentCount {
        SegmentCount {
            encoding: SmsEncoding::Gsm7,
            units,
            segments,
        }
    }

    fn ucs2(units: u32, segments: u32) -> SegmentCount {
        SegmentCount {
            encoding: SmsEncoding::Ucs2,
            units,
            segments,
        }
    }

    #[test]
    fn alphabet_tables_are_complete_and_exact() {
        assert_eq!(DEFAULT_ALPHABET.chars().count(), 127);
        assert_eq!(EXTENSION.chars().count(), 10);
        for cp in 0..=0x10FFFF_u32 {
            if let Some(c) = char::from_u32(cp) {
                assert_eq!(gsm7_cost(c), reference_cost(c), "U+{cp:04X}");
            }
        }
        let non_ascii = DEFAULT_ALPHABET.chars().filter(|c| !c.is_ascii()).count();
        assert_eq!(non_ascii, 39);
    }

    #[test]
    fn plain_gsm7_is_one_segment() {
        assert_eq!(count_segments("Hello, world!"), gsm(13, 1));
        assert!(is_gsm7("Hello, world! @£$¥ ΔΦΓ ÄÖÑÜ äöñüà"));
    }

    #[test]
    fn gsm7_single_and_multi_boundaries() {
        let n = |k: usize| count_segments(&"a".repeat(k));
        assert_eq!(n(160), gsm(160, 1));
        assert_eq!(n(161), gsm(161, 2));
        assert_eq!(n(306), gsm(306, 2));
        assert_eq!(n(307), gsm(307, 3));
        assert_eq!(n(459), gsm(459, 3));
        assert_eq!(n(460), gsm(460, 4));
    }

    #[test]
    fn extension_characters_cost_two_septets() {
        for c in ['{', '€', '[', '~', '|', '\\', '^', '}', ']', '\u{000C}'] {
            let s = c.to_string();
            assert_eq!(count_segments(&s), gsm(2, 1), "{c:?}");
            assert!(is_gsm7(&s));
        }
        assert_eq!(count_segments(&"€".repeat(80)), gsm(160, 1));
        assert_eq!(count_segments(&"€".repeat(81)), gsm(162, 2));
    }

    #[test]
    fn escape_pair_is_not_split_across_segments() {
        // 152 + 2 + 152 = 306 septets: naive ceil(306 / 153) = 2, but the
        // escape pair cannot straddle the first boundary, so part 1 holds 152,
        // part 2 holds '€' + 151 'a' = 153, and part 3 holds the last 'a'.
        let body = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(count_segments(&body), gsm(306, 3));
        // Exactly filling the first part with the pair is fine.
        let body = format!("{}€{}", "a".repeat(151), "a".repeat(153));
        assert_eq!(count_segments(&body), gsm(306, 2));
    }

    #[test]
    fn emoji_forces_ucs2_and_counts_two_units() {
        assert_eq!(count_segments("😀"), ucs2(2, 1));
        assert_eq!(count_segments("hi 😀"), ucs2(5, 1));
        assert!(!is_gsm7("hi 😀"));
    }

    #[test]
    fn non_gsm_letters_force_ucs2() {
        for s in ["á", "ç", "í", "ó", "ú", "â", "ê", "`", "Ω\u{0301}"] {
            assert!(!is_gsm7(s), "{s:?}");
            assert_eq!(count_segments(s).encoding, SmsEncoding::Ucs2, "{s:?}");
        }
        assert_eq!(count_segments("façade"), ucs2(6, 1));
        assert!(is_gsm7("Ç"));
    }

    #[test]
    fn ucs2_single_and_multi_boundaries() {
        let n = |k: usize| count_segments(&"á".repeat(k));
        assert_eq!(n(70), ucs2(70, 1));
        assert_eq!(n(71), ucs2(71, 2));
        assert_eq!(n(134), ucs2(134, 2));
        assert_eq!(n(135), ucs2(135, 3));
    }

    #[test]
    fn surrogate_pair_is_not_split_across_segments() {
        // 66 + 2 + 66 = 134 units: naive ceil(134 / 67) = 2, but the emoji
        // cannot straddle the first boundary.
        let body = format!("{}😀{}", "á".repeat(66), "á".repeat(66));
        assert_eq!(count_segments(&body), ucs2(134, 3));
        let body = format!("{}😀{}", "á".repeat(65), "á".repeat(67));
        assert_eq!(count_segments(&body), ucs2(134, 2));
    }

    #[test]
    fn empty_body_is_one_gsm7_segment() {
        assert_eq!(count_segments(""), gsm(0, 1));
        assert!(is_gsm7(""));
    }

    #[test]
    fn encoding_serializes_snake_case() {
        let v = serde_json::to_value(ucs2(2, 1)).expect("serialize");
        assert_eq!(v, serde_json::json!({"encoding": "ucs2", "units": 2, "segments": 1}));
        let e: SmsEncoding = serde_json::from_str("\"gsm7\"").expect("deserialize");
        assert_eq!(e, SmsEncoding::Gsm7);
    }

    fn gsm_char() -> impl Strategy<Value = char> {
        let basic: Vec<char> = DEFAULT_ALPHABET.chars().collect();
        let ext: Vec<char> = EXTENSION.chars().collect();
        prop_oneof![
            8 => proptest::sample::select(basic),
            2 => proptest::sample::select(ext),
        ]
    }

    fn gsm_body() -> impl Strategy<Value = String> {
        proptest::collection::vec(gsm_char(), 0..400).prop_map(|v| v.into_iter().collect())
    }

    fn mixed_body() -> impl Strategy<Value = String> {
        let ch = prop_oneof![
            20 => gsm_char(),
            1 => Just('á'),
            1 => Just('😀'),
            1 => any::<char>(),
        ];
        proptest::collection::vec(ch, 0..400).prop_map(|v| v.into_iter().collect())
    }

    fn unit_sum(s: &str) -> u32 {
        if s.chars().all(|c| reference_cost(c) != 0) {
            s.chars().map(reference_cost).sum()
        } else {
            s.chars().map(|c| c.len_utf16() as u32).sum()
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_at_least_one_segment(s in any::<String>()) {
            let c = count_segments(&s);
            prop_assert!(c.segments >= 1);
            prop_assert_eq!(is_gsm7(&s), c.encoding == SmsEncoding::Gsm7);
            prop_assert_eq!(c.units, unit_sum(&s));
            prop_assert_eq!(c, reference_count(&s));
        }

        #[test]
        fn gsm_bodies_single_segment_iff_fits(s in gsm_body()) {
            let c = count_segments(&s);
            prop_assert_eq!(c.encoding, SmsEncoding::Gsm7);
            prop_assert!(is_gsm7(&s));
            prop_assert!(c.segments >= 1);
            prop_assert_eq!(c.segments == 1, c.units <= GSM7_SINGLE_SEGMENT_SEPTETS);
            prop_assert_eq!(c.units, unit_sum(&s));
            prop_assert_eq!(c, reference_count(&s));
        }

        #[test]
        fn mixed_bodies_match_reference(s in mixed_body()) {
            let c = count_segments(&s);
            prop_assert!(c.segments >= 1);
            prop_assert_eq!(is_gsm7(&s), c.encoding == SmsEncoding::Gsm7);
            prop_assert_eq!(c.units, unit_sum(&s));
            prop_assert_eq!(c, reference_count(&s));
            if c.encoding == SmsEncoding::Ucs2 {
                prop_assert_eq!(c.segments == 1, c.units <= UCS2_SINGLE_SEGMENT_UNITS);
            }
        }
    }
}
