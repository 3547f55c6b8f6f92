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
/// four a value or `*` (a `\\*` is a literal star), `\\:` and `\\\\`
/// escaping a colon and a backslash, lines starting with `#` ignored. Read
/// as bytes, as libpq does: a line that is not UTF-8 (a Latin-1 password
/// for another server) costs the other lines nothing.
pub fn lookup(file: &[u8], host: &str, port: u16, database: &str, user: &str) -> Option<Vec<u8>> {
    let port = port.to_string();
    let wanted = [
        host.as_bytes(),
        port.as_bytes(),
        database.as_bytes(),
        user.as_bytes(),
    ];
    file.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty() && line[0] != b'#')
        .find_map(|line| {
            let fields = fields(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, value)| field.wildcard || field.text == value);
            matches.then(|| fields[4].text.clone())
        })
}

/// One field of a line: its text with escapes removed, and whether it was
/// a bare `*`.
struct Field {
    text: Vec<u8>,
    wildcard: bool,
}

/// A line's fields split at unescaped colons, escapes removed. The
/// password, the fifth, ends at its first unescaped colon, and what
/// follows is ignored, as libpq reads it.
fn fields(line: &[u8]) -> Vec<Field> {
    let mut fields: Vec<(Vec<u8>, bool)> = vec![(Vec::new(), false)];
    let mut bytes = line.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b':' if fields.len() == 5 => break,
            b':' => fields.push((Vec::new(), false)),
            b'\\' => {
                if let Some(&next) = bytes.next() {
                    let (text, escaped) = fields.last_mut().unwrap();
                    text.push(next);
                    *escaped = true;
                }
            }
            b => fields.last_mut().unwrap().0.push(b),
        }
    }
    fields
        .into_iter()
        .map(|(text, escaped)| Field {
            wildcard: !escaped && text == b"*",
            text,
        })
        .collect()
}

#[cfg(feature = "io")]
/// The password libpq would use for `cfg` when its URL names none:
/// `PGPASSWORD`, else the password file's line matching the URL's host.
/// A password file others can read, or that is not a plain file, is
/// ignored with a warning, as libpq does.
///
/// libpq looks the file up host by host as it tries them, and so do this
/// program's connections ([`super::connect`] hands this one host at a
/// time). Given several hosts at once (`--psql`, which hands psql one set
/// of variables), the file's answer is taken only when it is the same for
/// each: otherwise one server's password would be sent to another
/// ([`PerHostPasswords`]; `--psql` then hands psql the file itself).
///
/// Each warning is given once a process: the file is read again for every
/// connection a pool opens.
pub fn password_for(cfg: &tokio_postgres::Config) -> Result<Option<Vec<u8>>, PerHostPasswords> {
    if let Some(p) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
        return Ok(Some(
            std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec(),
        ));
    }
    let Some(file) = usable_password_file() else {
        return Ok(None);
    };
    let (Ok(text), Some(user)) = (std::fs::read(&file), cfg.get_user()) else {
        return Ok(None);
    };
    let database = cfg.get_dbname().unwrap_or(user);
    // As libpq: each host as written, except that its default socket
    // directory (and no host at all) is matched as `localhost`; a URL that
    // gives only `hostaddr` is matched by the addresses.
    let hosts: Vec<String> = match (cfg.get_hosts(), cfg.get_hostaddrs()) {
        ([], []) => vec!["localhost".to_string()],
        ([], addrs) => addrs.iter().map(std::net::IpAddr::to_string).collect(),
        (hosts, _) => hosts
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(dir) => {
                    let dir = dir.to_string_lossy().into_owned();
                    if dir == super::DEFAULT_SOCKET_DIR {
                        "localhost".to_string()
                    } else {
                        dir
                    }
                }
            })
            .collect(),
    };
    let ports = cfg.get_ports();
    let mut found = hosts.iter().enumerate().map(|(i, host)| {
        // One port for every host, or one each.
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        (
            format!("{host} (port {port})"),
            lookup(&text, host, port, database, user),
        )
    });
    let Some((first_host, password)) = found.next() else {
        return Ok(None);
    };
    match found.find(|(_, other)| *other != password) {
        Some((other_host, _)) => Err(PerHostPasswords {
            file,
            hosts: [first_host, other_host],
        }),
        None => Ok(password),
    }
}

#[cfg(feature = "io")]
/// Where libpq looks for the password file: `PGPASSFILE`, else
/// `~/.pgpass`.
pub fn password_file() -> Option<std::path::PathBuf> {
    match std::env::var_os("PGPASSFILE") {
        Some(f) if !f.is_empty() => Some(std::path::PathBuf::from(f)),
        _ => std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".pgpass")),
    }
}

#[cfg(feature = "io")]
/// The password file libpq would read ([`password_file`]): `None` when
/// there is none, or when it is not a plain file or others can read it,
/// which libpq ignores, with a warning (once a process).
pub fn usable_password_file() -> Option<std::path::PathBuf> {
    let file = password_file()?;
    let meta = std::fs::metadata(&file).ok()?;
    if !meta.is_file() {
        warn_once(|| {
            tracing::warn!(
                "password file {} is not a plain file and is ignored",
                file.display()
            )
        });
        return None;
    }
    if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0 {
        warn_once(|| {
            tracing::warn!(
                "password file {} has group or world access and is ignored; permissions should be u=rw (0600) or less",
                file.display()
            )
        });
        return None;
    }
    Some(file)
}

#[cfg(feature = "io")]
/// Runs `warn` the first time it is called in this process.
fn warn_once(warn: impl FnOnce()) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(warn);
}

#[cfg(feature = "io")]
/// A password file that answers differently for two of a connection's
/// hosts (or for one and not the other): `--psql` hands psql the file
/// instead, which looks it up host by host.
#[derive(Debug)]
pub struct PerHostPasswords {
    pub file: std::path::PathBuf,
    pub hosts: [String; 2],
}

#[cfg(feature = "io")]
impl std::fmt::Display for PerHostPasswords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the password file {} answers differently for the hosts {} and {}, and a connection sends one password to every host it tries: name one host, or give the password in PGPASSWORD",
            self.file.display(),
            self.hosts[0],
            self.hosts[1]
        )
    }
}

#[cfg(feature = "io")]
impl std::error::Error for PerHostPasswords {}

#[cfg(test)]
mod tests {
    use super::lookup;

    fn found(file: &[u8], host: &str, port: u16, db: &str, user: &str) -> Option<String> {
        lookup(file, host, port, db, user).map(|p| String::from_utf8_lossy(&p).into_owned())
    }

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let file = b"\
# comment: *:*:*:*:nope
db.example:5432:app:alice:first
*:*:app:alice:second
*:*:*:bob:p\\:a\\\\ss:ignored
\\*:*:*:carol:only-for-a-host-named-star
";
        assert_eq!(
            found(file, "db.example", 5432, "app", "alice").as_deref(),
            Some("first")
        );
        assert_eq!(
            found(file, "other", 6543, "app", "alice").as_deref(),
            Some("second")
        );
        assert_eq!(found(file, "other", 6543, "other", "alice"), None);
        assert_eq!(found(file, "h", 1, "d", "bob").as_deref(), Some("p:a\\ss"));
        // An escaped star is a star, not a wildcard.
        assert_eq!(found(file, "h", 1, "d", "carol"), None);
        assert_eq!(
            found(file, "*", 1, "d", "carol").as_deref(),
            Some("only-for-a-host-named-star")
        );
    }

    #[test]
    fn lines_with_too_few_fields_crlf_endings_and_other_encodings_are_read_as_libpq_does() {
        let file = b"h:5432:d:u\r\nh:5432:d:u:pw\r\n";
        assert_eq!(found(file, "h", 5432, "d", "u").as_deref(), Some("pw"));
        assert_eq!(
            found(b"h:5432:d:u:\n", "h", 5432, "d", "u").as_deref(),
            Some("")
        );
        // A Latin-1 password on another server's line hides nothing, and a
        // password's own bytes come back as they are.
        let file = b"other:5432:d:u:caf\xe9\nh:5432:d:u:pw\nx:1:d:u:\xff\n";
        assert_eq!(found(file, "h", 5432, "d", "u").as_deref(), Some("pw"));
        assert_eq!(lookup(file, "x", 1, "d", "u"), Some(vec![0xff]));
    }
}
