
use builtin;
use str;

set edit:completion:arg-completer[resonate] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'resonate'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'resonate'= {
            cand -v 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
            cand -q 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
            cand --quiet 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Stream an audio file to players, in sync'
            cand play 'Play a server''s stream through the sound card, a WAV file or nothing'
            cand discover 'Find servers and players on the local network over mDNS'
            cand stress 'Storm a server with virtual clients and report every protocol or lifecycle violation'
            cand monitor 'Show live sessions and clock offsets in a terminal UI (not yet available)'
        }
        &'resonate;serve'= {
            cand --listen 'Address and port to listen on. Use 0.0.0.0:8927 to accept players from the network'
            cand --path 'WebSocket path to accept connections on'
            cand --name 'Friendly server name sent in server/hello'
            cand --server-id 'Server identifier sent in server/hello [default: resonate-HOSTNAME]'
            cand --grouping 'How players are placed in groups'
            cand --group-name 'Name of the shared group'
            cand --lead-ms 'How far ahead of real time audio is sent, in milliseconds (also bounded by each player''s buffer_capacity)'
            cand --start-delay-ms 'Delay from the start of playback until the first sample sounds, in milliseconds; players need about 400 ms to sync their clocks'
            cand --codec 'Stream this codec to every player, even one that prefers or offers another (for testing players) [default: each player''s first producible format]'
            cand --opus-bitrate 'Opus target bitrate in bits per second, 500 to 512000 [default: the libopus default, about 99000 for 48 kHz stereo]'
            cand --client 'Connect to a player that waits for servers, at ws://HOST[:PORT][/PATH] (port 8928 and path /sendspin by default); repeat for more players. The server redials it after a `restart` goodbye or a lost connection'
            cand --interface 'Network interface for mDNS, by name [default: loopback only when --listen is a loopback address, else every interface]'
            cand --demo-seconds 'Length of the demonstration in seconds'
            cand --demo-players 'Number of in-process players in the demonstration'
            cand --loop 'Start the file over at its end instead of ending the stream'
            cand --no-mdns 'Neither advertise this server over mDNS nor browse for players that wait for servers'
            cand --json 'Print server events as JSON lines on stdout'
            cand --demo 'Run a self-contained demonstration: serve a generated tone on a random loopback port to in-process players with null outputs, then print a sync report. Needs no file, sound card or network'
            cand -v 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
            cand -q 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
            cand --quiet 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'resonate;play'= {
            cand -s 'Server URL, ws://HOST[:PORT][/PATH]; port 8927 and path /sendspin by default. Without --server and --listen, play looks for a server over mDNS, preferring the one that last played here'
            cand --server 'Server URL, ws://HOST[:PORT][/PATH]; port 8927 and path /sendspin by default. Without --server and --listen, play looks for a server over mDNS, preferring the one that last played here'
            cand --dialect 'Wire dialect: sendspin-v1, or resonate for legacy Resonate servers (aioresonate 0.13.2), whose default path is /resonate. The resonate dialect needs --server'
            cand --listen 'Wait for servers to connect instead of dialing one: listen on ADDR:PORT [default when given without a value: 0.0.0.0:8928] at /sendspin and advertise _sendspin._tcp over mDNS. When a second server connects, the protocol''s rules pick the one to keep'
            cand --interface 'Network interface for mDNS, by name [default: loopback only for a loopback --listen address, else every interface]'
            cand --state-file 'File that keeps the id of the server that last played here [default: $XDG_STATE_HOME/resonate/last-played-CLIENT_ID.json, or under ~/.local/state]'
            cand -o 'Where audio goes: default (the default sound card), device:NAME, wav:PATH (writes exactly what would be played) or null'
            cand --output 'Where audio goes: default (the default sound card), device:NAME, wav:PATH (writes exactly what would be played) or null'
            cand --device 'Sound card to play on, by name (see --list-devices); same as --output device:NAME'
            cand --client-id 'Client identifier, kept across restarts so the server recognizes this player; two players with one id replace each other [default: resonate-play-HOSTNAME-OUTPUT]'
            cand --name 'Friendly player name sent in client/hello [default: the host name]'
            cand --static-delay-ms 'Extra delay added to every chunk''s play time, in milliseconds; negative plays earlier'
            cand --sink-drift-ppm 'Clock error of the simulated sound card behind --output wav:PATH and null, in ppm, -2000 to 2000; positive plays faster. The player corrects it by dropping or repeating single frames'
            cand --sink-latency-ms 'Output latency of the simulated sound card behind --output wav:PATH and null, in milliseconds, 0 to 1000 (fractions allowed). Each block is rendered this long before it is heard'
            cand --sync-log 'Write one JSON line per output block to PATH. Each line gives when the block''s first frame is heard (local, host-monotonic and server time), which server timestamp it plays and the clock estimate. The format is in docs/sync.md'
            cand --codec 'Codecs to advertise, in order of preference, comma-separated; the server streams the first it can produce. Opus is offered only at its rates (48000 Hz by default), FLAC only up to 96000 Hz'
            cand --request-format 'Send stream/request-format once per connection: CODEC[:RATE[:CHANNELS[:BITS]]], such as flac, opus:48000 or pcm:44100:2:16; empty fields keep the current value'
            cand --request-format-after 'Seconds after the connection''s first stream/start at which --request-format is sent (fractions allowed)'
            cand --sample-rate 'Only advertise this sample rate, in Hz [default: 48000 and 44100]'
            cand --bit-depth 'Only advertise this bit depth [default: 24 and 16]'
            cand --channels 'Only advertise this channel count [default: 2]'
            cand --buffer-capacity 'Bytes of audio this player buffers ahead (buffer_capacity in client/hello)'
            cand --volume 'Initial volume, 0 to 100; the gain is (volume/100)^3, so 50 is -18 dB'
            cand --duration 'Stop after this many seconds (fractions allowed), saying goodbye as on Ctrl-C. Without it, play runs until Ctrl-C, across streams and reconnections'
            cand --connect-attempts 'Connection attempts before giving up when the server cannot be reached at start; retries wait 250 ms, doubling up to 10 s. Once connected, play reconnects until stopped'
            cand --no-mdns 'With --listen, do not advertise over mDNS; servers must be given this player''s URL'
            cand --list-devices 'List sound cards and exit'
            cand --no-drift-correction 'Play chunks back to back sample for sample instead of dropping or repeating single frames as the sound card''s clock drifts. Only a position error above 15 ms then moves playback. Useful for bit-exact recordings with --output wav:PATH'
            cand --json 'Print player events and a final report as JSON lines on stdout'
            cand -v 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
            cand -q 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
            cand --quiet 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'resonate;discover'= {
            cand --timeout 'Seconds to browse (fractions allowed) [default: 3, or until Ctrl-C with --watch]'
            cand --interface 'Network interface to browse on, by name [default: every interface]'
            cand --probe 'Connect to each endpoint, do the handshake and add its hello data, round trip and clock offset'
            cand --json 'Print one JSON object per endpoint; with --watch, one JSON line per change'
            cand --watch 'Keep browsing and print endpoints as they appear, change and leave, until Ctrl-C or --timeout'
            cand -v 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
            cand -q 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
            cand --quiet 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'resonate;stress'= {
            cand -s 'Server to stress, ws://HOST[:PORT][/PATH]. Without it, stress starts an embedded server on a loopback port and also checks it for leaked sessions and tasks'
            cand --server 'Server to stress, ws://HOST[:PORT][/PATH]. Without it, stress starts an embedded server on a loopback port and also checks it for leaked sessions and tasks'
            cand --player 'Player that waits for servers (`play --listen`) to stress, ws://HOST[:PORT][/PATH], port 8928 by default. Virtual servers dial it, stream to it and drop it; only the handshake-storm scenario applies'
            cand --scenario 'Scenario to run; repeat for several, or `all` (described below)'
            cand --duration 'How long each scenario starts new work, in seconds, 0.1 to 3600 (fractions allowed); rounds already started finish, so some scenarios run longer'
            cand --clients 'Concurrent virtual clients per scenario'
            cand --rate 'New sessions per second in the handshake storm [default: as fast as possible]'
            cand --roles 'Roles of the handshake storm''s clients: mixed (every combination, drawn at random) or a comma-separated list of player, controller, metadata, artwork'
            cand --seed 'Seed of the random schedules; the same seed repeats the same run [default: from the clock]'
            cand --bound 'Seconds the target has for what a check waits for, 0.1 to 600: replying to a hello, closing a session, dropping a slow consumer, starting audio'
            cand --dialect 'Wire dialect of the virtual clients'
            cand --json 'Print the whole report as one JSON object on stdout'
            cand -v 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
            cand -q 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
            cand --quiet 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'resonate;monitor'= {
            cand -v 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
            cand -q 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
            cand --quiet 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
    ]
    $completions[$command]
}
