//! `original_title_normalized` (docs/contract.md).

/// Lowercases, keeps only letters, digits and whitespace, trims, and joins
/// the words with `_`.
///
/// `char::is_alphabetic`/`is_numeric` stand in for "Unicode letter/digit".
/// A few letters have no lower-case form (mathematical capitals such as `𝐀`);
/// they are dropped too, so the result never holds an upper-case letter.
pub fn normalize_title(title: &str) -> String {
    let mut out = String::with_capacity(title.len());
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

#[cfg(test)]
mod tests {
    use super::normalize_title;
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

    proptest! {
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
