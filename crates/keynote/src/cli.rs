//! The `keynote` command line (`verify`, `sign`, `sigver`, `keygen`) with the reference tool's
//! arguments, messages and exit codes, as a library function the `offpay` binary calls.
//!
//! Where the reference prints a bare `errno`, this prints the line, column and rule instead;
//! the first words of every message are the reference's.

use std::io::Write;
use std::sync::Arc;

use crate::assertion::Assertion;
use crate::error::{Error, ParseError, Rule};
use crate::keys::{Encoding, KeyAlgorithm, PrivateKey, SignatureAlgorithm};
use crate::lexer::lex_string;
use crate::limits::FILE_BYTES_MAX;
use crate::session::{
    ActionEnvironment, ComplianceValues, Failure, Session, SignatureCache, Trust,
};
use crate::text::{is_space, print_key, split_assertions};

/// Indentation of printed signatures and keys (the reference's `SIG_PRINT_OFFSET`).
const PRINT_OFFSET_DEFAULT: usize = 12;
/// Line width of printed signatures and keys (the reference's `SIG_PRINT_LENGTH`).
const PRINT_LENGTH_DEFAULT: usize = 50;

/// Run `keynote` with `args` (what follows `offpay keynote`, starting with the subcommand);
/// returns the process exit code.
pub fn run(args: &[String], stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32 {
    let mut io = Io { stdout, stderr };
    match args.first().map(String::as_str) {
        Some("verify") => verify(args, &mut io),
        Some("sign") => sign(args, &mut io),
        Some("sigver") => sigver(args, &mut io),
        Some("keygen") => keygen(args, &mut io),
        _ => {
            io.err(
                "Usage:\n\tsign ...\n\tsigver ...\n\tverify ...\n\tkeygen ...\nIssue one of the \
                 commands by itself to get more help, e.g., keynote sign\n",
            );
            1
        }
    }
}

struct Io<'a> {
    stdout: &'a mut dyn Write,
    stderr: &'a mut dyn Write,
}

impl Io<'_> {
    // Output to a closed pipe is not worth failing the command over; the exit code still says
    // what happened.
    fn out(&mut self, text: &str) {
        let _ = self.stdout.write_all(text.as_bytes());
    }

    fn err(&mut self, text: &str) {
        let _ = self.stderr.write_all(text.as_bytes());
    }
}

fn read_file(path: &str, io: &mut Io<'_>) -> Option<Vec<u8>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > FILE_BYTES_MAX as u64 => {
            io.err(&format!(
                "{path}: file larger than {FILE_BYTES_MAX} bytes\n"
            ));
            return None;
        }
        Ok(_) => {}
        Err(error) => {
            io.err(&format!("{path}: {error}\n"));
            return None;
        }
    }
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            io.err(&format!("{path}: {error}\n"));
            None
        }
    }
}

/// C `atoi`: optional sign and leading digits, anything else ends the number.
fn atoi(text: &str) -> i64 {
    let trimmed = text.trim_start();
    let (sign, digits) = match trimmed.as_bytes().first() {
        Some(b'-') => (-1, &trimmed[1..]),
        Some(b'+') => (1, &trimmed[1..]),
        _ => (1, trimmed),
    };
    let mut value: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        value = value.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    sign * value
}

fn skip_blank(text: &[u8], mut at: usize) -> usize {
    loop {
        while at < text.len() && is_space(text[at]) {
            at += 1;
        }
        if at < text.len() && text[at] == b'#' {
            while at < text.len() && text[at] != b'\n' {
                at += 1;
            }
            continue;
        }
        return at;
    }
}

/// Read a key file: one quoted string, with whitespace and `#` comments around it.
pub fn parse_key_file(text: &[u8]) -> Result<Vec<u8>, Error> {
    let located = |e: ParseError| Error::Syntax(e.locate(text, 0));
    let at = skip_blank(text, 0);
    if text.get(at) != Some(&b'"') {
        return Err(located(ParseError::new(
            at,
            Rule::KeyFile,
            "expected a quoted key string",
        )));
    }
    let (value, after) = lex_string(text, at, text.len()).map_err(located)?;
    let rest = skip_blank(text, after);
    if rest != text.len() {
        return Err(located(ParseError::new(
            rest,
            Rule::KeyFile,
            "only one key string is allowed",
        )));
    }
    Ok(value)
}

/// Read an action environment file: `name = "value"` pairs, `#` comments.
pub fn parse_environment_file(
    text: &[u8],
    environment: &mut ActionEnvironment,
) -> Result<(), Error> {
    let located = |e: ParseError| Error::Syntax(e.locate(text, 0));
    let mut at = skip_blank(text, 0);
    while at < text.len() {
        let name_start = at;
        if !text[at].is_ascii_alphanumeric() {
            return Err(located(ParseError::new(
                at,
                Rule::Environment,
                "expected an attribute name (letters, digits, `_`; not starting with `_`)",
            )));
        }
        while at < text.len() && (text[at].is_ascii_alphanumeric() || text[at] == b'_') {
            at += 1;
        }
        let name = &text[name_start..at];
        at = skip_blank(text, at);
        if text.get(at) != Some(&b'=') {
            return Err(located(ParseError::new(
                at,
                Rule::Environment,
                "expected `=` after the attribute name",
            )));
        }
        at = skip_blank(text, at + 1);
        if text.get(at) != Some(&b'"') {
            return Err(located(ParseError::new(
                at,
                Rule::Environment,
                "expected a quoted value after `=`",
            )));
        }
        let (value, after) = lex_string(text, at, text.len()).map_err(located)?;
        environment.set(name, &value).map_err(|e| {
            located(ParseError::new(
                name_start,
                Rule::Environment,
                e.to_string(),
            ))
        })?;
        at = skip_blank(text, after);
    }
    Ok(())
}

fn verify_usage(io: &mut Io<'_>) {
    io.err(
        "Arguments:\n\t-h:             This message\n\t-r <valuelist>: Comma separated, ordered \
         return-value list\n\t-e <filename>:  Environment settings\n\t-l <filename>:  Trusted \
         (local) assertion\n\t-k <filename>:  File containing key\nFollowed by a list \
         of:\n\t<filename>:     Non-local assertion\n",
    );
}

fn add_assertion_file(
    session: &mut Session,
    path: &str,
    trust: Trust,
    io: &mut Io<'_>,
) -> Result<(), i32> {
    let Some(bytes) = read_file(path, io) else {
        return Err(1);
    };
    let chunks = split_assertions(&bytes);
    if chunks.is_empty() {
        io.err(&format!(
            "Error for assertion in file <{path}>: no assertion found\n"
        ));
    }
    for (number, chunk) in chunks.iter().enumerate() {
        let added = Assertion::parse_at(chunk.text, chunk.line_base)
            .and_then(|a| session.add_assertion(Arc::new(a), trust));
        if let Err(error) = added {
            io.err(&format!(
                "Error for assertion {number} in file <{path}>: {error}\n"
            ));
        }
    }
    Ok(())
}

fn verify(args: &[String], io: &mut Io<'_>) -> i32 {
    if args.len() == 1 {
        verify_usage(io);
        return 1;
    }
    let mut session = Session::new();
    let mut values: Option<ComplianceValues> = None;
    let (mut have_environment, mut have_authorizer, mut have_trusted) = (false, false, false);
    let mut index = 1;
    while index < args.len() {
        let arg = &args[index];
        if arg == "--" {
            index += 1;
            break;
        }
        if !arg.starts_with('-') || arg.len() < 2 {
            break;
        }
        let option = arg.as_bytes()[1];
        if option == b'h' {
            verify_usage(io);
            return 0;
        }
        if !matches!(option, b'l' | b'e' | b'k' | b'r') {
            verify_usage(io);
            return 1;
        }
        let value = if arg.len() > 2 {
            arg[2..].to_string()
        } else {
            index += 1;
            match args.get(index) {
                Some(v) => v.clone(),
                None => {
                    verify_usage(io);
                    return 1;
                }
            }
        };
        index += 1;
        match option {
            b'e' => {
                let Some(text) = read_file(&value, io) else {
                    return 1;
                };
                if let Err(error) = parse_environment_file(&text, session.environment_mut()) {
                    let detail = match &error {
                        Error::Syntax(s) => {
                            format!("line {}, column {}: {}", s.line, s.column, s.message)
                        }
                        other => other.to_string(),
                    };
                    io.err(&format!(
                        "Syntax error in environment file <{value}>, {detail}\n"
                    ));
                    return 1;
                }
                have_environment = true;
            }
            b'k' => {
                have_authorizer = true;
                let Some(text) = read_file(&value, io) else {
                    return 1;
                };
                let added =
                    parse_key_file(&text).and_then(|key| session.add_action_authorizer(&key));
                if let Err(error) = added {
                    io.err(&format!(
                        "Syntax error adding authorizer {value}: {error}\n"
                    ));
                    return 1;
                }
            }
            b'r' => {
                if values.is_some() {
                    io.err("Do not define two sets of return values.\n");
                    return 1;
                }
                match ComplianceValues::new(value.split(',')) {
                    Ok(v) => values = Some(v),
                    Err(error) => {
                        io.err(&format!("Bad return value list: {error}\n"));
                        return 1;
                    }
                }
            }
            _ => {
                if let Err(code) = add_assertion_file(&mut session, &value, Trust::Trusted, io) {
                    return code;
                }
                have_trusted = true;
            }
        }
    }
    let Some(values) = values else {
        io.err("Should set return values before evaluations begin.\n");
        return 1;
    };
    if !have_environment {
        io.err("Should set environment before evaluations begin.\n");
        return 1;
    }
    if !have_authorizer {
        io.err("Should specify at least one action authorizer.\n");
        return 1;
    }
    if !have_trusted {
        io.err("Should specify at least one trusted assertion (POLICY).\n");
        return 1;
    }
    for path in &args[index..] {
        if let Err(code) = add_assertion_file(&mut session, path, Trust::Untrusted, io) {
            return code;
        }
    }
    let mut cache = SignatureCache::new();
    let result = match session.query(&values, &mut cache) {
        Ok(result) => result,
        Err(error) => {
            io.out(&format!("Query result = <{error}>\n"));
            return 1;
        }
    };
    io.out(&format!(
        "Query result = {}\n",
        String::from_utf8_lossy(values.name(result.value))
    ));
    for outcome in &result.assertions {
        let reason = match &outcome.failure {
            Some(Failure::Licensee(_)) => "syntax or semantic error",
            Some(Failure::WorkBudget) => "running out of its work budget",
            Some(Failure::QueryWorkBudget) => "running out of the query's work budget",
            Some(Failure::SignatureBudget) => {
                "running out of the query's signature-verification budget"
            }
            _ => continue,
        };
        io.out(&format!(
            "Failed assertion {} due to {reason}.\n",
            outcome.id.0
        ));
    }
    for outcome in &result.assertions {
        if let Some(Failure::Signature(error)) = &outcome.failure {
            io.out(&format!(
                "Failed assertion {} due to signature verification failure. ({error})\n",
                outcome.id.0
            ));
        }
    }
    0
}

fn print_parameters(args: &[String], first: usize, io: &mut Io<'_>) -> Result<(usize, usize), i32> {
    let mut begin = PRINT_OFFSET_DEFAULT;
    let mut length = PRINT_LENGTH_DEFAULT;
    if let Some(text) = args.get(first) {
        let value = atoi(text);
        if value <= -1 {
            io.err("Erroneous value for print-offset parameter.\n");
            return Err(1);
        }
        begin = usize::try_from(value).unwrap_or(usize::MAX).min(1024);
    }
    if let Some(text) = args.get(first + 1) {
        let value = atoi(text);
        if value <= 0 {
            io.err("Erroneous value for print-length parameter.\n");
            return Err(1);
        }
        length = usize::try_from(value).unwrap_or(usize::MAX);
    }
    Ok((begin, length))
}

fn fix_algorithm_name(name: &str, io: &mut Io<'_>) -> String {
    if name.ends_with(':') {
        name.to_string()
    } else {
        io.err(&format!(
            "Algorithm name [{name}] should be terminated with a colon, fixing.\n"
        ));
        format!("{name}:")
    }
}

fn sign(args: &[String], io: &mut Io<'_>) -> i32 {
    let usage = |io: &mut Io<'_>| {
        io.err(
            "Arguments:\n\t[-v] <AlgorithmName> <AssertionFile> <PrivateKeyFile> \
             [<print-offset>] [<print-length>]\n",
        );
    };
    if !(4..=7).contains(&args.len()) {
        usage(io);
        return 1;
    }
    let verify_after = args[1] == "-v";
    let base = usize::from(verify_after);
    if args.len() < 4 + base {
        usage(io);
        return 1;
    }
    let (begin, length) = match print_parameters(args, 4 + base, io) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let algorithm_name = fix_algorithm_name(&args[1 + base], io);
    let assertion_path = &args[2 + base];
    let key_path = &args[3 + base];
    let Some(assertion_text) = read_file(assertion_path, io) else {
        return 1;
    };
    if assertion_text.is_empty() {
        io.err("Error: zero-sized assertion-file.\n");
        return 1;
    }
    let Some(key_text) = read_file(key_path, io) else {
        return 1;
    };
    if key_text.is_empty() {
        io.err("Illegal key-file size 0\n");
        return 1;
    }
    let key_text = zeroize::Zeroizing::new(key_text);
    let signed = (|| -> Result<String, Error> {
        let algorithm = SignatureAlgorithm::from_name(&algorithm_name)
            .ok_or_else(|| Error::Usage(format!("unsupported algorithm {algorithm_name}")))?;
        let key_string = zeroize::Zeroizing::new(parse_key_file(&key_text)?);
        let key = PrivateKey::parse(&key_string)?;
        let assertion = Assertion::parse(&assertion_text)?;
        let signature = assertion.compute_signature(&key, algorithm)?;
        if verify_after {
            crate::keys::verify(
                assertion.authorizer(),
                assertion.signed_text(),
                signature.as_bytes(),
            )?;
        }
        Ok(signature)
    })();
    match signed {
        Ok(signature) => {
            io.out(&print_key("", &signature, begin, length));
            0
        }
        Err(error) => {
            io.err(&format!(
                "Bad assertion or algorithm format, or unsupported algorithm while creating \
                 signature.\n{error}\n"
            ));
            1
        }
    }
}

fn sigver(args: &[String], io: &mut Io<'_>) -> i32 {
    if args.len() != 2 {
        io.err("Arguments:\n\t<AssertionFile>\n");
        return 0;
    }
    let path = &args[1];
    let Some(text) = read_file(path, io) else {
        return 1;
    };
    if text.is_empty() {
        io.err("Illegal assertion-file size 0\n");
        return 1;
    }
    let chunks = split_assertions(&text);
    if chunks.is_empty() {
        io.err(&format!("No assertions found in {path}.\n"));
        return 1;
    }
    for (number, chunk) in chunks.iter().enumerate() {
        let assertion = match Assertion::parse_at(chunk.text, chunk.line_base) {
            Ok(a) => a,
            Err(error) => {
                io.err(&format!(
                    "Syntax error while parsing assertion {number}.\n{error}\n"
                ));
                continue;
            }
        };
        match assertion.verify_signature() {
            Ok(()) => io.out(&format!("Signature on assertion {number} verified.\n")),
            Err(Error::Signature(reason)) => io.out(&format!(
                "Signature on assertion {number} did not verify! ({reason})\n"
            )),
            Err(other) => io.out(&format!(
                "Signature on assertion {number} could not be verified ({other}).\n"
            )),
        }
    }
    0
}

fn write_output(path: &str, text: &str, private: bool, io: &mut Io<'_>) -> Result<(), i32> {
    if path == "-" {
        io.out(text);
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let written = options
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    written.map_err(|error| {
        io.err(&format!("{path}: {error}\n"));
        1
    })
}

/// The bits after the `alg-enc:` prefix of an identifier.
fn bits_of(identifier: &str) -> &str {
    identifier
        .split_once(':')
        .map_or(identifier, |(_, bits)| bits)
}

fn keygen(args: &[String], io: &mut Io<'_>) -> i32 {
    if !(5..=7).contains(&args.len()) {
        io.err(
            "Arguments:\n\t<AlgorithmName> <keysize> <PublicKeyFile> <PrivateKeyFile> \
             [<print-offset>] [<print-length>]\n",
        );
        return 0;
    }
    let algorithm_name = fix_algorithm_name(&args[1], io);
    let (begin, length) = match print_parameters(args, 5, io) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if algorithm_name.len() + 2 > length {
        io.err(&format!(
            "Parameter ``print-length'' should be larger than the length of AlgorithmName \
             ({})\n",
            algorithm_name.len()
        ));
        return 1;
    }
    let bits = atoi(&args[2]);
    if bits <= 0 {
        io.err(&format!("Invalid specified keysize {bits}\n"));
        return 1;
    }
    let lower = algorithm_name.to_ascii_lowercase();
    let (algorithm, encoding) = match lower.as_str() {
        "rsa-hex:" => (KeyAlgorithm::Rsa, Encoding::Hex),
        "rsa-base64:" => (KeyAlgorithm::Rsa, Encoding::Base64),
        "dsa-hex:" => (KeyAlgorithm::Dsa, Encoding::Hex),
        "dsa-base64:" => (KeyAlgorithm::Dsa, Encoding::Base64),
        "ed25519-hex:" => (KeyAlgorithm::Ed25519, Encoding::Hex),
        "ed25519-base64:" => (KeyAlgorithm::Ed25519, Encoding::Base64),
        _ => {
            io.err(&format!(
                "Unknown/unsupported algorithm [{algorithm_name}]\n"
            ));
            return 1;
        }
    };
    let key = match PrivateKey::generate(
        algorithm,
        usize::try_from(bits).unwrap_or(usize::MAX),
        &mut rand::rng(),
    ) {
        Ok(key) => key,
        Err(Error::Usage(reason)) => {
            io.err(&format!("Invalid specified keysize {bits} ({reason})\n"));
            return 1;
        }
        Err(error) => {
            io.err(&format!("Error generating key ({error})\n"));
            return 1;
        }
    };
    let public = String::from_utf8_lossy(&key.principal().to_identifier(encoding)).into_owned();
    let public_text = print_key(&algorithm_name, bits_of(&public), begin, length);
    if let Err(code) = write_output(&args[3], &public_text, false, io) {
        return code;
    }
    let private = match key.to_identifier(encoding) {
        Ok(text) => text,
        Err(error) => {
            io.err(&format!("Error encoding key ({error})\n"));
            return 1;
        }
    };
    let private_text = zeroize::Zeroizing::new(print_key(
        &format!("private-{algorithm_name}"),
        bits_of(&private),
        begin,
        length,
    ));
    if args[4] == "-" && args[3] == "-" {
        io.out("===========================\n");
    }
    if let Err(code) = write_output(&args[4], &private_text, true, io) {
        return code;
    }
    0
}
