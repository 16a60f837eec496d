//! Errors, in the client's words: which key, which field, what was expected.

/// A frame that is not a well-formed openpi message.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("malformed msgpack: {0}")]
    Msgpack(String),
    #[error(
        "unsupported numpy dtype `{0}` (expected one of |b1 |u1 |i1 <u2 <i2 <u4 <i4 <u8 <i8 <f4 <f8, any byte order)"
    )]
    DType(String),
    #[error("numpy array field `{0}` is {1}")]
    NdArrayField(&'static str, &'static str),
    #[error(
        "numpy array of shape {shape:?} and dtype {dtype} needs {expected} bytes of data, got {got}"
    )]
    NdArraySize {
        shape: Vec<usize>,
        dtype: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("frame of {got} bytes exceeds the limit of {limit} bytes")]
    TooLarge { got: usize, limit: usize },
}

/// An observation that does not fit the policy.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ObservationError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the observation must be a msgpack map (dict), got {0}")]
    NotAMap(String),
    #[error("key `{key}` is missing (it feeds {feeds}); keys sent: {sent:?}")]
    Missing {
        key: String,
        feeds: String,
        sent: Vec<String>,
    },
    #[error("key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// A serving configuration that cannot work with this policy.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("serve config: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("serve config: {0}")]
    Invalid(String),
}

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("starting the server runtime: {0}")]
    Runtime(std::io::Error),
    #[error("loading the policy: {0}")]
    PolicyLoad(String),
}

/// What the Rust client ([`crate::RemotePolicy`]) can run into.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("websocket: {0}")]
    WebSocket(String),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the server sent an error: {0}")]
    Server(String),
    #[error("unexpected reply: {0}")]
    Protocol(String),
    #[error("observation: {0}")]
    Observation(String),
}
