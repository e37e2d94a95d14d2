//! The server terminating TLS itself: an HTTPS admin session verified against a CA made in the
//! test (`--ca-file`), refused without it, and a renewed certificate taken on `SIGHUP` without a
//! restart (a broken one is not, and the old one keeps serving).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use offpay_test_support::tls::Authority;

struct TlsServer {
    child: Child,
    base: String,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_certificate(directory: &Path, authority: &Authority) {
    let issued = authority.issue(&["127.0.0.1", "localhost"]);
    std::fs::write(directory.join("server.crt"), issued.certificate_pem).unwrap();
    std::fs::write(directory.join("server.key"), issued.key_pem).unwrap();
}

fn serve(directory: &Path) -> Result<TlsServer, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_offpay"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(directory.join("data"))
        .arg("--tls-cert")
        .arg(directory.join("server.crt"))
        .arg("--tls-key")
        .arg(directory.join("server.key"))
        .env("OFFPAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = sender.send(Ok(rest.split_whitespace().next().unwrap_or("").to_owned()));
            }
            seen.push(line);
        }
        let _ = sender.send(Err(seen.join("\n")));
    });
    match receiver.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(base)) => Ok(TlsServer { child, base }),
        Ok(Err(output)) => {
            let _ = child.wait();
            Err(output)
        }
        Err(_) => panic!("the server neither started nor stopped"),
    }
}

fn admin(server: &TlsServer, directory: &Path, ca: Option<&Path>, base: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_offpay"));
    command
        .args(["admin", "--server", base, "--token-file"])
        .arg(directory.join("data").join("admin.token"))
        .arg("totals")
        .env_remove("OFFPAY_CA_FILE");
    if let Some(ca) = ca {
        command.arg("--ca-file").arg(ca);
    }
    assert!(server.base.starts_with("https://"));
    command.output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn an_https_admin_session_is_verified_and_a_renewed_certificate_is_taken_on_sighup() {
    let directory = tempfile::tempdir().unwrap();
    let first_ca = Authority::new("offpay test CA 1");
    let second_ca = Authority::new("offpay test CA 2");
    let (first_pem, second_pem) = (
        directory.path().join("ca1.pem"),
        directory.path().join("ca2.pem"),
    );
    first_ca.write_pem(&first_pem);
    second_ca.write_pem(&second_pem);
    write_certificate(directory.path(), &first_ca);
    let server = serve(directory.path()).unwrap();
    assert!(server.base.starts_with("https://"), "{}", server.base);

    let answer = admin(&server, directory.path(), Some(&first_pem), &server.base);
    assert!(answer.status.success(), "{}", text(&answer));
    assert!(!answer.stdout.is_empty(), "{}", text(&answer));

    // Without the CA the client does not trust the server, and says why.
    let refused = admin(&server, directory.path(), None, &server.base);
    assert!(!refused.status.success());
    assert!(
        text(&refused).to_lowercase().contains("certificate"),
        "the refusal names the certificate: {}",
        text(&refused)
    );
    // Plain HTTP to the HTTPS port gets no answer.
    let plain = server.base.replace("https://", "http://");
    let refused = admin(&server, directory.path(), Some(&first_pem), &plain);
    assert!(!refused.status.success(), "{}", text(&refused));

    // A renewed certificate, from another CA, is served after SIGHUP without a restart.
    write_certificate(directory.path(), &second_ca);
    let hangup = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hangup.success());
    let mut polls = 0;
    while !admin(&server, directory.path(), Some(&second_pem), &server.base)
        .status
        .success()
    {
        polls += 1;
        assert!(polls < 300, "the renewed certificate was never served");
        std::thread::sleep(Duration::from_millis(100));
    }
    let old = admin(&server, directory.path(), Some(&first_pem), &server.base);
    assert!(
        !old.status.success(),
        "the old certificate is gone: {}",
        text(&old)
    );

    // A broken renewal is not taken: the certificate in use keeps serving.
    std::fs::write(directory.path().join("server.crt"), "not a certificate").unwrap();
    let hangup = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hangup.success());
    std::thread::sleep(Duration::from_millis(500));
    let still = admin(&server, directory.path(), Some(&second_pem), &server.base);
    assert!(still.status.success(), "{}", text(&still));
}

#[test]
fn a_start_with_a_certificate_that_does_not_load_stops_with_its_name() {
    let directory = tempfile::tempdir().unwrap();
    let authority = Authority::new("offpay test CA");
    write_certificate(directory.path(), &authority);
    // The key of another certificate: it does not suit.
    let other = authority.issue(&["127.0.0.1"]);
    std::fs::write(directory.path().join("server.key"), other.key_pem).unwrap();
    let Err(output) = serve(directory.path()) else {
        panic!("a server started with a key that does not suit its certificate");
    };
    assert!(output.contains("does not suit the certificate"), "{output}");
}
