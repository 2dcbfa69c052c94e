"""`run.py` servers forked from a process that imported the server once: a start without
the ~1.5 s of CPU (2-4 s on a loaded 2-core box) that importing it costs each interpreter.

`python -m testkit.preimported FD` imports run.py and the modules its start needs (no thread
is running after them: checked), then, for each request on the socket FD, forks a child
that runs `run.main(argv)` with that request's environment, working directory and output
pipe, exactly as `python -u run.py ARGV` would after its imports; it reaps its children
and writes each one's exit status to that child's status pipe. `PreimportedProcess` is
the test's side: a `subprocess.Popen` whose pid is that child's (signals go to it
directly, SIGKILL included) and whose poll/wait read the status pipe. Used by
`testkit.processes.start_server(..., preimported=True)`; not for what checks the
interpreter's own start (command line, `python run.py`'s exit path: `run_py`).
"""

from __future__ import annotations

import array
import atexit
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# What run.main imports before and while serving (run.py's function-level imports).
PREIMPORTS = ("run", "uvloop", "rooms.db", "server.app", "server.core.bootstrap",
              "server.core.data_lock", "server.core.migrate", "server.core.passwords",
              "server.core.tls")


def _recv_request(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    fds = array.array("i")
    data, ancdata, _, _ = sock.recvmsg(1 << 20, socket.CMSG_LEN(3 * fds.itemsize))
    while data and not data.endswith(b"\n"):  # a long environment may come in pieces
        more = sock.recv(1 << 20)
        if not more:
            return None
        data += more
    if not data:
        return None
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    request: dict[str, Any] = json.loads(data)
    return request, list(fds)


def _child(request: dict[str, Any], output: int, errors: int) -> None:
    """In the forked child: become `python -u run.py ARGV` (or `python -u -m MODULE ARGV`)
    past its imports; never returns."""
    code: int = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(errors, 2)
        for fd in {null, output, errors}:
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        encoding = sys.stdout.encoding if sys.stdout else "utf-8"
        # The standard streams on the new descriptors, unbuffered as `python -u` has them.
        sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                                     encoding)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding,
                                      write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding,
                                      "backslashreplace", write_through=True)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        module = request.get("module")
        try:
            if module:  # as -m: sys.argv[0] the module's file, run as __main__
                import runpy
                sys.argv = ["-m", *request["argv"]]
                runpy.run_module(module, run_name="__main__", alter_sys=True)
                code = 0
            else:
                import run
                sys.argv = ["run.py", *request["argv"]]
                code = run.main(request["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - as the interpreter: the traceback, status 1
            import traceback
            traceback.print_exc()
            code = 1
        # The interpreter's own exit: non-daemon threads joined, atexit run, output flushed.
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def serve(control: socket.socket) -> None:
    statuses: dict[int, int] = {}  # child pid -> its status pipe's write end
    # SIGCHLD wakes the loop (any byte on `wake`); its handler does nothing else.
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        ready, _, _ = select.select([control, wake_r], [], [], 1.0)
        if wake_r in ready:
            try:
                wake_r.recv(4096)
            except BlockingIOError:
                pass
        while statuses:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            fd = statuses.pop(pid, None)
            if fd is not None:
                os.write(fd, str(os.waitstatus_to_exitcode(status)).encode())
                os.close(fd)
        if control in ready:
            got = _recv_request(control)
            if got is None:
                return  # the test process is gone or done: its servers are its to stop
            request, (output, errors, status_w) = got
            pid = os.fork()
            if pid == 0:
                os.close(status_w)
                control.close()
                wake_r.close()
                signal.set_wakeup_fd(-1)
                wake_w.close()
                for fd in statuses.values():
                    os.close(fd)
                _child(request, output, errors)
            os.close(output)
            os.close(errors)
            statuses[pid] = status_w
            control.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    sys.path.insert(0, str(ROOT))
    import importlib
    for name in PREIMPORTS:
        importlib.import_module(name)
    if threading.active_count() != 1:  # forking with threads running could deadlock a child
        raise SystemExit(f"preimported: threads after the imports: {threading.enumerate()}")
    control.sendall(b'{"ready": true}\n')
    serve(control)


class Zygote:
    """The forking process of this test process (one, started at its first use)."""

    _lock = threading.Lock()
    _one: Zygote | None = None

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "testkit.preimported", str(theirs.fileno())],
            cwd=ROOT, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        self.sock = ours
        self.reader = ours.makefile("rb")
        line = self.reader.readline()
        if not line:
            raise RuntimeError("testkit.preimported did not start")
        atexit.register(self.close)

    def close(self) -> None:
        """End it (its children are their tests' to stop) and reap it, so that its CPU, and
        its children's, is counted as this process's children's."""
        self.reader.close()  # the socket's descriptor stays open while its file is
        self.sock.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @classmethod
    def get(cls) -> Zygote:
        if cls._one is None or cls._one.process.poll() is not None:
            cls._one = Zygote()
        return cls._one

    @classmethod
    def fork(cls, argv: list[str], env: dict[str, str], cwd: Path, output: int,
             status: int, errors: int | None = None, module: str | None = None) -> int:
        with cls._lock:
            zygote = cls.get()
            message = json.dumps({"argv": argv, "env": env, "cwd": str(cwd),
                                  "module": module}).encode() + b"\n"  # its end
            fds = [output, output if errors is None else errors, status]
            zygote.sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                             array.array("i", fds))])
            answer = zygote.reader.readline()
            if not answer:
                raise RuntimeError("testkit.preimported ended")
            return int(json.loads(answer)["pid"])


class PreimportedProcess(subprocess.Popen[str]):
    """`python -u run.py ARGV` forked from the preimported process, stdout and stderr on one
    text pipe (`stdout`), as start_server's Popen had them."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path,
                 output: int | None = None, module: str | None = None) -> None:
        """`output`: a descriptor for stdout and stderr instead of the `stdout` pipe;
        `module`: `python -u -m module ARGV` instead of run.py."""
        # Popen's own __init__ would start a process: only what its methods read is set.
        out_r, out_w = os.pipe() if output is None else (None, output)
        status_r, status_w = os.pipe()
        try:
            pid = Zygote.fork(argv, env, cwd, out_w, status_w, module=module)
        finally:
            if output is None:
                os.close(out_w)
            os.close(status_w)
        self.args = [sys.executable, "-u", *(["-m", module] if module else ["run.py"]),
                     *argv]
        self.pid = pid
        self.returncode: Any = None
        self.stdin = None
        self.stderr = None
        self.stdout = None if out_r is None else open(out_r, encoding=None)  # noqa: SIM115 - Popen's text pipe, its to close
        self.text_mode = True
        self._status = status_r
        self._waitpid_lock = threading.Lock()
        self._sigint_wait_secs = 0.25
        self._closed_child_pipe_fds = True
        self._child_created = True
        self._communication_started = False
        self._input = None
        self.universal_newlines = True
        self.encoding = None
        self.errors = None
        self.pipesize = -1

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._status], [], [], 0)[0]:
            self._read_status()
        return self.returncode  # type: ignore[no-any-return]

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if select.select([self._status], [], [], left)[0]:
                self._read_status()
            elif deadline is not None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode  # type: ignore[no-any-return]

    def _read_status(self) -> None:
        data = os.read(self._status, 64)
        os.close(self._status)
        # No status: the preimported process died before reaping this child.
        self.returncode = int(data) if data else -signal.SIGKILL

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def __del__(self) -> None:
        pass


def run_module(module: str, *args: str, env: dict[str, str], cwd: Path = ROOT,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`subprocess.run([python, "-m", module, *args], capture_output=True, text=True, ...)`,
    forked from the preimported process: for tests of a command's behaviour (its output and
    status), not of the interpreter starting it."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    status_r, status_w = os.pipe()
    try:
        pid = Zygote.fork(list(args), env, cwd, out_w, status_w, errors=err_w, module=module)
    finally:
        for fd in (out_w, err_w, status_w):
            os.close(fd)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    deadline = time.monotonic() + timeout
    try:
        for fds in ([out_r, err_r], [status_r]):  # both outputs to their end, then the status
            while fds:
                left = deadline - time.monotonic()
                ready = select.select(fds, [], [], max(0.0, left))[0]
                if not ready:
                    os.kill(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired([sys.executable, "-m", module, *args],
                                                    timeout)
                for fd in ready:
                    if fd == status_r:
                        status = os.read(fd, 64)
                        fds.remove(fd)
                    elif data := os.read(fd, 1 << 16):
                        chunks[fd].append(data)
                    else:
                        fds.remove(fd)
    finally:
        for fd in (out_r, err_r, status_r):
            os.close(fd)
    encoding = io.text_encoding(None)
    text = {fd: io.TextIOWrapper(io.BytesIO(b"".join(parts)), encoding).read()
            for fd, parts in chunks.items()}
    return subprocess.CompletedProcess([sys.executable, "-m", module, *args],
                                       int(status) if status else -signal.SIGKILL,
                                       text[out_r], text[err_r])


if __name__ == "__main__":
    main()
