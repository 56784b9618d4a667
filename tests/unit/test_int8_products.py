"""Which CPUs get 7-bit weights in the int8 question model (int8_products.py)."""

from __future__ import annotations

from pathlib import Path

from infrastructure.embeddings.int8_products import int8_products_saturate

AVX2_ONLY = "fpu vme sse sse2 avx avx2 fma bmi2"


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(
        f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n\n"
        f"processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n"
    )
    return path


def test_x86_without_vnni_saturates(tmp_path: Path) -> None:
    assert int8_products_saturate(_cpuinfo(tmp_path, AVX2_ONLY), "x86_64")
    # AVX-512 without VNNI (Skylake-X) pairs products in 16 bits too.
    assert int8_products_saturate(_cpuinfo(tmp_path, AVX2_ONLY + " avx512f avx512bw"), "x86_64")


def test_any_vnni_does_not(tmp_path: Path) -> None:
    for extra in ("avx512_vnni", "avx_vnni", "amx_int8 amx_tile"):
        path = _cpuinfo(tmp_path, f"{AVX2_ONLY} avx512f {extra}")
        assert not int8_products_saturate(path, "x86_64")
        assert not int8_products_saturate(path, "AMD64")


def test_unknown_x86_features_take_the_safe_range(tmp_path: Path) -> None:
    assert int8_products_saturate(tmp_path / "missing", "x86_64")
    empty = tmp_path / "no-flags"
    empty.write_text("processor\t: 0\n")
    assert int8_products_saturate(empty, "x86_64")


def test_other_architectures_do_not_saturate(tmp_path: Path) -> None:
    assert not int8_products_saturate(tmp_path / "missing", "aarch64")
    assert not int8_products_saturate(_cpuinfo(tmp_path, "fp asimd asimddp"), "arm64")
