//! Group commit: one thread owns the write connection and commits
//! everything pending in one transaction, so N concurrent appends cost one
//! fsync rather than N.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::ledger::{Ledger, LedgerError, Outcome};
use crate::receipt::Receipt;

/// Most receipts in one transaction: bounds commit latency and memory when
/// producers outrun the disk.
pub const MAX_BATCH: usize = 4096;

type AckResult = Result<Outcome, LedgerError>;

struct Request {
    receipt: Receipt,
    ack: oneshot::Sender<AckResult>,
}

/// Counters of a writer's work since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: u64,
    /// Receipts in them (inserted, duplicate or conflicting).
    pub receipts: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    receipts: AtomicU64,
}

/// Joins the writer thread when the last [`LedgerWriter`] clone goes.
struct Joiner(Option<JoinHandle<()>>);

impl Drop for Joiner {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            // Every sender is gone by now (see LedgerWriter's field
            // order), so the thread finishes what is queued and returns.
            let _ = h.join();
        }
    }
}

/// A handle on the ledger's writer thread. Cheap to clone; the thread ends
/// (after committing what is queued) when the last clone is dropped.
///
/// Appends are acknowledged only after the transaction holding them has
/// committed (and, with `synchronous=FULL`, reached the disk).
#[derive(Clone)]
pub struct LedgerWriter {
    // Declared before `joiner`: dropped first, so the thread sees the
    // channel close before the join waits for it.
    tx: mpsc::Sender<Request>,
    counters: Arc<Counters>,
    _joiner: Arc<Joiner>,
}

impl std::fmt::Debug for LedgerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerWriter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl LedgerWriter {
    /// Opens the ledger at `path` (see [`Ledger::open`]) and starts the
    /// writer thread on it. Open errors are returned here.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        Self::spawn(Ledger::open(path)?)
    }

    /// Starts the writer thread on an opened ledger.
    pub fn spawn(ledger: Ledger) -> Result<Self, LedgerError> {
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        let handle = std::thread::Builder::new()
            .name("lppsp-ledger-writer".into())
            .spawn(move || run(ledger, rx, &c))
            .map_err(|e| LedgerError::Spawn(e.to_string()))?;
        Ok(Self {
            tx,
            counters,
            _joiner: Arc::new(Joiner(Some(handle))),
        })
    }

    /// Queues `receipt`; the future resolves once it is committed. Never
    /// blocks. The channel is unbounded: callers bound the receipts in
    /// flight by awaiting their acks.
    ///
    /// The caller must have checked the signature ([`Receipt::verify`]).
    pub fn append(&self, receipt: Receipt) -> AckFuture {
        let (ack, rx) = oneshot::channel();
        match self.tx.send(Request { receipt, ack }) {
            Ok(()) => AckFuture(Some(rx)),
            Err(_) => AckFuture(None),
        }
    }

    /// Queues `receipt` and waits for its commit. Blocks the thread: from
    /// async code use [`LedgerWriter::append`] and `.await`.
    pub fn append_blocking(&self, receipt: Receipt) -> Result<Outcome, LedgerError> {
        self.append(receipt).wait()
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            receipts: self.counters.receipts.load(Ordering::Relaxed),
        }
    }
}

/// Resolves to an append's outcome once its transaction has committed.
/// Dropping it does not cancel the append.
#[derive(Debug)]
#[must_use = "the receipt is durable only once the ack resolves"]
pub struct AckFuture(Option<oneshot::Receiver<AckResult>>);

impl AckFuture {
    /// Blocks the thread until the ack (in async code, `.await` instead:
    /// blocking would stall the executor).
    pub fn wait(self) -> Result<Outcome, LedgerError> {
        block_on(self)
    }
}

/// Wakes a parked thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `f` to completion on this thread, parking between polls. Needs no
/// runtime (the oneshot inside works without one).
fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            // A spurious unpark only means one more poll.
            Poll::Pending => std::thread::park(),
        }
    }
}

impl Future for AckFuture {
    type Output = Result<Outcome, LedgerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.0.as_mut() {
            Some(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(LedgerError::WriterClosed))),
            None => Poll::Ready(Err(LedgerError::WriterClosed)),
        }
    }
}

/// The writer thread: take one request (blocking), then everything else
/// already queued, commit them in one transaction, then ack each.
fn run(mut ledger: Ledger, rx: mpsc::Receiver<Request>, counters: &Counters) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        match ledger.insert_batch(batch.iter().map(|r| &r.receipt)) {
            Ok(results) => {
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters
                    .receipts
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for (req, result) in batch.into_iter().zip(results) {
                    // A dropped future only means nobody waits for the ack.
                    let _ = req.ack.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, receipts = batch.len(), "ledger batch failed");
                for req in batch {
                    let _ = req.ack.send(Err(e.clone()));
                }
            }
        }
    }
}
