//! The form content is compared in by the blocked-words and repeated-content rules, so that the
//! cheap ways of writing the same word differently compare equal: NFKC (full-width and half-width
//! forms, ligatures, Hangul compatibility jamo), lower case, no whitespace or invisible characters
//! (zero-width spaces and joiners, soft hyphens, other format characters), and Hangul spelled out
//! as its letters, so a syllable typed as separate jamo (`ㅅㅣㅂㅏㄹ`) equals the syllables (`시발`).

use unicode_normalization::UnicodeNormalization;

/// Hangul syllables: U+AC00 + (initial * 21 + medial) * 28 + final.
const SYLLABLE_FIRST: u32 = 0xAC00;
const SYLLABLE_LAST: u32 = 0xD7A3;
/// Initial consonants as compatibility letters (choseong order).
const INITIALS: [char; 19] =
    ['ㄱ', 'ㄲ', 'ㄴ', 'ㄷ', 'ㄸ', 'ㄹ', 'ㅁ', 'ㅂ', 'ㅃ', 'ㅅ', 'ㅆ', 'ㅇ', 'ㅈ', 'ㅉ', 'ㅊ', 'ㅋ', 'ㅌ', 'ㅍ', 'ㅎ'];
/// Final consonants as compatibility letters (jongseong order, without "no final").
const FINALS: [char; 27] = [
    'ㄱ', 'ㄲ', 'ㄳ', 'ㄴ', 'ㄵ', 'ㄶ', 'ㄷ', 'ㄹ', 'ㄺ', 'ㄻ', 'ㄼ', 'ㄽ', 'ㄾ', 'ㄿ', 'ㅀ', 'ㅁ', 'ㅂ', 'ㅄ', 'ㅅ', 'ㅆ', 'ㅇ', 'ㅈ',
    'ㅊ', 'ㅋ', 'ㅌ', 'ㅍ', 'ㅎ',
];
/// Vowels as compatibility letters are contiguous from ㅏ (U+314F), in jungseong order.
const FIRST_VOWEL: u32 = 0x314F;

/// `text` in the compared form (see the module doc).
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfkc().flat_map(char::to_lowercase) {
        if c.is_whitespace() || is_invisible(c) {
            continue;
        }
        push_hangul_letters(c, &mut out);
    }
    out
}

/// Characters that render as nothing and are used to split a word so it is not matched.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}')
}

/// Pushes `c`, a Hangul syllable or conjoining jamo as compatibility letters.
fn push_hangul_letters(c: char, out: &mut String) {
    let code = c as u32;
    match code {
        SYLLABLE_FIRST..=SYLLABLE_LAST => {
            let index = code - SYLLABLE_FIRST;
            out.push(INITIALS[(index / 588) as usize]);
            out.push(vowel((index % 588) / 28));
            if !index.is_multiple_of(28) {
                out.push(FINALS[(index % 28 - 1) as usize]);
            }
        }
        0x1100..=0x1112 => out.push(INITIALS[(code - 0x1100) as usize]),
        0x1161..=0x1175 => out.push(vowel(code - 0x1161)),
        0x11A8..=0x11C2 => out.push(FINALS[(code - 0x11A8) as usize]),
        _ => out.push(c),
    }
}

fn vowel(index: u32) -> char {
    char::from_u32(FIRST_VOWEL + index).unwrap_or('\u{FFFD}')
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn case_width_and_spacing_fold_away() {
        assert_eq!(normalise("Buy CHEAP pills"), "buycheappills");
        assert_eq!(normalise("ＢＵＹ　ｃｈｅａｐ"), "buycheap", "full-width letters and space");
        assert_eq!(normalise("c\u{200B}h\u{200D}e\u{FEFF}a\u{00AD}p"), "cheap", "zero-width characters inside the word");
        assert_eq!(normalise("ﬁne"), "fine", "ligature");
        assert_eq!(normalise("ÉCOLE"), normalise("e\u{301}cole"), "composed and combining accents");
    }

    #[test]
    fn hangul_compares_by_its_letters() {
        let word = normalise("시발");
        assert_eq!(normalise("ㅅㅣㅂㅏㄹ"), word, "compatibility jamo");
        assert_eq!(normalise("시발"), word, "conjoining jamo");
        assert_eq!(normalise("시 발"), word, "a space inside");
        assert_eq!(normalise("ﾀ"), "タ", "half-width katakana");
        assert_eq!(normalise("\u{FFA9}"), normalise("ㄹ"), "half-width Hangul letter");
        assert_eq!(normalise("각"), "ㄱㅏㄱ");
        assert!(normalise("좋은 글 감사합니다").contains(&normalise("감사")));
    }

    #[test]
    fn plain_text_stays_readable() {
        assert_eq!(normalise("hello, world!"), "hello,world!");
        assert_eq!(normalise(""), "");
    }
}
