//! `civicgraph audit verify`: recompute every record's hash and link, compare the head, then
//! hold the chain against every signed checkpoint, and name the first thing that is wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead as _, Read as _};
use std::path::Path;

use super::chain::{
    AuditError, BadRow, ChainHead, GENESIS_HASH, StoredRecord, columns, read_head, read_row,
    record_hash,
};
use super::checkpoint::{CHECKPOINT_ISSUER, CHECKPOINT_TYPE, CheckpointClaims, MAX_LINE_BYTES};
use crate::signing::Verifier;
use crate::store::{Store, on_pool};

/// What is wrong with the chain or its checkpoints; the first one found is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainProblem {
    /// The record's hash does not match its contents: it was changed after it was written.
    EditedRecord {
        /// The record.
        seq: i64,
    },
    /// The record's `prev_hash` is not the previous record's hash: a record before it was
    /// replaced (and re-hashed), or this one was re-linked.
    BrokenLink {
        /// The record whose link is broken.
        seq: i64,
    },
    /// A gap in seq: records were deleted.
    MissingRecords {
        /// The last record before the gap (0 when the chain's start is missing).
        after: i64,
        /// The first record after the gap.
        next: i64,
    },
    /// `audit_head` disagrees with the chain's last record (its seq or its hash).
    HeadMismatch {
        /// The seq `audit_head` names.
        head_seq: i64,
        /// The seq of the chain's last record.
        last_seq: i64,
    },
    /// A checkpoint names a seq beyond the chain's end: its tail was cut off.
    TruncatedTail {
        /// The seq the checkpoint names.
        checkpoint_seq: i64,
        /// The seq of the chain's last record.
        last_seq: i64,
    },
    /// The record at a checkpoint's seq has another hash than the checkpoint signed.
    CheckpointMismatch {
        /// The record.
        seq: i64,
        /// The checkpoint's line in the file, from 1.
        line: usize,
    },
    /// A checkpoint line is not a checkpoint signed by this gateway's key.
    BadCheckpoint {
        /// The line in the file, from 1.
        line: usize,
        /// Why (the signature check's own words, or the format problem).
        reason: String,
    },
}

impl ChainProblem {
    /// The first record that is wrong or missing, for "BROKEN at record N"; `None` when the
    /// problem is in the checkpoint file or the head row.
    pub fn record(&self) -> Option<i64> {
        match self {
            Self::EditedRecord { seq }
            | Self::BrokenLink { seq }
            | Self::CheckpointMismatch { seq, .. } => Some(*seq),
            Self::MissingRecords { after, .. } => Some(after + 1),
            Self::TruncatedTail { last_seq, .. } => Some(last_seq + 1),
            Self::HeadMismatch { .. } | Self::BadCheckpoint { .. } => None,
        }
    }

    /// The checkpoint file line the problem is on, when it is on one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::CheckpointMismatch { line, .. } | Self::BadCheckpoint { line, .. } => Some(*line),
            _ => None,
        }
    }
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EditedRecord { seq } => write!(
                f,
                "record {seq} does not match its hash: it was changed after it was written"
            ),
            Self::BrokenLink { seq } => write!(
                f,
                "record {seq} does not link to record {}: its previous hash differs, so a record was replaced",
                seq - 1
            ),
            Self::MissingRecords { after, next } if next - after == 2 => write!(
                f,
                "record {} is missing: the chain jumps from record {after} to record {next}",
                after + 1
            ),
            Self::MissingRecords { after, next } => write!(
                f,
                "records {} to {} are missing: the chain jumps from record {after} to record {next}",
                after + 1,
                next - 1
            ),
            Self::HeadMismatch { head_seq, last_seq } if head_seq == last_seq => write!(
                f,
                "the chain head names record {head_seq} with another hash than the record has"
            ),
            Self::HeadMismatch { head_seq, last_seq } => write!(
                f,
                "the chain head says record {head_seq} is the last, but the chain ends at record {last_seq}"
            ),
            Self::TruncatedTail {
                checkpoint_seq,
                last_seq,
            } => write!(
                f,
                "a signed checkpoint names record {checkpoint_seq}, but the chain ends at record {last_seq}: its tail was cut off"
            ),
            Self::CheckpointMismatch { seq, line } => write!(
                f,
                "checkpoint line {line} signed another hash for record {seq} than the record has"
            ),
            Self::BadCheckpoint { line, reason } => write!(
                f,
                "checkpoint line {line} is not a valid signed checkpoint: {reason}"
            ),
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records read (all of them, even past a problem).
    pub records: i64,
    /// Non-empty checkpoint lines read (0 when the file does not exist).
    pub checkpoints: usize,
    /// `audit_head` as read at the end of the walk.
    pub head: ChainHead,
    /// The first problem; `None` when the chain and every checkpoint hold.
    pub problem: Option<ChainProblem>,
}

/// Records read per query: memory stays flat however long the chain is.
const PAGE: usize = 1000;

/// Walks every record in seq order (streaming or in pages — do not load the whole table into
/// memory), recomputing hashes, then checks every checkpoint line. Reports the FIRST problem
/// found. A missing checkpoint file is not a problem by itself (report checkpoints: 0) — but
/// say so in the CLI output.
///
/// Record problems come first (in seq order), then the head, then checkpoint problems in line
/// order. Appends may go on while it runs: records committed after the walk passed are walked
/// too, until the head and the chain's end agree.
pub async fn verify(
    store: &Store,
    checkpoints: &Path,
    verifier: &Verifier,
) -> Result<VerifyReport, AuditError> {
    let checkpoints = read_checkpoints(checkpoints, verifier).await?;
    let mut walk = Walk::new(&checkpoints);
    // The head a previous pass saw: every record up to it was committed before the next pass.
    let mut seen: Option<ChainHead> = None;
    let head = loop {
        walk_pages(store, &mut walk).await?;
        if walk.problem.is_some() {
            break read_head(store).await?;
        }
        if let Some(seen) = seen.take()
            && walk.last_seq < seen.seq
        {
            walk.problem = Some(ChainProblem::HeadMismatch {
                head_seq: seen.seq,
                last_seq: walk.last_seq,
            });
            break seen;
        }
        let head = read_head(store).await?;
        if head.seq > walk.last_seq {
            seen = Some(head);
            continue;
        }
        if head.seq != walk.last_seq || head.hash != walk.last_hash {
            walk.problem = Some(ChainProblem::HeadMismatch {
                head_seq: head.seq,
                last_seq: walk.last_seq,
            });
        }
        break head;
    };
    let problem = match walk.problem.take() {
        Some(problem) => Some(problem),
        None => walk.checkpoint_problem(),
    };
    Ok(VerifyReport {
        records: walk.records,
        checkpoints: checkpoints.lines,
        head,
        problem,
    })
}

async fn walk_pages(store: &Store, walk: &mut Walk<'_>) -> Result<(), AuditError> {
    const SQL: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM audit_records WHERE seq > $1 ORDER BY seq LIMIT $2"
    );
    loop {
        let page: Vec<Result<StoredRecord, BadRow>> = on_pool!(store, pool => {
            let rows = sqlx::query(SQL)
                .bind(walk.cursor)
                .bind(PAGE as i64)
                .fetch_all(pool)
                .await?;
            rows.iter().map(read_row).collect::<Result<_, sqlx::Error>>()?
        });
        let full = page.len() == PAGE;
        for row in page {
            walk.visit(row);
        }
        if !full {
            return Ok(());
        }
    }
}

/// The walk's state between pages.
struct Walk<'c> {
    checkpoints: &'c Checkpoints,
    /// The last seq read, valid or not: where the next page starts.
    cursor: i64,
    /// The last record of the valid chain so far.
    last_seq: i64,
    last_hash: String,
    records: i64,
    problem: Option<ChainProblem>,
    /// Checkpoints that disagree with a record, as (line, problem).
    mismatches: Vec<(usize, ChainProblem)>,
}

impl<'c> Walk<'c> {
    fn new(checkpoints: &'c Checkpoints) -> Self {
        Self {
            checkpoints,
            cursor: 0,
            last_seq: 0,
            last_hash: GENESIS_HASH.to_string(),
            records: 0,
            problem: None,
            mismatches: Vec::new(),
        }
    }

    fn visit(&mut self, row: Result<StoredRecord, BadRow>) {
        let seq = match &row {
            Ok(stored) => stored.seq,
            Err(bad) => bad.seq,
        };
        self.records += 1;
        self.cursor = seq;
        if self.problem.is_some() {
            return;
        }
        if seq != self.last_seq + 1 {
            self.problem = Some(ChainProblem::MissingRecords {
                after: self.last_seq,
                next: seq,
            });
            return;
        }
        let stored = match row {
            Ok(stored) => stored,
            Err(_) => {
                self.problem = Some(ChainProblem::EditedRecord { seq });
                return;
            }
        };
        if stored.prev_hash != self.last_hash {
            self.problem = Some(ChainProblem::BrokenLink { seq });
            return;
        }
        if record_hash(&stored.prev_hash, seq, &stored.record) != stored.hash {
            self.problem = Some(ChainProblem::EditedRecord { seq });
            return;
        }
        for (line, hash) in self.checkpoints.at(seq) {
            if *hash != stored.hash {
                self.mismatches
                    .push((*line, ChainProblem::CheckpointMismatch { seq, line: *line }));
            }
        }
        self.last_seq = seq;
        self.last_hash = stored.hash;
    }

    /// The checkpoint problem on the earliest line, once the whole chain held.
    fn checkpoint_problem(&mut self) -> Option<ChainProblem> {
        let checkpoints = self.checkpoints;
        let mut problems = std::mem::take(&mut self.mismatches);
        problems.extend(checkpoints.bad.iter().map(|(line, reason)| {
            (
                *line,
                ChainProblem::BadCheckpoint {
                    line: *line,
                    reason: reason.clone(),
                },
            )
        }));
        for (seq, lines) in &checkpoints.by_seq {
            for (line, hash) in lines {
                if *seq > self.last_seq {
                    problems.push((
                        *line,
                        ChainProblem::TruncatedTail {
                            checkpoint_seq: *seq,
                            last_seq: self.last_seq,
                        },
                    ));
                } else if *seq == 0 && hash != GENESIS_HASH {
                    problems.push((
                        *line,
                        ChainProblem::CheckpointMismatch {
                            seq: 0,
                            line: *line,
                        },
                    ));
                }
            }
        }
        problems
            .into_iter()
            .min_by_key(|(line, _)| *line)
            .map(|(_, problem)| problem)
    }
}

/// The checkpoint file, checked line by line before the walk.
#[derive(Debug, Default)]
struct Checkpoints {
    /// Non-empty lines.
    lines: usize,
    /// Valid checkpoints: seq → (line, hash) for every line naming it.
    by_seq: BTreeMap<i64, Vec<(usize, String)>>,
    /// Lines that are not valid checkpoints: (line, why).
    bad: Vec<(usize, String)>,
}

impl Checkpoints {
    fn at(&self, seq: i64) -> &[(usize, String)] {
        self.by_seq.get(&seq).map_or(&[], Vec::as_slice)
    }
}

async fn read_checkpoints(path: &Path, verifier: &Verifier) -> Result<Checkpoints, AuditError> {
    let owned = path.to_path_buf();
    let verifier = verifier.clone();
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    tokio::task::spawn_blocking(move || parse_checkpoints(&owned, &verifier))
        .await
        .map_err(|error| io(std::io::Error::other(error)))?
        .map_err(io)
}

fn parse_checkpoints(path: &Path, verifier: &Verifier) -> std::io::Result<Checkpoints> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Checkpoints::default());
        }
        Err(error) => return Err(error),
    };
    let mut reader = std::io::BufReader::new(file);
    let mut checkpoints = Checkpoints::default();
    let mut buffer = Vec::with_capacity(512);
    let mut number = 0;
    loop {
        buffer.clear();
        let read = reader
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buffer)?;
        if read == 0 {
            break;
        }
        number += 1;
        if buffer.len() > MAX_LINE_BYTES {
            // Skip the rest of an overlong line; it cannot be a checkpoint.
            if buffer.last() != Some(&b'\n') {
                let mut rest = Vec::new();
                while reader
                    .by_ref()
                    .take(MAX_LINE_BYTES as u64)
                    .read_until(b'\n', &mut rest)?
                    > 0
                    && rest.last() != Some(&b'\n')
                {
                    rest.clear();
                }
            }
            checkpoints.lines += 1;
            checkpoints
                .bad
                .push((number, format!("longer than {MAX_LINE_BYTES} bytes")));
            continue;
        }
        let Ok(text) = std::str::from_utf8(&buffer) else {
            checkpoints.lines += 1;
            checkpoints.bad.push((number, "not UTF-8 text".to_string()));
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        checkpoints.lines += 1;
        match check_line(text, verifier) {
            Ok(claims) => checkpoints
                .by_seq
                .entry(claims.seq)
                .or_default()
                .push((number, claims.hash)),
            Err(reason) => checkpoints.bad.push((number, reason)),
        }
    }
    Ok(checkpoints)
}

fn check_line(line: &str, verifier: &Verifier) -> Result<CheckpointClaims, String> {
    let claims: CheckpointClaims = verifier
        .verify(CHECKPOINT_TYPE, line)
        .map_err(|error| error.to_string())?;
    if claims.iss != CHECKPOINT_ISSUER {
        return Err(format!(
            "issued by `{}`, not `{CHECKPOINT_ISSUER}`",
            claims.iss.chars().take(40).collect::<String>()
        ));
    }
    if claims.seq < 0 {
        return Err(format!(
            "it names record {}, which cannot exist",
            claims.seq
        ));
    }
    let hex = claims.hash.len() == 64
        && claims
            .hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex {
        return Err("its hash is not 64 lowercase hex digits".to_string());
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::audit::chain::AuditLog;
    use crate::audit::checkpoint::write_checkpoint;
    use crate::audit::testing::{AuditStore, record};
    use crate::signing::SigningKey;
    use crate::store::testing::{TestStore, on_both_stores};

    /// A chain of six records, and a checkpoint at 3 and at 6.
    async fn six(db: &TestStore) -> (AuditLog, SigningKey, PathBuf) {
        let log = db.log(Duration::from_secs(5));
        let key = SigningKey::load_or_create(&db.dir.path().join("key.pem")).unwrap();
        let path = db.dir.path().join("checkpoints.jsonl");
        log.append((1..=3).map(|n| record("C0000001", n)).collect())
            .await
            .unwrap();
        write_checkpoint(&log, &key, &path).await.unwrap().unwrap();
        log.append(vec![record("C0000002", 4)]).await.unwrap();
        log.append(vec![record("C0000001", 5), record("C0000002", 6)])
            .await
            .unwrap();
        write_checkpoint(&log, &key, &path).await.unwrap().unwrap();
        (log, key, path)
    }

    async fn problem(db: &TestStore, key: &SigningKey, path: &Path) -> Option<ChainProblem> {
        verify(&db.store, path, key.verifier())
            .await
            .unwrap()
            .problem
    }

    on_both_stores!(
        sqlite "audit.db",
        postgres &["audit_records"];
        an_untouched_chain_and_its_checkpoints_verify,
        an_edited_record_is_named,
        an_unreadable_record_is_an_edited_record,
        a_deleted_record_is_named,
        a_replaced_record_breaks_the_next_link,
        a_cut_tail_with_a_rewound_head_is_caught_only_by_a_checkpoint,
        a_head_that_disagrees_with_the_chain_is_named,
        altered_and_foreign_checkpoint_lines_are_named,
        a_long_chain_is_walked_page_by_page,
    );

    async fn an_untouched_chain_and_its_checkpoints_verify(db: &TestStore) {
        let (log, key, path) = six(db).await;
        let report = verify(&db.store, &path, key.verifier()).await.unwrap();
        assert_eq!(
            report,
            VerifyReport {
                records: 6,
                checkpoints: 2,
                head: log.head().await.unwrap(),
                problem: None,
            }
        );
        // Without a checkpoint file the chain itself still verifies.
        let report = verify(
            &db.store,
            &db.dir.path().join("absent.jsonl"),
            key.verifier(),
        )
        .await
        .unwrap();
        assert_eq!((report.checkpoints, report.problem), (0, None));
    }

    async fn an_edited_record_is_named(db: &TestStore) {
        let (_, key, path) = six(db).await;
        db.drop_triggers().await;
        db.execute("UPDATE audit_records SET purpose = 'fraud-investigation' WHERE seq = 4")
            .await;
        let found = problem(db, &key, &path).await.unwrap();
        assert_eq!(found, ChainProblem::EditedRecord { seq: 4 });
        assert_eq!(found.record(), Some(4));
        assert_eq!(
            found.to_string(),
            "record 4 does not match its hash: it was changed after it was written"
        );
    }

    async fn an_unreadable_record_is_an_edited_record(db: &TestStore) {
        let (_, key, path) = six(db).await;
        db.drop_triggers().await;
        db.execute("UPDATE audit_records SET categories = 'not json' WHERE seq = 2")
            .await;
        assert_eq!(
            problem(db, &key, &path).await,
            Some(ChainProblem::EditedRecord { seq: 2 })
        );
    }

    async fn a_deleted_record_is_named(db: &TestStore) {
        let (_, key, path) = six(db).await;
        db.drop_triggers().await;
        db.execute("DELETE FROM audit_records WHERE seq = 4").await;
        let report = verify(&db.store, &path, key.verifier()).await.unwrap();
        let found = report.problem.unwrap();
        assert_eq!(found, ChainProblem::MissingRecords { after: 3, next: 5 });
        assert_eq!(found.record(), Some(4));
        assert_eq!(
            found.to_string(),
            "record 4 is missing: the chain jumps from record 3 to record 5"
        );
        assert_eq!(report.records, 5, "the walk still counts every record");
    }

    async fn a_replaced_record_breaks_the_next_link(db: &TestStore) {
        let (_, key, path) = six(db).await;
        db.drop_triggers().await;
        db.execute("UPDATE audit_records SET prev_hash = hash WHERE seq = 3")
            .await;
        assert_eq!(
            problem(db, &key, &path).await,
            Some(ChainProblem::BrokenLink { seq: 3 })
        );
    }

    async fn a_cut_tail_with_a_rewound_head_is_caught_only_by_a_checkpoint(db: &TestStore) {
        let (log, key, path) = six(db).await;
        db.drop_triggers().await;
        // Cut records 5 and 6 and rewind the head so the rest is a perfect chain.
        db.execute(
            "DELETE FROM audit_records WHERE seq > 4; \
             UPDATE audit_head SET last_seq = 4, \
             last_hash = (SELECT hash FROM audit_records WHERE seq = 4) WHERE id = 1;",
        )
        .await;
        assert_eq!(log.head().await.unwrap().seq, 4);
        let without = verify(
            &db.store,
            &db.dir.path().join("absent.jsonl"),
            key.verifier(),
        )
        .await
        .unwrap();
        assert_eq!(without.problem, None, "the database alone cannot tell");
        let found = problem(db, &key, &path).await.unwrap();
        assert_eq!(
            found,
            ChainProblem::TruncatedTail {
                checkpoint_seq: 6,
                last_seq: 4
            }
        );
        assert_eq!(found.record(), Some(5));
    }

    async fn a_head_that_disagrees_with_the_chain_is_named(db: &TestStore) {
        let (_, key, path) = six(db).await;
        db.drop_triggers().await;
        db.execute("UPDATE audit_head SET last_seq = 5 WHERE id = 1")
            .await;
        assert_eq!(
            problem(db, &key, &path).await,
            Some(ChainProblem::HeadMismatch {
                head_seq: 5,
                last_seq: 6
            })
        );
        db.execute(
            "UPDATE audit_head SET last_seq = 6, \
             last_hash = (SELECT prev_hash FROM audit_records WHERE seq = 6) WHERE id = 1",
        )
        .await;
        assert_eq!(
            problem(db, &key, &path).await,
            Some(ChainProblem::HeadMismatch {
                head_seq: 6,
                last_seq: 6
            })
        );
        db.execute("UPDATE audit_head SET last_seq = 9 WHERE id = 1")
            .await;
        assert_eq!(
            problem(db, &key, &path).await,
            Some(ChainProblem::HeadMismatch {
                head_seq: 9,
                last_seq: 6
            })
        );
    }

    async fn altered_and_foreign_checkpoint_lines_are_named(db: &TestStore) {
        let (log, key, path) = six(db).await;
        let original = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = original.lines().collect();

        // The second line's payload re-encoded to claim another seq: the signature fails.
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts: Vec<String> = lines[1].split('.').map(str::to_string).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&engine.decode(&parts[1]).unwrap()).unwrap();
        claims["seq"] = serde_json::json!(5);
        parts[1] = engine.encode(claims.to_string());
        std::fs::write(&path, format!("{}\n{}\n", lines[0], parts.join("."))).unwrap();
        let found = problem(db, &key, &path).await.unwrap();
        assert_eq!(
            found,
            ChainProblem::BadCheckpoint {
                line: 2,
                reason: "the signature does not match: the document was altered or not signed by this key".to_string()
            }
        );
        assert_eq!((found.record(), found.line()), (None, Some(2)));

        // A line that is not a checkpoint at all, after a blank line.
        std::fs::write(&path, format!("{}\n\nnot a checkpoint\n", lines[0])).unwrap();
        assert!(matches!(
            problem(db, &key, &path).await,
            Some(ChainProblem::BadCheckpoint { line: 3, .. })
        ));

        // Signed by another key.
        let other = SigningKey::load_or_create(&db.dir.path().join("other.pem")).unwrap();
        let foreign = db.dir.path().join("foreign.jsonl");
        write_checkpoint(&log, &other, &foreign).await.unwrap();
        let Some(ChainProblem::BadCheckpoint { line: 1, reason }) =
            problem(db, &key, &foreign).await
        else {
            panic!("a foreign checkpoint is bad");
        };
        assert!(reason.starts_with("signed by another key"), "{reason}");

        // Validly signed, but with another hash than the record has.
        let forged = CheckpointClaims {
            seq: 2,
            hash: "ab".repeat(32),
            at: 0,
            iss: CHECKPOINT_ISSUER.to_string(),
        };
        let line = key.sign(CHECKPOINT_TYPE, &forged).unwrap();
        std::fs::write(&path, format!("{original}{line}\n")).unwrap();
        assert_eq!(
            problem(db, &key, &path).await,
            Some(ChainProblem::CheckpointMismatch { seq: 2, line: 3 })
        );

        // An overlong line.
        std::fs::write(
            &path,
            format!("{original}{}\n{}\n", "x".repeat(10_000), lines[0]),
        )
        .unwrap();
        assert_eq!(
            problem(db, &key, &path).await,
            Some(ChainProblem::BadCheckpoint {
                line: 3,
                reason: "longer than 4096 bytes".to_string()
            })
        );
        let report = verify(&db.store, &path, key.verifier()).await.unwrap();
        assert_eq!(report.checkpoints, 4);
    }

    async fn a_long_chain_is_walked_page_by_page(db: &TestStore) {
        let log = db.log(Duration::from_secs(30));
        let key = SigningKey::load_or_create(&db.dir.path().join("key.pem")).unwrap();
        let path = db.dir.path().join("checkpoints.jsonl");
        log.append(
            (0..(PAGE as u32 * 2 + 10))
                .map(|n| record("C0000001", n))
                .collect(),
        )
        .await
        .unwrap();
        write_checkpoint(&log, &key, &path).await.unwrap();
        let report = verify(&db.store, &path, key.verifier()).await.unwrap();
        assert_eq!(
            (report.records, report.problem),
            (PAGE as i64 * 2 + 10, None)
        );
        db.drop_triggers().await;
        db.execute(&format!(
            "UPDATE audit_records SET basis = 'self' WHERE seq = {}",
            PAGE + 7
        ))
        .await;
        assert_eq!(
            problem(db, &key, &path).await,
            Some(ChainProblem::EditedRecord {
                seq: PAGE as i64 + 7
            })
        );
    }
}
