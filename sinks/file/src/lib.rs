//! The file sink: one JSON Lines (or other line format) file per source and
//! day, rotation by size with optional gzip/zstd, reopen on SIGHUP.
//!
//! A batch is acknowledged once every line is written and flushed to the OS
//! and, with `fsync = "batch"` (the default), fsynced. A batch that fails
//! part-way (a full disk, a short write) is cut out of every file it
//! touched before it is retried, so it lands whole or not at all. A crash
//! can leave a half-written last line; the next open cuts it off (its batch
//! was not acknowledged and comes again), so readers never see a partial
//! record. Every file the sink creates, rotated and compressed ones
//! included, gets the configured `mode`; rotated files are compressed by
//! one worker thread, which a restart resumes if a crash interrupted it.
#![deny(missing_docs, unreachable_pub)]

mod compress;
mod config;
mod durable;
mod writer;

use std::io;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use auditfwd_sink::{
    ConfigProblem, Delivered, Descriptors, Pending, Record, Rejected, Sink, SinkContext, SinkError,
    SinkFactory,
};
use chrono::Utc;

pub use config::{
    Compression, DEFAULT_MAX_OPEN_FILES, FileMode, FileSinkConfig, FsyncPolicy, MAX_OPEN_FILES,
    PathTemplate, RawFileSinkConfig,
};
use writer::Writer;

/// The file sink's type, `type = "file"`, for the host's registry.
pub struct FileSinkFactory;

impl SinkFactory for FileSinkFactory {
    const TYPE: &'static str = "file";
    type Raw = RawFileSinkConfig;
    type Config = FileSinkConfig;

    fn validate(raw: RawFileSinkConfig) -> Result<FileSinkConfig, Vec<ConfigProblem>> {
        raw.validate()
    }

    fn build(config: &FileSinkConfig, context: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(FileSink::new(context.name(), config.clone())))
    }

    /// One file per source it writes with `{source}` in the path, at most
    /// `max_open_files`; one for all otherwise.
    fn descriptors(config: &FileSinkConfig, sources: usize) -> Descriptors {
        let files = if config.path.per_source() {
            sources.min(config.max_open_files.get())
        } else {
            sources.min(1)
        };
        Descriptors {
            files,
            connections: 0,
        }
    }
}

/// Writes records as lines to files.
pub struct FileSink {
    name: String,
    config: FileSinkConfig,
    writer: Arc<Mutex<Writer>>,
    /// Held through one group commit (its fsyncs run without the writer's
    /// lock, so that the next batches are appended meanwhile).
    syncing: Arc<Mutex<()>>,
}

impl FileSink {
    /// A file sink called `name`. Files are opened lazily, on first write.
    pub fn new(name: impl Into<String>, config: FileSinkConfig) -> Self {
        let writer = Writer::new(&config);
        Self {
            name: name.into(),
            config,
            writer: Arc::new(Mutex::new(writer)),
            syncing: Arc::new(Mutex::new(())),
        }
    }

    /// Appends the batch's lines (not yet durable) and returns its number
    /// for [`FileSink::sync`], with the records refused for a line break.
    async fn append(&self, batch: &[Record]) -> Result<(Delivered, Option<u64>), SinkError> {
        let mut delivered = Delivered::default();
        let mut lines = Vec::with_capacity(batch.len());
        for (index, record) in batch.iter().enumerate() {
            if record.has_line_break() {
                delivered.rejected.push(Rejected::line_break(index));
                continue;
            }
            lines.push((record.event.clone(), record.payload.clone()));
        }
        if lines.is_empty() {
            return Ok((delivered, None));
        }
        let seq = self
            .blocking("write the batch", move |w| {
                w.append_batch(
                    lines.iter().map(|(e, p)| (e.source.as_str(), p.as_ref())),
                    Utc::now(),
                )
            })
            .await?;
        Ok((delivered, Some(seq)))
    }

    /// Makes batch `seq` durable: one group commit (flush and fsync of
    /// every file written since the last) unless a later batch's already
    /// covered it.
    fn sync(&self, seq: u64) -> impl Future<Output = Result<(), SinkError>> + Send + 'static {
        let (writer, syncing) = (self.writer.clone(), self.syncing.clone());
        in_blocking_pool(self.name.clone(), "write the batch", move || {
            let _one_at_a_time = syncing.lock().unwrap_or_else(|p| p.into_inner());
            let lock = || writer.lock().unwrap_or_else(|p| p.into_inner());
            let Some(job) = lock().start_sync(seq)? else {
                return Ok(());
            };
            let result = job.run();
            lock().finish_sync(job, result)
        })
    }

    /// Runs `f` on the writer in the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Writer) -> io::Result<T> + Send + 'static,
    ) -> Result<T, SinkError> {
        let writer = self.writer.clone();
        in_blocking_pool(self.name.clone(), what, move || {
            f(&mut writer.lock().unwrap_or_else(|p| p.into_inner()))
        })
        .await
    }
}

/// Runs `f` in the blocking pool (file I/O and fsync must not stall the
/// async workers); its error says what the sink `name` could not do.
async fn in_blocking_pool<T: Send + 'static>(
    name: String,
    what: &'static str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, SinkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            SinkError::transient(format!("file sink `{name}`: {what} task failed")).with_source(e)
        })?
        .map_err(|e| io_error(&name, what, e))
}

fn io_error(name: &str, what: &str, error: io::Error) -> SinkError {
    let message = format!("file sink `{name}`: cannot {what}");
    match error.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            SinkError::permanent(format!(
                "{message} (check that the auditfwd user may write the directory in `path`)"
            ))
            .with_source(error)
        }
        _ => SinkError::transient(message).with_source(error),
    }
}

#[async_trait]
impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn healthcheck(&mut self) -> Result<(), SinkError> {
        let probe = self
            .writer
            .lock()
            .unwrap()
            .render("healthcheck", Utc::now());
        self.blocking("write to the output directory", move |_| {
            let path = probe?;
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            // Only the static part of the template must exist or be creatable;
            // per-source directories are created on first write.
            let mut existing = dir;
            while !existing.exists() {
                match existing.parent() {
                    Some(p) if !p.as_os_str().is_empty() => existing = p,
                    _ => return Ok(()),
                }
            }
            let tmp = tempfile_in(existing)?;
            std::fs::remove_file(tmp)
        })
        .await
    }

    async fn deliver(&mut self, batch: &[Record]) -> Result<Delivered, SinkError> {
        let (delivered, seq) = self.append(batch).await?;
        if let Some(seq) = seq {
            self.sync(seq).await?;
        }
        Ok(delivered)
    }

    /// Appends the batch now and syncs it when the pipeline awaits it:
    /// batches appended while an earlier group's fsyncs run share the next
    /// group's, so a backfill pays one fsync per file for several pages.
    async fn submit(&mut self, batch: Arc<[Record]>) -> Pending {
        match self.append(&batch).await {
            Err(error) => Box::pin(std::future::ready(Err(error))),
            Ok((delivered, None)) => Box::pin(std::future::ready(Ok(delivered))),
            Ok((delivered, Some(seq))) => {
                let sync = self.sync(seq);
                Box::pin(async move {
                    sync.await?;
                    Ok(delivered)
                })
            }
        }
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.blocking("close output files", |w| w.close()).await
    }

    async fn reopen(&mut self) -> Result<(), SinkError> {
        tracing::info!(sink = %self.name, "reopening output files");
        self.blocking("reopen output files", |w| w.reopen()).await
    }
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("name", &self.name)
            .field("path", &self.config.path)
            .finish()
    }
}

/// Creates an empty probe file in `dir`, proving it is writable.
fn tempfile_in(dir: &std::path::Path) -> io::Result<std::path::PathBuf> {
    let path = dir.join(format!(".auditfwd-probe-{}", std::process::id()));
    std::fs::File::create(&path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditfwd_sink::testing::{conformance, hostile_events, records, sample_events};
    use std::time::Duration;

    fn config(template: impl Into<String>) -> FileSinkConfig {
        RawFileSinkConfig::new(template).validate().unwrap()
    }

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let template = format!("{}/{{source}}/%Y-%m-%d.jsonl", dir.path().display());
        let mut sink = FileSink::new("files", config(template));
        sink.healthcheck().await.unwrap();
        conformance(&mut sink, Duration::from_secs(10)).await;
    }

    #[tokio::test]
    async fn one_line_per_record_in_the_source_file_of_the_day() {
        let dir = tempfile::tempdir().unwrap();
        let template = format!("{}/{{source}}/%Y-%m-%d.jsonl", dir.path().display());
        let mut sink = FileSink::new("files", config(template));
        let mut events = sample_events("acme", 3);
        events.extend(hostile_events("globex"));
        sink.deliver(&records(events)).await.unwrap();
        let day = Utc::now().format("%Y-%m-%d").to_string();
        let acme = lines(&dir.path().join("acme").join(format!("{day}.jsonl")));
        let ids: Vec<_> = acme
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["evt-0", "evt-1", "evt-2"]);
        let globex = lines(&dir.path().join("globex").join(format!("{day}.jsonl")));
        assert_eq!(globex.len(), hostile_events("x").len());
        assert_eq!(globex[0]["action"], "line1\nline2");
    }

    #[tokio::test]
    async fn rotates_by_size_and_compresses() {
        let dir = tempfile::tempdir().unwrap();
        let mut raw = RawFileSinkConfig::new(format!("{}/out.jsonl", dir.path().display()));
        raw.max_bytes = Some(2000);
        raw.compression = Compression::Gzip;
        let mut sink = FileSink::new("files", raw.validate().unwrap());
        let batch = records(sample_events("acme", 40));
        for chunk in batch.chunks(5) {
            sink.deliver(chunk).await.unwrap();
        }
        // Compression runs in the background; wait for it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let total_lines = loop {
            let mut total = 0;
            let mut pending = false;
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                if name.ends_with(".gz") {
                    let mut s = String::new();
                    use std::io::Read;
                    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
                        .read_to_string(&mut s)
                        .unwrap();
                    total += s.lines().count();
                } else if name == "out.jsonl" {
                    total += std::fs::read_to_string(&path).unwrap().lines().count();
                } else {
                    pending = true;
                }
            }
            if !pending || std::time::Instant::now() > deadline {
                break total;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(total_lines, 40);
        let size = std::fs::metadata(dir.path().join("out.jsonl"))
            .unwrap()
            .len();
        assert!(size <= 2000, "current file is {size} bytes");
    }

    #[tokio::test]
    async fn refuses_payloads_with_line_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new("files", config(format!("{}/o.jsonl", dir.path().display())));
        let mut batch = records(sample_events("acme", 2));
        batch[1].payload = bytes::Bytes::from_static(b"{\"id\":1}\n{\"id\":\"forged\"}");
        let delivered = sink.deliver(&batch).await.unwrap();
        assert_eq!(delivered.rejected.len(), 1);
        assert_eq!(delivered.rejected[0].index, 1);
        assert_eq!(lines(&dir.path().join("o.jsonl")).len(), 1);
    }

    #[tokio::test]
    async fn reopen_follows_logrotate_moving_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.jsonl");
        let mut sink = FileSink::new("files", config(path.display().to_string()));
        sink.deliver(&records(sample_events("acme", 2)))
            .await
            .unwrap();
        std::fs::rename(&path, dir.path().join("o.jsonl.1")).unwrap();
        sink.reopen().await.unwrap();
        sink.deliver(&records(sample_events("acme", 1)))
            .await
            .unwrap();
        assert_eq!(lines(&path).len(), 1);
        assert_eq!(lines(&dir.path().join("o.jsonl.1")).len(), 2);
    }
}
