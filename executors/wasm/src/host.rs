//! The host interface a guest sees: a WASI preview 1 subset over in-memory
//! stdin/stdout/stderr, and the per-task store state behind it.
//!
//! Every function here treats guest pointers and lengths as hostile: all
//! guest memory access is bounds-checked and a bad pointer is `EFAULT`,
//! never a host panic.

use sha2::{Digest, Sha256};
use wasmtime::{Caller, Error, Extern, Linker, Memory, ResourceLimiter, Result};

/// The only module name guests may import from.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// A value type in a host function's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    I32,
    I64,
}

/// One host function: name, parameter types, result types.
pub(crate) struct HostFn {
    pub name: &'static str,
    pub params: &'static [Ty],
    pub results: &'static [Ty],
    /// Whether it reads or writes guest memory (then the module must export
    /// its memory as `memory`).
    pub uses_memory: bool,
}

use Ty::{I32, I64};

// Whether a host function touches guest memory (see HostFn::uses_memory).
const MEM: bool = true;
const NO_MEM: bool = false;

const fn host_fn_def(
    name: &'static str,
    params: &'static [Ty],
    results: &'static [Ty],
    uses_memory: bool,
) -> HostFn {
    HostFn {
        name,
        params,
        results,
        uses_memory,
    }
}

/// The whole host interface (module [`WASI_MODULE`]); anything else a
/// module imports is rejected at load. Kept in step with [`define`].
pub(crate) const HOST_FNS: &[HostFn] = &[
    host_fn_def("args_get", &[I32, I32], &[I32], NO_MEM),
    host_fn_def("args_sizes_get", &[I32, I32], &[I32], MEM),
    host_fn_def("environ_get", &[I32, I32], &[I32], NO_MEM),
    host_fn_def("environ_sizes_get", &[I32, I32], &[I32], MEM),
    host_fn_def("fd_close", &[I32], &[I32], NO_MEM),
    host_fn_def("fd_fdstat_get", &[I32, I32], &[I32], MEM),
    host_fn_def("fd_prestat_get", &[I32, I32], &[I32], NO_MEM),
    host_fn_def("fd_prestat_dir_name", &[I32, I32, I32], &[I32], NO_MEM),
    host_fn_def("fd_read", &[I32, I32, I32, I32], &[I32], MEM),
    host_fn_def("fd_seek", &[I32, I64, I32, I32], &[I32], NO_MEM),
    host_fn_def("fd_write", &[I32, I32, I32, I32], &[I32], MEM),
    host_fn_def("proc_exit", &[I32], &[], NO_MEM),
    host_fn_def("random_get", &[I32, I32], &[I32], MEM),
    host_fn_def("sched_yield", &[], &[I32], NO_MEM),
];

/// The names of the host functions, in order (for docs and messages).
pub fn host_functions() -> impl Iterator<Item = &'static str> {
    HOST_FNS.iter().map(|f| f.name)
}

pub(crate) fn host_fn(name: &str) -> Option<&'static HostFn> {
    HOST_FNS.iter().find(|f| f.name == name)
}

/// Renders a signature as `(i32, i64) -> (i32)`.
pub(crate) fn render_sig(params: &[Ty], results: &[Ty]) -> String {
    let list = |tys: &[Ty]| {
        tys.iter()
            .map(|t| match t {
                Ty::I32 => "i32",
                Ty::I64 => "i64",
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}

// WASI errno values (preview 1).
const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ESPIPE: i32 = 70;

/// Most iovecs one fd_read/fd_write call may pass (POSIX IOV_MAX), so a
/// call cannot make the host loop over millions of empty buffers.
const IOV_MAX: u32 = 1024;

// WASI rights bits used in fd_fdstat_get.
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_WRITE: u64 = 1 << 6;

/// Why a task stopped early, as recorded by the host side (host functions,
/// the epoch callback, the limiter) so the executor need not parse traps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Halt {
    /// proc_exit with this code.
    Exit(u32),
    Timeout,
    Cancelled,
    /// stdout went past the cap.
    OutputLimit,
    /// Linear memory would have grown past the cap.
    MemoryLimit,
    /// A table would have grown past the element cap.
    TableLimit,
}

/// Bounds the guest's linear memory and tables.
pub(crate) struct Limiter {
    /// Bytes of linear memory allowed (there is at most one memory: imported
    /// memories are refused and multi-memory is off).
    pub memory_cap: usize,
    /// Elements allowed per table.
    pub table_cap: usize,
    pub halt: Option<Halt>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        if desired > self.memory_cap {
            // Trap rather than let memory.grow return -1: the task ends at
            // the first growth past the cap, with a MemoryLimit error,
            // instead of a guest that ignores -1 spinning until some other
            // limit stops it.
            self.halt = Some(Halt::MemoryLimit);
            return Err(Error::msg(format!(
                "memory limit of {} bytes exceeded (wanted {desired})",
                self.memory_cap
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        if desired > self.table_cap {
            self.halt = Some(Halt::TableLimit);
            return Err(Error::msg(format!(
                "table limit of {} elements exceeded (wanted {desired})",
                self.table_cap
            )));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        // Reference types allow several; real modules use one or two.
        16
    }
}

/// Per-task store state.
pub(crate) struct Host {
    stdin: Vec<u8>,
    stdin_pos: usize,
    pub stdout: Vec<u8>,
    max_stdout: usize,
    pub stderr: Vec<u8>,
    max_stderr: usize,
    pub stderr_truncated: bool,
    /// SplitMix64 state behind random_get (deterministic per task).
    rng: u64,
    pub limiter: Limiter,
    /// Set by host functions and the epoch callback (the limiter keeps its
    /// own, see [`Host::halt`]).
    pub halt: Option<Halt>,
}

impl Host {
    pub fn new(
        stdin: Vec<u8>,
        max_stdout: usize,
        max_stderr: usize,
        seed: u64,
        limiter: Limiter,
    ) -> Self {
        Self {
            stdin,
            stdin_pos: 0,
            stdout: Vec::new(),
            max_stdout,
            stderr: Vec::new(),
            max_stderr,
            stderr_truncated: false,
            rng: seed,
            limiter,
            halt: None,
        }
    }

    /// Why the task stopped early, if the host side knows.
    pub fn halt(&self) -> Option<Halt> {
        self.halt.or(self.limiter.halt)
    }
}

/// The random_get seed of a task: the first 8 bytes (LE) of
/// SHA-256(job id u64 LE || task index u64 LE), so that every run of the
/// same task sees the same bytes.
pub(crate) fn random_seed(job: u64, task: u64) -> u64 {
    let mut h = Sha256::new();
    h.update(job.to_le_bytes());
    h.update(task.to_le_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------
// Guest memory access, bounds-checked.

fn range(ptr: u32, len: u32) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    Some(start..end)
}

fn read_u32(mem: &[u8], ptr: u32) -> Option<u32> {
    let bytes = mem.get(range(ptr, 4)?)?;
    Some(u32::from_le_bytes(<[u8; 4]>::try_from(bytes).ok()?))
}

fn write_bytes(mem: &mut [u8], ptr: u32, bytes: &[u8]) -> Option<()> {
    let len = u32::try_from(bytes.len()).ok()?;
    mem.get_mut(range(ptr, len)?)?.copy_from_slice(bytes);
    Some(())
}

fn write_u32(mem: &mut [u8], ptr: u32, v: u32) -> Option<()> {
    write_bytes(mem, ptr, &v.to_le_bytes())
}

/// The `(buf, len)` of iovec `i` of the array at `iovs`.
fn iovec(mem: &[u8], iovs: u32, i: u32) -> Option<(u32, u32)> {
    let at = iovs.checked_add(i.checked_mul(8)?)?;
    Some((read_u32(mem, at)?, read_u32(mem, at.checked_add(4)?)?))
}

fn memory(caller: &mut Caller<'_, Host>) -> Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(Error::msg("the module exports no memory named `memory`")),
    }
}

/// Guest pointers arrive as i32; WASI means them unsigned.
fn u(v: i32) -> u32 {
    v as u32
}

// ---------------------------------------------------------------------------
// The host functions.

fn fd_read(caller: &mut Caller<'_, Host>, fd: i32, iovs: i32, n: i32, nread: i32) -> Result<i32> {
    if fd != 0 {
        return Ok(EBADF);
    }
    let (iovs, n, nread) = (u(iovs), u(n), u(nread));
    if n > IOV_MAX {
        return Ok(EINVAL);
    }
    let mem = memory(caller)?;
    let (mem, host) = mem.data_and_store_mut(caller);
    let mut total = 0u32;
    for i in 0..n {
        let Some((buf, len)) = iovec(mem, iovs, i) else {
            return Ok(EFAULT);
        };
        let rest = host.stdin.get(host.stdin_pos..).unwrap_or_default();
        let take = rest.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        let Some(src) = rest.get(..take) else {
            return Ok(EFAULT);
        };
        // take <= len, a u32.
        let take32 = u32::try_from(take).unwrap_or(u32::MAX);
        if write_bytes(mem, buf, src).is_none() {
            return Ok(EFAULT);
        }
        host.stdin_pos = host.stdin_pos.saturating_add(take);
        total = total.saturating_add(take32);
        if take32 < len {
            break;
        }
    }
    Ok(write_u32(mem, nread, total).map_or(EFAULT, |()| ESUCCESS))
}

fn fd_write(
    caller: &mut Caller<'_, Host>,
    fd: i32,
    iovs: i32,
    n: i32,
    nwritten: i32,
) -> Result<i32> {
    if fd != 1 && fd != 2 {
        return Ok(EBADF);
    }
    let (iovs, n, nwritten) = (u(iovs), u(n), u(nwritten));
    if n > IOV_MAX {
        return Ok(EINVAL);
    }
    let mem = memory(caller)?;
    let (mem, host) = mem.data_and_store_mut(caller);
    let mut total = 0u32;
    for i in 0..n {
        let Some((buf, len)) = iovec(mem, iovs, i) else {
            return Ok(EFAULT);
        };
        let Some(src) = range(buf, len).and_then(|r| mem.get(r)) else {
            return Ok(EFAULT);
        };
        if fd == 1 {
            if host.stdout.len().saturating_add(src.len()) > host.max_stdout {
                host.halt = Some(Halt::OutputLimit);
                return Err(Error::msg("stdout output limit exceeded"));
            }
            host.stdout.extend_from_slice(src);
        } else {
            // stderr is for diagnostics: keep the start, drop the rest, but
            // report it all written so the guest does not retry.
            let room = host.max_stderr.saturating_sub(host.stderr.len());
            let kept = src.get(..room.min(src.len())).unwrap_or_default();
            host.stderr.extend_from_slice(kept);
            if kept.len() < src.len() {
                host.stderr_truncated = true;
            }
        }
        total = total.saturating_add(len);
    }
    Ok(write_u32(mem, nwritten, total).map_or(EFAULT, |()| ESUCCESS))
}

/// Writes two zero u32s (no args, no environment variables).
fn zero_sizes(caller: &mut Caller<'_, Host>, count: i32, size: i32) -> Result<i32> {
    let mem = memory(caller)?;
    let data = mem.data_mut(caller);
    let ok = write_u32(data, u(count), 0).and_then(|()| write_u32(data, u(size), 0));
    Ok(ok.map_or(EFAULT, |()| ESUCCESS))
}

fn fd_fdstat_get(caller: &mut Caller<'_, Host>, fd: i32, out: i32) -> Result<i32> {
    let rights = match fd {
        0 => RIGHT_FD_READ,
        1 | 2 => RIGHT_FD_WRITE,
        _ => return Ok(EBADF),
    };
    // struct fdstat: filetype u8 (0 = unknown: a pipe-like stream), pad,
    // flags u16 at 2, rights_base u64 at 8, rights_inheriting u64 at 16.
    let mut stat = [0u8; 24];
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    let mem = memory(caller)?;
    let data = mem.data_mut(caller);
    Ok(write_bytes(data, u(out), &stat).map_or(EFAULT, |()| ESUCCESS))
}

fn random_get(caller: &mut Caller<'_, Host>, buf: i32, len: i32) -> Result<i32> {
    let mem = memory(caller)?;
    let (mem, host) = mem.data_and_store_mut(caller);
    let Some(dst) = range(u(buf), u(len)).and_then(|r| mem.get_mut(r)) else {
        return Ok(EFAULT);
    };
    for chunk in dst.chunks_mut(8) {
        let word = splitmix64(&mut host.rng).to_le_bytes();
        chunk.copy_from_slice(word.get(..chunk.len()).unwrap_or_default());
    }
    Ok(ESUCCESS)
}

fn std_fd(fd: i32) -> bool {
    (0..=2).contains(&fd)
}

/// Defines [`HOST_FNS`] in `linker`.
pub(crate) fn define(linker: &mut Linker<Host>) -> Result<()> {
    let m = WASI_MODULE;
    linker.func_wrap(m, "args_get", |_: i32, _: i32| ESUCCESS)?;
    linker.func_wrap(
        m,
        "args_sizes_get",
        |mut c: Caller<'_, Host>, n: i32, size: i32| zero_sizes(&mut c, n, size),
    )?;
    linker.func_wrap(m, "environ_get", |_: i32, _: i32| ESUCCESS)?;
    linker.func_wrap(
        m,
        "environ_sizes_get",
        |mut c: Caller<'_, Host>, n: i32, size: i32| zero_sizes(&mut c, n, size),
    )?;
    // Closing stdio is accepted and changes nothing.
    linker.func_wrap(
        m,
        "fd_close",
        |fd: i32| if std_fd(fd) { ESUCCESS } else { EBADF },
    )?;
    linker.func_wrap(
        m,
        "fd_fdstat_get",
        |mut c: Caller<'_, Host>, fd: i32, out: i32| fd_fdstat_get(&mut c, fd, out),
    )?;
    // No preopened directories: EBADF ends the libc's preopen scan.
    linker.func_wrap(m, "fd_prestat_get", |_: i32, _: i32| EBADF)?;
    linker.func_wrap(m, "fd_prestat_dir_name", |_: i32, _: i32, _: i32| EBADF)?;
    linker.func_wrap(
        m,
        "fd_read",
        |mut c: Caller<'_, Host>, fd: i32, iovs: i32, n: i32, nread: i32| {
            fd_read(&mut c, fd, iovs, n, nread)
        },
    )?;
    linker.func_wrap(
        m,
        "fd_seek",
        |fd: i32, _: i64, _: i32, _: i32| {
            if std_fd(fd) {
                ESPIPE
            } else {
                EBADF
            }
        },
    )?;
    linker.func_wrap(
        m,
        "fd_write",
        |mut c: Caller<'_, Host>, fd: i32, iovs: i32, n: i32, nwritten: i32| {
            fd_write(&mut c, fd, iovs, n, nwritten)
        },
    )?;
    linker.func_wrap(
        m,
        "proc_exit",
        |mut c: Caller<'_, Host>, code: i32| -> Result<()> {
            c.data_mut().halt = Some(Halt::Exit(u(code)));
            Err(Error::msg(format!("proc_exit({})", u(code))))
        },
    )?;
    linker.func_wrap(
        m,
        "random_get",
        |mut c: Caller<'_, Host>, buf: i32, len: i32| random_get(&mut c, buf, len),
    )?;
    linker.func_wrap(m, "sched_yield", || ESUCCESS)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_helpers_never_panic() {
        let mut mem = vec![0u8; 16];
        assert_eq!(read_u32(&mem, 12), Some(0));
        assert_eq!(read_u32(&mem, 13), None);
        assert_eq!(read_u32(&mem, u32::MAX), None);
        assert_eq!(write_u32(&mut mem, 14, 1), None);
        assert_eq!(iovec(&mem, u32::MAX - 3, 0), None);
        assert_eq!(iovec(&mem, 0, u32::MAX), None);
        assert_eq!(write_bytes(&mut mem, 16, &[]), Some(()));
    }

    #[test]
    fn seeds_differ_by_task() {
        assert_ne!(random_seed(1, 0), random_seed(1, 1));
        assert_eq!(random_seed(7, 3), random_seed(7, 3));
    }
}
