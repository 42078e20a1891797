//! The client's journal of unfinished jobs: each accepted job's request is
//! written to `data_dir/jobs/<job>.json` before the job is accepted, and
//! removed when the job ends (done or failed). A client killed mid-job
//! finds its unfinished jobs there when it starts again; status lists them
//! and `lppsp submit --resume JOB` runs one again.
//!
//! Results that came back to the client are appended to
//! `data_dir/jobs/<job>.results` as they arrive (flushed at least every
//! 100 ms, not synced): a resumed job takes them over and runs, and pays
//! for, only the tasks without one. A record lost in a crash only means
//! that task runs again. Each record is the task index (u64, little
//! endian), the result's length (u32, little endian) and its bytes; a
//! record cut short at the end of the file is ignored.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;

use lppsp_core::wire::JobId;
use tracing::warn;

use crate::client::SubmitRequest;

/// The folder of journaled jobs.
#[derive(Debug, Clone)]
pub struct JobJournal {
    dir: PathBuf,
}

impl JobJournal {
    /// The journal under `data_dir`, created if missing.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("jobs");
        crate::private::create_dir(&dir, crate::private::DIR_MODE)?;
        Ok(Self { dir })
    }

    fn path(&self, job: JobId) -> PathBuf {
        self.dir.join(format!("{job}.json"))
    }

    /// Records an accepted job durably (written aside, synced, renamed).
    pub fn record(&self, job: JobId, req: &SubmitRequest) -> std::io::Result<()> {
        use std::io::Write as _;
        let text = serde_json::to_vec(req).map_err(std::io::Error::other)?;
        let tmp = self.dir.join(format!("{job}.json.tmp"));
        let mut file = crate::private::open(
            &tmp,
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true),
        )?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.path(job))?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    fn results_path(&self, job: JobId) -> PathBuf {
        self.dir.join(format!("{job}.results"))
    }

    /// The job ended: forget it and its results.
    pub fn finish(&self, job: JobId) {
        for path in [self.path(job), self.results_path(job)] {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(path = %path.display(), error = %e, "cannot remove a finished job from the journal");
                }
            }
        }
    }

    /// Where `job`'s results are appended from now on.
    pub fn result_log(&self, job: JobId) -> std::io::Result<ResultLog> {
        let file = crate::private::open(
            &self.results_path(job),
            std::fs::OpenOptions::new().create(true).append(true),
        )?;
        Ok(ResultLog {
            file: BufWriter::with_capacity(64 * 1024, file),
            flushed: Instant::now(),
        })
    }

    /// The results kept for unfinished job `old`, handed over to `new` (the
    /// resumed job, which appends to the same file): (task, result) for
    /// every whole record of a task below `tasks`, the last one of a task
    /// winning. Results of up to `max_bytes` each.
    pub fn take_over_results(
        &self,
        old: JobId,
        new: JobId,
        tasks: u64,
        max_bytes: u32,
    ) -> Vec<(u64, Bytes)> {
        let (from, to) = (self.results_path(old), self.results_path(new));
        if let Err(e) = std::fs::rename(&from, &to) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(path = %from.display(), error = %e, "cannot take over the results of a resumed job");
            }
            return Vec::new();
        }
        let data = match std::fs::read(&to) {
            Ok(data) => data,
            Err(e) => {
                warn!(path = %to.display(), error = %e, "cannot read the results of a resumed job");
                return Vec::new();
            }
        };
        let (results, whole) = parse_results(&data, tasks, max_bytes);
        // A record cut short by the crash goes, so that what the resumed
        // job appends is read back whole.
        if whole < data.len() {
            let cut = std::fs::OpenOptions::new()
                .write(true)
                .open(&to)
                .and_then(|f| f.set_len(whole as u64));
            if let Err(e) = cut {
                warn!(path = %to.display(), error = %e, "cannot cut a torn result record");
                let _ = std::fs::remove_file(&to);
            }
        }
        results
    }

    /// The request of unfinished job `job`, if the journal holds it.
    pub fn load(&self, job: JobId) -> Option<SubmitRequest> {
        let text = std::fs::read(self.path(job)).ok()?;
        match serde_json::from_slice(&text) {
            Ok(req) => Some(req),
            Err(e) => {
                warn!(%job, error = %e, "unreadable job in the journal");
                None
            }
        }
    }

    /// Every journaled job, in name order.
    pub fn unfinished(&self) -> Vec<JobId> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut jobs: Vec<JobId> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".json")?.parse().ok()
            })
            .collect();
        jobs.sort_by_key(|j| j.0);
        jobs
    }
}

/// Appends one job's results to its file in the journal.
#[derive(Debug)]
pub struct ResultLog {
    file: BufWriter<File>,
    flushed: Instant,
}

/// Results reach the file at least this often while they come in.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

impl ResultLog {
    /// Appends `task`'s result; a failure to write only costs a rerun of
    /// the task should the job be resumed, so it is logged, not returned.
    pub fn append(&mut self, task: u64, result: &[u8]) {
        let Ok(len) = u32::try_from(result.len()) else {
            return;
        };
        let written = self
            .file
            .write_all(&task.to_le_bytes())
            .and_then(|()| self.file.write_all(&len.to_le_bytes()))
            .and_then(|()| self.file.write_all(result));
        if let Err(e) = written {
            warn!(task, error = %e, "cannot keep a task result in the journal");
        }
        if self.flushed.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) {
        if let Err(e) = self.file.flush() {
            warn!(error = %e, "cannot write task results to the journal");
        }
        self.flushed = Instant::now();
    }
}

/// The whole records of a results file (see the module doc), and how many
/// bytes they take from the start.
fn parse_results(data: &[u8], tasks: u64, max_bytes: u32) -> (Vec<(u64, Bytes)>, usize) {
    let all = data.len();
    let mut data = data;
    let mut by_task = std::collections::BTreeMap::new();
    while let (Some(task), Some(len)) = (data.get(..8), data.get(8..12)) {
        let task = u64::from_le_bytes(task.try_into().unwrap_or([0xff; 8]));
        let len = u32::from_le_bytes(len.try_into().unwrap_or([0xff; 4]));
        if len > max_bytes {
            warn!(
                task,
                len, "a result in the journal is larger than any result; the rest is ignored"
            );
            break;
        }
        let Some(body) = data.get(12..12 + len as usize) else {
            break;
        };
        if task < tasks {
            by_task.insert(task, Bytes::copy_from_slice(body));
        }
        data = data.get(12 + len as usize..).unwrap_or_default();
    }
    (by_task.into_iter().collect(), all - data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SubmitRequest {
        serde_json::from_str(
            r#"{"kernel":"w1-sum-squares","inputs":{"kind":"range","start":0,"end":10}}"#,
        )
        .unwrap()
    }

    #[test]
    fn records_lists_loads_and_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let j = JobJournal::open(dir.path()).unwrap();
        assert!(j.unfinished().is_empty());
        j.record(JobId(0xabc), &request()).unwrap();
        j.record(JobId(0x12), &request()).unwrap();
        assert_eq!(j.unfinished(), vec![JobId(0x12), JobId(0xabc)]);
        assert_eq!(j.load(JobId(0xabc)).unwrap().kernel, "w1-sum-squares");
        j.finish(JobId(0xabc));
        assert_eq!(j.unfinished(), vec![JobId(0x12)]);
        assert!(j.load(JobId(0xabc)).is_none());
    }

    #[test]
    fn results_are_kept_taken_over_by_the_resumed_job_and_forgotten_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let j = JobJournal::open(dir.path()).unwrap();
        let (old, new) = (JobId(1), JobId(2));
        let mut log = j.result_log(old).unwrap();
        log.append(3, b"three");
        log.append(0, b"");
        log.append(3, b"THREE"); // the last record of a task wins
        log.append(99, b"beyond the job"); // not a task of this job
        log.flush();
        drop(log);
        // A record cut short by a crash is ignored.
        let mut torn = std::fs::OpenOptions::new()
            .append(true)
            .open(j.results_path(old))
            .unwrap();
        torn.write_all(&7u64.to_le_bytes()).unwrap();
        torn.write_all(&100u32.to_le_bytes()).unwrap();
        torn.write_all(b"only part").unwrap();
        drop(torn);

        let got = j.take_over_results(old, new, 10, 1 << 20);
        assert_eq!(
            got,
            vec![(0, Bytes::new()), (3, Bytes::from_static(b"THREE"))]
        );
        assert!(!j.results_path(old).exists());
        // The resumed job appends to the file it took over.
        let mut log = j.result_log(new).unwrap();
        log.append(5, b"five");
        log.flush();
        assert_eq!(j.take_over_results(new, JobId(3), 10, 1 << 20).len(), 3);
        j.finish(JobId(3));
        assert!(!j.results_path(JobId(3)).exists());
        assert!(j
            .take_over_results(JobId(3), JobId(4), 10, 1 << 20)
            .is_empty());
    }

    #[test]
    fn a_length_beyond_any_result_stops_the_reading() {
        let mut data = Vec::new();
        data.extend_from_slice(&1u64.to_le_bytes());
        data.extend_from_slice(&2u32.to_le_bytes());
        data.extend_from_slice(b"ok");
        data.extend_from_slice(&2u64.to_le_bytes());
        data.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_results(&data, 10, 1024),
            (vec![(1, Bytes::from_static(b"ok"))], 14)
        );
    }
}
