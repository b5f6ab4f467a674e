//! Sets `TUXA_BUILD` for health.rs: what a packager gave in `TUXA_BUILD`, or
//! the git commit checked out at build time, or `unknown` outside a git
//! checkout (a source tarball). Not `--dirty`: this script reruns when the
//! commit moves, not at every edit, so a dirty mark could be stale.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=TUXA_BUILD");
    let build = std::env::var("TUXA_BUILD")
        .ok()
        .filter(|b| !b.is_empty())
        .or_else(|| {
            // Rebuild when the checked-out commit moves: HEAD, and the
            // branch it points at (a worktree has its own HEAD).
            for path in ["HEAD", "packed-refs"] {
                if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(p) = git(&["rev-parse", "--git-path", &r])
            {
                println!("cargo:rerun-if-changed={p}");
            }
            git(&["describe", "--always", "--abbrev=12"])
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TUXA_BUILD={build}");
}
