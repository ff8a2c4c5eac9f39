"""Fork one child per task from a process that imported torch once; results come back pickled over a pipe.

The parent (qlint's own process, or the API caller's) never imports a user file: it only imports
torch and qlint (``preload``) so each fork starts warm, in milliseconds. A child:

- redirects its file descriptors 0, 1 and 2 (stdin from /dev/null, stdout and stderr to a private
  temporary file), so nothing user code prints, ``os.write(1, ...)`` or ``os.system`` reaches qlint's output;
- runs in its own process group, so a timeout kills what the user code started too;
- returns its value (pickled) over a pipe and leaves with ``os._exit`` (no atexit handlers of the parent);
- never garbage-collects what it inherited (``gc.freeze``): that is the parent's, and scanning it is slow.

A child that exits before sending, is killed by a signal, or runs past its timeout gives a ``Failure``
saying what is known (exit code or signal, the last line it wrote to stderr).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import pickle
import select
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

POLL_SECONDS = 0.05
TAIL_BYTES = 1 << 16
SENT = -2  # a _Running.status: the child sent its whole result and closed the pipe; it may still be exiting

_unreaped: list[int] = []  # children that sent their result, killed, not yet waited for


@dataclass
class Task:
    run: Callable[[], object]  # called in the child; its return value must pickle
    timeout: float


@dataclass(frozen=True)
class Failure:
    """The child gave no result: why, as a sentence fragment (``did not finish within 3 s``)."""

    reason: str
    timed_out: bool = False


class ChildError(Exception):
    """qlint itself raised in the child (not user code: that is a QL001 the child reports as data).

    Its message is the traceback's last line (all of it with ``QLINT_DEBUG`` set); ``details`` is all of it.
    """

    def __init__(self, details: str):
        lines = details.strip().splitlines() or ["(no traceback)"]
        super().__init__(details if os.environ.get("QLINT_DEBUG") else f"{lines[-1]} (in the process checking a file)")
        self.details = details


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def preload(modules: Sequence[str]) -> None:
    """Import ``modules`` in this process (never user code), so every child forked later has them.

    The cyclic collector is paused meanwhile: importing creates no garbage worth a pass, and each full
    pass over a half-imported torch rescans everything imported so far (a fifth of the import's time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class _Running:
    index: int
    pid: int
    fd: int
    output: object  # the temporary file holding the child's stdout and stderr
    deadline: float
    timeout: float
    chunks: list[bytes] = field(default_factory=list)
    eof: bool = False
    status: int | None = None


def run_tasks(tasks: Sequence[Task], jobs: int | None = None) -> list[object]:
    """Each task's value (or a Failure), in the order of ``tasks``, with at most ``jobs`` children at once.

    Raises ChildError when qlint's own code raised in a child.
    """
    _reap()
    jobs = max(1, jobs or usable_cores())
    results: list[object] = [None] * len(tasks)
    pending = list(range(len(tasks)))
    running: list[_Running] = []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                index = pending.pop(0)
                running.append(_start(index, tasks[index]))
            _wait(running)
            for child in [c for c in running if c.status is not None]:
                running.remove(child)
                results[child.index] = _result(child)
    finally:
        for child in running:  # interrupted (Ctrl-C): leave no child behind
            _kill(child)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)
            os.close(child.fd)
            child.output.close()
    errors = [r for r in results if isinstance(r, ChildError)]
    if errors:
        raise errors[0]
    return results


def _start(index: int, task: Task) -> _Running:
    output = tempfile.TemporaryFile(prefix="qlint-output-")
    read_fd, write_fd = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child(task, write_fd, output.fileno())
    os.close(write_fd)
    return _Running(index, pid, read_fd, output, time.monotonic() + task.timeout, task.timeout)


def _child(task: Task, write_fd: int, output_fd: int) -> None:
    code = 0
    try:
        # what the parent imported is never garbage here: keep the collector off it (a full collection over
        # torch's objects costs a few tenths of a second and copies every page it touches)
        gc.freeze()
        os.setpgid(0, 0)
        _die_with_parent()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        sys.stdin = open(0, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        with contextlib.suppress(Exception):
            import faulthandler

            faulthandler.enable(file=sys.stderr)  # a crash's report goes to the child's own output
        _single_threaded_torch()
        try:
            payload = pickle.dumps(("ok", task.run()), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:  # noqa: BLE001 - qlint's own failure: report it, do not die silently
            payload = pickle.dumps(("error", traceback.format_exc()))
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view) :]
        os.close(write_fd)  # the parent takes the result now, not after this process's teardown
    except BaseException:  # noqa: BLE001
        code = 70
    finally:
        os._exit(code)


def _single_threaded_torch() -> None:
    """One intra-op thread in the child. A parent that ran torch ops (the API's caller, a test) has an
    OpenMP pool that does not survive fork: the child's first parallel op would hang. One thread per
    child also suits ``--jobs`` children sharing the cores."""
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):
            torch.set_num_threads(1)


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when qlint dies (even by SIGKILL), so no check outlives its run."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(0)


def _wait(running: list[_Running]) -> None:
    """Read what the children sent; note the ones that ended; kill the ones past their deadline."""
    open_fds = [c.fd for c in running if not c.eof]
    if open_fds:
        ready, _, _ = select.select(open_fds, [], [], POLL_SECONDS)
    else:
        ready = []
        time.sleep(POLL_SECONDS / 5)
    now = time.monotonic()
    for child in running:
        if child.fd in ready:
            data = os.read(child.fd, 1 << 16)
            if data:
                child.chunks.append(data)
            else:
                child.eof = True
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        if pid:
            _drain(child)
            child.status = status
        elif child.eof and _sent(child):
            child.status = SENT  # reaped later: its exit (unmapping its memory) need not delay the run
        elif now > child.deadline:
            _kill(child)
            os.waitpid(child.pid, 0)
            child.chunks = []
            child.status = -1  # timed out


def _sent(child: _Running) -> bool:
    """The child closed the pipe after a whole result (a child that died mid-write left a torn one)."""
    try:
        pickle.loads(b"".join(child.chunks))
    except Exception:  # noqa: BLE001
        return False
    return True


def _reap() -> None:
    """Collect the exit status of children whose result came before their exit (no zombies stay)."""
    for pid in list(_unreaped):
        with contextlib.suppress(ChildProcessError):
            if not os.waitpid(pid, os.WNOHANG)[0]:
                continue
        _unreaped.remove(pid)


def _drain(child: _Running) -> None:
    """The child ended: take what is left in the pipe without waiting for processes it started."""
    os.set_blocking(child.fd, False)
    with contextlib.suppress(BlockingIOError):
        while data := os.read(child.fd, 1 << 16):
            child.chunks.append(data)


def _kill(child: _Running) -> None:
    for target in (-child.pid, child.pid):  # its process group (what user code started), then itself
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGKILL)


def _result(child: _Running) -> object:
    os.close(child.fd)
    _kill(child)  # background processes the user code left behind
    if child.status == SENT:
        _unreaped.append(child.pid)
        _reap()
    try:
        if child.status == -1:
            return Failure(f"did not finish within {child.timeout:g} s", timed_out=True)
        data = b"".join(child.chunks)
        if data:
            with contextlib.suppress(Exception):
                kind, value = pickle.loads(data)
                return ChildError(value) if kind == "error" else value
        return Failure(_death(child.status or 0) + _tail(child.output))
    finally:
        child.output.close()


def _death(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"the process checking it was killed by {name}"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return f"the process checking it exited (code {code}) before qlint had a result: the file's code ends the process"


def _tail(output: object) -> str:
    """What the child wrote last (or its "Fatal Python error: ..." line), as a suffix."""
    try:
        output.seek(0, os.SEEK_END)
        size = output.tell()
        output.seek(max(0, size - TAIL_BYTES))
        text = output.read().decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    fatal = [line for line in lines if line.startswith("Fatal Python error")]
    last = fatal[-1] if fatal else lines[-1]
    last = last if len(last) <= 160 else last[:157] + "..."
    return f"; its last output: {last!r}"
