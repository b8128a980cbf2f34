//! What every loopback server of the testkit shares: its own thread with a current-thread
//! tokio runtime (so a plain `#[test]` or a binary can start it), an accept loop that hands
//! each connection to a task, and a handle that stops and joins it when dropped; and the
//! certificates a TLS server sends.

use std::future::Future;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::leaf::IssuedCert;

/// A running accept loop. Dropping it stops the loop and waits for its thread.
#[derive(Debug)]
pub struct Served {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Served {
    /// Accepts on `listener` (a bound std listener) on a thread named `name`, spawning
    /// `on_connection` for each connection.
    pub fn spawn<F, Fut>(
        name: &str,
        listener: std::net::TcpListener,
        on_connection: F,
    ) -> Result<Served>
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .with_context(|| format!("building {name}'s runtime"))?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (stop, mut stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    loop {
                        let accepted = tokio::select! {
                            _ = &mut stopped => return,
                            accepted = listener.accept() => accepted,
                        };
                        match accepted {
                            Ok((tcp, _)) => {
                                tokio::spawn(on_connection(tcp));
                            }
                            // Out of file descriptors and the like: wait rather than spin.
                            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                });
            })
            .with_context(|| format!("starting {name}'s thread"))?;
        Ok(Served {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a TLS server sends for `cert`: the leaf and its intermediates, not the root.
pub fn server_chain(cert: &IssuedCert) -> Vec<CertificateDer<'static>> {
    let intermediates = cert.chain_der.len().saturating_sub(1);
    std::iter::once(&cert.cert_der)
        .chain(cert.chain_der.iter().take(intermediates))
        .map(|der| CertificateDer::from(der.clone()))
        .collect()
}
