//! Where a connection's password comes from when its URL names none: libpq's
//! `PGPASSWORD`, then its password file (`PGPASSFILE`, else `~/.pgpass`), as
//! `psql` and every libpq client read them, so a user's existing setup works
//! here too and the password need not appear in a URL, a shell history or a
//! process list.
//!
//! [`lookup`] is the file's format alone (sans-IO); [`password_for`] reads
//! the environment and the file.

/// The password of the first line of a password file that matches, libpq's
/// rules: `hostname:port:database:username:password`, each of the first
/// four a value or `*`, `\:` and `\\` escaping a colon and a backslash,
/// lines starting with `#` ignored.
pub fn lookup(file: &str, host: &str, port: u16, database: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    file.lines()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .find_map(|line| {
            let fields = fields(line);
            let [h, p, d, u, password] = <[String; 5]>::try_from(fields).ok()?;
            let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
            (matches(&h, host) && matches(&p, &port) && matches(&d, database) && matches(&u, user))
                .then_some(password)
        })
}

/// A line's fields split at unescaped colons, escapes removed. The
/// password, the fifth, ends at its first unescaped colon, and what
/// follows is ignored, as libpq reads it.
fn fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().unwrap().push(next);
                }
            }
            ':' if fields.len() == 5 => break,
            ':' => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

#[cfg(feature = "io")]
/// The password libpq would use for `cfg` when its URL names none:
/// `PGPASSWORD`, else the password file's first matching line. A password
/// file others can read is ignored with a warning, as libpq does.
pub fn password_for(cfg: &tokio_postgres::Config) -> Option<Vec<u8>> {
    if let Some(p) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
        return Some(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec());
    }
    let file = match std::env::var_os("PGPASSFILE") {
        Some(f) if !f.is_empty() => std::path::PathBuf::from(f),
        _ => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let meta = std::fs::metadata(&file).ok()?;
    if !meta.is_file() {
        return None;
    }
    if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0 {
        tracing::warn!(
            "password file {} has group or world access and is ignored; permissions should be u=rw (0600) or less",
            file.display()
        );
        return None;
    }
    // A password file is a few lines; anything larger is not one.
    if meta.len() > 1 << 20 {
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        // libpq matches a Unix socket's connections as `localhost`.
        Some(tokio_postgres::config::Host::Unix(_)) | None => "localhost".to_string(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let user = cfg.get_user()?;
    let database = cfg.get_dbname().unwrap_or(user);
    lookup(&text, &host, port, database, user).map(String::into_bytes)
}

#[cfg(test)]
mod tests {
    use super::lookup;

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let file = "\
# comment: *:*:*:*:nope
db.example:5432:app:alice:first
*:*:app:alice:second
*:*:*:bob:p\\:a\\\\ss:ignored
";
        assert_eq!(
            lookup(file, "db.example", 5432, "app", "alice").as_deref(),
            Some("first")
        );
        assert_eq!(
            lookup(file, "other", 6543, "app", "alice").as_deref(),
            Some("second")
        );
        assert_eq!(lookup(file, "other", 6543, "other", "alice"), None);
        assert_eq!(lookup(file, "h", 1, "d", "bob").as_deref(), Some("p:a\\ss"));
    }

    #[test]
    fn lines_with_too_few_fields_and_crlf_endings_are_read_as_libpq_does() {
        let file = "h:5432:d:u\r\nh:5432:d:u:pw\r\n";
        assert_eq!(lookup(file, "h", 5432, "d", "u").as_deref(), Some("pw"));
        assert_eq!(
            lookup("h:5432:d:u:\n", "h", 5432, "d", "u").as_deref(),
            Some("")
        );
    }
}
