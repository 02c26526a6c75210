"""The error contract shared by every stage and the ``mammocad`` command line.

An *expected* failure is one the user can fix without reading code: a bad param, a bad
labels CSV, an unreachable API, an unusable output path, nothing usable in the inputs.
It is raised as :class:`ExpectedError` (or a subclass) whose message names the file, row
or key, and is reported as one line on stderr with a non-zero exit status. Anything else
is a bug and keeps its traceback. ``--debug`` on the command line or ``MAMMOCAD_DEBUG=1``
in the environment shows the traceback of expected failures too.

Termination signals are part of the contract: SIGTERM (a batch scheduler's stop) is turned
into :class:`Terminated`, a :class:`KeyboardInterrupt`, so that the cleanup code written
for Ctrl-C (flush state, remove temporary files) runs for both.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

#: Exit status of an expected failure.
EXIT_ERROR = 1
#: Exit status after SIGINT/SIGTERM: 128 + the signal number, as shells report it.
EXIT_SIGNAL = {signal.SIGINT: 128 + signal.SIGINT, signal.SIGTERM: 128 + signal.SIGTERM}


class ExpectedError(Exception):
    """A failure the user can fix; its message is the whole report (one line)."""

    def __str__(self) -> str:
        return " ".join(super().__str__().split())


class ParamsError(ExpectedError, ValueError):
    """A ``params.yaml`` value that cannot be used; the message names the dotted key."""


class InputError(ExpectedError, ValueError):
    """An input file (labels CSV, case descriptions …) that cannot be used, named with its row."""


class InputNotFound(ExpectedError, FileNotFoundError):
    """A file or folder the run needs does not exist; the message names it and its key."""

    def __str__(self) -> str:
        # FileNotFoundError formats errno-style arguments; ours are one message.
        return " ".join(" ".join(str(a) for a in self.args).split())


class OutputError(ExpectedError, OSError):
    """An output path that cannot be written (an existing file, a read-only folder)."""

    def __str__(self) -> str:
        return " ".join(" ".join(str(a) for a in self.args).split())


class Terminated(KeyboardInterrupt):
    """SIGTERM received: treated like Ctrl-C by every cleanup path."""


def debug_enabled() -> bool:
    """Whether expected failures should show their traceback (``MAMMOCAD_DEBUG=1``)."""
    return os.environ.get("MAMMOCAD_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def check_output_dir(path: str | os.PathLike, what: str) -> Path:
    """Checks that ``path`` can become (or already is) a writable folder, before any work.

    Args:
        path: the output folder.
        what: how the message names it, e.g. ``--out`` or ``data/raw``.

    Returns:
        The path.

    Raises:
        OutputError: if ``path`` is an existing file or a broken symbolic link (or lies
            under one), or it or its nearest existing parent is not a writable folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is an existing file, not a folder")
    probe = path
    while not probe.exists():
        if probe.is_symlink():  # a link to nowhere: neither a folder nor creatable as one
            raise OutputError(
                f"{what} {path}: {probe} is a symbolic link to {os.readlink(probe)}, "
                "which does not exist"
            )
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{what} {path}: {probe} is not a folder")
    try:  # os.access says yes to root everywhere: only a real write tells
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise OutputError(
            f"{what} {path}: cannot write in {probe} ({exc.strerror or exc})"
        ) from None
    return path


def check_output_file(path: str | os.PathLike, what: str) -> Path:
    """Checks that ``path`` can be written as a file, before any work.

    Raises:
        OutputError: if ``path`` is a folder, or its folder cannot be made or written
            (see :func:`check_output_dir`).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder, not a file")
    check_output_dir(path.parent, f"{what} {path}: its folder")
    return path


_TERM = {signal.SIGTERM}
_owners: list[int] = []  # processes inside sigterm_as_interrupt, innermost last
# The forking thread's signal mask from before the fork; per thread, as two threads may fork
# at once (a pool's worker-handler thread starts replacement workers).
_fork = threading.local()


def _block_sigterm_for_fork() -> None:
    _fork.mask = None
    if _owners and _owners[-1] == os.getpid():
        _fork.mask = signal.pthread_sigmask(signal.SIG_BLOCK, _TERM)


def _unblock_sigterm_in_parent() -> None:
    mask, _fork.mask = getattr(_fork, "mask", None), None
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _default_sigterm_in_child() -> None:
    mask, _fork.mask = getattr(_fork, "mask", None), None
    if mask is not None:
        # a SIGTERM sent to the new process so far is pending, not lost: the interpreter
        # clears the signals its handler caught before the fork finished. Ended now by
        # the default action, as any process is.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _owners.clear()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


os.register_at_fork(
    before=_block_sigterm_for_fork,
    after_in_parent=_unblock_sigterm_in_parent,
    after_in_child=_default_sigterm_in_child,
)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Raises :class:`Terminated` in the main thread on SIGTERM while the block runs.

    Processes forked inside the block (pool workers) get SIGTERM's default action back, so
    a pool that ends its workers with SIGTERM ends them as it would anywhere else. SIGTERM
    is blocked while the fork runs: one sent to the new process before it has reset its
    handler waits for the reset instead of being caught by the handler it inherited and
    then forgotten by the interpreter, which would leave the worker running.
    """
    owner = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != owner:  # forked by other means than os.fork: end quietly
            os._exit(128 + signal.SIGTERM)
        raise Terminated("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals to the caller
        yield
        return
    _owners.append(owner)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _owners.pop()


def report(prog: str, exc: BaseException, debug: bool | None = None) -> int:
    """Writes the one-line report of an expected failure or an interruption.

    Returns:
        The exit status to use.
    """
    if debug if debug is not None else debug_enabled():
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, KeyboardInterrupt):
        name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT (Ctrl-C)"
        sys.stderr.write(f"{prog}: stopped by {name}; rerun to resume\n")
        signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        return EXIT_SIGNAL[signum]
    sys.stderr.write(f"{prog}: error: {exc}\n")
    return EXIT_ERROR


def run_main(prog: str, main: Callable[[], object], debug: bool | None = None) -> int:
    """Runs ``main`` under the error contract; returns the exit status.

    Expected failures (:class:`ExpectedError`, and ``SystemExit`` with a message) and
    SIGINT/SIGTERM end in one line on stderr; other exceptions keep their traceback.
    """
    sys.stderr.flush()
    with sigterm_as_interrupt():
        try:
            result = main()
        except (ExpectedError, KeyboardInterrupt) as exc:
            return report(prog, exc, debug)
        except SystemExit as exc:
            if isinstance(exc.code, str):
                sys.stderr.write(f"{prog}: error: {' '.join(exc.code.split())}\n")
                return EXIT_ERROR
            return int(exc.code or 0)
    return int(result) if isinstance(result, int) else 0
