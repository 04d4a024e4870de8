"""Run a producer generator in a child process, one stage ahead of its consumer (pipeline parallelism).

``otsentry run`` spends about as long decoding captures into feature windows as it does scoring them; with two
cores, the child decodes group n+1 while the parent scores group n. Items cross a bounded queue (memory stays
flat), in order, so the consumer sees exactly what the generator would have given in-process. An exception in the
child is raised again in the parent (the same type and message when it can be pickled, so a ``CaptureError``
still ends the CLI in one line). Closing the iterator early, or the parent dying, stops the child.

The child is forked: it inherits the loaded modules (no second start-up), and nothing it does touches the parent's
state. Where fork is not available the generator runs in-process; ``default_jobs`` uses a child only on Linux with
two or more CPUs.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
import queue
import sys
import traceback
from typing import Any, Callable, Iterator, TypeVar

from otsentry.errors import OtsentryError

__all__ = ["PrefetchError", "default_jobs", "prefetched", "usable_cpus"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_DONE = "done"
_ITEM = "item"
_ERROR = "error"
_POLL_S = 1.0  # how often a blocked side checks that the other one is still alive
_JOIN_TIMEOUT_S = 5.0


class PrefetchError(OtsentryError, RuntimeError):
    """The child failed with an exception that could not be sent back as is (its traceback is the message)."""


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_jobs() -> int:
    """Two processes on Linux with two CPUs to run them; one otherwise (macOS's system libraries are not safe to
    use after fork, and a single CPU would only take turns)."""
    return 2 if sys.platform.startswith("linux") and usable_cpus() >= 2 else 1


def prefetched(produce: Callable[..., Iterator[T]], *args: Any, depth: int = 3,
               started: Callable[[int], None] | None = None) -> Iterator[T]:
    """The items of ``produce(*args)``, computed in a forked child up to ``depth`` items ahead of the caller.

    ``started(pid)`` is called with the child's pid once it runs (a caller forwarding signals to it)."""
    if "fork" not in mp.get_all_start_methods():
        yield from produce(*args)
        return
    ctx = mp.get_context("fork")
    items = ctx.Queue(maxsize=max(1, depth))
    child = ctx.Process(target=_child, args=(items, os.getpid(), produce, args), daemon=True,
                        name="otsentry-prefetch")
    child.start()
    if started is not None and child.pid is not None:
        started(child.pid)
    finished = False
    try:
        while True:
            kind, payload = _get(items, child)
            if kind == _ITEM:
                yield payload
            elif kind == _DONE:
                finished = True
                return
            else:
                finished = True
                raise _rebuild(payload)
    finally:
        _stop(child, items, finished)


def _get(items: Any, child: Any) -> tuple[str, Any]:
    """The next message; a child that died without saying why (killed, out of memory) is an error, not a hang."""
    while True:
        try:
            return items.get(timeout=_POLL_S)
        except queue.Empty:
            if not child.is_alive():
                try:
                    return items.get(timeout=0.1)  # its last words may still be in the pipe
                except queue.Empty:
                    return _ERROR, (None, f"the window process ended unexpectedly (exit code {child.exitcode})")


def _child(items: Any, parent_pid: int, produce: Callable[..., Iterator[Any]], args: tuple) -> None:
    _die_with_parent()
    orphaned = False

    def put(message: tuple[str, Any]) -> bool:
        nonlocal orphaned
        while True:
            try:
                items.put(message, timeout=_POLL_S)
                return True
            except queue.Full:
                if os.getppid() != parent_pid:  # orphaned: nobody will read what is left
                    orphaned = True
                    return False

    try:
        for item in produce(*args):
            if not put((_ITEM, item)):
                return
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent, which decides
        put((_ERROR, (_picklable(exc), traceback.format_exc())))
    else:
        put((_DONE, None))
    finally:
        if orphaned:  # the queue's feeder thread would wait forever to write into a pipe nobody reads
            items.cancel_join_thread()
        items.close()
        items.join_thread()


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent dies (best effort; elsewhere the put loop notices)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _picklable(exc: BaseException) -> BaseException | None:
    try:
        return pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure means: send the traceback text instead
        return None


def _rebuild(payload: tuple[BaseException | None, str]) -> BaseException:
    exc, text = payload
    log.debug("the window process failed:\n%s", text)
    if exc is not None:
        return exc
    return PrefetchError(text.strip().splitlines()[-1] if text.strip() else "the window process failed")


def _stop(child: Any, items: Any, finished: bool) -> None:
    """Bounded: a child still producing (the consumer stopped early) is terminated, then killed."""
    if finished:
        child.join(_JOIN_TIMEOUT_S)  # it has said its last word and is only closing its end of the queue
    if child.is_alive():
        child.terminate()
    child.join(_JOIN_TIMEOUT_S)
    if child.is_alive():
        child.kill()
        child.join(_JOIN_TIMEOUT_S)
    items.cancel_join_thread()
    items.close()
