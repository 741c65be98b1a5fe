"""A faster route through torch.onnx's dynamo exporter for this package's networks.

``torch.onnx.export(module, dynamo=True, dynamic_shapes=...)`` traces the module with
``torch.export`` and then, inside the ONNX exporter, *traces it twice more* with fake tensors and
symbolic shapes: once to decompose it (``ExportedProgram.run_decompositions`` with the ONNX-friendly
table) and once to insert type-promotion casts (an FX interpreter over every node). With dynamic
batch, height and width, every one of these passes spends most of its time in symbolic-shape
reasoning (sympy), ~10-30 ms per node; for ``tiny_x4`` (about 1,200 nodes) the three passes took
~60 s of the ~60 s export (issue 13, ``docs/EFFICIENCY.md``).

For our graphs two of the three passes are no-ops, and this module checks that instead of assuming
it:

1. **Trace** once with ``torch.export`` in the ONNX-export context (``torch.onnx.is_in_onnx_export()``
   is true, so the export-only formulations of ``ugtsr.blocks`` / ``ugtsr.attention`` are taken) and
   with ``backed_size_oblivious`` symbolic shapes -- the setting torch.onnx itself uses for its
   decomposition pass ("support the dynamism with 0/1 input dim"); it halves the tracing time.
2. **Decomposition**: skipped when every operator in the traced graph has an ONNX translation in
   torch.onnx's registry (after rewriting ``aten.to.dtype`` as ``aten._to_copy``, the one composite
   operator the translator lacks). Otherwise the exporter's own decomposition runs.
3. **Type promotion**: skipped when torch.onnx's own promotion rules, evaluated on the traced
   dtypes, would insert no cast. Otherwise the exporter's own pass runs.

Whatever this route cannot handle -- an operator without a translation, a torch version whose
internals differ, any exception -- falls back to the plain ``torch.onnx.export`` call (the same
graph, only slower), and the caller's verification against PyTorch runs either way. The internals
used are torch 2.13's (``torch.onnx._internal.exporter``; the project pins torch 2.13.0); they are
looked up defensively so another version falls back instead of failing.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

log = logging.getLogger("export.onnx")
# the passes are swapped on torch.onnx's modules for the duration of one export: one at a time
_PATCH_LOCK = threading.Lock()

__all__ = ["fast_onnx_program", "FastPathUnavailable", "optimize_program"]


class FastPathUnavailable(Exception):
    """The fast route does not apply; the caller uses the plain exporter."""


def _internals():
    try:
        from torch.onnx._internal.exporter import _constants, _decomp, _flags, _fx_passes, _registration
        from torch.onnx._internal.fx import type_utils
        from torch.onnx._internal.fx.passes import type_promotion
    except ImportError as exc:  # another torch version
        raise FastPathUnavailable(f"torch.onnx internals not found ({exc})") from None
    for mod, name in ((_fx_passes, "decompose_with_registry"), (_fx_passes, "insert_type_promotion_nodes"),
                      (_flags, "set_onnx_exporting_flag"), (_registration.ONNXRegistry, "from_torchlib"),
                      (_decomp, "get_onnx_implemented_overloads"), (type_promotion, "get_type_promotion_rule")):
        if not hasattr(mod, name):
            raise FastPathUnavailable(f"torch.onnx internal {name} not found")
    return _constants, _decomp, _flags, _fx_passes, _registration, type_utils, type_promotion


def _trace(module, args: tuple, dynamic_shapes, flags):
    import torch
    import torch.fx.experimental._config as fx_config

    @flags.set_onnx_exporting_flag
    def run():
        with torch.no_grad(), fx_config.patch(backed_size_oblivious=True):
            return torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)

    return run()


def _lower_composites(ep) -> None:
    """Rewrite ``aten.to.dtype`` (composite; no ONNX translation) as ``aten._to_copy(dtype=)``,
    what the decomposition would produce."""
    import torch

    changed = False
    for node in ep.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.to.dtype:
            x, dtype = node.args[0], node.args[1]
            extra = dict(node.kwargs)
            if node.args[2:] or any(v not in (False, None) for k, v in extra.items() if k != "memory_format"):
                raise FastPathUnavailable(f"unexpected arguments to aten.to.dtype: {node.args}, {node.kwargs}")
            node.target = torch.ops.aten._to_copy.default
            node.args = (x,)
            node.kwargs = {"dtype": dtype}
            changed = True
    if changed:
        ep.graph_module.recompile()


def _is_assertion(target) -> bool:
    # removed by torch.onnx's remove_assertion_nodes before translation
    return "assert" in target._schema.name or target._schema.name == "aten::sym_constrain_range_for_size"


def _untranslatable(ep, registry, decomp) -> list[str]:
    """Operators of the graph that torch.onnx would have to decompose (no translation registered)."""
    import torch

    implemented = set(decomp.get_onnx_implemented_overloads(registry))
    missing = set()
    for node in ep.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue  # Python operators on SymInts, getitem: translated directly
        if node.target not in implemented and not _is_assertion(node.target):
            missing.add(str(node.target))
    return sorted(missing)


def _needs_type_promotion(ep, type_promotion, type_utils) -> bool:
    """Would torch.onnx's type-promotion pass insert a cast anywhere? Its own rules, evaluated on the
    dtypes recorded by the trace (mirrors ``_TypePromotionInterpreter._maybe_promote_arg``)."""
    import torch

    table = type_promotion.TypePromotionTable()

    def differs(arg: Any, dtype) -> bool:
        if dtype is None:
            return False
        if isinstance(arg, (list, tuple)):
            return any(differs(a, dtype) for a in arg)
        if isinstance(arg, torch.fx.Node):
            v = arg.meta.get("val")
            if isinstance(v, torch.Tensor):
                return v.dtype != dtype
            if type_utils.is_torch_symbolic_type(v):
                return type_utils.from_scalar_type_to_torch_dtype(type(v)) != dtype
            raise FastPathUnavailable(f"node {arg} has no traced value")
        equivalent = type_utils.from_scalar_type_to_torch_dtype(type(arg))
        return equivalent is not None and equivalent != dtype

    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        rule = type_promotion.get_type_promotion_rule(node, table)
        if rule is None:
            continue
        traced = lambda n: n.meta.get("val")  # noqa: E731 (the traced value in place of each node)
        info = rule.preview_type_promotion(torch.fx.node.map_arg(node.args, traced),
                                           torch.fx.node.map_arg(node.kwargs, traced))
        if any(differs(a, info.args_dtypes.get(i)) for i, a in enumerate(node.args)) or \
                any(differs(a, info.kwargs_dtypes.get(k)) for k, a in node.kwargs.items()):
            log.debug("fast export: type promotion needed at %s (%s)", node.name, node.target)
            return True
    return False


@contextlib.contextmanager
def _patched(obj, name: str, value) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def fast_onnx_program(module, args: tuple, *, dynamic_shapes, opset: int, input_names: Sequence[str],
                      output_names: Sequence[str], stats: dict[str, Any] | None = None):
    """``torch.onnx.ONNXProgram`` of ``module`` (not optimised), or :class:`FastPathUnavailable`.

    ``stats`` (optional) receives what was skipped: ``{"decomposition": bool, "type_promotion": bool}``
    (True: the pass ran).
    """
    import torch

    constants, decomp, flags, fx_passes, registration, type_utils, type_promotion = _internals()
    ep = _trace(module, args, dynamic_shapes, flags)
    _lower_composites(ep)
    # as torch.onnx.export builds it (opsets below torchlib's use torchlib's registry), built once
    registry = registration.ONNXRegistry.from_torchlib(opset_version=max(opset, constants.TORCHLIB_OPSET))
    missing = _untranslatable(ep, registry, decomp)
    run_decomposition = bool(missing)
    if missing:
        log.debug("fast export: decomposition needed for %s", ", ".join(missing))
    run_promotion = run_decomposition or _needs_type_promotion(ep, type_promotion, type_utils)
    if stats is not None:
        stats.update(decomposition=run_decomposition, type_promotion=run_promotion)
        if missing:
            stats["untranslatable"] = missing
    decompose = fx_passes.decompose_with_registry if run_decomposition else (lambda program, _registry: program)
    promote = fx_passes.insert_type_promotion_nodes if run_promotion else (lambda _gm: None)
    with _PATCH_LOCK, _patched(fx_passes, "decompose_with_registry", decompose), \
            _patched(fx_passes, "insert_type_promotion_nodes", promote), \
            _patched(registration.ONNXRegistry, "from_torchlib", classmethod(lambda cls, *a, **k: registry)):
        return torch.onnx.export(ep, args, dynamo=True, opset_version=opset, input_names=list(input_names),
                                 output_names=list(output_names), external_data=False, optimize=False,
                                 verbose=False, report=False)


#: onnxscript's pattern rule that rewrites Slices of one value into a Split. It is the one rule of
#: the default set with several output nodes, and onnxscript matches those by brute force: for
#: every candidate node it rebuilds an op-type index of the whole graph (quadratic in the graph
#: size). On ``tiny_x4`` it never fires, yet it took 7 of the optimiser's 11 s (profiled under
#: load; the optimised graph is byte-identical without it).
_SLOW_RULES = ("SlicesSplit",)


def optimize_program(program) -> dict[str, Any]:
    """``program.optimize()`` (onnxscript's optimiser: constant folding, the default rewrite rules,
    dead-code removal, fusions) without the rules in ``_SLOW_RULES``.

    The rule list is swapped on the ``onnxscript.rewriter`` module for the duration of the call (under
    the module lock); everything else is onnxscript's own pipeline of the installed version. If the
    rule list is not where onnxscript 0.5-0.7 keeps it, the plain ``program.optimize()`` runs.
    Returns ``{"rules_skipped": [...]}`` (empty: the plain optimiser ran).
    """
    try:
        from onnxscript import rewriter
        rules = rewriter._DEFAULT_REWRITE_RULES
        names = [getattr(r, "name", None) for r in rules]
    except (ImportError, AttributeError, TypeError):
        names = []  # not where this module expects it: nothing to skip
    skipped = [n for n in names if n in _SLOW_RULES]
    if not skipped:
        program.optimize()
        return {"rules_skipped": []}
    kept = type(rules)(r for r, n in zip(rules, names) if n not in _SLOW_RULES)
    with _PATCH_LOCK, _patched(rewriter, "_DEFAULT_REWRITE_RULES", kept):
        program.optimize()
    return {"rules_skipped": skipped}
