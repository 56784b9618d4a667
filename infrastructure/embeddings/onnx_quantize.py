"""An int8 copy of the exported MiniLM, for questions: about three times cheaper per text.

Runs in a child process (`python -m infrastructure.embeddings.onnx_quantize MODEL_DIR FP32 OUT`,
see onnx_model.ensure_quantized) once per machine, so the API never imports the
quantisation tooling. ONNX Runtime's dynamic quantisation stores the weights of every
matrix product as int8 (7 bits on CPUs whose int8 products saturate, int8_products.py),
one scale per output channel (per-tensor scales lost too much:
worst cosine 0.84 to the float model on passages), and quantises activations on the fly,
each token's with its own scale (onnx_per_token.py), so a text's vector does not depend on
what it is batched with.

Only texts whose vectors are never stored use it: questions, and the extractive answerer's
candidate sentences. Stored chunk vectors come from the float model, so nothing needs
re-embedding, and a question's int8 vector stays close to its float one (checked here on
questions and passages before the file is moved into place, with the batch independence;
measured on 1,000 of the query bench's questions: mean cosine 0.997, worst 0.994).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

# The command-line flag for 7-bit weights (int8_products.py).
REDUCE_RANGE = "--reduce-range"
# The lowest cosine similarity between a text's int8 and float vectors that is accepted.
MIN_AGREEMENT = 0.97
# How far a vector computed in a batch may stray from the same text's vector alone (per
# dimension): float rounding only, as activations are scaled per token (onnx_per_token.py).
MAX_BATCH_DRIFT = 1e-5
CHECK_TEXTS = (
    "How do I reset my password?",
    "What is the retention period for invoices?",
    "How does the with statement work in Python?",
    "Quelle est la politique de conservation des factures ?",
    "The cluster failed over to the standby at 03:12 UTC after the primary lost its disk.",
    " ".join(f"sentence {n} of a long passage about retention policies." for n in range(30)),
)


def quantize(model_dir: Path, source: Path, out: Path, *, reduce_range: bool = False) -> float:
    """Write the int8 model to `out` (atomically); returns its worst agreement with `source`.

    ``reduce_range``: 7-bit weights, for CPUs whose int8 products saturate
    (int8_products.py)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from infrastructure.embeddings.onnx_model import OnnxEncoder
    from infrastructure.embeddings.onnx_per_token import per_token_activations

    handle, temporary = tempfile.mkstemp(prefix=out.name, suffix=".part", dir=out.parent)
    os.close(handle)
    try:
        quantize_dynamic(
            source,
            temporary,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            # The exported graph's intermediate outputs carry no type annotations.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        onnx.save(per_token_activations(onnx.load(temporary)), temporary)
        exact = np.asarray(OnnxEncoder(source, model_dir, 1, 8).encode(CHECK_TEXTS))
        cheap = OnnxEncoder(Path(temporary), model_dir, 1, 8)
        batched = np.asarray(cheap.encode(CHECK_TEXTS))
        agreement = float((exact * batched).sum(axis=1).min())
        if agreement < MIN_AGREEMENT:
            raise RuntimeError(
                f"the int8 model strays from the float one (cosine {agreement:.4f} "
                f"< {MIN_AGREEMENT})"
            )
        alone = np.asarray([cheap.encode([text])[0] for text in CHECK_TEXTS])
        drift = float(np.abs(batched - alone).max())
        if drift > MAX_BATCH_DRIFT:
            raise RuntimeError(
                f"the int8 model's vectors depend on their batch (by up to {drift:.2e})"
            )
        Path(temporary).chmod(0o644)
        os.replace(temporary, out)
        return agreement
    finally:
        Path(temporary).unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    reduce_range = REDUCE_RANGE in argv
    paths = [arg for arg in argv if arg != REDUCE_RANGE]
    if len(paths) != 3:
        sys.stderr.write(
            "usage: python -m infrastructure.embeddings.onnx_quantize MODEL_DIR FP32 OUT"
            f" [{REDUCE_RANGE}]\n"
        )
        return 2
    agreement = quantize(Path(paths[0]), Path(paths[1]), Path(paths[2]), reduce_range=reduce_range)
    sys.stdout.write(f"quantised {paths[2]} (worst cosine to float {agreement:.4f})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
