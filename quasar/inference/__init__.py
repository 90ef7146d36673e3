"""Serving a causal language model for logit verification: the miner's inference server (`server`,
served by `quasar inference`), loading, greedy generation with captured logits, and the wire
encoding of logits.

The submodules import torch/transformers only where they need them; `encoding` needs numpy alone,
so the verifier and the GPU calibration script can use it without the server's dependencies.
"""
