//! TLS for every Postgres connection, following libpq's `sslmode` (PostgreSQL 15 docs,
//! "33.19.1. Client Verification of Server Certificates" and "Table 34.1 SSL Mode
//! Descriptions"):
//!
//! | sslmode | TLS tried | falls back to plain | server certificate checked |
//! |---|---|---|---|
//! | `disable` | no | – | – |
//! | `allow` | only when plain is refused | – | as `require` |
//! | `prefer` (default) | first | when the server has no TLS or refuses the TLS session | as `require` |
//! | `require` | always | never | only against `sslrootcert` when that file exists (libpq's legacy rule) |
//! | `verify-ca` | always | never | chain to `sslrootcert` |
//! | `verify-full` | always | never | chain and host name |
//!
//! `sslrootcert` defaults to `~/.postgresql/root.crt`; `system` takes the Mozilla roots
//! (webpki-roots) and needs `verify-full`, as libpq 16 says. A client certificate
//! (`sslcert`, default `~/.postgresql/postgresql.crt`, with `sslkey`, default
//! `~/.postgresql/postgresql.key`) is sent when its file exists. As in libpq, Unix-domain
//! sockets never use TLS. Settings come from the connection string, then `PGSSLMODE`,
//! `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, or Debezium's `database.sslmode`,
//! `database.sslrootcert`, `database.sslcert`, `database.sslkey`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::SettingError;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(v: &str) -> Result<SslMode, SettingError> {
        Ok(match v {
            "disable" | "disabled" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" | "required" => SslMode::Require,
            "verify-ca" | "verify_ca" => SslMode::VerifyCa,
            "verify-full" | "verify_full" => SslMode::VerifyFull,
            other => return Err(SettingError::value(other, "an sslmode: disable, allow, prefer, require, verify-ca or verify-full")),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS settings of one connection target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// Whether `mode` was given (libpq 16: `sslrootcert=system` without it means verify-full).
    pub mode_given: bool,
    /// `sslrootcert`: a PEM file, or `system`.
    pub rootcert: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The connection-string keys handled here (tokio-postgres does not know most of them).
pub const KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// One connection attempt: plain, or TLS (`required`: a server without TLS is an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Plain,
    Tls { required: bool },
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn home_file(name: &str) -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql").join(name))
}

impl TlsSettings {
    /// Defaults from libpq's environment (`PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`).
    pub fn from_env() -> Result<TlsSettings, SettingError> {
        let mut t = TlsSettings::default();
        for (var, key) in [("PGSSLMODE", "sslmode"), ("PGSSLROOTCERT", "sslrootcert"), ("PGSSLCERT", "sslcert"), ("PGSSLKEY", "sslkey")] {
            if let Some(v) = env(var) {
                t.set(key, &v).map_err(|e| SettingError::Env { var, source: Box::new(e) })?;
            }
        }
        Ok(t)
    }

    /// Sets one of [`KEYS`].
    pub fn set(&mut self, key: &str, v: &str) -> Result<(), SettingError> {
        match key {
            "sslmode" => {
                self.mode = SslMode::parse(v)?;
                self.mode_given = true;
            }
            "sslrootcert" => {
                self.rootcert = Some(v.to_string());
                if v == "system" && !self.mode_given {
                    self.mode = SslMode::VerifyFull;
                }
            }
            "sslcert" => self.cert = Some(PathBuf::from(v)),
            "sslkey" => self.key = Some(PathBuf::from(v)),
            other => return Err(SettingError::UnknownKey(other.to_string())),
        }
        Ok(())
    }

    /// The attempts libpq makes, in order. Unix-domain sockets are always plain.
    pub fn attempts(&self, unix_socket: bool) -> &'static [Attempt] {
        if unix_socket {
            return &[Attempt::Plain];
        }
        match self.mode {
            SslMode::Disable => &[Attempt::Plain],
            SslMode::Allow => &[Attempt::Plain, Attempt::Tls { required: true }],
            SslMode::Prefer => &[Attempt::Tls { required: false }, Attempt::Plain],
            _ => &[Attempt::Tls { required: true }],
        }
    }

    fn rootcert_path(&self) -> Option<PathBuf> {
        match &self.rootcert {
            Some(p) => Some(PathBuf::from(p)),
            None => home_file("root.crt"),
        }
    }

    /// The rustls client configuration for a TLS attempt.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
        let system = self.rootcert.as_deref() == Some("system");
        if system && self.mode != SslMode::VerifyFull {
            return Err(TlsError::WeakModeWithSystemRoots(self.mode.as_str()));
        }
        let root_file = if system { None } else { self.rootcert_path().filter(|p| p.exists()) };
        let verify = self.mode >= SslMode::VerifyCa || root_file.is_some() || system;
        let verifier: Arc<dyn ServerCertVerifier> = if verify {
            let mut roots = RootCertStore::empty();
            if system {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            } else {
                let Some(path) = root_file else {
                    let shown = self.rootcert_path().map_or_else(|| "~/.postgresql/root.crt".into(), |p| p.display().to_string());
                    return Err(TlsError::NoRootFile(shown));
                };
                let file = |e: &dyn std::fmt::Display| TlsError::File { setting: "sslrootcert", path: path.clone(), reason: e.to_string() };
                let certs = CertificateDer::pem_file_iter(&path).map_err(|e| file(&e))?;
                for c in certs {
                    let c = c.map_err(|e| file(&e))?;
                    roots.add(c).map_err(|e| file(&e))?;
                }
                if roots.is_empty() {
                    return Err(file(&"no certificate in the file"));
                }
            }
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().map_err(|e| TlsError::Roots(e.to_string()))?;
            // Below verify-full the host name is not checked (libpq's verify-ca).
            Arc::new(Verifier { inner: Some(inner), check_name: self.mode == SslMode::VerifyFull, provider: provider.clone() })
        } else {
            Arc::new(Verifier { inner: None, check_name: false, provider: provider.clone() })
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let cert = self.cert.clone().or_else(|| home_file("postgresql.crt"));
        let config = match cert.filter(|p| self.cert.is_some() || p.exists()) {
            Some(cert) => {
                let key = self.key.clone().or_else(|| home_file("postgresql.key")).ok_or(TlsError::NoKey)?;
                check_key_permissions(&key)?;
                let cert_file = |e: &dyn std::fmt::Display| TlsError::File { setting: "sslcert", path: cert.clone(), reason: e.to_string() };
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_file_iter(&cert).and_then(|it| it.collect::<Result<_, _>>()).map_err(|e| cert_file(&e))?;
                let key_der = PrivateKeyDer::from_pem_file(&key).map_err(|e| TlsError::File { setting: "sslkey", path: key.clone(), reason: e.to_string() })?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| cert_file(&e))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// libpq refuses a private key that others may read.
fn check_key_permissions(key: &std::path::Path) -> Result<(), TlsError> {
    let meta = std::fs::metadata(key).map_err(|e| TlsError::File { setting: "sslkey", path: key.to_path_buf(), reason: e.to_string() })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(TlsError::KeyReadableByOthers(key.to_path_buf()));
        }
    }
    let _ = meta;
    Ok(())
}

/// The server name rustls checks (an IP address or a DNS name).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string()).map_err(|e| TlsError::ServerName { host: host.to_string(), reason: e.to_string() })
}

/// Why a TLS attempt could not be set up (before any byte is sent), in libpq's words where
/// libpq has them.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("weak sslmode \"{0}\" may not be used with sslrootcert=system (use \"verify-full\")")]
    WeakModeWithSystemRoots(&'static str),
    #[error(
        "root certificate file \"{0}\" does not exist; either provide the file, use the system's trusted roots with \
         sslrootcert=system, or change sslmode to disable server certificate verification"
    )]
    NoRootFile(String),
    /// A file named by `setting` that cannot be read or used.
    #[error("{setting} {}: {reason}", path.display())]
    File { setting: &'static str, path: PathBuf, reason: String },
    #[error("sslkey: no key file for the client certificate")]
    NoKey,
    #[error("private key file \"{}\" has group or world access; file must have permissions u=rw (0600) or less", .0.display())]
    KeyReadableByOthers(PathBuf),
    #[error("host {host:?} is not a valid TLS server name: {reason}")]
    ServerName { host: String, reason: String },
    #[error("the root certificates: {0}")]
    Roots(String),
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// Checks the chain (when `inner` is set) and the name (when `check_name`); handshake
/// signatures are always checked.
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else { return Ok(ServerCertVerified::assertion()) };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) if !self.check_name => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Splits the TLS keys ([`KEYS`]) out of a connection string (URL query parameters or
/// `key=value` pairs), returning the rest and the pairs taken.
pub fn take_tls_params(conn: &str) -> (String, Vec<(String, String)>) {
    let mut taken = Vec::new();
    if conn.contains("://") {
        let Some((base, query)) = conn.split_once('?') else { return (conn.to_string(), taken) };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if KEYS.contains(&k) {
                taken.push((k.to_string(), percent_decode(v)));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        return (rest, taken);
    }
    // key = value pairs; values may be single-quoted with backslash escapes.
    let b = conn.as_bytes();
    let mut rest = String::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &conn[start..i];
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'=') {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch = conn[i..].chars().next().expect("in bounds");
                value.push(ch);
                i += ch.len_utf8();
            }
            i += 1;
        } else {
            let vs = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            value.push_str(&conn[vs..i]);
        }
        if key.is_empty() {
            continue;
        }
        if KEYS.contains(&key) {
            taken.push((key.to_string(), value));
        } else {
            rest.push_str(&conn[start..i.min(b.len())]);
            rest.push(' ');
        }
    }
    (rest.trim_end().to_string(), taken)
}

fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_keys_are_taken_from_urls_and_pairs() {
        let (rest, t) = take_tls_params("postgres://u:p@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem");
        assert_eq!(rest, "postgres://u:p@h:5/db?application_name=x");
        assert_eq!(t, vec![("sslmode".into(), "verify-full".into()), ("sslrootcert".into(), "/tmp/ca.pem".into())]);
        let (rest, t) = take_tls_params("host=h sslmode = require password='a b' sslcert='/x y/c.pem'");
        assert_eq!(rest, "host=h password='a b'");
        assert_eq!(t, vec![("sslmode".into(), "require".into()), ("sslcert".into(), "/x y/c.pem".into())]);
        assert_eq!(take_tls_params("postgres://h/db").0, "postgres://h/db");
    }

    #[test]
    fn modes_try_what_libpq_tries() {
        let t = |m| TlsSettings { mode: m, ..Default::default() };
        assert_eq!(t(SslMode::Prefer).attempts(false), &[Attempt::Tls { required: false }, Attempt::Plain]);
        assert_eq!(t(SslMode::Allow).attempts(false), &[Attempt::Plain, Attempt::Tls { required: true }]);
        assert_eq!(t(SslMode::VerifyFull).attempts(true), &[Attempt::Plain]);
        assert!(SslMode::parse("verify-fulll").unwrap_err().to_string().contains("verify-full"));
        let missing = TlsSettings { mode: SslMode::VerifyCa, rootcert: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        assert!(missing.client_config().unwrap_err().to_string().contains("/nonexistent/ca.pem\" does not exist"));
        let weak = TlsSettings { mode: SslMode::Require, rootcert: Some("system".into()), ..Default::default() };
        assert!(weak.client_config().unwrap_err().to_string().contains("verify-full"));
    }
}
