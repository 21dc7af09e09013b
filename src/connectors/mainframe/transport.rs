//! Online transport: request and response records over TCP, each framed by a length prefix,
//! through a pool sized to the mainframe's concurrency limit.
//!
//! CONTRACT (written before the implementation; keep the public types stable):
//! - `TcpTransport::new(config: TransportConfig) -> TcpTransport` (no I/O until first use).
//! - `TcpTransport::exchange(&self, request: &[u8]) -> Result<Vec<u8>, TransportError>`: takes
//!   a pooled connection (waiting at most the call's remaining deadline), writes one framed
//!   record, reads one framed record, returns the connection to the pool. The whole call —
//!   waiting for a connection, connecting, writing, reading — is bounded by `timeout`.
//!   A connection that saw any error or timeout is dropped, never reused.
//! - `write_frame` / `read_frame` are public so the demo mainframe and tests speak the same
//!   framing as the client.
//!
//! Pooled connections are reused across exchanges, so one may have been closed by the
//! mainframe while it sat idle (listeners drop quiet sessions). Such a connection fails on
//! first use with no answer byte; the exchange is then sent once more on a new connection,
//! which is safe because the online transactions behind this connector are read-only
//! inquiries. Idle connections older than [`IDLE_TIMEOUT`] are closed instead of reused.

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How each record is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A 4-byte big-endian length, then the record (the default). `includes_prefix`: whether
    /// the length counts its own 4 bytes.
    Length4 {
        /// The length counts the prefix itself.
        includes_prefix: bool,
    },
    /// A 2-byte big-endian length, then the record.
    Length2 {
        /// The length counts the prefix itself.
        includes_prefix: bool,
    },
    /// IMS/CICS `LLZZ`: 2-byte big-endian LL counting the 4 prefix bytes, then 2 bytes ZZ
    /// (written as zero, ignored on read), then the record.
    Llzz,
}

/// Where and how to reach the mainframe.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// `host:port`.
    pub address: String,
    /// Record framing.
    pub framing: Framing,
    /// Pool size: the mainframe never sees more connections (= concurrent transactions).
    pub max_connections: usize,
    /// Deadline for one whole exchange, including waiting for a pooled connection.
    pub timeout: Duration,
    /// Largest response record accepted; a larger length prefix is an error before reading.
    pub max_record_bytes: usize,
}

/// Why an exchange failed. Messages name no record content.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The connection could not be opened.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The deadline passed (waiting for the pool, connecting, writing or reading).
    #[error("no complete answer within {timeout_ms} ms")]
    Timeout {
        /// The deadline.
        timeout_ms: u64,
    },
    /// The peer closed the connection before a whole record arrived.
    #[error("connection closed after {received} of {expected} bytes")]
    Closed {
        /// Bytes of the frame (prefix included) received before the close.
        received: usize,
        /// Bytes the frame should have had, when the prefix was read.
        expected: String,
    },
    /// A length prefix that cannot be right (too large, smaller than the prefix, LLZZ with ZZ
    /// not zero is tolerated).
    #[error("bad frame: {0}")]
    Frame(String),
    /// Any other socket error.
    #[error("connection error: {0}")]
    Io(#[source] std::io::Error),
}

/// How long a pooled connection may sit unused before it is closed rather than reused.
///
/// Not a [`TransportConfig`] field on purpose: it only keeps the pool from holding sessions
/// the mainframe has probably dropped already, and the stale-connection resend covers a
/// listener whose idle timeout is shorter.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest read issued at once while receiving a record body. The buffer grows by at most
/// this much ahead of the bytes actually received, so a peer announcing a big record and
/// sending little cannot make the client reserve the whole announced length.
const READ_CHUNK: usize = 64 * 1024;

impl Framing {
    /// Bytes of length prefix before each record (2 or 4), so servers and tests can tell the
    /// prefix from the record without repeating the framing rules.
    pub const fn prefix_len(self) -> usize {
        match self {
            Framing::Length4 { .. } | Framing::Llzz => 4,
            Framing::Length2 { .. } => 2,
        }
    }

    /// Whether the length value counts the prefix bytes themselves.
    const fn counts_prefix(self) -> bool {
        match self {
            Framing::Length4 { includes_prefix } | Framing::Length2 { includes_prefix } => {
                includes_prefix
            }
            Framing::Llzz => true,
        }
    }

    /// The largest value the length field can hold.
    const fn max_length_value(self) -> u64 {
        match self {
            Framing::Length4 { .. } => u32::MAX as u64,
            Framing::Length2 { .. } | Framing::Llzz => u16::MAX as u64,
        }
    }

    /// The length prefix for a record of `record_len` bytes, or why there is none.
    fn prefix_for(self, record_len: usize) -> Result<Vec<u8>, String> {
        let counted = if self.counts_prefix() {
            self.prefix_len()
        } else {
            0
        };
        let value = u64::try_from(record_len)
            .ok()
            .and_then(|len| len.checked_add(counted as u64))
            .filter(|value| *value <= self.max_length_value())
            .ok_or_else(|| {
                format!(
                    "a record of {record_len} bytes is too long for a {}-byte length field",
                    match self {
                        Framing::Length4 { .. } => 4,
                        Framing::Length2 { .. } | Framing::Llzz => 2,
                    }
                )
            })?;
        Ok(match self {
            // The filter above keeps `value` within the field's width.
            Framing::Length4 { .. } => (value as u32).to_be_bytes().to_vec(),
            Framing::Length2 { .. } => (value as u16).to_be_bytes().to_vec(),
            Framing::Llzz => {
                let [ll0, ll1] = (value as u16).to_be_bytes();
                vec![ll0, ll1, 0, 0]
            }
        })
    }

    /// The record length announced by a complete prefix, checked against the framing and
    /// `max_record_bytes` before anything is allocated for the body.
    fn record_len(self, prefix: &[u8], max_record_bytes: usize) -> Result<usize, TransportError> {
        let value: u64 = match (self, prefix) {
            (Framing::Length4 { .. }, [a, b, c, d]) => u32::from_be_bytes([*a, *b, *c, *d]).into(),
            // LLZZ: ZZ (the last two bytes) is reserved; some systems put flags there.
            (Framing::Length2 { .. }, [a, b]) | (Framing::Llzz, [a, b, _, _]) => {
                u16::from_be_bytes([*a, *b]).into()
            }
            _ => {
                return Err(TransportError::Frame(format!(
                    "length prefix of {} bytes, expected {}",
                    prefix.len(),
                    self.prefix_len()
                )));
            }
        };
        let record = if self.counts_prefix() {
            value.checked_sub(self.prefix_len() as u64).ok_or_else(|| {
                TransportError::Frame(format!(
                    "length {value} is smaller than the {}-byte prefix it includes",
                    self.prefix_len()
                ))
            })?
        } else {
            value
        };
        match usize::try_from(record) {
            Ok(len) if len <= max_record_bytes => Ok(len),
            _ => Err(TransportError::Frame(format!(
                "record length {record} exceeds the {max_record_bytes}-byte limit"
            ))),
        }
    }
}

/// Writes one record with its length prefix (in a single write, so the frame leaves in as
/// few segments as possible) and flushes.
///
/// Public so the demo mainframe and tests frame exactly as the client does. Fails with
/// [`io::ErrorKind::InvalidInput`], writing nothing, when the record is too long for the
/// framing's length field (2-byte prefixes hold at most 65535, prefix included if counted).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    framing: Framing,
    record: &[u8],
) -> io::Result<()> {
    let mut frame = framing
        .prefix_for(record.len())
        .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
    frame.extend_from_slice(record);
    w.write_all(&frame).await?;
    w.flush().await
}

/// Reads one length-prefixed record: the prefix, then exactly the announced number of bytes.
///
/// Public so the demo mainframe and tests frame exactly as the client does. The announced
/// length is checked (`Frame` if above `max_record_bytes`, or below the prefix size when the
/// length counts the prefix) before the body is read or any room is reserved for it. A peer
/// that closes early gives `Closed` with the bytes of this frame received so far.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    framing: Framing,
    max_record_bytes: usize,
) -> Result<Vec<u8>, TransportError> {
    let mut received = 0;
    read_frame_counting(r, framing, max_record_bytes, &mut received).await
}

/// [`read_frame`], also reporting through `received` how many bytes of the frame arrived
/// (prefix included), so a failed exchange can tell whether the peer answered at all.
async fn read_frame_counting<R: AsyncRead + Unpin>(
    r: &mut R,
    framing: Framing,
    max_record_bytes: usize,
    received: &mut usize,
) -> Result<Vec<u8>, TransportError> {
    let prefix_len = framing.prefix_len();
    let mut prefix = [0u8; 4];
    let prefix = &mut prefix[..prefix_len];
    let mut filled = 0;
    while filled < prefix_len {
        filled += read_some(r, &mut prefix[filled..], received, || {
            format!("{prefix_len} (prefix)")
        })
        .await?;
    }
    let record_len = framing.record_len(prefix, max_record_bytes)?;

    let mut record = Vec::new();
    let mut filled = 0;
    while filled < record_len {
        if filled == record.len() {
            let grow = (record_len - filled).min(READ_CHUNK);
            record.resize(filled + grow, 0);
        }
        let end = record.len();
        filled += read_some(r, &mut record[filled..end], received, || {
            (prefix_len + record_len).to_string()
        })
        .await?;
    }
    Ok(record)
}

/// One read of at least one byte into `buf` (non-empty); end of stream is `Closed`.
async fn read_some<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    received: &mut usize,
    expected: impl Fn() -> String,
) -> Result<usize, TransportError> {
    loop {
        match r.read(buf).await {
            Ok(0) => {
                return Err(TransportError::Closed {
                    received: *received,
                    expected: expected(),
                });
            }
            Ok(n) => {
                *received += n;
                return Ok(n);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(TransportError::Io(error)),
        }
    }
}

/// A client for one mainframe listener: exchanges request and response records over a small
/// pool of TCP connections.
///
/// The pool is a [`Semaphore`] with `max_connections` permits (one per exchange in flight,
/// which bounds the connections the mainframe sees) and a list of idle connections. No pool
/// crate: the need is about fifty lines, and bb8 or deadpool would bring async-trait manager
/// machinery for this single use.
#[derive(Debug)]
pub struct TcpTransport {
    config: TransportConfig,
    /// `config.max_connections`, at least 1.
    max_connections: usize,
    permits: Semaphore,
    /// Connections that completed an exchange, most recently used last.
    idle: Mutex<Vec<IdleConnection>>,
}

/// A pooled connection and when it was returned.
#[derive(Debug)]
struct IdleConnection {
    stream: TcpStream,
    since: Instant,
}

/// How one attempt on one connection failed.
struct AttemptError {
    error: TransportError,
    /// Response bytes received before the failure.
    received: usize,
}

impl AttemptError {
    /// Whether the failure is what a connection closed by the peer while idle looks like:
    /// nothing of the answer arrived, and the socket was found closed or reset.
    fn looks_stale(&self) -> bool {
        if self.received != 0 {
            return false;
        }
        match &self.error {
            TransportError::Closed { .. } => true,
            TransportError::Io(error) => matches!(
                error.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}

impl TcpTransport {
    /// A transport for `config`; opens nothing until the first exchange, so building a
    /// gateway never waits for the mainframe.
    ///
    /// `max_connections` of 0 is treated as 1. An exchange on a reused connection that fails
    /// before any answer byte (the mainframe closed it while idle) is sent once more on a new
    /// connection within the same deadline: the transactions are read-only inquiries, so the
    /// mainframe seeing a request twice is harmless.
    pub fn new(config: TransportConfig) -> Self {
        let max_connections = config.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Semaphore::new(max_connections),
            max_connections,
            idle: Mutex::new(Vec::new()),
            config,
        }
    }

    /// Sends one request record and returns the response record, all within the configured
    /// `timeout` (waiting for a pooled connection, connecting, writing and reading).
    ///
    /// This is the whole online protocol the connector needs: one record in, one record out.
    /// The connection goes back to the pool only after a complete exchange; after any error
    /// or timeout it is closed, since its stream position is unknown. Dropping the returned
    /// future (a cancelled GraphQL request) likewise closes the connection it was using.
    pub async fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, TransportError> {
        // Refuse an unsendable request before it takes a connection.
        self.config
            .framing
            .prefix_for(request.len())
            .map_err(TransportError::Frame)?;
        let timeout_ms = u64::try_from(self.config.timeout.as_millis()).unwrap_or(u64::MAX);
        let exchange = self.exchange_unbounded(request);
        match Instant::now().checked_add(self.config.timeout) {
            Some(deadline) => tokio::time::timeout_at(deadline, exchange)
                .await
                .unwrap_or(Err(TransportError::Timeout { timeout_ms })),
            // A timeout too large to represent: no deadline in practice.
            None => exchange.await,
        }
    }

    /// Idle pooled connections young enough to be reused, for metrics and tests.
    pub fn idle_connections(&self) -> usize {
        self.lock_idle()
            .iter()
            .filter(|connection| connection.since.elapsed() < IDLE_TIMEOUT)
            .count()
    }

    /// Exchanges in flight (holding a pool slot, whether connecting, waiting for the answer
    /// or about to return the connection), for metrics and tests.
    pub fn in_use(&self) -> usize {
        self.max_connections - self.permits.available_permits()
    }

    /// [`TcpTransport::exchange`] without the deadline, which the caller applies.
    async fn exchange_unbounded(&self, request: &[u8]) -> Result<Vec<u8>, TransportError> {
        let _permit = self.permits.acquire().await.map_err(|_| {
            // The semaphore is never closed; say something sensible if that ever changes.
            TransportError::Io(io::Error::other("connection pool closed"))
        })?;
        if let Some(stream) = self.take_idle() {
            match self.attempt(stream, request).await {
                Ok(response) => return Ok(response),
                Err(failure) if failure.looks_stale() => {
                    tracing::debug!(
                        address = %self.config.address,
                        error = %failure.error,
                        "pooled mainframe connection was closed by the peer; resending on a new connection"
                    );
                }
                Err(failure) => return Err(failure.error),
            }
        }
        let stream = self.connect().await?;
        self.attempt(stream, request)
            .await
            .map_err(|failure| failure.error)
    }

    /// Opens a new connection with Nagle's algorithm off: each frame is written whole and
    /// the answer is awaited, so delaying small segments would only add latency.
    async fn connect(&self) -> Result<TcpStream, TransportError> {
        let stream = TcpStream::connect(self.config.address.as_str())
            .await
            .map_err(TransportError::Connect)?;
        stream.set_nodelay(true).map_err(TransportError::Connect)?;
        Ok(stream)
    }

    /// One request and response on `stream`, which goes back to the pool on success only.
    async fn attempt(
        &self,
        mut stream: TcpStream,
        request: &[u8],
    ) -> Result<Vec<u8>, AttemptError> {
        write_frame(&mut stream, self.config.framing, request)
            .await
            .map_err(|error| AttemptError {
                error: TransportError::Io(error),
                received: 0,
            })?;
        let mut received = 0;
        let response = read_frame_counting(
            &mut stream,
            self.config.framing,
            self.config.max_record_bytes,
            &mut received,
        )
        .await
        .map_err(|error| AttemptError { error, received })?;
        self.put_idle(stream);
        Ok(response)
    }

    /// The most recently used idle connection that is not too old; older ones are closed.
    fn take_idle(&self) -> Option<TcpStream> {
        let (expired, taken) = {
            let mut idle = self.lock_idle();
            let expired = Self::split_expired(&mut idle);
            (expired, idle.pop())
        };
        // Closing sockets outside the lock.
        drop(expired);
        taken.map(|connection| connection.stream)
    }

    /// Returns a connection that just completed an exchange.
    fn put_idle(&self, stream: TcpStream) {
        let expired = {
            let mut idle = self.lock_idle();
            let expired = Self::split_expired(&mut idle);
            idle.push(IdleConnection {
                stream,
                since: Instant::now(),
            });
            expired
        };
        drop(expired);
    }

    /// Removes and returns the connections idle for [`IDLE_TIMEOUT`] or more. They are the
    /// oldest, so the front of the list.
    fn split_expired(idle: &mut Vec<IdleConnection>) -> Vec<IdleConnection> {
        let fresh_from = idle
            .iter()
            .position(|connection| connection.since.elapsed() < IDLE_TIMEOUT)
            .unwrap_or(idle.len());
        idle.drain(..fresh_from).collect()
    }

    /// The idle list. Poisoning is ignored: the list is valid after any panic, since each
    /// change is a single push, pop or drain.
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<IdleConnection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::demo::mainframe_server::{Misbehaviour, RecordHandler, RecordServer};

    const ALL_FRAMINGS: [Framing; 5] = [
        Framing::Length4 {
            includes_prefix: false,
        },
        Framing::Length4 {
            includes_prefix: true,
        },
        Framing::Length2 {
            includes_prefix: false,
        },
        Framing::Length2 {
            includes_prefix: true,
        },
        Framing::Llzz,
    ];

    /// The prefix each framing puts before a 10-byte record, written out by hand.
    fn prefix_for_ten(framing: Framing) -> Vec<u8> {
        match framing {
            Framing::Length4 {
                includes_prefix: false,
            } => vec![0, 0, 0, 0x0A],
            Framing::Length4 {
                includes_prefix: true,
            } => vec![0, 0, 0, 0x0E],
            Framing::Length2 {
                includes_prefix: false,
            } => vec![0, 0x0A],
            Framing::Length2 {
                includes_prefix: true,
            } => vec![0, 0x0C],
            Framing::Llzz => vec![0, 0x0E, 0, 0],
        }
    }

    fn config(address: impl ToString, framing: Framing, timeout: Duration) -> TransportConfig {
        TransportConfig {
            address: address.to_string(),
            framing,
            max_connections: 4,
            timeout,
            max_record_bytes: 1024,
        }
    }

    /// Answers `ANSWER:` followed by the request.
    fn echo() -> RecordHandler {
        Arc::new(|request: &[u8]| [b"ANSWER:".as_slice(), request].concat())
    }

    const FRAMING: Framing = Framing::Length4 {
        includes_prefix: false,
    };

    #[tokio::test]
    async fn frames_have_the_documented_bytes() {
        let record = b"0123456789";
        for framing in ALL_FRAMINGS {
            let mut wire = Vec::new();
            write_frame(&mut wire, framing, record).await.unwrap();
            let expected = [prefix_for_ten(framing), record.to_vec()].concat();
            assert_eq!(wire, expected, "{framing:?}");
            let mut reader = wire.as_slice();
            assert_eq!(
                read_frame(&mut reader, framing, 10).await.unwrap(),
                record,
                "{framing:?}"
            );
            assert!(reader.is_empty(), "{framing:?} read past its frame");

            let mut empty = Vec::new();
            write_frame(&mut empty, framing, b"").await.unwrap();
            assert_eq!(empty.len(), framing.prefix_len());
            let read = read_frame(&mut empty.as_slice(), framing, 0).await.unwrap();
            assert!(read.is_empty());
        }
    }

    #[tokio::test]
    async fn round_trip_over_tcp_puts_exact_bytes_on_the_wire() {
        for framing in ALL_FRAMINGS {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let response = [prefix_for_ten(framing), b"9876543210".to_vec()].concat();
            let expected_request = [prefix_for_ten(framing), b"0123456789".to_vec()].concat();
            let server = tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = vec![0; expected_request.len()];
                stream.read_exact(&mut request).await.unwrap();
                stream.write_all(&response).await.unwrap();
                // Nothing more than one frame was sent.
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).await.unwrap();
                (request, expected_request, rest)
            });
            let transport = TcpTransport::new(config(address, framing, Duration::from_secs(10)));
            let answer = transport.exchange(b"0123456789").await.unwrap();
            assert_eq!(answer, b"9876543210", "{framing:?}");
            drop(transport);
            let (request, expected_request, rest) = server.await.unwrap();
            assert_eq!(request, expected_request, "{framing:?}");
            assert!(rest.is_empty(), "{framing:?}");
        }
    }

    #[tokio::test]
    async fn round_trip_through_the_record_server_with_each_framing() {
        for framing in ALL_FRAMINGS {
            let server = RecordServer::start(framing, echo()).await.unwrap();
            let transport =
                TcpTransport::new(config(server.addr(), framing, Duration::from_secs(10)));
            for request in [b"first".as_slice(), b"", b"third record"] {
                let answer = transport.exchange(request).await.unwrap();
                assert_eq!(answer, [b"ANSWER:".as_slice(), request].concat());
            }
            assert_eq!(server.accepted(), 1, "{framing:?}");
        }
    }

    #[tokio::test]
    async fn end_of_stream_is_closed_with_honest_counts() {
        let framing = FRAMING;
        let mut nothing: &[u8] = &[];
        match read_frame(&mut nothing, framing, 100).await {
            Err(TransportError::Closed { received, expected }) => {
                assert_eq!((received, expected.as_str()), (0, "4 (prefix)"));
            }
            other => panic!("{other:?}"),
        }
        let mut half_prefix: &[u8] = &[0, 0];
        match read_frame(&mut half_prefix, framing, 100).await {
            Err(TransportError::Closed { received, expected }) => {
                assert_eq!((received, expected.as_str()), (2, "4 (prefix)"));
            }
            other => panic!("{other:?}"),
        }
        let mut short_record: &[u8] = &[0, 0, 0, 128, 1, 2, 3, 4, 5];
        match read_frame(&mut short_record, framing, 1000).await {
            Err(TransportError::Closed { received, expected }) => {
                assert_eq!((received, expected.as_str()), (9, "132"));
            }
            other => panic!("{other:?}"),
        }
        let mut short_llzz: &[u8] = &[0, 10, 0, 0, 1];
        match read_frame(&mut short_llzz, Framing::Llzz, 1000).await {
            Err(TransportError::Closed { received, expected }) => {
                assert_eq!((received, expected.as_str()), (5, "10"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn impossible_lengths_are_refused_before_the_body_is_read() {
        let body = [7u8; 16];
        let cases: [(Framing, Vec<u8>); 6] = [
            // Larger than the limit of 15.
            (FRAMING, vec![0, 0, 0, 16]),
            // The largest length a 4-byte prefix can announce: nothing is reserved for it.
            (FRAMING, vec![0xFF, 0xFF, 0xFF, 0xFF]),
            (
                Framing::Length2 {
                    includes_prefix: false,
                },
                vec![0, 16],
            ),
            // Lengths that count the prefix but are smaller than it.
            (
                Framing::Length4 {
                    includes_prefix: true,
                },
                vec![0, 0, 0, 3],
            ),
            (
                Framing::Length2 {
                    includes_prefix: true,
                },
                vec![0, 1],
            ),
            (Framing::Llzz, vec![0, 2, 0, 0]),
        ];
        for (framing, prefix) in cases {
            let wire = [prefix, body.to_vec()].concat();
            let mut reader = wire.as_slice();
            match read_frame(&mut reader, framing, 15).await {
                Err(TransportError::Frame(_)) => {}
                other => panic!("{framing:?}: {other:?}"),
            }
            assert_eq!(reader, body, "{framing:?}: the body was read");
        }
        // LLZZ with ZZ not zero is tolerated.
        let mut flagged: &[u8] = &[0, 6, 0x80, 0x01, b'o', b'k'];
        assert_eq!(
            read_frame(&mut flagged, Framing::Llzz, 15).await.unwrap(),
            b"ok"
        );
    }

    #[tokio::test]
    async fn records_too_long_for_a_two_byte_prefix_are_refused() {
        let cases = [
            (
                Framing::Length2 {
                    includes_prefix: false,
                },
                65_535,
            ),
            (
                Framing::Length2 {
                    includes_prefix: true,
                },
                65_533,
            ),
            (Framing::Llzz, 65_531),
        ];
        for (framing, longest) in cases {
            let mut wire = Vec::new();
            write_frame(&mut wire, framing, &vec![0; longest])
                .await
                .unwrap();
            assert_eq!(wire.len(), longest + framing.prefix_len());
            let mut wire = Vec::new();
            let error = write_frame(&mut wire, framing, &vec![0; longest + 1])
                .await
                .unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{framing:?}");
            assert!(wire.is_empty(), "{framing:?}: wrote a partial frame");
        }
        // The transport refuses such a request without connecting.
        let transport = TcpTransport::new(config(
            "127.0.0.1:9",
            Framing::Llzz,
            Duration::from_secs(10),
        ));
        match transport.exchange(&vec![0; 65_532]).await {
            Err(TransportError::Frame(_)) => {}
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn close_mid_record_is_reported_at_once_and_the_next_call_reconnects() {
        let server = RecordServer::start_faulty(FRAMING, echo(), Misbehaviour::CloseMidRecord, 1)
            .await
            .unwrap();
        let transport = TcpTransport::new(config(server.addr(), FRAMING, Duration::from_secs(10)));
        let started = Instant::now();
        match transport.exchange(b"0123456789").await {
            // "ANSWER:0123456789" is 17 bytes: the prefix and 8 of them arrived.
            Err(TransportError::Closed { received, expected }) => {
                assert_eq!((received, expected.as_str()), (12, "21"));
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(transport.idle_connections(), 0);
        assert_eq!(transport.in_use(), 0);

        assert_eq!(transport.exchange(b"again").await.unwrap(), b"ANSWER:again");
        assert_eq!(server.accepted(), 2);
        assert_eq!(transport.idle_connections(), 1);
    }

    /// Asserts a `Timeout` that came at the deadline, give or take a loaded machine.
    fn assert_timed_out(
        result: Result<Vec<u8>, TransportError>,
        started: Instant,
        after: Duration,
    ) {
        let elapsed = started.elapsed();
        match result {
            Err(TransportError::Timeout { timeout_ms }) => {
                assert_eq!(u128::from(timeout_ms), after.as_millis());
            }
            other => panic!("{other:?}"),
        }
        assert!(elapsed >= after, "returned after {elapsed:?}");
        assert!(elapsed < after + Duration::from_secs(2), "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_server_that_never_reads_times_out_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(stream);
        });
        let timeout = Duration::from_millis(200);
        let transport = TcpTransport::new(config(address, FRAMING, timeout));
        let started = Instant::now();
        assert_timed_out(transport.exchange(b"hello").await, started, timeout);
        assert_eq!(transport.idle_connections(), 0);
        assert_eq!(transport.in_use(), 0);
        server.abort();
    }

    #[tokio::test]
    async fn stalls_time_out_at_the_deadline_and_drop_the_connection() {
        for misbehaviour in [Misbehaviour::Stall, Misbehaviour::StallMidRecord] {
            let server = RecordServer::start_faulty(FRAMING, echo(), misbehaviour, 1)
                .await
                .unwrap();
            let timeout = Duration::from_millis(200);
            let transport = TcpTransport::new(config(server.addr(), FRAMING, timeout));
            let started = Instant::now();
            assert_timed_out(transport.exchange(b"hello").await, started, timeout);
            assert_eq!(transport.idle_connections(), 0, "{misbehaviour:?}");
            assert_eq!(transport.in_use(), 0, "{misbehaviour:?}");
            // The stalled connection is not reused: the next call opens a new one.
            assert_eq!(transport.exchange(b"next").await.unwrap(), b"ANSWER:next");
            assert_eq!(server.accepted(), 2, "{misbehaviour:?}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let transport = TcpTransport::new(config(address, FRAMING, Duration::from_secs(10)));
        match transport.exchange(b"hello").await {
            Err(TransportError::Connect(_)) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(transport.in_use(), 0);
    }

    #[tokio::test]
    async fn an_oversize_answer_is_refused_without_waiting_for_its_body() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 9];
            stream.read_exact(&mut request).await.unwrap();
            // Announces 1025 bytes (the limit is 1024) and sends none of them.
            stream.write_all(&[0, 0, 4, 1]).await.unwrap();
            std::future::pending::<()>().await;
            drop(stream);
        });
        let transport = TcpTransport::new(config(address, FRAMING, Duration::from_secs(10)));
        let started = Instant::now();
        match transport.exchange(b"hello").await {
            Err(TransportError::Frame(message)) => assert!(message.contains("1025"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(transport.idle_connections(), 0);
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_never_opens_more_than_max_connections() {
        let server = RecordServer::start_faulty(
            FRAMING,
            echo(),
            Misbehaviour::Slow(Duration::from_millis(30)),
            usize::MAX,
        )
        .await
        .unwrap();
        let transport = Arc::new(TcpTransport::new(TransportConfig {
            max_connections: 3,
            ..config(server.addr(), FRAMING, Duration::from_secs(30))
        }));
        let most_in_use = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..20)
            .map(|i| {
                let transport = Arc::clone(&transport);
                let most_in_use = Arc::clone(&most_in_use);
                tokio::spawn(async move {
                    let request = format!("call {i}");
                    let exchange = transport.exchange(request.as_bytes());
                    tokio::pin!(exchange);
                    // Sample the pool while the exchange runs.
                    loop {
                        tokio::select! {
                            answer = &mut exchange => {
                                let answer = answer.unwrap();
                                assert_eq!(answer, format!("ANSWER:{request}").as_bytes());
                                return;
                            }
                            () = tokio::time::sleep(Duration::from_millis(5)) => {
                                most_in_use.fetch_max(transport.in_use(), Ordering::SeqCst);
                            }
                        }
                    }
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        assert!(
            server.peak_connections() <= 3,
            "{}",
            server.peak_connections()
        );
        assert!(
            (1..=3).contains(&server.accepted()),
            "{}",
            server.accepted()
        );
        assert!(most_in_use.load(Ordering::SeqCst) <= 3);
        assert_eq!(transport.in_use(), 0);
        assert_eq!(transport.idle_connections(), server.accepted());
    }

    #[tokio::test]
    async fn sequential_exchanges_reuse_one_connection() {
        let server = RecordServer::start(FRAMING, echo()).await.unwrap();
        let transport = TcpTransport::new(config(server.addr(), FRAMING, Duration::from_secs(10)));
        for i in 0..20 {
            let request = format!("call {i}");
            let answer = transport.exchange(request.as_bytes()).await.unwrap();
            assert_eq!(answer, format!("ANSWER:{request}").as_bytes());
            assert_eq!(transport.in_use(), 0);
        }
        assert_eq!(server.accepted(), 1);
        assert_eq!(transport.idle_connections(), 1);
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced_transparently() {
        let server = RecordServer::start_faulty(
            FRAMING,
            echo(),
            Misbehaviour::CloseWhenIdle(Duration::from_millis(20)),
            1,
        )
        .await
        .unwrap();
        let transport = TcpTransport::new(config(server.addr(), FRAMING, Duration::from_secs(10)));
        assert_eq!(transport.exchange(b"one").await.unwrap(), b"ANSWER:one");
        // Wait for the server to drop the session; the client still holds it as idle.
        let waited = Instant::now();
        while server.open_connections() > 0 {
            assert!(waited.elapsed() < Duration::from_secs(5), "never closed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(transport.idle_connections(), 1);

        assert_eq!(transport.exchange(b"two").await.unwrap(), b"ANSWER:two");
        assert_eq!(server.accepted(), 2);
        assert_eq!(transport.idle_connections(), 1);
        assert_eq!(transport.exchange(b"three").await.unwrap(), b"ANSWER:three");
        assert_eq!(server.accepted(), 2);
    }

    #[tokio::test]
    async fn a_new_connection_that_closes_is_not_resent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let server = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let mut request = [0u8; 9];
                stream.read_exact(&mut request).await.unwrap();
                drop(stream);
            }
        });
        let transport = TcpTransport::new(config(address, FRAMING, Duration::from_secs(10)));
        match transport.exchange(b"hello").await {
            Err(TransportError::Closed { received, expected }) => {
                assert_eq!((received, expected.as_str()), (0, "4 (prefix)"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        server.abort();
    }

    #[tokio::test]
    async fn waiting_for_a_connection_counts_toward_the_deadline() {
        let server = RecordServer::start_faulty(FRAMING, echo(), Misbehaviour::Stall, usize::MAX)
            .await
            .unwrap();
        // The first call holds the only connection until its own deadline, `head_start`
        // before the second call's. If the wait for it did not count, the second call would
        // end `timeout - head_start` late.
        let timeout = Duration::from_millis(1500);
        let head_start = Duration::from_millis(700);
        let transport = Arc::new(TcpTransport::new(TransportConfig {
            max_connections: 1,
            ..config(server.addr(), FRAMING, timeout)
        }));
        let first_transport = Arc::clone(&transport);
        let first_started = Instant::now();
        let first = tokio::spawn(async move { first_transport.exchange(b"first").await });
        tokio::time::sleep(head_start).await;
        assert_eq!(transport.in_use(), 1);

        let second_started = Instant::now();
        let second = transport.exchange(b"second").await;
        let elapsed = second_started.elapsed();
        match second {
            Err(TransportError::Timeout { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(elapsed >= timeout, "{elapsed:?}");
        assert!(elapsed < timeout * 2 - head_start, "{elapsed:?}");
        assert_timed_out(first.await.unwrap(), first_started, timeout);
    }

    #[tokio::test]
    async fn dropping_the_record_server_closes_its_listener_and_connections() {
        let server = RecordServer::start(FRAMING, echo()).await.unwrap();
        let transport = TcpTransport::new(config(server.addr(), FRAMING, Duration::from_secs(10)));
        assert_eq!(transport.exchange(b"one").await.unwrap(), b"ANSWER:one");
        drop(server);
        // The abort is processed by the runtime shortly after the drop.
        let started = Instant::now();
        loop {
            match transport.exchange(b"two").await {
                Err(TransportError::Connect(_)) => break,
                Ok(_) => {}
                Err(other) => panic!("{other:?}"),
            }
            assert!(started.elapsed() < Duration::from_secs(5), "still serving");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(transport.idle_connections(), 0);
    }
}
