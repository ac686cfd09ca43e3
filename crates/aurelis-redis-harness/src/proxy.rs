//! [`TcpProxy`]: a loopback TCP forwarder a test can cut or black-hole, to play a network
//! partition between one client and a server that stays up for everybody else.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::HarnessError;

const PASS: u8 = 0;
const CUT: u8 = 1;
const BLACKHOLE: u8 = 2;
const STOPPING: u8 = 3;

/// How often a forwarding thread looks at the proxy's mode while it waits for data.
const POLL: Duration = Duration::from_millis(20);

struct Shared {
    target: u16,
    mode: AtomicU8,
    conns: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn mode(&self) -> u8 {
        self.mode.load(Ordering::SeqCst)
    }

    fn close_all(&self) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        for conn in conns.drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

/// Forwards connections from its own loopback port to a target port, until told otherwise:
///
/// - [`cut`](TcpProxy::cut): closes every connection and refuses new ones (they are accepted
///   and closed at once), like a partition that resets connections;
/// - [`blackhole`](TcpProxy::blackhole): keeps every connection open but forwards nothing in
///   either direction, new ones included, like a half-open connection or a silent partition;
/// - [`heal`](TcpProxy::heal): forwards again (connections closed meanwhile stay closed).
///
/// Dropping it closes everything. Standard library only: a thread per direction.
///
/// # Examples
///
/// ```
/// use aurelis_redis_harness::{RedisServer, TcpProxy};
/// use std::io::{Read, Write};
///
/// let server = RedisServer::start()?;
/// let proxy = TcpProxy::start(server.port())?;
/// let ping = |port: u16| -> std::io::Result<String> {
///     let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
///     conn.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
///     conn.write_all(b"PING\r\n")?;
///     let mut buf = [0u8; 7];
///     conn.read_exact(&mut buf)?;
///     Ok(String::from_utf8_lossy(&buf).into_owned())
/// };
/// assert_eq!(ping(proxy.port()).unwrap(), "+PONG\r\n");
/// proxy.cut();
/// assert!(ping(proxy.port()).is_err());
/// proxy.heal();
/// assert_eq!(ping(proxy.port()).unwrap(), "+PONG\r\n");
/// # Ok::<(), aurelis_redis_harness::HarnessError>(())
/// ```
pub struct TcpProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.shared.mode() {
            PASS => "pass",
            CUT => "cut",
            BLACKHOLE => "blackhole",
            _ => "stopping",
        };
        f.debug_struct("TcpProxy")
            .field("port", &self.port)
            .field("target", &self.shared.target)
            .field("mode", &mode)
            .finish()
    }
}

impl TcpProxy {
    /// Starts forwarding from a free loopback port to `127.0.0.1:target`.
    ///
    /// # Errors
    ///
    /// When no loopback port can be bound.
    pub fn start(target: u16) -> Result<TcpProxy, HarnessError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| HarnessError::io("cannot bind the proxy's port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| HarnessError::io("cannot read the proxy's port", e))?
            .port();
        let shared =
            Arc::new(Shared { target, mode: AtomicU8::new(PASS), conns: Mutex::new(Vec::new()) });
        let accept_shared = shared.clone();
        let accept = std::thread::spawn(move || accept_loop(listener, accept_shared));
        Ok(TcpProxy { port, shared, accept: Some(accept) })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/` of the proxy's port.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Closes every connection and refuses new ones until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.shared.mode.store(CUT, Ordering::SeqCst);
        self.shared.close_all();
    }

    /// Forwards nothing, keeping connections open, until [`heal`](Self::heal).
    pub fn blackhole(&self) {
        self.shared.mode.store(BLACKHOLE, Ordering::SeqCst);
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.shared.mode.store(PASS, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.mode.store(STOPPING, Ordering::SeqCst);
        self.shared.close_all();
        // Wake the accept loop so it sees the mode.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for incoming in listener.incoming() {
        let mode = shared.mode();
        if mode == STOPPING {
            return;
        }
        let Ok(client) = incoming else { continue };
        if mode == CUT {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, shared.target)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { continue };
        {
            let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
            if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                conns.push(c);
                conns.push(s);
            }
        }
        let up = shared.clone();
        std::thread::spawn(move || forward(client, server, &up));
        let down = shared.clone();
        std::thread::spawn(move || forward(s2, c2, &down));
    }
}

/// Copies `from` into `to` while the proxy passes data; pauses while it black-holes; closes
/// both when either side ends or the proxy cuts.
fn forward(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match shared.mode() {
            PASS => {}
            BLACKHOLE => {
                std::thread::sleep(POLL);
                continue;
            }
            _ => break,
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
