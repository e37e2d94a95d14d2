//! What the tests through a real Kannel share: where Debian puts its programs, whether they are
//! there (a test fails without them unless `OFFPAY_ALLOW_SKIP_KANNEL=1`), and waiting for a port.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

pub use offpay_test_support::cluster::free_port;
pub use offpay_test_support::webdriver::Killed;

pub const BEARERBOX: &str = "/usr/sbin/bearerbox";
pub const SMSBOX: &str = "/usr/sbin/smsbox";
pub const FAKESMSC: &str = "/usr/lib/kannel/test/fakesmsc";
/// How long Kannel, a server and a round trip through them may take.
pub const KANNEL_WAIT_MAX: Duration = Duration::from_secs(60);

/// Waits until something listens on `port` (at most [`KANNEL_WAIT_MAX`]).
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + KANNEL_WAIT_MAX;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether Kannel is installed; panics if not, unless `OFFPAY_ALLOW_SKIP_KANNEL=1` (then it says
/// SKIPPED and answers false).
pub fn kannel_installed() -> bool {
    if Path::new(BEARERBOX).exists() && Path::new(SMSBOX).exists() && Path::new(FAKESMSC).exists() {
        return true;
    }
    if std::env::var("OFFPAY_ALLOW_SKIP_KANNEL").is_ok_and(|value| value == "1") {
        eprintln!(
            "SKIPPED: Kannel is not installed ({BEARERBOX}, {SMSBOX}, {FAKESMSC}); \
             install the Debian packages kannel and kannel-extras to run this test"
        );
        return false;
    }
    panic!(
        "Kannel is not installed ({BEARERBOX}, {SMSBOX}, {FAKESMSC}): scripts/test.sh installs \
         the Debian packages kannel and kannel-extras; set OFFPAY_ALLOW_SKIP_KANNEL=1 to skip"
    );
}
