//! `files_list.data`: one key per line.

/// Keys in first-seen order. Tolerates CRLF, blank lines, surrounding
/// whitespace and duplicate lines (SPEC, "The bucket").
pub fn parse_manifest(text: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .filter(|k| seen.insert(*k))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_manifest;

    #[test]
    fn tolerates_messy_lines() {
        let text = "a.json\r\n\r\n  b.json  \r\na.json\n\n\tc.json\n";
        assert_eq!(parse_manifest(text), ["a.json", "b.json", "c.json"]);
        assert!(parse_manifest("").is_empty());
        assert!(parse_manifest("\r\n \n").is_empty());
    }
}
