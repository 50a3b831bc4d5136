"""HTA's own numbers for each trace named on the command line, as JSON on stdout: what
hta_agreement.rs compares infer-doctor's analyses with. Run by the venv of scripts/real-servers/install-hta.sh.

Timestamps are kept exact (HTA_DISABLE_NS_ROUNDING=1, HTA's own switch): by default HTA rounds each event's
start up and its end down to whole microseconds, which loses up to a microsecond per kernel; infer-doctor keeps
Kineto's nanoseconds, and docs/TRACE.md says so.
"""
import json
import math
import os
import re
import sys

os.environ["HTA_DISABLE_NS_ROUNDING"] = "1"

import logging  # noqa: E402

logging.disable(logging.WARNING)

from hta.trace_analysis import TraceAnalysis  # noqa: E402


def number(value):
    value = float(value)
    return None if math.isnan(value) else value


STEP = re.compile(r"^execute_(?:.*_)?context_(\d+)\(\D*\d+.*\)_generation_(\d+)\(")


def steps(ta):
    """vLLM's engine steps read from HTA's own event frame: HTA has no step analysis, so its parse is the
    reference for the annotations' count and CPU duration per phase."""
    frame = ta.t.get_trace(0)
    symbols = ta.t.symbol_table.get_sym_table()
    phases = {}
    for name, cat, dur in zip(frame["name"], frame["cat"], frame["dur"]):
        match = STEP.match(symbols[name])
        if not match or symbols[cat] != "user_annotation":
            continue
        context, generation = int(match.group(1)), int(match.group(2))
        phase = "decode" if context == 0 else "mixed" if generation > 0 else "prefill"
        count, total = phases.get(phase, (0, 0.0))
        phases[phase] = (count + 1, total + float(dur))
    return {phase: {"count": count, "mean_dur": total / count} for phase, (count, total) in phases.items()}


def or_error(analysis):
    """HTA's result, or what it raised: on a CPU-only trace (vLLM on CPU) its GPU analyses raise."""
    try:
        return analysis()
    except (ValueError, IndexError) as error:
        return {"error": f"{type(error).__name__}: {error}"}


def analyse(path):
    # One file as rank 0: HTA's per-rank analyses default to rank 0, whatever rank the file names.
    ta = TraceAnalysis(trace_files={0: os.path.abspath(path)})
    out = {"steps": steps(ta)}
    out["temporal"] = or_error(lambda: temporal(ta))
    out["idle"] = or_error(lambda: idle(ta))
    out.update(rest(ta))
    return out


def temporal(ta):
    temporal = ta.get_temporal_breakdown(visualize=False)
    row = temporal.iloc[0] if len(temporal) else None
    return None if row is None else {
        "idle": number(row["idle_time(us)"]),
        "compute": number(row["compute_time(us)"]),
        "non_compute": number(row["non_compute_time(us)"]),
        "span": number(row["kernel_time(us)"]),
    }


def idle(ta):
    idle, _ = ta.get_idle_time_breakdown(ranks=[0], visualize=False)
    return [
        {"stream": int(r["stream"]), "category": r["idle_category"], "time": number(r["idle_time"])}
        for _, r in idle.iterrows()
    ]


def rest(ta):
    out = {}
    types, kernels = ta.get_gpu_kernel_breakdown(visualize=False)
    out["kernel_types"] = [{"kernel_type": r["kernel_type"], "sum": number(r["sum"])} for _, r in types.iterrows()]
    out["kernels"] = [
        {"kernel_type": r["kernel_type"], "name": r["name"], "sum": number(r["sum (us)"])}
        for _, r in kernels.iterrows()
    ]
    overlap = ta.get_comm_comp_overlap(visualize=False)
    out["overlap"] = number(overlap.iloc[0]["comp_comm_overlap_pctg"]) if len(overlap) else None
    launches = ta.get_cuda_kernel_launch_stats(ranks=[0], visualize=False).get(0)
    out["launches"] = None if launches is None or len(launches) == 0 else {
        "count": len(launches),
        "cpu_mean": number(launches["cpu_duration"].mean()),
        "gpu_mean": number(launches["gpu_duration"].mean()),
        "delay_mean": number(launches["launch_delay"].mean()),
    }
    memory = ta.get_memory_bw_summary(ranks=[0])
    out["memory"] = [
        {
            "name": name[-1] if isinstance(name, tuple) else name,
            "count": int(r[("memory_bw_gbps", "count")]),
            "mean": number(r[("memory_bw_gbps", "mean")]),
        }
        for name, r in memory.iterrows()
    ] if memory is not None and len(memory) else []
    queue = ta.get_queue_length_summary(ranks=[0])
    out["queue"] = [
        {
            "stream": int(key[-1]) if isinstance(key, tuple) else int(key),
            "mean": number(r[("queue_length", "mean")]),
            "max": number(r[("queue_length", "max")]),
        }
        for key, r in queue.iterrows()
    ] if queue is not None and len(queue) else []
    return out


print(json.dumps({path: analyse(path) for path in sys.argv[1:]}))
