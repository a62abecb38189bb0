//! A TCP relay that can freeze: the connections stay open but no byte passes, which is what a
//! hung server or a half-dead network path looks like to a client. It can also drop a connection
//! in the middle of what the server sends ([`Proxy::cut_after`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running relay.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    frozen: Arc<AtomicBool>,
    cut: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<()>,
}

/// Relays `from` to `to`. `cut` (server to client only): the bytes still to pass before the
/// connection is closed mid-stream, once; below 0, none.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
    cut: Option<Arc<AtomicI64>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = cut.as_ref().map_or(-1, |c| c.load(Ordering::SeqCst));
        let cutting = left >= 0 && left <= n as i64;
        if cutting {
            n = left as usize;
        } else if let Some(c) = cut.as_ref().filter(|_| left > 0) {
            c.fetch_sub(n as i64, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if let Some(c) = cut.as_ref().filter(|_| cutting) {
            c.store(-1, Ordering::SeqCst);
            // Dropping both halves closes the connection, with the rest of the chunk unsent.
            return;
        }
    }
}

impl Proxy {
    /// Relays 127.0.0.1:<free port> to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let frozen = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicI64::new(-1));
        let (f, c) = (frozen.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, f.clone(), None));
                tokio::spawn(pump(sr, cw, f.clone(), Some(c.clone())));
            }
        });
        Proxy {
            addr,
            frozen,
            cut,
            task,
        }
    }

    /// Closes the connection that carries the `bytes`-th byte from the server from now on, in the
    /// middle of whatever it is, once; the client may connect again.
    pub fn cut_after(&self, bytes: i64) {
        self.cut.store(bytes, Ordering::SeqCst);
    }

    /// Stops (or resumes) passing bytes on every connection, old and new.
    pub fn freeze(&self, on: bool) {
        self.frozen.store(on, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
