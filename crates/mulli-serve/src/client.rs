//! [`RemotePolicy`]: an openpi server (ours or Physical Intelligence's) as a
//! [`mulli_core::Policy`], so the evaluation harness can drive a policy through the protocol.
//! Synchronous on purpose: `Policy::act` is a blocking call, and a plain socket needs no
//! runtime.

use std::collections::BTreeMap;
use std::net::TcpStream;

use mulli_core::{ActionChunk, Observation, Policy};
use rmpv::ValueRef;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::error::ClientError;
use crate::mapping::{ObservationMap, PolicyInfo, parse_metadata};
use crate::wire;

/// A decoded reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub actions: ActionChunk,
    /// Every number in `server_timing` (`infer_ms`, `queue_ms`, `batch_size`, `prev_total_ms`).
    pub server_timing: BTreeMap<String, f64>,
    pub policy_timing: BTreeMap<String, f64>,
}

pub struct RemotePolicy {
    socket: WebSocket<TcpStream>,
    metadata: Vec<u8>,
    info: Option<(PolicyInfo, ObservationMap)>,
    last: Option<Reply>,
}

impl RemotePolicy {
    /// Connect to `ws://HOST:PORT[/path]` and read the metadata frame.
    pub fn connect(url: &str, api_key: Option<&str>) -> Result<Self, ClientError> {
        let err = |m: String| ClientError::Connect {
            url: url.to_string(),
            message: m,
        };
        let mut request = url.into_client_request().map_err(|e| err(e.to_string()))?;
        if request.uri().scheme_str() != Some("ws") {
            return Err(err("only ws:// URLs are supported (no TLS)".into()));
        }
        if let Some(key) = api_key {
            let value = format!("Api-Key {key}")
                .parse()
                .map_err(|_| err("the API key is not a valid header value".into()))?;
            request.headers_mut().insert("Authorization", value);
        }
        let host = request
            .uri()
            .host()
            .ok_or_else(|| err("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = request.uri().port_u16().unwrap_or(80);
        let stream = TcpStream::connect((host.as_str(), port)).map_err(|e| err(e.to_string()))?;
        // Requests are small and latency-bound: never wait for Nagle.
        let _ = stream.set_nodelay(true);
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let (mut socket, _) =
            tungstenite::client::client_with_config(request, stream, Some(config))
                .map_err(|e| err(e.to_string()))?;
        let metadata = loop {
            match socket.read().map_err(|e| err(e.to_string()))? {
                Message::Binary(b) => break b.to_vec(),
                Message::Text(t) => return Err(ClientError::Server(t.to_string())),
                Message::Close(c) => {
                    return Err(err(format!(
                        "closed before the metadata frame: {}",
                        c.map(|c| c.reason.to_string()).unwrap_or_default()
                    )));
                }
                _ => continue,
            }
        };
        // A non-mulli openpi server sends its own metadata; raw frames still work then.
        let info = parse_metadata(&metadata).ok();
        Ok(RemotePolicy {
            socket,
            metadata,
            info,
            last: None,
        })
    }

    /// The metadata frame as sent (msgpack).
    pub fn metadata_frame(&self) -> &[u8] {
        &self.metadata
    }

    /// The policy description and key mapping, when the server is a mulli server.
    pub fn policy_info(&self) -> Option<&PolicyInfo> {
        self.info.as_ref().map(|(i, _)| i)
    }

    pub fn observation_map(&self) -> Option<&ObservationMap> {
        self.info.as_ref().map(|(_, m)| m)
    }

    /// The last reply (with timings).
    pub fn last_reply(&self) -> Option<&Reply> {
        self.last.as_ref()
    }

    /// Send one raw frame and return the raw reply (for any openpi server and for tests).
    pub fn infer_frame(&mut self, frame: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let ws = |e: tungstenite::Error| ClientError::WebSocket(e.to_string());
        self.socket
            .send(Message::Binary(frame.into()))
            .map_err(ws)?;
        loop {
            match self.socket.read().map_err(ws)? {
                Message::Binary(b) => return Ok(b.to_vec()),
                // openpi's servers report errors as a text frame, then close.
                Message::Text(t) => return Err(ClientError::Server(t.to_string())),
                Message::Close(c) => {
                    return Err(ClientError::WebSocket(format!(
                        "server closed the connection: {}",
                        c.map(|c| format!("{} {}", c.code, c.reason))
                            .unwrap_or_default()
                    )));
                }
                _ => continue,
            }
        }
    }

    /// Close politely (dropping does the same).
    pub fn close(self) {}
}

impl Drop for RemotePolicy {
    /// A close frame, so the server counts a finished session, not a broken connection.
    fn drop(&mut self) {
        let _ = self.socket.close(None);
        let _ = self.socket.flush();
    }
}

/// Decode a reply frame: `actions` must be a float [H, A] array.
pub fn parse_reply(frame: &[u8]) -> Result<Reply, ClientError> {
    let v = wire::decode_frame(frame)?;
    let ValueRef::Map(m) = &v else {
        return Err(ClientError::Protocol(format!(
            "reply is {}",
            wire::describe(&v)
        )));
    };
    let actions = wire::map_get(m, "actions")
        .ok_or_else(|| ClientError::Protocol("reply has no `actions`".into()))?;
    let a = match wire::as_ndarray(actions) {
        Some(a) => a?,
        None => {
            return Err(ClientError::Protocol(format!(
                "`actions` is {}",
                wire::describe(actions)
            )));
        }
    };
    let [_, dim] = a.shape[..] else {
        return Err(ClientError::Protocol(format!(
            "`actions` has shape {:?}, not [H, A]",
            a.shape
        )));
    };
    let flat = a.to_f32();
    let actions = ActionChunk {
        actions: if dim == 0 {
            Vec::new()
        } else {
            flat.chunks(dim).map(<[f32]>::to_vec).collect()
        },
    };
    let numbers = |key: &str| -> BTreeMap<String, f64> {
        match wire::map_get(m, key) {
            Some(ValueRef::Map(t)) => t
                .iter()
                .filter_map(|(k, v)| Some((wire::key_str(k)?.to_string(), wire::as_number(v)?)))
                .collect(),
            _ => BTreeMap::new(),
        }
    };
    Ok(Reply {
        actions,
        server_timing: numbers("server_timing"),
        policy_timing: numbers("policy_timing"),
    })
}

impl Policy for RemotePolicy {
    type Error = ClientError;

    /// openpi clients reset on their side; the server keeps no episode state.
    fn reset(&mut self) {}

    fn act(&mut self, obs: &Observation) -> Result<ActionChunk, ClientError> {
        let Some((_, map)) = &self.info else {
            return Err(ClientError::Protocol(
                "the server's metadata does not say which keys it reads (not a mulli server); use infer_frame".into(),
            ));
        };
        let frame = map.encode(obs).map_err(ClientError::Observation)?;
        let reply = parse_reply(&self.infer_frame(frame)?)?;
        let chunk = reply.actions.clone();
        self.last = Some(reply);
        Ok(chunk)
    }
}
