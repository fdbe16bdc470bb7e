//! Cost of Sendspin 1.0's encryption, for both cipher suites. A full
//! `KKpsk2` handshake is `client/init`, `server/init` and both Noise
//! messages, with client and server in one thread over an in-memory
//! WebSocket. A chunk costs the sealing and opening of one transport
//! message.
//!
//! Run with `cargo bench --bench noise`; `docs/benchmarks.md` records the
//! figures and the machine. A chunk's cost is per player: every session
//! has its own keys, so a server seals each chunk once per player.
//! `cargo test --all-targets` runs a short smoke run whose figures mean
//! nothing.

use std::time::{Duration, Instant};

use resonate::noise::handshake::{accept, connect, ClientOptions, ServerOptions};
use resonate::noise::{Identity, PskChoice, Suite};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

const HANDSHAKES: usize = 2_000;
const SMOKE_HANDSHAKES: usize = 10;
const SEAL_TIME: Duration = Duration::from_secs(2);
const SMOKE_SEAL_TIME: Duration = Duration::from_millis(20);
const TIMEOUT: Duration = Duration::from_secs(10);

/// Plaintext sizes of one 20 ms audio chunk with its 13-byte header, and
/// of one cover image, which is fragmented.
const CHUNKS: [(&str, usize); 5] = [
    ("opus 20 ms", 13 + 320),
    ("flac 16-bit 20 ms", 13 + 2_400),
    ("pcm 16-bit 20 ms", 13 + 3_840),
    ("pcm 24-bit 20 ms", 13 + 5_760),
    ("artwork 256 KiB", 9 + 256 * 1024),
];

/// Chunks per real-time second at 20 ms per chunk.
const CHUNKS_PER_SECOND: f64 = 50.0;

/// Runs one handshake between new in-memory WebSocket ends and returns
/// the two established sides.
async fn handshake(
    client: &Identity,
    server: &Identity,
    suite: Suite,
) -> (resonate::noise::Established, resonate::noise::Established) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut client_ws = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
    let mut server_ws = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
    let client_side = connect(
        &mut client_ws,
        ClientOptions {
            identity: client,
            suite,
            records: None,
            pairing_psk: None,
            expected_server: None,
            timeout: TIMEOUT,
        },
    );
    let server_side = accept(
        &mut server_ws,
        None,
        ServerOptions {
            identity: server,
            timeout: TIMEOUT,
        },
        |_| Some(PskChoice::sentinel()),
    );
    let (client, server) = tokio::join!(client_side, server_side);
    (
        client.expect("client side of the handshake"),
        server.expect("server side of the handshake"),
    )
}

fn handshakes(runtime: &tokio::runtime::Runtime, suite: Suite, count: usize) {
    let client = Identity::generate();
    let server = Identity::generate();
    let started = Instant::now();
    for _ in 0..count {
        runtime.block_on(handshake(&client, &server, suite));
    }
    let elapsed = started.elapsed();
    println!(
        "handshake {suite}: {count} in {:.2} s, {:.0} per second, {:.0} us each (client and server on one core)",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / count as f64,
    );
}

fn chunks(runtime: &tokio::runtime::Runtime, suite: Suite, measure: Duration) {
    let (mut client, mut server) = runtime.block_on(handshake(
        &Identity::generate(),
        &Identity::generate(),
        suite,
    ));
    for (label, size) in CHUNKS {
        let mut plaintext = vec![0x5a_u8; size];
        // Type 4, audio: the real first byte of a chunk's plaintext.
        plaintext[0] = 4;
        let mut sealed = 0u64;
        let mut seal_time = Duration::ZERO;
        let mut open_time = Duration::ZERO;
        let mut wire_bytes = 0usize;
        while seal_time + open_time < measure {
            let started = Instant::now();
            let messages = server.channel.seal(plaintext.clone());
            let sealed_at = Instant::now();
            let mut opened = None;
            for message in &messages {
                opened = client.channel.open(message).expect("open a sealed message");
            }
            open_time += sealed_at.elapsed();
            seal_time += sealed_at - started;
            wire_bytes = messages.iter().map(Vec::len).sum();
            assert_eq!(opened.as_deref(), Some(plaintext.as_slice()));
            sealed += 1;
        }
        let seal_us = seal_time.as_secs_f64() * 1e6 / sealed as f64;
        let open_us = open_time.as_secs_f64() * 1e6 / sealed as f64;
        // Audio goes out 50 chunks a second; a cover goes out once per track.
        let per_second = if label.starts_with("artwork") {
            String::new()
        } else {
            format!(
                ", sealing 50 chunks/s costs {:.1} us of CPU per player per second",
                seal_us * CHUNKS_PER_SECOND
            )
        };
        println!(
            "chunk {suite} {label}: {size} B plaintext, {wire_bytes} B on the wire, seal {seal_us:.2} us, open {open_us:.2} us, seal {:.0} MB/s{per_second}",
            size as f64 / seal_us,
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter selects one part.
    let full = std::env::args().any(|arg| arg == "--bench");
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with("--"));
    let selected = |part: &str| filter.as_deref().is_none_or(|f| part.contains(f));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for suite in [Suite::ChaChaPoly, Suite::AesGcm] {
        if selected("handshake") {
            let count = if full { HANDSHAKES } else { SMOKE_HANDSHAKES };
            handshakes(&runtime, suite, count);
        }
        if selected("chunk") {
            let measure = if full { SEAL_TIME } else { SMOKE_SEAL_TIME };
            chunks(&runtime, suite, measure);
        }
    }
}
