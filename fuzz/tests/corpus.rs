//! The committed seeds replayed on stable (`cargo test`, from `fuzz/`): every file of
//! `corpus/<target>/` runs once through the binary of fuzz target `<target>`, a debug build
//! with libFuzzer linked, which runs the files it is given as arguments and fuzzes nothing
//! (no coverage instrumentation is needed for that). A failed property aborts the binary.
//!
//! The corpus directories and the targets (`fuzz_targets/<target>.rs`) must match one to one:
//! a target without seeds, or seeds without a target, fail here, so a new target cannot be
//! left out of this replay.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The fuzz crate's directory.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Names in `dir` (not hidden) that satisfy `keep`.
fn names(dir: &Path, keep: impl Fn(&Path) -> bool) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| keep(path))
        .filter_map(|path| Some(path.file_name()?.to_str()?.to_owned()))
        .filter(|name| !name.starts_with('.'))
        .collect()
}

#[test]
fn every_committed_seed_passes_its_target() {
    let targets: BTreeSet<String> = names(&root().join("fuzz_targets"), |p| {
        p.extension().is_some_and(|e| e == "rs")
    })
    .into_iter()
    .map(|name| name.trim_end_matches(".rs").to_owned())
    .collect();
    let corpora = names(&root().join("corpus"), Path::is_dir);
    assert_eq!(
        corpora, targets,
        "corpus/<target>/ and fuzz_targets/<target>.rs must match one to one"
    );
    // Every target is a binary of this crate: they all lie beside this one.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_header"))
        .parent()
        .expect("the binaries' directory");
    for target in &targets {
        let dir = root().join("corpus").join(target);
        let seeds: Vec<PathBuf> = names(&dir, Path::is_file)
            .into_iter()
            .map(|name| dir.join(name))
            .collect();
        assert!(!seeds.is_empty(), "{target}: no seed in {}", dir.display());
        let bin = bin_dir.join(target);
        let out = Command::new(&bin)
            .args(&seeds)
            .output()
            .unwrap_or_else(|e| panic!("{target}: running {}: {e}", bin.display()));
        assert!(
            out.status.success(),
            "{target}: a seed fails ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{target}: {} seeds pass", seeds.len());
    }
}
