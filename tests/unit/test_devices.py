"""DEVICE's one grammar (quasar.devices): what parses, what is refused and how the refusal names its source."""

from __future__ import annotations

import pytest

from quasar.devices import Device, parse_device, resolve_auto


@pytest.mark.parametrize(
    ("text", "device"),
    [("auto", Device("auto")), ("cpu", Device("cpu")), ("cuda", Device("cuda")), ("cuda:3", Device("cuda", 3))],
)
def test_each_spelling_parses_and_prints_back(text: str, device: Device) -> None:
    assert parse_device(text) == device
    assert str(device) == text


@pytest.mark.parametrize("text", ["tpu", "cpu:1", "cuda:", "cuda:x", "CUDA", "auto:0", ""])
def test_anything_else_is_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(ValueError, match=r"^--device=.*: use cpu, cuda, cuda:N or auto$"):
        parse_device(text, name="--device")


def test_only_auto_is_resolved() -> None:
    assert resolve_auto(Device("cuda", 2)) == Device("cuda", 2)
    assert resolve_auto(Device("cpu")) == Device("cpu")
    assert resolve_auto(Device("auto")).kind in ("cpu", "cuda")
