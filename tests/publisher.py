"""The `aggregator` command line in a process that a test holds, releases and kills at a chosen moment.

    python -m tests.publisher [--hold-in-copy MARKER] -- publish --snapshot URL --date YYYYMMDD

The process imports the command line, says `ready` on stdout and waits for a line on stdin before it runs, so
that a fault timed from that line lands in the command itself, not in Python's start-up. With `--hold-in-copy`
it creates MARKER in the middle of its first COPY and waits there until MARKER is removed (or it is killed).
`Publisher` is the test's side of it (a context manager: the process ends with the block).
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from aggregator import cli
from aggregator.store import encode

ROOT = Path(__file__).resolve().parent.parent


class Publisher:
    """`aggregator COMMAND...` with `env` added, started (Python's start-up overlaps what the test does meanwhile);
    `go()` lets it run."""

    def __init__(self, command: list[str], env: dict[str, str], hold_in_copy: Path | None = None) -> None:
        self.marker = hold_in_copy
        hold = ["--hold-in-copy", str(hold_in_copy)] if hold_in_copy else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.publisher", *hold, "--", *command],
            env=os.environ | env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def go(self) -> float:
        """Wait until it is ready, then let it run; when it was let go (time.monotonic)."""
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the publisher did not start: {self.finish()[2]}")
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        return time.monotonic()

    def wait_until_held(self, seconds: float = 120) -> None:
        """Wait for it to reach its hold in the COPY."""
        deadline = time.monotonic() + seconds
        while not self.marker.exists():
            assert self.process.poll() is None and time.monotonic() < deadline, "the publish never reached its COPY"
            time.sleep(0.05)

    def release(self) -> None:
        """Let it go on from its hold."""
        self.marker.unlink()

    def kill(self) -> None:
        self.process.kill()

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        """Wait for the end: exit code (negative: the signal), stdout, stderr. A publisher that has not ended by
        then is killed, and the test fails: after any fault it must end by itself."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            err = self.process.communicate()[1]
            raise AssertionError(f"the publisher hung: still running {timeout} s later\n{err}") from None
        return self.process.returncode, out, err

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *_) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def hold_in_copy(marker: Path) -> None:
    stream = encode._stream

    def held(*args):
        chunks = stream(*args)
        yield next(chunks)
        yield next(chunks)
        marker.touch()
        while marker.exists():  # the test kills us here, or restarts Postgres and lets us go on
            time.sleep(0.05)
        yield from chunks

    encode._stream = held


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold-in-copy", type=Path, metavar="MARKER")
    parser.add_argument("command", nargs="+", help="the aggregator command line, after --")
    args = parser.parse_args()
    if args.hold_in_copy:
        hold_in_copy(args.hold_in_copy)
    print("ready", flush=True)
    if sys.stdin.readline() != "go\n":
        return 1  # the test ended without letting it go
    return cli.main(args.command)


if __name__ == "__main__":
    sys.exit(main())
