"""Logit verification: does a miner's inference server really run the model it names? (DESIGN §4)

* `challenge` — prompt ids and checked positions drawn from a validator seed;
* `stats` — the comparison statistics (token agreement with a near-tie tolerance, cosine of centred
  logits, KL, top-k agreement, and the original's raw cosine / max-abs-diff);
* `thresholds` — per declared dtype, set from calibration;
* `verifier` — teacher-forced replay through the reference model and the verdict;
* `client` — calls a miner's server over HTTP (signed on a real chain) and verifies the answer;
* `calibrate` — measures honest noise against dishonest distance (`quasar verify calibrate`).

`challenge`, `stats`, `thresholds`, `result` and `verifier` need torch and numpy only, so the GPU
calibration script runs them without pydantic, FastAPI or bittensor; `client` and `cli` need those.
"""
