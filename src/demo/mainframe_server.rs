//! A stand-in for a mainframe's online listener: length-prefixed records over TCP.
//!
//! The mainframe connector's transport needs something to talk to in the demo, in the
//! integration tests and in its own unit tests, and a real CICS or IMS region is out of the
//! question. [`RecordServer`] speaks the same framing as the client (it uses
//! [`read_frame`] / [`write_frame`]) and hands each request record to a plain function.
//! [`RecordServer::start_faulty`] adds the failures a client must survive: answers cut off,
//! answers that never come, slow answers and sessions dropped while idle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::connectors::mainframe::transport::{Framing, read_frame, write_frame};

/// Answers one request record with one response record. A plain function rather than a
/// trait: the demo and tests build answers from the request bytes and nothing else.
pub type RecordHandler = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// Connections served at once; more wait in the listen backlog, as they would for a region
/// with a fixed number of sessions, instead of spawning without bound.
pub const MAX_CONCURRENT_CONNECTIONS: usize = 64;

/// Largest request record the server reads; a bigger announced length closes the connection.
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Pause after a failed `accept` (such as running out of file descriptors), so the loop does
/// not spin while the condition lasts.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// A failure [`RecordServer::start_faulty`] injects, each one a situation the mainframe
/// transport has to handle without hanging or reusing a broken connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Reads the request, writes the length prefix of the full answer and only the first half
    /// of the record, then closes. This is a region abending mid-reply: the client must
    /// report a short record, not wait for the rest or hand back half an answer.
    CloseMidRecord,
    /// Reads the request and never answers, keeping the connection open until the client
    /// leaves. This is a hung transaction: only the client's deadline ends the wait.
    Stall,
    /// Like [`Misbehaviour::CloseMidRecord`] but keeps the connection open after the partial
    /// record: a reply stuck mid-transmission, which only the deadline can end.
    StallMidRecord,
    /// Answers correctly after the given delay: a busy region. Lets tests hold connections
    /// in use long enough to see the pool's limit, or answer after the client's deadline.
    Slow(Duration),
    /// Closes a connection that has waited this long for its next request: a listener's idle
    /// session timeout. The client's pooled connection is then stale without knowing it.
    CloseWhenIdle(Duration),
}

/// A TCP record server on 127.0.0.1, serving until dropped.
///
/// Each connection runs in its own task and carries any number of records (read a request,
/// answer it, repeat until the client closes), like a persistent session. Dropping the server
/// stops accepting and ends every connection, so tests leave nothing running.
#[derive(Debug)]
pub struct RecordServer {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    stats: Arc<Stats>,
}

/// Connection counts, shared with the accept and connection tasks.
#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicUsize,
    open: AtomicUsize,
    peak: AtomicUsize,
}

/// Counts a connection as open for as long as its task lives (aborted tasks included).
struct OpenConnection(Arc<Stats>);

impl OpenConnection {
    fn new(stats: Arc<Stats>) -> Self {
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        let open = stats.open.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak.fetch_max(open, Ordering::SeqCst);
        Self(stats)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The misbehaviour and how many more times it happens.
#[derive(Debug)]
struct Fault {
    kind: Misbehaviour,
    remaining: AtomicUsize,
}

impl Fault {
    /// Uses up one occurrence, if any are left.
    fn take(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// What a connection task needs.
#[derive(Clone)]
struct Service {
    framing: Framing,
    handler: RecordHandler,
    fault: Option<Arc<Fault>>,
}

impl RecordServer {
    /// Binds 127.0.0.1 on a free port and answers every request with `handler`.
    pub async fn start(framing: Framing, handler: RecordHandler) -> std::io::Result<RecordServer> {
        Self::spawn(Service {
            framing,
            handler,
            fault: None,
        })
        .await
    }

    /// Like [`RecordServer::start`], but `misbehaviour` happens `times` times (server-wide, in
    /// the order requests arrive, or idle connections are closed for
    /// [`Misbehaviour::CloseWhenIdle`]); afterwards the server behaves. `times = 1` lets a
    /// test check that the client recovers on its next call; `usize::MAX` misbehaves always.
    pub async fn start_faulty(
        framing: Framing,
        handler: RecordHandler,
        misbehaviour: Misbehaviour,
        times: usize,
    ) -> std::io::Result<RecordServer> {
        Self::spawn(Service {
            framing,
            handler,
            fault: Some(Arc::new(Fault {
                kind: misbehaviour,
                remaining: AtomicUsize::new(times),
            })),
        })
        .await
    }

    /// Where clients connect (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted since the start, so tests can check a client's reuse and limits.
    pub fn accepted(&self) -> usize {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now (the server has not yet seen them close).
    pub fn open_connections(&self) -> usize {
        self.stats.open.load(Ordering::SeqCst)
    }

    /// The most connections that were open at once, so tests can check a client's pool size.
    pub fn peak_connections(&self) -> usize {
        self.stats.peak.load(Ordering::SeqCst)
    }

    async fn spawn(service: Service) -> std::io::Result<RecordServer> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let accept = tokio::spawn(accept_loop(listener, service, Arc::clone(&stats)));
        Ok(RecordServer {
            addr,
            accept,
            stats,
        })
    }
}

impl Drop for RecordServer {
    /// Stops the accept task; the connection tasks are in a [`JoinSet`] it owns, so they are
    /// aborted with it.
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Accepts connections while fewer than [`MAX_CONCURRENT_CONNECTIONS`] are being served.
async fn accept_loop(listener: TcpListener, service: Service, stats: Arc<Stats>) {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::debug!(%error, "demo mainframe: accept failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        // Forget connections that have ended.
        while connections.try_join_next().is_some() {}
        let open = OpenConnection::new(Arc::clone(&stats));
        let service = service.clone();
        connections.spawn(async move {
            let _slot = slot;
            let _open = open;
            if stream.set_nodelay(true).is_ok() {
                serve(stream, &service).await;
            }
        });
    }
}

/// Serves one connection until the client closes it, a frame is bad, or a misbehaviour ends
/// it.
async fn serve(mut stream: TcpStream, service: &Service) {
    let framing = service.framing;
    loop {
        if let Some(fault) = &service.fault
            && let Misbehaviour::CloseWhenIdle(idle) = fault.kind
        {
            let mut probe = [0u8; 1];
            match tokio::time::timeout(idle, stream.peek(&mut probe)).await {
                // Idle too long: close, if this occurrence is still to happen.
                Err(_) if fault.take() => return,
                Err(_) | Ok(Ok(1..)) => {}
                Ok(Ok(0) | Err(_)) => return,
            }
        }
        let Ok(request) = read_frame(&mut stream, framing, MAX_REQUEST_BYTES).await else {
            return;
        };
        let response = (service.handler)(&request);
        if let Some(fault) = &service.fault
            && !matches!(fault.kind, Misbehaviour::CloseWhenIdle(_))
            && fault.take()
        {
            match fault.kind {
                Misbehaviour::CloseMidRecord => {
                    let _ = write_partial(&mut stream, framing, &response).await;
                    let _ = stream.shutdown().await;
                    return;
                }
                Misbehaviour::Stall => {
                    drain(&mut stream).await;
                    return;
                }
                Misbehaviour::StallMidRecord => {
                    if write_partial(&mut stream, framing, &response).await.is_ok() {
                        drain(&mut stream).await;
                    }
                    return;
                }
                Misbehaviour::Slow(delay) => tokio::time::sleep(delay).await,
                Misbehaviour::CloseWhenIdle(_) => {}
            }
        }
        if let Err(error) = write_frame(&mut stream, framing, &response).await {
            tracing::debug!(%error, "demo mainframe: cannot send the answer");
            return;
        }
    }
}

/// Writes the prefix announcing all of `record` and only its first half (half the prefix
/// for an empty record, so the frame is still incomplete).
async fn write_partial(
    stream: &mut TcpStream,
    framing: Framing,
    record: &[u8],
) -> std::io::Result<()> {
    let mut frame = Vec::new();
    write_frame(&mut frame, framing, record).await?;
    let cut = if record.is_empty() {
        framing.prefix_len() / 2
    } else {
        framing.prefix_len() + record.len() / 2
    };
    stream.write_all(&frame[..cut]).await?;
    stream.flush().await
}

/// Keeps the connection open, discarding whatever arrives, until the client closes it.
async fn drain(stream: &mut TcpStream) {
    let mut sink = [0u8; 512];
    while let Ok(1..) = stream.read(&mut sink).await {}
}
