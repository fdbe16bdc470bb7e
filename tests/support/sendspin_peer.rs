//! Records PCM from a Sendspin v1 server with the `sendspin` crate's client
//! (pinned to 0.3.8 in Cargo.toml), for interop tests.
//!
//! Include it with `#[path = "support/sendspin_peer.rs"] mod sendspin_peer;`.
#![allow(dead_code)]

use std::time::Duration;

use anyhow::{bail, Context};
use sendspin::protocol::messages::{
    AudioFormatSpec, GoodbyeReason, Message, PlayerState, PlayerV1Support,
};
use sendspin::ProtocolClientBuilder;

/// PCM format as (sample_rate in Hz, channels, bit_depth).
pub type PcmFormat = (u32, u8, u8);

/// `buffer_capacity` announced in client/hello, in bytes. Large enough that
/// the server never throttles a test stream of a few seconds.
const BUFFER_CAPACITY_BYTES: u32 = 32 * 1024 * 1024;

/// Startup lead and minimum buffer announced in client/state, in
/// milliseconds. They match aiosendspin 6.1.1's client defaults, so both test
/// players ask servers for the same lead.
const REQUIRED_LEAD_TIME_MS: u32 = 250;
const MIN_BUFFER_MS: u32 = 250;

/// Audio that one player received from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// Player format from the server's stream/start, or the requested format
    /// when no stream/start arrived.
    pub format: PcmFormat,
    /// Audio chunks as (server timestamp in microseconds, payload), sorted
    /// by timestamp. Chunks with equal timestamps keep their arrival order.
    pub chunks: Vec<(i64, Vec<u8>)>,
    /// Codec and base64 codec header of the server's stream/start.
    pub codec: String,
    pub codec_header: Option<String>,
    /// Whether a stream/start for the player role arrived.
    pub stream_started: bool,
    /// Whether the recording ended at the player's stream/end, as opposed to
    /// `max` running out or the server closing the connection.
    pub stream_ended: bool,
}

impl Recording {
    /// Concatenates the chunk payloads in timestamp order.
    pub fn pcm(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .flat_map(|(_, payload)| payload.iter().copied())
            .collect()
    }

    /// Returns the timestamp of the earliest chunk, in microseconds.
    pub fn first_timestamp_us(&self) -> Option<i64> {
        self.chunks.first().map(|(timestamp, _)| *timestamp)
    }
}

/// Connects to `url` as a player that supports exactly one PCM `format`;
/// see [`record`].
pub async fn record_pcm(
    url: &str,
    client_id: &str,
    format: PcmFormat,
    max: Duration,
) -> anyhow::Result<Recording> {
    record(url, client_id, "pcm", format, max).await
}

/// Connects to `url` as a player that supports exactly `format` in `codec`
/// and records the audio chunks it receives, undecoded.
///
/// The client/hello offers only that format; the first client/state reports the
/// player synchronized, volume 100, not muted, static delay 0 and the lead
/// and buffer above. Recording stops at the player's stream/end, when the
/// server closes the connection, or after `max`; then the client sends
/// client/goodbye ("shutdown") and closes the socket.
///
/// Returns an error when the connection or handshake fails or when the
/// server starts a stream in another codec.
pub async fn record(
    url: &str,
    client_id: &str,
    codec: &str,
    format: PcmFormat,
    max: Duration,
) -> anyhow::Result<Recording> {
    let (sample_rate, channels, bit_depth) = format;
    let player_support = PlayerV1Support {
        supported_formats: vec![AudioFormatSpec {
            codec: codec.to_string(),
            channels,
            sample_rate,
            bit_depth,
        }],
        buffer_capacity: BUFFER_CAPACITY_BYTES,
        supported_commands: vec!["volume".to_string(), "mute".to_string()],
    };
    let player_state = PlayerState {
        volume: Some(100),
        muted: Some(false),
        static_delay_ms: Some(0),
        required_lead_time_ms: Some(REQUIRED_LEAD_TIME_MS),
        min_buffer_ms: Some(MIN_BUFFER_MS),
        supported_commands: None,
    };
    let client = ProtocolClientBuilder::builder()
        .client_id(client_id.to_string())
        .name(client_id.to_string())
        .player_v1_support(player_support)
        .initial_player_state(player_state)
        .build()
        .connect(url)
        .await
        .with_context(|| format!("connecting to {url} as player {client_id} failed"))?;
    let mut connection = client.split();

    let deadline = tokio::time::Instant::now() + max;
    let mut recording = Recording {
        format,
        chunks: Vec::new(),
        codec: codec.to_string(),
        codec_header: None,
        stream_started: false,
        stream_ended: false,
    };
    let mut audio_open = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            message = connection.messages.recv() => match message {
                // The router task has exited: the server closed the connection.
                None => break,
                Some(Message::StreamStart(start)) => {
                    let Some(player) = start.player else { continue };
                    if player.codec != codec {
                        bail!(
                            "server {url} started a {} stream, but player {client_id} offered only {codec}",
                            player.codec
                        );
                    }
                    recording.format = (player.sample_rate, player.channels, player.bit_depth);
                    recording.codec_header = player.codec_header.clone();
                    recording.stream_started = true;
                }
                Some(Message::StreamEnd(end)) => {
                    let ends_player = end
                        .roles
                        .as_ref()
                        .is_none_or(|roles| roles.iter().any(|role| role == "player"));
                    if ends_player {
                        // The crate's router queues each chunk before it reads
                        // the next frame, so every chunk sent ahead of this
                        // stream/end is already in the audio channel.
                        while let Ok(chunk) = connection.audio.try_recv() {
                            recording.chunks.push((chunk.timestamp, chunk.data.to_vec()));
                        }
                        recording.stream_ended = true;
                        break;
                    }
                }
                Some(_) => {}
            },
            // NOTE: audio and messages arrive on separate channels, so the
            // order of a chunk and a stream/start is unknown. Every chunk that
            // arrives before stream/end is kept.
            chunk = connection.audio.recv(), if audio_open => match chunk {
                Some(chunk) => recording.chunks.push((chunk.timestamp, chunk.data.to_vec())),
                None => audio_open = false,
            },
        }
    }

    // The goodbye is best effort: it fails when the server has already
    // closed the connection, which is a normal end of a recording.
    let _ = connection.guard.disconnect(GoodbyeReason::Shutdown).await;

    recording.chunks.sort_by_key(|(timestamp, _)| *timestamp);
    Ok(recording)
}
