//! The client's journal of unfinished jobs: each accepted job's request is
//! written to `data_dir/jobs/<job>.json` before the job is accepted, and
//! removed when the job ends (done or failed). A client killed mid-job
//! finds its unfinished jobs there when it starts again; status lists them
//! and `lppsp submit --resume JOB` runs one again. Task results are not
//! journaled: a resumed job runs all its tasks again.

use std::path::{Path, PathBuf};

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
        std::fs::create_dir_all(&dir)?;
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
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.path(job))?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The job ended: forget it.
    pub fn finish(&self, job: JobId) {
        let path = self.path(job);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(path = %path.display(), error = %e, "cannot remove a finished job from the journal");
            }
        }
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
}
