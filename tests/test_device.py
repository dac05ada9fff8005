"""emotiw_utils.device.torch_device: the one place a ``device`` argument becomes a torch.device."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from emotiw_utils import device
from emotiw_utils.device import torch_device


def test_torch_device_specs_devices_and_models(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert torch_device("cpu") == torch.device("cpu")
    assert torch_device(" Auto ") == torch.device("cpu")  # the specs of resolve_device, any case
    with pytest.raises(RuntimeError, match="no CUDA GPU is usable"):
        torch_device("cuda")
    assert torch_device("cuda:1") == torch.device("cuda", 1)  # other strings: torch's own parsing, no check
    dev = torch.device("cuda", 0)
    assert torch_device(dev) is dev
    assert torch_device(None) == torch.device("cpu")
    model = nn.Linear(2, 2).to(torch.device("meta"))
    assert torch_device(None, model) == torch.device("meta")  # None: where the model's parameters are
    assert torch_device("cpu", model) == torch.device("cpu")  # an explicit device wins over the model
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert torch_device("auto") == torch.device("cuda")
    with pytest.raises(RuntimeError):
        torch_device("tpu")


def test_resolve_amp_uses_bf16_only_where_the_cpu_computes_it_natively(monkeypatch):
    monkeypatch.setattr(device, "_cpu_flags", lambda: {"avx2", "fma"})
    assert device.native_bf16("cpu") is False and device.resolve_amp("auto", "cpu") is False
    monkeypatch.setattr(device, "_cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert device.resolve_amp("auto", "cpu") is True
    monkeypatch.setattr(device, "_cpu_flags", lambda: {"amx_bf16"})
    assert device.resolve_amp("auto", "cpu") is True
    assert device.resolve_amp(False, "cpu") is False and device.resolve_amp(True, "cpu") is True
    with pytest.raises(ValueError, match="amp must be"):
        device.resolve_amp("yes", "cpu")
