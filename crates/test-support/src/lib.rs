//! What offpay's tests share, so that each story runs the same way on SQLite and PostgreSQL:
//! [`Backend`] (a fresh database per test, PostgreSQL when `OFFPAY_TEST_DATABASE_URL` names one),
//! [`ServerProcess`] (a real `offpay serve`), [`InProcess`] (a server driven through its router),
//! [`TempCluster`] (a PostgreSQL cluster of a test's own, to stop and start),
//! [`webdriver::Browser`] (headless Chromium through chromedriver).
//! Loopback only; every wait is bounded.

#![allow(
    clippy::expect_used,
    reason = "test support: a failed expectation is a failed test, with its message"
)]

pub mod cluster;
pub mod database;
pub mod in_process;
pub mod process;
pub mod tls;
pub mod webdriver;

pub use cluster::TempCluster;
pub use database::{Backend, BackendKind, DATABASE_URL_VARIABLE, FreshDatabase};
pub use in_process::InProcess;
pub use process::ServerProcess;

/// Turns story functions `fn story(kind: BackendKind)` into one `#[test]` each that runs the
/// story on SQLite, and on PostgreSQL when `OFFPAY_TEST_DATABASE_URL` is set (saying so when it
/// is not). Use it once per test file, after the stories.
#[macro_export]
macro_rules! on_every_backend {
    ($($story:ident),* $(,)?) => {
        mod every_backend {
            $(
                #[test]
                fn $story() {
                    for kind in $crate::BackendKind::all(stringify!($story)) {
                        super::$story(kind);
                    }
                }
            )*
        }
    };
}

/// [`on_every_backend!`] for async stories `async fn story(backend: Backend)`: one
/// `#[tokio::test]` each (the test crate depends on tokio with its macros), on SQLite and, when
/// `OFFPAY_TEST_DATABASE_URL` is set, on a fresh PostgreSQL database. Begin the list with
/// `multi_thread;` for stories that need a runtime with two worker threads.
#[macro_export]
macro_rules! on_every_backend_async {
    // Stories that need a runtime with two worker threads (work decided while other work commits).
    (multi_thread; $($story:ident),* $(,)?) => {
        mod every_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    for backend in $crate::Backend::all(stringify!($story)) {
                        super::$story(backend).await;
                    }
                }
            )*
        }
    };
    ($($story:ident),* $(,)?) => {
        mod every_backend {
            $(
                #[tokio::test]
                async fn $story() {
                    for backend in $crate::Backend::all(stringify!($story)) {
                        super::$story(backend).await;
                    }
                }
            )*
        }
    };
}
