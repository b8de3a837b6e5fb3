//! The PostgreSQL backend for clusters of Courier hosts sharing one store: a small blocking
//! client over std sockets (TCP or UNIX) speaking the frontend/backend protocol with
//! postgres-protocol's message codec; password, MD5 and SCRAM-SHA-256 authentication; named
//! prepared statements; every socket operation has a timeout.
//!
//! Transactions run at READ COMMITTED, and `get` first takes a transaction-scoped advisory lock
//! on the key (in its own statement, so the read that follows sees whatever the previous holder
//! committed). A message's read-modify-write of a key is therefore exact across workers and
//! hosts, without the false conflicts SERIALIZABLE raises between unrelated keys on small
//! tables (its predicate locks cover whole index pages). Counter upserts lock their row.
//!
//! A lost connection (I/O error, timeout, FATAL from the server) makes the backend "broken":
//! every operation then fails with a transient error until the next [`Backend::begin`] (or a
//! maintenance call outside a transaction), which reconnects. So a [`super::Store`] may keep
//! the backend after a transient error and simply retry, or drop it and connect anew.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::IsNull;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::{ErrorFields, Message};
use postgres_protocol::message::frontend;

use super::{Backend, PgConfig, StoreError, Tx};

/// Bound on establishing a connection (TCP connect, then each read of the startup and
/// authentication exchange).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on every later socket read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The settings of every session (restored after maintenance statements). The
/// `statement_timeout` (ms) is below [`IO_TIMEOUT`], so that a statement stuck on a lock is
/// cancelled by the server (a transient error) before the socket read gives up and the
/// connection has to be dropped.
const SESSION_SETTINGS: &str = "SET statement_timeout = 8000";
/// Purges and dumps may scan a large table: they get this long instead.
pub const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(300);

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            Stream::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// The prepared statements, one per operation and table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Get,
    Set,
    Delete,
    Count,
    CountSum,
    PurgeTtl,
    PurgeCounters,
    Dump,
    /// The per-key advisory lock `get` takes inside a transaction.
    Lock,
}

impl Op {
    fn sql(self, t: &str) -> String {
        match self {
            Op::Get => format!("SELECT value FROM {t} WHERE id = $1"),
            Op::Set => format!(
                "INSERT INTO {t} (id, value) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value"
            ),
            Op::Delete => format!("DELETE FROM {t} WHERE id = $1"),
            Op::Count => format!(
                "INSERT INTO {t} (key, bucket, count) VALUES ($1, $2, $3) \
                 ON CONFLICT (key, bucket) DO UPDATE SET count = {t}.count + EXCLUDED.count"
            ),
            // SUM(bigint) is numeric: cast back so the text result is a plain integer.
            Op::CountSum => format!(
                "SELECT COALESCE(SUM(count), 0)::bigint FROM {t} \
                 WHERE key = $1 AND bucket BETWEEN $2 AND $3"
            ),
            Op::PurgeTtl => format!("DELETE FROM {t} WHERE value < $1"),
            Op::PurgeCounters => format!("DELETE FROM {t} WHERE bucket < $1"),
            Op::Dump => format!("SELECT id, value FROM {t}"),
            Op::Lock => "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))".to_string(),
        }
    }
}

/// What one query returned: its rows (text format) and its command tag.
#[derive(Debug, Default)]
struct Reply {
    rows: Vec<Vec<Option<String>>>,
    tag: String,
}

impl Reply {
    /// The row count of an INSERT/UPDATE/DELETE tag ("DELETE 3").
    fn affected(&self) -> u64 {
        self.tag
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// An ErrorResponse from the server.
struct ServerError {
    severity: String,
    code: String,
    message: String,
    detail: String,
}

impl ServerError {
    fn parse(fields: ErrorFields<'_>) -> ServerError {
        let mut e = ServerError {
            severity: String::new(),
            code: String::new(),
            message: String::new(),
            detail: String::new(),
        };
        let mut fields = fields;
        // A malformed field list just ends the parse: what was read still describes it.
        while let Ok(Some(f)) = fields.next() {
            let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
            match f.type_() {
                // 'V' is the non-localized severity; 'S' the localized one (older servers).
                b'V' => e.severity = v,
                b'S' if e.severity.is_empty() => e.severity = v,
                b'C' => e.code = v,
                b'M' => e.message = v,
                b'D' => e.detail = v,
                _ => {}
            }
        }
        e
    }

    /// The session ends with this error (the server closes the connection).
    fn fatal(&self) -> bool {
        self.severity == "FATAL" || self.severity == "PANIC"
    }

    /// Worth retrying: serialization conflicts, deadlocks, cancelled statements, the server
    /// shutting down or starting up, lack of resources, a lost connection, and the race of
    /// two sessions creating one table. Authentication and other errors are not.
    fn transient(&self) -> bool {
        let c = self.code.as_str();
        matches!(
            c,
            "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" | "25P03"
        ) || c.starts_with("08")
            || c.starts_with("53")
            || (self.fatal() && !c.starts_with("28") && !c.starts_with("3D"))
    }
}

/// The connection is unusable (or could not be opened): transient, and the caller should
/// reconnect.
fn lost(message: String) -> StoreError {
    StoreError::connection_lost(message)
}

/// The reference's table names are plain identifiers, used unquoted.
fn check_table(table: &str) -> Result<(), StoreError> {
    let ok = !table.is_empty()
        && !table.starts_with(|c: char| c.is_ascii_digit())
        && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::new(format!(
            "invalid table name {table:?}: only letters, digits and '_' (not first) are allowed"
        )))
    }
}

fn parse_int(v: &Option<String>, what: &str) -> Result<Option<i64>, StoreError> {
    match v {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| StoreError::new(format!("PostgreSQL returned {s:?} as {what}"))),
    }
}

pub struct PgBackend {
    config: PgConfig,
    stream: Stream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Server-side names of the statements prepared on this connection.
    statements: HashMap<(Op, String), String>,
    next_statement: u64,
    /// The connection is unusable (I/O error, timeout, FATAL); reconnect before reuse.
    broken: bool,
    /// Between a successful `begin` and `commit`/`rollback`.
    in_tx: bool,
    /// Keys whose advisory lock this transaction holds.
    locked: std::collections::HashSet<String>,
    /// The last ReadyForQuery status: b'I' idle, b'T' in a transaction, b'E' failed one.
    tx_status: u8,
    backend_pid: i32,
}

impl PgBackend {
    /// Connect and authenticate (bounded by a connect timeout).
    pub fn connect(config: &PgConfig) -> Result<PgBackend, StoreError> {
        let stream = open_stream(config)?;
        let mut b = PgBackend {
            config: config.clone(),
            stream,
            rbuf: BytesMut::with_capacity(8192),
            wbuf: BytesMut::with_capacity(1024),
            statements: HashMap::new(),
            next_statement: 0,
            broken: false,
            in_tx: false,
            locked: Default::default(),
            tx_status: b'I',
            backend_pid: 0,
        };
        b.startup()?;
        Ok(b)
    }

    pub fn config(&self) -> &PgConfig {
        &self.config
    }

    /// The connection was lost; the next `begin` (or maintenance call) reconnects.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The server process of this connection (for `pg_terminate_backend` in tests).
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// Run SQL with the simple query protocol (DDL, administration, tests): the rows of the
    /// last statement, in text format.
    pub fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, StoreError> {
        Ok(self.simple(sql)?.rows)
    }

    /// Replace a broken connection by a new one (statements are prepared again on use).
    pub fn reconnect(&mut self) -> Result<(), StoreError> {
        let fresh = PgBackend::connect(&self.config)?;
        // The old one is dropped with the old value (a best-effort Terminate).
        *self = fresh;
        Ok(())
    }

    fn describe(&self) -> String {
        let c = &self.config;
        if c.host.starts_with('/') {
            format!("PostgreSQL {}/.s.PGSQL.{}", c.host, c.port)
        } else {
            format!("PostgreSQL {}:{}", c.host, c.port)
        }
    }

    fn io_error(&mut self, e: io::Error) -> StoreError {
        self.broken = true;
        let what = match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".to_string(),
            io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
            _ => format!("connection lost: {e}"),
        };
        lost(format!("{}: {what}", self.describe()))
    }

    fn protocol_error(&mut self, what: impl std::fmt::Display) -> StoreError {
        self.broken = true;
        lost(format!("{}: protocol error: {what}", self.describe()))
    }

    fn server_error(&mut self, e: &ServerError) -> StoreError {
        if e.fatal() {
            self.broken = true;
        }
        let mut msg = format!("{}: {} (SQLSTATE {})", self.describe(), e.message, e.code);
        if !e.detail.is_empty() {
            msg.push_str(": ");
            msg.push_str(&e.detail);
        }
        match (e.transient(), e.fatal()) {
            (true, true) => lost(msg),
            (true, false) => StoreError::transient(msg),
            (false, _) => StoreError::new(msg),
        }
    }

    fn usable(&mut self) -> Result<(), StoreError> {
        if self.broken {
            Err(lost(format!(
                "{}: the connection was lost",
                self.describe()
            )))
        } else {
            Ok(())
        }
    }

    /// Outside a transaction a broken connection is replaced; inside one the transaction is
    /// lost, which the caller must learn (it retries from `begin`).
    fn ensure_connected(&mut self) -> Result<(), StoreError> {
        if self.broken && !self.in_tx {
            self.reconnect()
        } else {
            self.usable()
        }
    }

    fn send(&mut self) -> Result<(), StoreError> {
        let r = self.stream.write_all(&self.wbuf);
        self.wbuf.clear();
        r.map_err(|e| self.io_error(e))
    }

    /// The next message that matters (notices and parameter changes are skipped).
    fn read_message(&mut self) -> Result<Message, StoreError> {
        let mut chunk = [0u8; 8192];
        loop {
            match Message::parse(&mut self.rbuf) {
                Ok(Some(Message::NoticeResponse(body))) => {
                    let n = ServerError::parse(body.fields());
                    log::debug!("{}: notice: {}", self.describe(), n.message);
                }
                Ok(Some(Message::ParameterStatus(_) | Message::NotificationResponse(_))) => {}
                Ok(Some(m)) => return Ok(m),
                Ok(None) if announced_len(&self.rbuf) > MAX_MESSAGE_BYTES => {
                    let len = announced_len(&self.rbuf);
                    return Err(self.protocol_error(format!(
                        "a message of {len} bytes announced, more than the {MAX_MESSAGE_BYTES} \
                         accepted"
                    )));
                }
                Ok(None) => match self.stream.read(&mut chunk) {
                    Ok(0) => return Err(self.io_error(io::ErrorKind::UnexpectedEof.into())),
                    Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.io_error(e)),
                },
                Err(e) => return Err(self.protocol_error(e)),
            }
        }
    }

    fn startup(&mut self) -> Result<(), StoreError> {
        let user = self.config.user.clone();
        let db = self.config.db.clone();
        let params = [
            ("user", user.as_str()),
            ("database", db.as_str()),
            ("application_name", "rustfilter"),
            ("client_encoding", "UTF8"),
        ];
        if let Err(e) = frontend::startup_message(params, &mut self.wbuf) {
            self.wbuf.clear();
            return Err(StoreError::new(format!(
                "{}: invalid user or database name: {e}",
                self.describe()
            )));
        }
        self.send()?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.read_message()? {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    let pw = self.password()?;
                    self.password_message(pw.as_bytes())?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let pw = self.password()?;
                    let hash = md5_hash(user.as_bytes(), pw.as_bytes(), body.salt());
                    self.password_message(hash.as_bytes())?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut mechs = body.mechanisms();
                    let mut found = false;
                    while let Some(m) = mechs.next().map_err(|e| self.protocol_error(e))? {
                        found |= m == SCRAM_SHA_256;
                    }
                    if !found {
                        self.broken = true;
                        return Err(StoreError::new(format!(
                            "{}: the server offers no SASL mechanism supported here \
                             (only SCRAM-SHA-256 without channel binding)",
                            self.describe()
                        )));
                    }
                    let pw = self.password()?;
                    let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut self.wbuf)
                        .map_err(|e| self.protocol_error(e))?;
                    self.send()?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let Some(s) = scram.as_mut() else {
                        return Err(self.protocol_error("SASL continue without SASL start"));
                    };
                    if let Err(e) = s.update(body.data()) {
                        return Err(self.protocol_error(format!("SCRAM: {e}")));
                    }
                    frontend::sasl_response(s.message(), &mut self.wbuf)
                        .map_err(|e| self.protocol_error(e))?;
                    self.send()?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let Some(s) = scram.as_mut() else {
                        return Err(self.protocol_error("SASL final without SASL start"));
                    };
                    // Verifies the server's signature: it knows the password too.
                    if let Err(e) = s.finish(body.data()) {
                        return Err(self.protocol_error(format!("SCRAM: {e}")));
                    }
                }
                Message::BackendKeyData(body) => self.backend_pid = body.process_id(),
                Message::ReadyForQuery(body) => {
                    self.tx_status = body.status();
                    break;
                }
                Message::ErrorResponse(body) => {
                    let e = ServerError::parse(body.fields());
                    self.broken = true;
                    return Err(self.server_error(&e));
                }
                Message::AuthenticationGss
                | Message::AuthenticationKerberosV5
                | Message::AuthenticationScmCredential
                | Message::AuthenticationSspi
                | Message::AuthenticationGssContinue(_) => {
                    self.broken = true;
                    return Err(StoreError::new(format!(
                        "{}: the server asks for an authentication method not supported here \
                         (use scram-sha-256, md5, password or trust in pg_hba.conf)",
                        self.describe()
                    )));
                }
                _ => return Err(self.protocol_error("unexpected message during startup")),
            }
        }
        self.stream
            .set_timeouts(IO_TIMEOUT)
            .map_err(|e| self.io_error(e))?;
        // Set here rather than as startup parameters, which connection poolers may refuse.
        // A statement stuck on a lock is cancelled (a transient error) before the socket
        // timeout would cut the connection.
        self.simple(SESSION_SETTINGS)?;
        Ok(())
    }

    fn password(&mut self) -> Result<String, StoreError> {
        if self.config.password.is_empty() {
            self.broken = true;
            return Err(StoreError::new(format!(
                "{}: the server asks for a password for user {} and none is configured",
                self.describe(),
                self.config.user
            )));
        }
        Ok(self.config.password.clone())
    }

    fn password_message(&mut self, pw: &[u8]) -> Result<(), StoreError> {
        frontend::password_message(pw, &mut self.wbuf).map_err(|e| self.protocol_error(e))?;
        self.send()
    }

    /// Read the replies up to ReadyForQuery. The first server error is returned, after the
    /// connection is back in sync (or known broken).
    fn read_reply(&mut self, mut on_parse: impl FnMut(&mut Self)) -> Result<Reply, StoreError> {
        let mut reply = Reply::default();
        let mut error: Option<StoreError> = None;
        loop {
            match self.read_message()? {
                Message::ParseComplete => on_parse(self),
                Message::BindComplete
                | Message::NoData
                | Message::RowDescription(_)
                | Message::ParameterDescription(_)
                | Message::EmptyQueryResponse
                | Message::CloseComplete
                | Message::PortalSuspended => {}
                Message::DataRow(body) => {
                    let mut ranges = body.ranges();
                    let mut row = Vec::new();
                    loop {
                        match ranges.next() {
                            Ok(Some(Some(r))) => match body.buffer().get(r) {
                                Some(b) => row.push(Some(String::from_utf8_lossy(b).into_owned())),
                                None => return Err(self.protocol_error("bad data row")),
                            },
                            Ok(Some(None)) => row.push(None),
                            Ok(None) => break,
                            Err(e) => return Err(self.protocol_error(e)),
                        }
                    }
                    reply.rows.push(row);
                }
                Message::CommandComplete(body) => {
                    reply.tag = body.tag().unwrap_or_default().to_string();
                }
                Message::ErrorResponse(body) => {
                    let e = ServerError::parse(body.fields());
                    let err = self.server_error(&e);
                    if e.fatal() {
                        // The server closes the connection: no ReadyForQuery follows.
                        return Err(err);
                    }
                    error.get_or_insert(err);
                }
                Message::ReadyForQuery(body) => {
                    self.tx_status = body.status();
                    break;
                }
                Message::CopyInResponse(_) | Message::CopyOutResponse(_) => {
                    return Err(self.protocol_error("COPY is not supported"));
                }
                _ => return Err(self.protocol_error("unexpected message")),
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(reply),
        }
    }

    fn simple(&mut self, sql: &str) -> Result<Reply, StoreError> {
        self.usable()?;
        if let Err(e) = frontend::query(sql, &mut self.wbuf) {
            self.wbuf.clear();
            return Err(StoreError::new(format!("invalid SQL text: {e}")));
        }
        self.send()?;
        self.read_reply(|_| {})
    }

    /// Bind and execute the statement for `op` on `table` (parsed on its first use on this
    /// connection), all parameters and results in text format.
    fn prepared(&mut self, op: Op, table: &str, params: &[&str]) -> Result<Reply, StoreError> {
        check_table(table)?;
        self.usable()?;
        let key = (op, table.to_string());
        let (name, new) = match self.statements.get(&key) {
            Some(n) => (n.clone(), false),
            None => {
                self.next_statement += 1;
                (format!("rf{}", self.next_statement), true)
            }
        };
        let encoded = (|| -> Result<(), String> {
            if new {
                frontend::parse(&name, &op.sql(table), [], &mut self.wbuf)
                    .map_err(|e| e.to_string())?;
            }
            frontend::bind(
                "",
                &name,
                [],
                params.iter(),
                |p, buf| {
                    buf.extend_from_slice(p.as_bytes());
                    Ok(IsNull::No)
                },
                [],
                &mut self.wbuf,
            )
            .map_err(|e| match e {
                frontend::BindError::Conversion(e) => e.to_string(),
                frontend::BindError::Serialization(e) => e.to_string(),
            })?;
            frontend::execute("", 0, &mut self.wbuf).map_err(|e| e.to_string())?;
            frontend::sync(&mut self.wbuf);
            Ok(())
        })();
        if let Err(e) = encoded {
            self.wbuf.clear();
            return Err(StoreError::new(format!("cannot encode a query: {e}")));
        }
        self.send()?;
        // Remembered only once the server has it: a failed Parse creates nothing.
        self.read_reply(|b| {
            b.statements.insert(key.clone(), name.clone());
        })
    }

    /// Run a maintenance statement (purge, dump) with [`MAINTENANCE_TIMEOUT`] instead of the
    /// short limits meant for a message's transaction.
    fn maintenance(&mut self, op: Op, table: &str, params: &[&str]) -> Result<Reply, StoreError> {
        check_table(table)?;
        self.ensure_connected()?;
        let secs = MAINTENANCE_TIMEOUT.as_secs();
        self.simple(&format!("SET statement_timeout = '{secs}s'"))?;
        let long = MAINTENANCE_TIMEOUT + Duration::from_secs(10);
        self.stream
            .set_timeouts(long)
            .map_err(|e| self.io_error(e))?;
        let result = self.prepared(op, table, params);
        if !self.broken {
            self.stream
                .set_timeouts(IO_TIMEOUT)
                .map_err(|e| self.io_error(e))?;
            // In a failed transaction this fails, and the rollback undoes the SET anyway.
            let _ = self.simple(SESSION_SETTINGS);
        }
        result
    }

    /// `CREATE TABLE IF NOT EXISTS`, which two sessions may race on: the loser gets a unique
    /// violation on the catalog (SQLSTATE 23505), or "relation/type already exists" (42P07,
    /// 42710). Outside a transaction it simply tries again (the winner's table is then
    /// visible); inside one the error is transient.
    fn create(&mut self, sql: &str) -> Result<(), StoreError> {
        let mut attempts = 0;
        loop {
            self.ensure_connected()?;
            match self.simple(sql) {
                Ok(_) => return Ok(()),
                Err(mut e) => {
                    let race = ["23505", "42P07", "42710"]
                        .iter()
                        .any(|c| e.message.contains(&format!("(SQLSTATE {c})")));
                    if !race {
                        return Err(e);
                    }
                    e.transient = true;
                    attempts += 1;
                    if self.in_tx || attempts >= 3 {
                        return Err(e);
                    }
                }
            }
        }
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        if !self.broken {
            let mut buf = BytesMut::new();
            frontend::terminate(&mut buf);
            // Best effort: the server notices a closed socket anyway.
            let _ = self.stream.write_all(&buf);
        }
    }
}

/// The longest backend message buffered: the store's rows, errors and notices are small, so a
/// longer one is a server gone wrong (or not PostgreSQL at all), not something to read into
/// memory.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// The length a backend message's header announces (tag, then a big-endian length that counts
/// itself), once the header is in `buf`; 0 before.
fn announced_len(buf: &[u8]) -> usize {
    match buf.get(1..5) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]) as usize,
        _ => 0,
    }
}

/// A TCP connection to the first address that answers, or the UNIX socket in `host`.
fn open_stream(config: &PgConfig) -> Result<Stream, StoreError> {
    let stream = if config.host.starts_with('/') {
        let path = format!(
            "{}/.s.PGSQL.{}",
            config.host.trim_end_matches('/'),
            config.port
        );
        // Bounded: a server whose listen queue is full would otherwise block us for good.
        let s = crate::net::clamd::connect_unix(std::path::Path::new(&path), CONNECT_TIMEOUT)
            .map_err(|e| lost(format!("PostgreSQL: cannot connect to {path}: {e}")))?;
        Stream::Unix(s)
    } else {
        let target = format!("{}:{}", config.host, config.port);
        let addrs: Vec<SocketAddr> = (config.host.as_str(), config.port)
            .to_socket_addrs()
            .map_err(|e| lost(format!("PostgreSQL: cannot resolve {target}: {e}")))?
            .collect();
        let mut last = None;
        let mut found = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    found = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(s) = found else {
            let why = match last {
                Some(e) if e.kind() == io::ErrorKind::TimedOut => "timed out".to_string(),
                Some(e) => e.to_string(),
                None => "no address".to_string(),
            };
            return Err(lost(format!(
                "PostgreSQL: cannot connect to {target}: {why}"
            )));
        };
        // Small request/response exchanges: do not wait to coalesce them.
        let _ = s.set_nodelay(true);
        Stream::Tcp(s)
    };
    stream
        .set_timeouts(CONNECT_TIMEOUT)
        .map_err(|e| lost(format!("PostgreSQL: socket setup failed: {e}")))?;
    Ok(stream)
}

impl Tx for PgBackend {
    fn get(&mut self, table: &str, key: &str) -> Result<Option<i64>, StoreError> {
        if self.in_tx && !self.locked.contains(key) {
            self.prepared(Op::Lock, table, &[key])?;
            self.locked.insert(key.to_string());
        }
        let reply = self.prepared(Op::Get, table, &[key])?;
        match reply.rows.first().and_then(|r| r.first()) {
            Some(v) => parse_int(v, "a TtlDb value"),
            None => Ok(None),
        }
    }

    fn set(&mut self, table: &str, key: &str, value: i64) -> Result<(), StoreError> {
        self.prepared(Op::Set, table, &[key, &value.to_string()])?;
        Ok(())
    }

    fn delete(&mut self, table: &str, key: &str) -> Result<(), StoreError> {
        self.prepared(Op::Delete, table, &[key])?;
        Ok(())
    }

    fn count(&mut self, table: &str, key: &str, bucket: i64, n: i64) -> Result<(), StoreError> {
        self.prepared(
            Op::Count,
            table,
            &[key, &bucket.to_string(), &n.to_string()],
        )?;
        Ok(())
    }

    fn count_sum(
        &mut self,
        table: &str,
        key: &str,
        first: i64,
        last: i64,
    ) -> Result<i64, StoreError> {
        let reply = self.prepared(
            Op::CountSum,
            table,
            &[key, &first.to_string(), &last.to_string()],
        )?;
        match reply.rows.first().and_then(|r| r.first()) {
            Some(v) => Ok(parse_int(v, "a counter sum")?.unwrap_or(0)),
            None => Ok(0),
        }
    }
}

impl Backend for PgBackend {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.in_tx = false;
        self.ensure_connected()?;
        if self.tx_status != b'I' {
            // A transaction left open by a caller that did not finish it.
            self.simple("ROLLBACK")?;
        }
        self.locked.clear();
        self.simple("BEGIN ISOLATION LEVEL READ COMMITTED")?;
        self.in_tx = true;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.in_tx = false;
        let reply = self.simple("COMMIT")?;
        if reply.tag == "ROLLBACK" {
            // COMMIT of a transaction in which a statement failed rolls it back.
            return Err(StoreError::new(format!(
                "{}: the transaction had failed and was rolled back",
                self.describe()
            )));
        }
        Ok(())
    }

    fn rollback(&mut self) {
        self.in_tx = false;
        if !self.broken {
            let _ = self.simple("ROLLBACK");
        }
    }

    fn ensure_ttl_table(&mut self, table: &str) -> Result<(), StoreError> {
        check_table(table)?;
        self.create(&format!(
            "CREATE TABLE IF NOT EXISTS {table} \
             (id CHAR(64) NOT NULL, value BIGINT NOT NULL, PRIMARY KEY(id))"
        ))
    }

    fn ensure_counter_table(&mut self, table: &str) -> Result<(), StoreError> {
        check_table(table)?;
        self.create(&format!(
            "CREATE TABLE IF NOT EXISTS {table} \
             (key TEXT NOT NULL, bucket BIGINT NOT NULL, count BIGINT NOT NULL, \
             PRIMARY KEY (key, bucket))"
        ))
    }

    fn purge_ttl(&mut self, table: &str, cutoff: i64) -> Result<u64, StoreError> {
        Ok(self
            .maintenance(Op::PurgeTtl, table, &[&cutoff.to_string()])?
            .affected())
    }

    fn purge_counters(&mut self, table: &str, first_kept: i64) -> Result<u64, StoreError> {
        Ok(self
            .maintenance(Op::PurgeCounters, table, &[&first_kept.to_string()])?
            .affected())
    }

    fn dump_ttl(&mut self, table: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let reply = self.maintenance(Op::Dump, table, &[])?;
        let mut out = Vec::with_capacity(reply.rows.len());
        for row in &reply.rows {
            let (Some(Some(id)), Some(v)) = (row.first(), row.get(1)) else {
                continue;
            };
            if let Some(v) = parse_int(v, "a TtlDb value")? {
                // CHAR(64) pads keys with spaces.
                out.push((id.trim_end_matches(' ').to_string(), v));
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert!(check_table("greylist_Passed").is_ok());
        assert!(check_table("t1").is_ok());
        for bad in ["", "1t", "a-b", "a b", "t;drop", "é"] {
            assert!(check_table(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn transient_sqlstates() {
        let e = |sev: &str, code: &str| ServerError {
            severity: sev.into(),
            code: code.into(),
            message: String::new(),
            detail: String::new(),
        };
        assert!(e("ERROR", "40001").transient());
        assert!(e("ERROR", "40P01").transient());
        assert!(e("FATAL", "57P01").transient());
        assert!(e("FATAL", "08006").transient());
        assert!(e("FATAL", "53300").transient());
        assert!(!e("FATAL", "28P01").transient());
        assert!(!e("FATAL", "3D000").transient());
        assert!(!e("ERROR", "42P01").transient());
        assert!(!e("ERROR", "22001").transient());
    }

    #[test]
    fn affected_rows_from_the_tag() {
        let r = |t: &str| Reply {
            rows: vec![],
            tag: t.into(),
        };
        assert_eq!(r("DELETE 12").affected(), 12);
        assert_eq!(r("INSERT 0 1").affected(), 1);
        assert_eq!(r("CREATE TABLE").affected(), 0);
    }
}

/// The same, on a real server (tests/services/postgres.sh, started on demand).
#[cfg(test)]
mod server_tests {
    use super::*;
    use crate::store::testing;

    fn connect(config: &PgConfig) -> PgBackend {
        match PgBackend::connect(config) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn statements_are_prepared_once_per_connection() {
        let config = testing::postgres_database();
        let mut b = connect(&config);
        // A failed Parse (no table yet) leaves nothing behind.
        assert!(b.get("t", "k").is_err());
        assert!(b.statements.is_empty());
        b.ensure_ttl_table("t").expect("create");
        for i in 0..5 {
            b.set("t", "k", i).expect("set");
            assert_eq!(b.get("t", "k").expect("get"), Some(i));
        }
        assert_eq!(b.statements.len(), 2);
        // Another spelling is another statement on the same table.
        assert_eq!(b.get("T", "k").expect("get"), Some(4));
        assert_eq!(b.statements.len(), 3);
        // A new connection prepares them again.
        b.reconnect().expect("reconnect");
        assert!(b.statements.is_empty());
        assert_eq!(b.get("t", "k").expect("get"), Some(4));
    }

    #[test]
    fn maintenance_gets_a_longer_statement_timeout_then_restores_it() {
        let config = testing::postgres_database();
        let mut b = connect(&config);
        let timeout = |b: &mut PgBackend| {
            b.simple_query("SHOW statement_timeout").expect("show")[0][0].clone()
        };
        assert_eq!(timeout(&mut b).as_deref(), Some("8s"));
        b.ensure_ttl_table("t").expect("create");
        b.set("t", "k", 5).expect("set");
        assert_eq!(b.purge_ttl("t", 1).expect("purge"), 0);
        assert_eq!(timeout(&mut b).as_deref(), Some("8s"));
        b.begin().expect("begin");
        assert_eq!(b.dump_ttl("t").expect("dump"), vec![("k".to_string(), 5)]);
        assert_eq!(timeout(&mut b).as_deref(), Some("8s"));
        b.commit().expect("commit");
        // A failed purge inside a transaction: the rollback restores it.
        b.begin().expect("begin");
        assert!(b.purge_ttl("missing", 1).is_err());
        b.rollback();
        assert_eq!(timeout(&mut b).as_deref(), Some("8s"));
    }

    #[test]
    fn racing_table_creations_all_succeed() {
        let config = testing::postgres_database();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let config = config.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut b = connect(&config);
                    barrier.wait();
                    // Losers of the race (it happens) try again by themselves.
                    b.ensure_counter_table("raced").expect("create");
                    b.count("raced", "k", 1, 1).expect("count");
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        let mut b = connect(&config);
        assert_eq!(b.count_sum("raced", "k", 0, 2).expect("sum"), 6);
    }
}
