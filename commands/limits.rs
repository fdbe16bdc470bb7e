//! Flags for the limits that protect `serve` and `play` from their peers.
//! Each default is the one of [`Limits::default`], and docs/hardening.md lists
//! what happens when a limit trips.

use std::time::Duration;

use clap::Args;
use resonate::transport::Limits;

/// Limits of every connection, for `serve` and `play`.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Connection limits")]
pub struct ConnectionLimitArgs {
    /// Maximum size of a WebSocket frame from the peer, in bytes. A larger frame closes the connection with code 1009.
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1024..=1 << 30))]
    pub max_frame_bytes: u64,

    /// Maximum size of a WebSocket message from the peer, reassembled from its frames, in bytes. A larger message closes the connection with code 1009.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1024..=1 << 30))]
    pub max_message_bytes: u64,

    /// Time allowed from the TCP connection until both hello messages are exchanged, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub handshake_timeout_ms: u64,

    /// Time a peer may send nothing, not even a pong to a ping, before it is closed, in milliseconds. Pings go out every quarter of it, at most 5 s apart.
    #[arg(long, default_value_t = 20_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1_000..=3_600_000))]
    pub idle_timeout_ms: u64,
}

impl ConnectionLimitArgs {
    /// Writes these limits into `limits`.
    pub fn apply(&self, limits: &mut Limits) {
        limits.max_frame_bytes = self.max_frame_bytes as usize;
        limits.max_message_bytes = self.max_message_bytes as usize;
        limits.handshake_timeout = Duration::from_millis(self.handshake_timeout_ms);
        limits.idle_timeout = Duration::from_millis(self.idle_timeout_ms);
        // The idle check runs at each ping, and a live peer's last pong is
        // one ping interval old by then, so pings must be well inside it.
        limits.ping_interval = Limits::default().ping_interval.min(limits.idle_timeout / 4);
    }

    /// Returns the default limits with these flags applied.
    pub fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        self.apply(&mut limits);
        limits
    }
}

/// Limits only a server applies, for `serve`.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Server limits")]
pub struct ServerLimitArgs {
    /// Messages queued for one session before it counts as a slow consumer and is closed with code 1008.
    #[arg(long, default_value_t = 1024, value_name = "MESSAGES", value_parser = clap::value_parser!(u64).range(16..=1_000_000))]
    pub outbound_queue: u64,

    /// Sessions open at once, counting handshakes in progress; further connections get HTTP 503.
    #[arg(long, default_value_t = 1024, value_name = "SESSIONS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_sessions: u64,

    /// WebSocket handshakes in progress at once; further connections are closed unread.
    #[arg(long, default_value_t = 128, value_name = "HANDSHAKES", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_pending_handshakes: u64,

    /// Frames a client may send per second, with a burst of as many; a client above it is closed with code 1008.
    #[arg(long, default_value_t = 200, value_name = "FRAMES", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_messages_per_second: u32,

    /// Time one write to a session's socket may take, in milliseconds. A session whose write takes longer is closed as a slow consumer with code 1008.
    #[arg(long, default_value_t = 10_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub write_timeout_ms: u64,

    /// How far past its play time an audio chunk may be when it reaches a session's socket, in milliseconds. A later chunk closes the session as a slow consumer with code 1008.
    #[arg(long, default_value_t = 1_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub late_audio_ms: u64,

    /// Kernel send buffer of each server socket, in bytes (Linux doubles the value). It bounds how much audio a peer that stops reading can hide in the kernel.
    #[arg(long, default_value_t = 256 << 10, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(4096..=64 << 20))]
    pub send_buffer_bytes: u64,
}

impl ServerLimitArgs {
    /// Writes these limits into `limits`.
    pub fn apply(&self, limits: &mut Limits) {
        limits.outbound_queue = self.outbound_queue as usize;
        limits.max_sessions = self.max_sessions as usize;
        limits.max_pending_handshakes = self.max_pending_handshakes as usize;
        limits.max_messages_per_second = self.max_messages_per_second;
        limits.write_timeout = Duration::from_millis(self.write_timeout_ms);
        limits.audio_late_limit = Duration::from_millis(self.late_audio_ms);
        limits.socket_send_buffer = Some(self.send_buffer_bytes as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Both {
        #[command(flatten)]
        connection: ConnectionLimitArgs,
        #[command(flatten)]
        server: ServerLimitArgs,
    }

    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let both = Both::parse_from(["test"]);
        let mut limits = both.connection.limits();
        both.server.apply(&mut limits);
        let defaults = Limits::default();
        assert_eq!(limits.max_frame_bytes, defaults.max_frame_bytes);
        assert_eq!(limits.max_message_bytes, defaults.max_message_bytes);
        assert_eq!(limits.handshake_timeout, defaults.handshake_timeout);
        assert_eq!(limits.idle_timeout, defaults.idle_timeout);
        assert_eq!(limits.ping_interval, defaults.ping_interval);
        assert_eq!(limits.outbound_queue, defaults.outbound_queue);
        assert_eq!(limits.max_sessions, defaults.max_sessions);
        assert_eq!(
            limits.max_pending_handshakes,
            defaults.max_pending_handshakes
        );
        assert_eq!(
            limits.max_messages_per_second,
            defaults.max_messages_per_second
        );
        assert_eq!(limits.write_timeout, defaults.write_timeout);
        assert_eq!(limits.audio_late_limit, defaults.audio_late_limit);
        assert_eq!(limits.socket_send_buffer, defaults.socket_send_buffer);
    }

    #[test]
    fn flags_set_limits() {
        let both = Both::parse_from([
            "test",
            "--max-frame-bytes",
            "2048",
            "--idle-timeout-ms",
            "1500",
            "--max-sessions",
            "3",
            "--max-messages-per-second",
            "7",
            "--write-timeout-ms",
            "2500",
            "--late-audio-ms",
            "250",
            "--send-buffer-bytes",
            "65536",
        ]);
        let mut limits = both.connection.limits();
        both.server.apply(&mut limits);
        assert_eq!(limits.max_frame_bytes, 2048);
        assert_eq!(limits.idle_timeout, Duration::from_millis(1500));
        assert_eq!(limits.ping_interval, Duration::from_millis(375));
        assert_eq!(limits.max_sessions, 3);
        assert_eq!(limits.max_messages_per_second, 7);
        assert_eq!(limits.write_timeout, Duration::from_millis(2500));
        assert_eq!(limits.audio_late_limit, Duration::from_millis(250));
        assert_eq!(limits.socket_send_buffer, Some(65536));
    }

    #[test]
    fn zero_and_absurd_server_limits_are_rejected() {
        for (flag, value) in [
            ("--write-timeout-ms", "0"),
            ("--write-timeout-ms", "600001"),
            ("--late-audio-ms", "0"),
            ("--late-audio-ms", "60001"),
            ("--send-buffer-bytes", "0"),
            ("--send-buffer-bytes", "67108865"),
        ] {
            let err = Both::try_parse_from(["test", flag, value])
                .err()
                .unwrap_or_else(|| panic!("{flag} {value} was accepted"));
            let message = err.to_string();
            assert!(message.contains(flag), "{flag} {value}: {message}");
            assert!(message.contains(value), "{flag} {value}: {message}");
        }
    }
}
