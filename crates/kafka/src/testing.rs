//! Test support: a real Kafka-protocol broker, noida-db 0.2.3, in a process of its own on a
//! free loopback port with its own data directory; stopped (and its data removed) on drop.
//! The binary is `$NOIDA_DB`, else the one `scripts/install-deps.sh` installs under
//! `/var/tmp/tensorcdc-tools`, else `noida-db` on the PATH.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running noida-db broker.
pub struct Noida {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// Where the noida-db binary is.
pub fn noida_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NOIDA_DB") {
        return Some(PathBuf::from(p));
    }
    let tools = PathBuf::from("/var/tmp/tensorcdc-tools/venv/lib");
    if let Ok(entries) = std::fs::read_dir(&tools) {
        for e in entries.flatten() {
            let p = e.path().join("site-packages/noida_db/noida-db");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join("noida-db")).find(|p| p.is_file())
}

impl Noida {
    /// Starts a broker on a free port; an error says how to install noida-db when it is missing.
    pub fn start() -> Result<Noida, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        Noida::start_on(port)
    }

    /// Starts a broker on `port`.
    pub fn start_on(port: u16) -> Result<Noida, String> {
        let dir = std::env::temp_dir().join(format!("noida-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let child = Self::spawn(port, &dir)?;
        let mut n = Noida { child, port, dir };
        n.wait_listening()?;
        Ok(n)
    }

    /// The broker's process id (to pause it with SIGSTOP, say).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the broker (SIGKILL) and keeps its data directory, for [`Noida::start_again`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again on the same port and data directory.
    pub fn start_again(&mut self) -> Result<(), String> {
        self.child = Self::spawn(self.port, &self.dir)?;
        self.wait_listening()
    }

    fn spawn(port: u16, dir: &std::path::Path) -> Result<Child, String> {
        let bin = noida_binary().ok_or("noida-db not found: run scripts/install-deps.sh (pip install noida-db==0.2.3) or set NOIDA_DB")?;
        Command::new(&bin)
            .args(["start", "--only", "kafka", "--kafka-port", &port.to_string(), "--data-dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("noida-db exited at start: {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!("noida-db did not listen on port {} within 30 s", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `bootstrap.servers` of this broker.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Noida {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
