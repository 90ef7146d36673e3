"""`/metrics` on the API, the inference server and the validator, with the named series.

Real servers on loopback ports: the API (from the shared fixtures), the inference server on a tiny
model, and the validator's metrics server fed by the validator's own JobRunner.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from quasar.config import Settings
from quasar.metrics import serve_validator_metrics, validator_metrics
from quasar.schemas import Job
from quasar.validator.worker import Device, JobRunner
from tests.integration.conftest import launch

pytestmark = pytest.mark.timeout(180)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serving(app: Any) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample, matched by name and a subset of its labels."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


def test_api_metrics_count_and_time_by_route_and_status(tmp_path: Path) -> None:
    api = launch("sqlite", tmp_path / "api", None, validators=1, miners=1)
    try:
        assert api.get("/v1/info").status_code == 200
        assert api.get("/v1/rounds/424242").status_code == 404
        text = api.get("/metrics").text
    finally:
        api.stop()
    assert _sample(text, "quasar_api_requests_total", route="/v1/info", status="200") >= 1
    assert _sample(text, "quasar_api_requests_total", route="/v1/rounds/{round_id}", status="404") == 1
    assert _sample(text, "quasar_api_request_duration_seconds_count", route="/v1/info") >= 1


def test_inference_server_metrics(tmp_path: Path) -> None:
    from quasar.inference.model import load_model
    from quasar.inference.server import create_app
    from quasar.models.tiny import make_tiny_model

    model = load_model(str(make_tiny_model(tmp_path / "tiny", 0)), "cpu", "float32")
    settings = Settings(_env_file=None, quasar_home=tmp_path / "home", subtensor_network="embedded")
    with _serving(create_app(settings, model)) as url:
        answer = httpx.post(
            f"{url}/inference", json={"input_ids": [1, 2, 3], "max_new_tokens": 4, "logits_positions": [0]}
        )
        assert answer.status_code == 200, answer.text
        assert httpx.post(f"{url}/inference", json={"max_new_tokens": 4}).status_code == 422
        metrics = httpx.get(f"{url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert _sample(text, "quasar_inference_requests_total", route="/inference", status="200") == 1
    assert _sample(text, "quasar_inference_requests_total", route="/inference", status="422") == 1
    assert _sample(text, "quasar_inference_generation_duration_seconds_count") == 1
    assert _sample(text, "quasar_inference_generated_tokens_total") == 4
    assert _sample(text, "quasar_inference_queued_requests") == 0


def test_validator_metrics_server_counts_verdicts_and_durations() -> None:
    job = Job.model_validate(
        {
            "job_id": 1, "submission_id": 1, "round_id": 1, "repo_url": "/tmp/repo", "commit_sha": "a" * 40,
            "miner_hotkey": "5F", "attempt": 1, "target_shape": {}, "lease_expires_at": "2030-01-01T00:00:00Z",
            "lease_seconds": 60, "win_margin": 0.01,
        }
    )  # fmt: skip
    settings = Settings(_env_file=None, enable_logit_verification=False)  # type: ignore[call-arg]
    before = validator_metrics().evaluations.labels("fail", "incorrect")._value.get()
    runner = JobRunner(
        settings, Device("cpu"), evaluate=lambda *_: {"verdict": "fail", "reason": "incorrect"}
    )
    assert runner.run(job).verdict == "fail"
    port = _free_port()
    assert serve_validator_metrics(port, "127.0.0.1") is True
    assert serve_validator_metrics(0) is False
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert (
        _sample(text, "quasar_validator_evaluations_total", verdict="fail", reason="incorrect") == before + 1
    )
    assert _sample(text, "quasar_validator_evaluation_duration_seconds_count", verdict="fail") >= 1
    assert _sample(text, "quasar_validator_jobs_in_progress") == 0
    with pytest.raises(OSError, match="VALIDATOR_METRICS_PORT"):
        serve_validator_metrics(port, "127.0.0.1")
