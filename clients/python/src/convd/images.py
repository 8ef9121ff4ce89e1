"""Images in and out as float32 arrays (C, H, W) with values in [0, 1], and files of tensors (.npy, .json, images).

Reading images needs Pillow and numpy; writing PNG works with the standard library alone (zlib)."""

from __future__ import annotations

import json
import os
import struct
import zlib
from typing import Any, List, Optional

from . import tensors

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _need_pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading images needs Pillow: pip install 'convd[images]' (or apt install python3-pil)") \
            from None
    return Image


def load_image(path: str, mode: Optional[str] = None) -> Any:
    """Reads a PNG/JPEG/... file as a float32 array (C, H, W) in [0, 1]: C = 1 for grayscale, 3 for colour.

    mode "L" forces grayscale and "RGB" colour; by default grayscale files stay grayscale and everything else
    becomes RGB (alpha dropped)."""
    Image = _need_pillow()
    np = tensors.np
    if np is None:
        raise ImportError("reading images needs numpy: pip install 'convd[images]'")
    with Image.open(path) as img:
        if mode is None:
            mode = "L" if img.mode in ("1", "L", "I", "I;16", "F", "LA") else "RGB"
        img = img.convert(mode)
        array = np.asarray(img, dtype=np.float32) / 255.0
    return array[None, :, :] if array.ndim == 2 else np.transpose(array, (2, 0, 1)).copy()


def _as_rows(array: Any, normalize: bool) -> tuple:
    """(channels, height, width, bytes of rows) of an (H,W), (1,H,W) or (3,H,W) array in [0,1] (or normalized)."""
    plain = tensors.to_plain(array)
    if tensors.np is not None:
        a = tensors.to_numpy(array)
        while a.ndim > 3 and a.shape[0] == 1:
            a = a[0]
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.shape[0] not in (1, 3):
            raise ValueError(f"an image is (H,W), (1,H,W) or (3,H,W); this array is {tuple(a.shape)}")
        if normalize:
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / (hi - lo) if hi > lo else a * 0
        a = (a.clip(0, 1) * 255 + 0.5).astype("uint8")
        c, h, w = a.shape
        return c, h, w, a.transpose(1, 2, 0).tobytes()
    rows: List[List[List[float]]] = plain if isinstance(plain[0][0], list) else [plain]
    c, h, w = len(rows), len(rows[0]), len(rows[0][0])
    if c not in (1, 3):
        raise ValueError(f"an image has 1 or 3 channels, not {c}")
    flat = [v for ch in rows for r in ch for v in r]
    lo, hi = (min(flat), max(flat)) if normalize else (0.0, 1.0)
    scale = (hi - lo) or 1.0
    out = bytearray()
    for i in range(h):
        for j in range(w):
            for k in range(c):
                v = (rows[k][i][j] - lo) / scale
                out.append(int(min(1.0, max(0.0, v)) * 255 + 0.5))
    return c, h, w, bytes(out)


def _png(c: int, h: int, w: int, pixels: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    stride = w * c
    raw = b"".join(b"\x00" + pixels[i * stride:(i + 1) * stride] for i in range(h))
    header = struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def save_image(array: Any, path: str, normalize: bool = False) -> None:
    """Writes an (H,W), (1,H,W) or (3,H,W) array as an image (PNG without Pillow; any format Pillow knows with it).

    Values in [0, 1] map to 0..255 (outside is clipped); normalize=True stretches min..max to 0..255 instead (for
    outputs such as edge maps, which are signed)."""
    c, h, w, pixels = _as_rows(array, normalize)
    if path.lower().endswith(".png"):
        with open(path, "wb") as f:
            f.write(_png(c, h, w, pixels))
        return
    Image = _need_pillow()
    Image.frombytes("L" if c == 1 else "RGB", (w, h), pixels).save(path)


def load_tensor(path: str) -> Any:
    """Reads a tensor file: .npy (numpy array), an image ((C,H,W) in [0,1]), or JSON (a tensor, or a request body)."""
    lower = path.lower()
    if lower.endswith(".npy"):
        if tensors.np is None:
            raise ImportError("reading .npy files needs numpy: pip install 'convd[numpy]'")
        return tensors.np.load(path, allow_pickle=False)
    if lower.endswith(IMAGE_SUFFIXES):
        return load_image(path)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_tensor(value: Any, path: str, normalize: bool = False) -> None:
    """Writes a tensor by the file's suffix: .npy, an image (.png, ...), else JSON (nested lists)."""
    lower = path.lower()
    if lower.endswith(".npy"):
        if tensors.np is None:
            raise ImportError("writing .npy files needs numpy: pip install 'convd[numpy]'")
        tensors.np.save(path, tensors.to_numpy(value))
    elif lower.endswith(IMAGE_SUFFIXES):
        save_image(value, path, normalize=normalize)
    else:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(tensors.to_plain(value), f, separators=(",", ":"))
            f.write("\n")


def exists(path: str) -> bool:
    return os.path.isfile(path)
