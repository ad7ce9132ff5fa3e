"""The student's side of bulk grading: a process loaded with one notebook's code.

``python -m coursekit.grading.worker`` is started by ``bulk`` in a session of its
own, one per submission. It talks through the pipes it was started with (the
``wire`` format); what the notebook prints goes nowhere. It

1. runs the code cells it is sent, in order, in a fresh IPython shell (magics
   work, errors are reported and do not stop the run), saying which cell runs;
2. then, for each graded item, evaluates the expressions the notebook's own
   check() call passed (``linear_backward``) and forks a child that answers the
   grader's calls to those functions (``student.serve``), in its own process
   group, with the autograd ban in force for hand-written items.

Nothing here decides a score: the grader (``bulk``) makes the inputs, computes
the references and compares, and reads only data from this process.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from typing import Any

# The notebook's own check() calls are not graded here (bulk grades every item itself): they
# return at once instead of forking a grading of their own.
BULK_WORKER_VARIABLE = "COURSEKIT_GRADING_BULK_WORKER"


def main() -> int:
    protocol_in, protocol_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    sys.stdout = io.StringIO()
    os.environ[BULK_WORKER_VARIABLE] = "1"
    # bulk grading interrupts a cell past its time limit with SIGINT: a KeyboardInterrupt in
    # the cell (see _run_cell); between cells, one that arrives late is ignored
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    import torch  # noqa: F401  (before the notebook, so its first cell is not charged for it)

    from coursekit.grading.wire import FrameReader, write_frame

    reader = FrameReader()

    def receive() -> tuple[dict, list] | None:
        while True:
            message = reader.next()
            if message is not None:
                return message
            chunk = os.read(protocol_in, 1 << 20)
            if not chunk:
                return None
            reader.feed(chunk)

    def send(header: dict) -> None:
        write_frame(protocol_out, header, [])

    shell = _shell()
    while True:
        message = receive()
        if message is None:
            return 0
        header, _ = message
        op = header.get("op")
        if op == "run":
            for number, source in header.get("cells", []):
                send({"op": "cell", "number": number})
                error = _run_cell(shell, source)
                if error:
                    send({"op": "cell-error", "number": number, "message": error})
            send({"op": "ran"})
        elif op == "item":
            _serve_item(shell, header, protocol_in, protocol_out, send, reader)
        elif op == "quit":
            return 0


def _shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance(colors="nocolor")
    shell.showtraceback = lambda *args, **kwargs: None  # errors are reported, not printed
    shell.showsyntaxerror = lambda *args, **kwargs: None
    return shell


def _run_cell(shell: Any, source: str) -> str:
    """Run one cell; "" if it ran, else "Name: message" of its error."""
    sys.stdout = sys.stderr = io.StringIO()  # what the notebook prints does not count
    # even when this process was started with SIGINT ignored (nohup, `&`)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = shell.run_cell(source, store_history=False, silent=True)
    except BaseException as err:  # SystemExit and KeyboardInterrupt from the cell included
        return f"{type(err).__name__}: {err}"
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stdout = sys.stderr = io.StringIO()
    error = result.error_before_exec or result.error_in_exec
    if error is None:
        return ""
    return f"{type(error).__name__}: {error}".strip().rstrip(":")


def _serve_item(
    shell: Any, header: dict, protocol_in: int, protocol_out: int, send, reader
) -> None:
    from coursekit.grading import guard
    from coursekit.grading.isolation import limit_memory
    from coursekit.grading.student import StudentServer, redirect_output, serve

    functions = []
    for expression in header.get("functions", []):
        try:
            fn = eval(expression, shell.user_ns)  # the notebook's own expression, in its process
        except BaseException as err:
            send({"op": "missing", "message": f"{expression}: {type(err).__name__}: {err}"})
            return
        if not callable(fn):
            send({"op": "missing", "message": f"{expression} is not a function"})
            return
        functions.append(fn)
    pid = os.fork()
    if pid == 0:  # the child answers the grader's calls, then exits
        code = 0
        try:
            with contextlib.suppress(OSError):
                os.setpgid(0, 0)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            captured = redirect_output()
            import gc

            import torch

            gc.freeze()
            gc.disable()
            torch.set_num_threads(1)
            limit_memory(header.get("memory"))
            hand_written = bool(header.get("hand_written"))
            ban = guard.install_for_good(header.get("library", [])) if hand_written else None
            server = StudentServer(functions, hand_written, ban)
            if reader.data:  # the grader speaks only after "forked": nothing is buffered
                code = 1
            else:
                serve(protocol_in, protocol_out, server, captured)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    send({"op": "forked", "pid": pid})
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    send({"op": "item-done"})


if __name__ == "__main__":
    sys.exit(main())
