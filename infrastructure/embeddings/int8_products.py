"""Whether this CPU's int8 matrix products can saturate, which decides the weights' range.

ONNX Runtime multiplies the int8 model's activations (uint8) by its weights (int8). On
x86-64 cores with VNNI (AVX-512 VNNI, AVX-VNNI, AMX) one instruction adds four products
straight into 32 bits. Without it, AVX2's ``vpmaddubsw`` first adds pairs of products in
16 bits, which saturate: 255 x 127 x 2 exceeds 32,767, and a token's row can come out
wrong by tens of percent (seen on an AMD EPYC with AVX2 only, bench/README.md, run 47).
ONNX Runtime's advice for such CPUs is weights in 7 bits (``reduce_range``):
255 x 63 x 2 fits. Other architectures (ARM's dot products) do not saturate.
"""

from __future__ import annotations

import platform
from pathlib import Path

VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_X86 = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


def int8_products_saturate(
    cpuinfo: Path = Path("/proc/cpuinfo"), machine: str | None = None
) -> bool:
    """True on x86 CPUs without VNNI, and on x86 CPUs whose flags cannot be read."""
    if (machine or platform.machine()).lower() not in _X86:
        return False
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # an x86 CPU of unknown features: the range that cannot saturate
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return not VNNI_FLAGS & set(value.split())
    return True
