//! `certvakt-hold`: a local peer that opens many connections and holds them, for the tests
//! that try the daemon's listeners as an attacker on the same host would.
//!
//! ```text
//! certvakt-hold unix PATH COUNT [--send TEXT] [--repeat K] [--long-line BYTES] [--until-closed | --refill] [--hold SECS]
//! certvakt-hold tcp ADDR COUNT [--send TEXT] [--repeat K] [--long-line BYTES] [--until-closed | --refill] [--hold SECS]
//! ```
//!
//! It connects COUNT times (a connection that fails is counted, not fatal) and prints
//! `connected N failed F`. With `--send`, it writes TEXT K times on each, and with `--long-line`
//! then a line of BYTES `x` (too long for an argument); never blocking: as much as the other
//! side takes at a time, the rest as it takes more. Then it holds the connections
//! until its stdin closes or, with `--until-closed`, until the other side has closed every one
//! of them; at most `--hold` seconds (default 60, so that a forgotten helper never outlives a
//! test for long). It prints `closed M` (how many the other side closed) and `first: TEXT` (what came
//! back on the first connection, as a Rust string literal), then exits. With `--refill` it
//! keeps COUNT connections open instead: every quarter of a second, each one the other side
//! has closed is opened again (and sent TEXT again), until stdin closes. Only with
//! `--until-closed` or `--refill` does it read at all: without, it is a client that never
//! reads.
//!
//! Run it as another user with `setpriv --reuid=65534 --regid=65534 --clear-groups --`; each
//! process holds at most a few hundred connections, so that it stays within the usual limit of
//! 1,024 open files (start two for more).

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What is kept of what comes back on a connection.
const KEEP_RECEIVED: usize = 16 * 1024;

const USAGE: &str = "usage: certvakt-hold unix|tcp PATH|ADDR COUNT [--send TEXT] [--repeat K] [--long-line BYTES] [--until-closed | --refill] [--hold SECS]";

/// One held connection.
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn set_nonblocking(&self) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_nonblocking(true),
            Conn::Tcp(s) => s.set_nonblocking(true),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(bytes),
            Conn::Tcp(s) => s.write(bytes),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }

    /// Whether the other side has closed it; what it sent is kept in `received`, up to
    /// [`KEEP_RECEIVED`] bytes.
    fn closed_by_peer(&mut self, received: &mut Vec<u8>) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => {
                    let room = KEEP_RECEIVED.saturating_sub(received.len());
                    received.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }
}

struct Options {
    unix: bool,
    target: String,
    count: usize,
    send: Option<String>,
    repeat: usize,
    long_line: usize,
    until_closed: bool,
    refill: bool,
    hold: Duration,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let [kind, target, count, rest @ ..] = args else {
        return Err(USAGE.into());
    };
    let unix = match kind.as_str() {
        "unix" => true,
        "tcp" => false,
        other => return Err(format!("{other:?} is neither unix nor tcp\n{USAGE}")),
    };
    let count = count
        .parse()
        .map_err(|_| format!("COUNT must be a number, not {count:?}\n{USAGE}"))?;
    let mut options = Options {
        unix,
        target: target.clone(),
        count,
        send: None,
        repeat: 1,
        long_line: 0,
        until_closed: false,
        refill: false,
        hold: Duration::from_secs(60),
    };
    let mut rest = rest.iter();
    while let Some(flag) = rest.next() {
        let mut value = || {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--send" => options.send = Some(value()?),
            "--repeat" => {
                options.repeat = value()?
                    .parse()
                    .map_err(|_| format!("--repeat needs a number\n{USAGE}"))?;
            }
            "--long-line" => {
                options.long_line = value()?
                    .parse()
                    .map_err(|_| format!("--long-line needs a number of bytes\n{USAGE}"))?;
            }
            "--hold" => {
                let secs: u64 = value()?
                    .parse()
                    .map_err(|_| format!("--hold needs a number of seconds\n{USAGE}"))?;
                options.hold = Duration::from_secs(secs);
            }
            "--until-closed" => options.until_closed = true,
            "--refill" => options.refill = true,
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

fn connect(options: &Options) -> std::io::Result<Conn> {
    if options.unix {
        return UnixStream::connect(&options.target).map(Conn::Unix);
    }
    let addr: SocketAddr = options
        .target
        .parse()
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, format!("{e}")))?;
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map(Conn::Tcp)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };

    let mut conns = Vec::with_capacity(options.count);
    let mut failed = 0;
    for _ in 0..options.count {
        match connect(&options) {
            Ok(conn) => conns.push(conn),
            Err(_) => failed += 1,
        }
    }
    let mut payload = options
        .send
        .as_deref()
        .map(|text| text.repeat(options.repeat))
        .unwrap_or_default();
    if options.long_line > 0 {
        payload.push_str(&"x".repeat(options.long_line));
        payload.push('\n');
    }
    let mut sent = vec![0usize; conns.len()];
    for conn in &conns {
        let _ = conn.set_nonblocking();
    }
    send_more(&mut conns, &mut sent, payload.as_bytes());
    println!("connected {} failed {failed}", conns.len());
    let _ = std::io::stdout().flush();

    let stdin_closed = Arc::new(AtomicBool::new(false));
    {
        let stdin_closed = stdin_closed.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            stdin_closed.store(true, Ordering::SeqCst);
        });
    }
    let started = Instant::now();
    let mut closed = vec![false; conns.len()];
    let mut received = vec![Vec::new(); conns.len()];
    let mut reopened = 0usize;
    loop {
        send_more(&mut conns, &mut sent, payload.as_bytes());
        if options.until_closed || options.refill {
            for ((conn, closed), received) in conns
                .iter_mut()
                .zip(closed.iter_mut())
                .zip(received.iter_mut())
            {
                if !*closed {
                    *closed = conn.closed_by_peer(received);
                }
            }
            if options.until_closed && closed.iter().all(|c| *c) {
                break;
            }
        }
        if options.refill {
            for ((conn, closed), sent) in conns
                .iter_mut()
                .zip(closed.iter_mut())
                .zip(sent.iter_mut())
                .filter(|((_, closed), _)| **closed)
            {
                if let Ok(fresh) = connect(&options) {
                    let _ = fresh.set_nonblocking();
                    *conn = fresh;
                    *closed = false;
                    *sent = 0;
                    reopened += 1;
                }
            }
        }
        // With --until-closed, only the other side (or --hold) ends the wait.
        let released = !options.until_closed && stdin_closed.load(Ordering::SeqCst);
        if released || started.elapsed() >= options.hold {
            break;
        }
        let pause = if options.refill { 250 } else { 50 };
        std::thread::sleep(Duration::from_millis(pause));
    }
    if options.refill {
        println!("reopened {reopened}");
    }
    println!("closed {}", closed.iter().filter(|c| **c).count());
    let first = received
        .first()
        .map(|r| String::from_utf8_lossy(r).into_owned());
    println!("first: {:?}", first.unwrap_or_default());
    let _ = std::io::stdout().flush();
    ExitCode::SUCCESS
}

/// Writes on each connection what the other side takes now of what is left of `payload`.
fn send_more(conns: &mut [Conn], sent: &mut [usize], payload: &[u8]) {
    for (conn, sent) in conns.iter_mut().zip(sent.iter_mut()) {
        while *sent < payload.len() {
            match conn.write(&payload[*sent..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => *sent += n,
            }
        }
    }
}
