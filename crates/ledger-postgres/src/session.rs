//! One database session, used synchronously, that can also send several statements before
//! waiting for their answers (pipelining).
//!
//! The store's threads are not async; the driver is. A [`Client`] owns a single-threaded tokio
//! runtime and the driver's connection, and blocks on each call: the connection is driven only
//! while a call waits, as the synchronous `postgres` client does. What that client cannot do is
//! pipelining: statements queued on the wire one after another, before any answer is read, and
//! answered in order by the server. Futures built on [`Client::driver`] and polled together by
//! [`Client::block_on`] do it, so that a group commit's `BEGIN` and its three loads cost one
//! round trip instead of four (the store's `PostgresGroup::pipeline`, `docs/PERFORMANCE.md`).

use std::future::Future;
use std::time::Duration;

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Config, Error, Row, SimpleQueryMessage, Socket, Statement};

/// A notice the server sent on the session, handed to the store (which keeps the warnings).
pub(crate) type NoticeSink = Box<dyn Fn(&tokio_postgres::error::DbError) + Send + Sync>;

/// A connected session.
pub(crate) struct Client {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Client {
    /// Connects as `config` says (every host in turn, as `target_session_attrs` asks), and
    /// starts driving the connection; the server's notices go to `notices`.
    pub(crate) fn connect<T>(
        config: &Config,
        tls: T,
        notices: NoticeSink,
    ) -> Result<Client, ConnectError>
    where
        T: MakeTlsConnect<Socket> + 'static + Send,
        T::TlsConnect: Send,
        T::Stream: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ConnectError::Runtime)?;
        let (client, mut connection) = runtime
            .block_on(config.connect(tls))
            .map_err(ConnectError::Driver)?;
        // Runs only while a call blocks on the runtime; ends when the connection closes.
        runtime.spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notice(notice))) => notices(&notice),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
        });
        Ok(Client { runtime, client })
    }

    /// Runs `work` (built from [`Client::driver`]) to its end, driving the connection meanwhile.
    pub(crate) fn block_on<F: Future>(&self, work: F) -> F::Output {
        self.runtime.block_on(work)
    }

    /// The driver's client, to build futures for [`Client::block_on`]: futures polled together
    /// (`tokio::join!`) put their statements on the wire together.
    pub(crate) fn driver(&self) -> &tokio_postgres::Client {
        &self.client
    }

    pub(crate) fn query(
        &mut self,
        statement: &Statement,
        parameters: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        self.block_on(self.client.query(statement, parameters))
    }

    pub(crate) fn query_opt(
        &mut self,
        statement: &Statement,
        parameters: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        self.block_on(self.client.query_opt(statement, parameters))
    }

    /// One row of an unprepared statement (a prepare, an execute and a close on the wire).
    pub(crate) fn query_one(
        &mut self,
        sql: &str,
        parameters: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error> {
        self.block_on(self.client.query_one(sql, parameters))
    }

    pub(crate) fn execute(
        &mut self,
        sql: &str,
        parameters: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error> {
        self.block_on(self.client.execute(sql, parameters))
    }

    /// Statements in the simple protocol, separated by `;`, answers ignored.
    pub(crate) fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        self.block_on(self.client.batch_execute(sql))
    }

    pub(crate) fn simple_query(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
        self.block_on(self.client.simple_query(sql))
    }

    pub(crate) fn prepare(&mut self, sql: &str) -> Result<Statement, Error> {
        self.block_on(self.client.prepare(sql))
    }

    /// The connection is known to be closed (the server or the network ended it).
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Whether the session answers an empty query within `timeout`.
    pub(crate) fn is_valid(&mut self, timeout: Duration) -> bool {
        // The timer is made inside the runtime: it needs the runtime's clock.
        let client = &self.client;
        let answer = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, client.simple_query("")).await });
        matches!(answer, Ok(Ok(_)))
    }
}

/// Why [`Client::connect`] failed.
pub(crate) enum ConnectError {
    /// The driver's error: no host answered, or none accepted the login or the session asked.
    Driver(Error),
    /// The session's runtime could not be made (the process is out of threads or descriptors).
    Runtime(std::io::Error),
}
