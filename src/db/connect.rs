//! Opening a connection as libpq opens one: a configuration's hosts are
//! tried one at a time, in order, and the first server that answers ends
//! the search, even when its answer is a refusal.
//!
//! libpq moves to the next host only when one cannot be reached, or is not
//! the kind of server `target_session_attrs` asks for. A server that
//! refused the login, the database or TLS ends it: the password goes no
//! further than psql would send it, and a mistyped database name on the
//! primary does not quietly connect to the standby. tokio-postgres alone
//! tries every host whatever the one before said, so each host is handed
//! to it alone. A failed connection names each host it tried.
//!
//! A URL's `connect_timeout` bounds each host's whole attempt, as in libpq
//! (tokio-postgres bounds only its TCP connect with it).
//!
//! Each host takes its own password from libpq's password file, as in
//! libpq, when the URL gives none.
//!
//! [`targets`] and [`tries_next`] are the rule (sans-IO); [`connect`],
//! [`connect_blocking`] and [`PoolConnect`] are its three shells.

use tokio_postgres::Config;
use tokio_postgres::config::Host;

/// One host of a configuration, alone, and how an error names it.
pub struct Target {
    pub cfg: Config,
    pub name: String,
}

/// Each host of `cfg` (a `host`, a `hostaddr`, or both, with its port) as a
/// configuration of its own, in the order libpq tries them. Everything
/// else is kept: user, password, database, TLS, timeouts, session options.
pub fn targets(cfg: &Config) -> Vec<Target> {
    let (hosts, addrs, ports) = (cfg.get_hosts(), cfg.get_hostaddrs(), cfg.get_ports());
    if hosts.is_empty() && addrs.is_empty() {
        // Never after `libpq_config`, which names the socket directory
        // then; tokio-postgres says what is missing.
        return vec![Target {
            cfg: cfg.clone(),
            name: "no host".into(),
        }];
    }
    (0..hosts.len().max(addrs.len()))
        .map(|i| {
            let mut one = alone(cfg);
            let mut name = String::new();
            match hosts.get(i) {
                Some(Host::Tcp(host)) => {
                    one.host(host);
                    name.push_str(host);
                }
                Some(Host::Unix(dir)) => {
                    one.host_path(dir);
                    // PostgreSQL answers no to TLS on a Unix socket, and
                    // libpq does not ask there, whatever `sslmode` says
                    // (psql connects with `sslmode=require`). With a
                    // `hostaddr` the connection is TCP, and the mode holds.
                    if addrs.get(i).is_none() {
                        one.ssl_mode(tokio_postgres::config::SslMode::Disable);
                    }
                    name.push_str(&dir.display().to_string());
                }
                None => {}
            }
            if let Some(addr) = addrs.get(i) {
                one.hostaddr(*addr);
                // An address alone is the name TLS verifies (its IP
                // address in the certificate), as libpq checks it:
                // tokio-postgres, given no host, refused every TLS
                // handshake ("no hostname provided").
                if hosts.get(i).is_none() {
                    one.host(addr.to_string());
                }
                name = match name.is_empty() {
                    true => addr.to_string(),
                    false => format!("{name} ({addr})"),
                };
            }
            let port = ports.get(i).or(ports.first()).copied();
            if let Some(port) = port {
                one.port(port);
            }
            name.push_str(&format!(" port {}", port.unwrap_or(5432)));
            Target { cfg: one, name }
        })
        .collect()
}

/// `cfg` without its hosts, addresses and ports: tokio-postgres's
/// configuration can add hosts but not remove them.
fn alone(cfg: &Config) -> Config {
    let mut one = Config::new();
    if let Some(user) = cfg.get_user() {
        one.user(user);
    }
    if let Some(password) = cfg.get_password() {
        one.password(password);
    }
    if let Some(dbname) = cfg.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = cfg.get_options() {
        one.options(options);
    }
    if let Some(name) = cfg.get_application_name() {
        one.application_name(name);
    }
    if let Some(timeout) = cfg.get_connect_timeout() {
        one.connect_timeout(*timeout);
    }
    if let Some(timeout) = cfg.get_tcp_user_timeout() {
        one.tcp_user_timeout(*timeout);
    }
    if let Some(interval) = cfg.get_keepalives_interval() {
        one.keepalives_interval(interval);
    }
    if let Some(retries) = cfg.get_keepalives_retries() {
        one.keepalives_retries(retries);
    }
    one.ssl_mode(cfg.get_ssl_mode())
        .ssl_negotiation(cfg.get_ssl_negotiation())
        .keepalives(cfg.get_keepalives())
        .keepalives_idle(cfg.get_keepalives_idle())
        .target_session_attrs(cfg.get_target_session_attrs())
        .channel_binding(cfg.get_channel_binding())
        .load_balance_hosts(cfg.get_load_balance_hosts());
    one
}

/// Whether libpq would try the next host after `e`: only when this one
/// could not be reached (no route, refused, its name not found, no answer
/// to the connect, or none within `connect_timeout`) or is not the server
/// `target_session_attrs` asks for,
/// which tokio-postgres reports in the same words. An error the server
/// sent, a TLS or authentication failure, or a connection lost once the
/// server had answered ends the search.
pub fn tries_next(e: &tokio_postgres::Error) -> bool {
    // tokio-postgres's `Kind::Connect` and `Kind::Timeout` ([`no_answer`]),
    // which it does not expose otherwise.
    let said = e.to_string();
    e.as_db_error().is_none()
        && (said.starts_with("error connecting to server") || said == no_answer().to_string())
}

/// A host name's addresses as targets of their own, in the order the
/// resolver gave them (libpq tries them so, and a server answering on one
/// ends the search there too): tokio-postgres, handed the name, would try
/// the next address after any error, and send the password again. Each
/// keeps the name, for TLS and the password file, with its address as
/// `hostaddr`. A target that names no host to look up, or a name with
/// one address or none, is left whole (tokio-postgres then says why the
/// name does not resolve).
pub fn each_address(target: Target, resolved: &[std::net::IpAddr]) -> Vec<Target> {
    let Some((host, port)) = lookup_of(&target).filter(|_| resolved.len() > 1) else {
        return vec![target];
    };
    resolved
        .iter()
        .map(|addr| {
            let mut cfg = target.cfg.clone();
            cfg.hostaddr(*addr);
            Target {
                cfg,
                name: format!("{host} ({addr}) port {port}"),
            }
        })
        .collect()
}

/// The name and port a target would look up, if it is one to look up.
fn lookup_of(target: &Target) -> Option<(String, u16)> {
    match (target.cfg.get_hosts(), target.cfg.get_hostaddrs()) {
        ([Host::Tcp(name)], []) => Some((
            name.clone(),
            target.cfg.get_ports().first().copied().unwrap_or(5432),
        )),
        _ => None,
    }
}

/// The hosts and addresses a connection tried, each with what it got, in
/// order; and whether the search ended with some left untried.
#[derive(Default)]
pub struct Tried {
    pub failures: Vec<(String, tokio_postgres::Error)>,
    pub stopped_early: bool,
}

impl Tried {
    /// The error the search ended on: what decides its kind (a refused
    /// certificate, a missing password).
    pub fn last(&self) -> &tokio_postgres::Error {
        &self.failures.last().expect("a search tries a host").1
    }

    /// Records a failure; whether to go on to the next host or address
    /// (`more`: whether one is left).
    fn go_on(&mut self, target: Target, e: tokio_postgres::Error, more: bool) -> bool {
        let next = tries_next(&e);
        self.stopped_early = !next && more;
        self.failures.push((target.name, e));
        next
    }
}

/// How a host name becomes addresses: [`system_resolve`], or a fixed
/// list where a test needs a name with several.
pub type Resolve = fn(&str, u16) -> Vec<std::net::IpAddr>;

/// The system's resolver (getaddrinfo, as libpq's), in its order; none
/// when the name does not resolve (tokio-postgres, handed the name, then
/// says why).
pub fn system_resolve(name: &str, port: u16) -> Vec<std::net::IpAddr> {
    use std::net::ToSocketAddrs as _;
    let mut addrs: Vec<std::net::IpAddr> = (name, port)
        .to_socket_addrs()
        .map(|a| a.map(|a| a.ip()).collect())
        .unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    addrs
}

/// A tokio-postgres client and the connection that drives it.
pub type Connected<T> = (
    tokio_postgres::Client,
    tokio_postgres::Connection<
        tokio_postgres::Socket,
        <T as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
    >,
);

/// Connects with tokio-postgres, host by host and address by address as
/// libpq does.
pub async fn connect<T>(cfg: &Config, tls: T) -> Result<Connected<T>, Tried>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Clone,
{
    connect_via(cfg, tls, system_resolve).await
}

/// [`connect`] with names resolved by `resolve`.
pub async fn connect_via<T>(cfg: &Config, tls: T, resolve: Resolve) -> Result<Connected<T>, Tried>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Clone,
{
    search(
        cfg,
        // getaddrinfo blocks: off the runtime's threads.
        |name, port| async move {
            tokio::task::spawn_blocking(move || resolve(&name, port))
                .await
                .unwrap_or_default()
        },
        |one| {
            let tls = tls.clone();
            async move {
                let limit = answer_within(&one);
                let attempt = one.connect(tls);
                match limit {
                    Some(limit) => tokio::time::timeout(limit, attempt)
                        .await
                        .unwrap_or_else(|_| Err(no_answer())),
                    None => attempt.await,
                }
            }
        },
    )
    .await
}

/// Connects with the blocking `postgres` client, host by host and address
/// by address as libpq does.
pub fn connect_blocking(
    cfg: &Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
) -> Result<postgres::Client, Tried> {
    connect_blocking_via(cfg, tls, system_resolve)
}

/// [`connect_blocking`] with names resolved by `resolve`.
pub fn connect_blocking_via(
    cfg: &Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    resolve: Resolve,
) -> Result<postgres::Client, Tried> {
    // Driven without a runtime: each step blocks, and the `postgres`
    // client starts a runtime of its own, which may not run inside one.
    futures::executor::block_on(search(
        cfg,
        |name, port| std::future::ready(resolve(&name, port)),
        |one| {
            let limit = answer_within(&one);
            let (one, tls) = (postgres::Config::from(one), tls.clone());
            std::future::ready(match limit {
                // The blocking client cannot be interrupted: the attempt
                // runs on a thread of its own, left behind if the server
                // never answers.
                Some(limit) => {
                    super::watched::on_thread(limit, "the connection", move || one.connect(tls))
                        .unwrap_or_else(|_| Err(no_answer()))
                }
                None => one.connect(tls),
            })
        },
    ))
}

/// The search both shells run: each host of `cfg` in order, each address
/// of a host name in the order `resolve` gives them, each attempted alone
/// with its own password ([`with_password`]) until one connects or
/// [`tries_next`] says the search ends.
async fn search<C, R, A>(
    cfg: &Config,
    mut resolve: impl FnMut(String, u16) -> R,
    mut attempt: impl FnMut(Config) -> A,
) -> Result<C, Tried>
where
    R: std::future::Future<Output = Vec<std::net::IpAddr>>,
    A: std::future::Future<Output = Result<C, tokio_postgres::Error>>,
{
    let mut tried = Tried::default();
    let hosts = targets(cfg);
    let last_host = hosts.len() - 1;
    for (h, host) in hosts.into_iter().enumerate() {
        let resolved = match lookup_of(&host) {
            Some((name, port)) => resolve(name, port).await,
            None => Vec::new(),
        };
        let addresses = each_address(host, &resolved);
        let last_address = addresses.len() - 1;
        for (a, mut target) in addresses.into_iter().enumerate() {
            match attempt(with_password(std::mem::take(&mut target.cfg))).await {
                Ok(connected) => return Ok(connected),
                Err(e) => {
                    if !tried.go_on(target, e, h < last_host || a < last_address) {
                        return Err(tried);
                    }
                }
            }
        }
    }
    Err(tried)
}

/// [`search_limit`] of `url` from `patience.startup()`: how long a pass's
/// first connections may take.
pub fn startup_limit(url: &str, patience: super::Patience) -> std::time::Duration {
    match super::session_config(url) {
        Ok(cfg) => search_limit(&cfg, patience.startup()),
        // Said when it connects.
        Err(_) => patience.startup(),
    }
}

/// How long finding a server may take at most: `limit`, or, when the URL
/// gives `connect_timeout`, long enough for every host and every address
/// of a host name to use all of it (a second more each), so that the bound
/// on the whole search does not cut short the addresses libpq would still
/// try.
pub fn search_limit(cfg: &Config, limit: std::time::Duration) -> std::time::Duration {
    let Some(each) = answer_within(cfg) else {
        return limit;
    };
    // Every address a name has is an attempt of its own: counted as the
    // search will find them (a dead IPv6 address before three IPv4 ones
    // is four attempts, each allowed all of `connect_timeout`).
    let attempts: u32 = targets(cfg)
        .iter()
        .map(|t| match lookup_of(t) {
            Some((name, port)) => system_resolve(&name, port).len().max(1) as u32,
            None => 1,
        })
        .sum();
    limit.max((each + std::time::Duration::from_secs(1)) * attempts)
}

/// How long one host may take to answer before the next is tried: libpq's
/// `connect_timeout`, which bounds a host's whole attempt (its connect,
/// TLS, authentication), at least 2 s as libpq reads it. tokio-postgres
/// bounds only the TCP connect with it, so a server that accepts and then
/// never answers (a stopped postmaster) held the search there.
fn answer_within(cfg: &Config) -> Option<std::time::Duration> {
    let given = *cfg.get_connect_timeout()?;
    Some(given.max(std::time::Duration::from_secs(2)))
}

/// tokio-postgres's own "timeout waiting for server", for a host that did
/// not answer within [`answer_within`] (the `postgres` crate builds its
/// timeouts the same way).
fn no_answer() -> tokio_postgres::Error {
    tokio_postgres::Error::__private_api_timeout()
}

/// `cfg`, one host, with the password libpq would send that host when the
/// URL gives none (or an empty one): `PGPASSWORD`, else the password file's line for it,
/// looked up host by host as libpq does, so each server of a list gets its
/// own line's password and no other.
fn with_password(mut cfg: Config) -> Config {
    // An empty password is libpq's "none given" too.
    if cfg.get_password().is_none_or(<[u8]>::is_empty) {
        if let Ok(Some(password)) = super::pgpass::password_for(&cfg) {
            cfg.password(password);
        }
    }
    cfg
}

/// deadpool-postgres's way of opening a connection, replaced by
/// [`connect`]'s so that a pool tries hosts as libpq does too.
pub struct PoolConnect(pub tokio_postgres_rustls::MakeRustlsConnect);

impl deadpool_postgres::Connect for PoolConnect {
    fn connect(
        &self,
        cfg: &Config,
    ) -> futures::future::BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let (cfg, tls) = (cfg.clone(), self.0.clone());
        Box::pin(async move {
            let (client, connection) = match connect(&cfg, tls).await {
                Ok(connected) => connected,
                Err(mut tried) => {
                    // The pool's error carries one; the others are logged.
                    let (_, last) = tried.failures.pop().expect("a search tries a host");
                    for (name, e) in &tried.failures {
                        tracing::debug!("{name}: {}", crate::error::chain(e));
                    }
                    return Err(last);
                }
            };
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(target: "deadpool.postgres", "Connection error: {e}");
                }
            });
            Ok((client, task))
        })
    }
}

/// Opens a synchronous connection, with the password kept out of the error.
pub fn connect_sync(url: &str) -> anyhow::Result<postgres::Client> {
    connect_blocking(&super::session_config(url)?, super::tls::connector()?)
        .map_err(|tried| connect_error(url, &tried))
}

/// A failed connection in one line, the password redacted, each host tried
/// named with what it got (the host alone when the URL does not name it),
/// and a refused certificate as its own type (the caller says how to trust
/// it).
pub fn connect_error(url: &str, tried: &Tried) -> anyhow::Error {
    let alone = tried.failures.len() == 1 && !tried.stopped_early;
    let what = match tried.failures.as_slice() {
        [(_, e)] if alone && url_names_host(url) => format!(" ({})", crate::error::chain(e)),
        [(name, e)] if alone => format!(" on {name} ({})", crate::error::chain(e)),
        each => {
            let each: Vec<String> = each
                .iter()
                .map(|(name, e)| format!("{name}: {}", crate::error::chain(e)))
                .collect();
            format!(" ({})", each.join("; "))
        }
    };
    let stopped = match tried.stopped_early {
        true => {
            "; the hosts after it were not tried: libpq goes on only past a host it cannot reach"
        }
        false => "",
    };
    // White space after the URL: see `secret::redact_text`.
    let msg = format!(
        "cannot connect to PostgreSQL at {}{what}{stopped}",
        crate::secret::redact_url(url)
    );
    let e = tried.last();
    // tokio-postgres's words for a TLS connection to an address whose host
    // is a socket directory: nothing to verify the certificate against.
    if crate::error::chain(e).contains("no hostname provided") {
        return anyhow::anyhow!(
            "{msg}: a socket directory beside a hostaddr gives TLS no name to verify the server by; name its host instead"
        );
    }
    // tokio-postgres's words for a server that asked for a password the
    // URL, PGPASSWORD and the password file did not give.
    if crate::error::chain(e).contains("password missing") {
        // A file libpq reads that answered nothing: say so, not where a
        // password may be given.
        if let Some(file) = super::pgpass::usable_password_file() {
            return anyhow::anyhow!(
                "{msg}: no line of the password file {} matches this host, port, database and user; add one, or give the password in PGPASSWORD",
                file.display()
            );
        }
        return anyhow::anyhow!(
            "{msg}: give the password in the URL, in PGPASSWORD, or in a password file (PGPASSFILE, else ~/.pgpass, mode 0600)"
        );
    }
    if crate::error::chain(e).contains("Connection refused") {
        return anyhow::anyhow!(
            "{msg}: is a server running there and accepting TCP connections on that port?"
        );
    }
    if crate::error::is_certificate_refused(e) {
        let hint = match super::tls::ca_file() {
            // rustls's words for a certificate its CA vouches for, issued
            // to another name.
            _ if crate::error::chain(e).contains("certificate not valid for name") => {
                "the certificate names another server: connect by a name it carries".to_string()
            }
            Some(file) => format!(
                "the CA file {} does not vouch for it: give the CA that signed the server's certificate",
                file.display()
            ),
            None => "trust the server's CA with --db-ca-file or PGSSLROOTCERT".into(),
        };
        crate::error::DbError::CertificateRefused(format!("{msg} ({hint})")).into()
    } else {
        anyhow::anyhow!(msg)
    }
}

/// Whether the URL itself names a host or an address: one that does not
/// connects where libpq's environment or defaults say, which the error
/// then names.
fn url_names_host(url: &str) -> bool {
    let Ok(as_written) = super::libpq_tls(url).0.parse::<Config>() else {
        return true;
    };
    !as_written.get_hosts().is_empty() || !as_written.get_hostaddrs().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_host_is_kept_whole() {
        let cfg: Config = "host=db.example port=6543 user=u password=p dbname=d options='-c x=1' \
             application_name=a sslmode=require connect_timeout=7 keepalives=0 \
             keepalives_idle=9 target_session_attrs=read-write channel_binding=require"
            .parse()
            .unwrap();
        let targets = targets(&cfg);
        assert_eq!(targets.len(), 1);
        assert!(
            targets[0].cfg == cfg,
            "{:?} became {:?}",
            cfg,
            targets[0].cfg
        );
        assert_eq!(targets[0].name, "db.example port 6543");
    }

    #[test]
    fn a_name_with_several_addresses_is_tried_address_by_address() {
        let cfg: Config = "host=db.example,/tmp/sock port=6543 user=u"
            .parse()
            .unwrap();
        let two: [std::net::IpAddr; 2] = [[10, 0, 0, 1].into(), "::1".parse().unwrap()];
        let mut hosts = targets(&cfg).into_iter();
        let named = each_address(hosts.next().unwrap(), &two);
        let names: Vec<&str> = named.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "db.example (10.0.0.1) port 6543",
                "db.example (::1) port 6543"
            ]
        );
        for (t, addr) in named.iter().zip(two) {
            assert_eq!(t.cfg.get_hosts(), cfg.get_hosts()[..1].to_vec());
            assert_eq!(t.cfg.get_hostaddrs(), [addr]);
            assert_eq!(t.cfg.get_ports(), [6543]);
        }
        // An address alone is its own host, the name TLS verifies.
        let alone = targets(&"hostaddr=10.0.0.1".parse().unwrap()).remove(0);
        assert_eq!(alone.name, "10.0.0.1 port 5432");
        assert_eq!(alone.cfg.get_hosts(), [Host::Tcp("10.0.0.1".into())]);
        // A socket, a name with one address, an address given: whole.
        assert_eq!(each_address(hosts.next().unwrap(), &two).len(), 1);
        let one = targets(&"host=db.example".parse().unwrap()).remove(0);
        assert_eq!(each_address(one, &two[..1])[0].name, "db.example port 5432");
        let given = targets(&"host=db.example hostaddr=10.0.0.9".parse().unwrap()).remove(0);
        assert_eq!(each_address(given, &two).len(), 1);
    }

    #[test]
    fn each_host_is_tried_alone_with_its_port() {
        let cfg: Config =
            "host=a,/tmp/sock,c hostaddr=10.0.0.1,10.0.0.2,10.0.0.3 port=1,2,3 user=u"
                .parse()
                .unwrap();
        let names: Vec<String> = targets(&cfg).into_iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "a (10.0.0.1) port 1",
                "/tmp/sock (10.0.0.2) port 2",
                "c (10.0.0.3) port 3"
            ]
        );
        for t in targets(&cfg) {
            assert_eq!(t.cfg.get_hosts().len(), 1);
            assert_eq!(t.cfg.get_hostaddrs().len(), 1);
            assert_eq!(t.cfg.get_ports().len(), 1);
            assert_eq!(t.cfg.get_user(), Some("u"));
        }
        // No TLS is asked on a Unix socket, as in libpq; a socket
        // directory beside a `hostaddr` is a TCP connection, which keeps it.
        use tokio_postgres::config::SslMode;
        let cfg: Config = "host=/tmp/sock,db.example sslmode=require".parse().unwrap();
        let modes: Vec<SslMode> = targets(&cfg).iter().map(|t| t.cfg.get_ssl_mode()).collect();
        assert_eq!(modes, [SslMode::Disable, SslMode::Require]);
        let cfg: Config = "host=/tmp/sock hostaddr=10.0.0.1 sslmode=require"
            .parse()
            .unwrap();
        assert_eq!(targets(&cfg)[0].cfg.get_ssl_mode(), SslMode::Require);
        // One port for every host, and none at all.
        let cfg: Config = "host=a,b port=7 user=u".parse().unwrap();
        let ports: Vec<&[u16]> = targets(&cfg).iter().map(|_| &[7u16][..]).collect();
        assert!(
            targets(&cfg)
                .iter()
                .zip(ports)
                .all(|(t, p)| t.cfg.get_ports() == p)
        );
        let cfg: Config = "host=a,b user=u".parse().unwrap();
        assert_eq!(targets(&cfg)[1].name, "b port 5432");
        assert!(targets(&cfg)[1].cfg.get_ports().is_empty());
    }
}
