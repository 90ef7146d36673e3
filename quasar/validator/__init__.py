"""The validator neuron: claim evaluation jobs, evaluate them, post results, set weights on chain.

Modules, in the order a job meets them:

* ``lease``: keeps a claimed job's lease alive with heartbeats on a thread while it is evaluated.
* ``worker``: one job on one device: the sandboxed evaluation, then logit verification, as a result.
* ``posting``: posts a result (idempotent, retried) and spools it on disk until the API has it.
* ``weights``: every tempo (and whenever a round is finalized) reads ``/v1/weights`` and sets them.
* ``loop``: one worker thread per device plus the weight setter; ``cli`` is ``quasar validator``.
"""
