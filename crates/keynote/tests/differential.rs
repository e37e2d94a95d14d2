//! The differential corpus (`fixtures/differential.txt`) against the reference KeyNote
//! (OpenBSD libkeynote's `keynote verify`).
//!
//! Every case becomes the same files and the same `keynote verify` arguments for both tools:
//! the environment `fixtures/differential.env`, one key file per action authorizer, the case's
//! assertions, and the return values `false,maybe,probably,true`. What a tool prints and exits
//! with is turned into one label (see [`label`]).
//!
//! - `offpay_gives_the_recorded_answers` (always run) runs offpay's `keynote verify` on every
//!   case and compares with the corpus's offpay column; a case whose reference column differs
//!   must be marked `differs` and justified in `docs/keynote.md`.
//! - `the_reference_gives_the_recorded_answers` (ignored: CI has no reference) runs the
//!   reference binary named by `OFFPAY_KEYNOTE_REFERENCE` on every case and compares with the
//!   reference column. `scripts/keynote-differential.sh` builds the reference and runs it; with
//!   `OFFPAY_KEYNOTE_RECORD=<corpus path>` it writes both tools' actual answers into the corpus
//!   instead (notes are kept; a note of `?` becomes `same` or `differs: ?` for a person to fill).
// A panic is how a test reports failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

const VALUES: &str = "false,maybe,probably,true";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Case<'a> {
    line: &'a str,
    kind: &'a str,
    text: &'a str,
    authorizers: &'a str,
    reference: &'a str,
    offpay: &'a str,
    note: &'a str,
}

fn corpus(text: &str) -> Vec<Case<'_>> {
    let mut cases = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(" | ").collect();
        let [kind, text, authorizers, reference, offpay, note] = fields.as_slice() else {
            panic!("six fields: {line}")
        };
        cases.push(Case {
            line,
            kind,
            text,
            authorizers,
            reference,
            offpay,
            note,
        });
    }
    cases
}

/// The arguments after `keynote` for one case, with its files written under `dir`.
fn arguments(case: &Case<'_>, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "verify".into(),
        "-e".into(),
        fixtures().join("differential.env").display().to_string(),
        "-r".into(),
        VALUES.into(),
    ];
    for (index, authorizer) in case.authorizers.split(',').enumerate() {
        let path = if let Some(file) = authorizer.strip_prefix('@') {
            fixtures().join(file)
        } else {
            let path = dir.join(format!("key{index}"));
            std::fs::write(&path, format!("\"{authorizer}\"\n")).unwrap();
            path
        };
        args.push("-k".into());
        args.push(path.display().to_string());
    }
    let mut untrusted = Vec::new();
    match case.kind {
        "cond" | "lic" => {
            let assertion = if case.kind == "cond" {
                format!(
                    "Authorizer: \"POLICY\"\nLicensees: \"A\"\nConditions: {}\n",
                    case.text
                )
            } else {
                format!("Authorizer: \"POLICY\"\nLicensees: {}\n", case.text)
            };
            let path = dir.join("assertion");
            std::fs::write(&path, assertion).unwrap();
            args.push("-l".into());
            args.push(path.display().to_string());
        }
        "files" => {
            for file in case.text.split_whitespace() {
                let (trust, name) = file.split_once(':').expect("l:NAME or u:NAME");
                let path = fixtures()
                    .join("differential")
                    .join(name)
                    .display()
                    .to_string();
                match trust {
                    "l" => {
                        args.push("-l".into());
                        args.push(path);
                    }
                    "u" => untrusted.push(path),
                    other => panic!("unknown trust {other}: {}", case.line),
                }
            }
        }
        other => panic!("unknown kind {other}: {}", case.line),
    }
    args.extend(untrusted);
    args
}

/// One label for what `keynote verify` did: the query's value (`false` .. `true`), followed by
/// `/syntax-error` when an assertion was dropped as malformed, `/bad-signature` when one was
/// dropped for its signature and `/budget` when one ran out of work; `refused` when an action
/// authorizer was refused; `error` for any other failed run.
fn label(code: i32, stdout: &str, stderr: &str) -> String {
    if code != 0 {
        return if stderr.contains("adding authorizer") {
            "refused".into()
        } else {
            "error".into()
        };
    }
    let Some(value) = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Query result = "))
    else {
        return "error".into();
    };
    let mut label = value.to_owned();
    if stderr.contains("Error for assertion") || stdout.contains("syntax or semantic error") {
        label.push_str("/syntax-error");
    }
    if stdout.contains("signature verification failure") {
        label.push_str("/bad-signature");
    }
    if stdout.contains("running out of") {
        label.push_str("/budget");
    }
    label
}

fn offpay(case: &Case<'_>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let args = arguments(case, dir.path());
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let code = offpay_keynote::cli::run(&args, &mut stdout, &mut stderr);
    label(
        code,
        &String::from_utf8_lossy(&stdout),
        &String::from_utf8_lossy(&stderr),
    )
}

fn reference(binary: &str, case: &Case<'_>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let args = arguments(case, dir.path());
    let output = std::process::Command::new(binary)
        .args(&args)
        .output()
        .expect("run the reference");
    label(
        output.status.code().unwrap_or(-1),
        &String::from_utf8_lossy(&output.stdout),
        &String::from_utf8_lossy(&output.stderr),
    )
}

#[test]
fn offpay_gives_the_recorded_answers() {
    let text = std::fs::read_to_string(fixtures().join("differential.txt")).unwrap();
    let cases = corpus(&text);
    let mut failures = Vec::new();
    for case in &cases {
        let answer = offpay(case);
        if answer != case.offpay {
            failures.push(format!("offpay gave {answer}: {}", case.line));
        }
        // A case where we differ from the reference must say so, and only such a case.
        if case.note.starts_with("differs") != (case.reference != case.offpay) {
            failures.push(format!("note does not match the columns: {}", case.line));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 150, "{}", cases.len());
    let differing = cases.iter().filter(|c| c.reference != c.offpay).count();
    // Every difference is listed in docs/keynote.md; a new one must be added there too.
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/keynote.md"),
    )
    .unwrap();
    for case in cases.iter().filter(|c| c.reference != c.offpay) {
        assert!(
            doc.contains(case.text),
            "docs/keynote.md does not list the difference `{}`",
            case.text
        );
    }
    assert!(differing < cases.len() / 10, "{differing} differences");
}

#[test]
#[ignore = "needs the reference's `keynote` binary: scripts/keynote-differential.sh"]
fn the_reference_gives_the_recorded_answers() {
    let binary = std::env::var("OFFPAY_KEYNOTE_REFERENCE")
        .expect("OFFPAY_KEYNOTE_REFERENCE names the reference's keynote binary");
    let path = fixtures().join("differential.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let cases = corpus(&text);
    if let Ok(target) = std::env::var("OFFPAY_KEYNOTE_RECORD") {
        let mut out = String::new();
        let mut next = cases.iter().peekable();
        for line in text.lines() {
            match next.peek() {
                Some(case) if case.line == line => {
                    let (theirs, ours) = (reference(&binary, case), offpay(case));
                    let note = match case.note {
                        "?" if theirs == ours => "same".to_owned(),
                        "?" => "differs: ?".to_owned(),
                        note => note.to_owned(),
                    };
                    out.push_str(&format!(
                        "{} | {} | {} | {theirs} | {ours} | {note}\n",
                        case.kind, case.text, case.authorizers
                    ));
                    next.next();
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        std::fs::write(target, out).unwrap();
        return;
    }
    let mut failures = Vec::new();
    let mut same = 0;
    for case in &cases {
        let answer = reference(&binary, case);
        if answer != case.reference {
            failures.push(format!("the reference gave {answer}: {}", case.line));
        }
        if answer == case.offpay {
            same += 1;
        }
    }
    println!(
        "{} cases, {same} answered alike, {} differently",
        cases.len(),
        cases.len() - same
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
