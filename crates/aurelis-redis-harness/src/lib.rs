//! Starts real `redis-server` processes for tests, benches and `cargo xtask`: a standalone
//! server ([`RedisServer`]) or a three-master Redis Cluster ([`RedisCluster`]), each on free
//! loopback ports with temporary directories, no persistence, and killed on drop.
//!
//! It needs `redis-server` (and `redis-cli` for a cluster) on `PATH`. When they are missing,
//! every constructor fails with an error that says how to install them (see
//! [`require_redis`]); tests then fail with that message instead of being skipped.
//!
//! Standard library only: no async runtime, so it works from any test or bench.
//!
//! # Examples
//!
//! ```
//! use aurelis_redis_harness::RedisServer;
//!
//! let mut server = RedisServer::start()?;
//! assert_eq!(server.command(&["PING"])?.as_str(), Some("PONG"));
//! assert!(server.url().starts_with("redis://127.0.0.1:"));
//!
//! server.stop();
//! assert!(server.command(&["PING"]).is_err());
//! server.restart()?; // same port, same directory
//! server.command(&["SET", "k", "v"])?;
//! assert_eq!(server.command(&["GET", "k"])?.as_bytes(), Some(&b"v"[..]));
//! # Ok::<(), aurelis_redis_harness::HarnessError>(())
//! ```
#![forbid(unsafe_code)]

mod proxy;

pub use proxy::TcpProxy;

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How to install Redis, quoted in every "not found" error.
const INSTALL_HINT: &str = "install it with `apt-get install -y redis-server redis-tools` \
     (Debian/Ubuntu) or `brew install redis` (macOS), so that `redis-server` and `redis-cli` \
     are on PATH";

/// How long [`RedisServer::start`] waits for the first `PING` answer by default.
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`RedisCluster::start`] waits for `cluster_state:ok` on every node by default.
const DEFAULT_CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a start is retried on new ports when the chosen port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// Why a server or cluster could not be started or queried.
///
/// # Examples
///
/// ```
/// use std::error::Error as _;
/// use aurelis_redis_harness::RedisServer;
///
/// let mut server = RedisServer::start()?;
/// let port = server.port();
/// server.stop();
/// let err = server.command(&["PING"]).unwrap_err();
/// assert_eq!(err.message(), format!("cannot connect to 127.0.0.1:{port}"));
/// // The I/O error is the source, and `Display` shows it after the message.
/// let source = err.source().expect("an I/O error").to_string();
/// assert_eq!(err.to_string(), format!("{}: {source}", err.message()));
/// # Ok::<(), aurelis_redis_harness::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct HarnessError {
    message: String,
    source: Option<std::io::Error>,
}

impl HarnessError {
    fn new(message: impl Into<String>) -> Self {
        HarnessError { message: message.into(), source: None }
    }

    fn io(message: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError { message: message.into(), source: Some(source) }
    }

    /// The message, without the source.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Checks that `redis-server` and `redis-cli` are on `PATH`.
///
/// # Examples
///
/// ```
/// use aurelis_redis_harness::require_redis;
///
/// // The harness's own tests need Redis, so it is installed wherever they run.
/// assert!(require_redis().is_ok());
///
/// // Where it is not (here: nothing on PATH), the error says how to install it.
/// std::env::set_var("PATH", "");
/// let err = require_redis().unwrap_err();
/// assert!(err.message().starts_with("`redis-server` was not found on PATH"));
/// assert!(err.message().contains("apt-get install -y redis-server redis-tools"));
/// ```
///
/// # Errors
///
/// A [`HarnessError`] naming the missing binary and the install command
/// (`apt-get install -y redis-server redis-tools` on Debian/Ubuntu, `brew install redis` on
/// macOS).
pub fn require_redis() -> Result<(), HarnessError> {
    find_binary("redis-server")?;
    find_binary("redis-cli")?;
    Ok(())
}

fn find_binary(name: &str) -> Result<PathBuf, HarnessError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| HarnessError::new(format!("`{name}` was not found on PATH; {INSTALL_HINT}")))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// A loopback TCP port that was free a moment ago (bind `127.0.0.1:0`, read the port, drop
/// the listener), for extra listeners such as `tls-port`.
///
/// # Examples
///
/// ```
/// let port = aurelis_redis_harness::free_port()?;
/// assert!(port > 0);
/// # Ok::<(), aurelis_redis_harness::HarnessError>(())
/// ```
///
/// # Errors
///
/// When no socket can be bound on `127.0.0.1`.
pub fn free_port() -> Result<u16, HarnessError> {
    pick_port(false)
}

/// A port that was free a moment ago: bind `127.0.0.1:0`, read the port, drop the listener.
/// With `cluster_bus`, the port + 10000 (Redis Cluster's bus port) must be free as well.
fn pick_port(cluster_bus: bool) -> Result<u16, HarnessError> {
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| HarnessError::io("cannot bind 127.0.0.1:0 to find a free port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| HarnessError::io("cannot read the port of a bound socket", e))?
            .port();
        if !cluster_bus {
            return Ok(port);
        }
        if port <= 55535 && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10000)).is_ok() {
            return Ok(port);
        }
    }
    Err(HarnessError::new("found no free port pair for a cluster node after 100 tries"))
}

/// A reply to [`RedisServer::command`], as RESP2 gives it.
///
/// # Examples
///
/// ```
/// use aurelis_redis_harness::Reply;
/// let r = Reply::Integer(3);
/// assert_eq!(r.as_int(), Some(3));
/// assert_eq!(Reply::Status("OK".into()).as_str(), Some("OK"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$n` bulk string; `None` for the nil bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*n` array; `None` for the nil array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a status reply, or of a bulk string that is valid UTF-8.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_redis_harness::Reply;
    /// assert_eq!(Reply::Bulk(Some(b"hi".to_vec())).as_str(), Some("hi"));
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Reply::Status(s) => Some(s),
            Reply::Bulk(Some(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The bytes of a bulk string or a status reply.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_redis_harness::Reply;
    /// assert_eq!(Reply::Bulk(None).as_bytes(), None);
    /// ```
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Status(s) => Some(s.as_bytes()),
            Reply::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// The value of an integer reply.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aurelis_redis_harness::Reply::Integer(-1).as_int(), Some(-1));
    /// ```
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

/// Sends one command over a fresh connection and reads the reply (blocking, bounded).
fn raw_command<A: AsRef<[u8]>>(
    port: u16,
    password: Option<&str>,
    args: &[A],
    timeout: Duration,
) -> Result<Reply, HarnessError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| HarnessError::io(format!("cannot connect to 127.0.0.1:{port}"), e))?;
    let io_err = |e| HarnessError::io(format!("I/O error talking to 127.0.0.1:{port}"), e);
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().map_err(io_err)?;
    let mut reader = BufReader::new(stream);
    if let Some(password) = password {
        writer.write_all(&encode_command(&["AUTH", password])).map_err(io_err)?;
        if let Reply::Error(e) = read_reply(&mut reader).map_err(io_err)? {
            return Err(HarnessError::new(format!("AUTH failed on 127.0.0.1:{port}: {e}")));
        }
    }
    writer.write_all(&encode_command(args)).map_err(io_err)?;
    read_reply(&mut reader).map_err(io_err)
}

fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_reply(reader: &mut impl BufRead) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a full reply",
        ));
    }
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let number = || text.parse::<i64>().map_err(|_| bad("bad length in reply"));
    Ok(match line[0] {
        b'+' => Reply::Status(text),
        b'-' => Reply::Error(text),
        b':' => Reply::Integer(number()?),
        b'$' => {
            let n = number()?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0u8; n as usize + 2];
                reader.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(buf))
            }
        }
        b'*' => {
            let n = number()?;
            if n < 0 {
                Reply::Array(None)
            } else {
                let items =
                    (0..n).map(|_| read_reply(reader)).collect::<std::io::Result<Vec<_>>>()?;
                Reply::Array(Some(items))
            }
        }
        _ => return Err(bad("unknown reply type")),
    })
}

/// Settings of a [`RedisServer`] before it starts.
///
/// # Examples
///
/// ```
/// use aurelis_redis_harness::RedisServer;
///
/// let server = RedisServer::builder().requirepass("s3cret").start()?;
/// assert_eq!(server.password(), Some("s3cret"));
/// assert!(server.url().contains(":s3cret@"));
/// assert_eq!(server.command(&["PING"])?.as_str(), Some("PONG")); // authenticates first
/// # Ok::<(), aurelis_redis_harness::HarnessError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedisServerBuilder {
    password: Option<String>,
    port: Option<u16>,
    options: Vec<(String, String)>,
    startup_timeout: Duration,
    cluster: bool,
}

impl Default for RedisServerBuilder {
    fn default() -> Self {
        RedisServerBuilder {
            password: None,
            port: None,
            options: Vec::new(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            cluster: false,
        }
    }
}

impl RedisServerBuilder {
    /// Requires clients to authenticate with `password` (`--requirepass`).
    pub fn requirepass(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Listens on `port` (reserved beforehand with [`free_port`], so a client can be pointed at
    /// it before the server starts) instead of a free port picked at start.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Passes `--name value` to `redis-server` (e.g. `option("maxmemory", "64mb")`); it
    /// overrides the harness's own settings (`option("appendonly", "yes")` turns persistence
    /// on, so a [`RedisServer::restart`] keeps the data).
    pub fn option(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.push((name.into(), value.into()));
        self
    }

    /// How long to wait for the server to answer `PING` (default 10 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts the server on a free port.
    ///
    /// # Errors
    ///
    /// When `redis-server` is not on `PATH` (the message says how to install it), when no
    /// port is free, or when the server does not answer `PING` in time (the message includes
    /// the server's log).
    pub fn start(self) -> Result<RedisServer, HarnessError> {
        let binary = find_binary("redis-server")?;
        let dir = tempfile::Builder::new()
            .prefix("aurelis-redis-")
            .tempdir()
            .map_err(|e| HarnessError::io("cannot create a temporary directory", e))?;
        let mut last_error = None;
        let attempts = if self.port.is_some() { 1 } else { PORT_ATTEMPTS };
        for _ in 0..attempts {
            let port = match self.port {
                Some(port) => port,
                None => pick_port(self.cluster)?,
            };
            let mut server = RedisServer {
                binary: binary.clone(),
                port,
                dir_path: dir.path().to_path_buf(),
                dir: None,
                settings: self.clone(),
                child: None,
            };
            match server.spawn_and_wait() {
                Ok(()) => {
                    server.dir = Some(dir);
                    return Ok(server);
                }
                Err(e) => {
                    let port_taken = e.message.contains("Address already in use");
                    last_error = Some(e);
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| HarnessError::new("redis-server did not start")))
    }
}

/// A `redis-server` child process on a free loopback port, killed when dropped.
///
/// It runs with `--save "" --appendonly no` (no persistence) in its own temporary directory,
/// bound to `127.0.0.1` only.
///
/// # Examples
///
/// ```
/// let server = aurelis_redis_harness::RedisServer::start()?;
/// assert_eq!(server.url(), format!("redis://127.0.0.1:{}/", server.port()));
/// # Ok::<(), aurelis_redis_harness::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir_path: PathBuf,
    dir: Option<tempfile::TempDir>,
    settings: RedisServerBuilder,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with default settings on a free port and waits until it answers `PING`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut server = aurelis_redis_harness::RedisServer::start()?;
    /// assert!(server.is_running());
    /// # Ok::<(), aurelis_redis_harness::HarnessError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`RedisServerBuilder::start`].
    pub fn start() -> Result<RedisServer, HarnessError> {
        RedisServerBuilder::default().start()
    }

    /// Settings for a server that is not started yet.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// A default server shared by every caller in this process for as long as one of them
    /// holds it: the first caller starts it, the last one to drop its `Arc` stops it. Tests
    /// sharing it must keep to their own keys (a key prefix each).
    ///
    /// Unlike a server kept in a `static`, which is never dropped, this one does not outlive
    /// the test process.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_redis_harness::RedisServer;
    /// let a = RedisServer::shared()?;
    /// let b = RedisServer::shared()?;
    /// assert_eq!(a.port(), b.port());
    /// # Ok::<(), aurelis_redis_harness::HarnessError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`RedisServer::start`].
    pub fn shared() -> Result<Arc<RedisServer>, HarnessError> {
        static SHARED: Mutex<Weak<RedisServer>> = Mutex::new(Weak::new());
        shared(&SHARED, RedisServer::start)
    }

    /// The TCP port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password clients must send, when the server requires one.
    pub fn password(&self) -> Option<&str> {
        self.settings.password.as_deref()
    }

    /// `redis://127.0.0.1:PORT/`, or `redis://:PASSWORD@127.0.0.1:PORT/` with a password.
    pub fn url(&self) -> String {
        match self.password() {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// `redis://127.0.0.1:PORT/` without the password, whether or not the server needs one.
    pub fn url_without_password(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's working directory (a temporary directory removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// Whether the child process is alive.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Runs one command on a fresh connection (authenticating first when the server has a
    /// password) and returns the reply. A Redis error reply is `Ok(Reply::Error(..))`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_redis_harness::{RedisServer, Reply};
    /// let server = RedisServer::start()?;
    /// server.command(&["SET", "a", "1"])?;
    /// assert_eq!(server.command(&["DBSIZE"])?, Reply::Integer(1));
    /// // Arguments are bytes, so anything can be sent:
    /// server.command(&[&b"SET"[..], b"bin", b"\xff\x00"])?;
    /// # Ok::<(), aurelis_redis_harness::HarnessError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or does not answer within 5 s.
    pub fn command<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Reply, HarnessError> {
        raw_command(self.port, self.password(), args, Duration::from_secs(5))
    }

    /// Kills the server (SIGKILL) and waits for it to exit; the port and directory are kept,
    /// so [`RedisServer::restart`] brings it back on the same address. Does nothing when it
    /// is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (stopping it first if it runs), for outage
    /// tests. Data is not kept, unless persistence was turned on with
    /// [`RedisServerBuilder::option`].
    ///
    /// # Errors
    ///
    /// When the port has been taken by another process meanwhile, or the server does not
    /// answer `PING` in time (the message includes the server's log).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        // The port was just released by our own process; another process may grab it in
        // between, in which case this fails with the log saying "Address already in use".
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                Err(e)
                    if e.message.contains("Address already in use")
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--port".to_owned(),
            self.port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
            "--save".to_owned(),
            String::new(),
            "--appendonly".to_owned(),
            "no".to_owned(),
            "--dir".to_owned(),
            self.dir_path.display().to_string(),
            "--daemonize".to_owned(),
            "no".to_owned(),
            "--logfile".to_owned(),
            self.log_path().display().to_string(),
        ];
        if let Some(password) = &self.settings.password {
            args.extend(["--requirepass".to_owned(), password.clone()]);
            if self.settings.cluster {
                args.extend(["--masterauth".to_owned(), password.clone()]);
            }
        }
        if self.settings.cluster {
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ]
                .map(str::to_owned),
            );
        }
        for (name, value) in &self.settings.options {
            args.push(format!("--{name}"));
            args.push(value.clone());
        }
        args
    }

    fn log_path(&self) -> PathBuf {
        self.dir_path.join("redis.log")
    }

    fn log(&self) -> String {
        let mut out = String::new();
        for name in ["redis.log", "stdout.log"] {
            if let Ok(text) = std::fs::read_to_string(self.dir_path.join(name)) {
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                for line in tail.into_iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        if out.is_empty() {
            out.push_str("(no log written)\n");
        }
        out
    }

    fn spawn_and_wait(&mut self) -> Result<(), HarnessError> {
        let output = File::create(self.dir_path.join("stdout.log"))
            .map_err(|e| HarnessError::io("cannot create the server's output file", e))?;
        let output_err = output
            .try_clone()
            .map_err(|e| HarnessError::io("cannot duplicate the server's output file", e))?;
        let child = Command::new(&self.binary)
            .args(self.args())
            .current_dir(&self.dir_path)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(output_err)
            .spawn()
            .map_err(|e| {
                HarnessError::io(format!("cannot run {}; {INSTALL_HINT}", self.binary.display()), e)
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + self.settings.startup_timeout;
        loop {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(HarnessError::new(format!(
                        "redis-server on port {} exited during startup ({status}); log:\n{}",
                        self.port,
                        self.log()
                    )));
                }
            }
            // NOAUTH or LOADING replies mean the server listens; NOAUTH is ready, LOADING not.
            let ready = match raw_command(self.port, None, &["PING"], Duration::from_millis(500)) {
                Ok(Reply::Status(s)) => s == "PONG",
                Ok(Reply::Error(e)) => e.starts_with("NOAUTH"),
                _ => false,
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(HarnessError::new(format!(
                    "redis-server on port {} did not answer PING within {:?}; log:\n{}",
                    self.port,
                    self.settings.startup_timeout,
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Settings of a [`RedisCluster`] before it starts.
///
/// # Examples
///
/// ```
/// use aurelis_redis_harness::Reply;
///
/// let cluster = aurelis_redis_harness::RedisCluster::builder().requirepass("pw").start()?;
/// for node in cluster.nodes() {
///     assert!(node.url().starts_with("redis://:pw@127.0.0.1:"));
///     assert_eq!(node.command(&["PING"])?, Reply::Status("PONG".into())); // authenticates
/// }
/// # Ok::<(), aurelis_redis_harness::HarnessError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedisClusterBuilder {
    password: Option<String>,
    timeout: Duration,
}

impl Default for RedisClusterBuilder {
    fn default() -> Self {
        RedisClusterBuilder { password: None, timeout: DEFAULT_CLUSTER_TIMEOUT }
    }
}

impl RedisClusterBuilder {
    /// Requires clients (and the nodes among themselves) to authenticate with `password`.
    pub fn requirepass(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// How long to wait for `cluster_state:ok` on every node (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts three masters with `cluster-enabled yes`, joins them with
    /// `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes` and waits until
    /// every node reports `cluster_state:ok`.
    ///
    /// # Errors
    ///
    /// When `redis-server` or `redis-cli` is missing (the message says how to install them),
    /// a node does not start, `redis-cli --cluster create` fails (its output is included), or
    /// the cluster is not ok in time.
    pub fn start(self) -> Result<RedisCluster, HarnessError> {
        let cli = find_binary("redis-cli")?;
        let mut nodes = Vec::with_capacity(3);
        for _ in 0..3 {
            let mut builder = RedisServerBuilder { cluster: true, ..RedisServerBuilder::default() };
            if let Some(password) = &self.password {
                builder = builder.requirepass(password.clone());
            }
            nodes.push(builder.start()?);
        }
        let mut cmd = Command::new(&cli);
        cmd.arg("--cluster").arg("create");
        for node in &nodes {
            cmd.arg(format!("127.0.0.1:{}", node.port()));
        }
        cmd.args(["--cluster-replicas", "0", "--cluster-yes"]);
        if let Some(password) = &self.password {
            cmd.arg("-a").arg(password).arg("--no-auth-warning");
        }
        let output = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| HarnessError::io(format!("cannot run {}", cli.display()), e))?;
        if !output.status.success() {
            return Err(HarnessError::new(format!(
                "`redis-cli --cluster create` failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ok(self.timeout)?;
        Ok(cluster)
    }
}

/// A three-master Redis Cluster (no replicas) on free loopback ports, stopped when dropped.
///
/// # Examples
///
/// ```
/// use aurelis_redis_harness::RedisCluster;
///
/// let cluster = RedisCluster::start()?;
/// assert_eq!(cluster.urls().len(), 3);
/// for node in cluster.nodes() {
///     let info = node.command(&["CLUSTER", "INFO"])?;
///     assert!(info.as_str().unwrap().contains("cluster_state:ok"));
/// }
/// # Ok::<(), aurelis_redis_harness::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts a cluster with default settings; see [`RedisClusterBuilder::start`].
    ///
    /// # Errors
    ///
    /// As [`RedisClusterBuilder::start`].
    pub fn start() -> Result<RedisCluster, HarnessError> {
        RedisClusterBuilder::default().start()
    }

    /// Settings for a cluster that is not started yet.
    pub fn builder() -> RedisClusterBuilder {
        RedisClusterBuilder::default()
    }

    /// A default cluster shared by every caller in this process for as long as one of them
    /// holds it: the first caller starts it, the last one to drop its `Arc` stops it. Tests
    /// sharing it must keep to their own keys (a key prefix each).
    ///
    /// # Errors
    ///
    /// As [`RedisClusterBuilder::start`].
    pub fn shared() -> Result<Arc<RedisCluster>, HarnessError> {
        static SHARED: Mutex<Weak<RedisCluster>> = Mutex::new(Weak::new());
        shared(&SHARED, RedisCluster::start)
    }

    /// The URL of every node (`redis://127.0.0.1:PORT/`, with the password when there is one).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes (all masters).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes, to stop or restart one of them.
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// Waits until every running node reports `cluster_state:ok` and knows every node.
    ///
    /// # Errors
    ///
    /// When that does not happen within `timeout`; the message has the last `CLUSTER INFO`.
    pub fn wait_ok(&self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        let expected_nodes = format!("cluster_known_nodes:{}", self.nodes.len());
        loop {
            let mut last = String::new();
            let all_ok = self.nodes.iter().all(|node| match node.command(&["CLUSTER", "INFO"]) {
                Ok(reply) => {
                    let text = reply.as_str().unwrap_or_default().to_owned();
                    let ok = text.contains("cluster_state:ok")
                        && text.contains("cluster_slots_ok:16384")
                        && text.contains(&expected_nodes);
                    if !ok {
                        last = format!("node {}: {text}", node.port());
                    }
                    ok
                }
                Err(e) => {
                    last = format!("node {}: {e}", node.port());
                    false
                }
            });
            if all_ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::new(format!(
                    "the cluster was not ok within {timeout:?}; last CLUSTER INFO of {last}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The live value in `slot`, or a new one from `start` (the lock is held while it starts, so
/// concurrent callers wait for the same one).
fn shared<T>(
    slot: &Mutex<Weak<T>>,
    start: impl FnOnce() -> Result<T, HarnessError>,
) -> Result<Arc<T>, HarnessError> {
    let mut current = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(live) = current.upgrade() {
        return Ok(live);
    }
    let fresh = Arc::new(start()?);
    *current = Arc::downgrade(&fresh);
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ping_restart_on_same_port() {
        let mut server = RedisServer::start().expect("start");
        assert_eq!(server.command(&["PING"]).expect("ping"), Reply::Status("PONG".into()));
        let port = server.port();
        server.command(&["SET", "k", "v"]).expect("set");

        server.stop();
        assert!(!server.is_running());
        assert!(server.command(&["PING"]).is_err(), "a stopped server must not answer");

        server.restart().expect("restart");
        assert_eq!(server.port(), port);
        assert!(server.is_running());
        assert_eq!(server.command(&["PING"]).expect("ping").as_str(), Some("PONG"));
        // No persistence: the data is gone.
        assert_eq!(server.command(&["GET", "k"]).expect("get"), Reply::Bulk(None));
    }

    #[test]
    fn password_is_required_and_sent() {
        let server = RedisServer::builder().requirepass("pw").start().expect("start");
        assert_eq!(server.command(&["PING"]).expect("ping").as_str(), Some("PONG"));
        let anonymous =
            raw_command(server.port(), None, &["PING"], Duration::from_secs(2)).expect("reply");
        assert!(matches!(anonymous, Reply::Error(e) if e.starts_with("NOAUTH")));
        assert_eq!(server.url(), format!("redis://:pw@127.0.0.1:{}/", server.port()));
    }

    #[test]
    fn drop_kills_the_server() {
        let server = RedisServer::start().expect("start");
        let port = server.port();
        drop(server);
        assert!(raw_command(port, None, &["PING"], Duration::from_millis(500)).is_err());
    }

    #[test]
    fn bad_option_fails_with_the_log() {
        let err = RedisServer::builder()
            .option("no-such-option", "1")
            .start()
            .expect_err("must not start");
        assert!(err.to_string().contains("exited during startup"), "{err}");
        assert!(err.to_string().contains("no-such-option"), "log missing in: {err}");
    }

    #[test]
    fn missing_binary_says_how_to_install() {
        let err = find_binary("redis-server-that-does-not-exist").expect_err("missing");
        let msg = err.to_string();
        assert!(msg.contains("apt-get install -y redis-server redis-tools"), "{msg}");
        assert!(msg.contains("brew install redis"), "{msg}");
    }

    #[test]
    fn resp_round_trip() {
        let encoded = encode_command(&["SET", "k", ""]);
        assert_eq!(encoded, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let mut input: &[u8] = b"*3\r\n:1\r\n$-1\r\n$2\r\nab\r\n";
        assert_eq!(
            read_reply(&mut input).expect("parse"),
            Reply::Array(Some(vec![
                Reply::Integer(1),
                Reply::Bulk(None),
                Reply::Bulk(Some(b"ab".to_vec()))
            ]))
        );
    }

    #[test]
    fn cluster_of_three_masters() {
        let cluster = RedisCluster::start().expect("cluster");
        assert_eq!(cluster.nodes().len(), 3);
        assert_eq!(cluster.urls().len(), 3);
        for node in cluster.nodes() {
            let info = node.command(&["CLUSTER", "INFO"]).expect("info");
            assert!(info.as_str().expect("text").contains("cluster_state:ok"));
        }
    }
}
