"""Tensors in and out: nested lists, numpy arrays and torch tensors go out; numpy arrays (or lists) come back."""

from __future__ import annotations

import base64
import struct
from typing import Any, List

try:  # optional: everything but array conversion works without numpy
    import numpy as np
except ImportError:  # pragma: no cover - depends on the machine
    np = None  # type: ignore[assignment]

HAVE_NUMPY = np is not None


def is_torch(value: Any) -> bool:
    """True for a torch.Tensor (checked without importing torch)."""
    return type(value).__module__.startswith("torch") and hasattr(value, "detach") and hasattr(value, "cpu")


def is_array(value: Any) -> bool:
    """True for a numpy array or a torch tensor."""
    return (np is not None and isinstance(value, np.ndarray)) or is_torch(value)


def to_numpy(value: Any) -> Any:
    """A torch tensor (detached, on the CPU) or an array-like as a float32 numpy array."""
    if np is None:
        raise ImportError("numpy is needed for arrays: pip install 'convd[numpy]' (or apt install python3-numpy)")
    if is_torch(value):
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float32)


def encode(value: Any) -> Any:
    """The JSON form of a tensor: arrays become base64 little-endian float32; lists and dicts pass as they are."""
    if is_torch(value) and np is None:
        return value.detach().cpu().tolist()
    if is_array(value):
        array = np.ascontiguousarray(to_numpy(value), dtype="<f4")
        return {"shape": list(array.shape), "dtype": "float32",
                "b64": base64.b64encode(array.tobytes()).decode("ascii")}
    return value


def encode_bias(value: Any) -> Any:
    """A bias: a number, or a list of numbers (from an array of any rank-1 or scalar shape)."""
    if is_array(value):
        array = to_numpy(value) if np is not None else None
        if array is None:
            return value.detach().cpu().tolist()
        return float(array) if array.ndim == 0 else [float(v) for v in array.reshape(-1)]
    if isinstance(value, tuple):
        return list(value)
    return value


def _fold(flat: List[float], shape: List[int]) -> Any:
    for size in reversed(shape[1:]):  # from the innermost dimension outwards
        flat = [flat[i:i + size] for i in range(0, len(flat), size)]  # type: ignore[misc]
    return flat


def decode(value: Any, as_array: bool = True) -> Any:
    """A tensor of a reply as a numpy array (when numpy is present and as_array), else nested lists."""
    if isinstance(value, dict) and "shape" in value and ("b64" in value or "data" in value):
        shape = [int(d) for d in value["shape"]]
        if "b64" in value:
            raw = base64.b64decode(value["b64"])
            if np is not None and as_array:
                return np.frombuffer(raw, dtype="<f4").reshape(shape).copy()
            return _fold(list(struct.unpack(f"<{len(raw) // 4}f", raw)), shape)
        if np is not None and as_array:
            return np.asarray(value["data"], dtype=np.float32).reshape(shape)
        return _fold(list(value["data"]), shape)
    if isinstance(value, list) and np is not None and as_array:
        return np.asarray(value, dtype=np.float32)
    return value


def to_plain(value: Any) -> Any:
    """Arrays (anywhere in a structure) as nested lists, for printing or json.dumps."""
    if is_array(value):
        return to_numpy(value).tolist() if np is not None else value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if np is not None and isinstance(value, np.generic):
        return value.item()
    return value
