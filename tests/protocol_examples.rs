//! Every ```lppsp example in docs/PROTOCOL.md is a frame that this
//! implementation decodes: each block is fed to `lppsp frame decode --lf`,
//! which must succeed and print the frame's message kind. The document must
//! show at least one example of every message kind.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Every message kind of LPPSP/1.0 as this implementation speaks it.
const KINDS: [&str; 14] = [
    "Hand",
    "Leave",
    "Idle",
    "Task",
    "Accept",
    "Refuse",
    "Result",
    "Cancel",
    "Integrate",
    "Integrated",
    "Propose",
    "Vote",
    "Commit",
    "Receipt",
];

struct Example {
    /// 1-based line of the opening fence in PROTOCOL.md.
    line: usize,
    /// The block's text, each line ending in LF.
    text: String,
}

impl Example {
    /// The kind on the message line (the block's second line), e.g. "Hand".
    fn kind(&self) -> &str {
        let message = self.text.lines().nth(1).unwrap_or_default();
        message.split('/').next().unwrap_or_default()
    }
}

fn protocol_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/PROTOCOL.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn examples() -> Vec<Example> {
    let doc = protocol_md();
    assert!(
        !doc.contains('\r'),
        "docs/PROTOCOL.md must use plain LF line endings (examples are written with LF)"
    );
    let mut out = Vec::new();
    let mut current: Option<Example> = None;
    for (i, line) in doc.lines().enumerate() {
        match &mut current {
            None if line.trim_end() == "```lppsp" => {
                current = Some(Example {
                    line: i + 1,
                    text: String::new(),
                })
            }
            None => {}
            Some(_) if line.trim_end() == "```" => out.extend(current.take()),
            Some(ex) => {
                ex.text.push_str(line);
                ex.text.push('\n');
            }
        }
    }
    if let Some(ex) = current {
        panic!("the ```lppsp block at line {} is never closed", ex.line);
    }
    out
}

fn decode(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lppsp"))
        .args(["frame", "decode"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lppsp");
    // Write and close stdin, so the decoder sees the end of its input.
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait for lppsp")
}

fn prints_kind(stdout: &str, kind: &str) -> bool {
    let prefix = format!("{kind}/");
    stdout.lines().any(|l| l.starts_with(&prefix))
}

#[test]
fn every_example_decodes() {
    let examples = examples();
    assert!(
        examples.len() >= KINDS.len(),
        "expected at least {} ```lppsp examples, found {}",
        KINDS.len(),
        examples.len()
    );
    let mut failures = Vec::new();
    for ex in &examples {
        let out = decode(&["--lf"], ex.text.as_bytes());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let kind = ex.kind();
        if !out.status.success() {
            failures.push(format!(
                "example at docs/PROTOCOL.md:{} ({kind}) failed ({}):\n{stderr}",
                ex.line, out.status
            ));
        } else if kind.is_empty() || !prints_kind(&stdout, kind) {
            failures.push(format!(
                "example at docs/PROTOCOL.md:{}: output does not show kind {kind:?}:\n{stdout}",
                ex.line
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_kind_has_an_example() {
    let examples = examples();
    let missing: Vec<&str> = KINDS
        .into_iter()
        .filter(|k| !examples.iter().any(|ex| ex.kind() == *k))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/PROTOCOL.md has no ```lppsp example of: {}",
        missing.join(", ")
    );
    for ex in &examples {
        assert!(
            KINDS.contains(&ex.kind()),
            "example at docs/PROTOCOL.md:{} has unknown kind {:?}",
            ex.line,
            ex.kind()
        );
    }
}

#[test]
fn all_examples_decode_as_one_stream_from_a_file() {
    // Back to back, as frames arrive on a connection, and read from FILE.
    let examples = examples();
    let stream: String = examples.iter().map(|ex| ex.text.as_str()).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("examples.txt");
    std::fs::write(&file, &stream).expect("write examples");
    let out = decode(&[file.to_str().expect("utf-8 path"), "--lf"], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "decoding all examples as one stream failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = stdout
        .lines()
        .filter(|l| KINDS.iter().any(|k| l.starts_with(&format!("{k}/"))))
        .count();
    assert_eq!(
        printed,
        examples.len(),
        "one message line per frame:\n{stdout}"
    );
}

#[test]
fn a_broken_example_is_reported_with_its_offset() {
    // The decoder is not simply accepting everything: without --lf the LF
    // line ends are refused, at the first line's end (byte 9).
    let out = decode(&[], b"LPPSP/1.5\nIdle/true\n\n");
    assert!(!out.status.success(), "bare LF lines should be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at byte 9"), "{stderr}");
    assert!(stderr.contains("LF without CR"), "{stderr}");
}
