//! The command-line interface, defined once with clap derive. Completions
//! and man pages are generated from it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

// A path attribute, so that tests that include this file find it too.
#[path = "limits.rs"]
pub mod limits;

/// Serve, play, discover, stress and monitor Resonate and Sendspin
/// synchronized multi-room audio networks.
#[derive(Debug, Parser)]
#[command(
    name = "resonate",
    version,
    propagate_version = true,
    disable_help_subcommand = true,
    max_term_width = 100,
    after_help = "Exit status: 0 on success, 1 when a run fails, 2 for bad input or an unreachable server."
)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, display_order = 900)]
    pub verbose: u8,

    /// Less output (-q: errors only and no status lines, -qq: nothing but the final error).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose", display_order = 901)]
    pub quiet: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream an audio file to players, in sync.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Serve(ServeArgs),
    /// Play a server's stream through the sound card, a WAV file or nothing.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Play(PlayArgs),
    /// Find servers and players on the local network over mDNS.
    Discover(DiscoverArgs),
    /// Storm a server with virtual clients and report every protocol or lifecycle violation.
    #[command(after_long_help = scenario_help())]
    Stress(StressArgs),
    /// Watch a telemetry feed: sessions, clock sync, groups and events in a terminal UI, or as plain text.
    #[command(after_long_help = MONITOR_KEYS)]
    Monitor(MonitorArgs),
}

/// Subcommands of `serve` that run instead of serving.
#[derive(Debug, Subcommand)]
pub enum ServeAction {
    /// Pair one Sendspin 1.0 player with this server, by the code it shows or its pairing token, then exit. Paired players are admitted by serve --dialect sendspin with the same --state-dir.
    Pair(ServePairArgs),
    /// List the Sendspin 1.0 clients in this server's state directory (paired, approved, to unpair, to pair), after applying the changes given, then exit. A serve running on the same --state-dir closes the affected clients' sessions within a second, and they connect again under the new terms.
    Clients(ServeClientsArgs),
}

/// Changes to who a Sendspin 1.0 server admits, kept in its state directory.
#[derive(Debug, Args)]
pub struct AccessArgs {
    /// Give roles and playback to this unpaired client (its client_id, a base64url public key) from now on. The approval is kept in the state directory until --revoke, or until a pairing with that client discards it. Repeatable.
    // A base64url key may start with '-'.
    #[arg(long, value_name = "CLIENT_ID", allow_hyphen_values = true)]
    pub approve: Vec<String>,

    /// Revoke the stored approval of this unpaired client; repeatable.
    #[arg(long, value_name = "CLIENT_ID", allow_hyphen_values = true)]
    pub revoke: Vec<String>,

    /// Unpair this paired client: when it next connects on its pairing record, it is sent server/unpair, and both sides drop the record (the client connects unpaired from then on). Kept in the state directory until then. Repeatable.
    #[arg(long, value_name = "CLIENT_ID", allow_hyphen_values = true)]
    pub unpair: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeClientsArgs {
    #[command(flatten)]
    pub access: AccessArgs,

    /// Pair with the client whose pairing token this is (SP:0..., printed by play --pairing-token). A running serve closes the client's session, and the next connection pairs by the token. Repeatable.
    #[arg(long, value_name = "TOKEN")]
    pub pair_token: Vec<String>,

    /// Pair with a client by its static pairing code, given as CLIENT_ID=CODE (the code has 8 digits, such as 1234-5678), when it next connects with its pairing window open (resonate play pair --server URL). Repeatable.
    #[arg(long, value_name = "CLIENT_ID=CODE", allow_hyphen_values = true)]
    pub pair_code: Vec<String>,

    /// Drop the pairing request (--pair-token or --pair-code) of this client; repeatable.
    #[arg(long, value_name = "CLIENT_ID", allow_hyphen_values = true)]
    pub cancel_pairing: Vec<String>,

    /// Directory of the server's identity and pairing records, as for serve [default: $XDG_STATE_HOME/resonate, or ~/.local/state/resonate].
    #[arg(long, value_name = "DIR", env = "RESONATE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Print the list as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The pairing method `serve pair` starts on a player that connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PairMethodArg {
    /// A dynamic code when the player offers one, else its static code.
    Auto,
    /// The player's fixed 8-digit code, such as 1234-5678.
    Static,
    /// A 6-digit code the player derives for this pairing and shows or speaks.
    Dynamic,
}

#[derive(Debug, Args)]
pub struct ServePairArgs {
    /// Address and port to wait for the player on.
    #[arg(long, default_value = "127.0.0.1:8927", value_parser = parse_listen_address)]
    pub listen: SocketAddr,

    /// WebSocket path to accept the player on.
    #[arg(long, default_value = "/sendspin")]
    pub path: String,

    /// The player's static pairing code (8 digits, such as 1234-5678); without it, serve pair prompts on the terminal for the code the player shows.
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,

    /// Pair by the player's pairing token (SP:0..., printed by play pair) instead of a code.
    #[arg(long, value_name = "TOKEN", conflicts_with_all = ["code", "method"])]
    pub token: Option<String>,

    /// Pairing method to start on a player that offers codes.
    #[arg(long, value_enum)]
    pub method: Option<PairMethodArg>,

    /// Seconds to wait for a player to connect and finish pairing.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    pub timeout: f64,

    /// Directory of the server's identity and pairing records, as for serve [default: $XDG_STATE_HOME/resonate, or ~/.local/state/resonate].
    #[arg(long, value_name = "DIR", env = "RESONATE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Friendly server name sent in server/hello.
    #[arg(long, default_value = "resonate")]
    pub name: String,

    /// Print events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Subcommands of `play` that run instead of playing.
#[derive(Debug, Subcommand)]
pub enum PlayAction {
    /// Show this player's Sendspin 1.0 pairing token and static pairing code; with --server, also connect and wait for that server to pair, then exit.
    Pair(PlayPairArgs),
}

#[derive(Debug, Args)]
pub struct PlayPairArgs {
    /// Server to pair with, ws://HOST[:PORT][/PATH]; port 8927 and path /sendspin by default.
    #[arg(long, short = 's')]
    pub server: Option<String>,

    /// Set this player's static pairing code to CODE (8 digits, such as 1234-5678) and keep it in --state-dir. By default a random code is made on first use.
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,

    /// Seconds the pairing window stays open: how long play pair waits for the server to start pairing.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    pub window: f64,

    /// Directory of this player's identity, pairing PSK, static code and pairing records, as for play [default: $XDG_STATE_HOME/resonate, or ~/.local/state/resonate].
    #[arg(long, value_name = "DIR", env = "RESONATE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Noise cipher suite: 25519_ChaChaPoly_SHA256 or 25519_AESGCM_SHA256.
    #[arg(long, default_value = "25519_ChaChaPoly_SHA256")]
    pub suite: String,

    /// Player name sent in client/hello [default: the host name].
    #[arg(long)]
    pub name: Option<String>,

    /// Print events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How `serve` places players in groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GroupingArg {
    /// All players join one group and play the source in sync.
    Shared,
    /// Each client gets its own group, which starts the source when it joins.
    Solo,
}

/// Audio codec on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CodecArg {
    /// Uncompressed PCM.
    Pcm,
    /// Lossless FLAC, one frame per chunk (16 or 24 bits, up to 96000 Hz).
    Flac,
    /// Lossy Opus, 20 ms packets (48000, 24000, 16000, 12000 or 8000 Hz, 1 or 2 channels).
    Opus,
}

impl From<CodecArg> for resonate::audio::Codec {
    fn from(codec: CodecArg) -> Self {
        match codec {
            CodecArg::Pcm => resonate::audio::Codec::Pcm,
            CodecArg::Flac => resonate::audio::Codec::Flac,
            CodecArg::Opus => resonate::audio::Codec::Opus,
        }
    }
}

/// Test signal of `serve --tone`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ToneArg {
    /// A 440 Hz sine at -12 dBFS, 48000 Hz stereo.
    Sine,
    /// A 1 ms click at the start of every second, for checking sync by ear or in recordings.
    Click,
}

/// Repeat mode of `serve --repeat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RepeatArg {
    /// Play the queue once.
    Off,
    /// Play the current track over and over.
    One,
    /// Start the queue over after its last track.
    All,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub action: Option<ServeAction>,

    /// What to play, in order: audio files (WAV, FLAC, MP3, Ogg Vorbis and what else symphonia decodes), directories (every audio file inside, sorted by path) and M3U playlists.
    #[arg(value_name = "SOURCE", required_unless_present_any = ["demo", "tone", "stdin_format"])]
    pub sources: Vec<PathBuf>,

    /// Play a generated test signal after the SOURCEs, or alone.
    #[arg(long, value_enum)]
    pub tone: Option<ToneArg>,

    /// Play raw PCM read from stdin, little-endian signed, in this format: RATE:CHANNELS:BITS such as 48000:2:16 (16, 24 or 32 bits). A live stream: controllers can play, stop, change volume and mute, and switch, but not pause, skip, repeat or shuffle.
    #[arg(long, value_name = "RATE:CHANNELS:BITS", value_parser = parse_pcm_format, conflicts_with_all = ["sources", "tone", "demo"])]
    pub stdin_format: Option<resonate::audio::pipe::PcmFormat>,

    /// Address and port to listen on. Use 0.0.0.0:8927 to accept players from the network.
    #[arg(long, default_value = "127.0.0.1:8927", value_parser = parse_listen_address)]
    pub listen: SocketAddr,

    /// WebSocket path to accept connections on.
    #[arg(long, default_value = "/sendspin")]
    pub path: String,

    /// Also accept legacy Resonate clients (aioresonate 0.13) at /resonate, in the same groups as Sendspin clients, and advertise _resonate-server._tcp over mDNS.
    #[arg(long)]
    pub legacy: bool,

    /// Wire dialect of clients on --path: sendspin (Sendspin 1.0, encrypted with Noise) or sendspin-v1 (cleartext only). With sendspin, --accept-v1 also takes cleartext v1 clients on the same path.
    #[arg(long, default_value = "sendspin")]
    pub dialect: String,

    /// Also accept cleartext Sendspin v1 clients, recognized by their first message.
    #[arg(long)]
    pub accept_v1: bool,

    /// Give roles and playback to every unpaired client that offers unpaired access.
    #[arg(long)]
    pub allow_unpaired: bool,

    #[command(flatten)]
    pub access: AccessArgs,

    /// Pair with the client whose pairing token (SP:0..., printed by play --pairing-token) this is, when it next connects; repeatable. The request is kept in the state directory until the client pairs (serve clients --cancel-pairing drops it), and a client that is already paired is left as it is.
    #[arg(long, value_name = "TOKEN")]
    pub pair_token: Vec<String>,

    /// Rotate the keys of each Sendspin 1.0 session every SECONDS with an in-band re-handshake on the PSK that keys it [default: never].
    #[arg(long, value_name = "SECONDS", value_parser = parse_rekey_interval)]
    pub rekey_interval: Option<f64>,

    /// Directory of the server's Sendspin 1.0 identity (its key pair, whose public key is the server_id) and pairing records; created on first use, files readable by the owner only [default: $XDG_STATE_HOME/resonate, or ~/.local/state/resonate].
    #[arg(long, value_name = "DIR", env = "RESONATE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Friendly server name sent in server/hello.
    #[arg(long, default_value = "resonate")]
    pub name: String,

    /// Server identifier sent in server/hello [default: resonate-HOSTNAME].
    #[arg(long)]
    pub server_id: Option<String>,

    /// Start the queue over after its last track instead of ending the stream; the same as --repeat all.
    #[arg(long = "loop", conflicts_with = "repeat")]
    pub looping: bool,

    /// What follows the end of a track: the next one (off), the same one (one), or, after the last one, the first (all); controllers can change it.
    #[arg(long, value_enum, default_value_t = RepeatArg::Off)]
    pub repeat: RepeatArg,

    /// Play the queue in random order; controllers can turn it off.
    #[arg(long)]
    pub shuffle: bool,

    /// How players are placed in groups.
    #[arg(long, value_enum, default_value_t = GroupingArg::Shared)]
    pub grouping: GroupingArg,

    /// Name of the shared group.
    #[arg(long, default_value = "Resonate")]
    pub group_name: String,

    /// Put the listed clients in a group of this name, with its own queue and timeline, instead of the group --grouping gives them: NAME=CLIENT_ID,CLIENT_ID; repeat for more groups. Controllers move clients between groups with the switch command.
    #[arg(long = "group", value_name = "NAME=IDS", value_parser = parse_group_placement)]
    pub groups: Vec<resonate::server::GroupPlacement>,

    /// How far ahead of real time audio is sent, in milliseconds (also bounded by each player's buffer_capacity).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=30_000))]
    pub lead_ms: u64,

    /// Delay from the start of playback until the first sample sounds, in milliseconds; players need about 400 ms to sync their clocks.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub start_delay_ms: u64,

    /// Stream this codec to every player, even one that prefers or offers another (for testing players) [default: each player's first producible format].
    #[arg(long, value_enum)]
    pub codec: Option<CodecArg>,

    /// Opus target bitrate in bits per second, 500 to 512000 [default: the libopus default, about 99000 for 48 kHz stereo].
    #[arg(long, value_parser = clap::value_parser!(u32).range(500..=512_000))]
    pub opus_bitrate: Option<u32>,
    /// Connect to a player that waits for servers, at ws://HOST[:PORT][/PATH] (port 8928 and path /sendspin by default); repeat for more players. The server redials it after a `restart` goodbye or a lost connection.
    #[arg(long = "client", value_name = "URL")]
    pub clients: Vec<String>,

    /// Neither advertise this server over mDNS nor browse for players that wait for servers.
    #[arg(long)]
    pub no_mdns: bool,

    /// Network interface for mDNS, by name [default: loopback only when --listen is a loopback address, else every interface].
    #[arg(long, value_name = "NAME", conflicts_with = "no_mdns")]
    pub interface: Option<String>,

    /// Draw the monitor in this terminal while serving; quitting it (q) stops the server. Logs go to --log-file, or nowhere.
    #[arg(long)]
    pub tui: bool,

    /// Append the log to this file while --tui owns the terminal [default: no log].
    #[arg(long, value_name = "PATH", requires = "tui")]
    pub log_file: Option<PathBuf>,

    /// Publish sessions, groups and events for `resonate monitor` on this loopback address (ws://ADDR/), with Prometheus metrics at http://ADDR/metrics; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", value_parser = parse_telemetry_addr)]
    pub telemetry: Option<SocketAddr>,

    /// Print server events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,

    /// Run a self-contained demonstration: serve a generated tone on a random loopback port to in-process players with null outputs, then print a sync report. Needs no file, sound card or network.
    #[arg(long, conflicts_with_all = ["sources", "tone", "listen", "clients", "interface"])]
    pub demo: bool,

    /// Length of the demonstration in seconds.
    #[arg(long, default_value_t = 5, requires = "demo", value_parser = clap::value_parser!(u64).range(1..=600))]
    pub demo_seconds: u64,

    /// Number of in-process players in the demonstration.
    #[arg(long, default_value_t = 2, requires = "demo", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub demo_players: u64,

    #[command(flatten)]
    pub connection_limits: limits::ConnectionLimitArgs,

    #[command(flatten)]
    pub server_limits: limits::ServerLimitArgs,
}

#[derive(Debug, Args)]
pub struct PlayArgs {
    #[command(subcommand)]
    pub action: Option<PlayAction>,

    /// Server URL, ws://HOST[:PORT][/PATH]; port 8927 and path /sendspin by default. Without --server and --listen, play looks for a server over mDNS, preferring the one that last played here.
    #[arg(long, short = 's')]
    pub server: Option<String>,

    /// Wire dialect: sendspin (Sendspin 1.0, encrypted with Noise), sendspin-v1 (cleartext), or resonate for legacy Resonate servers (aioresonate 0.13.2), whose default path is /resonate [default: sendspin. When a server that play dials closes the connection before sending server/init, play dials it again in sendspin-v1. Over mDNS, Sendspin servers are preferred to legacy Resonate ones].
    #[arg(long)]
    pub dialect: Option<String>,

    /// Directory of this player's Sendspin 1.0 identity (its key pair, whose public key is the client_id) and pairing records; created on first use, files readable by the owner only [default: $XDG_STATE_HOME/resonate, or ~/.local/state/resonate].
    #[arg(long, value_name = "DIR", env = "RESONATE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Noise cipher suite of Sendspin 1.0 connections: 25519_ChaChaPoly_SHA256 or 25519_AESGCM_SHA256.
    #[arg(long, default_value = "25519_ChaChaPoly_SHA256")]
    pub suite: String,

    /// Print this player's Sendspin 1.0 pairing token (from the key pair and pairing PSK in --state-dir, created on first use) and exit. Give it to serve --pair-token to pair.
    #[arg(long)]
    pub pairing_token: bool,

    /// Wait for servers to connect instead of dialing one: listen on ADDR:PORT [default when given without a value: 0.0.0.0:8928] at /sendspin and advertise _sendspin._tcp over mDNS. When a second server connects, the protocol's rules pick the one to keep.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        num_args = 0..=1,
        default_missing_value = "0.0.0.0:8928",
        conflicts_with = "server",
        value_parser = parse_listen_address
    )]
    pub listen: Option<SocketAddr>,

    /// With --listen, do not advertise over mDNS; servers must be given this player's URL.
    #[arg(long, requires = "listen")]
    pub no_mdns: bool,

    /// Network interface for mDNS, by name [default: loopback only for a loopback --listen address, else every interface].
    #[arg(long, value_name = "NAME", conflicts_with_all = ["server", "no_mdns"])]
    pub interface: Option<String>,

    /// Without --server or --listen, seconds to look for a server over mDNS before giving up (fractions allowed). The last-played server is taken as soon as it appears. Otherwise play gathers responses for 3 s (or until the first one, if later) and takes the first server by instance name.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_seconds, conflicts_with_all = ["server", "listen"])]
    pub search_timeout: f64,

    /// File that keeps the id of the server that last played here [default: $XDG_STATE_HOME/resonate/last-played-CLIENT_ID.json, or under ~/.local/state].
    #[arg(long, value_name = "PATH", env = "RESONATE_STATE_FILE")]
    pub state_file: Option<PathBuf>,

    /// Where audio goes: default (the default sound card), device:NAME, wav:PATH (writes exactly what would be played) or null.
    #[arg(long, short = 'o', default_value = "default")]
    pub output: String,

    /// Sound card to play on, by name (see --list-devices); same as --output device:NAME.
    #[arg(long, conflicts_with = "output")]
    pub device: Option<String>,

    /// List sound cards and exit.
    #[arg(long)]
    pub list_devices: bool,

    /// Client identifier, kept across restarts so the server recognizes this player; two players with one id replace each other [default: resonate-play-HOSTNAME-OUTPUT].
    #[arg(long)]
    pub client_id: Option<String>,

    /// Friendly player name sent in client/hello [default: the host name].
    #[arg(long)]
    pub name: Option<String>,

    /// Extra delay added to every chunk's play time, in milliseconds; negative plays earlier.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(-5_000..=5_000))]
    pub static_delay_ms: i64,

    /// Play chunks back to back sample for sample instead of dropping or repeating single frames as the sound card's clock drifts. Only a position error above 15 ms then moves playback. Useful for bit-exact recordings with --output wav:PATH.
    #[arg(long)]
    pub no_drift_correction: bool,

    /// Clock error of the simulated sound card behind --output wav:PATH and null, in ppm, -2000 to 2000; positive plays faster. The player corrects it by dropping or repeating single frames.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_name = "PPM", value_parser = parse_sink_drift)]
    pub sink_drift_ppm: f64,

    /// Output latency of the simulated sound card behind --output wav:PATH and null, in milliseconds, 0 to 1000 (fractions allowed). Each block is rendered this long before it is heard.
    #[arg(long, default_value_t = 20.0, allow_negative_numbers = true, value_name = "MS", value_parser = parse_sink_latency)]
    pub sink_latency_ms: f64,

    /// Write one JSON line per output block to PATH. Each line gives when the block's first frame is heard (local, host-monotonic and server time), which server timestamp it plays and the clock estimate. The format is in docs/sync.md.
    #[arg(long, value_name = "PATH")]
    pub sync_log: Option<PathBuf>,

    /// Codecs to advertise, in order of preference, comma-separated; the server streams the first it can produce. Opus is offered only at its rates (48000 Hz by default), FLAC only up to 96000 Hz.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "pcm,flac,opus"
    )]
    pub codec: Vec<CodecArg>,

    /// Send stream/request-format once per connection: CODEC[:RATE[:CHANNELS[:BITS]]], such as flac, opus:48000 or pcm:44100:2:16; empty fields keep the current value.
    #[arg(long, value_name = "SPEC")]
    pub request_format: Option<String>,

    /// Seconds after the connection's first stream/start at which --request-format is sent (fractions allowed).
    #[arg(
        long,
        default_value_t = 0.0,
        requires = "request_format",
        value_name = "SECONDS"
    )]
    pub request_format_after: f64,

    /// Only advertise this sample rate, in Hz [default: 48000 and 44100].
    #[arg(long, value_parser = clap::value_parser!(u32).range(8_000..=384_000))]
    pub sample_rate: Option<u32>,

    /// Only advertise this bit depth [default: 24 and 16].
    #[arg(long, value_parser = ["16", "24", "32"])]
    pub bit_depth: Option<String>,

    /// Only advertise this channel count [default: 2].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub channels: Option<u16>,

    /// Bytes of audio this player buffers ahead (buffer_capacity in client/hello).
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1_000..=100_000_000))]
    pub buffer_capacity: u64,

    /// Initial volume, 0 to 100; the gain is (volume/100)^3, so 50 is -18 dB.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub volume: u8,

    /// Stop after this many seconds (fractions allowed), saying goodbye as on Ctrl-C. Without it, play runs until Ctrl-C, across streams and reconnections.
    #[arg(long)]
    pub duration: Option<f64>,

    /// Connection attempts before giving up when the server cannot be reached at start; retries wait 250 ms, doubling up to 10 s. Once connected, play reconnects until stopped.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub connect_attempts: u32,

    /// Publish this player's connection, clock and buffer for `resonate monitor` on this loopback address (ws://ADDR/), with Prometheus metrics at http://ADDR/metrics; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", value_parser = parse_telemetry_addr)]
    pub telemetry: Option<SocketAddr>,

    /// Print player events and a final report as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,

    /// Roles to ask the server for, comma-separated: player plays audio, controller sends the group's commands (the terminal UI's keys), metadata shows what plays. Without player, play opens no audio output [default: player,controller,metadata; player alone with --dialect resonate].
    #[arg(long, value_name = "ROLES")]
    pub roles: Option<String>,

    /// Print status lines instead of drawing the terminal UI. The UI is drawn only when stdout is a terminal and --json is not given.
    #[arg(long)]
    pub no_tui: bool,

    /// Append the log to PATH. While the terminal UI runs, the log goes here or nowhere.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    #[command(flatten)]
    pub connection_limits: limits::ConnectionLimitArgs,
}

#[derive(Debug, Args)]
pub struct StressArgs {
    /// Server to stress, ws://HOST[:PORT][/PATH]. Without it, stress starts an embedded server on a loopback port and also checks it for leaked sessions and tasks.
    #[arg(long, short = 's')]
    pub server: Option<String>,

    /// Player that waits for servers (`play --listen`) to stress, ws://HOST[:PORT][/PATH], port 8928 by default. Virtual servers dial it, stream to it, command it and drop it; each scenario has a form for players (described below).
    #[arg(long, conflicts_with = "server")]
    pub player: Option<String>,

    /// Scenario to run; repeat for several, or `all` (described below).
    #[arg(long = "scenario", value_name = "NAME", default_value = "all")]
    pub scenarios: Vec<String>,

    /// How long each scenario starts new work, in seconds, 0.1 to 3600 (fractions allowed); rounds already started finish, so some scenarios run longer.
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
    pub duration: f64,

    /// Concurrent virtual clients per scenario.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub clients: u64,

    /// New sessions per second in the handshake storm [default: as fast as possible].
    #[arg(long, allow_negative_numbers = true)]
    pub rate: Option<f64>,

    /// Roles of the handshake storm's and fan-out's clients: mixed draws every combination at random (fan-out then uses player alone), or a comma-separated list of player, controller, metadata, artwork.
    #[arg(long, default_value = "mixed")]
    pub roles: String,

    /// Seed of the random schedules; the same seed repeats the same run [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,

    /// Seconds the target has for what a check waits for, 0.1 to 600: replying to a hello, closing a session, dropping a slow consumer, starting audio.
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
    pub bound: f64,

    /// Wire dialect of the virtual clients: sendspin-v1, sendspin (Sendspin 1.0, unpaired, so the server must admit unpaired clients as serve --allow-unpaired does), or resonate for legacy Resonate servers such as aioresonate 0.13 (default path /resonate).
    #[arg(long, default_value = "sendspin-v1")]
    pub dialect: String,

    /// Telemetry feed of the target server, ws://ADDR/ as `resonate serve --telemetry ADDR` prints it; after each scenario the run checks there that the server's sessions, clients and tasks return to zero, and reports a leak when they do not.
    #[arg(long, value_name = "URL", requires = "server")]
    pub server_telemetry: Option<String>,

    /// Draw the monitor in this terminal during the run; it stays open after the run until q, then the report prints. Quitting early stops the run without a report. Logs go to --log-file, or nowhere.
    #[arg(long)]
    pub tui: bool,

    /// Append the log to this file while --tui owns the terminal [default: no log].
    #[arg(long, value_name = "PATH", requires = "tui")]
    pub log_file: Option<PathBuf>,

    /// Publish the run for `resonate monitor` on this loopback address (ws://ADDR/): scenario markers, violations, counters and, with the embedded server, its sessions; Prometheus metrics at http://ADDR/metrics; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", value_parser = parse_telemetry_addr)]
    pub telemetry: Option<SocketAddr>,

    /// Print the whole report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Returns the scenario list for `stress --help`.
fn scenario_help() -> String {
    let mut help = String::from("Scenarios against a server:\n");
    let named: Vec<_> = resonate::stress::Scenario::named().collect();
    push_scenarios(&mut help, &named, resonate::stress::Scenario::describe);
    help.push_str(
        "\nThe same scenarios against a player (--player), where stress acts as servers:\n",
    );
    push_scenarios(
        &mut help,
        &resonate::stress::Scenario::ALL,
        resonate::stress::Scenario::describe_against_player,
    );
    help.push_str("\nExit status: 0 when no violation was found, 1 when some were, 2 for bad arguments or a target that cannot be reached.");
    help
}

/// Appends one line per scenario to `help`, each description wrapped under
/// itself so the names stay readable in a column of their own.
fn push_scenarios(
    help: &mut String,
    scenarios: &[resonate::stress::Scenario],
    describe: fn(resonate::stress::Scenario) -> &'static str,
) {
    const NAME_WIDTH: usize = 22;
    const LINE_WIDTH: usize = 78;
    for &scenario in scenarios {
        let mut line = format!("  {:<20}", scenario.as_str());
        for word in describe(scenario).split(' ') {
            if line.len() + 1 + word.len() > LINE_WIDTH
                && line.trim().len() > scenario.as_str().len()
            {
                help.push_str(line.trim_end());
                help.push('\n');
                line = " ".repeat(NAME_WIDTH);
            }
            if !line.ends_with(' ') {
                line.push(' ');
            }
            line.push_str(word);
        }
        help.push_str(&line);
        help.push('\n');
    }
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Connect to each endpoint, do the handshake and add its hello data, round trip and clock offset.
    #[arg(long)]
    pub probe: bool,

    /// Print one JSON object per endpoint; with --watch, one JSON line per change.
    #[arg(long)]
    pub json: bool,

    /// Keep browsing and print endpoints as they appear, change and leave, until Ctrl-C or --timeout.
    #[arg(long)]
    pub watch: bool,

    /// Seconds to browse (fractions allowed) [default: 3, or until Ctrl-C with --watch].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: Option<f64>,

    /// Network interface to browse on, by name [default: every interface].
    #[arg(long, value_name = "NAME")]
    pub interface: Option<String>,
}

/// Parses a listen address: an IP address and a port.
fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("invalid address {text:?}: expected IP:PORT, such as 127.0.0.1:8927 or [::1]:8927 (host names are not accepted)")
    })
}

/// Parses a positive number of seconds.
fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 86_400.0 => Ok(seconds),
        _ => Err(format!(
            "invalid duration {text:?}; expected seconds above 0 and at most 86400, such as 2.5"
        )),
    }
}

/// Parses the interval of key rotations: at least one second, so that a
/// rotation ends before the next.
fn parse_rekey_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if (1.0..=86_400.0).contains(&seconds) => Ok(seconds),
        _ => Err(format!(
            "invalid interval {text:?}; expected seconds from 1 to 86400, such as 3600"
        )),
    }
}

/// Keys of the monitor's terminal UI, for `monitor --help`.
const MONITOR_KEYS: &str = "Keys: q quit, p pause (collecting goes on), Tab or 1 2 3 screens (sessions, groups, events), \
s sort column, S reverse sort, / filter, Up/Down/PgUp/PgDn select or scroll, Enter session details with sparklines, Esc back.\n\n\
Clock figures come from the client's own filter when it reports one; figures marked * are the server's estimate.\n\n\
Exit status: 0 when the operator quits, 2 for an invalid URL or a feed that cannot be reached at start.";

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Telemetry feed to watch, ws://HOST:PORT: the WebSocket at / of the telemetry address a serve, play or stress process listens on. The monitor reconnects when the feed drops, waiting 0.5 s doubling to 10 s.
    #[arg(
        value_name = "URL",
        required_unless_present = "server",
        conflicts_with = "server"
    )]
    pub url: Option<String>,

    /// Watch any Sendspin server, ours or not, at ws://HOST[:PORT][/PATH] (port 8927 and path /sendspin by default): the monitor joins it as a controller and metadata client and shows its group, metadata and the monitor's own clock offset and round trip. A foreign server does not tell a client about other clients.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,

    /// Wire dialect of --server: sendspin-v1, sendspin (Sendspin 1.0, as an unpaired client with a new key whose client_id the monitor shows, which the server must approve), or resonate for legacy servers (path /resonate by default).
    #[arg(long, default_value = "sendspin-v1", requires = "server")]
    pub dialect: String,

    /// Print a plain-text table of sessions, groups and new events every --interval seconds instead of the terminal UI; chosen automatically when stdout is not a terminal.
    #[arg(long)]
    pub plain: bool,

    /// Seconds between plain-text tables, 0.1 to 3600 (fractions allowed).
    #[arg(
        long,
        default_value_t = 2.0,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub interval: f64,

    /// Append the log to this file [default: stderr with plain output; no log while the terminal UI runs, because it owns the terminal].
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// Parses --sink-drift-ppm: a finite number from -2000 to 2000.
fn parse_sink_drift(value: &str) -> Result<f64, String> {
    let ppm: f64 = value.parse().map_err(|_| {
        format!("invalid drift {value:?}; expected a number of ppm such as -200 or 150")
    })?;
    if !(-2_000.0..=2_000.0).contains(&ppm) {
        return Err(format!(
            "drift {ppm} ppm is out of range; use -2000 to 2000"
        ));
    }
    Ok(ppm)
}

/// Parses --sink-latency-ms: a finite number from 0 to 1000.
fn parse_sink_latency(value: &str) -> Result<f64, String> {
    let ms: f64 = value.parse().map_err(|_| {
        format!("invalid latency {value:?}; expected milliseconds such as 20 or 2.5")
    })?;
    if !(0.0..=1_000.0).contains(&ms) {
        return Err(format!("latency {ms} ms is out of range; use 0 to 1000"));
    }
    Ok(ms)
}

/// Parses a `--telemetry` address: `IP:PORT`, or `localhost:PORT` for
/// 127.0.0.1. Whether it is a loopback address is checked when binding.
fn parse_telemetry_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = text
        .strip_prefix("localhost:")
        .and_then(|p| p.parse::<u16>().ok())
    {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(format!(
        "invalid address {text:?}: expected 127.0.0.1:PORT or [::1]:PORT, such as 127.0.0.1:9000"
    ))
}

fn parse_group_placement(text: &str) -> Result<resonate::server::GroupPlacement, String> {
    text.parse()
}

fn parse_pcm_format(text: &str) -> Result<resonate::audio::pipe::PcmFormat, String> {
    text.parse()
}
