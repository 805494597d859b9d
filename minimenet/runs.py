"""A run folder: its files, the lock that keeps a second training out of it, and the repairs a
resume makes after a kill (temporary files of an interrupted write, log rows past the checkpoint)."""
import json
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: run folders are not locked
    fcntl = None

from .plot import atomic_write

# The files of a run folder (besides .lock): a new run refuses a folder that holds any of them.
RUN_FILES = ("checkpoint.npz", "log.jsonl", "loss.png", "results.json", "predictions.png")


class RunFolderError(RuntimeError):
    """The run folder holds another run, or another training is using it."""


class RunLock:
    """An exclusive lock on a run folder (its .lock file) while a training uses it: a second
    training on the same folder is refused instead of overwriting the first one's files. The
    operating system drops the lock when the process ends, however it ends."""

    def __init__(self, run):
        self.path = Path(run) / ".lock"
        self.handle = None

    def __enter__(self):
        if fcntl is None:
            return self
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip()
            handle.close()
            raise RunFolderError(f"another training is using {self.path.parent}"
                                 f"{f' (process {owner})' if owner else ''}; wait for it to end, or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.close()  # releases the lock
            self.handle = None


def remove_temporary_files(run):
    """Temporary files left by a write that a kill interrupted (see plot.atomic_write)."""
    leftovers = [p for p in run.glob("*.tmp") if p.name.split(".tmp")[0].rsplit(".", 1)[0] in RUN_FILES]
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return leftovers


def truncate_log(log_path, iteration):
    """Keep the log rows up to ``iteration`` (the checkpoint's): the rows of the iterations after
    it are trained again on resume, and a row cut short by a kill is dropped."""
    if not log_path.exists():
        return 0
    kept, dropped = [], 0
    for line in log_path.read_text().splitlines():
        try:
            record = json.loads(line)
            keep = record["iteration"] <= iteration
        except (ValueError, TypeError, KeyError):
            keep = False
        if keep:
            kept.append(line + "\n")
        else:
            dropped += bool(line.strip())
    if dropped:
        atomic_write(log_path, lambda handle: handle.write("".join(kept).encode()), sync=True)
    return dropped
