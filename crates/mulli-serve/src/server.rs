//! The websocket server: openpi's protocol on one port, with `GET /healthz` and
//! `GET /metrics` beside it.
//!
//! Shape of the machine:
//! - a tokio runtime accepts connections; each connection is one task that reads the HTTP
//!   request head itself (so plain HTTP routes and the API-key check happen before the
//!   websocket handshake), then speaks openpi: metadata frame, then observation → reply;
//! - decoded observations go through a bounded queue (a semaphore of `queue_capacity` permits
//!   in front of a channel) to ONE inference thread that owns the policy and runs batches of
//!   the requests that arrived within `batch_wait_ms`;
//! - every failure is local to its connection: a text frame with the error (what openpi's
//!   Python server sends, and what its client raises as `RuntimeError`), then a close frame.
//!
//! Memory is bounded by `max_clients × max_frame_bytes` (plus the decoded values) and the
//! queue by `queue_capacity` observations.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use futures_util::{SinkExt, StreamExt};
use mulli_core::{ActionChunk, Observation, Policy};
use rmpv::Value;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::error::{ConfigError, ServeError};
use crate::mapping::{ObservationMap, ObservationMapConfig, PolicyInfo, metadata_value};
use crate::metrics::{ErrorKind, Metrics};
use crate::wire;

/// Server settings (TOML, every field optional; `mulli serve --print-config` shows defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// How long the inference thread waits for more requests after the first of a batch
    /// (milliseconds). It stops waiting early once every open connection has a request in.
    pub batch_wait_ms: f64,
    /// Most requests per inference batch.
    pub max_batch: usize,
    /// Decoded observations waiting for inference; further requests wait for a slot.
    pub queue_capacity: usize,
    /// Open websocket connections; more are refused with HTTP 503.
    pub max_clients: usize,
    /// Largest accepted websocket message; larger ones get an error frame and close 1009.
    pub max_frame_bytes: usize,
    /// A client that does not take a reply within this many seconds is dropped.
    pub send_timeout_s: f64,
    /// Threads of the async runtime (networking and decoding; inference has its own thread).
    pub io_threads: usize,
    /// Required `Authorization: Api-Key <key>` header; none when unset.
    pub api_key: Option<String>,
    pub observation: ObservationMapConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            batch_wait_ms: 2.0,
            max_batch: 16,
            queue_capacity: 64,
            max_clients: 256,
            max_frame_bytes: 16 << 20,
            send_timeout_s: 10.0,
            io_threads: 2,
            api_key: None,
            observation: ObservationMapConfig::default(),
        }
    }
}

impl ServeConfig {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let c: ServeConfig = toml::from_str(text)?;
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if !(self.batch_wait_ms.is_finite() && (0.0..=1000.0).contains(&self.batch_wait_ms)) {
            return bad("batch_wait_ms must be between 0 and 1000");
        }
        if self.max_batch == 0 || self.queue_capacity == 0 || self.max_clients == 0 {
            return bad("max_batch, queue_capacity and max_clients must be at least 1");
        }
        if self.max_frame_bytes < 1024 {
            return bad("max_frame_bytes must be at least 1024");
        }
        if !(self.send_timeout_s.is_finite() && self.send_timeout_s > 0.0) {
            return bad("send_timeout_s must be positive");
        }
        if self.io_threads == 0 {
            return bad("io_threads must be at least 1");
        }
        Ok(())
    }
}

/// Time spent on one request, reported back in `server_timing`.
#[derive(Debug, Clone, Copy)]
struct Timing {
    queue_ms: f64,
    infer_ms: f64,
    batch_size: usize,
}

struct Job {
    obs: Observation,
    reply: oneshot::Sender<Result<(ActionChunk, Timing), String>>,
    enqueued: Instant,
    /// Holds one queue slot until the job is answered (or dropped).
    _slot: OwnedSemaphorePermit,
}

struct Shared {
    info: PolicyInfo,
    map: ObservationMap,
    config: ServeConfig,
    metadata: Vec<u8>,
    jobs: Sender<Job>,
    queue: Arc<Semaphore>,
    clients: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// A running server. Dropping it stops it.
pub struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    runtime: Option<tokio::runtime::Runtime>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Build the policy on a new inference thread with `factory`, bind `addr` (e.g.
    /// `127.0.0.1:0`), and serve in the background. Call from outside any async runtime.
    /// Returns once the policy is loaded and the port is bound.
    pub fn start<P, F, E>(
        factory: F,
        info: PolicyInfo,
        config: ServeConfig,
        addr: &str,
    ) -> Result<Server, ServeError>
    where
        P: Policy + 'static,
        F: FnOnce() -> Result<P, E> + Send + 'static,
        E: std::fmt::Display,
    {
        config.check()?;
        let map = ObservationMap::resolve(&config.observation, &info)?;
        if info.cameras.iter().any(|c| c.height == 0 || c.width == 0) {
            return Err(ConfigError::Invalid("a camera has a zero image size".into()).into());
        }
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let worker = {
            let metrics = metrics.clone();
            let (wait, max_batch) = (
                Duration::from_secs_f64(config.batch_wait_ms / 1e3),
                config.max_batch,
            );
            std::thread::Builder::new()
                .name("mulli-serve-inference".into())
                .spawn(move || match factory() {
                    Ok(policy) => {
                        let _ = ready_tx.send(Ok(()));
                        inference_loop(policy, &rx, wait, max_batch, &metrics);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                    }
                })
                .map_err(ServeError::Runtime)?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ServeError::PolicyLoad(e)),
            Err(_) => return Err(ServeError::PolicyLoad("the policy factory panicked".into())),
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.io_threads)
            .thread_name("mulli-serve-io")
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        let listener = runtime
            .block_on(TcpListener::bind(addr))
            .map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let shared = Arc::new(Shared {
            metadata: wire::encode(&metadata_value(&info, &map)),
            info,
            map,
            queue: Arc::new(Semaphore::new(config.queue_capacity)),
            clients: Arc::new(Semaphore::new(config.max_clients)),
            config,
            jobs: tx,
            metrics: metrics.clone(),
        });
        runtime.spawn(accept_loop(listener, shared));
        tracing::info!(addr = %local, "serving");
        Ok(Server {
            addr: local,
            metrics,
            runtime: Some(runtime),
            worker: Some(worker),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serve until Ctrl-C.
    pub fn wait(mut self) {
        if let Some(rt) = &self.runtime {
            let _ = rt.block_on(tokio::signal::ctrl_c());
        }
        self.stop();
    }

    fn stop(&mut self) {
        // Dropping the runtime drops every connection task and with it every job sender,
        // which ends the inference thread.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The inference thread: gather a batch, run it, answer each request.
fn inference_loop<P: Policy>(
    mut policy: P,
    rx: &Receiver<Job>,
    wait: Duration,
    max_batch: usize,
    metrics: &Metrics,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let deadline = Instant::now() + wait;
        // Waiting for requests that cannot come only adds latency: stop once every open
        // connection has one in this batch.
        while jobs.len() < max_batch && (jobs.len() as u64) < metrics.connections_open.load(Relaxed)
        {
            let now = Instant::now();
            let next = if now >= deadline {
                rx.try_recv().map_err(|_| RecvTimeoutError::Timeout)
            } else {
                rx.recv_timeout(deadline - now)
            };
            match next {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // Clients that went away while queued cost no inference.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let obs: Vec<Observation> = jobs
            .iter_mut()
            .map(|j| std::mem::take(&mut j.obs))
            .collect();
        let start = Instant::now();
        let results = run_batch(&mut policy, &obs);
        let infer = start.elapsed();
        metrics.inference_seconds.observe(infer.as_secs_f64());
        metrics.batch_size.observe(jobs.len() as f64);
        let batch_size = jobs.len();
        for (job, result) in jobs.into_iter().zip(results) {
            let timing = Timing {
                queue_ms: (start - job.enqueued).as_secs_f64() * 1e3,
                infer_ms: infer.as_secs_f64() * 1e3,
                batch_size,
            };
            let _ = job.reply.send(result.map(|c| (c, timing)));
        }
    }
}

/// Run a batch; one bad observation (or a panic in the policy) must not fail the others, so
/// a failed batch is retried one by one.
fn run_batch<P: Policy>(policy: &mut P, obs: &[Observation]) -> Vec<Result<ActionChunk, String>> {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let one =
        |policy: &mut P, o: &Observation| match catch_unwind(AssertUnwindSafe(|| policy.act(o))) {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("the policy panicked on this observation".to_string()),
        };
    if obs.len() == 1 {
        return vec![one(policy, &obs[0])];
    }
    match catch_unwind(AssertUnwindSafe(|| policy.act_batch(obs))) {
        Ok(Ok(chunks)) if chunks.len() == obs.len() => chunks.into_iter().map(Ok).collect(),
        _ => obs.iter().map(|o| one(policy, o)).collect(),
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(connection(stream, peer, shared.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The parts of the HTTP request head we route on.
struct RequestHead {
    path: String,
    upgrade: bool,
    authorization: Option<String>,
    /// Bytes read past the head (normally none), replayed into the websocket.
    rest: Vec<u8>,
    raw: Vec<u8>,
}

const MAX_HEAD: usize = 16 << 10;

async fn read_head(stream: &mut TcpStream) -> Result<RequestHead, &'static str> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| "read error")?;
        if n == 0 {
            return Err("closed before a full request");
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let header = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .map(str::to_string)
                };
                let upgrade =
                    header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
                let path = req.path.unwrap_or("/").to_string();
                let authorization = header("authorization");
                let (head, rest) = buf.split_at(len);
                return Ok(RequestHead {
                    path,
                    upgrade,
                    authorization,
                    rest: rest.to_vec(),
                    raw: head.to_vec(),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err("request head too large"),
            Err(_) => return Err("malformed HTTP request"),
        }
    }
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) {
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Equal-time comparison, so the key cannot be guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let head = match tokio::time::timeout(Duration::from_secs(10), read_head(&mut stream)).await {
        Ok(Ok(h)) => h,
        Ok(Err(why)) => {
            tracing::debug!(%peer, why, "bad request");
            respond(
                &mut stream,
                "400 Bad Request",
                "text/plain",
                &format!("{why}\n"),
            )
            .await;
            return;
        }
        Err(_) => return,
    };
    let path = head.path.split('?').next().unwrap_or("");
    if !head.upgrade {
        match path {
            "/healthz" => respond(&mut stream, "200 OK", "text/plain", "OK\n").await,
            "/metrics" => {
                let body = shared.metrics.render();
                respond(&mut stream, "200 OK", "text/plain; version=0.0.4", &body).await;
            }
            _ => {
                respond(
                    &mut stream,
                    "404 Not Found",
                    "text/plain",
                    "mulli-serve: websocket (openpi protocol) on any path; GET /healthz, GET /metrics\n",
                )
                .await;
            }
        }
        return;
    }
    if let Some(key) = &shared.config.api_key {
        let want = format!("Api-Key {key}");
        if !head
            .authorization
            .as_deref()
            .is_some_and(|a| same(a.as_bytes(), want.as_bytes()))
        {
            shared.metrics.error(ErrorKind::Unauthorized);
            tracing::info!(%peer, "refused: missing or wrong API key");
            respond(
                &mut stream,
                "401 Unauthorized",
                "text/plain",
                "missing or wrong `Authorization: Api-Key <key>` header\n",
            )
            .await;
            return;
        }
    }
    let Ok(_client) = shared.clients.clone().try_acquire_owned() else {
        shared.metrics.error(ErrorKind::Busy);
        respond(
            &mut stream,
            "503 Service Unavailable",
            "text/plain",
            &format!(
                "server is at its limit of {} clients\n",
                shared.config.max_clients
            ),
        )
        .await;
        return;
    };
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(shared.config.max_frame_bytes))
        .max_frame_size(Some(shared.config.max_frame_bytes));
    let mut replay = head.raw;
    replay.extend_from_slice(&head.rest);
    let io = Prefixed {
        prefix: replay,
        pos: 0,
        inner: stream,
    };
    let ws = match tokio_tungstenite::accept_async_with_config(io, Some(ws_config)).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "websocket handshake failed");
            return;
        }
    };
    shared.metrics.connections_total.fetch_add(1, Relaxed);
    shared.metrics.connections_open.fetch_add(1, Relaxed);
    tracing::info!(%peer, "client connected");
    let reason = serve_client(ws, &shared).await;
    shared.metrics.connections_open.fetch_sub(1, Relaxed);
    tracing::info!(%peer, reason, "client disconnected");
}

type Ws = WebSocketStream<Prefixed>;

/// The openpi conversation with one client; returns why it ended.
async fn serve_client(mut ws: Ws, shared: &Shared) -> &'static str {
    let send_timeout = Duration::from_secs_f64(shared.config.send_timeout_s);
    let metrics = &shared.metrics;
    if !send(
        &mut ws,
        Message::Binary(shared.metadata.clone().into()),
        send_timeout,
    )
    .await
    {
        metrics.error(ErrorKind::Connection);
        return "could not send metadata";
    }
    let mut prev_total_ms: Option<f64> = None;
    // A frame that arrived while we waited for inference (a pipelining client).
    let mut pending: Option<Message> = None;
    loop {
        let next = match pending.take() {
            Some(m) => Some(Ok(m)),
            None => ws.next().await,
        };
        let msg = match next {
            None => return "closed",
            Some(Ok(m)) => m,
            Some(Err(tungstenite::Error::Capacity(e))) => {
                metrics.error(ErrorKind::TooLarge);
                let text = format!(
                    "error: {e}; the server's max_frame_bytes is {}",
                    shared.config.max_frame_bytes
                );
                fail(&mut ws, CloseCode::Size, &text, send_timeout).await;
                return "frame too large";
            }
            Some(Err(_)) => {
                metrics.error(ErrorKind::Connection);
                return "connection error";
            }
        };
        let start = Instant::now();
        let frame = match msg {
            Message::Binary(b) => b,
            Message::Close(_) => return "closed",
            Message::Text(_) => {
                metrics.error(ErrorKind::BadRequest);
                let text =
                    "error: expected binary msgpack frames (openpi protocol), got a text frame";
                fail(&mut ws, CloseCode::Unsupported, text, send_timeout).await;
                return "text frame";
            }
            _ => continue,
        };
        let obs = match shared.map.decode(&frame, &shared.info) {
            Ok(o) => o,
            Err(e) => {
                metrics.error(ErrorKind::BadRequest);
                fail(
                    &mut ws,
                    CloseCode::Policy,
                    &format!("error: {e}"),
                    send_timeout,
                )
                .await;
                return "bad observation";
            }
        };
        drop(frame);
        let Ok(slot) = shared.queue.clone().acquire_owned().await else {
            return "server stopping";
        };
        let (tx, rx) = oneshot::channel();
        let job = Job {
            obs,
            reply: tx,
            enqueued: Instant::now(),
            _slot: slot,
        };
        if shared.jobs.send(job).is_err() {
            metrics.error(ErrorKind::Policy);
            fail(
                &mut ws,
                CloseCode::Error,
                "error: the inference thread has stopped",
                send_timeout,
            )
            .await;
            return "inference thread stopped";
        }
        // Wait for the reply while watching the socket, so a client that disconnects
        // mid-request is noticed (its queued request is then skipped).
        let mut rx = rx;
        let result = loop {
            tokio::select! {
                r = &mut rx => break r,
                m = ws.next(), if pending.is_none() => match m {
                    Some(Ok(Message::Close(_))) | None => return "disconnected mid-request",
                    Some(Ok(other)) => pending = Some(other),
                    Some(Err(tungstenite::Error::Capacity(_))) => {
                        metrics.error(ErrorKind::TooLarge);
                        return "frame too large";
                    }
                    Some(Err(_)) => {
                        metrics.error(ErrorKind::Connection);
                        return "disconnected mid-request";
                    }
                },
            }
        };
        let (chunk, timing) = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                metrics.error(ErrorKind::Policy);
                fail(
                    &mut ws,
                    CloseCode::Error,
                    &format!("error: policy: {e}"),
                    send_timeout,
                )
                .await;
                return "policy error";
            }
            Err(_) => {
                metrics.error(ErrorKind::Policy);
                fail(
                    &mut ws,
                    CloseCode::Error,
                    "error: the inference thread has stopped",
                    send_timeout,
                )
                .await;
                return "inference thread stopped";
            }
        };
        let reply = match reply_frame(&chunk, timing, prev_total_ms) {
            Ok(r) => r,
            Err(e) => {
                metrics.error(ErrorKind::Policy);
                fail(
                    &mut ws,
                    CloseCode::Error,
                    &format!("error: policy: {e}"),
                    send_timeout,
                )
                .await;
                return "policy error";
            }
        };
        if !send(&mut ws, Message::Binary(reply.into()), send_timeout).await {
            metrics.error(ErrorKind::Connection);
            return "reply not taken (slow or gone)";
        }
        let total = start.elapsed().as_secs_f64();
        metrics.request_seconds.observe(total);
        metrics.queue_seconds.observe(timing.queue_ms / 1e3);
        metrics.requests_total.fetch_add(1, Relaxed);
        prev_total_ms = Some(total * 1e3);
    }
}

/// `{"actions": float32 [H, A], "server_timing": {...}, "policy_timing": {...}}`, with the
/// keys openpi's server and policy put there (`infer_ms`, `prev_total_ms`) and ours beside.
fn reply_frame(
    chunk: &ActionChunk,
    t: Timing,
    prev_total_ms: Option<f64>,
) -> Result<Vec<u8>, String> {
    let h = chunk.actions.len();
    let a = chunk.actions.first().map_or(0, Vec::len);
    if let Some(row) = chunk.actions.iter().position(|r| r.len() != a) {
        return Err(format!(
            "action {row} has {} values, action 0 has {a}",
            chunk.actions[row].len()
        ));
    }
    let flat: Vec<f32> = chunk.actions.iter().flatten().copied().collect();
    let s = |x: &str| Value::from(x);
    let mut server = vec![
        (s("infer_ms"), Value::F64(t.infer_ms)),
        (s("queue_ms"), Value::F64(t.queue_ms)),
        (s("batch_size"), Value::from(t.batch_size as u64)),
    ];
    if let Some(p) = prev_total_ms {
        server.push((s("prev_total_ms"), Value::F64(p)));
    }
    let value = Value::Map(vec![
        (s("actions"), wire::f32_array(&[h, a], &flat)),
        (s("server_timing"), Value::Map(server)),
        (
            s("policy_timing"),
            Value::Map(vec![(
                s("infer_ms"),
                Value::F64(t.infer_ms / t.batch_size.max(1) as f64),
            )]),
        ),
    ]);
    Ok(wire::encode(&value))
}

async fn send(ws: &mut Ws, msg: Message, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, ws.send(msg)).await,
        Ok(Ok(()))
    )
}

/// openpi's error path: the error as a text frame, then a close frame.
async fn fail(ws: &mut Ws, code: CloseCode, text: &str, timeout: Duration) {
    tracing::debug!(error = text, "closing client");
    let _ = tokio::time::timeout(timeout, ws.send(Message::Text(text.to_string().into()))).await;
    // Close reasons are limited to 123 bytes.
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: text[..end].to_string().into(),
    };
    let _ = tokio::time::timeout(timeout, ws.close(Some(frame))).await;
}

/// A TCP stream that first replays the request head we already read.
struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_strictness() {
        let c = ServeConfig::from_toml("").unwrap();
        assert_eq!(c, ServeConfig::default());
        let c = ServeConfig::from_toml("max_batch = 4\n[observation]\nprompt = \"task\"").unwrap();
        assert_eq!(c.max_batch, 4);
        assert_eq!(c.observation.prompt.as_deref(), Some("task"));
        assert!(ServeConfig::from_toml("max_btach = 4").is_err());
        assert!(ServeConfig::from_toml("max_batch = 0").is_err());
        assert!(ServeConfig::from_toml("batch_wait_ms = -1.0").is_err());
    }

    #[test]
    fn constant_time_compare() {
        assert!(same(b"Api-Key a", b"Api-Key a"));
        assert!(!same(b"Api-Key a", b"Api-Key b"));
        assert!(!same(b"Api-Key a", b"Api-Key ab"));
    }

    #[test]
    fn ragged_chunks_are_refused() {
        let t = Timing {
            queue_ms: 0.0,
            infer_ms: 1.0,
            batch_size: 1,
        };
        let chunk = ActionChunk {
            actions: vec![vec![1.0, 2.0], vec![3.0]],
        };
        assert!(reply_frame(&chunk, t, None).is_err());
    }
}
