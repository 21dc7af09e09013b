//! Batch access: the mainframe drops fixed-width extract files in a directory; each complete
//! file is decoded whole and loaded into the gateway's store in one transaction, and calls
//! are answered from there with the file's as-of time.
//!
//! A file that is still being written (its size or modification time changes while it is
//! read, or its ready marker is missing) is left for the next look. A file that is not a whole
//! number of records, or holds one record that does not decode, is rejected whole with a log
//! line naming the file, record and field; the previously loaded file keeps serving.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;
use toml::Spanned;

use super::{
    BuildContext, JsonPath, RecordCodec, Selected, find_item, operation_spec, repeats, shape,
    valid_chrono_format,
};
use crate::config::{ExtractConfig, MainframeConfig, Returns};
use crate::connectors::{Arguments, BatchSpec, CallError, OperationSpec, Reply, Template};
use crate::store::{Store, on_pool};

/// One key's records in file order, with the extract's as-of time (a row with a null record
/// when the extract has no such key; no row at all when nothing is loaded).
const LOOKUP: &str = "SELECT e.as_of, r.record FROM mainframe_extracts e \
     LEFT JOIN mainframe_extract_rows r ON r.connector = e.connector AND r.record_key = $2 \
     WHERE e.connector = $1 ORDER BY r.seq";

/// [`LOOKUP`] for `keys` keys at once (`$2` onwards): each key's records in file order, with
/// the extract's as-of time (one row with a null key and record when none of them exists).
fn lookup_many(keys: usize) -> String {
    let list = (0..keys)
        .map(|i| format!("${}", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT e.as_of, r.record_key, r.record FROM mainframe_extracts e \
         LEFT JOIN mainframe_extract_rows r ON r.connector = e.connector \
         AND r.record_key IN ({list}) WHERE e.connector = $1 ORDER BY r.record_key, r.seq"
    )
}

/// Rows per INSERT statement when loading (4 binds each, well under every database's limit).
const INSERT_CHUNK: usize = 500;

/// Keys per batch lookup (one bind each): the batch size the graph is told, and the chunk a
/// longer batch is split into.
const BATCH_KEYS: usize = 500;

/// A directory of extract files served from the store.
#[derive(Debug)]
pub(super) struct Extract {
    connector: String,
    directory: PathBuf,
    pattern: String,
    ready_suffix: Option<String>,
    as_of_format: Option<String>,
    slot: usize,
    max_file_bytes: u64,
    codec: RecordCodec,
    key_field: String,
    /// Where the key field is in decoded records (`None`: it has no single value, so every
    /// record is refused as having no key).
    key_path: Option<JsonPath>,
    poll: Duration,
    operations: HashMap<String, Operation>,
    store: OnceLock<Store>,
    /// Files seen to be bad, so each is logged once rather than on every look.
    rejected: Mutex<HashSet<FileId>>,
    /// The last reason the directory could not be listed, so it is logged once.
    directory_error: Mutex<Option<String>>,
}

#[derive(Debug)]
struct Operation {
    key: Template,
    select: Option<Selected>,
    returns: Returns,
}

/// What identifies one version of one file. The modification time is kept to the
/// microsecond, the precision PostgreSQL stores, so a file read back from the store is
/// recognised as the same file rather than loaded again on every look.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileId {
    name: String,
    size: u64,
    modified: DateTime<Utc>,
}

/// `time` truncated to whole microseconds.
fn to_micros(time: SystemTime) -> DateTime<Utc> {
    let time = DateTime::<Utc>::from(time);
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

/// A file that may be loaded.
#[derive(Debug)]
struct Candidate {
    path: PathBuf,
    id: FileId,
    as_of: DateTime<Utc>,
}

/// Why a file was not loaded.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    /// The file changed while it was read: still being written, try again later.
    #[error("the file changed while it was read")]
    StillWriting,
    /// The file is not a valid extract; it will not be retried until it changes.
    #[error("{0}")]
    Rejected(String),
    /// The directory, the file or the store failed; retried on the next look.
    #[error("{0}")]
    Failed(String),
}

impl Extract {
    pub(super) fn build(
        config: &MainframeConfig,
        extract: &Spanned<ExtractConfig>,
        base: &Path,
        context: &mut BuildContext<'_>,
        specs: &mut BTreeMap<String, OperationSpec>,
    ) -> Option<Self> {
        let settings = extract.get_ref();
        let pattern = settings.pattern.get_ref();
        if pattern.is_empty() || pattern.contains(['/', '\\']) {
            context.error(
                settings.pattern.span(),
                "`pattern` is a file name pattern (`*` and `?`), without directories",
            );
        }
        if let Some(format) = &settings.as_of_format
            && !valid_chrono_format(format.get_ref())
        {
            context.error(
                format.span(),
                format!(
                    "`as_of_format` `{}` is not a valid chrono format",
                    format.get_ref()
                ),
            );
        }
        if settings.poll_ms == 0 {
            context.error(extract.span(), "`poll_ms` must be greater than 0");
        }
        let record = match &settings.record {
            Some(name) => context.record(name).cloned(),
            None => match context.copybook.record(None) {
                Some(record) => Some(record.clone()),
                None => {
                    context.error(
                        extract.span(),
                        "the copybook has several records; say which one the files hold with `record`",
                    );
                    None
                }
            },
        }?;
        let key = settings.key.get_ref();
        match find_item(&record, key) {
            None => context.error(
                settings.key.span(),
                format!(
                    "`key` `{key}` is not a field of record `{}`",
                    record.display_name()
                ),
            ),
            Some(item) if !matches!(item.kind, super::ItemKind::Field(_)) => context.error(
                settings.key.span(),
                format!("`key` `{key}` is a group; it must be an elementary field"),
            ),
            Some(_) if repeats(&record, key) => context.error(
                settings.key.span(),
                format!(
                    "`key` `{key}` is inside an OCCURS table; it must have one value per record"
                ),
            ),
            Some(_) => {}
        }
        let record_len = record.total_size();
        let slot = settings.record_length.unwrap_or(record_len);
        if slot < record_len || slot == 0 {
            context.error(
                extract.span(),
                format!(
                    "`record_length` {slot} is shorter than record `{}` ({record_len} bytes)",
                    record.display_name()
                ),
            );
        }

        let span = settings
            .record
            .as_ref()
            .map_or(extract.span(), Spanned::span);
        let codec = context.codec(&record, span);
        let mut operations = HashMap::new();
        for (name, op) in &config.operations {
            for (present, what) in [
                (op.request.is_some(), "request"),
                (op.response.is_some(), "response"),
                (op.transaction.is_some(), "transaction"),
                (!op.set.is_empty(), "set"),
                (op.status.is_some(), "status"),
                (op.batch.is_some(), "batch"),
            ] {
                if present {
                    context.error(
                        name.span(),
                        format!(
                            "operation `{}`: `{what}` is for online connectors; extract operations look records up by `key`",
                            name.get_ref()
                        ),
                    );
                }
            }
            let Some(key_template) = &op.key else {
                context.error(
                    name.span(),
                    format!(
                        "operation `{}` needs `key`, e.g. `key = \"{{case_number}}\"`",
                        name.get_ref()
                    ),
                );
                continue;
            };
            let template = match Template::parse(key_template.get_ref()) {
                Ok(template) if template.placeholders().is_empty() => {
                    context.error(
                        key_template.span(),
                        "`key` needs a `{placeholder}`; a fixed key would answer every citizen alike",
                    );
                    continue;
                }
                Ok(template) => template,
                Err((_, message)) => {
                    context.error(key_template.span(), message);
                    continue;
                }
            };
            if let Some(select) = &op.select
                && find_item(&record, select.get_ref()).is_none()
            {
                context.error(
                    select.span(),
                    format!(
                        "`select` names `{}`, which is not an item of record `{}`",
                        select.get_ref(),
                        record.display_name()
                    ),
                );
            }
            let required = template
                .placeholders()
                .iter()
                .map(|p| p.to_string())
                .collect();
            // A key of one placeholder batches on its own: many keys are one store query.
            let batch = template.sole_placeholder().map(|key| BatchSpec {
                key: key.to_string(),
                max: BATCH_KEYS,
            });
            specs.insert(
                name.get_ref().clone(),
                operation_spec(context.file, name, required, op.description.clone(), batch),
            );
            operations.insert(
                name.get_ref().clone(),
                Operation {
                    key: template,
                    select: op.select.as_ref().map(|select| {
                        Selected(codec.as_ref().and_then(|c| c.locate(select.get_ref())))
                    }),
                    returns: op.returns.unwrap_or(Returns::Many),
                },
            );
        }
        let codec = codec?;
        let key_path = codec.locate(key);
        let directory = Path::new(settings.directory.get_ref());
        Some(Self {
            connector: config.name.get_ref().clone(),
            directory: if directory.is_absolute() {
                directory.to_path_buf()
            } else {
                base.join(directory)
            },
            pattern: pattern.clone(),
            ready_suffix: settings.ready_suffix.clone().filter(|s| !s.is_empty()),
            as_of_format: settings.as_of_format.as_ref().map(|f| f.get_ref().clone()),
            slot,
            max_file_bytes: settings.max_file_bytes,
            codec,
            key_field: key.to_ascii_uppercase(),
            key_path,
            poll: Duration::from_millis(settings.poll_ms.max(1)),
            operations,
            store: OnceLock::new(),
            rejected: Mutex::new(HashSet::new()),
            directory_error: Mutex::new(None),
        })
    }

    /// Takes the store, loads the newest complete file, then keeps looking every `poll_ms`
    /// for as long as the connector lives.
    pub(super) async fn attach(this: &Arc<Self>, store: Store) {
        if this.store.set(store).is_err() {
            return; // attached already
        }
        this.look().await;
        let weak: Weak<Self> = Arc::downgrade(this);
        let poll = this.poll;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(poll).await;
                let Some(extract) = weak.upgrade() else {
                    return;
                };
                extract.look().await;
            }
        });
    }

    /// One look at the directory: loads the newest complete file newer than what is served.
    pub(super) async fn look(&self) {
        let Some(store) = self.store.get() else {
            return;
        };
        let current = match self.current(store).await {
            Ok(current) => current,
            Err(error) => {
                tracing::warn!(connector = %self.connector, %error, "Cannot read which extract is loaded.");
                return;
            }
        };
        let candidates = match self.candidates().await {
            Ok(candidates) => {
                self.directory_problem(None);
                candidates
            }
            Err(error) => {
                self.directory_problem(Some(error));
                return;
            }
        };
        for candidate in candidates {
            if let Some((id, as_of)) = &current
                && (*id == candidate.id || *as_of > candidate.as_of)
            {
                return; // everything further is older than what is served
            }
            if self.is_rejected(&candidate.id) {
                continue;
            }
            match self.load(store, &candidate).await {
                Ok(records) => {
                    tracing::info!(
                        connector = %self.connector,
                        file = %candidate.id.name,
                        records,
                        as_of = %candidate.as_of.to_rfc3339(),
                        "Loaded extract file."
                    );
                    return;
                }
                Err(LoadError::StillWriting) => {
                    tracing::debug!(connector = %self.connector, file = %candidate.id.name, "Extract file is still being written.");
                }
                Err(LoadError::Rejected(reason)) => {
                    tracing::error!(
                        connector = %self.connector,
                        file = %candidate.id.name,
                        %reason,
                        "Rejected extract file; the previous data keeps serving."
                    );
                    self.reject(candidate.id);
                }
                Err(LoadError::Failed(reason)) => {
                    tracing::warn!(
                        connector = %self.connector,
                        file = %candidate.id.name,
                        %reason,
                        "Could not load extract file; will try again."
                    );
                    return;
                }
            }
        }
    }

    /// Logs a directory that cannot be listed once per distinct problem, not on every look,
    /// and once more when it can be listed again.
    fn directory_problem(&self, error: Option<std::io::Error>) {
        let mut last = self
            .directory_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match error {
            Some(error) => {
                let text = error.to_string();
                if last.as_deref() != Some(text.as_str()) {
                    tracing::warn!(
                        connector = %self.connector,
                        directory = %self.directory.display(),
                        %error,
                        "Cannot list the extract directory; will keep looking."
                    );
                    *last = Some(text);
                }
            }
            None => {
                if last.take().is_some() {
                    tracing::info!(
                        connector = %self.connector,
                        directory = %self.directory.display(),
                        "The extract directory can be listed again."
                    );
                }
            }
        }
    }

    /// Remembers a bad file; `true` the first time, so the caller logs it once.
    fn reject(&self, id: FileId) -> bool {
        self.rejected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id)
    }

    fn is_rejected(&self, id: &FileId) -> bool {
        self.rejected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(id)
    }

    /// The file the store serves for this connector, and its as-of time.
    async fn current(&self, store: &Store) -> Result<Option<(FileId, DateTime<Utc>)>, sqlx::Error> {
        const SQL: &str = "SELECT file_name, file_size, file_modified, as_of \
                           FROM mainframe_extracts WHERE connector = $1";
        let row: Option<(String, i64, DateTime<Utc>, DateTime<Utc>)> = on_pool!(store, pool => {
            sqlx::query_as(SQL).bind(&self.connector).fetch_optional(pool).await?
        });
        Ok(row.map(|(name, size, modified, as_of)| {
            (
                FileId {
                    name,
                    size: u64::try_from(size).unwrap_or(0),
                    // Written truncated to microseconds (`to_micros`): compares as is.
                    modified,
                },
                as_of,
            )
        }))
    }

    /// Complete-looking files matching the pattern, newest as-of first.
    async fn candidates(&self) -> std::io::Result<Vec<Candidate>> {
        let mut entries = tokio::fs::read_dir(&self.directory).await?;
        let mut names = HashSet::new();
        let mut files = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            names.insert(name.clone());
            files.push((name, entry));
        }
        let mut candidates = Vec::new();
        for (name, entry) in files {
            if !glob_match(&self.pattern, &name) {
                continue;
            }
            if let Some(suffix) = &self.ready_suffix {
                if name.ends_with(suffix.as_str()) {
                    continue;
                }
                if !names.contains(&format!("{name}{suffix}")) {
                    continue; // not finished yet
                }
            }
            let metadata = entry.metadata().await?;
            if !metadata.is_file() {
                continue;
            }
            let modified = to_micros(metadata.modified()?);
            let as_of = match &self.as_of_format {
                Some(format) => match as_of_from_name(&name, format) {
                    Some(as_of) => as_of,
                    None => {
                        let id = FileId {
                            name: name.clone(),
                            size: metadata.len(),
                            modified,
                        };
                        if self.reject(id) {
                            tracing::error!(
                                connector = %self.connector,
                                file = %name,
                                format = %format,
                                "Extract file name does not match `as_of_format`; the file is ignored."
                            );
                        }
                        continue;
                    }
                },
                None => modified,
            };
            candidates.push(Candidate {
                path: entry.path(),
                id: FileId {
                    name,
                    size: metadata.len(),
                    modified,
                },
                as_of,
            });
        }
        candidates.sort_by(|a, b| {
            b.as_of
                .cmp(&a.as_of)
                .then_with(|| b.id.name.cmp(&a.id.name))
        });
        Ok(candidates)
    }

    /// Reads, decodes and stores one file; all or nothing.
    async fn load(&self, store: &Store, candidate: &Candidate) -> Result<usize, LoadError> {
        if candidate.id.size > self.max_file_bytes {
            return Err(LoadError::Rejected(format!(
                "the file is {} bytes, more than `max_file_bytes` ({}); it was not read",
                candidate.id.size, self.max_file_bytes
            )));
        }
        let bytes = tokio::fs::read(&candidate.path)
            .await
            .map_err(|e| LoadError::Failed(format!("cannot read the file: {e}")))?;
        let after = tokio::fs::metadata(&candidate.path)
            .await
            .map_err(|e| LoadError::Failed(format!("cannot read the file's metadata: {e}")))?;
        let unchanged = after.len() == candidate.id.size
            && after.modified().ok().map(to_micros) == Some(candidate.id.modified)
            && bytes.len() as u64 == candidate.id.size;
        if !unchanged {
            return Err(LoadError::StillWriting);
        }
        let rows = self.decode_file(&bytes)?;
        self.store_rows(store, candidate, &rows)
            .await
            .map_err(|e| LoadError::Failed(format!("the store failed: {e}")))?;
        Ok(rows.len())
    }

    /// Every record of the file as `(key, JSON text)`; the first bad record rejects the file.
    fn decode_file(&self, bytes: &[u8]) -> Result<Vec<(String, String)>, LoadError> {
        if bytes.is_empty() {
            return Err(LoadError::Rejected("the file is empty".to_string()));
        }
        if !bytes.len().is_multiple_of(self.slot) {
            return Err(LoadError::Rejected(format!(
                "the file is {} bytes, not a whole number of {}-byte records: half-written, or not this copybook's records ({} whole records and {} bytes left over)",
                bytes.len(),
                self.slot,
                bytes.len() / self.slot,
                bytes.len() % self.slot
            )));
        }
        let mut rows = Vec::with_capacity(bytes.len() / self.slot);
        for (index, record) in bytes.chunks_exact(self.slot).enumerate() {
            let number = index + 1;
            let start = index * self.slot;
            let decoded = self.codec.decode(record).map_err(|error| {
                LoadError::Rejected(format!(
                    "record {number} (file bytes {start}..{}): {error}",
                    start + self.slot
                ))
            })?;
            let key = match self.key_path.as_ref().and_then(|path| path.get(&decoded)) {
                Some(Value::String(key)) => key.trim().to_string(),
                Some(Value::Null) | None => {
                    return Err(LoadError::Rejected(format!(
                        "record {number}: key field {} is empty",
                        self.key_field
                    )));
                }
                Some(other) => other.to_string(),
            };
            let json = Value::Object(decoded).to_string();
            rows.push((key, json));
        }
        Ok(rows)
    }

    async fn store_rows(
        &self,
        store: &Store,
        candidate: &Candidate,
        rows: &[(String, String)],
    ) -> Result<(), sqlx::Error> {
        const UPSERT: &str = "INSERT INTO mainframe_extracts \
             (connector, file_name, file_size, file_modified, as_of, loaded_at, records) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (connector) DO UPDATE SET file_name = excluded.file_name, \
             file_size = excluded.file_size, file_modified = excluded.file_modified, \
             as_of = excluded.as_of, loaded_at = excluded.loaded_at, records = excluded.records";
        const CLEAR: &str = "DELETE FROM mainframe_extract_rows WHERE connector = $1";
        let size = i64::try_from(candidate.id.size).unwrap_or(i64::MAX);
        let modified = candidate.id.modified;
        let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        on_pool!(store, pool => {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            // The upsert comes first: on PostgreSQL it locks this connector's row, so two
            // gateway instances loading at once take turns instead of interleaving rows.
            sqlx::query(UPSERT)
                .bind(&self.connector)
                .bind(&candidate.id.name)
                .bind(size)
                .bind(modified)
                .bind(candidate.as_of)
                .bind(Utc::now())
                .bind(count)
                .execute(&mut *tx)
                .await?;
            sqlx::query(CLEAR).bind(&self.connector).execute(&mut *tx).await?;
            for (chunk_index, chunk) in rows.chunks(INSERT_CHUNK).enumerate() {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO mainframe_extract_rows (connector, seq, record_key, record) ",
                );
                insert.push_values(chunk.iter().enumerate(), |mut row, (i, (key, json))| {
                    let seq = i64::try_from(chunk_index * INSERT_CHUNK + i).unwrap_or(i64::MAX);
                    row.push_bind(&self.connector)
                        .push_bind(seq)
                        .push_bind(key)
                        .push_bind(json);
                });
                insert.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Answers an operation from the loaded extract.
    pub(super) async fn call(&self, operation: &str, args: &Arguments) -> Result<Reply, CallError> {
        let op = self
            .operations
            .get(operation)
            .ok_or_else(|| CallError::UnknownOperation(operation.to_string()))?;
        let Some(key) = op.key.render(args, str::to_string)? else {
            return Ok(Reply {
                value: None,
                as_of: None,
            });
        };
        let Some(store) = self.store.get() else {
            return Err(CallError::Unreachable(
                "the extract connector has no store (built by `check` only)".into(),
            ));
        };
        let rows: Vec<(DateTime<Utc>, Option<String>)> = on_pool!(store, pool => {
            sqlx::query_as(LOOKUP)
                .bind(&self.connector)
                .bind(key.trim())
                .fetch_all(pool)
                .await
                .map_err(|e| CallError::Unreachable(Box::new(e)))?
        });
        let Some(as_of) = rows.first().map(|(as_of, _)| *as_of) else {
            return Err(CallError::Unreachable(
                format!(
                    "no extract file has been loaded yet from {}",
                    self.directory.display()
                )
                .into(),
            ));
        };
        let value = answer(op, rows.iter().filter_map(|(_, record)| record.as_deref()))?;
        Ok(Reply {
            value,
            as_of: Some(as_of),
        })
    }

    /// Answers many lookups of an operation with one store query per [`BATCH_KEYS`] distinct
    /// keys; each answer equals [`Extract::call`]'s for its entry, as-of time included.
    pub(super) async fn call_batch(
        &self,
        operation: &str,
        args: &[Arguments],
    ) -> Result<Vec<Reply>, CallError> {
        let op = self
            .operations
            .get(operation)
            .ok_or_else(|| CallError::UnknownOperation(operation.to_string()))?;
        let mut wanted = Vec::with_capacity(args.len());
        let mut distinct: Vec<String> = Vec::new();
        for entry in args {
            let key = op
                .key
                .render(entry, str::to_string)?
                .map(|key| key.trim().to_string());
            if let Some(key) = &key
                && !distinct.contains(key)
            {
                distinct.push(key.clone());
            }
            wanted.push(key);
        }
        let mut answers: HashMap<String, Reply> = HashMap::new();
        if !distinct.is_empty() {
            let Some(store) = self.store.get() else {
                return Err(CallError::Unreachable(
                    "the extract connector has no store (built by `check` only)".into(),
                ));
            };
            for chunk in distinct.chunks(BATCH_KEYS) {
                answers.extend(self.lookup_many(store, op, chunk).await?);
            }
        }
        Ok(wanted
            .into_iter()
            .map(|key| match key.and_then(|key| answers.get(&key)) {
                Some(reply) => reply.clone(),
                None => Reply {
                    value: None,
                    as_of: None,
                },
            })
            .collect())
    }

    /// One store query for `keys`: every key's records in file order, with the as-of time.
    async fn lookup_many(
        &self,
        store: &Store,
        op: &Operation,
        keys: &[String],
    ) -> Result<Vec<(String, Reply)>, CallError> {
        let sql = lookup_many(keys.len());
        let rows: Vec<(DateTime<Utc>, Option<String>, Option<String>)> = on_pool!(store, pool => {
            let mut query = sqlx::query_as(&sql).bind(&self.connector);
            for key in keys {
                query = query.bind(key);
            }
            query
                .fetch_all(pool)
                .await
                .map_err(|e| CallError::Unreachable(Box::new(e)))?
        });
        let Some(as_of) = rows.first().map(|(as_of, _, _)| *as_of) else {
            return Err(CallError::Unreachable(
                format!(
                    "no extract file has been loaded yet from {}",
                    self.directory.display()
                )
                .into(),
            ));
        };
        let mut records: HashMap<&str, Vec<&str>> = HashMap::new();
        for (_, key, record) in &rows {
            if let (Some(key), Some(record)) = (key, record) {
                records.entry(key).or_default().push(record);
            }
        }
        keys.iter()
            .map(|key| {
                let found = records.get(key.as_str()).map_or(&[][..], Vec::as_slice);
                let value = answer(op, found.iter().copied())?;
                Ok((
                    key.clone(),
                    Reply {
                        value,
                        as_of: Some(as_of),
                    },
                ))
            })
            .collect()
    }
}

/// An operation's answer from one key's stored records (JSON text, in file order).
fn answer<'r>(
    op: &Operation,
    records: impl Iterator<Item = &'r str>,
) -> Result<Option<Value>, CallError> {
    let mut selected = Vec::new();
    for record in records {
        let value: Value = serde_json::from_str(record).map_err(|e| CallError::BadResponse {
            reason: format!("stored extract record is not JSON: {e}"),
        })?;
        selected.push(match (&op.select, value) {
            (Some(Selected(path)), Value::Object(map)) => path
                .as_ref()
                .and_then(|path| path.get(&map))
                .cloned()
                .unwrap_or(Value::Null),
            (_, value) => value,
        });
    }
    shape(Value::Array(selected), op.returns)
}

/// `*` matches any run of characters, `?` exactly one; everything else itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (pattern, name): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), name.chars().collect());
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some('?') => {
                p += 1;
                n += 1;
            }
            Some(c) if *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|c| *c == '*')
}

/// The as-of time encoded in a file name by `format` (a date alone means midnight UTC).
fn as_of_from_name(name: &str, format: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(name, format)
        .map(|t| t.and_utc())
        .or_else(|_| {
            NaiveDate::parse_from_str(name, format)
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageConfig;

    /// The lookup must find a key's rows through the key index, never by walking every row
    /// of the connector (it once did: SQLite chose the primary key for the ORDER BY).
    #[tokio::test]
    async fn the_lookup_reads_one_key_through_the_index() {
        let store = Store::connect(&StorageConfig {
            url: "sqlite::memory:".into(),
            max_connections: 1,
        })
        .await
        .expect("in-memory store");
        let Store::Sqlite(pool) = &store else {
            panic!("an SQLite store");
        };
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {LOOKUP}"))
                .bind("benefit_payments")
                .bind("BC00000001")
                .fetch_all(pool)
                .await
                .expect("a query plan");
        let steps: Vec<&str> = plan
            .iter()
            .map(|(_, _, _, detail)| detail.as_str())
            .collect();
        assert!(
            steps
                .iter()
                .any(|s| s.contains("mainframe_extract_rows_by_key") && s.contains("record_key=?")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|s| s.contains("TEMP B-TREE")),
            "the index must give the order too: {steps:?}"
        );
        assert!(
            !steps
                .iter()
                .any(|s| s.contains("sqlite_autoindex_mainframe_extract_rows")),
            "{steps:?}"
        );
    }

    /// A batch reads its keys through the key index too, never by walking the connector.
    #[tokio::test]
    async fn the_batch_lookup_reads_its_keys_through_the_index() {
        let store = Store::connect(&StorageConfig {
            url: "sqlite::memory:".into(),
            max_connections: 1,
        })
        .await
        .expect("in-memory store");
        let Store::Sqlite(pool) = &store else {
            panic!("an SQLite store");
        };
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {}", lookup_many(3)))
                .bind("benefit_payments")
                .bind("BC00000001")
                .bind("BC00000002")
                .bind("BC00000003")
                .fetch_all(pool)
                .await
                .expect("a query plan");
        let steps: Vec<&str> = plan
            .iter()
            .map(|(_, _, _, detail)| detail.as_str())
            .collect();
        assert!(
            steps
                .iter()
                .any(|s| s.contains("mainframe_extract_rows_by_key") && s.contains("record_key=?")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|s| s.starts_with("SCAN r")),
            "no scan of the rows: {steps:?}"
        );
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("BENPAY.*.DAT", "BENPAY.D261122.DAT"));
        assert!(glob_match("BENPAY.*.DAT", "BENPAY..DAT"));
        assert!(!glob_match("BENPAY.*.DAT", "BENPAY.D261122.DAT.READY"));
        assert!(!glob_match("BENPAY.*.DAT", "XBENPAY.1.DAT"));
        assert!(glob_match("A?C*", "ABCDEF"));
        assert!(!glob_match("A?C", "AC"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*X*Y", "aaXbbXccY"));
    }

    #[test]
    fn as_of_comes_from_the_name_with_a_date_or_a_timestamp() {
        let at = as_of_from_name("BENPAY.D20261121.T020000.DAT", "BENPAY.D%Y%m%d.T%H%M%S.DAT");
        assert_eq!(
            at.map(|t| t.to_rfc3339()),
            Some("2026-11-21T02:00:00+00:00".to_string())
        );
        let day = as_of_from_name("BENPAY.D20261121.DAT", "BENPAY.D%Y%m%d.DAT");
        assert_eq!(
            day.map(|t| t.to_rfc3339()),
            Some("2026-11-21T00:00:00+00:00".to_string())
        );
        assert!(as_of_from_name("BENPAY.LATEST.DAT", "BENPAY.D%Y%m%d.DAT").is_none());
    }
}
