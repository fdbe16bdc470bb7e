#!/usr/bin/env python3
"""Compare a recorded raw PCM file with the PCM of a WAV file, frame by frame.

The recording must be in the WAV file's format. The script finds where the
recording starts in the source by looking up its first frames (at most 64),
at frame boundaries only, and then checks that the whole recording equals the
source from that frame on. It prints one JSON line:

    {"event": "compare", "equal": bool, "offset_frames": N or null,
     "source_frames": N, "recorded_frames": N, "matched_frames": N,
     "missing_head_frames": N, "missing_tail_frames": N,
     "first_mismatch_frame": N or null}

"offset_frames" is the source frame the recording starts at (null when the
first frames occur nowhere in the source), "matched_frames" is how many frames
from there agree, and "missing_tail_frames" counts the source frames after the
end of the recording. Only the standard library is used.

Exit status: 0 when the recording equals a contiguous span of the source, 1
when it does not, 2 on invalid arguments or unreadable files.
"""

from __future__ import annotations

import argparse
import json
import sys
import wave

PROBE_FRAMES = 64


def find_offset(source: bytes, recorded: bytes, frame_bytes: int) -> int | None:
    """Return the first frame index at which the recording's opening frames occur in the source."""
    probe_frames = min(PROBE_FRAMES, len(recorded) // frame_bytes)
    if probe_frames == 0:
        return None
    probe = recorded[: probe_frames * frame_bytes]
    position = source.find(probe)
    while position != -1 and position % frame_bytes != 0:
        position = source.find(probe, position + 1)
    return None if position == -1 else position // frame_bytes


def count_matching_frames(source: bytes, recorded: bytes, frame_bytes: int) -> int:
    """Return how many leading frames of `recorded` equal those of `source`."""
    frames = min(len(source), len(recorded)) // frame_bytes
    for index in range(frames):
        start = index * frame_bytes
        if source[start : start + frame_bytes] != recorded[start : start + frame_bytes]:
            return index
    return frames


def compare(source: bytes, recorded: bytes, frame_bytes: int) -> dict[str, object]:
    source_frames = len(source) // frame_bytes
    recorded_frames = len(recorded) // frame_bytes
    offset = find_offset(source, recorded, frame_bytes)
    matched = 0
    if offset is not None:
        matched = count_matching_frames(source[offset * frame_bytes :], recorded, frame_bytes)
    start = offset or 0
    equal = (
        offset is not None
        and matched == recorded_frames
        and len(recorded) % frame_bytes == 0
    )
    return {
        "event": "compare",
        "equal": equal,
        "offset_frames": offset,
        "source_frames": source_frames,
        "recorded_frames": recorded_frames,
        "matched_frames": matched,
        "missing_head_frames": start,
        "missing_tail_frames": max(0, source_frames - start - recorded_frames),
        "first_mismatch_frame": None if equal or offset is None else matched,
        "trailing_partial_bytes": len(recorded) % frame_bytes,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare a recorded raw PCM file with a WAV file's PCM, frame by frame."
    )
    parser.add_argument("--wav", required=True, help="source WAV file")
    parser.add_argument("--pcm", required=True, help="recorded raw PCM in the WAV file's format")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        with wave.open(args.wav, "rb") as wav:
            frame_bytes = wav.getsampwidth() * wav.getnchannels()
            source = wav.readframes(wav.getnframes())
        with open(args.pcm, "rb") as pcm_file:
            recorded = pcm_file.read()
    except (OSError, EOFError, wave.Error) as error:
        print(f"compare_pcm: reading input failed: {error}", file=sys.stderr)
        return 2
    result = compare(source, recorded, frame_bytes)
    print(json.dumps(result), flush=True)
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
