//! Build facts for `lppsp bench`: the git commit (`LPPSP_GIT_COMMIT`, short
//! hash of HEAD, or "unknown") and the compiler (`LPPSP_RUSTC_VERSION`).
//!
//! Reruns only when HEAD or the branch it points to moves (and when this
//! file changes), never on other source changes.

use std::path::Path;
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let git = Path::new(&root).join(".git");
    let head = git.join("HEAD");
    // Only files that exist: a missing one would make cargo rerun every time.
    if head.is_file() {
        println!("cargo:rerun-if-changed={}", head.display());
        if let Ok(text) = std::fs::read_to_string(&head) {
            if let Some(r) = text.trim().strip_prefix("ref: ") {
                let loose = git.join(r);
                if loose.is_file() {
                    println!("cargo:rerun-if-changed={}", loose.display());
                }
            }
        }
        let packed = git.join("packed-refs");
        if packed.is_file() {
            println!("cargo:rerun-if-changed={}", packed.display());
        }
    }
    let commit = run("git", &["-C", &root, "rev-parse", "--short", "HEAD"])
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LPPSP_GIT_COMMIT={commit}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LPPSP_RUSTC_VERSION={version}");
}
