//! Writes the seed corpus, `fuzz/seeds/<target>/<name>`, from the real encoders (the fixtures in
//! the library). `--check` compares instead of writing and fails when a seed is missing, stale or
//! extra. The KeyNote targets' seeds are assertion files kept by hand and are left alone.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds [-- --check]`

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().any(|argument| argument == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut problems = 0usize;
    for (target, seeds) in offpay_fuzz::all_seeds() {
        let directory = root.join(target);
        let mut present: Vec<String> = std::fs::read_dir(&directory)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !check {
            std::fs::create_dir_all(&directory).expect("create the seed directory");
        }
        for (name, bytes) in &seeds {
            let path = directory.join(name);
            present.retain(|file| file != name);
            if check {
                if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
                    eprintln!("stale or missing seed: {}", path.display());
                    problems += 1;
                }
            } else {
                std::fs::write(&path, bytes).expect("write a seed");
            }
        }
        for extra in present {
            let path = directory.join(&extra);
            if check {
                eprintln!("seed no fixture writes: {}", path.display());
                problems += 1;
            } else {
                std::fs::remove_file(&path).expect("remove an old seed");
            }
        }
        println!("{target}: {} seeds", seeds.len());
    }
    if problems > 0 {
        eprintln!("{problems} seed files differ: run the seeds example without --check");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
