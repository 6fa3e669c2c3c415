"""One observed forward, shared by ``profile`` and ``track``: call records, the one walker over
nested values, the recorder that owns hooks, hook-point facts, the totals rule, where a forward
runs (meta/fake/dtype), its inputs, and the model state it needs (eval mode, device, dtype).

May import: torch, :mod:`hookstats.errors`, :mod:`hookstats.points`, :mod:`hookstats.units`
and :mod:`hookstats.counting`. Nothing here renders or knows a report.
"""

from .forward import forward_error, observe_forward
from .model_state import dtype_name, eval_mode, model_device, model_float_dtype
from .point_info import ParameterSizes, point_infos
from .recorder import CallRecorder
from .records import CallRecord, PointInfo, PointStats, fold_calls
from .tensors import structure_signature, summarize_tensors
from .totals import model_total

__all__ = [
    "CallRecord",
    "CallRecorder",
    "ParameterSizes",
    "PointInfo",
    "PointStats",
    "dtype_name",
    "eval_mode",
    "fold_calls",
    "forward_error",
    "model_device",
    "model_float_dtype",
    "model_total",
    "observe_forward",
    "point_infos",
    "structure_signature",
    "summarize_tensors",
]
