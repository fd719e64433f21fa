"""Cold import of the Telegram functions: the webhook's ack path vs the aiogram bot consumer.

    python -m tests.benchmarks.bench_telegram_import [--runs 5]

Each sample is a fresh interpreter importing one handler module; prints the medians in ms.
Asserts nothing about time (the unit suite asserts the webhook loads no aiogram).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

WEBHOOK = "functions.telegram_webhook.handler"
BOT_CONSUMER = "functions.telegram_bot.handler"


def cold_import_ms(module: str, runs: int = 5) -> float:
    """Median wall time of `import module` in `runs` fresh processes."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
        )
        samples.append(float(out.stdout.strip()) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"median cold import over {args.runs} fresh processes")
    for label, module in (("webhook ack path", WEBHOOK), ("bot consumer", BOT_CONSUMER)):
        print(f"  {label:<18} {module:<36} {cold_import_ms(module, args.runs):8.0f} ms")


if __name__ == "__main__":
    main()
