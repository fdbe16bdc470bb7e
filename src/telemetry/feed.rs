//! The telemetry feed on a loopback address: a WebSocket at `/` that sends
//! JSON [`FeedMessage`]s, and Prometheus text at `/metrics`.
//!
//! A WebSocket subscriber gets a `hello`, the recent events, the current
//! snapshot, and then every new snapshot and event as it is published.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{metrics, FeedMessage, Telemetry, FEED_VERSION};

/// Longest HTTP request head read before a request is rejected.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Time a feed has to send its `hello` after the WebSocket opens.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a client has to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Time allowed for one write to a subscriber; a subscriber that takes
/// longer is dropped so it cannot hold the feed's memory.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("telemetry address {0} is not a loopback address; use 127.0.0.1:PORT or [::1]:PORT")]
    NotLoopback(SocketAddr),
    #[error("connecting to telemetry feed {url} failed: {source}")]
    Connect {
        url: String,
        source: tokio_tungstenite::tungstenite::Error,
    },
    #[error("telemetry feed {url} sent an invalid message: {source}")]
    Invalid {
        url: String,
        source: serde_json::Error,
    },
    #[error("{url} sent no telemetry hello within {} s; it is not a telemetry feed (for a Sendspin server, use `resonate monitor --server URL`)", FIRST_MESSAGE_TIMEOUT.as_secs())]
    NoHello { url: String },
    #[error(
        "telemetry feed {url} speaks version {version}; this monitor reads version {FEED_VERSION}"
    )]
    Version { url: String, version: u32 },
    #[error("reading telemetry feed {url} failed: {source}")]
    Read {
        url: String,
        source: tokio_tungstenite::tungstenite::Error,
    },
}

/// Rejects addresses other than loopback: the feed has no authentication,
/// so it is only offered to local processes.
pub fn check_loopback(addr: SocketAddr) -> Result<(), FeedError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(FeedError::NotLoopback(addr))
    }
}

/// Serves the feed of `telemetry` on `listener` until `shutdown`
/// completes, then closes every subscriber and waits for them.
pub async fn serve(
    listener: TcpListener,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()>,
) {
    let tasks = TaskTracker::new();
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let telemetry = telemetry.clone();
                    let stop = stop.clone();
                    tasks.spawn(async move {
                        if let Err(err) = handle(stream, telemetry, stop).await {
                            tracing::debug!(%peer, cause = %err, "telemetry connection ended");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(cause = %err, "accepting a telemetry connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    stop.cancel();
    tasks.close();
    tasks.wait().await;
}

/// The resource a request head names.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics,
    Feed,
    NotFound(String),
    Malformed,
}

async fn handle(
    mut stream: TcpStream,
    telemetry: Telemetry,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, peek_head(&stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    match parse_request(&head) {
        Request::Feed => {
            let ws = tokio_tungstenite::accept_async(stream)
                .await
                .map_err(std::io::Error::other)?;
            send_feed(ws, telemetry, stop).await;
            Ok(())
        }
        Request::Metrics => {
            discard(&mut stream, head.len()).await?;
            let body = metrics::render(&telemetry.latest());
            respond(&mut stream, "200 OK", metrics::CONTENT_TYPE, &body).await
        }
        Request::NotFound(path) => {
            discard(&mut stream, head.len()).await?;
            let body = format!(
                "nothing to serve for this request to {path}: the feed is a WebSocket at / (resonate monitor ws://ADDR/) and Prometheus text is GET /metrics\n"
            );
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain; charset=utf-8",
                &body,
            )
            .await
        }
        Request::Malformed => {
            respond(
                &mut stream,
                "400 Bad Request",
                "text/plain; charset=utf-8",
                "invalid HTTP request\n",
            )
            .await
        }
    }
}

/// Peeks at the request head, up to and including the blank line, without
/// consuming it, so the WebSocket handshake can read it again.
async fn peek_head(stream: &TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; MAX_REQUEST_HEAD];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut buffer).await?;
        if let Some(end) = find_head_end(&buffer[..n]) {
            buffer.truncate(end);
            return Ok(buffer);
        }
        if n == 0 || n == buffer.len() {
            // Closed, or a head larger than allowed.
            buffer.truncate(n);
            return Ok(buffer);
        }
        if n == seen {
            // Peek returns at once while nothing new arrived; wait a little.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen = n;
    }
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

fn parse_request(head: &[u8]) -> Request {
    let Some(end) = find_head_end(head) else {
        return Request::Malformed;
    };
    let Ok(text) = std::str::from_utf8(&head[..end]) else {
        return Request::Malformed;
    };
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target)) = (request_line.next(), request_line.next()) else {
        return Request::Malformed;
    };
    let path = target.split('?').next().unwrap_or(target);
    let upgrade = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("upgrade")
                && value.trim().eq_ignore_ascii_case("websocket")
        })
    });
    match (method, path, upgrade) {
        ("GET", "/metrics", false) => Request::Metrics,
        ("GET", "/", true) => Request::Feed,
        (_, path, _) => Request::NotFound(path.to_string()),
    }
}

async fn discard(stream: &mut TcpStream, len: usize) -> std::io::Result<()> {
    let mut head = vec![0u8; len];
    stream.read_exact(&mut head).await.map(|_| ())
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(response.as_bytes()))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "response write timed out")
        })??;
    stream.shutdown().await
}

async fn send_feed(
    mut ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    telemetry: Telemetry,
    stop: CancellationToken,
) {
    let mut subscription = telemetry.subscribe();
    for message in subscription.opening_messages() {
        if send(&mut ws, &message).await.is_err() {
            return;
        }
    }

    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => break,
            message = subscription.next_message() => match message {
                Some(message) => message,
                None => break,
            },
            frame = ws.next() => match frame {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
        };
        if send(&mut ws, &message).await.is_err() {
            return;
        }
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(None)).await;
}

async fn send(
    ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
    message: &FeedMessage,
) -> Result<(), ()> {
    let json = serde_json::to_string(message).expect("feed messages serialize");
    match tokio::time::timeout(WRITE_TIMEOUT, ws.send(WsMessage::text(json))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Connects to the feed at `url` and calls `on_message` with each message
/// until the feed closes. Checks the version in the feed's `hello`.
pub async fn read(url: &str, mut on_message: impl FnMut(FeedMessage)) -> Result<(), FeedError> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|source| FeedError::Connect {
            url: url.to_string(),
            source,
        })?;
    let first = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, ws.next())
        .await
        .map_err(|_| FeedError::NoHello {
            url: url.to_string(),
        })?;
    let frames = futures_util::stream::iter(first).chain(ws);
    tokio::pin!(frames);
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|source| FeedError::Read {
            url: url.to_string(),
            source,
        })?;
        let WsMessage::Text(text) = frame else {
            continue;
        };
        let message: FeedMessage =
            serde_json::from_str(&text).map_err(|source| FeedError::Invalid {
                url: url.to_string(),
                source,
            })?;
        if let FeedMessage::Hello(hello) = &message {
            if hello.version != FEED_VERSION {
                return Err(FeedError::Version {
                    url: url.to_string(),
                    version: hello.version,
                });
            }
        }
        on_message(message);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        let metrics = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse_request(metrics), Request::Metrics);
        let feed =
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(parse_request(feed), Request::Feed);
        let other = b"GET /nope?x=1 HTTP/1.1\r\n\r\n";
        assert_eq!(parse_request(other), Request::NotFound("/nope".into()));
        assert_eq!(parse_request(b"garbage"), Request::Malformed);
    }

    #[test]
    fn loopback_only() {
        assert!(check_loopback("127.0.0.1:9000".parse().unwrap()).is_ok());
        assert!(check_loopback("[::1]:9000".parse().unwrap()).is_ok());
        let err = check_loopback("0.0.0.0:9000".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("0.0.0.0:9000"), "{err}");
    }
}
