# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_resonate_global_optspecs
    string join \n v/verbose q/quiet h/help V/version
end

function __fish_resonate_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_resonate_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_resonate_using_subcommand
    set -l cmd (__fish_resonate_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c resonate -n "__fish_resonate_needs_command" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c resonate -n "__fish_resonate_needs_command" -s q -l quiet -d 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
complete -c resonate -n "__fish_resonate_needs_command" -s h -l help -d 'Print help'
complete -c resonate -n "__fish_resonate_needs_command" -s V -l version -d 'Print version'
complete -c resonate -n "__fish_resonate_needs_command" -f -a "serve" -d 'Stream an audio file to players, in sync'
complete -c resonate -n "__fish_resonate_needs_command" -f -a "play" -d 'Play a server\'s stream through the sound card, a WAV file or nothing'
complete -c resonate -n "__fish_resonate_needs_command" -f -a "discover" -d 'Find servers and players on the local network over mDNS'
complete -c resonate -n "__fish_resonate_needs_command" -f -a "stress" -d 'Storm a server with virtual clients and report every protocol or lifecycle violation'
complete -c resonate -n "__fish_resonate_needs_command" -f -a "monitor" -d 'Watch a telemetry feed: sessions, clock sync, groups and events in a terminal UI, or as plain text'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l tone -d 'Play a generated test signal after the SOURCEs, or alone' -r -f -a "sine\t'A 440 Hz sine at -12 dBFS, 48000 Hz stereo'
click\t'A 1 ms click at the start of every second, for checking sync by ear or in recordings'"
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l stdin-format -d 'Play raw PCM read from stdin, little-endian signed, in this format: RATE:CHANNELS:BITS such as 48000:2:16 (16, 24 or 32 bits). A live stream: controllers can play, stop, change volume and mute, and switch, but not pause, skip, repeat or shuffle' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l listen -d 'Address and port to listen on. Use 0.0.0.0:8927 to accept players from the network' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l path -d 'WebSocket path to accept connections on' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l dialect -d 'Wire dialect of clients on --path: sendspin (Sendspin 1.0, encrypted with Noise) or sendspin-v1 (cleartext only). With sendspin, --accept-v1 also takes cleartext v1 clients on the same path' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l approve -d 'Give roles and playback to this unpaired client (its client_id, a base64url public key) from now on. The approval is kept in the state directory until --revoke, or until a pairing with that client discards it. Repeatable' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l revoke -d 'Revoke the stored approval of this unpaired client; repeatable' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l unpair -d 'Unpair this paired client: when it next connects on its pairing record, it is sent server/unpair, and both sides drop the record (the client connects unpaired from then on). Kept in the state directory until then. Repeatable' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l pair-token -d 'Pair with the client whose pairing token (SP:0..., printed by play --pairing-token) this is, when it next connects; repeatable. The request is kept in the state directory until the client pairs (serve clients --cancel-pairing drops it), and a client that is already paired is left as it is' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l rekey-interval -d 'Rotate the keys of each Sendspin 1.0 session every SECONDS with an in-band re-handshake on the PSK that keys it [default: never]' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l state-dir -d 'Directory of the server\'s Sendspin 1.0 identity (its key pair, whose public key is the server_id) and pairing records; created on first use, files readable by the owner only [default: $XDG_STATE_HOME/resonate, or ~/.local/state/resonate]' -r -F
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l name -d 'Friendly server name sent in server/hello' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l server-id -d 'Server identifier sent in server/hello [default: resonate-HOSTNAME]' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l repeat -d 'What follows the end of a track: the next one (off), the same one (one), or, after the last one, the first (all); controllers can change it' -r -f -a "off\t'Play the queue once'
one\t'Play the current track over and over'
all\t'Start the queue over after its last track'"
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l grouping -d 'How players are placed in groups' -r -f -a "shared\t'All players join one group and play the source in sync'
solo\t'Each client gets its own group, which starts the source when it joins'"
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l group-name -d 'Name of the shared group' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l group -d 'Put the listed clients in a group of this name, with its own queue and timeline, instead of the group --grouping gives them: NAME=CLIENT_ID,CLIENT_ID; repeat for more groups. Controllers move clients between groups with the switch command' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l lead-ms -d 'How far ahead of real time audio is sent, in milliseconds (also bounded by each player\'s buffer_capacity)' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l start-delay-ms -d 'Delay from the start of playback until the first sample sounds, in milliseconds; players need about 400 ms to sync their clocks' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l codec -d 'Stream this codec to every player, even one that prefers or offers another (for testing players) [default: each player\'s first producible format]' -r -f -a "pcm\t'Uncompressed PCM'
flac\t'Lossless FLAC, one frame per chunk (16 or 24 bits, up to 96000 Hz)'
opus\t'Lossy Opus, 20 ms packets (48000, 24000, 16000, 12000 or 8000 Hz, 1 or 2 channels)'"
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l opus-bitrate -d 'Opus target bitrate in bits per second, 500 to 512000 [default: the libopus default, about 99000 for 48 kHz stereo]' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l client -d 'Connect to a player that waits for servers, at ws://HOST[:PORT][/PATH] (port 8928 and path /sendspin by default); repeat for more players. The server redials it after a `restart` goodbye or a lost connection' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l interface -d 'Network interface for mDNS, by name [default: loopback only when --listen is a loopback address, else every interface]' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l log-file -d 'Append the log to this file while --tui owns the terminal [default: no log]' -r -F
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l telemetry -d 'Publish sessions, groups and events for `resonate monitor` on this loopback address (ws://ADDR/), with Prometheus metrics at http://ADDR/metrics; port 0 picks a free port' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l demo-seconds -d 'Length of the demonstration in seconds' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l demo-players -d 'Number of in-process players in the demonstration' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l max-frame-bytes -d 'Maximum size of a WebSocket frame from the peer, in bytes. A larger frame closes the connection with code 1009' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l max-message-bytes -d 'Maximum size of a WebSocket message from the peer, reassembled from its frames, in bytes. A larger message closes the connection with code 1009' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l handshake-timeout-ms -d 'Time allowed from the TCP connection until both hello messages are exchanged, in milliseconds' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l idle-timeout-ms -d 'Time a peer may send nothing, not even a pong to a ping, before it is closed, in milliseconds. Pings go out every quarter of it, at most 5 s apart' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l outbound-queue -d 'Messages queued for one session before it counts as a slow consumer and is closed with code 1008' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l max-sessions -d 'Sessions open at once, counting handshakes in progress; further connections get HTTP 503' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l max-pending-handshakes -d 'WebSocket handshakes in progress at once; further connections are closed unread' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l max-messages-per-second -d 'Frames a client may send per second, with a burst of as many; a client above it is closed with code 1008' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l write-timeout-ms -d 'Time one write to a session\'s socket may take, in milliseconds. A session whose write takes longer is closed as a slow consumer with code 1008' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l late-audio-ms -d 'How far past its play time an audio chunk may be when it reaches a session\'s socket, in milliseconds. A later chunk closes the session as a slow consumer with code 1008' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l send-buffer-bytes -d 'Kernel send buffer of each server socket, in bytes (Linux doubles the value). It bounds how much audio a peer that stops reading can hide in the kernel' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l legacy -d 'Also accept legacy Resonate clients (aioresonate 0.13) at /resonate, in the same groups as Sendspin clients, and advertise _resonate-server._tcp over mDNS'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l accept-v1 -d 'Also accept cleartext Sendspin v1 clients, recognized by their first message'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l allow-unpaired -d 'Give roles and playback to every unpaired client that offers unpaired access'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l loop -d 'Start the queue over after its last track instead of ending the stream; the same as --repeat all'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l shuffle -d 'Play the queue in random order; controllers can turn it off'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l no-mdns -d 'Neither advertise this server over mDNS nor browse for players that wait for servers'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l tui -d 'Draw the monitor in this terminal while serving; quitting it (q) stops the server. Logs go to --log-file, or nowhere'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l json -d 'Print server events as JSON lines on stdout'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -l demo -d 'Run a self-contained demonstration: serve a generated tone on a random loopback port to in-process players with null outputs, then print a sync report. Needs no file, sound card or network'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -s q -l quiet -d 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -s V -l version -d 'Print version'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -a "pair" -d 'Pair one Sendspin 1.0 player with this server, by the code it shows or its pairing token, then exit. Paired players are admitted by serve --dialect sendspin with the same --state-dir'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and not __fish_seen_subcommand_from pair clients" -a "clients" -d 'List the Sendspin 1.0 clients in this server\'s state directory (paired, approved, to unpair, to pair), after applying the changes given, then exit. A serve running on the same --state-dir closes the affected clients\' sessions within a second, and they connect again under the new terms'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from pair" -l listen -d 'Address and port to wait for the player on' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from pair" -l path -d 'WebSocket path to accept the player on' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from pair" -l code -d 'The player\'s static pairing code (8 digits, such as 1234-5678); without it, serve pair prompts on the terminal for the code the player shows' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from pair" -l token -d 'Pair by the player\'s pairing token (SP:0..., printed by play pair) instead of a code' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from pair" -l method -d 'Pairing method to start on a player that offers codes' -r -f -a "auto\t'A dynamic code when the player offers one, else its static code'
static\t'The player\'s fixed 8-digit code, such as 1234-5678'
dynamic\t'A 6-digit code the player derives for this pairing and shows or speaks'"
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from pair" -l timeout -d 'Seconds to wait for a player to connect and finish pairing' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from pair" -l state-dir -d 'Directory of the server\'s identity and pairing records, as for serve [default: $XDG_STATE_HOME/resonate, or ~/.local/state/resonate]' -r -F
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from pair" -l name -d 'Friendly server name sent in server/hello' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from pair" -l json -d 'Print events as JSON lines on stdout'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from pair" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from pair" -s q -l quiet -d 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from pair" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from pair" -s V -l version -d 'Print version'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from clients" -l approve -d 'Give roles and playback to this unpaired client (its client_id, a base64url public key) from now on. The approval is kept in the state directory until --revoke, or until a pairing with that client discards it. Repeatable' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from clients" -l revoke -d 'Revoke the stored approval of this unpaired client; repeatable' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from clients" -l unpair -d 'Unpair this paired client: when it next connects on its pairing record, it is sent server/unpair, and both sides drop the record (the client connects unpaired from then on). Kept in the state directory until then. Repeatable' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from clients" -l pair-token -d 'Pair with the client whose pairing token this is (SP:0..., printed by play --pairing-token). A running serve closes the client\'s session, and the next connection pairs by the token. Repeatable' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from clients" -l pair-code -d 'Pair with a client by its static pairing code, given as CLIENT_ID=CODE (the code has 8 digits, such as 1234-5678), when it next connects with its pairing window open (resonate play pair --server URL). Repeatable' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from clients" -l cancel-pairing -d 'Drop the pairing request (--pair-token or --pair-code) of this client; repeatable' -r
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from clients" -l state-dir -d 'Directory of the server\'s identity and pairing records, as for serve [default: $XDG_STATE_HOME/resonate, or ~/.local/state/resonate]' -r -F
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from clients" -l json -d 'Print the list as one JSON object on stdout'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from clients" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from clients" -s q -l quiet -d 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from clients" -s h -l help -d 'Print help'
complete -c resonate -n "__fish_resonate_using_subcommand serve; and __fish_seen_subcommand_from clients" -s V -l version -d 'Print version'
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -s s -l server -d 'Server URL, ws://HOST[:PORT][/PATH]; port 8927 and path /sendspin by default. Without --server and --listen, play looks for a server over mDNS, preferring the one that last played here' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l dialect -d 'Wire dialect: sendspin (Sendspin 1.0, encrypted with Noise), sendspin-v1 (cleartext), or resonate for legacy Resonate servers (aioresonate 0.13.2), whose default path is /resonate [default: sendspin. When a server that play dials closes the connection before sending server/init, play dials it again in sendspin-v1. Over mDNS, Sendspin servers are preferred to legacy Resonate ones]' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l state-dir -d 'Directory of this player\'s Sendspin 1.0 identity (its key pair, whose public key is the client_id) and pairing records; created on first use, files readable by the owner only [default: $XDG_STATE_HOME/resonate, or ~/.local/state/resonate]' -r -F
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l suite -d 'Noise cipher suite of Sendspin 1.0 connections: 25519_ChaChaPoly_SHA256 or 25519_AESGCM_SHA256' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l listen -d 'Wait for servers to connect instead of dialing one: listen on ADDR:PORT [default when given without a value: 0.0.0.0:8928] at /sendspin and advertise _sendspin._tcp over mDNS. When a second server connects, the protocol\'s rules pick the one to keep' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l interface -d 'Network interface for mDNS, by name [default: loopback only for a loopback --listen address, else every interface]' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l search-timeout -d 'Without --server or --listen, seconds to look for a server over mDNS before giving up (fractions allowed). The last-played server is taken as soon as it appears. Otherwise play gathers responses for 3 s (or until the first one, if later) and takes the first server by instance name' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l state-file -d 'File that keeps the id of the server that last played here [default: $XDG_STATE_HOME/resonate/last-played-CLIENT_ID.json, or under ~/.local/state]' -r -F
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -s o -l output -d 'Where audio goes: default (the default sound card), device:NAME, wav:PATH (writes exactly what would be played) or null' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l device -d 'Sound card to play on, by name (see --list-devices); same as --output device:NAME' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l client-id -d 'Client identifier, kept across restarts so the server recognizes this player; two players with one id replace each other [default: resonate-play-HOSTNAME-OUTPUT]' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l name -d 'Friendly player name sent in client/hello [default: the host name]' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l static-delay-ms -d 'Extra delay added to every chunk\'s play time, in milliseconds; negative plays earlier' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l sink-drift-ppm -d 'Clock error of the simulated sound card behind --output wav:PATH and null, in ppm, -2000 to 2000; positive plays faster. The player corrects it by dropping or repeating single frames' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l sink-latency-ms -d 'Output latency of the simulated sound card behind --output wav:PATH and null, in milliseconds, 0 to 1000 (fractions allowed). Each block is rendered this long before it is heard' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l sync-log -d 'Write one JSON line per output block to PATH. Each line gives when the block\'s first frame is heard (local, host-monotonic and server time), which server timestamp it plays and the clock estimate. The format is in docs/sync.md' -r -F
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l codec -d 'Codecs to advertise, in order of preference, comma-separated; the server streams the first it can produce. Opus is offered only at its rates (48000 Hz by default), FLAC only up to 96000 Hz' -r -f -a "pcm\t'Uncompressed PCM'
flac\t'Lossless FLAC, one frame per chunk (16 or 24 bits, up to 96000 Hz)'
opus\t'Lossy Opus, 20 ms packets (48000, 24000, 16000, 12000 or 8000 Hz, 1 or 2 channels)'"
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l request-format -d 'Send stream/request-format once per connection: CODEC[:RATE[:CHANNELS[:BITS]]], such as flac, opus:48000 or pcm:44100:2:16; empty fields keep the current value' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l request-format-after -d 'Seconds after the connection\'s first stream/start at which --request-format is sent (fractions allowed)' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l sample-rate -d 'Only advertise this sample rate, in Hz [default: 48000 and 44100]' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l bit-depth -d 'Only advertise this bit depth [default: 24 and 16]' -r -f -a "16\t''
24\t''
32\t''"
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l channels -d 'Only advertise this channel count [default: 2]' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l buffer-capacity -d 'Bytes of audio this player buffers ahead (buffer_capacity in client/hello)' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l volume -d 'Initial volume, 0 to 100; the gain is (volume/100)^3, so 50 is -18 dB' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l duration -d 'Stop after this many seconds (fractions allowed), saying goodbye as on Ctrl-C. Without it, play runs until Ctrl-C, across streams and reconnections' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l connect-attempts -d 'Connection attempts before giving up when the server cannot be reached at start; retries wait 250 ms, doubling up to 10 s. Once connected, play reconnects until stopped' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l telemetry -d 'Publish this player\'s connection, clock and buffer for `resonate monitor` on this loopback address (ws://ADDR/), with Prometheus metrics at http://ADDR/metrics; port 0 picks a free port' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l roles -d 'Roles to ask the server for, comma-separated: player plays audio, controller sends the group\'s commands (the terminal UI\'s keys), metadata shows what plays. Without player, play opens no audio output [default: player,controller,metadata; player alone with --dialect resonate]' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l log-file -d 'Append the log to PATH. While the terminal UI runs, the log goes here or nowhere' -r -F
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l max-frame-bytes -d 'Maximum size of a WebSocket frame from the peer, in bytes. A larger frame closes the connection with code 1009' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l max-message-bytes -d 'Maximum size of a WebSocket message from the peer, reassembled from its frames, in bytes. A larger message closes the connection with code 1009' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l handshake-timeout-ms -d 'Time allowed from the TCP connection until both hello messages are exchanged, in milliseconds' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l idle-timeout-ms -d 'Time a peer may send nothing, not even a pong to a ping, before it is closed, in milliseconds. Pings go out every quarter of it, at most 5 s apart' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l pairing-token -d 'Print this player\'s Sendspin 1.0 pairing token (from the key pair and pairing PSK in --state-dir, created on first use) and exit. Give it to serve --pair-token to pair'
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l no-mdns -d 'With --listen, do not advertise over mDNS; servers must be given this player\'s URL'
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l list-devices -d 'List sound cards and exit'
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l no-drift-correction -d 'Play chunks back to back sample for sample instead of dropping or repeating single frames as the sound card\'s clock drifts. Only a position error above 15 ms then moves playback. Useful for bit-exact recordings with --output wav:PATH'
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l json -d 'Print player events and a final report as JSON lines on stdout'
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -l no-tui -d 'Print status lines instead of drawing the terminal UI. The UI is drawn only when stdout is a terminal and --json is not given'
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -s q -l quiet -d 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -s V -l version -d 'Print version'
complete -c resonate -n "__fish_resonate_using_subcommand play; and not __fish_seen_subcommand_from pair" -f -a "pair" -d 'Show this player\'s Sendspin 1.0 pairing token and static pairing code; with --server, also connect and wait for that server to pair, then exit'
complete -c resonate -n "__fish_resonate_using_subcommand play; and __fish_seen_subcommand_from pair" -s s -l server -d 'Server to pair with, ws://HOST[:PORT][/PATH]; port 8927 and path /sendspin by default' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and __fish_seen_subcommand_from pair" -l code -d 'Set this player\'s static pairing code to CODE (8 digits, such as 1234-5678) and keep it in --state-dir. By default a random code is made on first use' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and __fish_seen_subcommand_from pair" -l window -d 'Seconds the pairing window stays open: how long play pair waits for the server to start pairing' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and __fish_seen_subcommand_from pair" -l state-dir -d 'Directory of this player\'s identity, pairing PSK, static code and pairing records, as for play [default: $XDG_STATE_HOME/resonate, or ~/.local/state/resonate]' -r -F
complete -c resonate -n "__fish_resonate_using_subcommand play; and __fish_seen_subcommand_from pair" -l suite -d 'Noise cipher suite: 25519_ChaChaPoly_SHA256 or 25519_AESGCM_SHA256' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and __fish_seen_subcommand_from pair" -l name -d 'Player name sent in client/hello [default: the host name]' -r
complete -c resonate -n "__fish_resonate_using_subcommand play; and __fish_seen_subcommand_from pair" -l json -d 'Print events as JSON lines on stdout'
complete -c resonate -n "__fish_resonate_using_subcommand play; and __fish_seen_subcommand_from pair" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c resonate -n "__fish_resonate_using_subcommand play; and __fish_seen_subcommand_from pair" -s q -l quiet -d 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
complete -c resonate -n "__fish_resonate_using_subcommand play; and __fish_seen_subcommand_from pair" -s h -l help -d 'Print help'
complete -c resonate -n "__fish_resonate_using_subcommand play; and __fish_seen_subcommand_from pair" -s V -l version -d 'Print version'
complete -c resonate -n "__fish_resonate_using_subcommand discover" -l timeout -d 'Seconds to browse (fractions allowed) [default: 3, or until Ctrl-C with --watch]' -r
complete -c resonate -n "__fish_resonate_using_subcommand discover" -l interface -d 'Network interface to browse on, by name [default: every interface]' -r
complete -c resonate -n "__fish_resonate_using_subcommand discover" -l probe -d 'Connect to each endpoint, do the handshake and add its hello data, round trip and clock offset'
complete -c resonate -n "__fish_resonate_using_subcommand discover" -l json -d 'Print one JSON object per endpoint; with --watch, one JSON line per change'
complete -c resonate -n "__fish_resonate_using_subcommand discover" -l watch -d 'Keep browsing and print endpoints as they appear, change and leave, until Ctrl-C or --timeout'
complete -c resonate -n "__fish_resonate_using_subcommand discover" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c resonate -n "__fish_resonate_using_subcommand discover" -s q -l quiet -d 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
complete -c resonate -n "__fish_resonate_using_subcommand discover" -s h -l help -d 'Print help'
complete -c resonate -n "__fish_resonate_using_subcommand discover" -s V -l version -d 'Print version'
complete -c resonate -n "__fish_resonate_using_subcommand stress" -s s -l server -d 'Server to stress, ws://HOST[:PORT][/PATH]. Without it, stress starts an embedded server on a loopback port and also checks it for leaked sessions and tasks' -r
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l player -d 'Player that waits for servers (`play --listen`) to stress, ws://HOST[:PORT][/PATH], port 8928 by default. Virtual servers dial it, stream to it, command it and drop it; each scenario has a form for players (described below)' -r
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l scenario -d 'Scenario to run; repeat for several, or `all` (described below)' -r
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l duration -d 'How long each scenario starts new work, in seconds, 0.1 to 3600 (fractions allowed); rounds already started finish, so some scenarios run longer' -r
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l clients -d 'Concurrent virtual clients per scenario' -r
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l rate -d 'New sessions per second in the handshake storm [default: as fast as possible]' -r
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l roles -d 'Roles of the handshake storm\'s and fan-out\'s clients: mixed draws every combination at random (fan-out then uses player alone), or a comma-separated list of player, controller, metadata, artwork' -r
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l seed -d 'Seed of the random schedules; the same seed repeats the same run [default: from the clock]' -r
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l bound -d 'Seconds the target has for what a check waits for, 0.1 to 600: replying to a hello, closing a session, dropping a slow consumer, starting audio' -r
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l dialect -d 'Wire dialect of the virtual clients: sendspin-v1, sendspin (Sendspin 1.0, unpaired, so the server must admit unpaired clients as serve --allow-unpaired does), or resonate for legacy Resonate servers such as aioresonate 0.13 (default path /resonate)' -r
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l server-telemetry -d 'Telemetry feed of the target server, ws://ADDR/ as `resonate serve --telemetry ADDR` prints it; after each scenario the run checks there that the server\'s sessions, clients and tasks return to zero, and reports a leak when they do not' -r
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l log-file -d 'Append the log to this file while --tui owns the terminal [default: no log]' -r -F
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l telemetry -d 'Publish the run for `resonate monitor` on this loopback address (ws://ADDR/): scenario markers, violations, counters and, with the embedded server, its sessions; Prometheus metrics at http://ADDR/metrics; port 0 picks a free port' -r
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l tui -d 'Draw the monitor in this terminal during the run; it stays open after the run until q, then the report prints. Quitting early stops the run without a report. Logs go to --log-file, or nowhere'
complete -c resonate -n "__fish_resonate_using_subcommand stress" -l json -d 'Print the whole report as one JSON object on stdout'
complete -c resonate -n "__fish_resonate_using_subcommand stress" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c resonate -n "__fish_resonate_using_subcommand stress" -s q -l quiet -d 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
complete -c resonate -n "__fish_resonate_using_subcommand stress" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c resonate -n "__fish_resonate_using_subcommand stress" -s V -l version -d 'Print version'
complete -c resonate -n "__fish_resonate_using_subcommand monitor" -l server -d 'Watch any Sendspin server, ours or not, at ws://HOST[:PORT][/PATH] (port 8927 and path /sendspin by default): the monitor joins it as a controller and metadata client and shows its group, metadata and the monitor\'s own clock offset and round trip. A foreign server does not tell a client about other clients' -r
complete -c resonate -n "__fish_resonate_using_subcommand monitor" -l dialect -d 'Wire dialect of --server: sendspin-v1, sendspin (Sendspin 1.0, as an unpaired client with a new key whose client_id the monitor shows, which the server must approve), or resonate for legacy servers (path /resonate by default)' -r
complete -c resonate -n "__fish_resonate_using_subcommand monitor" -l interval -d 'Seconds between plain-text tables, 0.1 to 3600 (fractions allowed)' -r
complete -c resonate -n "__fish_resonate_using_subcommand monitor" -l log-file -d 'Append the log to this file [default: stderr with plain output; no log while the terminal UI runs, because it owns the terminal]' -r -F
complete -c resonate -n "__fish_resonate_using_subcommand monitor" -l plain -d 'Print a plain-text table of sessions, groups and new events every --interval seconds instead of the terminal UI; chosen automatically when stdout is not a terminal'
complete -c resonate -n "__fish_resonate_using_subcommand monitor" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c resonate -n "__fish_resonate_using_subcommand monitor" -s q -l quiet -d 'Less output (-q: errors only and no status lines, -qq: nothing but the final error)'
complete -c resonate -n "__fish_resonate_using_subcommand monitor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c resonate -n "__fish_resonate_using_subcommand monitor" -s V -l version -d 'Print version'
