//! The control socket server.
//!
//! Contract:
//! - [`bind`] makes the socket file: parent directory created when missing, a live daemon
//!   already listening is an error, a stale socket left by a killed daemon is replaced, and
//!   anything that is not a socket is never deleted. The returned [`SocketGuard`] removes the
//!   socket file again when dropped (a clean exit), unless another daemon has replaced it.
//! - [`serve`] accepts connections until `shutdown` completes. The socket is open to every
//!   local user, so a connection's peer is judged right after `accept`, before anything is read
//!   from it and before it counts against any limit: its kernel credentials, then its groups
//!   ([`super::auth`]). A refused peer reads its refusal (a hello reply with an error) and is
//!   closed at once; it never holds a place. Places (`super::admission`): at most
//!   [`MAX_CONNECTIONS`] served at once, of which the last [`ADMIN_RESERVE`] are kept for root
//!   and the admin group, and at most [`MAX_PER_UID`] per uid without admin access; so no reader
//!   or stranger can keep root out. A peer turned away for lack of room reads one error line
//!   saying so. Telling refused and turned-away peers why is bounded too ([`MAX_TELLING`]);
//!   beyond that a connection is closed without a word.
//! - A served connection: a [`Hello`](super::protocol::Hello) exchange (a protocol mismatch is
//!   answered in the hello reply, then the connection closes), then one [`Response`] per request
//!   line, in order. Requests are checked against the peer's [`Access`] before the [`Backend`]
//!   sees them.
//! - Budgets: the hello must arrive within [`HELLO_TIMEOUT`] and fit in [`HELLO_MAX_LINE`]
//!   bytes (a longer one closes the connection without a word); a request line may be
//!   [`ADMIN_MAX_LINE`] bytes from an admin (an `import` carries a file) and [`READ_MAX_LINE`]
//!   from a reader; a longer line is answered with a `bad_request` error that says so, and the
//!   connection closes. A connection silent for [`IDLE_TIMEOUT`] is closed. A line buffer that a
//!   large request grew is given back after that request, so an open connection keeps no more
//!   than [`KEEP_BUFFER`] bytes between requests, and nothing once closed.
//! - On shutdown no new connection is accepted, idle connections close at once, and requests
//!   already being handled finish within [`DRAIN_DEADLINE`].
//! - Logs name peers and request names, never request or response payloads. What a peer can
//!   make the daemon log about its connections is limited to one line per uid per
//!   [`LOG_INTERVAL`], the next line saying how many were left out.

use std::fmt;
use std::fs;
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use log::{Level, debug, warn};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::Backend;
use super::admission::{Admission, Busy, Checking, Quotas, Slot};
use super::auth::{AccessPolicy, PeerCredentials};
use super::protocol::{
    Access, ErrorCode, HelloReply, HelloReplyBody, PROTOCOL_VERSION, Request, Response,
};
use crate::log_limit::{LogLimit, left_out};

/// Connections served at once, all peers together; more are turned away with one error line.
pub const MAX_CONNECTIONS: usize = 64;
/// Of [`MAX_CONNECTIONS`], the places only root and the admin group may take: readers and
/// strangers can never take the last ones, so root can always get in.
pub const ADMIN_RESERVE: usize = 16;
/// Connections one uid without admin access may hold at once, being checked or served. The
/// CLI uses one connection per command; eight leaves room for a few scripts in parallel.
pub const MAX_PER_UID: usize = 8;
/// Connections whose peer's groups are being looked up at once (reading `/proc`, and the group
/// database, which may ask a directory server). Root needs no lookup and is not counted.
pub const MAX_CHECKING: usize = 32;
/// Refused or turned-away peers being told why at once (each for at most a second); beyond
/// this, such a connection is closed without a word.
pub const MAX_TELLING: usize = 16;
/// A connection that sends nothing for this long is closed. The CLI sends its request right
/// after the hello; only a client that has nothing to say waits this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The hello must arrive within this time after connecting.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest hello line: a hello is under 200 bytes.
pub const HELLO_MAX_LINE: usize = 64 * 1024;
/// Longest request line from a peer with read access: what a reader may ask (`status`,
/// `show` with an id, …) fits in a few hundred bytes.
pub const READ_MAX_LINE: usize = 64 * 1024;
/// Longest request line from an admin: an `import` carries the file in base64, and a file
/// dropped into an inbox may be 1 MiB ([`crate::bounded::CERT_FILE_LIMIT`]); the same file must
/// fit through the socket, with room for the password and the JSON around it. A PKCS#12
/// bundle is a few KiB, a chain in PEM rarely more than 20 KiB.
pub const ADMIN_MAX_LINE: usize = base64_len(crate::bounded::CERT_FILE_LIMIT) + 64 * 1024;
/// A line buffer larger than this after a request is given back rather than kept for the
/// next one.
pub const KEEP_BUFFER: usize = 16 * 1024;
/// Connection log lines per uid: at most one per this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How long requests in flight may take to finish once shutdown has begun.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long a connection we end waits for the client to hang up; see [`hang_up`].
const HANG_UP_LINGER: Duration = Duration::from_secs(1);
/// How long a refused or turned-away peer has to take its one line.
const TELL_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest part of a bad line quoted back in a `bad_request` error.
const QUOTE_LIMIT: usize = 200;

/// The length of `bytes` bytes in padded base64.
const fn base64_len(bytes: u64) -> usize {
    (bytes.div_ceil(3) * 4) as usize
}

/// The socket file and its listener; removes the file when dropped.
#[derive(Debug)]
pub struct SocketGuard {
    listener: StdUnixListener,
    path: PathBuf,
    /// Device and inode of the socket file we made, so that drop never removes a socket that a
    /// newer daemon bound at the same path after us.
    identity: (u64, u64),
}

impl SocketGuard {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bound, non-blocking std listener.
    pub fn listener(&self) -> &StdUnixListener {
        &self.listener
    }

    /// A tokio listener on the same socket (a duplicated descriptor, so the guard stays
    /// responsible for the file). Must be called inside a tokio runtime with I/O enabled.
    pub fn tokio_listener(&self) -> io::Result<UnixListener> {
        UnixListener::from_std(self.listener.try_clone()?)
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let ours = fs::symlink_metadata(&self.path)
            .map(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == self.identity)
            .unwrap_or(false);
        if ours {
            if let Err(e) = fs::remove_file(&self.path) {
                warn!(
                    "control: could not remove the socket {}: {e}",
                    self.path.display()
                );
            }
        }
    }
}

/// Creates the control socket at `path`; see the module contract.
pub fn bind(path: &Path) -> io::Result<SocketGuard> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|e| with_path(e, "cannot create the socket directory", parent))?;
        }
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match StdUnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "another certvaktd is already listening on {}: stop it first (`systemctl stop certvakt`) or set another [control] socket",
                        path.display()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // Nobody listens: the socket of a daemon that was killed before it could clean up.
                fs::remove_file(path)
                    .map_err(|e| with_path(e, "cannot remove the stale socket", path))?;
            }
            Err(e) => {
                return Err(with_path(
                    e,
                    "cannot tell whether another certvaktd listens on",
                    path,
                ));
            }
        },
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; certvaktd will not delete it: move it away or set another [control] socket",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(with_path(e, "cannot inspect", path)),
    }
    let listener = StdUnixListener::bind(path)
        .map_err(|e| with_path(e, "cannot bind the control socket", path))?;
    listener.set_nonblocking(true)?;
    // Everyone may connect: who may do what is decided per connection from the peer's
    // credentials (as snapd and libvirt do), because two tiers — read and admin — cannot be
    // expressed with the one group a socket file has.
    fs::set_permissions(path, fs::Permissions::from_mode(0o666))
        .map_err(|e| with_path(e, "cannot set the mode of", path))?;
    let meta = fs::symlink_metadata(path).map_err(|e| with_path(e, "cannot inspect", path))?;
    Ok(SocketGuard {
        listener,
        path: path.to_owned(),
        identity: (meta.dev(), meta.ino()),
    })
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Limits of one server; [`serve`] uses the documented constants, tests make them small.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub admin_reserve: usize,
    pub max_per_uid: usize,
    pub max_checking: usize,
    pub max_telling: usize,
    pub read_max_line: usize,
    pub admin_max_line: usize,
    pub idle_timeout: Duration,
    pub hello_max_line: usize,
    pub hello_timeout: Duration,
    pub log_interval: Duration,
    pub drain_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            admin_reserve: ADMIN_RESERVE,
            max_per_uid: MAX_PER_UID,
            max_checking: MAX_CHECKING,
            max_telling: MAX_TELLING,
            read_max_line: READ_MAX_LINE,
            admin_max_line: ADMIN_MAX_LINE,
            idle_timeout: IDLE_TIMEOUT,
            hello_max_line: HELLO_MAX_LINE,
            hello_timeout: HELLO_TIMEOUT,
            log_interval: LOG_INTERVAL,
            drain_deadline: DRAIN_DEADLINE,
        }
    }
}

impl Limits {
    fn quotas(&self) -> Quotas {
        Quotas {
            total: self.max_connections,
            admin_reserve: self.admin_reserve,
            per_uid: self.max_per_uid,
            checking: self.max_checking,
        }
    }
}

/// Serves the control protocol on `listener` until `shutdown` completes, then drains.
///
/// `policy` is read once per connection, so a policy replaced on reload applies to the next
/// connection.
pub async fn serve<B: Backend>(
    listener: UnixListener,
    backend: Arc<B>,
    policy: Arc<RwLock<AccessPolicy>>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, backend, policy, shutdown, Limits::default()).await;
}

/// What every connection of one server shares.
struct Shared<B> {
    backend: Arc<B>,
    admission: Arc<Admission>,
    /// Places for telling refused and turned-away peers why.
    telling: Arc<Semaphore>,
    /// Connection log lines, per uid; `None` for the listener's own trouble.
    quiet: LogLimit<Option<u32>>,
    limits: Limits,
}

impl<B> Shared<B> {
    /// Logs a line about a connection of `uid`, at most one per uid and interval.
    fn log(&self, level: Level, uid: Option<u32>, line: impl FnOnce() -> String) {
        if let Some(count) = self.quiet.admit(&uid) {
            log::log!(level, "control: {}{}", line(), left_out(count));
        }
    }
}

pub(crate) async fn serve_with<B: Backend>(
    listener: UnixListener,
    backend: Arc<B>,
    policy: Arc<RwLock<AccessPolicy>>,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    let shared = Arc::new(Shared {
        backend,
        admission: Admission::new(limits.quotas()),
        telling: Arc::new(Semaphore::new(limits.max_telling)),
        quiet: LogLimit::new(limits.log_interval),
        limits,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => report_join(joined),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let peer = match stream.peer_cred() {
                        Ok(cred) => PeerCredentials {
                            uid: cred.uid(),
                            gid: cred.gid(),
                            pid: cred.pid(),
                        },
                        Err(e) => {
                            shared.log(Level::Warn, None, || format!(
                                "cannot read the credentials of a new connection, closing it: {e}"
                            ));
                            continue;
                        }
                    };
                    // Read once per connection: a policy replaced on reload applies to the
                    // next connection.
                    let policy = policy.read().unwrap_or_else(PoisonError::into_inner).clone();
                    let conn = Connection {
                        shared: shared.clone(),
                        stop: stop_rx.clone(),
                        peer,
                    };
                    match policy.access_without_lookup(&peer) {
                        Some(access) => {
                            tasks.spawn(conn.admit(stream, None, access, policy));
                        }
                        None => match shared.admission.check(peer.uid) {
                            Ok(checking) => {
                                tasks.spawn(conn.check(stream, checking, policy));
                            }
                            Err(busy) => {
                                if let Some(told) = conn.turn_away(stream, busy) {
                                    tasks.spawn(told);
                                }
                            }
                        },
                    }
                }
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning on the error.
                    shared.log(Level::Warn, None, || {
                        format!("accepting a connection failed: {e}")
                    });
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    // Stop accepting. (The socket itself stays bound until the SocketGuard drops; clients that
    // connect in between are closed then.)
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_deadline, async {
        while let Some(joined) = tasks.join_next().await {
            report_join(joined);
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            "control: {} connection(s) still busy {} s after shutdown began; closing them",
            tasks.len(),
            limits.drain_deadline.as_secs()
        );
        tasks.abort_all();
    }
}

fn report_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        if e.is_panic() {
            warn!("control: a connection handler panicked; that connection was closed");
        }
    }
}

/// Sends a refused or turned-away peer its one line and hangs up; the permit bounds how many
/// are told at once.
async fn tell<T: Serialize>(mut stream: UnixStream, line: T, permit: OwnedSemaphorePermit) {
    let _permit = permit;
    let (mut reader, mut writer) = stream.split();
    if send(&mut writer, &line, TELL_TIMEOUT).await.is_ok() {
        hang_up(&mut reader, &mut writer).await;
    }
}

/// Ends a connection after its last line. The write side is shut first, so the client reads
/// end-of-file at once; then whatever the client already sent is swallowed until it hangs up,
/// for at most [`HANG_UP_LINGER`]: a Unix socket closed with unread data makes the kernel report
/// "connection reset" to the client, which may then never read our last line.
async fn hang_up<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(reader: &mut R, writer: &mut W) {
    let _ = writer.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(HANG_UP_LINGER, async {
        while let Ok(n) = reader.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// What waiting for the next line produced.
#[derive(Debug)]
enum Incoming {
    Line,
    Closed,
    TooLong,
    Idle,
    Shutdown,
    Failed(io::Error),
}

/// The result of [`read_line_limited`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// A line is in the buffer (without its `\n` or `\r\n`).
    Line,
    /// The peer closed the connection before sending anything more.
    Eof,
    /// More than the limit arrived without a newline.
    TooLong,
}

/// Reads one line of at most `max` bytes into `buf`, without buffering more than that: the
/// buffer's capacity never grows past `max` on account of this line.
pub(crate) async fn read_line_limited<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            // A last line without its newline still counts as a line.
            return Ok(if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let chunk = match newline {
            Some(i) => &available[..i],
            None => available,
        };
        let needed = buf.len() + chunk.len();
        if needed > max {
            return Ok(LineRead::TooLong);
        }
        if needed > buf.capacity() {
            // Grow by doubling as `Vec` would, but never past the limit: a line just under
            // it must not cost twice the limit.
            let target = (buf.capacity() * 2).clamp(needed, max);
            buf.reserve_exact(target - buf.len());
        }
        buf.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(newline.is_some());
        reader.consume(used);
        if newline.is_some() {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(LineRead::Line);
        }
    }
}

/// Gives back a line buffer that a large request grew, so that an idle connection holds no
/// more than [`KEEP_BUFFER`] bytes.
fn release_large(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_BUFFER {
        *buf = Vec::new();
    }
}

/// How a connection ends when no further line is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Closed, silent, failed or shutting down: just drop it.
    Quietly,
    /// A line longer than the budget: the peer is told so, and the connection hung up.
    TooLong,
}

/// How long a line may be and how long the peer may take to send it.
#[derive(Debug, Clone, Copy)]
struct Budget {
    max_line: usize,
    timeout: Duration,
}

/// One accepted connection, its peer known from the kernel.
struct Connection<B> {
    shared: Arc<Shared<B>>,
    stop: watch::Receiver<bool>,
    peer: PeerCredentials,
}

impl<B: Backend> Connection<B> {
    fn log(&self, level: Level, line: impl FnOnce() -> String) {
        self.shared.log(level, Some(self.peer.uid), line);
    }

    /// Tells a peer there is no room for it, if there is room to tell; the task to spawn.
    /// This is an error response rather than a hello reply so that the client can tell
    /// "busy" from "refused".
    fn turn_away(self, stream: UnixStream, busy: Busy) -> Option<impl Future<Output = ()>> {
        let peer = self.peer;
        self.log(Level::Warn, || format!("{peer}: turned away: {busy}"));
        let permit = self.shared.telling.clone().try_acquire_owned().ok()?;
        let response = Response::Error {
            code: ErrorCode::Internal,
            message: busy.sentence(),
        };
        Some(tell(stream, response, permit))
    }

    /// Looks the peer's groups up, then serves it or refuses it.
    async fn check(self, stream: UnixStream, checking: Checking, policy: AccessPolicy) {
        let peer = self.peer;
        // Group and user lookups may block (NSS, LDAP): keep them off the async threads.
        let decided = tokio::task::spawn_blocking(move || {
            let access = policy.access_for(&peer);
            let refusal = (access == Access::None).then(|| policy.refusal(&peer));
            (access, refusal, policy)
        })
        .await;
        let (access, refusal, policy) = match decided {
            Ok(decided) => decided,
            Err(e) => {
                self.log(Level::Warn, || {
                    format!("{peer}: deciding access failed, closing: {e}")
                });
                return;
            }
        };
        if let Some(refusal) = refusal {
            // The place of the check is given back before the peer is told: a refused peer
            // never holds one while it reads.
            drop(checking);
            self.log(Level::Info, || {
                format!(
                    "{peer} refused: in neither group {} nor {}",
                    policy.read_name(),
                    policy.admin_name()
                )
            });
            if let Ok(permit) = self.shared.telling.clone().try_acquire_owned() {
                tell(stream, hello_error(refusal), permit).await;
            }
            return;
        }
        self.admit(stream, Some(checking), access, policy).await;
    }

    /// Takes a place for a peer with `access`, or turns it away.
    async fn admit(
        self,
        stream: UnixStream,
        checking: Option<Checking>,
        access: Access,
        policy: AccessPolicy,
    ) {
        match self.shared.admission.admit(checking, self.peer.uid, access) {
            Ok(slot) => self.serve(stream, access, policy, slot).await,
            Err(busy) => {
                if let Some(told) = self.turn_away(stream, busy) {
                    told.await;
                }
            }
        }
    }

    /// The hello exchange, then requests until the peer is done.
    async fn serve(mut self, stream: UnixStream, access: Access, policy: AccessPolicy, slot: Slot) {
        let _slot = slot;
        let peer = self.peer;
        let limits = self.shared.limits;
        let (read_half, mut writer) = stream.into_split();
        let mut reader = BufReader::new(read_half);
        let mut line = Vec::new();

        let hello_budget = Budget {
            max_line: limits.hello_max_line,
            timeout: limits.hello_timeout,
        };
        if let Err(ended) = self.next_line(&mut reader, &mut line, hello_budget).await {
            // A hello too long is not answered: whatever sends it is no certvakt client.
            if ended == Ended::TooLong {
                hang_up(&mut reader, &mut writer).await;
            }
            return;
        }
        let Some(hello) = ClientHello::parse(&line) else {
            self.log(Level::Info, || {
                format!("{peer}: first line is not a hello; closing")
            });
            let reply = hello_error(format!(
                "expected a hello first, like {{\"hello\":{{\"protocol\":{PROTOCOL_VERSION},\"version\":\"{}\",\"program\":\"certvakt\"}}}}",
                crate::VERSION
            ));
            if send(&mut writer, &reply, limits.idle_timeout).await.is_ok() {
                hang_up(&mut reader, &mut writer).await;
            }
            return;
        };
        if hello.protocol != u64::from(PROTOCOL_VERSION) {
            self.log(Level::Info, || {
                format!("{peer}: {hello} speaks another control protocol; closing")
            });
            let reply = hello_error(mismatch_message(&hello));
            if send(&mut writer, &reply, limits.idle_timeout).await.is_ok() {
                hang_up(&mut reader, &mut writer).await;
            }
            return;
        }
        // Debug, not info: monitoring scripts run `certvakt status` every minute.
        debug!(
            "control: {peer} ({hello}) connected with {} access",
            access_word(access)
        );
        let reply = HelloReply {
            hello: HelloReplyBody {
                protocol: PROTOCOL_VERSION,
                version: crate::VERSION.to_owned(),
                access,
                error: None,
            },
        };
        if let Err(e) = send(&mut writer, &reply, limits.idle_timeout).await {
            self.log(Level::Warn, || {
                format!("{peer}: sending the hello reply failed: {e}")
            });
            return;
        }

        let request_budget = Budget {
            max_line: match access {
                Access::Admin => limits.admin_max_line,
                Access::Read | Access::None => limits.read_max_line,
            },
            timeout: limits.idle_timeout,
        };
        loop {
            release_large(&mut line);
            if let Err(ended) = self.next_line(&mut reader, &mut line, request_budget).await {
                if ended == Ended::TooLong {
                    let refusal = Response::Error {
                        code: ErrorCode::BadRequest,
                        message: too_long_message(access, request_budget.max_line),
                    };
                    if send(&mut writer, &refusal, limits.idle_timeout)
                        .await
                        .is_ok()
                    {
                        hang_up(&mut reader, &mut writer).await;
                    }
                }
                return;
            }
            let answer = match parse_request(&line) {
                Err(message) => {
                    debug!("control: {peer}: bad request");
                    let refusal = Response::Error {
                        code: ErrorCode::BadRequest,
                        message,
                    };
                    encode(&refusal, "bad request")
                }
                Ok(request) if request.needs() > access => {
                    self.log(Level::Info, || {
                        format!(
                            "{peer}: {} refused, it needs {} access",
                            request.name(),
                            access_word(request.needs())
                        )
                    });
                    let refusal = Response::Error {
                        code: ErrorCode::Forbidden,
                        message: format!(
                            "{} needs {} access ({}); you have {} access",
                            request.name(),
                            access_word(request.needs()),
                            policy.who_may(request.needs()),
                            access_word(access)
                        ),
                    };
                    encode(&refusal, request.name())
                }
                Ok(request) => {
                    let name = request.name();
                    debug!("control: {peer}: {name}");
                    // Not raced against shutdown: a request that has started is allowed to finish
                    // (the drain deadline bounds it).
                    let response = self.shared.backend.handle(request).await;
                    encode(&response, name)
                }
            };
            if let Err(e) = send_line(&mut writer, &answer, limits.idle_timeout).await {
                self.log(Level::Warn, || {
                    format!("{peer}: sending a response failed, closing: {e}")
                });
                return;
            }
        }
    }

    /// Waits for the next line; `Err` when the connection should end (already logged).
    async fn next_line<R: AsyncBufRead + Unpin>(
        &mut self,
        reader: &mut R,
        line: &mut Vec<u8>,
        budget: Budget,
    ) -> Result<(), Ended> {
        let peer = self.peer;
        match self.wait_line(reader, line, budget).await {
            Incoming::Line => Ok(()),
            Incoming::Closed => {
                debug!("control: {peer}: closed");
                Err(Ended::Quietly)
            }
            Incoming::TooLong => {
                self.log(Level::Info, || {
                    format!(
                        "{peer}: line longer than {} bytes; closing",
                        budget.max_line
                    )
                });
                Err(Ended::TooLong)
            }
            Incoming::Idle => {
                self.log(Level::Info, || {
                    format!("{peer}: silent for {} s; closing", budget.timeout.as_secs())
                });
                Err(Ended::Quietly)
            }
            Incoming::Shutdown => Err(Ended::Quietly),
            Incoming::Failed(e) => {
                self.log(Level::Warn, || {
                    format!("{peer}: reading failed, closing: {e}")
                });
                Err(Ended::Quietly)
            }
        }
    }

    async fn wait_line<R: AsyncBufRead + Unpin>(
        &mut self,
        reader: &mut R,
        line: &mut Vec<u8>,
        budget: Budget,
    ) -> Incoming {
        if *self.stop.borrow() {
            return Incoming::Shutdown;
        }
        let read = tokio::time::timeout(
            budget.timeout,
            read_line_limited(reader, line, budget.max_line),
        );
        tokio::select! {
            read = read => match read {
                Err(_) => Incoming::Idle,
                Ok(Err(e)) => Incoming::Failed(e),
                Ok(Ok(LineRead::Line)) => Incoming::Line,
                Ok(Ok(LineRead::Eof)) => Incoming::Closed,
                Ok(Ok(LineRead::TooLong)) => Incoming::TooLong,
            },
            // Also when the sender is gone: the server is no longer there to serve.
            _ = self.stop.changed() => Incoming::Shutdown,
        }
    }
}

/// The `bad_request` message for a request line over the budget.
fn too_long_message(access: Access, max: usize) -> String {
    match access {
        Access::Admin => format!(
            "the request is longer than {max} bytes, the most certvaktd reads in one line (an import carries a file of at most {} bytes); the connection is closed",
            crate::bounded::CERT_FILE_LIMIT
        ),
        Access::Read | Access::None => format!(
            "the request is longer than {max} bytes, the most certvaktd reads in one line from a peer with read access; the connection is closed"
        ),
    }
}

/// The interesting part of a client's hello, read loosely so that any version's hello can be
/// answered with a sentence instead of a parse error.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientHello {
    protocol: u64,
    version: String,
    program: String,
}

impl ClientHello {
    fn parse(line: &[u8]) -> Option<ClientHello> {
        let value: Value = serde_json::from_slice(line).ok()?;
        let hello = value.get("hello")?;
        // These strings come from any local user and end up in log lines and in the mismatch
        // message: short, and without control characters that could forge a log line.
        let text = |key: &str| {
            hello
                .get(key)
                .and_then(Value::as_str)
                .map(|s| truncate(&s.replace(char::is_control, "?"), 64))
                .unwrap_or_else(|| "unknown".to_owned())
        };
        Some(ClientHello {
            protocol: hello.get("protocol")?.as_u64()?,
            version: text("version"),
            program: text("program"),
        })
    }
}

impl fmt::Display for ClientHello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} protocol {}",
            self.program, self.version, self.protocol
        )
    }
}

fn mismatch_message(hello: &ClientHello) -> String {
    format!(
        "this certvaktd speaks control protocol {PROTOCOL_VERSION} (version {}); the client speaks {} (version {}): use the certvakt CLI of the same package version, or restart the daemon after an upgrade",
        crate::VERSION,
        hello.protocol,
        hello.version
    )
}

fn hello_error(message: String) -> HelloReply {
    HelloReply {
        hello: HelloReplyBody {
            protocol: PROTOCOL_VERSION,
            version: crate::VERSION.to_owned(),
            access: Access::None,
            error: Some(message),
        },
    }
}

fn access_word(access: Access) -> &'static str {
    match access {
        Access::None => "no",
        Access::Read => "read",
        Access::Admin => "admin",
    }
}

/// What a connection makes of one line from a client: as a hello, the sentence a client of
/// another protocol would get (`None` when the line is no hello), and as a request, the
/// request or the `bad_request` message. Both parsers at once, without a socket, for the
/// fuzz target and the regression tests of bytes it found.
pub fn read_client_line(line: &[u8]) -> (Option<String>, Result<Request, String>) {
    let hello =
        ClientHello::parse(line).map(|hello| format!("{hello}: {}", mismatch_message(&hello)));
    (hello, parse_request(line))
}

/// Parses a request line; the error is the message of a `bad_request` response.
fn parse_request(line: &[u8]) -> Result<Request, String> {
    let text = String::from_utf8_lossy(line);
    if text.trim().is_empty() {
        return Err(
            "received an empty line; send one JSON request per line, like {\"request\":\"status\"}"
                .to_owned(),
        );
    }
    serde_json::from_str::<Request>(&text).map_err(|e| {
        format!(
            "not a request this certvaktd understands ({}); received: {}",
            truncate(&e.to_string(), QUOTE_LIMIT),
            truncate(&text, QUOTE_LIMIT)
        )
    })
}

/// At most `max` characters of `text`, with `…` when something was cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// The line that answers `request`, encoded once. A response that cannot be encoded (a
/// non-UTF-8 path, say) becomes an internal error, so that the client still gets exactly
/// one line for its request.
fn encode(response: &Response, request: &str) -> Vec<u8> {
    let mut line = Vec::new();
    if let Err(e) = serde_json::to_writer(&mut line, response) {
        warn!("control: the {request} response could not be encoded: {e}");
        line.clear();
        let error = Response::Error {
            code: ErrorCode::Internal,
            message: format!("the {request} response could not be encoded: {e}"),
        };
        if serde_json::to_writer(&mut line, &error).is_err() {
            // An error of plain strings always encodes; this is only a last resort.
            line = br#"{"response":"error","code":"internal","message":"the response could not be encoded"}"#.to_vec();
        }
    }
    line.push(b'\n');
    line
}

async fn send<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    value: &T,
    timeout: Duration,
) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    send_line(writer, &line, timeout).await
}

/// Writes one encoded line (ending in a newline).
async fn send_line<W: AsyncWrite + Unpin>(
    writer: &mut W,
    line: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    // A peer that never reads must not hold a connection slot forever.
    match tokio::time::timeout(timeout, writer.write_all(line)).await {
        Ok(written) => written,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer did not read its answer",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_that_cannot_be_encoded_is_answered_with_an_internal_error_line() {
        use std::os::unix::ffi::OsStrExt;
        let mut report = status_report();
        report.config_files = vec![PathBuf::from(std::ffi::OsStr::from_bytes(
            b"/etc/\xff.toml",
        ))];
        let line = encode(&Response::Status(Box::new(report)), "status");
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let answer: Response = serde_json::from_slice(&line).expect("one response");
        match answer {
            Response::Error { code, message } => {
                assert_eq!(code, ErrorCode::Internal);
                assert!(
                    message.starts_with("the status response could not be encoded"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        let fine = encode(&Response::Status(Box::new(status_report())), "status");
        let back: Response = serde_json::from_slice(&fine).expect("decodes");
        assert_eq!(back, Response::Status(Box::new(status_report())));
    }
    use crate::control::auth::{GroupRef, current_gid};
    use crate::control::client::{Client, ClientError};
    use crate::control::protocol::{Counts, Health, ReloadReport, StatusReport};

    const NOT_OUR_GID: u32 = 3_999_999_999;

    struct FakeBackend;

    fn status_report() -> StatusReport {
        StatusReport {
            version: crate::VERSION.into(),
            pid: 4242,
            started_at: 1_700_000_000,
            now: 1_700_000_600,
            config_files: vec![PathBuf::from("/etc/certvakt/certvakt.toml")],
            config_loaded_at: 1_700_000_000,
            last_reload_error: None,
            scanned_at: 1_700_000_500,
            socket: PathBuf::from("/run/certvakt/control.sock"),
            metrics_listen: Some("127.0.0.1:9617".into()),
            warn_before_secs: 30 * 86_400,
            health: Health::Ok,
            counts: Counts {
                ok: 3,
                ..Counts::default()
            },
            attention: vec![],
            problems: vec![],
            renewals: Vec::new(),
            plugins_refused: 0,
            notifications: Default::default(),
            removed: Vec::new(),
            first_issues: Vec::new(),
            attention_more: 0,
            renewals_more: 0,
            renewal_counts: Default::default(),
            problems_more: 0,
        }
    }

    impl Backend for FakeBackend {
        async fn handle(&self, request: Request) -> Response {
            match request {
                Request::Status => Response::Status(Box::new(status_report())),
                Request::List { .. } => Response::List {
                    items: vec![],
                    total: 0,
                    scanned_at: 0,
                },
                Request::Renewals { .. } => Response::Renewals {
                    items: vec![],
                    total: 0,
                },
                Request::Show { id } => Response::Error {
                    code: ErrorCode::NotFound,
                    message: format!("no certificate {id}"),
                },
                Request::Reload => Response::Reload(ReloadReport {
                    summary: "reloaded".into(),
                    certificates: 3,
                    problems: 0,
                }),
                other => Response::Error {
                    code: ErrorCode::BadRequest,
                    message: format!("{} is not served by this test backend", other.name()),
                },
            }
        }
    }

    fn group(name: &str, gid: u32) -> GroupRef {
        GroupRef {
            name: name.into(),
            gid,
            members: vec![],
        }
    }

    /// The test process is admin through its own gid.
    fn admin_policy() -> AccessPolicy {
        AccessPolicy::from_groups(Some(group("test-admin", current_gid())), None)
            .without_root_rule()
    }

    /// The test process is only a reader, even when the tests run as root.
    fn read_policy() -> AccessPolicy {
        AccessPolicy::from_groups(
            Some(group("test-admin", NOT_OUR_GID)),
            Some(group("test-read", current_gid())),
        )
        .without_root_rule()
    }

    fn stranger_policy() -> AccessPolicy {
        AccessPolicy::from_groups(
            Some(group("test-admin", NOT_OUR_GID)),
            Some(group("test-read", NOT_OUR_GID - 1)),
        )
        .without_root_rule()
    }

    struct Server {
        _dir: tempfile::TempDir,
        path: PathBuf,
        /// Replaced by tests to let the same test process in as someone else.
        policy: Arc<RwLock<AccessPolicy>>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
        _guard: SocketGuard,
    }

    impl Server {
        /// From the next connection on, the test process is judged by `policy`.
        fn set_policy(&self, policy: AccessPolicy) {
            *self.policy.write().expect("policy lock") = policy;
        }

        async fn shutdown(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let joined = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
            assert!(
                matches!(joined, Ok(Ok(()))),
                "serve did not return after shutdown"
            );
        }
    }

    fn start(policy: AccessPolicy, limits: Limits) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run").join("control.sock");
        let guard = bind(&path).expect("bind");
        let listener = guard.tokio_listener().expect("tokio listener");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let policy = Arc::new(RwLock::new(policy));
        let task = tokio::spawn(serve_with(
            listener,
            Arc::new(FakeBackend),
            policy.clone(),
            async move {
                let _ = stopped.await;
            },
            limits,
        ));
        Server {
            _dir: dir,
            path,
            policy,
            stop: Some(stop),
            task,
            _guard: guard,
        }
    }

    /// The blocking client runs on the blocking pool so that the server keeps running on the
    /// current-thread runtime.
    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::time::timeout(Duration::from_secs(20), tokio::task::spawn_blocking(f))
            .await
            .expect("client finished in time")
            .expect("client did not panic")
    }

    /// Sends raw lines and returns every line the server sends until it closes.
    async fn raw_exchange(path: &Path, lines: &[&str]) -> Vec<String> {
        let mut stream = UnixStream::connect(path).await.expect("connect");
        for line in lines {
            stream.write_all(line.as_bytes()).await.expect("write");
            stream.write_all(b"\n").await.expect("write");
        }
        stream.shutdown().await.expect("shutdown write");
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut text))
            .await
            .expect("server answered and closed in time")
            .expect("read");
        text.lines().map(str::to_owned).collect()
    }

    fn hello_line() -> String {
        format!(
            "{{\"hello\":{{\"protocol\":{PROTOCOL_VERSION},\"version\":\"{}\",\"program\":\"test\"}}}}",
            crate::VERSION
        )
    }

    #[tokio::test(flavor = "current_thread")]
    async fn hello_and_status_through_the_client() {
        let server = start(admin_policy(), Limits::default());
        let path = server.path.clone();
        let (access, version, response) = blocking(move || {
            let mut client = Client::connect(&path).expect("connect");
            let response = client.request(&Request::Status).expect("status");
            (
                client.access(),
                client.daemon_version().to_owned(),
                response,
            )
        })
        .await;
        assert_eq!(access, Access::Admin);
        assert_eq!(version, crate::VERSION);
        assert_eq!(response, Response::Status(Box::new(status_report())));
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn protocol_mismatch_is_explained_in_the_hello_reply() {
        let server = start(admin_policy(), Limits::default());
        let lines = raw_exchange(
            &server.path,
            &[r#"{"hello":{"protocol":999,"version":"9.9.9","program":"certvakt","future":true}}"#, r#"{"request":"status"}"#],
        )
        .await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        let reply: HelloReply = serde_json::from_str(&lines[0]).expect("hello reply");
        assert_eq!(reply.hello.protocol, PROTOCOL_VERSION);
        assert_eq!(reply.hello.access, Access::None);
        assert_eq!(
            reply.hello.error.as_deref(),
            Some(
                format!(
                    "this certvaktd speaks control protocol {PROTOCOL_VERSION} (version {}); the client speaks 999 (version 9.9.9): use the certvakt CLI of the same package version, or restart the daemon after an upgrade",
                    crate::VERSION
                )
                .as_str()
            )
        );
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn garbage_first_line_gets_a_hello_error_and_close() {
        let server = start(admin_policy(), Limits::default());
        let lines = raw_exchange(&server.path, &["status please", r#"{"request":"status"}"#]).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        let reply: HelloReply = serde_json::from_str(&lines[0]).expect("hello reply");
        let error = reply.hello.error.expect("an error");
        assert!(
            error.starts_with(&format!(
                "expected a hello first, like {{\"hello\":{{\"protocol\":{PROTOCOL_VERSION},"
            )),
            "{error}"
        );
        assert_eq!(reply.hello.access, Access::None);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bad_requests_after_hello_are_answered_and_the_connection_stays() {
        let server = start(admin_policy(), Limits::default());
        let long = format!("{{\"request\":\"{}\"}}", "x".repeat(1000));
        let hello = hello_line();
        let lines = raw_exchange(
            &server.path,
            &[
                &hello,
                r#"{"request":"frobnicate"}"#,
                "not json",
                &long,
                r#"{"request":"list"}"#,
            ],
        )
        .await;
        assert_eq!(lines.len(), 5, "{lines:?}");
        let reply: HelloReply = serde_json::from_str(&lines[0]).expect("hello reply");
        assert_eq!(reply.hello.access, Access::Admin);
        assert_eq!(reply.hello.error, None);

        let responses: Vec<Response> = lines[1..]
            .iter()
            .map(|l| serde_json::from_str(l).expect("response"))
            .collect();
        let Response::Error { code, message } = &responses[0] else {
            panic!("expected an error, got {:?}", responses[0]);
        };
        assert_eq!(*code, ErrorCode::BadRequest);
        assert!(
            message.contains("unknown variant `frobnicate`"),
            "{message}"
        );
        assert!(
            message.ends_with(r#"received: {"request":"frobnicate"}"#),
            "{message}"
        );

        let Response::Error { code, message } = &responses[1] else {
            panic!("expected an error, got {:?}", responses[1]);
        };
        assert_eq!(*code, ErrorCode::BadRequest);
        assert!(message.ends_with("received: not json"), "{message}");

        let Response::Error { code, message } = &responses[2] else {
            panic!("expected an error, got {:?}", responses[2]);
        };
        assert_eq!(*code, ErrorCode::BadRequest);
        let quoted = message.split("received: ").nth(1).expect("quote");
        assert_eq!(
            quoted.chars().count(),
            QUOTE_LIMIT + 1,
            "200 characters and the ellipsis"
        );
        assert!(quoted.ends_with("xxx…"));

        assert_eq!(
            responses[3],
            Response::List {
                items: vec![],
                total: 0,
                scanned_at: 0
            }
        );
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reader_may_look_but_not_reload() {
        let server = start(read_policy(), Limits::default());
        let path = server.path.clone();
        let (access, status, reload) = blocking(move || {
            let mut client = Client::connect(&path).expect("connect");
            let status = client.request(&Request::Status).expect("status");
            let reload = client.request(&Request::Reload).expect("reload");
            (client.access(), status, reload)
        })
        .await;
        assert_eq!(access, Access::Read);
        assert_eq!(status, Response::Status(Box::new(status_report())));
        assert_eq!(
            reload,
            Response::Error {
                code: ErrorCode::Forbidden,
                message:
                    "reload needs admin access (root or group test-admin); you have read access"
                        .into(),
            }
        );
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn strangers_are_refused_with_the_groups_to_join() {
        let server = start(stranger_policy(), Limits::default());
        let path = server.path.clone();
        let result = blocking(move || Client::connect(&path).map(|_| ())).await;
        let Err(ClientError::Refused(message)) = result else {
            panic!("expected a refusal, got {result:?}");
        };
        assert!(
            message.starts_with(&format!("uid {} ", nix::unistd::getuid())),
            "{message}"
        );
        assert!(
            message.contains("may not use certvakt: ask for membership of group test-read (read) or test-admin (change)"),
            "{message}"
        );
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn too_long_lines_are_refused_with_a_sentence_and_close_the_connection() {
        let limits = Limits {
            admin_max_line: 64,
            read_max_line: 32,
            ..Limits::default()
        };
        let server = start(admin_policy(), limits);
        let hello = hello_line();
        let long = "y".repeat(65);
        let lines = raw_exchange(&server.path, &[&hello, &long, r#"{"request":"list"}"#]).await;
        assert_eq!(lines.len(), 2, "the hello reply and the refusal: {lines:?}");
        let refusal: Response = serde_json::from_str(&lines[1]).expect("a response");
        assert_eq!(
            refusal,
            Response::Error {
                code: ErrorCode::BadRequest,
                message: format!(
                    "the request is longer than 64 bytes, the most certvaktd reads in one line (an import carries a file of at most {} bytes); the connection is closed",
                    crate::bounded::CERT_FILE_LIMIT
                ),
            }
        );
        server.shutdown().await;

        // A reader's budget is its own, smaller one.
        let server = start(read_policy(), limits);
        let lines = raw_exchange(&server.path, &[&hello, &"z".repeat(33)]).await;
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].contains("longer than 32 bytes") && lines[1].contains("read access"),
            "{}",
            lines[1]
        );
        server.shutdown().await;
    }

    #[test]
    fn an_import_of_the_largest_inbox_file_fits_the_admin_budget() {
        use base64::Engine as _;
        let limit = usize::try_from(crate::bounded::CERT_FILE_LIMIT).expect("fits");
        let request = Request::Import {
            more: Vec::new(),
            id: "a".repeat(64),
            data: base64::engine::general_purpose::STANDARD.encode(vec![0u8; limit]),
            password: Some("p".repeat(1024)),
        };
        let line = serde_json::to_string(&request).expect("encode");
        assert!(line.len() <= ADMIN_MAX_LINE, "{} bytes", line.len());
        const { assert!(ADMIN_MAX_LINE < 2 * 1024 * 1024) };
        // What a reader may send at all fits in the reader's budget many times over.
        let show = serde_json::to_string(&Request::Show { id: "a".repeat(64) }).expect("encode");
        assert!(show.len() * 100 < READ_MAX_LINE);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn line_buffers_do_not_keep_what_a_large_request_grew() {
        // Reading a line just under the limit never reserves more than the limit.
        let max = 100_000;
        let mut input = vec![b'x'; max - 1];
        input.push(b'\n');
        let mut reader = BufReader::with_capacity(4096, input.as_slice());
        let mut buf = Vec::new();
        assert_eq!(
            read_line_limited(&mut reader, &mut buf, max)
                .await
                .expect("read"),
            LineRead::Line
        );
        assert_eq!(buf.len(), max - 1);
        assert!(buf.capacity() <= max, "capacity {}", buf.capacity());
        // After the request, the buffer is given back; a small one is kept.
        release_large(&mut buf);
        assert_eq!(buf.capacity(), 0);
        let mut small = Vec::with_capacity(KEEP_BUFFER);
        release_large(&mut small);
        assert_eq!(small.capacity(), KEEP_BUFFER);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn hello_lines_have_a_small_budget() {
        let limits = Limits {
            hello_max_line: 32,
            hello_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let server = start(admin_policy(), limits);
        // Longer than the hello budget: closed without a word, like any too-long line.
        let hello = hello_line();
        assert!(hello.len() > 32);
        let lines = raw_exchange(&server.path, &[&hello]).await;
        assert_eq!(lines, Vec::<String>::new());
        // Silent after connecting: closed once the hello timeout passes.
        let mut silent = UnixStream::connect(&server.path).await.expect("connect");
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut rest))
            .await
            .expect("closed by the hello timeout")
            .expect("read");
        assert_eq!(n, 0);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_over_the_limit_are_turned_away() {
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let server = start(admin_policy(), limits);
        let path = server.path.clone();
        let first = blocking(move || Client::connect(&path))
            .await
            .expect("first connection");
        let path = server.path.clone();
        let second = blocking(move || Client::connect(&path).map(|_| ())).await;
        let Err(ClientError::Unavailable(message)) = second else {
            panic!("expected the second connection to be turned away, got {second:?}");
        };
        assert_eq!(
            message,
            "certvaktd is busy: 1 control connections are open; try again in a moment"
        );
        drop(first);
        server.shutdown().await;
    }

    /// Connects and says hello as the CLI does, on the blocking pool.
    async fn connect(path: &Path) -> Result<Client, ClientError> {
        let path = path.to_owned();
        blocking(move || Client::connect(&path)).await
    }

    /// Reads what the server sends until it closes, or until `within` passes.
    async fn read_until_closed(stream: &mut UnixStream, within: Duration) -> String {
        let mut text = Vec::new();
        tokio::time::timeout(within, stream.read_to_end(&mut text))
            .await
            .expect("the server closed the connection in time")
            .expect("read");
        String::from_utf8(text).expect("utf-8")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn strangers_are_refused_at_once_without_waiting_for_a_hello() {
        let server = start(stranger_policy(), Limits::default());
        let mut stream = UnixStream::connect(&server.path).await.expect("connect");
        // Nothing sent: the refusal comes anyway, well before the hello timeout.
        let text = read_until_closed(&mut stream, HELLO_TIMEOUT / 2).await;
        let reply: HelloReply = serde_json::from_str(text.trim_end()).expect("a hello reply");
        assert_eq!(reply.hello.access, Access::None);
        let error = reply.hello.error.expect("a refusal");
        assert!(error.contains("may not use certvakt"), "{error}");
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn strangers_holding_connections_keep_no_one_out() {
        let limits = Limits {
            max_connections: 2,
            admin_reserve: 1,
            ..Limits::default()
        };
        let server = start(stranger_policy(), limits);
        // Forty strangers connect and never hang up; each is refused (or, past the places
        // for telling, closed without a word).
        let mut strangers = Vec::new();
        for _ in 0..40 {
            let mut stream = UnixStream::connect(&server.path).await.expect("connect");
            let mut first = String::new();
            let n = tokio::time::timeout(
                HELLO_TIMEOUT / 2,
                BufReader::new(&mut stream).read_line(&mut first),
            )
            .await
            .expect("refused at once")
            .expect("read");
            assert!(n == 0 || first.contains("may not use certvakt"), "{first}");
            strangers.push(stream);
        }
        // While they are all still connected, the admin gets in, twice.
        server.set_policy(admin_policy());
        let first = connect(&server.path).await.expect("admin gets in");
        let second = connect(&server.path).await.expect("admin gets in again");
        assert_eq!(first.access(), Access::Admin);
        drop((first, second, strangers));
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn readers_cannot_take_the_places_kept_for_admins() {
        let limits = Limits {
            max_connections: 3,
            admin_reserve: 1,
            ..Limits::default()
        };
        let server = start(read_policy(), limits);
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(connect(&server.path).await.expect("a reader gets in"));
        }
        let third = connect(&server.path).await;
        let Err(ClientError::Unavailable(message)) = third else {
            panic!("expected the third reader to be turned away, got {third:?}");
        };
        assert_eq!(
            message,
            "certvaktd is busy: 2 control connections are open, and the rest are kept for root and the admin group; try again in a moment"
        );
        server.set_policy(admin_policy());
        let admin = connect(&server.path)
            .await
            .expect("the admin takes the reserve");
        assert_eq!(admin.access(), Access::Admin);
        held.push(admin);
        let fourth = connect(&server.path).await;
        assert!(
            matches!(&fourth, Err(ClientError::Unavailable(m)) if m.contains("3 control connections are open")),
            "{fourth:?}"
        );
        drop(held);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_uid_without_admin_access_holds_a_few_connections_at_most() {
        let limits = Limits {
            max_per_uid: 2,
            ..Limits::default()
        };
        let server = start(read_policy(), limits);
        let first = connect(&server.path).await.expect("first");
        let second = connect(&server.path).await.expect("second");
        let third = connect(&server.path).await;
        let Err(ClientError::Unavailable(message)) = third else {
            panic!("expected the third connection to be turned away, got {third:?}");
        };
        assert_eq!(
            message,
            format!(
                "certvaktd is busy: uid {} already has 2 control connections open, the most one user without admin access may have; close one, or try again in a moment",
                nix::unistd::getuid()
            )
        );
        // A connection closed gives its place back.
        drop(first);
        let again = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match connect(&server.path).await {
                    Ok(client) => return client,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await
        .expect("the place is given back");
        drop((second, again));
        server.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn shutdown_closes_idle_connections_and_stops_accepting() {
        let server = start(admin_policy(), Limits::default());
        let mut stream = UnixStream::connect(&server.path).await.expect("connect");
        stream
            .write_all(format!("{}\n", hello_line()).as_bytes())
            .await
            .expect("hello");
        let mut reader = BufReader::new(&mut stream);
        let mut reply = String::new();
        reader.read_line(&mut reply).await.expect("hello reply");
        assert!(reply.contains("\"access\":\"admin\""), "{reply}");
        let path = server.path.clone();
        server.shutdown().await;
        // The idle connection was closed by the drain, not left open.
        let mut rest = String::new();
        let n = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut rest))
            .await
            .expect("closed in time")
            .expect("read");
        assert_eq!(n, 0, "{rest}");
        // The socket file is gone with the guard.
        assert!(!path.exists());
    }

    #[test]
    fn guard_removes_the_socket_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join("control.sock");
        let guard = bind(&path).expect("bind");
        let meta = fs::symlink_metadata(&path).expect("socket exists");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o666);
        drop(guard);
        assert!(!path.exists());
    }

    #[test]
    fn bind_refuses_while_another_daemon_listens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        let first = bind(&path).expect("first bind");
        let second = bind(&path);
        let Err(e) = second else {
            panic!("second bind succeeded");
        };
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            e.to_string(),
            format!(
                "another certvaktd is already listening on {}: stop it first (`systemctl stop certvakt`) or set another [control] socket",
                path.display()
            )
        );
        // The refused bind must not have removed the live socket.
        assert!(StdUnixStream::connect(&path).is_ok());
        drop(first);
    }

    #[test]
    fn bind_replaces_a_stale_socket_but_never_a_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        // A std listener leaves its file behind when dropped, like a killed daemon.
        drop(StdUnixListener::bind(&path).expect("stale listener"));
        assert!(path.exists());
        let guard = bind(&path).expect("bind over a stale socket");
        assert!(StdUnixStream::connect(&path).is_ok());
        drop(guard);

        fs::write(&path, "precious").expect("write file");
        let e = bind(&path).expect_err("must refuse a regular file");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("exists and is not a socket"), "{e}");
        assert_eq!(fs::read_to_string(&path).expect("still there"), "precious");
    }

    #[test]
    fn guard_leaves_a_socket_bound_by_someone_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        let guard = bind(&path).expect("bind");
        // Someone removed our socket and a newer daemon bound the path.
        fs::remove_file(&path).expect("remove");
        let newer = StdUnixListener::bind(&path).expect("newer");
        drop(guard);
        assert!(path.exists(), "the newer daemon's socket must stay");
        drop(newer);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn lines_are_limited_and_crlf_tolerated() {
        let mut input: &[u8] = b"short\r\nexactly8\n123456789\n";
        let mut buf = Vec::new();
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 8)
                .await
                .expect("read"),
            LineRead::Line
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 8)
                .await
                .expect("read"),
            LineRead::Line
        );
        assert_eq!(buf, b"exactly8");
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 8)
                .await
                .expect("read"),
            LineRead::TooLong
        );

        let mut tail: &[u8] = b"last";
        assert_eq!(
            read_line_limited(&mut tail, &mut buf, 8)
                .await
                .expect("read"),
            LineRead::Line
        );
        assert_eq!(buf, b"last");
        assert_eq!(
            read_line_limited(&mut tail, &mut buf, 8)
                .await
                .expect("read"),
            LineRead::Eof
        );
    }

    #[test]
    fn client_hello_is_read_loosely_and_sanitised() {
        let hello = ClientHello::parse(
            br#"{"hello":{"protocol":3,"version":"1.0\n<3>forged","extra":[1]},"more":{}}"#,
        );
        assert_eq!(
            hello,
            Some(ClientHello {
                protocol: 3,
                version: "1.0?<3>forged".into(),
                program: "unknown".into(),
            })
        );
        assert_eq!(ClientHello::parse(br#"{"hello":{"protocol":"1"}}"#), None);
        assert_eq!(ClientHello::parse(br#"{"request":"status"}"#), None);
        assert_eq!(ClientHello::parse(b"hello"), None);
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "abc…");
        assert_eq!(truncate("æøåæ", 2), "æø…");
    }
}
