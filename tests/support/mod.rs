//! Shared pieces of the integration tests: fixtures, an in-process server
//! and a raw protocol client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use resonate::server::{Server, ServerConfig, ServerEvent, SourcePlan};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for one expected thing before failing.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Writes a WAV file of a deterministic signal: a sine per channel with a
/// little pseudo-random noise, so every sample is distinct enough that
/// misalignment shows.
pub fn write_test_wav(
    path: &Path,
    sample_rate: u32,
    channels: u16,
    bits: u16,
    seconds: f64,
) -> Vec<i32> {
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).expect("create test WAV");
    let frames = (sample_rate as f64 * seconds) as usize;
    let peak = ((1i64 << (bits - 1)) - 1) as f64 * 0.5;
    let mut noise: u32 = 0x1234_5678;
    let mut samples = Vec::with_capacity(frames * channels as usize);
    for frame in 0..frames {
        for channel in 0..channels {
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            let tone = (frame as f64 * (440.0 + 110.0 * channel as f64) * std::f64::consts::TAU
                / sample_rate as f64)
                .sin();
            let dither = (noise % 64) as f64 - 32.0;
            let value = (tone * peak + dither).round() as i32;
            writer.write_sample(value).expect("write sample");
            samples.push(value);
        }
    }
    writer.finalize().expect("finalize test WAV");
    samples
}

/// What `play --output wav:PATH` wrote: the samples as integers and the
/// server time of the first one, from the file's `rsnt` chunk.
pub struct Recording {
    pub samples: Vec<i32>,
    pub first_frame_server_us: i64,
    pub spec: hound::WavSpec,
}

/// Reads a recording written by `play --output wav:PATH`.
pub fn read_recording(path: &Path) -> Recording {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let spec = reader.spec();
    let samples: Vec<i32> = reader.samples::<i32>().map(|s| s.unwrap()).collect();
    let note = resonate::audio::wav::read_note(path)
        .expect("read the note chunk")
        .expect("the player writes a note chunk");
    let note: serde_json::Value = serde_json::from_str(&note).expect("note is JSON");
    Recording {
        samples,
        first_frame_server_us: note["first_frame_server_us"]
            .as_i64()
            .expect("first_frame_server_us"),
        spec,
    }
}

/// A server running in this process on a loopback port.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The server's live counters.
    pub stats: resonate::server::ServerStats,
    /// Makes the server dial players that wait for servers.
    pub dialer: resonate::server::Dialer,
    pub events: broadcast::Receiver<ServerEvent>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let server = Server::new(config);
        let events = server.subscribe();
        let dialer = server.dialer();
        let stats = server.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("server run");
        });
        TestServer {
            addr,
            stats,
            dialer,
            events,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/sendspin", self.addr)
    }

    /// Waits for the next event that `pick` accepts, skipping others.
    pub async fn next_event<T>(&mut self, mut pick: impl FnMut(&ServerEvent) -> Option<T>) -> T {
        let wait = async {
            loop {
                match self.events.recv().await {
                    Ok(event) => {
                        if let Some(found) = pick(&event) {
                            return found;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(err) => panic!("server events ended: {err}"),
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .expect("timed out waiting for a server event")
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("server stops")
                .expect("server task");
        }
    }
}

pub fn config_for(path: PathBuf) -> ServerConfig {
    let mut config = ServerConfig::new(SourcePlan::file(path, false));
    config.server_id = "test-server".into();
    config
}

/// A protocol client that speaks raw JSON, for exact control over frames.
pub struct RawClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawClient {
    pub async fn connect(url: &str) -> RawClient {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect to test server");
        RawClient { ws }
    }

    pub async fn send_json(&mut self, value: Value) {
        self.ws
            .send(WsMessage::text(value.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, frame: WsMessage) {
        self.ws.send(frame).await.expect("send");
    }

    /// Sends a hello with the given roles and, for players, one PCM format.
    pub async fn hello(
        &mut self,
        client_id: &str,
        roles: &[&str],
        format: Option<(u32, u16, u16)>,
    ) {
        let mut payload = json!({
            "client_id": client_id, "name": client_id, "version": 1, "supported_roles": roles,
        });
        if let Some((rate, channels, bits)) = format {
            payload["player@v1_support"] = json!({
                "supported_formats": [{"codec": "pcm", "sample_rate": rate, "channels": channels, "bit_depth": bits}],
                "buffer_capacity": 10_000_000, "supported_commands": ["volume", "mute"],
            });
        }
        self.send_json(json!({"type": "client/hello", "payload": payload}))
            .await;
    }

    /// Reads the next text message, skipping binary frames.
    pub async fn next_json(&mut self) -> Option<Value> {
        loop {
            match self.next_frame().await? {
                WsMessage::Text(text) => {
                    return Some(serde_json::from_str(text.as_str()).expect("server sends JSON"))
                }
                WsMessage::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads text messages until one of type `type_name` arrives.
    pub async fn expect_type(&mut self, type_name: &str) -> Value {
        loop {
            let message = self
                .next_json()
                .await
                .unwrap_or_else(|| panic!("connection closed while waiting for {type_name}"));
            if message["type"] == type_name {
                return message;
            }
        }
    }

    pub async fn next_frame(&mut self) -> Option<WsMessage> {
        match tokio::time::timeout(PATIENCE, self.ws.next()).await {
            Ok(Some(Ok(frame))) => Some(frame),
            Ok(_) => None,
            Err(_) => panic!("timed out waiting for a frame"),
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn expect_close(&mut self) -> Option<(u16, String)> {
        loop {
            match self.next_frame().await {
                Some(WsMessage::Close(frame)) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Some(_) => continue,
                None => return None,
            }
        }
    }
}
