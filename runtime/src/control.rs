//! The local control endpoint: JSON lines over a Unix domain socket,
//! `control.socket` (by default `<data_dir>/control.sock`).
//!
//! A client (`lppsp status`, `lppsp submit`) sends one request line and
//! reads reply lines until the node closes the connection. Every caller is
//! identified by the kernel (the socket's peer credentials) and each
//! request needs a grant ([`lppsp_core::access`]): the node's owner and
//! root hold all, the members of `control.group` what `control.group_may`
//! lists, nobody else anything. The socket's mode (0600, or 0660 with the
//! group) keeps others from connecting at all; the grant check holds even
//! where a mode was loosened by hand. A refused request gets one
//! [`ErrorReply`] line.

pub mod reply;

use std::io;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lppsp_core::access::{AccessPolicy, Caller, Grant, GroupGrant};
use lppsp_core::config::ControlSection;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longest request line accepted: a submit carries its WASM module in
/// base64 (the wasm executor's default module limit is 32 MiB).
const MAX_REQUEST: usize = 48 << 20;

/// Longest request line read from a caller who may not submit: only a
/// submit is ever longer, and such a caller has no use for one.
const MAX_REQUEST_WITHOUT_SUBMIT: usize = 64 << 10;

/// A request from a local tool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The node, its book, market and counters.
    Status,
    /// Run a job; replies stream progress, then the result or the failure.
    Submit(crate::client::SubmitRequest),
    /// Receipts in this node's ledger (all, or those naming `node` as payer
    /// or payee) and every balance the ledger gives.
    Ledger {
        #[serde(default)]
        node: Option<lppsp_core::NodeId>,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Join requests waiting for the operator (a node with `[ca] dir`).
    CaPending,
    /// Sign join request `id` and send the certificate to its joiner.
    CaApprove { id: String },
    /// Refuse join request `id`.
    CaReject {
        id: String,
        #[serde(default)]
        reason: Option<String>,
    },
}

impl Request {
    /// The grant a caller needs for this request.
    pub fn grant(&self) -> Grant {
        match self {
            Request::Status | Request::Ledger { .. } => Grant::Status,
            Request::Submit(_) => Grant::Submit,
            Request::CaPending | Request::CaApprove { .. } | Request::CaReject { .. } => {
                Grant::Admin
            }
        }
    }
}

/// Why the node answered a request with an error and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The caller does not hold the grant the request needs.
    PermissionDenied,
    /// The line is not a request.
    BadRequest,
    /// The node is stopping.
    ShuttingDown,
}

/// The one reply line to a request the node did not take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
}

/// `reply` as the JSON line the node sends; a reply that cannot be
/// serialized (none of ours can fail) becomes an error reply.
pub fn reply_json(reply: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(reply).unwrap_or_else(|e| {
        let error = ErrorReply {
            error: format!("cannot serialize the reply: {e}"),
            code: None,
        };
        serde_json::to_value(error).unwrap_or_default()
    })
}

/// A request on its way to the node driver, with where replies go.
#[derive(Debug)]
pub struct ControlRequest {
    pub request: Request,
    pub reply: mpsc::Sender<serde_json::Value>,
}

/// The control endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("key `control.group`: no group named \"{0}\" on this machine")]
    NoSuchGroup(String),
    #[error("key `control.group`: cannot look up group \"{0}\": {1}")]
    GroupLookup(String, io::Error),
    #[error(
        "key `control.group`: cannot give {} to group \"{name}\" ({source}); \
         the node's user must be a member of the group",
        path.display()
    )]
    Chgrp {
        path: PathBuf,
        name: String,
        source: io::Error,
    },
    #[error("key `control.socket`: {} is in use by a running node", .0.display())]
    InUse(PathBuf),
    #[error("key `control.socket`: {} exists and is not a socket; not replacing it", .0.display())]
    NotASocket(PathBuf),
    #[error("key `control.socket`: cannot listen on {}: {source}", path.display())]
    Bind { path: PathBuf, source: io::Error },
}

/// Who may do what, from the config: the node's own uid, and the group
/// looked up by name.
pub fn access_policy(cfg: &ControlSection) -> Result<AccessPolicy, ControlError> {
    let group = match &cfg.group {
        None => None,
        Some(name) => {
            let gid = group_id(name)
                .map_err(|e| ControlError::GroupLookup(name.clone(), e))?
                .ok_or_else(|| ControlError::NoSuchGroup(name.clone()))?;
            Some(GroupGrant {
                name: name.clone(),
                gid,
                may: cfg.group_grants(),
            })
        }
    };
    Ok(AccessPolicy {
        owner_uid: crate::private::effective_uid(),
        group,
    })
}

/// The id of group `name` in the system's group database (files, LDAP...).
fn group_id(name: &str) -> io::Result<Option<u32>> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the name"))?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: a zeroed `group` is valid (null pointers, zero id); it is
        // only read after getgrnam_r filled it.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf.len()` is
        // the buffer's real length; the strings in `group` point into `buf`
        // and are not used.
        let rc = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut group,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        return Ok((!found.is_null()).then_some(group.gr_gid));
    }
}

/// The listening socket; its file is removed when this is dropped.
#[derive(Debug)]
pub struct ControlListener {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlListener {
    /// Binds `path`: 0600, or 0660 and owned by the policy's group. A
    /// socket file left by a node that is gone is replaced; a live one
    /// or any other file is an error.
    pub fn bind(path: &Path, policy: &AccessPolicy) -> Result<Self, ControlError> {
        let bind_err = |source| ControlError::Bind {
            path: path.to_path_buf(),
            source,
        };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt as _;
            if !meta.file_type().is_socket() {
                return Err(ControlError::NotASocket(path.to_path_buf()));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                crate::private::create_dir(parent, crate::private::DIR_MODE).map_err(bind_err)?;
            }
        }
        // The socket is created with the umask's mode and narrowed below;
        // until then a caller who reaches it still meets the grant check.
        let listener = UnixListener::bind(path).map_err(bind_err)?;
        let bound = Self {
            listener,
            path: path.to_path_buf(),
        };
        let mode = match &policy.group {
            None => 0o600,
            Some(g) => {
                std::os::unix::fs::chown(path, None, Some(g.gid)).map_err(|source| {
                    ControlError::Chgrp {
                        path: path.to_path_buf(),
                        name: g.name.clone(),
                        source,
                    }
                })?;
                0o660
            }
        };
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(bind_err)?;
        Ok(bound)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Accepts control connections until `shutdown`; each request is checked
/// against `policy` before it reaches the driver.
pub async fn serve(
    listener: ControlListener,
    policy: Arc<AccessPolicy>,
    to_driver: mpsc::Sender<ControlRequest>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, policy.clone(), to_driver.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "control accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// The caller at the other end of `stream`, as the kernel recorded it when
/// it connected.
///
/// The supplementary groups come from SO_PEERGROUPS, which the kernel
/// fills from the caller's credentials at connect time, like the uid and
/// gid of SO_PEERCRED. Reading `/proc/<pid>/status` instead could read
/// another process once the caller's pid is reused, and the group database
/// (getgrouplist) says what groups a user may have, not what the calling
/// process has (a process that dropped a group would keep its grants).
/// Where SO_PEERGROUPS is missing (Linux before 4.13) only the primary
/// group counts: a member by supplementary group is refused, never a
/// stranger admitted.
fn peer_credentials(stream: &UnixStream) -> io::Result<Caller> {
    let cred = stream.peer_cred()?;
    let groups = match peer_groups(stream) {
        Ok(groups) => groups,
        Err(e) => {
            tracing::debug!(error = %e, "SO_PEERGROUPS unavailable; only the caller's primary group counts");
            Vec::new()
        }
    };
    Ok(Caller {
        uid: cred.uid(),
        gid: cred.gid(),
        groups,
    })
}

/// `SO_PEERGROUPS` (include/uapi/asm-generic/socket.h; not in every libc).
#[cfg(target_os = "linux")]
const SO_PEERGROUPS: libc::c_int = if cfg!(any(target_arch = "sparc", target_arch = "sparc64")) {
    0x3d
} else {
    59
};

/// Most supplementary groups Linux gives a process (NGROUPS_MAX).
const MAX_GROUPS: usize = 65536;

#[cfg(target_os = "linux")]
fn peer_groups(stream: &UnixStream) -> io::Result<Vec<u32>> {
    let fd = stream.as_raw_fd();
    let width = std::mem::size_of::<libc::gid_t>();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = libc::socklen_t::try_from(groups.len() * width)
            .map_err(|_| io::Error::other("too many groups"))?;
        // SAFETY: `groups` has room for `len` bytes and `len` is a valid
        // out-pointer; the kernel writes at most `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let wanted = len as usize / width;
        if rc == 0 {
            groups.truncate(wanted.min(groups.len()));
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        // ERANGE: the kernel put the size it needs in `len`.
        if err.raw_os_error() == Some(libc::ERANGE) && wanted > groups.len() && wanted <= MAX_GROUPS
        {
            groups.resize(wanted, 0);
            continue;
        }
        return Err(err);
    }
}

#[cfg(not(target_os = "linux"))]
fn peer_groups(_stream: &UnixStream) -> io::Result<Vec<u32>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_PEERGROUPS is Linux only",
    ))
}

async fn refuse(write: &mut (impl AsyncWriteExt + Unpin), error: String, code: ErrorCode) {
    let reply = ErrorReply {
        error,
        code: Some(code),
    };
    if let Ok(mut line) = serde_json::to_vec(&reply) {
        line.push(b'\n');
        let _ = write.write_all(&line).await;
    }
}

async fn handle(
    stream: UnixStream,
    policy: Arc<AccessPolicy>,
    to_driver: mpsc::Sender<ControlRequest>,
) {
    let caller = match peer_credentials(&stream) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot identify a control caller; refused");
            let (_, mut write) = stream.into_split();
            refuse(
                &mut write,
                format!("permission denied: the node cannot identify the caller ({e})"),
                ErrorCode::PermissionDenied,
            )
            .await;
            return;
        }
    };
    let grants = policy.grants(&caller);
    let limit = if grants.allows(Grant::Submit) {
        MAX_REQUEST
    } else {
        MAX_REQUEST_WITHOUT_SUBMIT
    };
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let n = match (&mut reader)
        .take(limit as u64)
        .read_until(b'\n', &mut line)
        .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(uid = caller.uid, error = %e, "control read failed");
            return;
        }
    };
    if n == 0 {
        return;
    }
    let request: Request = match serde_json::from_slice(&line) {
        Ok(r) => r,
        // Cut at the limit: only a submit is that long.
        Err(_) if n >= limit && !grants.allows(Grant::Submit) => {
            let denied = policy.check(&caller, Grant::Submit).err();
            let error = denied.map_or_else(|| "bad request: too long".into(), |d| d.to_string());
            refuse(&mut write, error, ErrorCode::PermissionDenied).await;
            return;
        }
        Err(e) => {
            refuse(
                &mut write,
                format!("bad request: {e}"),
                ErrorCode::BadRequest,
            )
            .await;
            return;
        }
    };
    if let Err(denied) = policy.check(&caller, request.grant()) {
        tracing::info!(uid = caller.uid, grant = %request.grant(), "control request refused");
        refuse(&mut write, denied.to_string(), ErrorCode::PermissionDenied).await;
        return;
    }
    if let Request::Submit(submit) = &request {
        if let Some(error) = owner_only_submit(&policy, &caller, submit) {
            refuse(&mut write, error, ErrorCode::PermissionDenied).await;
            return;
        }
    }
    let (tx, mut rx) = mpsc::channel(64);
    if to_driver
        .send(ControlRequest { request, reply: tx })
        .await
        .is_err()
    {
        refuse(
            &mut write,
            "node is shutting down".into(),
            ErrorCode::ShuttingDown,
        )
        .await;
        return;
    }
    while let Some(v) = rx.recv().await {
        if write.write_all(format!("{v}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Why `submit` is refused to `caller` although it may submit: file
/// inputs, which the node reads with its own rights (its key, its ledger),
/// and resuming a journaled job, whose results would go to the caller
/// whoever submitted it, are for the node's owner.
fn owner_only_submit(
    policy: &AccessPolicy,
    caller: &Caller,
    submit: &crate::client::SubmitRequest,
) -> Option<String> {
    if policy.is_owner(caller) {
        return None;
    }
    let what = if submit.resume.is_some() {
        "resume a job"
    } else if matches!(submit.inputs, crate::client::InputSpec::Files { .. }) {
        "submit file inputs, which the node reads with its own rights,"
    } else {
        return None;
    };
    Some(format!(
        "permission denied: uid {} may not {what} (only the node's owner (uid {}) may)",
        caller.uid, policy.owner_uid
    ))
}

/// Sends `request` to the node whose control socket is `socket` and
/// returns every reply line.
pub async fn call(socket: &Path, request: &Request) -> io::Result<Vec<serde_json::Value>> {
    let mut replies = Vec::new();
    call_streaming(socket, request, |v| replies.push(v)).await?;
    Ok(replies)
}

/// Connects to a control socket; the error says what to check.
async fn connect(socket: &Path) -> io::Result<UnixStream> {
    UnixStream::connect(socket).await.map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::PermissionDenied => {
                "permission denied: the node admits only its owner, root and the group named \
                 in its control.group (docs/operations.md, \"Who may control a node\")"
            }
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                "no node is listening there (is it running? the socket is control.socket, \
                 by default control.sock in node.data_dir)"
            }
            _ => "cannot connect",
        };
        io::Error::new(e.kind(), format!("{}: {hint} ({e})", socket.display()))
    })
}

/// Sends `request` and hands each reply line to `on_reply` as it arrives.
pub async fn call_streaming(
    socket: &Path,
    request: &Request,
    mut on_reply: impl FnMut(serde_json::Value),
) -> io::Result<()> {
    let stream = connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut lines = BufReader::new(read).lines();
    while let Some(l) = lines.next_line().await? {
        let v = serde_json::from_str(&l).map_err(io::Error::other)?;
        on_reply(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_needs_its_grant() {
        let cases = [
            (r#"{"op":"status"}"#, Grant::Status),
            (r#"{"op":"ledger"}"#, Grant::Status),
            (r#"{"op":"ca_pending"}"#, Grant::Admin),
            (r#"{"op":"ca_approve","id":"x"}"#, Grant::Admin),
            (r#"{"op":"ca_reject","id":"x"}"#, Grant::Admin),
            (
                r#"{"op":"submit","kernel":"w1-sum-squares","inputs":{"kind":"range","start":0,"end":1}}"#,
                Grant::Submit,
            ),
        ];
        for (line, grant) in cases {
            let r: Request = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(r.grant(), grant, "{line}");
        }
    }

    #[test]
    fn file_inputs_and_resume_are_the_owners_only() {
        let policy = AccessPolicy {
            owner_uid: 1000,
            group: None,
        };
        let submit = |line: &str| match serde_json::from_str::<Request>(line).unwrap() {
            Request::Submit(s) => s,
            other => panic!("{other:?}"),
        };
        let files = submit(
            r#"{"op":"submit","kernel":"sha256","inputs":{"kind":"files","paths":["/etc/lppsp/node.key"]}}"#,
        );
        let resume = submit(
            r#"{"op":"submit","inputs":{"kind":"range","start":0,"end":1},"resume":"0011"}"#,
        );
        let plain = submit(
            r#"{"op":"submit","kernel":"w1-sum-squares","inputs":{"kind":"range","start":0,"end":1}}"#,
        );
        let member = Caller {
            uid: 2000,
            gid: 2000,
            groups: vec![],
        };
        let owner = Caller {
            uid: 1000,
            gid: 1000,
            groups: vec![],
        };
        for s in [&files, &resume] {
            let err = owner_only_submit(&policy, &member, s).unwrap();
            assert!(
                err.starts_with("permission denied: uid 2000 may not"),
                "{err}"
            );
            assert_eq!(owner_only_submit(&policy, &owner, s), None);
        }
        assert_eq!(owner_only_submit(&policy, &member, &plain), None);
    }

    #[test]
    fn an_error_reply_is_one_typed_line() {
        let reply = ErrorReply {
            error: "permission denied: x".into(),
            code: Some(ErrorCode::PermissionDenied),
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            text,
            r#"{"error":"permission denied: x","code":"permission_denied"}"#
        );
        assert_eq!(serde_json::from_str::<ErrorReply>(&text).unwrap(), reply);
    }

    #[tokio::test]
    async fn a_caller_is_identified_with_its_groups_and_the_socket_is_the_owners() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("control.sock");
        let policy = AccessPolicy {
            owner_uid: crate::private::effective_uid(),
            group: None,
        };
        let listener = ControlListener::bind(&path, &policy).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A second bind while this one listens is refused.
        assert!(matches!(
            ControlListener::bind(&path, &policy),
            Err(ControlError::InUse(_))
        ));
        let client = UnixStream::connect(&path).await.unwrap();
        let (server, _) = listener.listener.accept().await.unwrap();
        let caller = peer_credentials(&server).unwrap();
        assert_eq!(caller.uid, crate::private::effective_uid());
        // SAFETY: getegid has no preconditions.
        assert_eq!(caller.gid, unsafe { libc::getegid() });
        drop(client);
        drop(listener);
        assert!(!path.exists(), "the socket file goes with the listener");
    }

    #[test]
    fn an_unknown_group_is_a_config_error_naming_the_key() {
        let cfg = ControlSection {
            group: Some("lppsp-no-such-group-x".into()),
            ..ControlSection::default()
        };
        let err = access_policy(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("control.group") && err.contains("lppsp-no-such-group-x"),
            "{err}"
        );
        let root = ControlSection {
            group: Some("root".into()),
            ..ControlSection::default()
        };
        assert_eq!(access_policy(&root).unwrap().group.unwrap().gid, 0);
    }
}
