"""The per-token rewrite of a dynamically quantised graph, on a one-product model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from infrastructure.embeddings.int8_products import int8_products_saturate
from infrastructure.embeddings.onnx_per_token import RewriteError, per_token_activations

Floats = np.ndarray[tuple[int, ...], np.dtype[np.float32]]


def _float_model(weight: Floats) -> onnx.ModelProto:
    rows, columns = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="product")],
        "one_product",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "tokens", columns])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: Floats) -> Floats:
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    result: Floats = session.run(["y"], {"x": x})[0]
    return result


@pytest.fixture
def weight() -> Floats:
    return np.random.default_rng(3).normal(size=(64, 32)).astype(np.float32)


@pytest.fixture
def quantized(weight: Floats, tmp_path: Path) -> onnx.ModelProto:
    source, target = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    onnx.save(_float_model(weight), source)
    # As the quantiser does on this CPU: 7-bit weights where int8 products saturate.
    quantize_dynamic(
        source,
        target,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=int8_products_saturate(),
    )
    return onnx.load(target)


def test_each_row_gets_its_own_scale(weight: Floats, quantized: onnx.ModelProto) -> None:
    rewritten = per_token_activations(quantized)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 4, 64)).astype(np.float32)
    x[1, 2] *= 1_000  # one loud token: with one scale per tensor it drowns the others
    x[2, 0] = 0.0  # a silent one
    batched = _run(rewritten, x)
    for batch in range(3):
        for token in range(4):
            alone = _run(rewritten, x[batch : batch + 1, token : token + 1])[0, 0]
            assert np.array_equal(batched[batch, token], alone)
    exact = x @ weight
    error = np.abs(batched - exact).max(axis=-1) / (np.abs(exact).max(axis=-1) + 1e-12)
    assert error.max() < 0.03  # every row within a few percent, the quiet ones too
    assert np.array_equal(batched[2, 0], np.zeros(32, dtype=np.float32))
    # One scale for the whole tensor loses the quiet rows next to the loud one.
    shared = _run(quantized, x)
    shared_error = np.abs(shared - exact).max(axis=-1) / (np.abs(exact).max(axis=-1) + 1e-12)
    assert shared_error.max() > 0.1


def test_a_graph_without_dynamic_quantisation_is_refused(weight: Floats) -> None:
    with pytest.raises(RewriteError, match="not a dynamically quantised model"):
        per_token_activations(_float_model(weight))
