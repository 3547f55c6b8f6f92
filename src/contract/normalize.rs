//! `original_title_normalized` (docs/contract.md).

/// Lowercases, keeps only letters, digits and whitespace, trims, and joins
/// the words with `_`.
///
/// `char::is_alphabetic`/`is_numeric` stand in for "Unicode letter/digit".
/// A few letters have no lower-case form (mathematical capitals such as `𝐀`);
/// they are dropped too, so the result never holds an upper-case letter.
pub fn normalize_title(title: &str) -> String {
    let mut out = String::with_capacity(title.len());
    normalize_title_into(title, &mut out);
    out
}

/// [`normalize_title`], appended to `out` (a COPY buffer, say). The result
/// holds only letters, digits and `_`, so it never needs COPY escaping.
pub fn normalize_title_into(title: &str, out: &mut String) {
    let start = out.len();
    let mut pending_space = false;
    let mut put = |class| apply(class, out, start, &mut pending_space);
    if title.is_ascii() {
        title.bytes().for_each(|c| put(ascii(c)));
        return;
    }
    if title.contains('Σ') {
        // The one lower case that depends on its neighbours: a capital
        // sigma ending a word is `ς`, elsewhere `σ`. `str::to_lowercase`
        // applies that rule; a character at a time cannot.
        title
            .to_lowercase()
            .chars()
            .for_each(|l| put(Class::of_lower(l)));
        return;
    }
    MEMO.with_borrow_mut(|memo| {
        for c in title.chars() {
            if let Ok(b) = u8::try_from(c)
                && b.is_ascii()
            {
                put(ascii(b));
                continue;
            }
            let slot = &mut memo[c as usize % MEMO_SLOTS];
            let class = match *slot {
                (seen, class) if seen == c => Some(class),
                _ => Class::of(c).inspect(|&class| *slot = (c, class)),
            };
            match class {
                Some(class) => put(class),
                // Several characters in lower case (`İ` is `i̇`).
                None => c.to_lowercase().for_each(|l| put(Class::of_lower(l))),
            }
        }
    });
}

/// Appends what `class` says to `out`: a kept character after the `_` of
/// a pending word boundary, or the boundary itself (never at the start).
#[inline(always)]
fn apply(class: Class, out: &mut String, start: usize, pending_space: &mut bool) {
    match class {
        Class::Keep(c) => {
            if *pending_space {
                out.push('_');
                *pending_space = false;
            }
            out.push(c);
        }
        Class::Space => *pending_space = out.len() > start,
        Class::Drop => {}
    }
}

/// An ASCII character's class, where the Unicode tables reduce to this.
#[inline(always)]
fn ascii(c: u8) -> Class {
    if c.is_ascii_alphanumeric() {
        Class::Keep(char::from(c.to_ascii_lowercase()))
    } else if matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        // `char::is_whitespace` on ASCII (it includes the vertical tab,
        // which `u8::is_ascii_whitespace` does not).
        Class::Space
    } else {
        Class::Drop
    }
}

/// What a character becomes in a normalized title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Kept, as this lower-case character.
    Keep(char),
    /// Whitespace: a word boundary.
    Space,
    Drop,
}

impl Class {
    /// `None` when its lower case is several characters.
    fn of(c: char) -> Option<Class> {
        let mut lower = c.to_lowercase();
        let first = lower.next()?;
        lower.next().is_none().then(|| Class::of_lower(first))
    }

    /// A few letters have no lower-case form (mathematical capitals such as
    /// `𝐀`): dropped, so the result never holds an upper-case letter.
    fn of_lower(c: char) -> Class {
        if c.is_whitespace() {
            Class::Space
        } else if (c.is_alphabetic() || c.is_numeric()) && !c.is_uppercase() {
            Class::Keep(c)
        } else {
            Class::Drop
        }
    }
}

/// Slots in the memo of non-ASCII characters.
const MEMO_SLOTS: usize = 512;

thread_local! {
    /// The class of the last non-ASCII character seen in each slot (by its
    /// code point's low bits). Titles reuse few characters, and the Unicode
    /// lookups behind a class (lower case, letter, digit, upper case) were
    /// a fifth of the transform's time on `seed`'s multilingual titles.
    /// NUL is never looked up, so it marks an empty slot.
    static MEMO: std::cell::RefCell<[(char, Class); MEMO_SLOTS]> =
        const { std::cell::RefCell::new([('\0', Class::Drop); MEMO_SLOTS]) };
}

#[cfg(test)]
mod tests {
    use super::{normalize_title, normalize_title_into};
    use proptest::prelude::*;

    #[test]
    fn spec_examples() {
        assert_eq!(
            normalize_title("Star Wars: The Force Awakens"),
            "star_wars_the_force_awakens"
        );
        assert_eq!(normalize_title("Amélie"), "amélie");
        assert_eq!(
            normalize_title("Spider-Man:  No Way Home"),
            "spiderman_no_way_home"
        );
        assert_eq!(normalize_title("Ocean's Eleven"), "oceans_eleven");
    }

    #[test]
    fn other_scripts_and_spacing() {
        assert_eq!(normalize_title("  Брат 2  "), "брат_2");
        assert_eq!(normalize_title("千と千尋の神隠し"), "千と千尋の神隠し");
        assert_eq!(normalize_title("\tA\n\nB  "), "a_b");
        assert_eq!(normalize_title("!!!"), "");
        assert_eq!(normalize_title("a - b"), "a_b");
    }

    /// The definition: the title's Unicode lower case, then a lookup per
    /// character.
    fn reference(title: &str) -> String {
        let mut out = String::new();
        let mut pending_space = false;
        for c in title.to_lowercase().chars() {
            if c.is_whitespace() {
                pending_space = !out.is_empty();
            } else if (c.is_alphabetic() || c.is_numeric()) && !c.is_uppercase() {
                if pending_space {
                    out.push('_');
                    pending_space = false;
                }
                out.push(c);
            }
        }
        out
    }

    /// A capital sigma ending a word lowers to the final form.
    #[test]
    fn a_final_capital_sigma_is_a_final_sigma() {
        assert_eq!(normalize_title("ΟΔΟΣ"), "οδος");
        assert_eq!(normalize_title("ΣΟΦΟΣ ΣΑΣ!"), "σοφος_σας");
        assert_eq!(normalize_title("Σ"), "σ");
        assert_eq!(normalize_title("ΑΣ.Β"), reference("ΑΣ.Β"));
    }

    /// Characters that share a slot of the memo, in turns.
    #[test]
    fn characters_sharing_a_memo_slot_keep_their_own_class() {
        let t = "\u{c0}\u{2c0} \u{4c0}\u{c0}.\u{2c0}\u{4c0}\u{c0} \u{130}\u{330}\u{130}";
        assert_eq!(normalize_title(t), reference(t));
        assert_eq!(
            normalize_title(t),
            "\u{e0}\u{2c0}_\u{4cf}\u{e0}\u{2c0}\u{4cf}\u{e0}_ii"
        );
    }

    #[test]
    fn every_ascii_character_as_the_definition() {
        for b in 0u8..128 {
            let t = format!("a{}b {} c", b as char, b as char);
            assert_eq!(normalize_title(&t), reference(&t), "byte {b}");
        }
    }

    proptest! {
        #[test]
        fn ascii_fast_path_matches_the_definition(title in "(\\PC|[\\x00-\\x7f]|\u{130}|\u{212a}|\u{3a3}|\u{3c3}|\u{3c2})*") {
            prop_assert_eq!(normalize_title(&title), reference(&title));
            let mut appended = String::from("prefix\t");
            normalize_title_into(&title, &mut appended);
            prop_assert_eq!(&appended[7..], reference(&title));
        }

        #[test]
        fn normalized_title_is_clean(title in "\\PC*") {
            let n = normalize_title(&title);
            prop_assert!(!n.chars().any(char::is_uppercase), "upper-case in {n:?}");
            prop_assert!(n.chars().all(|c| c == '_' || c.is_alphanumeric()), "punctuation in {n:?}");
            prop_assert!(!n.starts_with('_') && !n.ends_with('_'), "edge _ in {n:?}");
            prop_assert!(!n.contains("__"), "__ in {n:?}");
        }
    }
}
