//! Build script: the commit the daemon is built from, for `hestyna_obsd_build_info{commit}`.
//! `HESTYNA_OBSD_COMMIT` wins (the container build passes it: the image has no `.git`); otherwise the
//! checkout's `git rev-parse HEAD`; outside a checkout, the label says `unknown`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=HESTYNA_OBSD_COMMIT");
    if std::env::var_os("HESTYNA_OBSD_COMMIT").is_some() {
        return;
    }
    // Build again when HEAD moves: HEAD itself, the branch it names, and the packed refs.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(commit) = git(&["rev-parse", "HEAD"]) {
        println!("cargo:rustc-env=HESTYNA_OBSD_COMMIT={commit}");
    }
}
