#!/usr/bin/env python3
"""Write a deterministic PCM WAV file for the peer interop tests.

Channel 0 carries a 997 Hz sine at half scale, so the file sounds like a tone
and survives resampling recognisably. Every other channel carries seeded
pseudo-random noise at a quarter of full scale, so no two frames of the file
are alike and a recording can be aligned to the source frame by frame.

Only the standard library is used, so any Python 3.8+ runs this script.

Example:
    python3 make_wav.py --out /tmp/tone.wav --seconds 2 --rate 48000 --channels 2 --bit-depth 16
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import wave

SINE_HZ = 997.0


def sample_max(bit_depth: int) -> int:
    """Return the largest positive sample value of signed PCM at `bit_depth`."""
    return (1 << (bit_depth - 1)) - 1


def generate_pcm(frames: int, rate: int, channels: int, bit_depth: int, seed: int) -> bytes:
    """Return interleaved little-endian signed PCM with the tone and noise described above."""
    width = bit_depth // 8
    full_scale = sample_max(bit_depth)
    state = seed & 0xFFFFFFFF or 1
    out = bytearray()
    for index in range(frames):
        for channel in range(channels):
            if channel == 0:
                value = round(0.5 * full_scale * math.sin(2.0 * math.pi * SINE_HZ * index / rate))
            else:
                # xorshift32: cheap, seeded and identical on every platform.
                state ^= (state << 13) & 0xFFFFFFFF
                state ^= state >> 17
                state ^= (state << 5) & 0xFFFFFFFF
                unit = state / 0xFFFFFFFF * 2.0 - 1.0
                value = round(0.25 * full_scale * unit)
            out += value.to_bytes(width, "little", signed=True)
    return bytes(out)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="path of the WAV file to write")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration in seconds (default 2)")
    parser.add_argument("--rate", type=int, default=48000, help="sample rate in Hz (default 48000)")
    parser.add_argument("--channels", type=int, default=2, help="channel count (default 2)")
    parser.add_argument(
        "--bit-depth",
        type=int,
        default=16,
        choices=(16, 24, 32),
        help="bits per sample, signed integer PCM (default 16)",
    )
    parser.add_argument("--seed", type=int, default=1, help="noise seed (default 1)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.channels <= 0 or args.seconds <= 0:
        parser.error("--rate, --channels and --seconds must be positive")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    frames = round(args.seconds * args.rate)
    pcm = generate_pcm(frames, args.rate, args.channels, args.bit_depth, args.seed)
    with wave.open(args.out, "wb") as wav:
        wav.setnchannels(args.channels)
        wav.setsampwidth(args.bit_depth // 8)
        wav.setframerate(args.rate)
        wav.writeframes(pcm)
    summary = {
        "event": "wav_written",
        "path": args.out,
        "frames": frames,
        "bytes": len(pcm),
        "format": {"sample_rate": args.rate, "channels": args.channels, "bit_depth": args.bit_depth},
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
