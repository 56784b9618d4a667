"""Export the bundled MiniLM (weights, mean pooling, normalisation) to one ONNX file.

Runs in a child process (`python -m infrastructure.embeddings.onnx_export MODEL_DIR OUT`)
so that the API and the workers never import torch themselves: only this export does,
once per machine (see onnx_model.ensure_exported). The file is checked against torch on
texts of several lengths, padded in one batch, before it is moved into place.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "embedding"
OPSET = 17
# sentence-transformers' limit for this model (its sentence_bert_config.json).
MAX_TOKENS = 256
# The lowest cosine similarity to torch's vector that the exported model may give.
MIN_AGREEMENT = 0.9999
CHECK_TEXTS = (
    "",
    "How do I reset my password?",
    "Les données sont chiffrées au repos — 東京で会いましょう. ¿Dónde está la estación?",
    " ".join(f"sentence {n} of a long passage about retention policies." for n in range(60)),
)


def _pooled_model(model_dir: Path) -> torch.nn.Module:
    import torch
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(
        str(model_dir), local_files_only=True, attn_implementation="eager"
    ).eval()

    class MeanPooledEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    return MeanPooledEncoder().eval()


def _check_against_torch(model: torch.nn.Module, onnx_path: Path, model_dir: Path) -> float:
    """The exported file's vectors against torch's, for a padded batch; returns the worst."""
    import onnxruntime
    import torch
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(list(CHECK_TEXTS))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    exported = session.run([OUTPUT_NAME], {"input_ids": ids, "attention_mask": mask})[0]
    with torch.inference_mode():
        expected = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    return float((np.asarray(exported) * expected).sum(axis=1).min())


def export(model_dir: Path, out: Path) -> float:
    """Write the ONNX file to `out` (atomically); returns its worst agreement with torch."""
    import torch

    model = _pooled_model(model_dir)
    sample_ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    sample_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    dynamic = {0: "batch", 1: "tokens"}
    handle, temporary = tempfile.mkstemp(prefix=out.name, suffix=".part", dir=out.parent)
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The tracer's notes on Python-side shape checks: the check below is the judge.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (sample_ids, sample_mask),
                temporary,
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes={name: dynamic for name in INPUT_NAMES} | {OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        agreement = _check_against_torch(model, Path(temporary), model_dir)
        if agreement < MIN_AGREEMENT:
            raise RuntimeError(
                f"the exported model disagrees with torch (cosine {agreement:.6f} "
                f"< {MIN_AGREEMENT})"
            )
        Path(temporary).chmod(0o644)  # mkstemp makes it private; the model is not secret
        os.replace(temporary, out)
        return agreement
    finally:
        Path(temporary).unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m infrastructure.embeddings.onnx_export MODEL_DIR OUT\n")
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    agreement = export(Path(argv[0]), Path(argv[1]))
    sys.stdout.write(f"exported {argv[1]} (worst cosine to torch {agreement:.7f})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
