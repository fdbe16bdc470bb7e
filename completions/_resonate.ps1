
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'resonate' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'resonate'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'resonate' {
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Stream an audio file to players, in sync')
            [CompletionResult]::new('play', 'play', [CompletionResultType]::ParameterValue, 'Play a server''s stream through the sound card, a WAV file or nothing')
            [CompletionResult]::new('discover', 'discover', [CompletionResultType]::ParameterValue, 'Find servers and players on the local network over mDNS')
            [CompletionResult]::new('stress', 'stress', [CompletionResultType]::ParameterValue, 'Storm a server with virtual clients and report every protocol or lifecycle violation')
            [CompletionResult]::new('monitor', 'monitor', [CompletionResultType]::ParameterValue, 'Watch a telemetry feed: sessions, clock sync, groups and events in a terminal UI, or as plain text')
            break
        }
        'resonate;serve' {
            [CompletionResult]::new('--tone', '--tone', [CompletionResultType]::ParameterName, 'Play a generated test signal after the SOURCEs, or alone')
            [CompletionResult]::new('--stdin-format', '--stdin-format', [CompletionResultType]::ParameterName, 'Play raw PCM read from stdin, little-endian signed, in this format: RATE:CHANNELS:BITS such as 48000:2:16 (16, 24 or 32 bits). A live stream: controllers can play, stop, change volume and mute, and switch, but not pause, skip, repeat or shuffle')
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address and port to listen on. Use 0.0.0.0:8927 to accept players from the network')
            [CompletionResult]::new('--path', '--path', [CompletionResultType]::ParameterName, 'WebSocket path to accept connections on')
            [CompletionResult]::new('--dialect', '--dialect', [CompletionResultType]::ParameterName, 'Wire dialect of clients on --path: sendspin-v1 (cleartext) or sendspin (Sendspin 1.0, encrypted with Noise; add --accept-v1 to take cleartext v1 clients on the same path too)')
            [CompletionResult]::new('--approve', '--approve', [CompletionResultType]::ParameterName, 'With --dialect sendspin, give roles and playback to this unpaired client (its client_id, a base64url public key); repeatable')
            [CompletionResult]::new('--pair-token', '--pair-token', [CompletionResultType]::ParameterName, 'With --dialect sendspin, pair with the client whose pairing token (SP:0..., printed by play --pairing-token) this is, when it next connects; repeatable. The pairing record is then kept in the state directory')
            [CompletionResult]::new('--state-dir', '--state-dir', [CompletionResultType]::ParameterName, 'Directory of the server''s Sendspin 1.0 identity (its key pair, whose public key is the server_id) and pairing records; created on first use, files readable by the owner only [default: $XDG_STATE_HOME/resonate, or ~/.local/state/resonate]')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Friendly server name sent in server/hello')
            [CompletionResult]::new('--server-id', '--server-id', [CompletionResultType]::ParameterName, 'Server identifier sent in server/hello [default: resonate-HOSTNAME]')
            [CompletionResult]::new('--repeat', '--repeat', [CompletionResultType]::ParameterName, 'What follows the end of a track: the next one (off), the same one (one), or, after the last one, the first (all); controllers can change it')
            [CompletionResult]::new('--grouping', '--grouping', [CompletionResultType]::ParameterName, 'How players are placed in groups')
            [CompletionResult]::new('--group-name', '--group-name', [CompletionResultType]::ParameterName, 'Name of the shared group')
            [CompletionResult]::new('--group', '--group', [CompletionResultType]::ParameterName, 'Put the listed clients in a group of this name, with its own queue and timeline, instead of the group --grouping gives them: NAME=CLIENT_ID,CLIENT_ID; repeat for more groups. Controllers move clients between groups with the switch command')
            [CompletionResult]::new('--lead-ms', '--lead-ms', [CompletionResultType]::ParameterName, 'How far ahead of real time audio is sent, in milliseconds (also bounded by each player''s buffer_capacity)')
            [CompletionResult]::new('--start-delay-ms', '--start-delay-ms', [CompletionResultType]::ParameterName, 'Delay from the start of playback until the first sample sounds, in milliseconds; players need about 400 ms to sync their clocks')
            [CompletionResult]::new('--codec', '--codec', [CompletionResultType]::ParameterName, 'Stream this codec to every player, even one that prefers or offers another (for testing players) [default: each player''s first producible format]')
            [CompletionResult]::new('--opus-bitrate', '--opus-bitrate', [CompletionResultType]::ParameterName, 'Opus target bitrate in bits per second, 500 to 512000 [default: the libopus default, about 99000 for 48 kHz stereo]')
            [CompletionResult]::new('--client', '--client', [CompletionResultType]::ParameterName, 'Connect to a player that waits for servers, at ws://HOST[:PORT][/PATH] (port 8928 and path /sendspin by default); repeat for more players. The server redials it after a `restart` goodbye or a lost connection')
            [CompletionResult]::new('--interface', '--interface', [CompletionResultType]::ParameterName, 'Network interface for mDNS, by name [default: loopback only when --listen is a loopback address, else every interface]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log to this file while --tui owns the terminal [default: no log]')
            [CompletionResult]::new('--telemetry', '--telemetry', [CompletionResultType]::ParameterName, 'Publish sessions, groups and events for `resonate monitor` on this loopback address (ws://ADDR/), with Prometheus metrics at http://ADDR/metrics; port 0 picks a free port')
            [CompletionResult]::new('--demo-seconds', '--demo-seconds', [CompletionResultType]::ParameterName, 'Length of the demonstration in seconds')
            [CompletionResult]::new('--demo-players', '--demo-players', [CompletionResultType]::ParameterName, 'Number of in-process players in the demonstration')
            [CompletionResult]::new('--max-frame-bytes', '--max-frame-bytes', [CompletionResultType]::ParameterName, 'Maximum size of a WebSocket frame from the peer, in bytes. A larger frame closes the connection with code 1009')
            [CompletionResult]::new('--max-message-bytes', '--max-message-bytes', [CompletionResultType]::ParameterName, 'Maximum size of a WebSocket message from the peer, reassembled from its frames, in bytes. A larger message closes the connection with code 1009')
            [CompletionResult]::new('--handshake-timeout-ms', '--handshake-timeout-ms', [CompletionResultType]::ParameterName, 'Time allowed from the TCP connection until both hello messages are exchanged, in milliseconds')
            [CompletionResult]::new('--idle-timeout-ms', '--idle-timeout-ms', [CompletionResultType]::ParameterName, 'Time a peer may send nothing, not even a pong to a ping, before it is closed, in milliseconds. Pings go out every quarter of it, at most 5 s apart')
            [CompletionResult]::new('--outbound-queue', '--outbound-queue', [CompletionResultType]::ParameterName, 'Messages queued for one session before it counts as a slow consumer and is closed with code 1008')
            [CompletionResult]::new('--max-sessions', '--max-sessions', [CompletionResultType]::ParameterName, 'Sessions open at once, counting handshakes in progress; further connections get HTTP 503')
            [CompletionResult]::new('--max-pending-handshakes', '--max-pending-handshakes', [CompletionResultType]::ParameterName, 'WebSocket handshakes in progress at once; further connections are closed unread')
            [CompletionResult]::new('--max-messages-per-second', '--max-messages-per-second', [CompletionResultType]::ParameterName, 'Frames a client may send per second, with a burst of as many; a client above it is closed with code 1008')
            [CompletionResult]::new('--legacy', '--legacy', [CompletionResultType]::ParameterName, 'Also accept legacy Resonate clients (aioresonate 0.13) at /resonate, in the same groups as Sendspin clients, and advertise _resonate-server._tcp over mDNS')
            [CompletionResult]::new('--accept-v1', '--accept-v1', [CompletionResultType]::ParameterName, 'With --dialect sendspin, also accept cleartext Sendspin v1 clients, recognized by their first message')
            [CompletionResult]::new('--allow-unpaired', '--allow-unpaired', [CompletionResultType]::ParameterName, 'With --dialect sendspin, give roles and playback to every unpaired client that offers unpaired access')
            [CompletionResult]::new('--loop', '--loop', [CompletionResultType]::ParameterName, 'Start the queue over after its last track instead of ending the stream; the same as --repeat all')
            [CompletionResult]::new('--shuffle', '--shuffle', [CompletionResultType]::ParameterName, 'Play the queue in random order; controllers can turn it off')
            [CompletionResult]::new('--no-mdns', '--no-mdns', [CompletionResultType]::ParameterName, 'Neither advertise this server over mDNS nor browse for players that wait for servers')
            [CompletionResult]::new('--tui', '--tui', [CompletionResultType]::ParameterName, 'Draw the monitor in this terminal while serving; quitting it (q) stops the server. Logs go to --log-file, or nowhere')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print server events as JSON lines on stdout')
            [CompletionResult]::new('--demo', '--demo', [CompletionResultType]::ParameterName, 'Run a self-contained demonstration: serve a generated tone on a random loopback port to in-process players with null outputs, then print a sync report. Needs no file, sound card or network')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'resonate;play' {
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'Server URL, ws://HOST[:PORT][/PATH]; port 8927 and path /sendspin by default. Without --server and --listen, play looks for a server over mDNS, preferring the one that last played here')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, ws://HOST[:PORT][/PATH]; port 8927 and path /sendspin by default. Without --server and --listen, play looks for a server over mDNS, preferring the one that last played here')
            [CompletionResult]::new('--dialect', '--dialect', [CompletionResultType]::ParameterName, 'Wire dialect: sendspin (Sendspin 1.0, encrypted with Noise), sendspin-v1 (cleartext), or resonate for legacy Resonate servers (aioresonate 0.13.2), whose default path is /resonate [default: sendspin-v1 with --server or --listen; over mDNS, the dialect of the service type found, preferring Sendspin servers]')
            [CompletionResult]::new('--state-dir', '--state-dir', [CompletionResultType]::ParameterName, 'Directory of this player''s Sendspin 1.0 identity (its key pair, whose public key is the client_id) and pairing records; created on first use, files readable by the owner only [default: $XDG_STATE_HOME/resonate, or ~/.local/state/resonate]')
            [CompletionResult]::new('--suite', '--suite', [CompletionResultType]::ParameterName, 'Noise cipher suite of Sendspin 1.0 connections: 25519_ChaChaPoly_SHA256 or 25519_AESGCM_SHA256')
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Wait for servers to connect instead of dialing one: listen on ADDR:PORT [default when given without a value: 0.0.0.0:8928] at /sendspin and advertise _sendspin._tcp over mDNS. When a second server connects, the protocol''s rules pick the one to keep')
            [CompletionResult]::new('--interface', '--interface', [CompletionResultType]::ParameterName, 'Network interface for mDNS, by name [default: loopback only for a loopback --listen address, else every interface]')
            [CompletionResult]::new('--state-file', '--state-file', [CompletionResultType]::ParameterName, 'File that keeps the id of the server that last played here [default: $XDG_STATE_HOME/resonate/last-played-CLIENT_ID.json, or under ~/.local/state]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Where audio goes: default (the default sound card), device:NAME, wav:PATH (writes exactly what would be played) or null')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Where audio goes: default (the default sound card), device:NAME, wav:PATH (writes exactly what would be played) or null')
            [CompletionResult]::new('--device', '--device', [CompletionResultType]::ParameterName, 'Sound card to play on, by name (see --list-devices); same as --output device:NAME')
            [CompletionResult]::new('--client-id', '--client-id', [CompletionResultType]::ParameterName, 'Client identifier, kept across restarts so the server recognizes this player; two players with one id replace each other [default: resonate-play-HOSTNAME-OUTPUT]')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Friendly player name sent in client/hello [default: the host name]')
            [CompletionResult]::new('--static-delay-ms', '--static-delay-ms', [CompletionResultType]::ParameterName, 'Extra delay added to every chunk''s play time, in milliseconds; negative plays earlier')
            [CompletionResult]::new('--sink-drift-ppm', '--sink-drift-ppm', [CompletionResultType]::ParameterName, 'Clock error of the simulated sound card behind --output wav:PATH and null, in ppm, -2000 to 2000; positive plays faster. The player corrects it by dropping or repeating single frames')
            [CompletionResult]::new('--sink-latency-ms', '--sink-latency-ms', [CompletionResultType]::ParameterName, 'Output latency of the simulated sound card behind --output wav:PATH and null, in milliseconds, 0 to 1000 (fractions allowed). Each block is rendered this long before it is heard')
            [CompletionResult]::new('--sync-log', '--sync-log', [CompletionResultType]::ParameterName, 'Write one JSON line per output block to PATH. Each line gives when the block''s first frame is heard (local, host-monotonic and server time), which server timestamp it plays and the clock estimate. The format is in docs/sync.md')
            [CompletionResult]::new('--codec', '--codec', [CompletionResultType]::ParameterName, 'Codecs to advertise, in order of preference, comma-separated; the server streams the first it can produce. Opus is offered only at its rates (48000 Hz by default), FLAC only up to 96000 Hz')
            [CompletionResult]::new('--request-format', '--request-format', [CompletionResultType]::ParameterName, 'Send stream/request-format once per connection: CODEC[:RATE[:CHANNELS[:BITS]]], such as flac, opus:48000 or pcm:44100:2:16; empty fields keep the current value')
            [CompletionResult]::new('--request-format-after', '--request-format-after', [CompletionResultType]::ParameterName, 'Seconds after the connection''s first stream/start at which --request-format is sent (fractions allowed)')
            [CompletionResult]::new('--sample-rate', '--sample-rate', [CompletionResultType]::ParameterName, 'Only advertise this sample rate, in Hz [default: 48000 and 44100]')
            [CompletionResult]::new('--bit-depth', '--bit-depth', [CompletionResultType]::ParameterName, 'Only advertise this bit depth [default: 24 and 16]')
            [CompletionResult]::new('--channels', '--channels', [CompletionResultType]::ParameterName, 'Only advertise this channel count [default: 2]')
            [CompletionResult]::new('--buffer-capacity', '--buffer-capacity', [CompletionResultType]::ParameterName, 'Bytes of audio this player buffers ahead (buffer_capacity in client/hello)')
            [CompletionResult]::new('--volume', '--volume', [CompletionResultType]::ParameterName, 'Initial volume, 0 to 100; the gain is (volume/100)^3, so 50 is -18 dB')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Stop after this many seconds (fractions allowed), saying goodbye as on Ctrl-C. Without it, play runs until Ctrl-C, across streams and reconnections')
            [CompletionResult]::new('--connect-attempts', '--connect-attempts', [CompletionResultType]::ParameterName, 'Connection attempts before giving up when the server cannot be reached at start; retries wait 250 ms, doubling up to 10 s. Once connected, play reconnects until stopped')
            [CompletionResult]::new('--telemetry', '--telemetry', [CompletionResultType]::ParameterName, 'Publish this player''s connection, clock and buffer for `resonate monitor` on this loopback address (ws://ADDR/), with Prometheus metrics at http://ADDR/metrics; port 0 picks a free port')
            [CompletionResult]::new('--roles', '--roles', [CompletionResultType]::ParameterName, 'Roles to ask the server for, comma-separated: player plays audio, controller sends the group''s commands (the terminal UI''s keys), metadata shows what plays. Without player, play opens no audio output [default: player,controller,metadata; player alone with --dialect resonate]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log to PATH. While the terminal UI runs, the log goes here or nowhere')
            [CompletionResult]::new('--max-frame-bytes', '--max-frame-bytes', [CompletionResultType]::ParameterName, 'Maximum size of a WebSocket frame from the peer, in bytes. A larger frame closes the connection with code 1009')
            [CompletionResult]::new('--max-message-bytes', '--max-message-bytes', [CompletionResultType]::ParameterName, 'Maximum size of a WebSocket message from the peer, reassembled from its frames, in bytes. A larger message closes the connection with code 1009')
            [CompletionResult]::new('--handshake-timeout-ms', '--handshake-timeout-ms', [CompletionResultType]::ParameterName, 'Time allowed from the TCP connection until both hello messages are exchanged, in milliseconds')
            [CompletionResult]::new('--idle-timeout-ms', '--idle-timeout-ms', [CompletionResultType]::ParameterName, 'Time a peer may send nothing, not even a pong to a ping, before it is closed, in milliseconds. Pings go out every quarter of it, at most 5 s apart')
            [CompletionResult]::new('--pairing-token', '--pairing-token', [CompletionResultType]::ParameterName, 'Print this player''s Sendspin 1.0 pairing token (from the key pair and pairing PSK in --state-dir, created on first use) and exit. Give it to serve --pair-token to pair')
            [CompletionResult]::new('--no-mdns', '--no-mdns', [CompletionResultType]::ParameterName, 'With --listen, do not advertise over mDNS; servers must be given this player''s URL')
            [CompletionResult]::new('--list-devices', '--list-devices', [CompletionResultType]::ParameterName, 'List sound cards and exit')
            [CompletionResult]::new('--no-drift-correction', '--no-drift-correction', [CompletionResultType]::ParameterName, 'Play chunks back to back sample for sample instead of dropping or repeating single frames as the sound card''s clock drifts. Only a position error above 15 ms then moves playback. Useful for bit-exact recordings with --output wav:PATH')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print player events and a final report as JSON lines on stdout')
            [CompletionResult]::new('--no-tui', '--no-tui', [CompletionResultType]::ParameterName, 'Print status lines instead of drawing the terminal UI. The UI is drawn only when stdout is a terminal and --json is not given')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'resonate;discover' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Seconds to browse (fractions allowed) [default: 3, or until Ctrl-C with --watch]')
            [CompletionResult]::new('--interface', '--interface', [CompletionResultType]::ParameterName, 'Network interface to browse on, by name [default: every interface]')
            [CompletionResult]::new('--probe', '--probe', [CompletionResultType]::ParameterName, 'Connect to each endpoint, do the handshake and add its hello data, round trip and clock offset')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object per endpoint; with --watch, one JSON line per change')
            [CompletionResult]::new('--watch', '--watch', [CompletionResultType]::ParameterName, 'Keep browsing and print endpoints as they appear, change and leave, until Ctrl-C or --timeout')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'resonate;stress' {
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'Server to stress, ws://HOST[:PORT][/PATH]. Without it, stress starts an embedded server on a loopback port and also checks it for leaked sessions and tasks')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to stress, ws://HOST[:PORT][/PATH]. Without it, stress starts an embedded server on a loopback port and also checks it for leaked sessions and tasks')
            [CompletionResult]::new('--player', '--player', [CompletionResultType]::ParameterName, 'Player that waits for servers (`play --listen`) to stress, ws://HOST[:PORT][/PATH], port 8928 by default. Virtual servers dial it, stream to it, command it and drop it; each scenario has a form for players (described below)')
            [CompletionResult]::new('--scenario', '--scenario', [CompletionResultType]::ParameterName, 'Scenario to run; repeat for several, or `all` (described below)')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'How long each scenario starts new work, in seconds, 0.1 to 3600 (fractions allowed); rounds already started finish, so some scenarios run longer')
            [CompletionResult]::new('--clients', '--clients', [CompletionResultType]::ParameterName, 'Concurrent virtual clients per scenario')
            [CompletionResult]::new('--rate', '--rate', [CompletionResultType]::ParameterName, 'New sessions per second in the handshake storm [default: as fast as possible]')
            [CompletionResult]::new('--roles', '--roles', [CompletionResultType]::ParameterName, 'Roles of the handshake storm''s and fan-out''s clients: mixed draws every combination at random (fan-out then uses player alone), or a comma-separated list of player, controller, metadata, artwork')
            [CompletionResult]::new('--seed', '--seed', [CompletionResultType]::ParameterName, 'Seed of the random schedules; the same seed repeats the same run [default: from the clock]')
            [CompletionResult]::new('--bound', '--bound', [CompletionResultType]::ParameterName, 'Seconds the target has for what a check waits for, 0.1 to 600: replying to a hello, closing a session, dropping a slow consumer, starting audio')
            [CompletionResult]::new('--dialect', '--dialect', [CompletionResultType]::ParameterName, 'Wire dialect of the virtual clients: sendspin-v1, or resonate for legacy Resonate servers such as aioresonate 0.13 (default path /resonate)')
            [CompletionResult]::new('--server-telemetry', '--server-telemetry', [CompletionResultType]::ParameterName, 'Telemetry feed of the target server, ws://ADDR/ as `resonate serve --telemetry ADDR` prints it; after each scenario the run checks there that the server''s sessions, clients and tasks return to zero, and reports a leak when they do not')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log to this file while --tui owns the terminal [default: no log]')
            [CompletionResult]::new('--telemetry', '--telemetry', [CompletionResultType]::ParameterName, 'Publish the run for `resonate monitor` on this loopback address (ws://ADDR/): scenario markers, violations, counters and, with the embedded server, its sessions; Prometheus metrics at http://ADDR/metrics; port 0 picks a free port')
            [CompletionResult]::new('--tui', '--tui', [CompletionResultType]::ParameterName, 'Draw the monitor in this terminal during the run; it stays open after the run until q, then the report prints. Quitting early stops the run without a report. Logs go to --log-file, or nowhere')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the whole report as one JSON object on stdout')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'resonate;monitor' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Watch any Sendspin server, ours or not, at ws://HOST[:PORT][/PATH] (port 8927 and path /sendspin by default): the monitor joins it as a controller and metadata client and shows its group, metadata and the monitor''s own clock offset and round trip. A foreign server does not tell a client about other clients')
            [CompletionResult]::new('--dialect', '--dialect', [CompletionResultType]::ParameterName, 'Wire dialect of --server: sendspin-v1, or resonate for legacy servers (path /resonate by default)')
            [CompletionResult]::new('--interval', '--interval', [CompletionResultType]::ParameterName, 'Seconds between plain-text tables, 0.1 to 3600 (fractions allowed)')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log to this file [default: stderr with plain output; no log while the terminal UI runs, because it owns the terminal]')
            [CompletionResult]::new('--plain', '--plain', [CompletionResultType]::ParameterName, 'Print a plain-text table of sessions, groups and new events every --interval seconds instead of the terminal UI; chosen automatically when stdout is not a terminal')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
