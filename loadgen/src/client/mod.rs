//! Small protocol clients over [`conn::Conn`], with unit-tested reply parsers.

pub mod conn;
pub mod imap;
pub mod pop3;
pub mod smtp;

/// A protocol-level failure: either an I/O problem or a negative server reply.
#[derive(Debug)]
pub enum ClientError {
    /// Transport error (connect, read, write, TLS, timeout, EOF).
    Io(std::io::Error),
    /// The server answered with an unexpected/negative reply. `code` is the SMTP code,
    /// or a short tag such as `-ERR` / `NO` / `BAD` for POP3/IMAP.
    Reply { code: String, text: String },
    /// The reply could not be parsed.
    Protocol(String),
}

impl ClientError {
    /// A short key used to bucket errors in the summary (`550`, `io`, `timeout`, `-ERR`, ...).
    pub fn key(&self) -> String {
        match self {
            ClientError::Io(e) => match e.kind() {
                std::io::ErrorKind::TimedOut => "timeout".into(),
                std::io::ErrorKind::ConnectionRefused => "conn-refused".into(),
                std::io::ErrorKind::ConnectionReset => "conn-reset".into(),
                std::io::ErrorKind::UnexpectedEof => "eof".into(),
                _ => "io".into(),
            },
            ClientError::Reply { code, .. } => code.clone(),
            ClientError::Protocol(_) => "protocol".into(),
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "I/O error: {e}"),
            ClientError::Reply { code, text } => write!(f, "server replied {code} {text}"),
            ClientError::Protocol(s) => write!(f, "protocol error: {s}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;
