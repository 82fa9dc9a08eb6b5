"""`python tests/kill_at.py MOMENT -- ARGV...`: run `python -m compressm ARGV...`, SIGKILLing itself at MOMENT.

Moments (counted in this process only):
    step:K              on the K-th training step, before it runs (between evaluations)
    after_reduction:K   just after the K-th reduction attempt returns, before anything is written
    checkpoint_write:K  half-way through writing the K-th checkpoint (the temporary file is half written)
    record_write        after hsv.npz of the final record is written, before params.msgpack and metrics.json
"""

import os
import signal
import sys

from compressm import cli, compression, records, train


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _counting(function, k: int, before: bool):
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if before and len(calls) == k:
            _die()
        result = function(*args, **kwargs)
        if not before and len(calls) == k:
            _die()
        return result

    return wrapped


def _install(moment: str) -> None:
    name, _, k = moment.partition(":")
    if name == "step":
        train.train_step = _counting(train.train_step, int(k), before=True)
    elif name == "after_reduction":
        compression.compress = _counting(compression.compress, int(k), before=False)
    elif name in ("checkpoint_write", "record_write"):
        real, calls = records._atomic_write, []

        def atomic_write(path, data):
            if path.name == records.CHECKPOINT:
                calls.append(1)
                if name == "checkpoint_write" and len(calls) == int(k):
                    with open(path.with_name(f".{path.name}.tmp-{os.getpid()}"), "wb") as f:
                        f.write(data[: len(data) // 2])
                    _die()
            if name == "record_write" and path.name == "params.msgpack":
                _die()
            real(path, data)

        records._atomic_write = atomic_write
    else:
        raise SystemExit(f"unknown moment {moment!r}")


if __name__ == "__main__":
    moment, separator, *argv = sys.argv[1:]
    assert separator == "--"
    _install(moment)
    sys.exit(cli.main(argv))
