"""The line protocol the evaluation parent speaks with its two children (sandboxed worker, trusted
checker): one JSON command per line on stdin, one JSON reply per line on a separate pipe, so nothing
a submission prints can pass for a reply. Standard library only: the worker imports it in the sandbox."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any


class CommandServer:
    """Serves commands until `exit` or end of input; a failing command answers ok=False, never dies."""

    def __init__(self, reply_fd: int) -> None:
        self._reply = os.fdopen(reply_fd, "w", buffering=1)

    def reply(self, **data: Any) -> None:
        self._reply.write(json.dumps(data) + "\n")
        self._reply.flush()

    def handlers(self) -> dict[str, Callable[..., None]]:
        raise NotImplementedError

    def describe_error(self, exc: Exception) -> str:
        return f"{type(exc).__name__}: {str(exc)[:1000]}"

    def serve(self) -> None:
        handlers = self.handlers()
        for line in sys.stdin:
            command = json.loads(line)
            op = command.pop("op")
            if op == "exit":
                break
            try:
                handlers[op](**command)
            except Exception as exc:
                self.reply(ok=False, error=self.describe_error(exc))

    def serve_and_exit(self) -> None:
        self.serve()
        # Skip interpreter teardown: a submission's atexit hooks or threads have nothing more to do.
        sys.stdout.flush()
        os._exit(0)
