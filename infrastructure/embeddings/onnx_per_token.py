"""Rewrite ONNX Runtime's dynamic int8 model so each token's activations get their own scale.

``quantize_dynamic`` quantises the input of every matrix product with one scale for the
whole tensor, computed at run time (``DynamicQuantizeLinear``). A text batched with
others then shares its scale with them, and its vector depends on its companions
(cosine 0.97 to 1.0 to the vector it gets alone): questions had to run one per model run,
re-reading the weights from memory each time.

Here each of those nodes becomes a per-row (per-token) symmetric quantisation: the
row's largest magnitude maps to 127 and the row is stored as uint8 around a fixed zero
point of 128 (``QuantizeLinear`` with one block per row, opset 21). Each product becomes
``MatMulIntegerToFloat`` with the weights' per-channel scales, times the row's scale. A
row's integers and scale depend on that row alone and integer products are exact, so a
text's vector no longer depends on its batch (to float rounding, about 1e-7), and it is
closer to the float model's than with one scale per tensor (bench/README.md).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import NodeProto, TensorProto, helper, numpy_helper, version_converter

# QuantizeLinear with a block size (one block per row) needs opset 21.
OPSET = 21
_MICROSOFT = "com.microsoft"
_PREFIX = "per_token_"
# Names of the shared constants this rewrite adds.
_ZERO_POINT = _PREFIX + "zero_point"  # uint8 128: signed values stored unsigned
_LIMIT = _PREFIX + "limit"  # 127: the largest magnitude a row quantises to
_FLOOR = _PREFIX + "floor"  # a row of zeros still gets a usable scale
_ONE = _PREFIX + "one"
_LAST_AXIS = _PREFIX + "last_axis"
_ROWS_SHAPE = _PREFIX + "rows_shape"
_ROW_ZERO_POINTS = _PREFIX + "row_zero_points"


class RewriteError(RuntimeError):
    """The graph is not what ``quantize_dynamic`` makes; nothing was rewritten."""


def per_token_activations(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` (from ``quantize_dynamic``) with per-token activation scales."""
    converted = version_converter.convert_version(model, OPSET)
    graph = converted.graph
    weights = {initializer.name: initializer for initializer in graph.initializer}
    consumers: dict[str, list[NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {output: node for node in graph.node for output in node.output}
    replacements: dict[str, list[NodeProto]] = {}
    dropped: set[str] = set()
    rewritten_scales: set[str] = set()
    for node in graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            continue
        products = [c for c in consumers.get(node.output[0], []) if c.op_type == "MatMulInteger"]
        if not products or len(products) != len(consumers[node.output[0]]):
            raise RewriteError(f"{node.name}: its output feeds more than matrix products")
        width = _width(products[0], weights)
        replacements[node.name] = _row_quantisation(node, width, first=not replacements)
        rewritten_scales.add(node.output[1])
        for product in products:
            replacements[product.name], removed = _product(product, node, consumers, producers)
            dropped |= removed
    if not replacements:
        raise RewriteError("no DynamicQuantizeLinear node: not a dynamically quantised model")
    nodes: list[NodeProto] = []
    for node in graph.node:
        if node.name in replacements:
            nodes += replacements[node.name]
        elif node.name not in dropped:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(_constants())
    # Shapes recorded for the old scalar scales would contradict the per-row ones.
    kept = [info for info in graph.value_info if info.name not in rewritten_scales]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    if not any(opset.domain == _MICROSOFT for opset in converted.opset_import):
        converted.opset_import.append(helper.make_opsetid(_MICROSOFT, 1))
    onnx.checker.check_model(converted)
    return converted


def _width(product: NodeProto, weights: dict[str, TensorProto]) -> int:
    weight = weights.get(product.input[1])
    if weight is None or len(weight.dims) != 2:
        raise RewriteError(f"{product.name}: its weight is not a 2-D initializer")
    return int(weight.dims[0])


def _row_quantisation(node: NodeProto, width: int, *, first: bool) -> list[NodeProto]:
    """``x`` -> (uint8 rows around 128, each row's scale [..., 1], zero point 128)."""
    source = node.input[0]
    quantised, scale, _ = node.output
    name = node.name + "_per_token"
    nodes = [
        helper.make_node("Abs", [source], [name + "_abs"], name=name + "_abs"),
        helper.make_node(
            "ReduceMax",
            [name + "_abs", _LAST_AXIS],
            [name + "_max"],
            name=name + "_max",
            keepdims=1,
        ),
        helper.make_node("Max", [name + "_max", _FLOOR], [name + "_range"], name=name + "_range"),
        helper.make_node("Div", [name + "_range", _LIMIT], [scale], name=name + "_scale"),
    ]
    if first:  # every row scale has the same shape: one tensor of zero points serves all
        nodes += [
            helper.make_node("Shape", [scale], [_ROWS_SHAPE], name=_ROWS_SHAPE),
            helper.make_node(
                "Expand", [_ZERO_POINT, _ROWS_SHAPE], [_ROW_ZERO_POINTS], name=_ROW_ZERO_POINTS
            ),
        ]
    nodes.append(
        helper.make_node(
            "QuantizeLinear",
            [source, scale, _ROW_ZERO_POINTS],
            [quantised],
            name=name,
            axis=-1,
            block_size=width,
        )
    )
    return nodes


def _product(
    product: NodeProto,
    quantiser: NodeProto,
    consumers: dict[str, list[NodeProto]],
    producers: dict[str, NodeProto],
) -> tuple[list[NodeProto], set[str]]:
    """``MatMulInteger -> Cast -> Mul(a_scale * w_scale)`` as ``MatMulIntegerToFloat`` with
    the weight's scales, times the row scales; returns the nodes and the names replaced."""
    row_scale = quantiser.output[1]
    cast = _only_consumer(consumers, product, "Cast")
    rescale = _only_consumer(consumers, cast, "Mul")
    factor = next(name for name in rescale.input if name != cast.output[0])
    scales = producers.get(factor)
    if scales is None or scales.op_type != "Mul" or row_scale not in scales.input:
        raise RewriteError(f"{product.name}: its scale is not the activation's times the weight's")
    weight_scale = next(name for name in scales.input if name != row_scale)
    if len(consumers[factor]) != 1:
        raise RewriteError(f"{product.name}: its combined scale is shared")
    output = rescale.output[0]
    unscaled = output + "_per_token_unscaled"
    weight, weight_zero_point = product.input[1], product.input[3]
    nodes = [
        helper.make_node(
            "MatMulIntegerToFloat",
            [quantiser.output[0], weight, _ONE, weight_scale, _ZERO_POINT, weight_zero_point],
            [unscaled],
            name=product.name + "_per_token",
            domain=_MICROSOFT,
        ),
        helper.make_node("Mul", [unscaled, row_scale], [output], name=rescale.name + "_rows"),
    ]
    return nodes, {product.name, cast.name, rescale.name, scales.name}


def _only_consumer(
    consumers: dict[str, list[NodeProto]], node: NodeProto, op_type: str
) -> NodeProto:
    found = consumers.get(node.output[0], [])
    if len(found) != 1 or found[0].op_type != op_type:
        raise RewriteError(f"{node.name}: not followed by one {op_type} alone")
    return found[0]


def _constants() -> list[TensorProto]:
    values: dict[str, np.ndarray[tuple[int, ...], np.dtype[np.generic]]] = {
        _ZERO_POINT: np.array(128, dtype=np.uint8),
        _LIMIT: np.array(127.0, dtype=np.float32),
        _FLOOR: np.array(1e-12, dtype=np.float32),
        _ONE: np.array(1.0, dtype=np.float32),
        _LAST_AXIS: np.array([-1], dtype=np.int64),
    }
    return [numpy_helper.from_array(value, name) for name, value in values.items()]
