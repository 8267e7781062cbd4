//! Our own replication connection: the startup handshake with `replication=database`,
//! authentication (trust, cleartext, MD5, SCRAM-SHA-256), simple queries for the
//! replication commands, and the CopyBoth stream of `START_REPLICATION`.
//!
//! tokio-postgres cannot open a replication connection, so this speaks the wire protocol
//! itself, using `postgres-protocol` only to encode frontend messages and for SCRAM.
//! Reading is cancel-safe ([`ReplicationConn::recv`] may sit in a `select!`): bytes are
//! buffered before a frame is parsed out of the buffer.

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_postgres::config::Host;

use crate::tls::{Attempt, TlsSettings};
use crate::CaptureError;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One backend message: its tag and body.
struct Frame {
    tag: u8,
    body: Bytes,
}

/// A row of a simple query's result, as text.
pub type TextRow = Vec<Option<String>>;

/// What arrives on the replication stream.
#[derive(Debug)]
pub enum ReplicationMessage {
    /// `XLogData`: WAL data starting at `wal_start`; `data` is one pgoutput message.
    XLogData { wal_start: u64, wal_end: u64, data: Bytes },
    /// Primary keepalive: the server's WAL end, and whether it wants a reply now.
    Keepalive { wal_end: u64, reply_requested: bool },
}

/// A replication connection to one database.
pub struct ReplicationConn {
    io: Box<dyn Io>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    addr: String,
    /// `server_version_num` reported at startup (150004 for 15.4).
    pub server_version: u32,
}

fn cstr(buf: &mut Bytes) -> Result<String, CaptureError> {
    let end = buf.iter().position(|&b| b == 0).ok_or_else(|| CaptureError::Protocol("unterminated string".into()))?;
    let s = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.advance(end + 1);
    Ok(s)
}

/// Parses an ErrorResponse / NoticeResponse body into (SQLSTATE, message).
fn error_fields(mut body: Bytes) -> (String, String) {
    let (mut code, mut msg, mut detail) = (String::new(), String::new(), String::new());
    while body.has_remaining() {
        let t = body.get_u8();
        if t == 0 {
            break;
        }
        let Ok(v) = cstr(&mut body) else { break };
        match t {
            b'C' => code = v,
            b'M' => msg = v,
            b'D' => detail = v,
            _ => {}
        }
    }
    if !detail.is_empty() {
        msg = format!("{msg} ({detail})");
    }
    (code, msg)
}

impl ReplicationConn {
    /// Connects and authenticates with `replication=database`, trying plain and TLS
    /// sessions as `tls.mode` says (see [`crate::tls`]).
    pub async fn connect(cfg: &tokio_postgres::Config, tls: &TlsSettings, application_name: &str) -> Result<Self, CaptureError> {
        let unix = matches!(cfg.get_hosts().first(), Some(Host::Unix(_)));
        let attempts = tls.attempts(unix);
        let mut last = None;
        for (i, attempt) in attempts.iter().enumerate() {
            match Self::connect_once(cfg, tls, *attempt, application_name).await {
                Ok(c) => return Ok(c),
                Err(e) if i + 1 < attempts.len() && crate::conn::try_next(*attempt, &e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Asks for TLS (`SSLRequest`) and runs the handshake when the server agrees.
    async fn start_tls<S>(mut s: S, host: &str, tls: &TlsSettings, required: bool, addr: &str) -> Result<Box<dyn Io>, CaptureError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io_err = |e: std::io::Error| CaptureError::Connect { addr: addr.to_string(), reason: e.to_string() };
        let mut req = BytesMut::new();
        frontend::ssl_request(&mut req);
        s.write_all(&req).await.map_err(io_err)?;
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).await.map_err(io_err)?;
        match answer[0] {
            b'S' => {
                let config = tls.client_config().map_err(|e| CaptureError::Config { key: "sslmode".into(), reason: e.to_string() })?;
                let name = crate::tls::server_name(host).map_err(|e| CaptureError::Config { key: "sslmode".into(), reason: e.to_string() })?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, s)
                    .await
                    .map_err(|e| crate::conn::tls_failure(addr, format!("TLS handshake: {e}")))?;
                Ok(Box::new(stream))
            }
            b'N' if !required => Ok(Box::new(s)),
            b'N' => Err(crate::conn::tls_failure(addr, format!("the server does not support TLS, but sslmode={} requires it", tls.mode.as_str()))),
            other => Err(CaptureError::Protocol(format!("unexpected answer {other:#x} to SSLRequest"))),
        }
    }

    async fn connect_once(cfg: &tokio_postgres::Config, tls: &TlsSettings, attempt: Attempt, application_name: &str) -> Result<Self, CaptureError> {
        let host = cfg.get_hosts().first().cloned().unwrap_or(Host::Tcp("localhost".into()));
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        let user = cfg.get_user().unwrap_or("postgres").to_string();
        let db = cfg.get_dbname().unwrap_or(&user).to_string();
        let (io, addr): (Box<dyn Io>, String) = match host {
            Host::Tcp(h) => {
                let addr = format!("{h}:{port}");
                let s = tokio::net::TcpStream::connect(&addr).await.map_err(|e| CaptureError::Connect { addr: addr.clone(), reason: e.to_string() })?;
                let _ = s.set_nodelay(true);
                let io = match attempt {
                    Attempt::Plain => Box::new(s) as Box<dyn Io>,
                    Attempt::Tls { required } => Self::start_tls(s, &h, tls, required, &addr).await?,
                };
                (io, addr)
            }
            Host::Unix(dir) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                let addr = path.display().to_string();
                let s = tokio::net::UnixStream::connect(&path).await.map_err(|e| CaptureError::Connect { addr: addr.clone(), reason: e.to_string() })?;
                (Box::new(s), addr)
            }
        };
        let mut conn = ReplicationConn { io, rbuf: BytesMut::with_capacity(1 << 16), wbuf: BytesMut::new(), addr, server_version: 0 };
        let params = [
            ("user", user.as_str()),
            ("database", db.as_str()),
            ("replication", "database"),
            ("application_name", application_name),
            ("client_encoding", "UTF8"),
            ("options", crate::types::SESSION_OPTIONS),
        ];
        frontend::startup_message(params.iter().copied(), &mut conn.wbuf).map_err(|e| CaptureError::Protocol(e.to_string()))?;
        conn.flush("startup").await?;
        let password = cfg.get_password().map(|p| p.to_vec());
        let auth_err = |reason: String| CaptureError::Auth { user: user.clone(), reason };
        let mut scram: Option<sasl::ScramSha256> = None;
        loop {
            let f = conn.read_frame("authentication").await?;
            match f.tag {
                b'R' => {
                    let mut body = f.body;
                    let code = body.get_i32();
                    match code {
                        0 => {}
                        3 => {
                            let pw = password.clone().ok_or_else(|| auth_err("server asks for a password and none was given".into()))?;
                            frontend::password_message(&pw, &mut conn.wbuf).map_err(|e| CaptureError::Protocol(e.to_string()))?;
                            conn.flush("authentication").await?;
                        }
                        5 => {
                            let pw = password.clone().ok_or_else(|| auth_err("server asks for a password and none was given".into()))?;
                            let salt = [body[0], body[1], body[2], body[3]];
                            let hash = md5_hash(user.as_bytes(), &pw, salt);
                            frontend::password_message(hash.as_bytes(), &mut conn.wbuf).map_err(|e| CaptureError::Protocol(e.to_string()))?;
                            conn.flush("authentication").await?;
                        }
                        10 => {
                            let mut mechs = Vec::new();
                            while body.has_remaining() && body[0] != 0 {
                                mechs.push(cstr(&mut body)?);
                            }
                            if !mechs.iter().any(|m| m == sasl::SCRAM_SHA_256) {
                                return Err(auth_err(format!("no supported SASL mechanism in {mechs:?}")));
                            }
                            let pw = password.clone().ok_or_else(|| auth_err("server asks for a password and none was given".into()))?;
                            let s = sasl::ScramSha256::new(&pw, sasl::ChannelBinding::unsupported());
                            frontend::sasl_initial_response(sasl::SCRAM_SHA_256, s.message(), &mut conn.wbuf)
                                .map_err(|e| CaptureError::Protocol(e.to_string()))?;
                            scram = Some(s);
                            conn.flush("authentication").await?;
                        }
                        11 => {
                            let s = scram.as_mut().ok_or_else(|| CaptureError::Protocol("SASL continue without start".into()))?;
                            s.update(&body).map_err(|e| auth_err(e.to_string()))?;
                            frontend::sasl_response(s.message(), &mut conn.wbuf).map_err(|e| CaptureError::Protocol(e.to_string()))?;
                            conn.flush("authentication").await?;
                        }
                        12 => {
                            let s = scram.as_mut().ok_or_else(|| CaptureError::Protocol("SASL final without start".into()))?;
                            s.finish(&body).map_err(|e| auth_err(e.to_string()))?;
                        }
                        other => return Err(auth_err(format!("unsupported authentication method {other}"))),
                    }
                }
                b'E' => {
                    let (code, message) = error_fields(f.body);
                    if code == "28P01" || code == "28000" {
                        return Err(auth_err(message));
                    }
                    return Err(CaptureError::Server { context: "connect".into(), code, message });
                }
                b'S' => {
                    let mut body = f.body;
                    let name = cstr(&mut body)?;
                    let value = cstr(&mut body)?;
                    if name == "server_version" {
                        conn.server_version = parse_version(&value);
                    }
                }
                b'K' | b'N' => {}
                b'Z' => return Ok(conn),
                t => return Err(CaptureError::Protocol(format!("unexpected message {:?} during startup", t as char))),
            }
        }
    }

    async fn flush(&mut self, context: &str) -> Result<(), CaptureError> {
        let buf = self.wbuf.split();
        self.io.write_all(&buf).await.map_err(|e| CaptureError::Disconnected { context: context.into(), reason: e.to_string() })
    }

    /// Bytes of the first buffered message (tag + length + body), once its header is here.
    fn frame_size(&self) -> Option<usize> {
        (self.rbuf.len() >= 5).then(|| 1 + u32::from_be_bytes([self.rbuf[1], self.rbuf[2], self.rbuf[3], self.rbuf[4]]) as usize)
    }

    fn try_frame(&mut self) -> Option<Frame> {
        let size = self.frame_size()?;
        if self.rbuf.len() < size {
            self.rbuf.reserve(size - self.rbuf.len());
            return None;
        }
        let tag = self.rbuf[0];
        let mut frame = self.rbuf.split_to(size);
        frame.advance(5);
        Some(Frame { tag, body: frame.freeze() })
    }

    /// True when a whole message is already buffered (so reading it will not wait).
    pub fn has_buffered_frame(&self) -> bool {
        self.frame_size().is_some_and(|size| self.rbuf.len() >= size)
    }

    /// Reads one backend message (cancel-safe).
    async fn read_frame(&mut self, context: &str) -> Result<Frame, CaptureError> {
        loop {
            if let Some(f) = self.try_frame() {
                return Ok(f);
            }
            let n = self.io.read_buf(&mut self.rbuf).await.map_err(|e| CaptureError::Disconnected { context: context.into(), reason: e.to_string() })?;
            if n == 0 {
                return Err(CaptureError::Disconnected { context: context.into(), reason: format!("{} closed the connection", self.addr) });
            }
        }
    }

    /// Runs a replication command or query and returns its rows as text.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<TextRow>, CaptureError> {
        frontend::query(sql, &mut self.wbuf).map_err(|e| CaptureError::Protocol(e.to_string()))?;
        self.flush(sql).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let f = self.read_frame(sql).await?;
            match f.tag {
                b'D' => {
                    let mut body = f.body;
                    let n = body.get_i16();
                    let mut row = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        let len = body.get_i32();
                        if len < 0 {
                            row.push(None);
                        } else {
                            row.push(Some(String::from_utf8_lossy(&body[..len as usize]).into_owned()));
                            body.advance(len as usize);
                        }
                    }
                    rows.push(row);
                }
                b'E' => {
                    let (code, message) = error_fields(f.body);
                    error = Some(CaptureError::Server { context: sql.into(), code, message });
                }
                b'Z' => return error.map_or(Ok(rows), Err),
                _ => {}
            }
        }
    }

    /// Sends `START_REPLICATION ...` and waits for the CopyBoth response.
    pub async fn start_replication(&mut self, sql: &str) -> Result<(), CaptureError> {
        frontend::query(sql, &mut self.wbuf).map_err(|e| CaptureError::Protocol(e.to_string()))?;
        self.flush(sql).await?;
        loop {
            let f = self.read_frame(sql).await?;
            match f.tag {
                b'W' => return Ok(()),
                b'E' => {
                    let (code, message) = error_fields(f.body);
                    // Drain to ReadyForQuery so the connection stays usable.
                    while self.read_frame(sql).await?.tag != b'Z' {}
                    return Err(CaptureError::Server { context: "START_REPLICATION".into(), code, message });
                }
                b'N' | b'S' => {}
                t => return Err(CaptureError::Protocol(format!("unexpected message {:?} after START_REPLICATION", t as char))),
            }
        }
    }

    /// The next message of the replication stream (cancel-safe). `Ok(None)`: the server
    /// ended the stream (CopyDone).
    pub async fn recv(&mut self) -> Result<Option<ReplicationMessage>, CaptureError> {
        loop {
            let f = self.read_frame("replication stream").await?;
            match f.tag {
                b'd' => {
                    let mut b = f.body;
                    if !b.has_remaining() {
                        return Err(CaptureError::Protocol("empty CopyData".into()));
                    }
                    match b.get_u8() {
                        b'w' if b.remaining() >= 24 => {
                            let wal_start = b.get_u64();
                            let wal_end = b.get_u64();
                            let _ts = b.get_i64();
                            return Ok(Some(ReplicationMessage::XLogData { wal_start, wal_end, data: b }));
                        }
                        b'k' if b.remaining() >= 17 => {
                            let wal_end = b.get_u64();
                            let _ts = b.get_i64();
                            let reply_requested = b.get_u8() == 1;
                            return Ok(Some(ReplicationMessage::Keepalive { wal_end, reply_requested }));
                        }
                        t => return Err(CaptureError::Protocol(format!("unknown replication message {:?}", t as char))),
                    }
                }
                // CopyDone, or the end of the command (the server is shutting down).
                b'c' | b'C' | b'Z' => return Ok(None),
                b'E' => {
                    let (code, message) = error_fields(f.body);
                    return Err(CaptureError::Server { context: "replication stream".into(), code, message });
                }
                b'N' | b'S' => {}
                t => return Err(CaptureError::Protocol(format!("unexpected message {:?} in the replication stream", t as char))),
            }
        }
    }

    /// Sends a standby status update: everything up to `lsn` is written, flushed and applied.
    pub async fn send_status(&mut self, lsn: u64, reply: bool) -> Result<(), CaptureError> {
        let now = pg_epoch_micros();
        let mut msg = Vec::with_capacity(34);
        msg.push(b'r');
        for v in [lsn, lsn, lsn] {
            msg.extend_from_slice(&v.to_be_bytes());
        }
        msg.extend_from_slice(&now.to_be_bytes());
        msg.push(reply as u8);
        frontend::CopyData::new(&msg[..]).map_err(|e| CaptureError::Protocol(e.to_string()))?.write(&mut self.wbuf);
        self.flush("standby status update").await
    }

    /// Ends the stream politely (CopyDone, then Terminate).
    pub async fn close(mut self) {
        frontend::copy_done(&mut self.wbuf);
        frontend::terminate(&mut self.wbuf);
        let _ = self.flush("close").await;
    }
}

fn parse_version(v: &str) -> u32 {
    let mut it = v.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
    let major: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    major * 10000 + minor
}

/// Microseconds since 2000-01-01, Postgres' epoch.
fn pg_epoch_micros() -> i64 {
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    unix.as_micros() as i64 - 946_684_800_000_000
}

/// Converts a Postgres timestamp (µs since 2000-01-01) to ms since the Unix epoch.
pub fn pg_ts_to_unix_ms(ts: i64) -> i64 {
    (ts + 946_684_800_000_000) / 1000
}

/// A Postgres timestamp (µs since 2000-01-01) as µs since the Unix epoch.
pub fn pg_ts_to_unix_us(ts: i64) -> i64 {
    ts + 946_684_800_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn versions_and_errors() {
        assert_eq!(parse_version("15.4 (Debian 15.4-1)"), 150004);
        let mut b = BytesMut::new();
        b.extend_from_slice(b"SERROR\0C42P01\0Mrelation \"x\" does not exist\0\0");
        assert_eq!(error_fields(b.freeze()), ("42P01".into(), "relation \"x\" does not exist".into()));
        assert_eq!(pg_ts_to_unix_ms(0), 946_684_800_000);
    }
}
