"""Device selection and seeding: :func:`resolve_device` (a ``--device`` spec -> ``"cpu"``/``"cuda"``) and
:func:`torch_device` (any ``device`` argument -> a ``torch.device``). torch is imported lazily, inside the functions."""

from __future__ import annotations

import os
import platform
import random
from typing import Any

#: Accepted values of a ``device`` parameter.
DEVICE_SPECS = ("auto", "cpu", "cuda")


def resolve_device(spec: str = "auto") -> str:
    """Map a device spec to a concrete torch device string.

    ``'auto'`` -> ``'cuda'`` if a CUDA GPU is usable, else ``'cpu'``; ``'cpu'`` -> ``'cpu'``;
    ``'cuda'`` -> ``'cuda'``, RuntimeError if no GPU is usable. Anything else: ValueError.
    """
    s = str(spec).strip().lower()
    if s not in DEVICE_SPECS:
        raise ValueError(f"unknown device {spec!r}; expected one of {', '.join(DEVICE_SPECS)}")
    if s == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if s == "auto":
        return "cuda" if available else "cpu"
    if not available:
        raise RuntimeError(
            "device 'cuda' was requested but no CUDA GPU is usable "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'}); "
            "use --device cpu or --device auto, or install a CUDA build of torch (see README)")
    return "cuda"


def torch_device(device: Any = None, model: Any = None):  # -> torch.device
    """The one way a ``device`` argument becomes a ``torch.device`` (every trainer and predictor uses it).

    * None: the device of ``model``'s parameters (CPU when no model is given);
    * a ``torch.device``: itself;
    * ``'auto'``, ``'cpu'``, ``'cuda'`` (any case, surrounding spaces ignored): :func:`resolve_device`
      (so ``'auto'`` picks CUDA when usable, and ``'cuda'`` without a GPU is a RuntimeError);
    * any other string (``'cuda:1'``) or device index: ``torch.device(device)``.
    """
    import torch

    if device is None:
        return next(model.parameters()).device if model is not None else torch.device("cpu")
    if isinstance(device, torch.device):
        return device
    if isinstance(device, str) and device.strip().lower() in DEVICE_SPECS:
        return torch.device(resolve_device(device))
    return torch.device(device)


def _cpuinfo(field: str) -> str | None:
    """The value of the first ``field`` line of ``/proc/cpuinfo`` (None where there is no such file or line)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"


#: CPU flags (``/proc/cpuinfo``) of native bfloat16 arithmetic: AVX512-BF16 (AMD Zen 4, Intel Cooper Lake and
#: later) and AMX-BF16 (Intel Sapphire Rapids and later). Without them bf16 autocast on a CPU is emulated, slower.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
#: Accepted values of an ``amp`` (bfloat16 autocast) parameter: ``auto`` = where the device computes bf16 natively.
AMP_SPECS = ("auto", True, False)


def _cpu_flags() -> set[str]:
    return set((_cpuinfo("flags") or "").split())


def native_bf16(device: Any = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with one of
    :data:`BF16_CPU_FLAGS`."""
    dev = torch_device(device)
    if dev.type == "cuda":
        import torch

        return bool(torch.cuda.is_bf16_supported())
    return bool(_cpu_flags() & set(BF16_CPU_FLAGS))


def resolve_amp(amp: Any, device: Any = "cpu") -> bool:
    """An ``amp`` parameter (:data:`AMP_SPECS`) -> whether to train with bfloat16 autocast on ``device``."""
    if amp == "auto":
        return native_bf16(device)
    if isinstance(amp, bool):
        return amp
    raise ValueError(f"amp must be one of auto, true, false; got {amp!r}")


def cpu_count() -> int:
    """Cores this process may use (affinity-aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def device_description(device: str) -> str:
    """Human-readable description: the GPU name for ``cuda``, CPU model and core count for ``cpu``."""
    if str(device).startswith("cuda"):
        import torch

        idx = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(idx)
        return f"cuda:{idx} {props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}"
    return f"cpu: {_cpu_model()} ({cpu_count()} cores)"


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python ``random``, numpy's global RNG, torch and all CUDA devices.

    With ``deterministic``, cuDNN autotuning is off and cuDNN picks deterministic kernels (cheap);
    ``torch.use_deterministic_algorithms`` is left alone because it makes some GPU ops raise.
    """
    import numpy as np

    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    import torch

    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
