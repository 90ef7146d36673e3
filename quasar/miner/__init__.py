"""The miner: a workspace checkout of the kernel, strategies that make it faster, commit–reveal submission.

``workspace`` (git checkout and branch), ``forge`` (GitHub fork or any remote, token-safe push),
``bench`` (the validators' harness in the validators' sandbox; ``candidate`` is its sandboxed side),
``strategies`` (tune, agent, manual), ``state`` (salt, payload and phase on disk), ``loop`` (the cycle),
``cli`` (``quasar miner``).
"""
