//! The database side: schema migrations, the ledger, the COPY encoding of
//! rows, the writers each model uses, and the embedded PostgreSQL server.
//!
//! `ledger` and `copy` are sans-IO (SQL text, bound parameters and COPY
//! bytes); `sync_writer` and `async_writer` are the thin shells that send
//! them, each on a tokio-postgres client whose every wait is bounded;
//! `watched` bounds the blocking `postgres` client that migrations and the
//! harness use.

#[cfg(feature = "io")]
pub mod async_writer;
#[cfg(feature = "io")]
pub mod connect;
pub mod copy;
#[cfg(feature = "io")]
pub mod embedded;
pub mod ledger;
pub mod pgpass;
#[cfg(feature = "io")]
pub mod schema;
pub mod statements;
#[cfg(feature = "io")]
pub mod sync_writer;
#[cfg(feature = "io")]
pub mod tls;
#[cfg(feature = "io")]
pub mod transaction;
#[cfg(feature = "io")]
pub mod watched;

#[cfg(feature = "io")]
pub use connect::{connect_error, connect_sync};
#[cfg(feature = "io")]
pub use embedded::{Durability, EmbeddedPostgres, Flavor};
pub use ledger::{FileOutcome, WritePlan, WriteStrategy};

/// Settings every session this program opens starts with (libpq startup
/// options, so a pooled connection has them from its first statement, and
/// anything the URL's own `options` sets afterwards wins).
///
/// * `lock_timeout=5s`: the only lock a worker normally waits on is another
///   worker's uncommitted claim of the same key, held for one file's or one
///   group's transaction (well under a second on a healthy server). A claim
///   still waiting after 5 s belongs to a stalled or partitioned worker; the
///   key is reported busy and left for a later pass instead of holding this
///   worker up indefinitely.
/// * `idle_in_transaction_session_timeout=60s`: our writers never pause
///   inside a transaction except between pipelined statements, so a session
///   idle in a transaction for a minute is a stalled process (stopped,
///   swapped out, debugger): the server ends it and its claims are freed.
/// * `tcp_keepalives_*`: a worker cut off by the network is noticed by the
///   server in about two minutes (60 s idle, then 6 probes 10 s apart)
///   instead of the kernel's two hours, and its transaction rolled back.
/// * `jit=off`: every statement here is short, and on a table never
///   analysed (a ledger filled by hand, or before autovacuum's first visit)
///   the planner's guesses can pass JIT's cost thresholds: a page of the
///   ledger's lookup then spent 230 ms compiling for 5 ms of work, 15 s
///   for a listing of 66,000 keys.
pub const SESSION_OPTIONS: &str = "-c lock_timeout=5s -c idle_in_transaction_session_timeout=60s \
    -c tcp_keepalives_idle=60 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=6 -c jit=off";

/// libpq's stricter TLS settings, which tokio-postgres does not parse
/// (`sslmode=verify-full` read as "invalid connection string"): the URL
/// with `sslmode=verify-full` or `verify-ca` as `require` (which verifies
/// the certificate here, name included) and `sslrootcert` taken out, and
/// that root file. In a URL's query or a `key=value` string (unquoted
/// values).
#[cfg(feature = "io")]
pub fn libpq_tls(url: &str) -> (String, Option<std::path::PathBuf>) {
    let mut root = None;
    let Ok(rewritten) = rewrite_pairs(url, |key, value| {
        Ok::<_, std::convert::Infallible>(match (key, value) {
            // libpq 16's "the system's roots": trusted already (Mozilla's).
            ("sslrootcert", "system") => None,
            // Refused by `libpq_only_keys`: libpq reads it as a value.
            ("sslrootcert", "") => Some((key.into(), String::new())),
            ("sslrootcert", v) => {
                root = Some(std::path::PathBuf::from(v));
                None
            }
            ("sslmode", "verify-full" | "verify-ca") => Some((key.into(), "require".into())),
            (k, v) => Some((k.into(), v.into())),
        })
    });
    (rewritten, root)
}

#[cfg(feature = "io")]
/// `url` with each pair of its query, or of its `key=value` string, passed
/// through `f`: kept as written when `f` gives it back unchanged, rewritten
/// when it changes it, dropped on `None`. A `key=value` string is rebuilt
/// from its pairs, each value quoted, so that a quoted value holding blanks
/// keeps its words; one libpq would not read is left for the parser to
/// refuse.
fn rewrite_pairs<E>(
    url: &str,
    mut f: impl FnMut(&str, &str) -> Result<Option<(String, String)>, E>,
) -> Result<String, E> {
    if is_url(url) {
        let Some((base, query)) = url.split_once('?') else {
            return Ok(url.to_string());
        };
        let mut pairs = Vec::new();
        for pair in query.split('&') {
            let Some((k, v)) = pair.split_once('=') else {
                pairs.push(pair.to_string());
                continue;
            };
            // Both decoded, as libpq decodes them: `ssl%6Dode` is `sslmode`.
            let key = percent_encoding::percent_decode_str(k).decode_utf8_lossy();
            let value = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
            match f(&key, &value)? {
                Some((nk, nv)) if nk == key && nv == value => pairs.push(pair.to_string()),
                Some((nk, nv)) => pairs.push(format!(
                    "{nk}={}",
                    percent_encoding::utf8_percent_encode(&nv, percent_encoding::NON_ALPHANUMERIC)
                )),
                None => {}
            }
        }
        return Ok(match pairs.is_empty() {
            true => base.to_string(),
            false => format!("{base}?{}", pairs.join("&")),
        });
    }
    let Some(pairs) = conninfo_pairs(url) else {
        return Ok(url.to_string());
    };
    let mut kept = Vec::new();
    for (k, v) in &pairs {
        if let Some((nk, nv)) = f(k, v)? {
            kept.push(format!("{nk}={}", quote_conninfo(&nv)));
        }
    }
    Ok(kept.join(" "))
}

#[cfg(feature = "io")]
/// The keys libpq reads and tokio-postgres's parser does not (it says
/// "invalid connection string" and names none), each carried over under
/// tokio-postgres's name or value, dropped where it changes nothing this
/// client does, or refused in one line that names it and says why. An
/// empty value is libpq's "not given", and dropped.
fn libpq_only_keys(read: &str) -> anyhow::Result<String> {
    const LIBPQ_ONLY: &[&str] = &[
        "keepalives_count",
        "client_encoding",
        "gssencmode",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "requiressl",
        "fallback_application_name",
        "sslcompression",
        "sslsni",
        "krbsrvname",
        "gsslib",
        "passfile",
        "service",
        "requirepeer",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "sslcrldir",
        "replication",
    ];
    rewrite_pairs(read, |key, v| {
        let refuse = |why: &str| {
            let given = match key {
                "sslpassword" | "password" => String::new(),
                _ => format!("={v:?}"),
            };
            Err(anyhow::anyhow!(
                "the database URL gives {key}{given}: {why}"
            ))
        };
        let utf8 = ["utf8", "utf-8", "unicode"]
            .iter()
            .any(|u| v.eq_ignore_ascii_case(u));
        match key {
            "keepalives_count" if v.parse::<u32>().is_err() && !v.is_empty() => {
                refuse("not a number of probes")
            }
            "keepalives_count" if !v.is_empty() => {
                Ok(Some(("keepalives_retries".into(), v.into())))
            }
            // libpq's `allow` tries without TLS first; `prefer` asks for it
            // first, never weaker.
            "sslmode" if v == "allow" => Ok(Some((key.into(), "prefer".into()))),
            // libpq takes an empty one as a value: the last given wins and
            // the environment's is not read (PGHOSTADDR, PGSSLROOTCERT).
            // Dropped, the earlier one or the environment's would be used;
            // tokio-postgres refuses an empty address.
            "hostaddr" | "sslrootcert" if v.is_empty() => {
                refuse("an empty value, which libpq reads otherwise than none; leave it out")
            }
            // libpq then reads no PGPASSWORD (the value is given) but the
            // password file; this client would have sent PGPASSWORD's.
            "password" if v.is_empty() => {
                refuse("an empty password, which libpq reads otherwise than none; leave it out")
            }
            _ if v.is_empty() && LIBPQ_ONLY.contains(&key) => Ok(None),
            "client_encoding" if utf8 || v == "auto" => Ok(None),
            "client_encoding" => refuse(
                "this client's sessions are UTF8, which every server converts from; leave it out",
            ),
            "gssencmode" if v != "require" => Ok(None),
            "gssencmode" => refuse("this client has no GSSAPI encryption; use sslmode=require"),
            "ssl_min_protocol_version" if matches!(v, "TLSv1" | "TLSv1.1" | "TLSv1.2") => Ok(None),
            "ssl_min_protocol_version" => refuse("this client's floor is TLS 1.2; leave it out"),
            "requiressl" if v == "0" => Ok(None),
            "requiressl" => refuse("libpq's old name; write sslmode=require"),
            // What changes nothing here: a name the server shows when none
            // is given, compression no TLS library offers any more, SNI
            // (always sent), a ceiling on TLS versions, Kerberos's names.
            "fallback_application_name"
            | "sslcompression"
            | "sslsni"
            | "ssl_max_protocol_version"
            | "krbsrvname"
            | "gsslib" => Ok(None),
            "passfile" => refuse("not read from the URL here; give the file as PGPASSFILE"),
            "service" => refuse("the service file is not read; give the server in the URL"),
            "requirepeer" => refuse("this client cannot check a socket's peer"),
            "sslcert" | "sslkey" | "sslpassword" => {
                refuse("this client presents no client certificate")
            }
            "sslcrl" | "sslcrldir" => refuse("this client checks no revocation list"),
            "replication" => refuse("a replication connection cannot load files"),
            "target_session_attrs" if !matches!(v, "any" | "read-write" | "read-only") => {
                refuse("this client honours any, read-write and read-only")
            }
            _ => Ok(Some((key.into(), v.into()))),
        }
    })
}

#[cfg(feature = "io")]
/// libpq refuses a URL with a percent-escape that is not two hex digits,
/// or that is a NUL, before it contacts anything; tokio-postgres's parser
/// took `%zz` as written and sent it (in a password, to the server). Said
/// without the URL, whose bad part may be the password.
fn check_escapes(url: &str) -> anyhow::Result<()> {
    if !is_url(url) {
        return Ok(());
    }
    let bytes = url.as_bytes();
    for (at, _) in url.match_indices('%') {
        match bytes.get(at + 1..at + 3) {
            Some(b"00") => anyhow::bail!(
                "the database URL holds %00, which libpq refuses: no part of it may hold a NUL"
            ),
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => {}
            _ => anyhow::bail!(
                "the database URL holds a '%' not followed by two hex digits, which libpq refuses: write a '%' in it as %25"
            ),
        }
    }
    Ok(())
}

#[cfg(feature = "io")]
/// Whether a URL's query or a `key=value` string gives `key`.
fn names_key(url: &str, key: &str) -> bool {
    let decoded = |k: &str| percent_encoding::percent_decode_str(k).decode_utf8_lossy() == key;
    if is_url(url) {
        url.split_once('?').is_some_and(|(_, query)| {
            query
                .split('&')
                .any(|pair| decoded(pair.split_once('=').map_or(pair, |(k, _)| k)))
        })
    } else {
        conninfo_pairs(url).is_some_and(|pairs| pairs.iter().any(|(k, _)| k == key))
    }
}

#[cfg(feature = "io")]
/// A connection URL, as both libpq and tokio-postgres tell one from a
/// `key=value` string: by its scheme, not by a `://` anywhere in it.
fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

#[cfg(feature = "io")]
/// A libpq `key=value` string's pairs, read as libpq reads them: ASCII
/// blanks around `=`, values in single quotes, a backslash taking the next
/// character as it is. `None` when it is not one (libpq refuses it).
fn conninfo_pairs(s: &str) -> Option<Vec<(String, String)>> {
    use crate::secret::libpq_blank;
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| libpq_blank(*c)).is_some() {}
        if chars.peek().is_none() {
            return Some(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !libpq_blank(*c) && *c != '=') {
            key.push(c);
        }
        // libpq refuses an empty key; tokio-postgres's parser stops there
        // and drops the rest of the string without a word.
        if key.is_empty() {
            return None;
        }
        while chars.next_if(|c| libpq_blank(*c)).is_some() {}
        if chars.next() != Some('=') {
            return None;
        }
        while chars.next_if(|c| libpq_blank(*c)).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !libpq_blank(*c)) {
                match c {
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(feature = "io")]
/// The keys libpq 15 reads in a connection string. A key it does not know
/// is refused, as psql refuses it: tokio-postgres reads some libpq does not
/// (`load_balance_hosts` changes which host gets the password first), and
/// trims Unicode blanks around a key libpq would refuse (`<NBSP>sslmode`).
const LIBPQ_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "sslmode",
    "requiressl",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "gssencmode",
    "krbsrvname",
    "gsslib",
    "service",
    "target_session_attrs",
];

#[cfg(feature = "io")]
/// A value for a `key=value` string, quoted when it must be for both
/// parsers to read it back whole.
fn quote_conninfo(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_string();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(feature = "io")]
/// The URL as a client configuration with [`SESSION_OPTIONS`] in front of
/// its own options. libpq's `sslmode=verify-full`, `verify-ca` and
/// `sslrootcert` are taken as [`libpq_tls`] says (the root file as
/// `--db-ca-file` when that is not given). What the URL leaves out comes
/// from libpq's environment ([`libpq_environment`]); a URL that names no
/// password takes libpq's host by host as each is tried
/// ([`connect`], [`pgpass`]).
pub fn session_config(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    let mut cfg = libpq_config(url)?;
    let options = match cfg.get_options() {
        Some(own) if !own.trim().is_empty() => format!("{SESSION_OPTIONS} {own}"),
        _ => SESSION_OPTIONS.to_string(),
    };
    cfg.options(options);
    Ok(cfg)
}

#[cfg(feature = "io")]
/// The URL read as libpq reads it, for the job's connections and `--psql`
/// alike: its stricter TLS settings ([`libpq_tls`], the root file kept as
/// the CA to trust), then what it leaves out from libpq's environment
/// ([`libpq_environment`]), once [`libpq_url`] has rewritten what
/// tokio-postgres's parser would read differently from libpq.
pub fn libpq_config(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    check_escapes(url)?;
    let (tls_read, root) = libpq_tls(url);
    if let Some(root) = root {
        tls::set_ca_file(&root);
    }
    let read = libpq_only_keys(&libpq_url(&tls_read, env_var)?)?;
    let mut cfg: tokio_postgres::Config = read.parse().map_err(|e| {
        anyhow::anyhow!(
            "bad database URL {} ({})",
            crate::secret::redact_url(url),
            crate::error::chain(&e)
        )
    })?;
    // libpq takes an empty host, user or database for none given (the
    // socket directory, the login name, the user's name), where
    // tokio-postgres takes the empty name, and the password file another
    // line.
    use tokio_postgres::config::Host;
    for (given, what) in [
        (cfg.get_user() == Some(""), "user name"),
        (cfg.get_dbname() == Some(""), "database name"),
        (
            cfg.get_hosts()
                .iter()
                .any(|h| matches!(h, Host::Tcp(n) if n.is_empty())),
            "host",
        ),
    ] {
        if given {
            anyhow::bail!(
                "the database URL gives an empty {what}, which libpq reads otherwise than this client: leave it out, or name it"
            );
        }
    }
    refuse_empty_demands(|name| std::env::var(name).ok())?;
    libpq_environment(&mut cfg, env_var)?;
    libpq_demands(&mut cfg, !names_key(&tls_read, "sslmode"), env_var)?;
    // Said here, naming where the counts come from, before anything is
    // looked up by host (tokio-postgres says "invalid number of ports"
    // only when it connects).
    let (hosts, addrs, ports) = (
        cfg.get_hosts().len(),
        cfg.get_hostaddrs().len(),
        cfg.get_ports().len(),
    );
    if hosts > 0 && addrs > 0 && hosts != addrs {
        anyhow::bail!(
            "the database URL, PGHOST and PGHOSTADDR give {hosts} hosts for {addrs} hostaddr addresses; give as many of each"
        );
    }
    if ports > 1 && ports != hosts.max(addrs) {
        anyhow::bail!(
            "the database URL, PGHOST and PGPORT give {ports} ports for {} hosts; give one port, or one for each host",
            hosts.max(addrs)
        );
    }
    Ok(cfg)
}

#[cfg(feature = "io")]
/// A `postgres://` URL rewritten so that tokio-postgres's parser reads the
/// server libpq (and so psql) would read, or refused where the two would
/// send the password to different servers. `var` reads the environment
/// (`PGHOST`, `PGPORT`), empty values already dropped. A `key=value`
/// string, and a URL that names no host (which [`libpq_environment`]
/// completes), are left as they are.
///
/// Where they differ, and what is done:
/// * the credentials: libpq looks for the `@` before the first `/` only,
///   tokio-postgres anywhere, so `postgres://h/db?x=a@evil` would send
///   the password to `evil`. An `@` past the first `/` is refused;
/// * `?host=`: libpq takes it instead of the hosts before the path,
///   tokio-postgres as well as them. Both at once is refused. Alone, libpq
///   splits it at its commas, tokio-postgres reads one host: written as
///   one `host=` a host;
/// * ports: libpq gives a lone host without a port `PGPORT` (one port),
///   and the hosts without one the query's `?port=`; an empty port
///   (`h:`) is no port. tokio-postgres gives such a host 5432 and adds the
///   query's ports after, so they are written into the hosts here. With
///   several hosts libpq gives those without a port 5432, not `PGPORT`;
/// * an empty host (`postgres://u@:6543/db`): libpq's default host
///   (`PGHOST`, else its socket directory), where tokio-postgres looks up
///   a host named "". An empty host in a list, or an empty `?host=`, is
///   the socket directory, whatever `PGHOST` says;
/// * `host`, `hostaddr` or `port` given twice in the query: libpq takes
///   the last, tokio-postgres adds them up. Refused;
/// * a `%2C` in a host: two hosts to libpq, one to tokio-postgres. Refused.
pub fn libpq_url(url: &str, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
    // What a host may not hold as it is inside a URL's host list.
    const IN_HOST: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'-').remove(b'_');
    let Some((scheme, rest)) = ["postgresql://", "postgres://"]
        .iter()
        .find_map(|prefix| url.strip_prefix(prefix).map(|rest| (*prefix, rest)))
    else {
        // A `key=value` string: libpq refuses what it cannot read (where
        // tokio-postgres may read a part), takes the last of a key given
        // twice (tokio-postgres adds up hosts, addresses and ports).
        let Some(pairs) = conninfo_pairs(url) else {
            anyhow::bail!(
                "the database URL is neither a postgres:// URL nor a key=value string as libpq reads one (an unclosed quote, a word without =, an empty key?)"
            );
        };
        let keys: Vec<String> = pairs.into_iter().map(|(k, _)| k).collect();
        refuse_keys(&keys, false)?;
        return Ok(url.to_string());
    };
    let (userinfo, after) = match (rest.find('@'), rest.find('/')) {
        (Some(at), Some(slash)) if slash < at => anyhow::bail!(
            "the database URL has an '@' after its first '/': libpq reads no user there, this client would read everything before it as one; percent-encode it (%40)"
        ),
        (Some(at), _) => rest.split_at(at + 1),
        (None, _) => ("", rest),
    };
    let (hosts, tail) = after.split_at(after.find(['/', '?']).unwrap_or(after.len()));
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let key_of = |pair: &str| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        percent_decode_str(key).decode_utf8_lossy().into_owned()
    };
    let value_of = |pair: &str| {
        let value = pair.split_once('=').map_or("", |(_, v)| v);
        percent_decode_str(value).decode_utf8_lossy().into_owned()
    };
    // An empty host in a list is libpq's socket directory; only a host part
    // left wholly empty takes PGHOST.
    let socket_dir = || utf8_percent_encode(DEFAULT_SOCKET_DIR, IN_HOST).to_string();
    let pairs: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
        .collect();
    let keys: Vec<String> = pairs.iter().map(|p| key_of(p)).collect();
    refuse_keys(&keys, true)?;
    if hosts.is_empty() {
        // The hosts, if any, are in the query: libpq splits `?host=` at its
        // commas (an empty one is the socket directory); tokio-postgres
        // reads the value as one host. One pair a host.
        match pairs.iter().find(|p| key_of(p) == "host") {
            Some(given) if value_of(given).contains(',') || value_of(given).is_empty() => {}
            _ => return Ok(url.to_string()),
        }
        let addressed =
            var("PGHOSTADDR").is_some() || pairs.iter().any(|p| key_of(p) == "hostaddr");
        let mut written = Vec::with_capacity(pairs.len() + 1);
        for pair in pairs {
            if key_of(pair) != "host" {
                written.push(pair.to_string());
                continue;
            }
            for host in value_of(pair).split(',') {
                let host = match host {
                    // libpq then connects to the address and looks the
                    // password up by it; here it would be "localhost"'s.
                    "" if addressed => anyhow::bail!(
                        "the database URL leaves a host empty in ?host= beside a hostaddr; name every host"
                    ),
                    "" => socket_dir(),
                    host => utf8_percent_encode(host, IN_HOST).to_string(),
                };
                written.push(format!("host={host}"));
            }
        }
        return Ok(format!("{scheme}{userinfo}{path}?{}", written.join("&")));
    }
    let mut query_ports = None;
    let mut kept = Vec::new();
    for pair in pairs {
        match key_of(pair).as_str() {
            "host" => anyhow::bail!(
                "the database URL names hosts both before its path and in ?host=: libpq takes only ?host=, this client would try both; name them in one place"
            ),
            "port" => query_ports = Some(value_of(pair)),
            _ => kept.push(pair),
        }
    }
    let chunks: Vec<&str> = hosts.split(',').collect();
    if chunks
        .iter()
        .any(|c| c.to_ascii_lowercase().contains("%2c"))
    {
        anyhow::bail!(
            "the database URL has a percent-encoded ',' in a host: libpq reads two hosts there, this client one; write the comma as it is"
        );
    }
    // A port given in a host, the empty one as none.
    let split = |chunk: &str| -> anyhow::Result<(String, Option<String>)> {
        let (host, port) = match chunk.strip_prefix('[') {
            Some(bracketed) => match bracketed.split_once(']') {
                Some((_, after)) => {
                    let end = chunk.len() - after.len();
                    // libpq refuses anything else after the bracket; the
                    // parser dropped it, and the port with it.
                    if !after.is_empty() && !after.starts_with(':') {
                        anyhow::bail!(
                            "the database URL has {after:?} after a bracketed host, where only :port may follow"
                        );
                    }
                    (&chunk[..end], after.strip_prefix(':'))
                }
                None => (chunk, None),
            },
            None => match chunk.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (chunk, None),
            },
        };
        Ok((
            host.to_string(),
            port.filter(|p| !p.is_empty()).map(str::to_string),
        ))
    };
    let given = query_ports
        .as_deref()
        .map(|ports| {
            env_ports(ports).map_err(|_| {
                anyhow::anyhow!(
                    "the database URL's ?port= {ports:?} is not a port number or a list of them"
                )
            })
        })
        .transpose()?;
    let single = chunks.len() == 1;
    let env_port = if single { var("PGPORT") } else { None };
    let env_port = env_port.as_deref().map(env_ports).transpose()?;
    let addressed = var("PGHOSTADDR").is_some() || kept.iter().any(|p| key_of(p) == "hostaddr");
    let mut port_in_query = None;
    let mut written = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let (mut host, port) = split(chunk)?;
        if host.is_empty() {
            host = match var("PGHOST") {
                Some(default) if single && !default.contains(',') => {
                    utf8_percent_encode(&default, IN_HOST).to_string()
                }
                Some(_) if single => anyhow::bail!(
                    "the database URL leaves its host empty and PGHOST names several; name the host"
                ),
                // libpq connects to the address alone: no host to default
                // (the socket directory would leave TLS no name to verify,
                // and the password file matched as "localhost").
                None if single && addressed => String::new(),
                // libpq connects to that address with no host name (TLS and
                // the password file take the address); the socket directory
                // here would send "localhost"'s line to it.
                _ if addressed => anyhow::bail!(
                    "the database URL leaves a host empty in its list beside a hostaddr; name every host"
                ),
                _ => socket_dir(),
            };
        }
        let pick = |ports: &[u16], from: &str| match ports {
            [one] => Ok(*one),
            many if many.len() == chunks.len() => Ok(many[i]),
            many => Err(anyhow::anyhow!(
                "{from} gives {} ports for {} hosts; give one port, or one for each host",
                many.len(),
                chunks.len()
            )),
        };
        let port = match (given.as_deref(), port, env_port.as_deref()) {
            // libpq's `?port=` replaces the ports before the path.
            (Some(ports), _, _) => Some(pick(ports, "the database URL's ?port=")?.to_string()),
            (None, Some(port), _) => Some(port),
            (None, None, Some(ports)) => Some(pick(ports, "PGPORT")?.to_string()),
            (None, None, None) => None,
        };
        written.push(match port {
            // Written in the query: tokio-postgres reads `:port` alone as
            // an empty host.
            Some(port) if host.is_empty() => {
                port_in_query = Some(format!("port={port}"));
                host
            }
            Some(port) => format!("{host}:{port}"),
            None => host,
        });
    }
    let mut kept: Vec<&str> = kept;
    if let Some(port) = &port_in_query {
        kept.push(port);
    }
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    Ok(format!(
        "{scheme}{userinfo}{}{path}{query}",
        written.join(",")
    ))
}

#[cfg(feature = "io")]
/// Among a connection string's keys (a URL's query, decoded, or a
/// `key=value` string's), what libpq refuses or reads otherwise than
/// tokio-postgres: a key it does not know, and a host, address or port
/// given twice (libpq takes the last, tokio-postgres adds them up).
fn refuse_keys(keys: &[String], in_query: bool) -> anyhow::Result<()> {
    let place = if in_query {
        "the database URL's query"
    } else {
        "the database connection string"
    };
    if let Some(key) = keys.iter().find(|k| !LIBPQ_KEYS.contains(&k.as_str())) {
        anyhow::bail!("{place} names {key:?}, which libpq does not know");
    }
    for key in ["host", "hostaddr", "port"] {
        if keys.iter().filter(|k| *k == key).count() > 1 {
            let written = if in_query {
                format!("?{key}=")
            } else {
                key.to_string()
            };
            anyhow::bail!(
                "{place} gives {written} more than once: libpq takes the last, this client every one; give it once"
            );
        }
    }
    Ok(())
}

#[cfg(feature = "io")]
/// `PGPORT`'s ports: one, or a comma-separated list, an empty element
/// the default port, as libpq reads it.
fn env_ports(pgport: &str) -> anyhow::Result<Vec<u16>> {
    pgport
        .split(',')
        .map(str::trim)
        .map(|port| {
            if port.is_empty() {
                return Ok(5432);
            }
            port.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
                anyhow::anyhow!("PGPORT {pgport:?} is not a port number or a list of them")
            })
        })
        .collect()
}

/// Where libpq looks for a server's socket when neither the URL nor
/// `PGHOST` names a host: the directory Debian's libpq is built with.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

#[cfg(feature = "io")]
/// A libpq variable as libpq reads it: unset and empty alike.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(feature = "io")]
/// Fills in what the URL leaves out as libpq (and so psql) would, so that
/// `postgres:///mydb` or a URL without a user means here what it means to
/// psql in the same shell: the host from `PGHOST` (a comma-separated list;
/// a path is a socket directory), else [`DEFAULT_SOCKET_DIR`]; the port
/// from `PGPORT`; the user from `PGUSER`, else the operating system's user
/// (named, so that the password file can match it); the database from
/// `PGDATABASE` (else, as in libpq, the user's name); the addresses from
/// `PGHOSTADDR`; `connect_timeout` from `PGCONNECT_TIMEOUT`. `PGSERVICE`
/// is refused (the service file is not read). `var` reads the environment ([`env_var`]; the tests give their own).
fn libpq_environment(
    cfg: &mut tokio_postgres::Config,
    var: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    // A URL that gives only `hostaddr` names where to connect already;
    // `PGHOST` then names those addresses (for the password file and the
    // certificate), as in libpq.
    // The connection service file would name the server instead of the
    // environment below; it is not read here, so it is refused rather than
    // another server reached than psql's.
    if var("PGSERVICE").is_some() {
        anyhow::bail!(
            "PGSERVICE is set, and this client does not read libpq's connection service file: name the server in the URL, or unset PGSERVICE"
        );
    }
    // libpq's connect_timeout: whole seconds, 0 or less for none.
    if cfg.get_connect_timeout().is_none()
        && let Some(secs) = var("PGCONNECT_TIMEOUT")
    {
        let secs: i64 = secs.trim().parse().map_err(|_| {
            anyhow::anyhow!("PGCONNECT_TIMEOUT {secs:?} is not a number of seconds")
        })?;
        if secs > 0 {
            cfg.connect_timeout(std::time::Duration::from_secs(secs as u64));
        }
    }
    if cfg.get_hostaddrs().is_empty()
        && let Some(addrs) = var("PGHOSTADDR")
    {
        for addr in addrs.split(',') {
            let ip = addr.parse::<std::net::IpAddr>().map_err(|_| {
                anyhow::anyhow!("PGHOSTADDR {addrs:?} is not an IP address or a list of them")
            })?;
            cfg.hostaddr(ip);
        }
    }
    if cfg.get_hosts().is_empty() {
        let given = var("PGHOST");
        if cfg.get_hostaddrs().is_empty() || given.is_some() {
            let hosts = given.unwrap_or_else(|| DEFAULT_SOCKET_DIR.to_string());
            let named: Vec<&str> = hosts.split(',').collect();
            // libpq takes each as it is (an empty one is the socket
            // directory); only blanks would be looked up as a host named
            // " ", which is said here instead.
            if named.iter().all(|h| h.trim().is_empty()) && named.iter().any(|h| !h.is_empty()) {
                anyhow::bail!("PGHOST {hosts:?} names no host");
            }
            // Beside addresses an empty one is no host name, not the
            // socket directory (whose "localhost" line the password file
            // would then give the address).
            if !cfg.get_hostaddrs().is_empty() && named.iter().any(|h| h.is_empty()) {
                anyhow::bail!(
                    "PGHOST {hosts:?} leaves a host empty beside PGHOSTADDR's addresses; name every host"
                );
            }
            for host in named {
                cfg.host(if host.is_empty() {
                    DEFAULT_SOCKET_DIR
                } else {
                    host
                });
            }
        }
    }
    // One port for every host or one each, as in libpq.
    if cfg.get_ports().is_empty()
        && let Some(ports) = var("PGPORT")
    {
        for port in env_ports(&ports)? {
            cfg.port(port);
        }
    }
    if cfg.get_user().is_none()
        && let Some(user) = var("PGUSER").or_else(os_user)
    {
        cfg.user(user);
    }
    if cfg.get_dbname().is_none()
        && let Some(db) = var("PGDATABASE")
    {
        cfg.dbname(db);
    }
    Ok(())
}

#[cfg(feature = "io")]
/// libpq's variables that say what a connection must insist on (and
/// `PGCONNECT_TIMEOUT`), set but empty: libpq refuses them as values it
/// does not know ("invalid sslmode value"), before any password is sent,
/// where read as unset they would let one go, in plain text for
/// `PGSSLMODE` (`export PGSSLMODE=$MODE` with `MODE` unset). `raw` reads the
/// environment, empty values kept.
fn refuse_empty_demands(raw: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    for name in [
        "PGSSLMODE",
        "PGCHANNELBINDING",
        "PGGSSENCMODE",
        "PGTARGETSESSIONATTRS",
        "PGCONNECT_TIMEOUT",
    ] {
        if raw(name).is_some_and(|v| v.is_empty()) {
            anyhow::bail!(
                "{name} is set but empty, which libpq refuses: unset it, or give a value"
            );
        }
    }
    Ok(())
}

#[cfg(feature = "io")]
/// libpq's variables that say what a connection must insist on before it
/// sends a password, read where the URL leaves them at their default (they
/// only ever make it stricter then, except `PGSSLMODE=disable`, taken only
/// when the URL gives no `sslmode`), and those this client cannot honour
/// refused rather than ignored: ignoring `PGSSLMODE=require` sent the
/// password to a server without TLS where psql refused.
fn libpq_demands(
    cfg: &mut tokio_postgres::Config,
    no_sslmode: bool,
    var: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    use tokio_postgres::config::{ChannelBinding, SslMode, TargetSessionAttrs};
    let ssl = var("PGSSLMODE")
        .or_else(|| (var("PGREQUIRESSL").as_deref() == Some("1")).then(|| "require".into()));
    if let Some(mode) = ssl
        && cfg.get_ssl_mode() == SslMode::Prefer
    {
        match mode.as_str() {
            "disable" if no_sslmode => cfg.ssl_mode(SslMode::Disable),
            "disable" | "allow" | "prefer" => cfg,
            // Verified here whatever the mode (the roots: --db-ca-file); a
            // Unix socket's host is tried without TLS, as in libpq
            // (`connect::targets`).
            "require" | "verify-ca" | "verify-full" => cfg.ssl_mode(SslMode::Require),
            _ => anyhow::bail!(
                "PGSSLMODE {mode:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ),
        };
    }
    if let Some(binding) = var("PGCHANNELBINDING")
        && cfg.get_channel_binding() == ChannelBinding::Prefer
    {
        match binding.as_str() {
            "disable" => cfg.channel_binding(ChannelBinding::Disable),
            "prefer" => cfg,
            "require" => cfg.channel_binding(ChannelBinding::Require),
            _ => {
                anyhow::bail!("PGCHANNELBINDING {binding:?} is not one of disable, prefer, require")
            }
        };
    }
    if let Some(attrs) = var("PGTARGETSESSIONATTRS")
        && cfg.get_target_session_attrs() == TargetSessionAttrs::Any
    {
        match attrs.as_str() {
            "any" => cfg,
            "read-write" => cfg.target_session_attrs(TargetSessionAttrs::ReadWrite),
            "read-only" => cfg.target_session_attrs(TargetSessionAttrs::ReadOnly),
            _ => anyhow::bail!(
                "PGTARGETSESSIONATTRS {attrs:?} is not one this client honours (any, read-write, read-only)"
            ),
        };
    }
    if var("PGGSSENCMODE").as_deref() == Some("require") {
        anyhow::bail!(
            "PGGSSENCMODE is require, and this client has no GSSAPI encryption: unset it, or use TLS (sslmode=require)"
        );
    }
    // What libpq would check of the server's certificate or present of
    // its own, which this client does not: refused rather than skipped.
    for (name, lacks) in [
        ("PGSSLCRL", "checks no revocation list"),
        ("PGSSLCRLDIR", "checks no revocation list"),
        ("PGSSLCERT", "presents no client certificate"),
        ("PGSSLKEY", "presents no client certificate"),
    ] {
        if var(name).is_some() {
            anyhow::bail!("{name} is set, and this client {lacks}: unset it");
        }
    }
    if let Some(min) = var("PGSSLMINPROTOCOLVERSION")
        && !matches!(min.as_str(), "TLSv1" | "TLSv1.1" | "TLSv1.2")
    {
        anyhow::bail!(
            "PGSSLMINPROTOCOLVERSION is {min:?}, and this client's floor is TLS 1.2: unset it"
        );
    }
    if var("PGREQUIREPEER").is_some() {
        anyhow::bail!(
            "PGREQUIREPEER is set, and this client cannot check a socket's peer: unset it"
        );
    }
    Ok(())
}

#[cfg(feature = "io")]
/// The effective user's login name (`getpwuid_r`), libpq's default user.
fn os_user() -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain data that getpwuid_r fills, pointing into buf,
    // which outlives every use of it here.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside buf.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().map(str::to_string)
}

/// How long the client waits for PostgreSQL before it calls a connection
/// stalled, drops it and moves on (`--db-timeout`).
///
/// The server's own timeouts cannot bound this: a backend that is stopped
/// (SIGSTOP, a frozen VM, a wedged disk) runs none of them, and TCP
/// keepalive sees nothing wrong because the kernel still acknowledges. So
/// the bound is kept on the client: `base` for each round trip (a
/// connection, a check, a ledger page, each statement of a transaction),
/// plus [`Patience::PER_ROW`] for each row a COPY or a batch carries. The
/// bound is per step, not per transaction, so a large file, even one
/// written row by row, is never cut short by a server that keeps
/// answering.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(into = "f64")]
pub struct Patience {
    pub base: std::time::Duration,
}

impl Patience {
    /// About ten times what a row costs PostgreSQL on the reference machine
    /// (docs/performance.md): a 256 MiB file of ~1.8 M rows gets 90 s more.
    pub const PER_ROW: std::time::Duration = std::time::Duration::from_micros(50);

    pub fn from_secs(secs: f64) -> Self {
        Patience {
            base: std::time::Duration::from_secs_f64(secs.max(0.001)),
        }
    }

    /// The deadline of connecting and migrating at the start of a pass:
    /// many round trips in one blocking call (refinery's), so at least
    /// 10 s whatever `base` is.
    pub fn startup(&self) -> std::time::Duration {
        self.base.max(std::time::Duration::from_secs(10))
    }

    /// The deadline of a step carrying `rows` rows.
    pub fn for_rows(&self, rows: u64) -> std::time::Duration {
        self.base + Self::PER_ROW * rows.min(u32::MAX as u64) as u32
    }
}

/// Recorded as its base, in seconds (`--db-timeout`).
impl From<Patience> for f64 {
    fn from(p: Patience) -> f64 {
        p.base.as_secs_f64()
    }
}

impl Default for Patience {
    fn default() -> Self {
        Patience::from_secs(30.0)
    }
}

#[cfg(feature = "io")]
/// Awaits `work` for at most `limit`; past it, a [`DbError::Stalled`]
/// naming `what`. The caller must then drop the connection `work` used:
/// its state (a half-sent statement, an open transaction) is unknown.
///
/// [`DbError::Stalled`]: crate::error::DbError::Stalled
pub async fn within<T, E: Into<anyhow::Error>>(
    limit: std::time::Duration,
    what: &'static str,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(done) => done.map_err(Into::into),
        Err(_) => Err(crate::error::DbError::stalled(what, limit).into()),
    }
}

#[cfg(feature = "io")]
/// Stalls in a row among a set of writers (a sync connection's, or the
/// `async` writers of a pass together).
///
/// One stall is one stopped backend: its files are left for a later pass
/// and the writer goes on with a fresh connection. A second in a row, on a
/// fresh connection, means the server as a whole has stopped answering (a
/// stopped backend can hold a lock every other one needs: the WAL while
/// it commits, a buffer while it inserts), so the pass ends in one line
/// instead of spending `--db-timeout` on each file still to come.
#[derive(Debug, Default)]
pub struct StallStreak(std::sync::atomic::AtomicU32);

#[cfg(feature = "io")]
impl StallStreak {
    /// Stalls in a row that end the pass.
    pub const LIMIT: u32 = 2;

    /// A transaction finished: the server answers.
    pub fn answered(&self) {
        self.0.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Something stalled (`e`, from [`within`]): a transaction, whose
    /// `files` are left for a later pass, or a reconnection (`files` 0).
    /// `Ok` to go on, or the error that ends the pass.
    pub fn stalled(&self, e: anyhow::Error, files: usize) -> anyhow::Result<()> {
        let streak = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if streak >= Self::LIMIT {
            return Err(e.context(format!(
                "PostgreSQL stopped answering ({streak} stalls in a row: a stopped server, or a stopped session holding locks this pass waits for, another worker's say; raise --db-timeout if it is merely slow)"
            )));
        }
        match files {
            0 => tracing::warn!("{}", crate::error::chain(&*e)),
            n => tracing::warn!(
                "{}; {} left for a later pass",
                crate::error::chain(&*e),
                crate::report::plural(n as u64, "file", "files")
            ),
        }
        Ok(())
    }
}

#[cfg(feature = "io")]
/// Says so when a check stalled (its connection is dropped and the write
/// that follows reconnects): whether it did.
pub fn warn_if_stalled(e: &anyhow::Error) -> bool {
    let stalled = is_stalled(e);
    if stalled {
        tracing::warn!("{}; reconnecting", crate::error::chain(&**e));
    }
    stalled
}

#[cfg(feature = "io")]
/// Whether `e` is a [`within`] deadline that passed.
pub fn is_stalled(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<crate::error::DbError>(),
        Some(crate::error::DbError::Stalled { .. })
    )
}

#[cfg(feature = "io")]
/// Whether the connection `e` came from must be dropped rather than used
/// again: it stalled ([`is_stalled`]), or its protocol state is lost (a
/// refused COPY, [`crate::error::DbError::Desynced`], or the client library
/// saying so: "unexpected message from server" has no other cause).
pub fn is_unusable(e: &anyhow::Error) -> bool {
    is_stalled(e)
        || e.chain().any(|c| {
            matches!(
                c.downcast_ref::<crate::error::DbError>(),
                Some(crate::error::DbError::Desynced)
            ) || c
                .downcast_ref::<tokio_postgres::Error>()
                .is_some_and(|pe| pe.as_db_error().is_none() && pe.to_string() == UNEXPECTED)
        })
}

/// What tokio-postgres says when an answer does not fit the request it
/// was waiting for: the connection, not the data, is at fault.
#[cfg(feature = "io")]
const UNEXPECTED: &str = "unexpected message from server";

#[cfg(feature = "io")]
/// Whether an error means the database connection is gone (server
/// restarted, network dropped), so reconnecting and retrying the file is
/// both safe (its transaction was rolled back with the connection) and
/// useful.
pub fn is_connection_lost(e: &anyhow::Error) -> bool {
    use crate::error::DbError;
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<DbError>(),
            Some(DbError::Stalled { .. } | DbError::NoConnection(_))
        )
    }) || e.chain().any(
        |cause| match cause.downcast_ref::<tokio_postgres::Error>() {
            Some(pe) => {
                pe.is_closed()
                    || pe
                        .code()
                        .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"))
                    || std::error::Error::source(pe).is_some_and(|s| s.is::<std::io::Error>())
            }
            None => cause.is::<std::io::Error>(),
        },
    )
}

/// Waits before reconnection attempt `attempt` (1-based): 0.5, 1, 2, 4, 8 s.
/// About 15 s in all: long enough for a restart, short enough to give up
/// on a database that is really gone.
pub fn reconnect_delay(attempt: u32) -> Option<std::time::Duration> {
    (attempt <= 5).then(|| std::time::Duration::from_millis(500 << (attempt - 1)))
}

#[cfg(feature = "io")]
/// What a failed write means for the file, from the error's SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFault {
    /// The connection is gone: reconnect and retry the file.
    ConnectionLost,
    /// A lock wait timed out (55P03): another worker holds the claim.
    Busy,
    /// Deadlock (40P01) or serialization failure (40001): the transaction
    /// was rolled back and retrying it may well succeed.
    Retry,
    /// Anything else: the database refused the data itself (classes 22, 23,
    /// 54, XX, ...). Retrying it unchanged would fail again. The reason is
    /// one line, without the server's DETAIL (which can quote whole rows).
    Refused(String),
    /// The server refuses every write, whatever the file (a privilege, a
    /// full disk): the pass ends with this one line, and the files are
    /// left for a pass after it is fixed.
    Fatal(String),
}

#[cfg(feature = "io")]
pub fn classify(e: &anyhow::Error) -> WriteFault {
    if is_connection_lost(e) {
        return WriteFault::ConnectionLost;
    }
    let db = e
        .chain()
        .find_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .and_then(|pe| pe.as_db_error());
    use tokio_postgres::error::SqlState;
    let said = |d: &tokio_postgres::error::DbError| {
        crate::report::clip(
            // One line, and nothing a terminal or psql would act on: a
            // trigger's exception may hold any character.
            &format!(
                "({}): {}",
                d.code().code(),
                d.message().replace(char::is_control, " ")
            ),
            300,
        )
    };
    match db {
        Some(d) if d.code() == &SqlState::LOCK_NOT_AVAILABLE => WriteFault::Busy,
        // Nothing about the data: a deadlock, a serialization failure, a
        // statement cancelled (statement_timeout, pg_cancel_backend), or a
        // statement run after one of those in the same transaction.
        Some(d)
            if [
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::QUERY_CANCELED,
                SqlState::IN_FAILED_SQL_TRANSACTION,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(d.code()) =>
        {
            WriteFault::Retry
        }
        // A row-level security policy's check is about the row: the file's.
        Some(d)
            if d.code() == &SqlState::INSUFFICIENT_PRIVILEGE
                && d.message()
                    .starts_with("new row violates row-level security policy") =>
        {
            WriteFault::Refused(format!("PostgreSQL refused it {}", said(d)))
        }
        // What no file could get past: the server's configuration or state.
        Some(d) if cannot_write_anything(d.code()) => WriteFault::Fatal(format!(
            "PostgreSQL refuses every write {}{}",
            said(d),
            // A table under row-level security takes no COPY, but rows.
            if d.code() == &SqlState::FEATURE_NOT_SUPPORTED && d.message().contains("COPY") {
                " (--write batch sends rows without COPY)"
            } else {
                ""
            }
        )),
        Some(d) => WriteFault::Refused(format!("PostgreSQL refused it {}", said(d))),
        None if is_unusable(e) => WriteFault::ConnectionLost,
        None => WriteFault::Refused(crate::report::clip(&crate::error::chain(&**e), 300)),
    }
}

/// SQLSTATEs that say nothing about a file and would refuse every other
/// one too: recording each file as failed would only bury the one reason.
/// Privileges (42501), a read-only transaction (25006), a full disk
/// (53100) or a configured limit (53400), a table or column dropped under
/// the pass (42P01, 42703), the database gone (3D000), a feature the server
/// will not use (0A000: COPY into a table under row-level security). Not the rest of
/// class 53: out of memory (53200) may be one huge file's own, and too
/// many connections (53300) passes when others disconnect.
#[cfg(feature = "io")]
fn cannot_write_anything(code: &tokio_postgres::error::SqlState) -> bool {
    use tokio_postgres::error::SqlState;
    [
        SqlState::INSUFFICIENT_PRIVILEGE,
        SqlState::READ_ONLY_SQL_TRANSACTION,
        SqlState::DISK_FULL,
        SqlState::CONFIGURATION_LIMIT_EXCEEDED,
        SqlState::UNDEFINED_TABLE,
        SqlState::UNDEFINED_COLUMN,
        SqlState::INVALID_CATALOG_NAME,
        SqlState::FEATURE_NOT_SUPPORTED,
    ]
    .contains(code)
}

/// Waits before retry `attempt` (1-based) of a transaction that hit a
/// deadlock or serialization failure: 50, 100, 200, 400, 800 ms, each with
/// up to as much again of jitter so that the two losers of a deadlock do not
/// collide again; `None` after five.
pub fn contention_delay(attempt: u32, jitter: f64) -> Option<std::time::Duration> {
    (attempt <= 5).then(|| {
        let base = 50u64 << (attempt - 1);
        std::time::Duration::from_millis(base + (base as f64 * jitter.clamp(0.0, 1.0)) as u64)
    })
}

#[cfg(feature = "io")]
/// Says, once, why a file's transaction is given up for this pass after it
/// lost its connection [`LOSES_ITS_CONNECTION_AFTER`] times.
pub(crate) fn left_for_next_pass(key: &str, why: &str) {
    tracing::warn!(
        "{}: its transaction lost the database connection {LOSES_ITS_CONNECTION_AFTER} times while new connections opened ({why}); left for the next pass",
        crate::report::short_key(key)
    );
}

/// How many times a transaction may lose a connection that was open when
/// it began before it is taken to end its own connection (a trigger that
/// terminates its backend, a value that crashes it): the writer then
/// stops retrying it and, in a group, tries its files one by one, so only
/// the file that does it is left for the next pass and the pass goes on.
/// A database that is really gone fails the new connections instead, and
/// the reconnect attempts decide.
pub const LOSES_ITS_CONNECTION_AFTER: u32 = 2;

#[cfg(feature = "io")]
/// What a writer does after a failed attempt at a transaction.
pub(crate) enum Next {
    /// Wait, then try again; after a lost connection, on a fresh one.
    Retry(std::time::Duration),
    /// Still unreachable after the reconnect attempts: give the error up.
    Unreachable,
    /// Another worker holds the claim, or the deadlocks did not stop.
    Busy,
    /// PostgreSQL refused the data (see [`WriteFault::Refused`]).
    Refused(String),
    /// PostgreSQL refuses every write (see [`WriteFault::Fatal`]).
    Fatal(String),
}

#[cfg(feature = "io")]
/// The retry policy both writers' loops share: lost connections retried
/// with [`reconnect_delay`], deadlocks and serialization failures with
/// [`contention_delay`], each up to its bound.
#[derive(Default)]
pub(crate) struct Retries {
    lost: u32,
    contended: u32,
    /// Connections lost while the transaction ran on them.
    lost_in_transaction: u32,
    /// The loss [`Retries::next`] is about to retry was the transaction's
    /// first in its own run: said at `info`, since the transaction may be
    /// what ends its connection, and [`left_for_next_pass`] then says it
    /// once; a database that is gone fails the reconnections, which warn.
    first_in_transaction: bool,
}

#[cfg(feature = "io")]
impl Retries {
    /// Counts a connection lost while the transaction ran on it (one that
    /// was open when it began); true once that has happened
    /// [`LOSES_ITS_CONNECTION_AFTER`] times: the transaction itself ends
    /// its connections, and retrying it would end the pass.
    pub(crate) fn lost_in_transaction(&mut self) -> bool {
        self.lost_in_transaction += 1;
        self.first_in_transaction = self.lost_in_transaction == 1;
        self.lost_in_transaction >= LOSES_ITS_CONNECTION_AFTER
    }

    /// The next step after attempt error `e`, classified as `fault`.
    pub(crate) fn next(&mut self, fault: WriteFault, e: &anyhow::Error) -> Next {
        match fault {
            WriteFault::ConnectionLost => {
                self.lost += 1;
                let Some(delay) = reconnect_delay(self.lost) else {
                    return Next::Unreachable;
                };
                let said = format!(
                    "database connection lost ({}); reconnecting",
                    crate::error::chain(&**e)
                );
                if std::mem::take(&mut self.first_in_transaction) {
                    tracing::info!("{said}");
                } else {
                    tracing::warn!("{said}");
                }
                Next::Retry(delay)
            }
            WriteFault::Retry => {
                self.contended += 1;
                contention_delay(self.contended, rand::random()).map_or(Next::Busy, Next::Retry)
            }
            WriteFault::Busy => Next::Busy,
            WriteFault::Refused(reason) => Next::Refused(reason),
            WriteFault::Fatal(reason) => Next::Fatal(reason),
        }
    }
}

#[cfg(all(test, feature = "io"))]
mod tests {
    use super::*;

    /// An environment holding `pairs` alone, for the functions that take one.
    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[cfg(feature = "io")]
    #[test]
    fn what_the_url_leaves_out_comes_from_libpqs_environment() {
        use tokio_postgres::config::Host;
        let with = |url: &str, pairs: &'static [(&'static str, &'static str)]| {
            let mut cfg: tokio_postgres::Config = url.parse().unwrap();
            libpq_environment(&mut cfg, env(pairs)).map(|()| cfg)
        };
        let all: &[(&str, &str)] = &[
            ("PGHOST", "/tmp/sockets,db.example"),
            ("PGPORT", "5433"),
            ("PGUSER", "etl"),
            ("PGDATABASE", "warehouse"),
        ];
        let cfg = with("postgres://", all).unwrap();
        assert_eq!(
            cfg.get_hosts(),
            [
                Host::Unix("/tmp/sockets".into()),
                Host::Tcp("db.example".into())
            ]
        );
        assert_eq!(cfg.get_ports(), [5433]);
        assert_eq!(cfg.get_user(), Some("etl"));
        assert_eq!(cfg.get_dbname(), Some("warehouse"));
        // The URL's own values win.
        let cfg = with("postgres://me@h:1/mine", all).unwrap();
        assert_eq!(cfg.get_hosts(), [Host::Tcp("h".into())]);
        assert_eq!(cfg.get_ports(), [1]);
        assert_eq!(cfg.get_user(), Some("me"));
        assert_eq!(cfg.get_dbname(), Some("mine"));
        // Nothing set: Debian's socket directory, the operating system's
        // user, and the database left to default to the user's name.
        let cfg = with("postgres:///mine", &[]).unwrap();
        assert_eq!(cfg.get_hosts(), [Host::Unix(DEFAULT_SOCKET_DIR.into())]);
        assert!(cfg.get_ports().is_empty());
        assert_eq!(cfg.get_user(), os_user().as_deref());
        assert!(cfg.get_user().is_some(), "the OS user has a name");
        // A port that is not one is said, not ignored.
        let e = with("postgres:///mine", &[("PGPORT", "54x")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PGPORT \"54x\" is not a port number or a list of them"
        );
        // A port for each host, an empty one the default.
        let cfg = with(
            "postgres:///mine",
            &[("PGHOST", "a,b,c"), ("PGPORT", "5433,,5434")],
        )
        .unwrap();
        assert_eq!(cfg.get_ports(), [5433, 5432, 5434]);
        // A PGHOST of blanks and commas is said, not taken for no host.
        let e = with("postgres:///mine", &[("PGHOST", " , ")]).unwrap_err();
        assert_eq!(e.to_string(), "PGHOST \" , \" names no host");
        // As in libpq: each host as it is, an empty one the socket directory.
        let cfg = with("postgres:///mine", &[("PGHOST", "a,, b")]).unwrap();
        assert_eq!(
            cfg.get_hosts(),
            [
                Host::Tcp("a".into()),
                Host::Unix(DEFAULT_SOCKET_DIR.into()),
                Host::Tcp(" b".into())
            ]
        );
        // PGHOSTADDR where the URL gives no address; alone, no host.
        let cfg = with("postgres:///mine", &[("PGHOSTADDR", "127.0.0.3")]).unwrap();
        assert_eq!(
            cfg.get_hostaddrs(),
            ["127.0.0.3".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(cfg.get_hosts().is_empty());
        let cfg = with(
            "postgres://h/mine?hostaddr=127.0.0.4",
            &[("PGHOSTADDR", "127.0.0.3")],
        )
        .unwrap();
        assert_eq!(
            cfg.get_hostaddrs(),
            ["127.0.0.4".parse::<std::net::IpAddr>().unwrap()]
        );
        let e = with("postgres:///mine", &[("PGHOSTADDR", "db.example")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("PGHOSTADDR \"db.example\" is not an IP address"),
            "{e}"
        );
        // The service file is not read: refused rather than ignored.
        let e = with("postgres://h/mine", &[("PGSERVICE", "s")]).unwrap_err();
        assert!(e.to_string().starts_with("PGSERVICE is set"), "{e}");
        // PGCONNECT_TIMEOUT where the URL gives none; 0 is none.
        let timeout = |url: &str, given: &'static [(&'static str, &'static str)]| {
            with(url, given).map(|c| c.get_connect_timeout().copied())
        };
        let secs = std::time::Duration::from_secs;
        let seven = &[("PGCONNECT_TIMEOUT", "7")];
        assert_eq!(timeout("postgres://h/mine", seven).unwrap(), Some(secs(7)));
        assert_eq!(
            timeout("postgres://h/mine?connect_timeout=3", seven).unwrap(),
            Some(secs(3))
        );
        let zero = &[("PGCONNECT_TIMEOUT", "0")];
        assert_eq!(timeout("postgres://h/mine", zero).unwrap(), None);
        let soon = &[("PGCONNECT_TIMEOUT", "soon")];
        let e = timeout("postgres://h/mine", soon).unwrap_err();
        assert!(e.to_string().contains("PGCONNECT_TIMEOUT \"soon\""), "{e}");
    }

    #[cfg(feature = "io")]
    #[test]
    fn a_connection_string_is_read_as_libpq_reads_it() {
        let pairs =
            conninfo_pairs("host = h  application_name='a b\\'c sslmode=disable' port=5\\ 4")
                .unwrap();
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(
            pairs,
            [
                ("host", "h"),
                ("application_name", "a b'c sslmode=disable"),
                ("port", "5 4")
            ]
        );
        assert_eq!(conninfo_pairs("host"), None);
        assert_eq!(conninfo_pairs("a='open"), None);
        // An empty key: libpq refuses the string, tokio-postgres dropped
        // what followed (here, sslmode).
        assert_eq!(conninfo_pairs("host=h =x sslmode=require"), None);
        // A Unicode blank is part of a value to libpq.
        let pairs = conninfo_pairs("dbname=app\u{a0}sslmode=disable").unwrap();
        assert_eq!(
            pairs,
            [("dbname".into(), "app\u{a0}sslmode=disable".into())]
        );
        let (read, _) = libpq_tls("host=h dbname=app\u{a0}sslmode=disable");
        let cfg: tokio_postgres::Config = read.parse().unwrap();
        assert_eq!(cfg.get_dbname(), Some("app\u{a0}sslmode=disable"));
        assert_eq!(cfg.get_ssl_mode(), tokio_postgres::config::SslMode::Prefer);
        // A quoted value's words stay in it when the TLS words are rewritten.
        let (read, root) =
            libpq_tls("host=h application_name='a sslrootcert=/x host=evil' sslmode=verify-full");
        assert_eq!(
            read,
            "host=h application_name='a sslrootcert=/x host=evil' sslmode=require"
        );
        assert_eq!(root, None);
        let cfg: tokio_postgres::Config = read.parse().unwrap();
        assert_eq!(cfg.get_hosts().len(), 1);
        // What libpq refuses, or reads as nothing given, is refused.
        for (url, said) in [
            ("POSTGRES://h/db", "neither a postgres:// URL nor"),
            ("host=h user=''", "an empty user name"),
            ("host=h dbname=", "an empty database name"),
            ("host=h,", "an empty host"),
            ("postgres://h/db?user=", "an empty user name"),
        ] {
            let e = libpq_config(url).unwrap_err();
            assert!(e.to_string().contains(said), "{url}: {e}");
        }
        // A key libpq does not know, or knows only without a blank
        // tokio-postgres trims, is refused.
        for url in [
            "host=h \u{a0}sslmode=disable",
            "host=h load_balance_hosts=random",
            "postgres://h/db?keepalives_retries=3",
            "postgres://h/db?%C2%A0host=evil",
        ] {
            let e = libpq_url(url, env(&[])).unwrap_err();
            assert!(
                e.to_string().contains("which libpq does not know"),
                "{url}: {e}"
            );
        }
        // Given twice: libpq takes the last, tokio-postgres both. Refused.
        let e = libpq_url("host=a host=b port=1", env(&[])).unwrap_err();
        assert!(e.to_string().contains("gives host more than once"), "{e}");
        // sslmode named only inside a quoted value, or a "://" in a value,
        // is not the string's own.
        assert!(!names_key(
            "host=h application_name='x sslmode=disable'",
            "sslmode"
        ));
        assert!(names_key(
            "host=h application_name=https://a sslmode = require",
            "sslmode"
        ));
    }

    #[cfg(feature = "io")]
    #[test]
    fn libpqs_demands_are_kept_or_refused() {
        use tokio_postgres::config::{ChannelBinding, SslMode, TargetSessionAttrs};
        let with = |url: &str, no_sslmode: bool, pairs: &'static [(&'static str, &'static str)]| {
            let mut cfg: tokio_postgres::Config = url.parse().unwrap();
            libpq_demands(&mut cfg, no_sslmode, env(pairs)).map(|()| cfg)
        };
        type Env = &'static [(&'static str, &'static str)];
        let modes: [(&str, bool, Env, SslMode); 6] = [
            (
                "host=h",
                true,
                &[("PGSSLMODE", "verify-full")],
                SslMode::Require,
            ),
            ("host=h", true, &[("PGREQUIRESSL", "1")], SslMode::Require),
            // Kept for a Unix socket too: its host is then tried without
            // TLS (`connect::targets`), as libpq does whatever the mode.
            (
                "host=/tmp",
                true,
                &[("PGSSLMODE", "require")],
                SslMode::Require,
            ),
            // The string's own mode wins; PGSSLMODE never weakens a given one.
            (
                "host=h sslmode=require",
                false,
                &[("PGSSLMODE", "disable")],
                SslMode::Require,
            ),
            (
                "host=h sslmode=prefer",
                false,
                &[("PGSSLMODE", "disable")],
                SslMode::Prefer,
            ),
            (
                "host=h",
                true,
                &[("PGSSLMODE", "disable")],
                SslMode::Disable,
            ),
        ];
        for (url, no_sslmode, pairs, want) in modes {
            let cfg = with(url, no_sslmode, pairs).unwrap();
            assert_eq!(cfg.get_ssl_mode(), want, "{url} {pairs:?}");
        }
        let cfg = with(
            "host=h",
            true,
            &[
                ("PGCHANNELBINDING", "require"),
                ("PGTARGETSESSIONATTRS", "read-write"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.get_channel_binding(), ChannelBinding::Require);
        assert_eq!(
            cfg.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        let refused: [(&'static [(&'static str, &'static str)], &str); 6] = [
            (&[("PGSSLCRL", "/crl.pem")], "PGSSLCRL is set"),
            (
                &[("PGSSLMINPROTOCOLVERSION", "TLSv1.3")],
                "this client's floor is TLS 1.2",
            ),
            (&[("PGGSSENCMODE", "require")], "PGGSSENCMODE is require"),
            (&[("PGREQUIREPEER", "postgres")], "PGREQUIREPEER is set"),
            (
                &[("PGTARGETSESSIONATTRS", "standby")],
                "not one this client honours",
            ),
            (&[("PGSSLMODE", "on")], "PGSSLMODE \"on\" is not one of"),
        ];
        for (pairs, said) in refused {
            let e = with("host=h", true, pairs).unwrap_err();
            assert!(e.to_string().contains(said), "{e}");
        }
    }

    #[test]
    fn a_url_is_read_as_libpq_reads_it_or_refused() {
        let port = |url: &str, p: &str| libpq_url(url, env(&[("PGPORT", p)])).unwrap();
        // PGPORT reaches a lone host without a port (tokio-postgres's
        // parser gave it 5432); an empty port is none.
        assert_eq!(
            port("postgres://u:p@db.example/app?sslmode=require", "6543"),
            "postgres://u:p@db.example:6543/app?sslmode=require"
        );
        assert_eq!(
            port("postgresql://[::1]:/db", "6543"),
            "postgresql://[::1]:6543/db"
        );
        assert_eq!(
            port("postgres://%2Ftmp%2Fs/db", "7"),
            "postgres://%2Ftmp%2Fs:7/db"
        );
        // With several hosts libpq gives those without a port 5432, not PGPORT.
        assert_eq!(port("postgres://a,b:2/db", "6543"), "postgres://a,b:2/db");
        // An empty host beside an address is no host: libpq connects to the
        // address alone (the socket directory left TLS no name to verify).
        assert_eq!(
            libpq_url("postgres://u@:5433/db?hostaddr=10.0.0.1", env(&[])).unwrap(),
            "postgres://u@/db?hostaddr=10.0.0.1&port=5433"
        );
        assert_eq!(
            libpq_url("postgres://u@:5433/db", env(&[("PGHOSTADDR", "10.0.0.1")])).unwrap(),
            "postgres://u@/db?port=5433"
        );
        // The credentials end at the first `@` before the first `/`.
        assert_eq!(
            port("postgres://c:p?w@h/db", "1"),
            "postgres://c:p?w@h:1/db"
        );
        // ?port= replaces the ports before the path, as in libpq.
        assert_eq!(
            port("postgres://a:1,b/db?sslmode=require&%70ort=5,6", "9"),
            "postgres://a:5,b:6/db?sslmode=require"
        );
        // An empty host is libpq's default host.
        assert_eq!(
            libpq_url("postgres://u@:6543/db", env(&[])).unwrap(),
            "postgres://u@%2Fvar%2Frun%2Fpostgresql:6543/db"
        );
        assert_eq!(
            libpq_url("postgres://u@:6543/db", env(&[("PGHOST", "db.example")])).unwrap(),
            "postgres://u@db.example:6543/db"
        );
        // Nothing to read differently: left as it is.
        for url in [
            "postgres:///db",
            "postgres://u@/db?host=h",
            "host=h dbname=db",
        ] {
            assert_eq!(port(url, "6543"), url);
        }
        assert_eq!(
            libpq_url("postgres://h/db", env(&[])).unwrap(),
            "postgres://h/db"
        );
        // ?host= alone: libpq's hosts, one pair each, as tokio-postgres reads them.
        let url = libpq_url("postgres://u@/db?host=a,%2Ftmp&sslmode=require", env(&[])).unwrap();
        assert_eq!(url, "postgres://u@/db?host=a&host=%2Ftmp&sslmode=require");
        let hosts = url.parse::<tokio_postgres::Config>().unwrap();
        assert_eq!(hosts.get_hosts().len(), 2, "{url}");
        // An empty host in a list, or an empty ?host=, is the socket
        // directory, not PGHOST (libpq reads PGHOST only for no host at all).
        let socket = "%2Fvar%2Frun%2Fpostgresql";
        assert_eq!(
            libpq_url("postgres:///db?host=a%2C", env(&[("PGHOST", "d")])).unwrap(),
            format!("postgres:///db?host=a&host={socket}")
        );
        assert_eq!(
            libpq_url("postgres:///db?host=", env(&[("PGHOST", "d")])).unwrap(),
            format!("postgres:///db?host={socket}")
        );
        assert_eq!(
            libpq_url("postgres://u@a:1,:1/db", env(&[("PGHOST", "d")])).unwrap(),
            format!("postgres://u@a:1,{socket}:1/db")
        );
        // Where libpq and tokio-postgres would reach different servers: refused.
        for (url, said) in [
            ("postgres:///db?host=a&host=b", "?host= more than once"),
            (
                "postgres:///db?host=a,b&port=1&port=2",
                "?port= more than once",
            ),
            ("postgres://u@[::1]evil:5/db", "after a bracketed host"),
            (
                "postgres://u@/db?host=&hostaddr=127.0.0.3",
                "beside a hostaddr",
            ),
            (
                "postgres://h/db?hostaddr=1.1.1.1&%68ostaddr=1.1.1.2",
                "?hostaddr= more than once",
            ),
            (
                "postgres://h/db?application_name=a@evil",
                "an '@' after its first '/'",
            ),
            (
                "postgres://u:p@h/db?host=other",
                "both before its path and in ?host=",
            ),
            ("postgres://h%2Cevil/db", "percent-encoded ','"),
        ] {
            let e = libpq_url(url, env(&[])).unwrap_err().to_string();
            assert!(e.contains(said), "{url}: {e}");
        }
        let e = libpq_url("postgres://h/db", env(&[("PGPORT", "1,2")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PGPORT gives 2 ports for 1 hosts; give one port, or one for each host"
        );
        let e = libpq_url("postgres://h/db", env(&[("PGPORT", "x")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PGPORT \"x\" is not a port number or a list of them"
        );
    }

    #[test]
    fn retries_stop_at_their_bounds() {
        let e = anyhow::anyhow!("gone");
        let mut r = Retries::default();
        for _ in 0..5 {
            assert!(matches!(
                r.next(WriteFault::ConnectionLost, &e),
                Next::Retry(_)
            ));
        }
        assert!(matches!(
            r.next(WriteFault::ConnectionLost, &e),
            Next::Unreachable
        ));
        // Contention has a budget of its own.
        for _ in 0..5 {
            assert!(matches!(r.next(WriteFault::Retry, &e), Next::Retry(_)));
        }
        assert!(matches!(r.next(WriteFault::Retry, &e), Next::Busy));
        assert!(matches!(r.next(WriteFault::Busy, &e), Next::Busy));
        // A transaction that loses the connections it ran on is given up
        // at the second, whatever the reconnect budget left.
        assert!(!r.lost_in_transaction());
        assert!(r.lost_in_transaction());
        assert!(matches!(
            r.next(WriteFault::Refused("no".into()), &e),
            Next::Refused(reason) if reason == "no"
        ));
    }
}

#[cfg(all(test, feature = "io"))]
mod libpq_tests {
    use super::libpq_tls;

    /// A bad percent-escape is refused before anything is contacted, as
    /// libpq refuses it, without the URL (the password may be its bad
    /// part); so are empty values libpq reads otherwise than this client.
    #[test]
    fn bad_escapes_and_ambiguous_empty_values_are_refused() {
        for url in [
            "postgres://u:se%zzcret@h/d",
            "postgres://u@h/d%2",
            "postgres://u@h/d?application_name=%g1",
            "postgres://u:p%00w@h/d",
        ] {
            let e = super::libpq_config(url).unwrap_err().to_string();
            assert!(e.starts_with("the database URL holds "), "{url}: {e}");
            assert!(!e.contains("cret") && !e.contains("p%00w"), "{e}");
        }
        assert!(super::check_escapes("postgres://u:p%25w%2Fx@h/d%C3%A9").is_ok());
        // `%zz` in a key=value string is no escape.
        assert!(super::check_escapes("password=se%zz host=h").is_ok());
        // An empty `hostaddr` or `sslrootcert` is a value to libpq (the
        // last wins, the environment's is not read): refused, where
        // dropped it let an earlier address or PGHOSTADDR be used.
        for url in [
            "postgres://u@h/d?hostaddr=127.0.0.2&hostaddr=",
            "host=h hostaddr=''",
            "postgres://u@h/d?sslrootcert=",
            "postgres://u@h/d?password=",
            "host=h user=u password=''",
        ] {
            let e = super::libpq_config(url).unwrap_err().to_string();
            assert!(
                e.contains("an empty value")
                    || e.contains("an empty password")
                    || e.contains("?hostaddr= more than once"),
                "{url}: {e}"
            );
        }
        // Empty hosts in a list beside addresses are no host names to
        // libpq; the socket directory would take "localhost"'s password.
        let e = super::libpq_url("postgres://u@,/db?hostaddr=10.0.0.9,10.0.0.2", |_: &str| {
            None
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("leaves a host empty in its list beside a hostaddr"),
            "{e}"
        );
        let mut cfg: tokio_postgres::Config = "user=u".parse().unwrap();
        let e = super::libpq_environment(&mut cfg, |n: &str| match n {
            "PGHOST" => Some(",".into()),
            "PGHOSTADDR" => Some("10.0.0.9,10.0.0.2".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("leaves a host empty beside PGHOSTADDR"),
            "{e}"
        );
        // libpq refuses an empty PGSSLMODE; read as unset it let a
        // password go in plain text.
        let raw = |name: &'static str| move |n: &str| (n == name).then(String::new);
        for name in [
            "PGSSLMODE",
            "PGCHANNELBINDING",
            "PGGSSENCMODE",
            "PGTARGETSESSIONATTRS",
            "PGCONNECT_TIMEOUT",
        ] {
            let e = super::refuse_empty_demands(raw(name))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("{name} is set but empty")), "{e}");
        }
        assert!(super::refuse_empty_demands(|_| None).is_ok());
    }

    /// libpq's keys tokio-postgres's parser refused without naming them:
    /// carried over, dropped where they change nothing here, or refused
    /// in one line naming the key (and never an `sslpassword`'s value).
    #[test]
    fn keys_only_libpq_reads_are_carried_dropped_or_refused() {
        use super::libpq_only_keys as only;
        assert_eq!(
            only("postgres://h/db?keepalives_count=3&sslmode=allow&application_name=a").unwrap(),
            "postgres://h/db?keepalives_retries=3&sslmode=prefer&application_name=a"
        );
        // A key written percent-encoded is the key libpq decodes.
        let e = only("postgres://h/db?ssl%63ert=%2Fc.pem")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslcert=\"/c.pem\""), "{e}");
        assert_eq!(
            only("postgres://h/db?ssl%73ni=1&a%70plication_name=a").unwrap(),
            "postgres://h/db?a%70plication_name=a"
        );
        assert_eq!(
            only("host=h client_encoding=UTF8 sslcompression=1 sslsni=0 gssencmode=prefer fallback_application_name=f sslcert='' dbname='a b'").unwrap(),
            "host=h dbname='a b'"
        );
        let parsed: tokio_postgres::Config =
            only("host=h keepalives_count=4").unwrap().parse().unwrap();
        assert_eq!(parsed.get_keepalives_retries(), Some(4));
        for (given, said) in [
            (
                "host=h sslcert=/c.pem",
                "sslcert=\"/c.pem\": this client presents no client certificate",
            ),
            (
                "postgres://h/db?passfile=%2Fp",
                "passfile=\"/p\": not read from the URL here; give the file as PGPASSFILE",
            ),
            (
                "host=h client_encoding=LATIN1",
                "client_encoding=\"LATIN1\"",
            ),
            (
                "host=h target_session_attrs=primary",
                "honours any, read-write and read-only",
            ),
            ("host=h gssencmode=require", "no GSSAPI encryption"),
            (
                "host=h ssl_min_protocol_version=TLSv1.3",
                "floor is TLS 1.2",
            ),
            ("host=h service=etl", "service file is not read"),
            ("host=h replication=1", "cannot load files"),
        ] {
            let e = only(given).unwrap_err().to_string();
            assert!(e.contains(said), "{given}: {e}");
        }
        let e = only("host=h sslpassword=hunter2").unwrap_err().to_string();
        assert!(e.contains("sslpassword") && !e.contains("hunter2"), "{e}");
    }

    /// What cloud providers tell users to write: libpq's strict modes and a
    /// root file, in a URL or a `key=value` string.
    #[test]
    fn libpq_verify_modes_and_root_files_are_taken() {
        let (url, root) = libpq_tls(
            "postgres://u:p@db.example.com/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        );
        assert_eq!(
            url,
            "postgres://u:p@db.example.com/app?sslmode=require&application_name=x"
        );
        assert_eq!(root.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        let (url, root) =
            libpq_tls("host=db user=u sslmode=verify-ca sslrootcert=/ca.pem dbname=app");
        assert_eq!(url, "host=db user=u sslmode=require dbname=app");
        assert_eq!(root.as_deref(), Some(std::path::Path::new("/ca.pem")));
        for same in [
            "postgres://u@h/db",
            "postgres://u@h/db?sslmode=disable",
            "host=h sslmode=prefer",
        ] {
            assert_eq!(libpq_tls(same), (same.to_string(), None));
        }
        // libpq 16's "the system's roots", which the client trusts already.
        assert_eq!(
            libpq_tls("postgres://u@h/db?sslrootcert=system&sslmode=verify-full"),
            ("postgres://u@h/db?sslmode=require".to_string(), None)
        );
        for url in [
            "postgres://u@h/db?sslmode=verify-full",
            "host=h port=5432 sslmode=verify-ca",
        ] {
            let (rewritten, _) = libpq_tls(url);
            assert!(
                rewritten.parse::<tokio_postgres::Config>().is_ok(),
                "{rewritten}"
            );
        }
    }
}
