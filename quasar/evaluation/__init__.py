"""Evaluating untrusted submissions: fetch, sandbox, sandboxed worker, trusted checker, verdict.

Modules, in the order an evaluation uses them:

* ``fetch``: the miner's ``(repo_url, commit_sha)`` into a fresh directory (URL policy, pinning, limits).
* ``sandbox``: run a command with no network, a scrubbed environment, one writable scratch dir and
  limits on time, memory, processes, files and output.
* ``worker``: runs inside the sandbox; imports the submission and runs it as the parent directs.
* ``checker``: recomputes every checked output from the seeds with the trusted reference; never
  imports submission code.
* ``evaluate``: ties them together into one report; ``cli`` is the ``quasar evaluate`` command.

This package's ``__init__`` imports nothing: the worker and checker run in the sandbox, where only
torch, triton, the standard library and ``quasar.bench``/``quasar.kernels`` are used.
"""
