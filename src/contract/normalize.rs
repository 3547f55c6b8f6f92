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
    for c in title.chars() {
        // Most titles are ASCII, where the Unicode tables reduce to this.
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                if pending_space {
                    out.push('_');
                    pending_space = false;
                }
                out.push(c.to_ascii_lowercase());
            } else if matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r') {
                // `char::is_whitespace` on ASCII (it includes the vertical
                // tab, which `u8::is_ascii_whitespace` does not).
                pending_space = out.len() > start;
            }
            continue;
        }
        for c in c.to_lowercase() {
            if c.is_whitespace() {
                pending_space = out.len() > start;
            } else if (c.is_alphabetic() || c.is_numeric()) && !c.is_uppercase() {
                if pending_space {
                    out.push('_');
                    pending_space = false;
                }
                out.push(c);
            }
        }
    }
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

    /// The definition, one Unicode lookup per character.
    fn reference(title: &str) -> String {
        let mut out = String::new();
        let mut pending_space = false;
        for c in title.chars().flat_map(char::to_lowercase) {
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

    #[test]
    fn every_ascii_character_as_the_definition() {
        for b in 0u8..128 {
            let t = format!("a{}b {} c", b as char, b as char);
            assert_eq!(normalize_title(&t), reference(&t), "byte {b}");
        }
    }

    proptest! {
        #[test]
        fn ascii_fast_path_matches_the_definition(title in "(\\PC|[\\x00-\\x7f]|\u{130}|\u{212a})*") {
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
