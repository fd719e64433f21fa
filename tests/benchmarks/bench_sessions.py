"""What carrying a PO conversation costs a worker: pack + save after an answer, load + unpack at start.

    python -m tests.benchmarks.bench_sessions [--transcript-mb 2]

A Claude Code-like session folder (one JSONL transcript of the given size, 20 spilled tool results),
through the local store and through S3 (moto, in process). Prints medians of 5; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from shared.sessions.local import LocalSessionStore
from worker_image.agents.base import SessionFiles
from worker_image.sessions import pack, unpack

RUNS = 5


def _session(root: Path, transcript_mb: float) -> SessionFiles:
    folder = root / "projects" / "-tmp-orchestrator-session-po-u1"
    (folder / "s1" / "tool-results").mkdir(parents=True)
    words = [
        f"{w}{n}" for w in ("deploy", "blog", "make", "test", "port", "the", "a", "commit") for n in range(50)
    ]
    pick = random.Random(7).choices  # words, not one repeated character: compresses like prose
    written, target = 0, int(transcript_mb * 1024 * 1024)
    with (folder / "s1.jsonl").open("w") as handle:
        while written < target:
            text = " ".join(pick(words, k=120))
            line = json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": text}]}})
            handle.write(line + "\n")
            written += len(line) + 1
    for i in range(20):
        (folder / "s1" / "tool-results" / f"t{i}.txt").write_text(f"output {i}\n" * 2000)
    return SessionFiles(folder)


def _median_ms(action: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transcript-mb", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = _session(root / "machine-1", args.transcript_mb)
        data = pack("claude-code", "s1", files)
        assert data is not None
        raw = sum(p.stat().st_size for p in files.root.rglob("*") if p.is_file())
        print(f"session folder {raw / 1e6:.2f} MB -> archive {len(data) / 1e6:.2f} MB")
        print(f"pack                {_median_ms(lambda: pack('claude-code', 's1', files)):8.1f} ms")
        target = SessionFiles(root / "machine-2" / "projects" / "-tmp-orchestrator-session-po-u1")
        print(
            f"unpack              {_median_ms(lambda: unpack(data, 'claude-code', lambda _sid: target)):8.1f} ms"
        )
        local = LocalSessionStore(root / "store")
        print(f"local save          {_median_ms(lambda: local.save('po/u1', data)):8.1f} ms")
        print(f"local load          {_median_ms(lambda: local.load('po/u1')):8.1f} ms")
        from moto import mock_aws

        with mock_aws():
            import boto3

            from shared.sessions.s3 import S3SessionStore

            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket="sessions")
            s3 = S3SessionStore("sessions", client=client)
            print(f"S3 save (moto)      {_median_ms(lambda: s3.save('po/u1', data)):8.1f} ms")
            print(f"S3 load (moto)      {_median_ms(lambda: s3.load('po/u1')):8.1f} ms")


if __name__ == "__main__":
    main()
