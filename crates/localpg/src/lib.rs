//! Private PostgreSQL clusters started from the installed server binaries.
//!
//! [`LocalPg::start`] finds the binaries (`$TENSORCDC_PG_BIN`, then `pg_config --bindir`,
//! then the newest `/usr/lib/postgresql/<ver>/bin`), runs `initdb` (as user `postgres` when
//! the process is root, since `initdb` refuses root), and starts the server with
//! `wal_level=logical` on a free port of 127.0.0.1 with its socket in the data directory.
//! Dropping the handle stops the server (`pg_ctl stop -m fast`) and removes the data
//! directory unless it was kept. Tests and the demo use it; nothing here is global.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Errors starting or using a private cluster.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error("PostgreSQL server binaries not found (looked in $TENSORCDC_PG_BIN, `pg_config --bindir` and /usr/lib/postgresql/*/bin); install them with `apt-get install postgresql` (package postgresql-15 on Debian 12)")]
    NotInstalled,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// How to start a cluster.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Data directory; a fresh temporary one when `None`.
    pub data_dir: Option<PathBuf>,
    /// Keep the data directory when the handle is dropped.
    pub keep: bool,
    /// Password of the `postgres` superuser; with one, TCP connections must authenticate
    /// (scram-sha-256), without one they are trusted.
    pub password: Option<String>,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
    /// Turn `fsync` off (faster, for throwaway clusters).
    pub no_fsync: bool,
    /// TLS: the server's certificate and key (PEM files), copied into the data directory;
    /// the server starts with `ssl = on`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The whole `pg_hba.conf` (for example `hostssl` lines only).
    pub hba: Option<String>,
}

/// A running private cluster. Stops on drop.
#[derive(Debug)]
pub struct LocalPg {
    bin: PathBuf,
    data_dir: PathBuf,
    port: u16,
    keep: bool,
    password: Option<String>,
    running: bool,
    root: bool,
}

fn run(what: &str, cmd: &mut Command) -> Result<Output, LocalPgError> {
    let out = cmd.output().map_err(|e| LocalPgError::Command { what: what.into(), detail: e.to_string() })?;
    if !out.status.success() {
        return Err(LocalPgError::Command {
            what: what.into(),
            detail: format!("{}: {}{}", out.status, String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout)),
        });
    }
    Ok(out)
}

/// Finds the directory of the server binaries.
pub fn find_bin_dir() -> Result<PathBuf, LocalPgError> {
    let has_initdb = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(d) = std::env::var_os("TENSORCDC_PG_BIN").map(PathBuf::from) {
        if has_initdb(&d) {
            return Ok(d);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_initdb(&d) {
            return Ok(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, d)| has_initdb(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d).ok_or(LocalPgError::NotInstalled)
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(54329)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Mode 0600, owned by the server's user (the server refuses a key others can read).
fn set_private(path: &Path, root: bool) -> Result<(), LocalPgError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| LocalPgError::Io { path: path.into(), source: e })?;
    if root {
        run("chown", Command::new("chown").arg("postgres:postgres").arg(path))?;
    }
    Ok(())
}

impl LocalPg {
    /// Creates (if needed) and starts a cluster.
    pub fn start(opts: Options) -> Result<LocalPg, LocalPgError> {
        let bin = find_bin_dir()?;
        let root = is_root();
        let data_dir = match &opts.data_dir {
            Some(d) => d.clone(),
            None => std::env::temp_dir().join(format!("tensorcdc-pg-{}-{}", std::process::id(), free_port())),
        };
        let io = |e| LocalPgError::Io { path: data_dir.clone(), source: e };
        let fresh = !data_dir.join("PG_VERSION").exists();
        let as_owner = |program: &Path| -> Command {
            if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            }
        };
        if fresh {
            std::fs::create_dir_all(&data_dir).map_err(io)?;
            if root {
                run("chown data directory", Command::new("chown").args(["-R", "postgres:postgres"]).arg(&data_dir))?;
            }
            let mut c = as_owner(&bin.join("initdb"));
            c.arg("-D").arg(&data_dir).args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--auth-local=trust"]);
            let pwfile = data_dir.with_extension("pw");
            if let Some(pw) = &opts.password {
                std::fs::write(&pwfile, pw).map_err(io)?;
                if root {
                    run("chown password file", Command::new("chown").arg("postgres").arg(&pwfile))?;
                }
                c.arg("--auth-host=scram-sha-256").arg(format!("--pwfile={}", pwfile.display()));
            } else {
                c.arg("--auth-host=trust");
            }
            let r = run("initdb", &mut c);
            let _ = std::fs::remove_file(&pwfile);
            r?;
        }
        let port = free_port();
        let mut settings = vec![
            ("listen_addresses".to_string(), "'127.0.0.1'".to_string()),
            ("port".into(), port.to_string()),
            ("unix_socket_directories".into(), format!("'{}'", data_dir.display())),
            ("wal_level".into(), "logical".into()),
            ("max_wal_senders".into(), "20".into()),
            ("max_replication_slots".into(), "20".into()),
            ("max_connections".into(), "100".into()),
        ];
        if let Some((cert, key)) = &opts.tls {
            for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
                let dest = data_dir.join(to);
                std::fs::copy(from, &dest).map_err(|e| LocalPgError::Io { path: from.clone(), source: e })?;
                set_private(&dest, root)?;
            }
            settings.extend([
                ("ssl".to_string(), "on".to_string()),
                ("ssl_cert_file".into(), "'server.crt'".into()),
                ("ssl_key_file".into(), "'server.key'".into()),
            ]);
        }
        if let Some(hba) = &opts.hba {
            let dest = data_dir.join("pg_hba.conf");
            std::fs::write(&dest, hba).map_err(io)?;
            set_private(&dest, root)?;
        }
        if opts.no_fsync {
            settings.push(("fsync".into(), "off".into()));
            settings.push(("full_page_writes".into(), "off".into()));
        }
        settings.extend(opts.settings.iter().cloned());
        // Settings live in an included file so a restart (pg_ctl start) keeps them.
        let conf: String = settings.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        std::fs::write(data_dir.join("tensorcdc.conf"), conf).map_err(io)?;
        let main_conf = data_dir.join("postgresql.conf");
        let text = std::fs::read_to_string(&main_conf).map_err(io)?;
        if !text.contains("include_if_exists 'tensorcdc.conf'") {
            std::fs::write(&main_conf, format!("{text}\ninclude_if_exists 'tensorcdc.conf'\n")).map_err(io)?;
        }
        let mut pg = LocalPg { bin, data_dir, port, keep: opts.keep || (opts.data_dir.is_some() && !fresh), password: opts.password, running: false, root };
        pg.start_server()?;
        Ok(pg)
    }

    fn pg_ctl(&self) -> Command {
        let program = self.bin.join("pg_ctl");
        let mut c = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.arg("-D").arg(&self.data_dir);
        c
    }

    fn start_server(&mut self) -> Result<(), LocalPgError> {
        let log = self.data_dir.join("server.log");
        if let Err(e) = run("pg_ctl start", self.pg_ctl().args(["start", "-w", "-t", "60", "-l"]).arg(&log)) {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(LocalPgError::Command { what: "pg_ctl start".into(), detail: format!("{e}\nserver log:\n{tail}") });
        }
        self.running = true;
        Ok(())
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory of the server binaries (`psql`, `pg_recvlogical`, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// A connection URL for database `db` as user `postgres`.
    pub fn url(&self, db: &str) -> String {
        match &self.password {
            Some(pw) => format!("postgres://postgres:{pw}@127.0.0.1:{}/{db}", self.port),
            None => format!("postgres://postgres@127.0.0.1:{}/{db}", self.port),
        }
    }

    /// A libpq key=value connection string for `db` (what tokio-postgres also accepts).
    pub fn conninfo(&self, db: &str) -> String {
        let mut s = format!("host=127.0.0.1 port={} user=postgres dbname={db}", self.port);
        if let Some(pw) = &self.password {
            s.push_str(&format!(" password={pw}"));
        }
        s
    }

    /// Runs `psql` against `db` with extra arguments (`-v ON_ERROR_STOP=1` is always set).
    pub fn psql(&self, db: &str, args: &[&str]) -> Result<String, LocalPgError> {
        let out = run("psql", Command::new(self.bin.join("psql")).arg(self.url(db)).args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates a database.
    pub fn create_db(&self, db: &str) -> Result<(), LocalPgError> {
        self.psql("postgres", &["-c", &format!("CREATE DATABASE \"{db}\"")]).map(|_| ())
    }

    /// Stops the server (fast shutdown). Start it again with [`LocalPg::restart`].
    pub fn stop(&mut self) -> Result<(), LocalPgError> {
        self.stop_mode("fast")
    }

    /// Stops the server with `pg_ctl stop -m MODE` (smart, fast or immediate: a crash, with
    /// recovery at the next start).
    pub fn stop_mode(&mut self, mode: &str) -> Result<(), LocalPgError> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        run("pg_ctl stop", self.pg_ctl().args(["stop", "-w", "-m", mode])).map(|_| ())
    }

    /// Stops (if running) and starts the server again on the same port.
    pub fn restart(&mut self) -> Result<(), LocalPgError> {
        self.restart_mode("fast")
    }

    /// `pg_ctl stop -m MODE`, then a start on the same port.
    pub fn restart_mode(&mut self, mode: &str) -> Result<(), LocalPgError> {
        self.stop_mode(mode)?;
        self.start_server()
    }

    /// The postmaster's process id (first line of `postmaster.pid`).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
    }
}

impl Drop for LocalPg {
    fn drop(&mut self) {
        let _ = self.stop();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}
