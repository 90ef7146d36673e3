"""Calibration: how far honest servers land from the reference, and how far dishonest ones do.

`quasar verify calibrate` (and `scripts/gpu_calibrate.py` on a GPU) runs every scenario below on
the same challenges, in-process — the same generation code the server runs, the same verifier, the
same wire encoding — and prints, per scenario, the worst value of each statistic and how many
challenges passed the current thresholds. Thresholds are then set as a margin over the honest
spread (:func:`suggest_thresholds`), and the table shows whether every dishonest scenario stays out.

Honest scenarios (must pass): the reference weights served in the declared dtype, one request at a
time, batched with other prompts (other matmul shapes), and with the other attention kernel
(eager vs SDPA). Dishonest ones (must fail): another model of the same architecture (another seed),
Gaussian noise on every weight at 0.1 %, 1 % and 10 % of the tensor's RMS, int8-quantized weights,
logits sent for shifted positions, and answers padded with made-up tokens. Serving a lower precision
than declared (bf16 while claiming fp32) is shown for information.

torch + transformers + numpy only: the GPU machine has nothing else.

    served.py     the served models: the reference in another dtype or kernel, noisy, quantized, reseeded
    scenarios.py  what each scenario serves, and the default list
    run.py        every scenario on the same challenges, judged under the thresholds
    outcomes.py   a scenario's outcome, the table it prints as, and which ones land on the wrong side
    suggest.py    thresholds from the honest spread
"""

from __future__ import annotations

from quasar.verification.calibrate.outcomes import ScenarioOutcome, format_row, format_table, misclassified
from quasar.verification.calibrate.run import judge, run_calibration
from quasar.verification.calibrate.scenarios import Scenario, default_scenarios, padding, serving, shifting
from quasar.verification.calibrate.served import add_weight_noise, clone_model, quantize_int8, reinitialised
from quasar.verification.calibrate.suggest import suggest_thresholds

__all__ = [
    "Scenario",
    "ScenarioOutcome",
    "add_weight_noise",
    "clone_model",
    "default_scenarios",
    "format_row",
    "format_table",
    "judge",
    "misclassified",
    "padding",
    "quantize_int8",
    "reinitialised",
    "run_calibration",
    "serving",
    "shifting",
    "suggest_thresholds",
]
