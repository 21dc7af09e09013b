//! Signed checkpoints: the chain head, signed with the gateway's key and appended as one line
//! to a file outside the database.
//!
//! Whoever can rewrite the database can cut the chain's tail and rewind its head so that the
//! rest still links up; they cannot also make the key sign a checkpoint of the shorter chain
//! or remove a line from a file they do not control. So `audit verify` finds a checkpoint
//! naming a record the chain no longer has. Each line is a compact JWS of type
//! [`CHECKPOINT_TYPE`] whose claims are [`CheckpointClaims`].

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::chain::{AuditError, AuditLog, ChainHead};
use crate::signing::{SigningKey, Verifier};

/// The JWS `typ` of a checkpoint, so no other signed document can pass for one.
pub const CHECKPOINT_TYPE: &str = "audit-checkpoint+jwt";

/// The `iss` of every checkpoint.
pub const CHECKPOINT_ISSUER: &str = "civicgraph";

/// The longest checkpoint line read back; real ones are about 300 bytes.
pub(crate) const MAX_LINE_BYTES: usize = 4096;

/// What a checkpoint line signs: the head at one moment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointClaims {
    /// The head's seq: the chain had at least this many records.
    pub seq: i64,
    /// The hash of record `seq`.
    pub hash: String,
    /// When the checkpoint was written, in seconds since the Unix epoch.
    pub at: i64,
    /// Always [`CHECKPOINT_ISSUER`].
    pub iss: String,
}

/// Appends one signed line (compact JWS) with the current head, only when the head moved since
/// the last line this writer wrote (and always at least once if the file is empty and seq > 0).
/// Append + fsync the file; create it (and its directory) when missing.
///
/// "The last line this writer wrote" is the file's last line when it verifies with `key`, so a
/// restarted gateway does not repeat the line it wrote before stopping. Returns the head it
/// wrote, or `None` when there was nothing new.
pub async fn write_checkpoint(
    log: &AuditLog,
    key: &SigningKey,
    path: &Path,
) -> Result<Option<ChainHead>, AuditError> {
    let mut file = CheckpointFile::open(path, key.verifier()).await?;
    file.write_if_moved(log, key).await
}

/// The checkpoint file and the head its last line names.
struct CheckpointFile {
    path: PathBuf,
    last: Option<ChainHead>,
}

impl CheckpointFile {
    async fn open(path: &Path, verifier: &Verifier) -> Result<Self, AuditError> {
        let owned = path.to_path_buf();
        let verifier = verifier.clone();
        let last = blocking(path, move || last_checkpoint(&owned, &verifier)).await?;
        Ok(Self {
            path: path.to_path_buf(),
            last,
        })
    }

    async fn write_if_moved(
        &mut self,
        log: &AuditLog,
        key: &SigningKey,
    ) -> Result<Option<ChainHead>, AuditError> {
        let head = log.head().await?;
        if head.seq <= 0 || self.last.as_ref() == Some(&head) {
            return Ok(None);
        }
        let claims = CheckpointClaims {
            seq: head.seq,
            hash: head.hash.clone(),
            at: chrono::Utc::now().timestamp(),
            iss: CHECKPOINT_ISSUER.to_string(),
        };
        let line = key.sign(CHECKPOINT_TYPE, &claims)?;
        let path = self.path.clone();
        blocking(&self.path, move || append_line(&path, &line)).await?;
        tracing::debug!(seq = head.seq, "Wrote an audit checkpoint.");
        self.last = Some(head.clone());
        Ok(Some(head))
    }
}

/// Runs file I/O off the async threads.
async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| io(std::io::Error::other(error)))?
        .map_err(io)
}

/// The head named by the file's last line, when that line is a checkpoint `verifier` accepts.
fn last_checkpoint(path: &Path, verifier: &Verifier) -> std::io::Result<Option<ChainHead>> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(MAX_LINE_BYTES as u64 + 1);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(MAX_LINE_BYTES as u64 + 1)
        .read_to_end(&mut tail)?;
    let text = String::from_utf8_lossy(&tail);
    let mut lines = text.lines().rev().filter(|line| !line.trim().is_empty());
    let Some(line) = lines.next() else {
        return Ok(None);
    };
    // Only a whole line counts: when the tail began mid-line, that line was cut.
    if start > 0 && lines.next().is_none() && !text.starts_with('\n') {
        return Ok(None);
    }
    Ok(verifier
        .verify::<CheckpointClaims>(CHECKPOINT_TYPE, line)
        .ok()
        .map(|claims| ChainHead {
            seq: claims.seq,
            hash: claims.hash,
        }))
}

/// Appends `line` and a newline, then fsyncs; makes the file and its directory when missing.
fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let mut text = String::with_capacity(line.len() + 2);
    if len > 0 {
        // A line cut short (a crash mid-write) must not swallow this one.
        let mut last = [0u8; 1];
        file.seek(SeekFrom::End(-1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(line);
    text.push('\n');
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    if len == 0 {
        // A new file's directory entry must survive a crash too.
        #[cfg(unix)]
        if let Some(parent) = parent {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

/// Background writer: every `interval`, `write_checkpoint`; failures are logged (no personal
/// data) and retried next tick. `shutdown()` writes a final checkpoint and stops.
///
/// Dropping it without `shutdown()` also stops it after a final checkpoint, in the background.
#[derive(Debug)]
pub struct Checkpointer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts the writer on the current Tokio runtime; the first checkpoint is attempted at
    /// once, so a head moved before a restart is signed without waiting a whole interval.
    /// An `interval` of zero is taken as one millisecond.
    pub fn spawn(log: AuditLog, key: SigningKey, path: PathBuf, interval: Duration) -> Self {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut file = None;
            let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => tick(&log, &key, &path, &mut file).await,
                    _ = &mut stopped => {
                        tick(&log, &key, &path, &mut file).await;
                        break;
                    }
                }
            }
        });
        Self { stop, task }
    }

    /// Writes a final checkpoint (when the head moved) and stops. Call it before the store
    /// is closed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "The audit checkpoint writer failed.");
        }
    }
}

async fn tick(log: &AuditLog, key: &SigningKey, path: &Path, file: &mut Option<CheckpointFile>) {
    if file.is_none() {
        match CheckpointFile::open(path, key.verifier()).await {
            Ok(opened) => *file = Some(opened),
            Err(error) => {
                tracing::warn!(%error, "Could not read the audit checkpoint file; retrying at the next tick.");
                return;
            }
        }
    }
    if let Some(file) = file
        && let Err(error) = file.write_if_moved(log, key).await
    {
        tracing::warn!(%error, "Could not write an audit checkpoint; retrying at the next tick.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::testing::{AuditStore, record};
    use crate::store::testing::{TestStore, on_both_stores};

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .map(|text| text.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    fn seqs(path: &Path, key: &SigningKey) -> Vec<i64> {
        lines(path)
            .iter()
            .map(|line| {
                key.verifier()
                    .verify::<CheckpointClaims>(CHECKPOINT_TYPE, line)
                    .unwrap()
                    .seq
            })
            .collect()
    }

    on_both_stores!(
        sqlite "audit.db",
        postgres &["audit_records"];
        checkpoints_are_written_only_when_the_head_moved,
        the_checkpointer_writes_on_ticks_and_at_shutdown,
    );

    async fn checkpoints_are_written_only_when_the_head_moved(db: &TestStore) {
        let log = db.log(Duration::from_secs(5));
        let key = SigningKey::load_or_create(&db.dir.path().join("key.pem")).unwrap();
        let path = db.dir.path().join("audit/checkpoints.jsonl");

        assert_eq!(write_checkpoint(&log, &key, &path).await.unwrap(), None);
        assert!(!path.exists(), "an empty chain needs no checkpoint");

        let head = log
            .append(vec![record("C0000001", 1), record("C0000001", 2)])
            .await
            .unwrap();
        assert_eq!(
            write_checkpoint(&log, &key, &path).await.unwrap(),
            Some(head.clone())
        );
        assert_eq!(write_checkpoint(&log, &key, &path).await.unwrap(), None);
        let claims: CheckpointClaims = key
            .verifier()
            .verify(CHECKPOINT_TYPE, &lines(&path)[0])
            .unwrap();
        assert_eq!((claims.seq, claims.hash), (head.seq, head.hash));
        assert_eq!(claims.iss, "civicgraph");
        assert!((claims.at - chrono::Utc::now().timestamp()).abs() < 60);

        log.append(vec![record("C0000002", 3)]).await.unwrap();
        assert!(write_checkpoint(&log, &key, &path).await.unwrap().is_some());
        assert_eq!(seqs(&path, &key), vec![2, 3]);

        // Another key's line at the end is not this writer's: it writes its own.
        let other = SigningKey::load_or_create(&db.dir.path().join("other.pem")).unwrap();
        let path2 = db.dir.path().join("other.jsonl");
        write_checkpoint(&log, &other, &path2).await.unwrap();
        assert!(
            write_checkpoint(&log, &key, &path2)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(lines(&path2).len(), 2);

        // A line cut short by a crash does not swallow the next one.
        let path3 = db.dir.path().join("cut.jsonl");
        std::fs::write(&path3, "eyJhbGciOiJFZERTQSJ9.eyJzZXEiOj").unwrap();
        write_checkpoint(&log, &key, &path3).await.unwrap();
        let cut = lines(&path3);
        assert_eq!(cut.len(), 2);
        assert!(
            key.verifier()
                .verify::<CheckpointClaims>(CHECKPOINT_TYPE, &cut[1])
                .is_ok()
        );
    }

    async fn the_checkpointer_writes_on_ticks_and_at_shutdown(db: &TestStore) {
        let log = db.log(Duration::from_secs(5));
        let key = SigningKey::load_or_create(&db.dir.path().join("key.pem")).unwrap();
        let path = db.dir.path().join("checkpoints.jsonl");

        // A long interval: only the first tick (at once) and shutdown write.
        log.append(vec![record("C0000001", 1)]).await.unwrap();
        let writer = Checkpointer::spawn(
            log.clone(),
            key.clone(),
            path.clone(),
            Duration::from_secs(3600),
        );
        wait_for_lines(&path, 1).await;
        log.append(vec![record("C0000001", 2), record("C0000001", 3)])
            .await
            .unwrap();
        writer.shutdown().await;
        assert_eq!(
            seqs(&path, &key),
            vec![1, 3],
            "shutdown wrote the last head"
        );

        // A restart with nothing new writes nothing.
        let writer = Checkpointer::spawn(
            log.clone(),
            key.clone(),
            path.clone(),
            Duration::from_secs(3600),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer.shutdown().await;
        assert_eq!(seqs(&path, &key), vec![1, 3]);

        // A short interval: quiet ticks write nothing; a moved head is written on the next.
        let writer = Checkpointer::spawn(
            log.clone(),
            key.clone(),
            path.clone(),
            Duration::from_millis(40),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(lines(&path).len(), 2, "no lines while the head stood still");
        log.append(vec![record("C0000001", 4)]).await.unwrap();
        wait_for_lines(&path, 3).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer.shutdown().await;
        assert_eq!(seqs(&path, &key), vec![1, 3, 4]);
    }

    async fn wait_for_lines(path: &Path, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while lines(path).len() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "{count} checkpoint lines did not appear within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
