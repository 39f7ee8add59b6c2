"""Several processes (``jax.distributed``) for ``jaxdiff train`` and ``jaxdiff sample``.

The options: ``--coordinator HOST:PORT --num-processes N --process-id I`` (the same command
on every host, each with its own ``--process-id``), or ``--distributed`` alone, which lets
`jax.distributed.initialize` read them from the environment (SLURM, Open MPI, TPU pods, ...).

`run` initializes ``jax.distributed`` before the command's work and makes the processes end
together:

- success: every process waits for the others at a final barrier (process 0 may still be
  writing its files), then all exit with status 0;
- failure: the process that fails (an error of the command, an exception) prints its error,
  posts it to the coordination service and exits with its status; a thread in every other
  process is waiting for such a post, prints ``jaxdiff CMD: error: process P of N failed:
  ...`` and exits with status 1 at once, wherever its main thread is (compiling, or blocked
  in a collective with the process that failed). Without this, the others would wait in
  their next collective until JAX's heartbeat or shutdown timeouts (minutes) abort them.

A process that dies without a word (killed) is left to JAX: the coordination service notices
the missing heartbeats (``HEARTBEAT_TIMEOUT_S``) and stops the others.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator

from ._common import describe_os_error, int_at_least, nonnegative_int

#: seconds: how long a process waits at the final barrier for the others to finish, how long
#: the coordination service waits for a silent process before stopping the others, and how
#: long processes wait for each other to start
DONE_TIMEOUT_S = 24 * 3600
HEARTBEAT_TIMEOUT_S = 100
INIT_TIMEOUT_S = 300
#: seconds process 0 (the coordination service) waits, after a failure, for the others to
#: read it before it exits
GRACE_S = 5

_runs = itertools.count()  # commands run in this process (keys of the coordination service)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a command that can run on several hosts."""
    group = parser.add_argument_group(
        "several hosts (jax.distributed)",
        "run the same command on every host; the devices of all of them form one data-parallel "
        "mesh, process 0 writes the outputs (a run directory must be on a file system all hosts "
        "share)",
    )
    group.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        default=None,
        help="address of process 0, where the coordination service listens",
    )
    group.add_argument(
        "--num-processes", type=int_at_least(1), default=None, metavar="N", help="processes"
    )
    group.add_argument(
        "--process-id",
        type=nonnegative_int,
        default=None,
        metavar="I",
        help="this process's rank, 0 .. N-1",
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="initialize jax.distributed from the environment (SLURM, Open MPI, TPU pods, or "
        "JAX_COORDINATOR_ADDRESS); the three options above override it",
    )


def requested(args: argparse.Namespace) -> bool:
    """Whether the command line asks for several processes."""
    return args.distributed or any(
        getattr(args, name) is not None for name in ("coordinator", "num_processes", "process_id")
    )


def problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the options (before anything starts), or None."""
    given = {
        "--coordinator": args.coordinator,
        "--num-processes": args.num_processes,
        "--process-id": args.process_id,
    }
    missing = [flag for flag, value in given.items() if value is None]
    if not args.distributed and 0 < len(missing) < len(given):
        return (
            f"{', '.join(missing)} missing: give --coordinator, --num-processes and "
            "--process-id together, or --distributed"
        )
    if args.coordinator is not None:
        host, _, port = args.coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            return f"--coordinator must be HOST:PORT, got {args.coordinator!r}"
    if (
        args.num_processes is not None
        and args.process_id is not None
        and args.process_id >= args.num_processes
    ):
        return f"--process-id {args.process_id} must be < --num-processes {args.num_processes}"
    return None


def initialize(args: argparse.Namespace) -> str | None:
    """Initializes ``jax.distributed`` from the options (a second command in the same process
    reuses the first one's); returns an error message or None."""
    import jax

    if jax.distributed.is_initialized():
        return None
    try:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
            initialization_timeout=INIT_TIMEOUT_S,
            heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
        )
    except Exception as err:  # a bad address, a timeout, an environment with nothing to detect
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return f"cannot initialize jax.distributed: {first}"
    return None


def is_primary() -> bool:
    """Whether this is process 0 (the one that writes; True without jax.distributed)."""
    import jax

    return jax.process_index() == 0


def run(name: str, args: argparse.Namespace, body: Callable[[argparse.Namespace], int]) -> int:
    """Runs ``body(args)``, the command's work, in every process of a ``jax.distributed`` run
    when the options ask for one (then the processes end together: see the module), or just
    runs it. Returns the exit status (a failing process does not return: it exits)."""
    from ._common import fail

    if not requested(args):
        return body(args)
    error = problem(args) or initialize(args)
    if error:
        return fail(name, error)
    with _Together(name) as together:
        together.agree(args)
        status = body(args)
        if status:
            together.abort(status, together.last_error or f"exit status {status}")
    return 0


def options(args: argparse.Namespace) -> dict[str, str]:
    """The options of a command line that every process must share (all but --process-id)."""
    return {
        k: str(v)
        for k, v in sorted(vars(args).items())
        if not k.startswith("_") and k != "process_id"
    }


def differences(mine: dict[str, str], theirs: dict[str, str], other: int) -> list[str]:
    """``--steps 2 here, 3 in process 1`` for each option that differs."""
    return [
        f"--{k.replace('_', '-')} {mine.get(k)} here, {theirs.get(k)} in process {other}"
        for k in sorted(set(mine) | set(theirs))
        if mine.get(k) != theirs.get(k)
    ]


class _Together(contextlib.AbstractContextManager):
    """The processes of one command end together (see the module)."""

    def __init__(self, name: str):
        import jax
        from jax._src import distributed  # the coordination service's client (as orbax uses)

        self.name = name
        self.client = distributed.global_state.client
        if self.client is None:
            raise RuntimeError("jax.distributed is not initialized")
        self.me = jax.process_index()
        self.count = jax.process_count()
        self.prefix = f"jaxdiff/{name}/{next(_runs)}"
        self.last_error: str | None = None
        self._stderr = sys.stderr
        self._exiting = threading.Lock()

    def key(self, what: str) -> str:
        return f"{self.prefix}/{what}"

    # ------------------------------------------------------------------------ context

    def __enter__(self) -> _Together:
        sys.stderr = _LastError(self._stderr, f"jaxdiff {self.name}: error: ", self)
        threading.Thread(target=self._watch, name="jaxdiff-watchdog", daemon=True).start()
        return self

    def __exit__(self, kind, err, tb) -> None:
        sys.stderr = self._stderr
        if err is None:
            self._finish()
            return
        if isinstance(err, SystemExit):
            status = err.code if isinstance(err.code, int) else 1
            message = f"exit status {status}"
        elif isinstance(err, KeyboardInterrupt):
            message, status = "interrupted", 130
            print(f"jaxdiff {self.name}: {message}", file=sys.stderr)
        elif isinstance(err, OSError):
            message, status = describe_os_error(err), 2
            print(f"jaxdiff {self.name}: error: {message}", file=sys.stderr)
        else:
            traceback.print_exception(kind, err, tb)
            message, status = f"{kind.__name__}: {err}", 1
        self.abort(status, message)

    def agree(self, args: argparse.Namespace) -> None:
        """Fails (every process) unless all processes were given the same options (but their
        --process-id): otherwise they would run different programs and wait for each other
        forever."""
        mine = options(args)
        self.client.key_value_set(self.key(f"options/{self.me}"), json.dumps(mine))
        for other in range(self.count):
            if other == self.me:
                continue
            key = self.key(f"options/{other}")
            theirs = json.loads(self.client.blocking_key_value_get(key, INIT_TIMEOUT_S * 1000))
            differ = differences(mine, theirs, other)
            if differ:
                message = f"the processes must run the same command: {'; '.join(differ)}"
                print(f"jaxdiff {self.name}: error: {message}", file=self._stderr)
                self.abort(2, message)

    # ------------------------------------------------------------------------ endings

    def _finish(self) -> None:
        """Success: waits for every process at the final barrier; then stops the watchdogs."""
        try:
            self.client.wait_at_barrier(self.key("done"), DONE_TIMEOUT_S * 1000)
        except Exception as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            print(
                f"jaxdiff {self.name}: error: the other processes did not finish ({reason})",
                file=sys.stderr,
            )
            self.abort(1, "did not see the other processes finish")
        if self.me == 0:  # wakes every watchdog: nothing more can fail together
            self._post(json.dumps({"done": True}))

    def abort(self, status: int, message: str) -> None:
        """This process failed (its error already printed): tells the others, exits."""
        self._post(json.dumps({"process": self.me, "status": status, "message": message}))
        self._exit(status)

    def _post(self, value: str) -> None:
        with contextlib.suppress(Exception):  # another process posted first
            self.client.key_value_set(self.key("failed"), value)

    def _exit(self, status: int) -> None:
        with self._exiting:  # the main thread and the watchdog may both get here
            for stream in (sys.stdout, sys.stderr, self._stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            with contextlib.suppress(Exception):
                self.client.key_value_set(self.key(f"exited/{self.me}"), "1")
            if self.me == 0:  # the service lives here: let the others read the failure first
                for other in range(1, self.count):
                    with contextlib.suppress(Exception):
                        self.client.blocking_key_value_get(
                            self.key(f"exited/{other}"), GRACE_S * 1000
                        )
            os._exit(status)  # not sys.exit: JAX's shutdown would wait for the others

    def _watch(self) -> None:
        """The watchdog thread: waits for a failure posted by another process."""
        while True:
            try:
                value = self.client.blocking_key_value_get(self.key("failed"), 600_000)
                break
            except Exception as err:
                if "DEADLINE_EXCEEDED" in str(err):
                    continue
                return  # the client shut down: the process is ending anyway
        post = json.loads(value)
        if post.get("done") or post.get("process") == self.me:
            return
        print(
            f"jaxdiff {self.name}: error: process {post['process']} of {self.count} failed: "
            f"{post['message']}",
            file=self._stderr,
        )
        self._exit(1)


class _LastError:
    """stderr, remembering the last line of the command's one-line errors (``jaxdiff CMD:
    error: ...``), the message the other processes print when this one fails."""

    def __init__(self, stream, prefix: str, owner: _Together):
        self._stream = stream
        self._prefix = prefix
        self._owner = owner

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.startswith(self._prefix):
                self._owner.last_error = line[len(self._prefix) :]
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def together(name: str) -> Iterator[_Together]:
    """The ending of `run` for a script's own code in a ``jax.distributed`` run (already
    initialized): an exception in one process ends every process at once, with its message."""
    with _Together(name) as session:
        yield session
