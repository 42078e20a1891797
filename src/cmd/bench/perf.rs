//! `--perf`: `perf record` attached to the node processes and switched on
//! only while the timed job runs.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};

/// `perf record -g` attached to the node processes, started with its
/// events off and switched on and off through its control FIFOs.
pub(super) struct Perf {
    child: std::process::Child,
    ctl: std::fs::File,
    acks: std::sync::mpsc::Receiver<String>,
}

impl Perf {
    pub(super) fn start(
        dir: &std::path::Path,
        name: &str,
        pids: &[u32],
        call_graph: &str,
    ) -> anyhow::Result<Self> {
        use std::io::BufRead;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ctl_path = dir.join(format!("{name}.ctl"));
        let ack_path = dir.join(format!("{name}.ack"));
        for p in [&ctl_path, &ack_path] {
            let _ = std::fs::remove_file(p);
            let made = std::process::Command::new("mkfifo")
                .arg(p)
                .status()
                .context("running mkfifo")?;
            if !made.success() {
                bail!("mkfifo {} failed", p.display());
            }
        }
        // Read-write opens of a FIFO do not wait for the other end.
        let open = |p: &std::path::Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))
        };
        let ctl = open(&ctl_path)?;
        let ack = open(&ack_path)?;
        let log_path = dir.join(format!("{name}.perf.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        let child = std::process::Command::new("perf")
            .args([
                "record",
                "--call-graph",
                call_graph,
                "-D",
                "-1",
                "--control",
            ])
            .arg(format!(
                "fifo:{},{}",
                ctl_path.display(),
                ack_path.display()
            ))
            .arg("-p")
            .arg(pids.join(","))
            .arg("-o")
            .arg(dir.join(format!("{name}.data")))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().context("perf log")?)
            .stderr(log)
            .spawn()
            .context("starting perf (is it installed?)")?;
        let (tx, acks) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(ack).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut perf = Self { child, ctl, acks };
        // Answered once perf is attached and listening.
        perf.command("disable")?;
        Ok(perf)
    }

    /// Sends a control command and waits for perf's ack.
    pub(super) fn command(&mut self, cmd: &str) -> anyhow::Result<()> {
        writeln!(self.ctl, "{cmd}").context("writing to perf's control FIFO")?;
        match self.acks.recv_timeout(Duration::from_secs(10)) {
            Ok(_) => Ok(()),
            Err(_) => bail!("perf did not acknowledge `{cmd}` within 10 s"),
        }
    }

    /// Stops perf (SIGINT, as at the terminal) and waits for it to write.
    pub(super) fn finish(mut self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().context("waiting for perf")?;
        // perf ends by re-raising the SIGINT once its file is written.
        #[cfg(unix)]
        let interrupted = {
            use std::os::unix::process::ExitStatusExt;
            status.signal() == Some(2) || status.code() == Some(130)
        };
        #[cfg(not(unix))]
        let interrupted = false;
        if !status.success() && !interrupted {
            bail!("perf record exited with {status}");
        }
        Ok(())
    }
}
