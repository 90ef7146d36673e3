#!/usr/bin/env python3
"""Logit-verification calibration on a GPU at the scale of the default REFERENCE_MODEL.

Builds a model with Qwen2.5-0.5B's configuration (hidden 896, 24 layers, 14 heads, 2 KV heads,
intermediate 4864, vocabulary 151936) and random weights in code — no download, no tokenizer: the
challenges are drawn directly as token ids — then runs every calibration scenario of
`quasar.verification.calibrate` (honest: the same weights in the declared dtype, single, batched,
eager attention; dishonest: another seed, weight noise 0.1/1/10 %, int8 weights, shifted positions,
padded tokens; and another precision than declared) and prints the table, the thresholds suggested
from the honest spread, and the verification time per miner (the reference's teacher-forced replay).

    python scripts/gpu_calibrate.py [--challenges 8] [--budget-s 420]

Writes $OUT/gpu_calibration.json (or ./gpu_calibration.json without $OUT). Needs torch,
transformers and numpy only; runs in well under 8 minutes on one H100.

Random weights are not a trained model: the absolute numbers differ from Qwen2.5-0.5B-Instruct's.
They show how the honest spread grows with depth and vocabulary at this scale; operators re-run
`quasar verify calibrate --model Qwen/Qwen2.5-0.5B-Instruct --write FILE` on the real weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, nothing installed

import torch  # noqa: E402

from quasar.inference.model import LoadedModel  # noqa: E402
from quasar.verification.calibrate import (  # noqa: E402
    default_scenarios,
    format_table,
    judge,
    misclassified,
    run_calibration,
    suggest_thresholds,
)
from quasar.verification.thresholds import DEFAULT_THRESHOLDS  # noqa: E402
from quasar.verification.verifier import ChallengeSpec, Verifier  # noqa: E402

QWEN25_05B = {
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6,
}


def build_reference(seed: int, head_scale: float, device: torch.device) -> LoadedModel:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    fields = dict(QWEN25_05B)
    rope_theta = fields.pop("rope_theta")
    try:  # transformers 5 takes RoPE settings as rope_parameters, 4.x as rope_theta
        config = Qwen2Config(**fields, rope_parameters={"rope_type": "default", "rope_theta": rope_theta})
    except TypeError:
        config = Qwen2Config(**fields, rope_theta=rope_theta)
    # Separate output layer so scaling it leaves the embeddings alone (0.5B ties them; the
    # statistics do not depend on it).
    config.tie_word_embeddings = False
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        # Random init gives nearly flat next-token distributions; a trained model's are peaked.
        model.lm_head.weight.mul_(head_scale)
    model.eval()
    return LoadedModel(
        model=model, tokenizer=None, name="qwen2.5-0.5b-config-random", dtype=torch.float32, device=device
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--challenges", type=int, default=8, help="challenges per scenario")
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="stop starting scenarios after this long"
    )
    parser.add_argument("--head-scale", type=float, default=5.0, help="output-layer scale (logit spread)")
    parser.add_argument("--dtypes", default="float32,bfloat16,float16", help="declared dtypes to calibrate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print(
            "error: no CUDA device; this script calibrates on the GPU (use `quasar verify calibrate` on CPU)"
        )
        return 2
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference is plain fp32
    torch.backends.cudnn.allow_tf32 = False
    started = time.perf_counter()
    reference = build_reference(args.seed, args.head_scale, device)
    build_s = time.perf_counter() - started

    probe = torch.randint(0, QWEN25_05B["vocab_size"], (1, 64), device=device)
    with torch.inference_mode():
        logits = reference.model(input_ids=probe).logits[0].float()
    logit_std = float(logits.std(dim=-1).mean())
    top_p = float(logits.softmax(-1).max(-1).values.median())
    print(
        f"# {torch.cuda.get_device_name(device)}, torch {torch.__version__}, model built in {build_s:.1f} s; "
        f"logit std {logit_std:.2f}, median top-1 probability {top_p:.3f}",
        flush=True,
    )

    spec = ChallengeSpec(prompt_tokens=32, max_new_tokens=32, checked_positions=8)
    dtypes = tuple(d for d in args.dtypes.split(",") if d)
    scenarios = default_scenarios(reference, declared_dtypes=dtypes)
    deadline = started + args.budget_s
    outcomes = []
    for scenario in scenarios:
        if time.perf_counter() > deadline:
            print(f"# budget spent: skipping '{scenario.name}' and the rest", flush=True)
            break
        outcomes += run_calibration(
            reference,
            [scenario],
            challenges=args.challenges,
            spec=spec,
            progress=lambda row: print(row, flush=True),
        )

    current = misclassified(outcomes)
    suggested = suggest_thresholds(outcomes)
    judge(outcomes, Verifier(reference, {**DEFAULT_THRESHOLDS, **suggested}, spec=spec))
    with_suggested = misclassified(outcomes)
    honest_replay = [o.verify_ms for o in outcomes if o.honest]
    report = {
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "config": QWEN25_05B,
        "head_scale": args.head_scale,
        "logit_std": logit_std,
        "median_top1_probability": top_p,
        "challenges": args.challenges,
        "spec": vars(spec),
        "scenarios": [o.as_dict() for o in outcomes],
        "verify_ms_per_miner": sum(honest_replay) / max(1, len(honest_replay)),
        "misclassified_with_current": current,
        "thresholds": {d: t.as_dict() for d, t in suggested.items()},
        "misclassified_with_suggested": with_suggested,
        "total_s": time.perf_counter() - started,
    }
    out_dir = Path(os.environ.get("OUT", "."))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_calibration.json").write_text(json.dumps(report, indent=2) + "\n")

    print("\n# pass counts under the SUGGESTED thresholds")
    print(format_table(outcomes))
    print("\n# suggested thresholds (margin over the worst honest value)")
    for dtype, limits in suggested.items():
        print(f"  {dtype:9} {json.dumps(limits.as_dict())}")
    print(f"\n# misclassified with the current defaults: {current or 'none'}")
    print(f"# misclassified with the suggested thresholds: {with_suggested or 'none'}")
    print(
        f"# verification time per miner (teacher-forced replay, fp32): {report['verify_ms_per_miner']:.1f} ms"
    )
    print(f"# total {report['total_s']:.0f} s; JSON in {out_dir / 'gpu_calibration.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
