//! Connection settings as libpq reads them, and URLs safe to print.
//!
//! A connection string (`postgres://` URL or `key=value` pairs) is completed from libpq's
//! environment for what it leaves out (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
//! `PGDATABASE`), then the password from the password file (`PGPASSFILE`, else
//! `~/.pgpass`; lines `host:port:database:user:password`, `*` matching anything, ignored
//! unless the file is private to its owner, as libpq does). [`redact`] hides the password
//! of a connection string in every message tensorcdc prints.

use std::path::PathBuf;

use tokio_postgres::config::Host;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::{Attempt, TlsSettings};

use crate::CaptureError;

/// The connection string with its password replaced by `****`.
pub fn redact(conn: &str) -> String {
    let mut out = conn.to_string();
    // URL form: scheme://user:password@host
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                let (a, b) = (scheme_end + 3 + colon + 1, scheme_end + 3 + at);
                out.replace_range(a..b, "****");
            }
        }
    }
    // `password=...` as a query parameter or a key=value pair (quoted or not; libpq allows
    // spaces around the `=`).
    let mut i = 0;
    while let Some(pos) = out[i..].find("password") {
        let mut start = i + pos + "password".len();
        let rest = &out[start..];
        let eq = rest.len() - rest.trim_start().len();
        if !rest[eq..].starts_with('=') {
            i = start;
            continue;
        }
        start += eq + 1;
        start += out[start..].len() - out[start..].trim_start().len();
        let bytes = out.as_bytes();
        let end = if bytes.get(start) == Some(&b'\'') {
            out[start + 1..].find('\'').map_or(out.len(), |e| start + 1 + e + 1)
        } else {
            out[start..].find(['&', ' ']).map_or(out.len(), |e| start + e)
        };
        out.replace_range(start..end, "****");
        i = start + 4;
    }
    out
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// The password file libpq would read.
fn passfile() -> Option<PathBuf> {
    env("PGPASSFILE").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))
}

/// One `.pgpass` field matches when it is `*` or equal (with `\:` and `\\` unescaped).
fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    fields.last_mut().expect("one field").push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

/// The password for a connection from the password file, if any line matches.
pub fn pgpass_password(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let path = passfile()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!("password file {} has group or world access; it is ignored (chmod 0600 it)", path.display());
            return None;
        }
    }
    let text = std::fs::read_to_string(&path).ok()?;
    // libpq matches a Unix socket directory as "localhost".
    let host = if host.starts_with('/') { "localhost" } else { host };
    let port = port.to_string();
    text.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()).find_map(|l| {
        let f = split_pgpass(l);
        let ok = f.len() == 5 && [host, port.as_str(), db, user].iter().zip(&f).all(|(want, field)| field == "*" || field == want);
        ok.then(|| f[4].clone())
    })
}

/// A tokio-postgres config and TLS settings from a connection string completed as libpq
/// does (environment, then password file). The TLS keys (`sslmode`, `sslrootcert`,
/// `sslcert`, `sslkey`) are read here, since tokio-postgres knows only some of them.
pub fn resolve(conn: &str) -> Result<(Config, TlsSettings), CaptureError> {
    let bad = |reason: String| CaptureError::Config { key: "database.url".into(), reason };
    let (rest, tls_pairs) = crate::tls::take_tls_params(conn);
    let mut tls = TlsSettings::from_env().map_err(|e| bad(e.to_string()))?;
    for (k, v) in &tls_pairs {
        tls.set(k, v).map_err(|e| bad(format!("{k}: {e}")))?;
    }
    let mut c: Config = if rest.trim().is_empty() { Config::new() } else { rest.parse().map_err(|e| bad(format!("{}: {e}", redact(conn))))? };
    if c.get_hosts().is_empty() {
        match env("PGHOST") {
            Some(h) if h.starts_with('/') => c.host_path(h),
            Some(h) => c.host(&h),
            None => c.host("localhost"),
        };
    }
    if c.get_ports().is_empty() {
        let port = env("PGPORT").map(|p| p.parse::<u16>().map_err(|_| bad(format!("PGPORT {p:?} is not a port number")))).transpose()?;
        c.port(port.unwrap_or(5432));
    }
    if c.get_user().is_none() {
        c.user(env("PGUSER").as_deref().unwrap_or("postgres"));
    }
    if c.get_dbname().is_none() {
        let db = env("PGDATABASE").unwrap_or_else(|| c.get_user().unwrap_or("postgres").to_string());
        c.dbname(&db);
    }
    if c.get_password().is_none() {
        let host = match c.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let (port, db, user) =
            (c.get_ports().first().copied().unwrap_or(5432), c.get_dbname().unwrap_or("").to_string(), c.get_user().unwrap_or("").to_string());
        if let Some(p) = env("PGPASSWORD").or_else(|| pgpass_password(&host, port, &db, &user)) {
            c.password(p);
        }
    }
    Ok((c, tls))
}

/// Connects a SQL client for `conn` (completed by [`resolve`]); errors name the server by
/// its redacted connection string, never the password.
pub async fn connect(conn: &str) -> Result<Client, CaptureError> {
    let (cfg, tls) = resolve(conn)?;
    connect_config(&cfg, &tls, redact(conn)).await
}

/// True when the server turned the session away in a way the next attempt of `allow` or
/// `prefer` may fix (pg_hba.conf has no entry for this kind of connection).
pub(crate) fn hba_rejected(e: &CaptureError) -> bool {
    matches!(e, CaptureError::Auth { reason, .. } if reason.contains("pg_hba.conf"))
}

/// Whether the next attempt is made after `e`: the server's pg_hba.conf turned this kind of
/// session away, or (libpq's `prefer`) anything on the TLS side failed: the handshake, the
/// client's own certificate files, a server that closed the TLS session. A refused password
/// is final.
pub(crate) fn try_next(attempt: Attempt, e: &CaptureError) -> bool {
    hba_rejected(e) || (attempt == Attempt::Tls { required: false } && !matches!(e, CaptureError::Auth { .. }))
}

/// A TLS failure that retrying cannot mend (a certificate the settings refuse, a server
/// without TLS when TLS is required) is a configuration error naming the server.
pub(crate) fn tls_failure(addr: &str, reason: String) -> CaptureError {
    let permanent = ["certificate", "does not support TLS", "UnknownIssuer", "NotValidForName", "BadSignature"].iter().any(|w| reason.contains(w));
    if permanent {
        CaptureError::Config { key: "sslmode".into(), reason: format!("{addr}: {reason}") }
    } else {
        CaptureError::Connect { addr: addr.to_string(), reason }
    }
}

/// Connects a SQL client with `cfg`, trying plain and TLS sessions as `tls.mode` says (see
/// [`crate::tls`]); `addr` names the server in errors. A refused password, and a password
/// the server asks for but nobody supplied, are permanent `Auth` errors; a server that
/// cannot be reached is a retryable `Connect` error with its cause.
pub async fn connect_config(cfg: &Config, tls: &TlsSettings, addr: String) -> Result<Client, CaptureError> {
    let unix = matches!(cfg.get_hosts().first(), Some(Host::Unix(_)));
    let attempts = tls.attempts(unix);
    let mut last = None;
    for (i, attempt) in attempts.iter().enumerate() {
        match connect_once(cfg, tls, *attempt, &addr).await {
            Ok(c) => return Ok(c),
            Err(e) if i + 1 < attempts.len() && try_next(*attempt, &e) => {
                tracing::debug!("{addr}: {e}; trying again {}", if matches!(attempt, Attempt::Plain) { "with TLS" } else { "without TLS" });
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

async fn connect_once(cfg: &Config, tls: &TlsSettings, attempt: Attempt, addr: &str) -> Result<Client, CaptureError> {
    let user = || cfg.get_user().unwrap_or("").to_string();
    let classify = |e: tokio_postgres::Error| {
        if e.as_db_error().is_some() {
            let mut err = CaptureError::from_pg("connect", e);
            if let CaptureError::Auth { user: u, .. } = &mut err {
                *u = user();
            }
            err
        } else if format!("{e:?}").contains("password missing") {
            CaptureError::Auth {
                user: user(),
                reason: "the server asks for a password and none was supplied (give it in the URL, PGPASSWORD, ~/.pgpass or database.password)".into(),
            }
        } else {
            let reason = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
            if reason.contains("server does not support TLS") {
                return tls_failure(addr, format!("the server does not support TLS, but sslmode={} requires it", tls.mode.as_str()));
            }
            tls_failure(addr, reason)
        }
    };
    let client = match attempt {
        Attempt::Plain => {
            let mut c = cfg.clone();
            c.ssl_mode(SslMode::Disable);
            let (client, connection) = c.connect(NoTls).await.map_err(classify)?;
            spawn_connection(connection);
            client
        }
        Attempt::Tls { required } => {
            let config = tls.client_config().map_err(|reason| CaptureError::Config { key: "sslmode".into(), reason: format!("{addr}: {reason}") })?;
            let mut c = cfg.clone();
            c.ssl_mode(if required { SslMode::Require } else { SslMode::Prefer });
            let (client, connection) = c.connect(MakeRustlsConnect::new((*config).clone())).await.map_err(classify)?;
            spawn_connection(connection);
            client
        }
    };
    Ok(client)
}

fn spawn_connection<F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static>(connection: F) {
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("sql connection ended: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redact("postgres://u:s3cret@h:5/db?sslmode=require"), "postgres://u:****@h:5/db?sslmode=require");
        assert_eq!(redact("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(redact("host=h password=s3cret user=u"), "host=h password=**** user=u");
        assert_eq!(redact("host=h password='s3 cret' user=u"), "host=h password=**** user=u");
        assert_eq!(redact("host=h password = s3cret user=u"), "host=h password = **** user=u");
        assert_eq!(redact("user=passwordless password=x"), "user=passwordless password=****");
        assert_eq!(redact("postgres://h/db?password=s3cret&user=u"), "postgres://h/db?password=****&user=u");
        assert_eq!(redact("postgres://u:p%40ss@h/db"), "postgres://u:****@h/db");
    }

    #[test]
    fn pgpass_fields() {
        assert_eq!(split_pgpass(r"h:5432:*:u:pa\:ss:w"), vec!["h", "5432", "*", "u", "pa:ss:w"]);
    }
}
