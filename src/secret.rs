//! Keeping secrets out of output: every URL or connection string that may
//! be printed, logged or written to a file passes through here first.

/// Replaces the password in a `postgres://user:pass@host/db` URL or a
/// `key=value` connection string with `***`.
pub fn redact_url(url: &str) -> String {
    if let Ok(mut u) = url::Url::parse(url) {
        if u.password().is_some() {
            let _ = u.set_password(Some("***"));
        }
        let query: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if query.iter().any(|(k, _)| k == "password") {
            let redacted: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    if k == "password" {
                        format!("{k}=***")
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect();
            u.set_query(Some(&redacted.join("&")));
        }
        return u.to_string();
    }
    url.split_whitespace()
        .map(|part| match part.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn hides_passwords() {
        assert_eq!(
            redact_url("postgres://u:s3cret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("host=h password=s3cret user=u"),
            "host=h password=*** user=u"
        );
        assert!(!redact_url("postgres://u@h/db?password=s3cret").contains("s3cret"));
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
