//! WebSocket transport: accepting on a path, connecting to `ws://` URLs,
//! and the limits that protect both sides.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

/// The port servers listen on by default.
pub const DEFAULT_SERVER_PORT: u16 = 8927;

/// The port players listen on for server-initiated connections by default.
pub const DEFAULT_CLIENT_PORT: u16 = 8928;

/// Bounds on what one connection may cost.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Maximum size of one WebSocket frame in bytes.
    pub max_frame_bytes: usize,
    /// Maximum size of one reassembled WebSocket message in bytes.
    pub max_message_bytes: usize,
    /// Time allowed from TCP accept or connect until both hello messages
    /// have been exchanged.
    pub handshake_timeout: Duration,
    /// Interval between WebSocket pings.
    pub ping_interval: Duration,
    /// A peer silent for this long (no frame and no pong) is closed.
    pub idle_timeout: Duration,
    /// Time one write may take before the peer counts as a slow consumer.
    pub write_timeout: Duration,
    /// How far past its play time an audio chunk may be while a server
    /// writes it before the peer counts as a slow consumer.
    pub audio_late_limit: Duration,
    /// Kernel send buffer of each server connection, in bytes (Linux
    /// doubles it). A fixed size keeps a peer that stops reading from
    /// hiding seconds of audio in an automatically grown buffer, so it is
    /// found and dropped quickly.
    pub socket_send_buffer: Option<usize>,
    /// Messages queued for one session before it counts as a slow consumer.
    pub outbound_queue: usize,
    /// Sessions a server keeps open at once, counting WebSocket handshakes
    /// in progress. Connections past it get HTTP 503.
    pub max_sessions: usize,
    /// WebSocket handshakes a server runs at once. Connections past it are
    /// closed right after the TCP accept, before anything is read.
    pub max_pending_handshakes: usize,
    /// Frames (text, binary, ping and pong) a client may send a server per
    /// second, with a burst of as many. A client above it is closed with
    /// code 1008. Clients do not limit servers, which send seconds of audio
    /// ahead in one burst.
    pub max_messages_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 4 << 20,
            max_message_bytes: 16 << 20,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(10),
            audio_late_limit: Duration::from_secs(1),
            socket_send_buffer: Some(256 << 10),
            outbound_queue: 1024,
            max_sessions: 1024,
            max_pending_handshakes: 128,
            max_messages_per_second: 200,
        }
    }
}

/// Size of each WebSocket read buffer in bytes. Every connection keeps
/// one for its whole life, and tungstenite zeroes its unused part before
/// every read, so its 128 KiB default costs 128 KiB of memory per session
/// and a 128 KiB memset per read. Larger messages still arrive whole, in
/// more reads.
const READ_BUFFER_BYTES: usize = 4 << 10;

/// Size of a server's WebSocket read buffers in bytes. A server reads only
/// its clients' messages, JSON objects of a few hundred bytes, so 1 KiB
/// fits most of them whole, and every idle session keeps 3 KiB less than
/// with [`READ_BUFFER_BYTES`].
const SERVER_READ_BUFFER_BYTES: usize = 1 << 10;

/// Bytes tungstenite gathers before it writes them to the socket. Its
/// write buffer keeps the largest size it ever reached, so its 128 KiB
/// default left about 128 KiB behind in every session that streamed audio.
/// A flush still writes whatever is gathered.
const WRITE_BUFFER_BYTES: usize = 16 << 10;

impl Limits {
    /// Returns the WebSocket configuration with these limits.
    pub fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_frame_size(Some(self.max_frame_bytes))
            .max_message_size(Some(self.max_message_bytes))
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(WRITE_BUFFER_BYTES)
    }

    /// Returns the WebSocket configuration with these limits for the
    /// server's end of a connection, whose reads are small messages.
    pub fn server_websocket_config(&self) -> WebSocketConfig {
        self.websocket_config()
            .read_buffer_size(SERVER_READ_BUFFER_BYTES)
    }
}

/// A failed WebSocket accept or connect.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    // The cause is in the message and not a `source`, so that a printed
    // error chain names it once.
    #[error("connection to {url} failed: {cause}")]
    Connect {
        url: String,
        cause: tokio_tungstenite::tungstenite::Error,
    },
    #[error("connection to {url} timed out after {timeout:?}")]
    ConnectTimeout { url: String, timeout: Duration },
    #[error("WebSocket handshake with {peer} failed: {cause}")]
    Accept {
        peer: String,
        cause: tokio_tungstenite::tungstenite::Error,
    },
    #[error("WebSocket handshake with {peer} timed out after {timeout:?}")]
    AcceptTimeout { peer: String, timeout: Duration },
}

/// Parses a server URL given by a user: `ws://host[:port][/path]`.
///
/// The port defaults to 8927 and an empty path to `default_path`.
pub fn parse_ws_url(text: &str, default_path: &str) -> Result<Url, TransportError> {
    parse_ws_url_with_port(text, default_path, DEFAULT_SERVER_PORT)
}

/// Parses a `ws://` URL whose port defaults to `default_port`.
pub fn parse_ws_url_with_port(
    text: &str,
    default_path: &str,
    default_port: u16,
) -> Result<Url, TransportError> {
    let invalid = |reason: &str| TransportError::InvalidUrl {
        url: text.to_string(),
        reason: reason.to_string(),
    };
    let mut url =
        Url::parse(text).map_err(|err| invalid(&format!("{err}; expected ws://HOST:PORT/PATH")))?;
    match url.scheme() {
        "ws" => {}
        "wss" => return Err(invalid("wss:// is not supported; use ws://")),
        other => {
            return Err(invalid(&format!(
                "scheme {other:?} is not ws; expected ws://HOST:PORT/PATH"
            )))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host; expected ws://HOST:PORT/PATH"));
    }
    if url.port().is_none() {
        url.set_port(Some(default_port))
            .map_err(|()| invalid("cannot set the default port"))?;
    }
    if url.path().is_empty() || url.path() == "/" {
        url.set_path(default_path);
    }
    Ok(url)
}

/// Completes the WebSocket handshake of an accepted TCP connection, rejecting
/// requests for any path but `path` with 404.
pub async fn accept<S>(
    stream: S,
    peer: &str,
    path: &str,
    limits: &Limits,
) -> Result<WebSocketStream<S>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with_config(stream, peer, &[path], limits, limits.websocket_config())
        .await
        .map(|(ws, _)| ws)
}

/// Completes the WebSocket handshake of a connection a server accepted, for
/// any of `paths`, and returns the index of the path the client requested.
/// Other paths get 404.
pub async fn accept_any<S>(
    stream: S,
    peer: &str,
    paths: &[&str],
    limits: &Limits,
) -> Result<(WebSocketStream<S>, usize), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with_config(
        stream,
        peer,
        paths,
        limits,
        limits.server_websocket_config(),
    )
    .await
}

async fn accept_with_config<S>(
    stream: S,
    peer: &str,
    paths: &[&str],
    limits: &Limits,
    config: WebSocketConfig,
) -> Result<(WebSocketStream<S>, usize), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let expected: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    let matched = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let matched_in_check = matched.clone();
    // The error type is tungstenite's HTTP response, large by its design.
    #[allow(clippy::result_large_err)]
    let check_path =
        move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
            if let Some(index) = expected.iter().position(|p| p == request.uri().path()) {
                matched_in_check.store(index, std::sync::atomic::Ordering::Relaxed);
                return Ok(response);
            }
            let message = format!(
                "no endpoint at {}; use {}",
                request.uri().path(),
                expected.join(" or ")
            );
            let mut rejection = ErrorResponse::new(Some(message));
            *rejection.status_mut() = StatusCode::NOT_FOUND;
            Err(rejection)
        };
    let handshake =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(config));
    match tokio::time::timeout(limits.handshake_timeout, handshake).await {
        Ok(Ok(ws)) => Ok((ws, matched.load(std::sync::atomic::Ordering::Relaxed))),
        Ok(Err(cause)) => Err(TransportError::Accept {
            peer: peer.to_string(),
            cause,
        }),
        Err(_) => Err(TransportError::AcceptTimeout {
            peer: peer.to_string(),
            timeout: limits.handshake_timeout,
        }),
    }
}

/// Rejects the WebSocket handshake of an accepted connection with HTTP
/// `status` and `message`, within the handshake timeout, and drops it.
pub async fn reject<S>(stream: S, status: StatusCode, message: String, limits: &Limits)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The error type is tungstenite's HTTP response, large by its design.
    #[allow(clippy::result_large_err)]
    let reject_request = move |_: &Request, _: Response| -> Result<Response, ErrorResponse> {
        let mut rejection = ErrorResponse::new(Some(message));
        *rejection.status_mut() = status;
        Err(rejection)
    };
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        reject_request,
        Some(limits.websocket_config()),
    );
    // The handshake always fails here; only its timing matters.
    let _ = tokio::time::timeout(limits.handshake_timeout, handshake).await;
}

/// A client-side WebSocket stream.
pub type ClientStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to a `ws://` URL within the handshake timeout.
pub async fn connect(url: &Url, limits: &Limits) -> Result<ClientStream, TransportError> {
    let connecting = tokio_tungstenite::connect_async_with_config(
        url.as_str(),
        Some(limits.websocket_config()),
        true,
    );
    match tokio::time::timeout(limits.handshake_timeout, connecting).await {
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(cause)) => Err(TransportError::Connect {
            url: url.to_string(),
            cause,
        }),
        Err(_) => Err(TransportError::ConnectTimeout {
            url: url.to_string(),
            timeout: limits.handshake_timeout,
        }),
    }
}

/// A WebSocket over a plain TCP connection, as accepted by a server or
/// dialed by one.
pub type PlainStream = WebSocketStream<TcpStream>;

/// Sets the options of a socket the server streams audio on, accepted or
/// dialed: no Nagle delay, and the fixed send buffer of `limits`.
pub fn prepare_server_socket(tcp: &TcpStream, limits: &Limits) {
    let _ = tcp.set_nodelay(true);
    if let Some(bytes) = limits.socket_send_buffer {
        if let Err(err) = socket2::SockRef::from(tcp).set_send_buffer_size(bytes) {
            tracing::debug!(cause = %err, "cannot set the socket send buffer");
        }
    }
}

/// Opens a WebSocket to a `ws://` URL over plain TCP within the handshake
/// timeout. Servers use it to dial players that wait for them, so it reads
/// with a server's small buffer.
pub async fn dial(url: &Url, limits: &Limits) -> Result<PlainStream, TransportError> {
    let connect_error = |cause| TransportError::Connect {
        url: url.to_string(),
        cause,
    };
    let dialing = async {
        let addrs = url
            .socket_addrs(|| Some(DEFAULT_CLIENT_PORT))
            .map_err(|err| connect_error(err.into()))?;
        let tcp = TcpStream::connect(&*addrs)
            .await
            .map_err(|err| connect_error(err.into()))?;
        prepare_server_socket(&tcp, limits);
        let (ws, _response) = tokio_tungstenite::client_async_with_config(
            url.as_str(),
            tcp,
            Some(limits.server_websocket_config()),
        )
        .await
        .map_err(connect_error)?;
        Ok(ws)
    };
    match tokio::time::timeout(limits.handshake_timeout, dialing).await {
        Ok(result) => result,
        Err(_) => Err(TransportError::ConnectTimeout {
            url: url.to_string(),
            timeout: limits.handshake_timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux stores twice the requested send buffer, for its bookkeeping.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn server_socket_gets_the_send_buffer_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let limits = Limits {
            socket_send_buffer: Some(32 << 10),
            ..Limits::default()
        };
        prepare_server_socket(&accepted, &limits);
        let size = socket2::SockRef::from(&accepted)
            .send_buffer_size()
            .unwrap();
        assert_eq!(size, 64 << 10);
        assert!(accepted.nodelay().unwrap());
        drop(client);
    }

    #[test]
    fn url_gets_default_port_and_path() {
        let url = parse_ws_url("ws://127.0.0.1", "/sendspin").unwrap();
        assert_eq!(url.as_str(), "ws://127.0.0.1:8927/sendspin");
        let url = parse_ws_url("ws://[::1]:9000/x", "/sendspin").unwrap();
        assert_eq!(url.as_str(), "ws://[::1]:9000/x");
    }

    #[test]
    fn url_errors_name_the_value() {
        for bad in [
            "http://127.0.0.1/",
            "127.0.0.1:8927",
            "wss://127.0.0.1/",
            "ws://",
        ] {
            let err = parse_ws_url(bad, "/sendspin").unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
