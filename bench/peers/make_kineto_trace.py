"""A PyTorch profiler (Kineto) trace of a requested size, shaped like one rank of vLLM serving on a GPU, for
bench/peers/trace_vs_hta.sh: the fixtures are megabytes, the traces people struggle with are gigabytes.

Deterministic for a seed. Each engine step is what vLLM's worker records: its `execute_context_N(T)_generation_M(U)`
annotation, Python frames (`with_stack`, on by default: most of a real trace's events), aten ops launching
kernels through `cudaLaunchKernel` with their `ac2g` flows, or one `cudaGraphLaunch` replaying a decode step's
kernels, a tensor-parallel all-reduce on its own stream, and the host-to-device copy of the step's inputs.

Usage: python3 bench/peers/make_kineto_trace.py --size-mb 1024 --out trace.json [--seed 1]
"""
import argparse
import json
import random

GEMMS = [
    "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel__5x_cublas",
    "ampere_bf16_s16816gemm_bf16_128x64_ldg8_f2f_stages_64x3_tn",
    "nvjet_tst_128x64_64x8_2x1_v_bz_TNT",
]
ATTENTION = [
    "void flash::flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128, 64, 128, 4, false, false, cutlass::bfloat16_t>>(Flash_fwd_params)",
    "void vllm::paged_attention_v2_kernel<__nv_bfloat16, __nv_bfloat16, 128, 16, 128, (vllm::Fp8KVCacheDataType)0, false, 512>",
]
ELEMENTWISE = [
    "void vllm::rms_norm_kernel<c10::BFloat16>(c10::BFloat16*, c10::BFloat16 const*, c10::BFloat16 const*, float, int, int)",
    "void vllm::act_and_mul_kernel<c10::BFloat16, &vllm::silu_kernel<c10::BFloat16>, true>(c10::BFloat16*, c10::BFloat16 const*, int)",
    "void vllm::rotary_embedding_kernel<c10::BFloat16, true>(long const*, c10::BFloat16*, c10::BFloat16*, c10::BFloat16 const*, int, long, long, int, int, int)",
    "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, at::detail::Array<char*, 1> >(int, at::native::FillFunctor<float>, at::detail::Array<char*, 1>)",
]
ALL_REDUCE = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevComm*, unsigned long, ncclWork*)"
PYTHON = [
    "vllm/v1/worker/gpu_model_runner.py(1520): execute_model",
    "vllm/model_executor/models/llama.py(340): forward",
    "torch/nn/modules/module.py(1747): _call_impl",
    "vllm/model_executor/layers/linear.py(512): forward",
    "vllm/attention/layer.py(250): forward",
]
PID, TID, DEVICE, COMPUTE, NCCL = 4242, 4242, 0, 7, 20


class Writer:
    """Events written as they are made, so a gigabyte is never held in memory."""

    def __init__(self, out, limit):
        self.out, self.limit, self.written, self.first = out, limit, 0, True

    def event(self, event):
        text = json.dumps(event, separators=(", ", ": "))
        self.out.write(("  " if self.first else ",\n  ") + text)
        self.first = False
        self.written += len(text) + 4

    def full(self):
        return self.written >= self.limit


def header(rank):
    return {
        "schemaVersion": 1,
        "deviceProperties": [{
            "id": 0, "name": "NVIDIA H100 80GB HBM3", "totalGlobalMem": 85029158912,
            "computeMajor": 9, "computeMinor": 0, "maxThreadsPerBlock": 1024,
            "maxThreadsPerMultiprocessor": 2048, "regsPerBlock": 65536, "warpSize": 32,
            "sharedMemPerBlock": 49152, "numSms": 132,
        }],
        "distributedInfo": {"backend": "nccl", "rank": rank, "world_size": 2},
        "with_stack": 1,
        "vllm_version": "0.32.0",
        "displayTimeUnit": "ms",
        "baseTimeNanoseconds": 1765000000000000000,
    }


def step(w, rng, clock, gpu_clock, correlation, number):
    """One engine step from `clock` (CPU µs); returns the CPU and GPU clocks after it and the next correlation."""
    prefill = number % 16 == 0
    requests = rng.randint(8, 64)
    tokens = rng.randint(512, 4096) if prefill else requests
    name = (f"execute_context_1({tokens})_generation_{requests - 1}({requests - 1})" if prefill
            else f"execute_context_0(0)_generation_{requests}({requests})")
    start = clock
    events = []
    gpu = max(gpu_clock, clock + 30.0)

    def launch(api, cpu_ts, kernels, stream=COMPUTE, category="kernel"):
        nonlocal correlation, gpu
        correlation += 1
        cpu_dur = rng.uniform(3.0, 8.0)
        events.append({"ph": "X", "cat": "cuda_runtime", "name": api, "pid": PID, "tid": TID,
                       "ts": round(cpu_ts, 3), "dur": round(cpu_dur, 3),
                       "args": {"cbid": 211, "correlation": correlation}})
        events.append({"ph": "s", "id": correlation, "pid": PID, "tid": TID, "ts": round(cpu_ts, 3),
                       "cat": "ac2g", "name": "ac2g"})
        gpu = max(gpu, cpu_ts + cpu_dur + rng.uniform(2.0, 20.0))
        for kernel, dur in kernels:
            args = {"device": DEVICE, "stream": stream, "correlation": correlation,
                    "grid": [132, 1, 1], "block": [128, 1, 1]}
            if category == "gpu_memcpy":
                args.update({"bytes": int(dur * 20_000), "memory bandwidth (GB/s)": 20.0})
            events.append({"ph": "X", "cat": category, "name": kernel, "pid": DEVICE, "tid": stream,
                           "ts": round(gpu, 3), "dur": round(dur, 3), "args": args})
            if stream == COMPUTE:
                gpu += dur + rng.uniform(0.5, 3.0)
        events.append({"ph": "f", "id": correlation, "pid": DEVICE, "tid": stream, "ts": round(gpu, 3),
                       "cat": "ac2g", "name": "ac2g", "bp": "e"})
        return cpu_ts + cpu_dur

    t = clock + 5.0
    # The step's inputs, copied to the GPU first.
    t = launch("cudaMemcpyAsync", t, [("Memcpy HtoD (Pinned -> Device)", rng.uniform(2.0, 6.0))],
               category="gpu_memcpy")
    layers = 32
    if prefill:
        for layer in range(layers):
            op_start = t
            for kernel, dur in [(ELEMENTWISE[0], 8.0), (GEMMS[0], tokens * 0.05), (ELEMENTWISE[2], 6.0),
                                (ATTENTION[0], tokens * 0.02), (GEMMS[1], tokens * 0.02),
                                (ELEMENTWISE[1], 10.0), (GEMMS[2], tokens * 0.07)]:
                t = launch("cudaLaunchKernel", t + rng.uniform(4.0, 12.0), [(kernel, rng.uniform(0.8, 1.2) * dur)])
            events.append({"ph": "X", "cat": "cpu_op", "name": "aten::linear", "pid": PID, "tid": TID,
                           "ts": round(op_start, 3), "dur": round(t - op_start, 3),
                           "args": {"External id": correlation, "Sequence number": layer}})
            t = launch("cudaLaunchKernel", t + 2.0, [(ALL_REDUCE, rng.uniform(20.0, 60.0))], stream=NCCL)
    else:
        # A decode step is one CUDA-graph replay: every layer's kernels share the launch's correlation.
        kernels = []
        for _ in range(layers):
            kernels += [(ELEMENTWISE[0], rng.uniform(2.0, 4.0)), (GEMMS[2], rng.uniform(8.0, 14.0)),
                        (ATTENTION[1], rng.uniform(5.0, 5.0 + requests * 0.2)), (GEMMS[1], rng.uniform(4.0, 8.0)),
                        (ELEMENTWISE[1], rng.uniform(2.0, 3.0)), (GEMMS[2], rng.uniform(10.0, 18.0))]
        t = launch("cudaGraphLaunch", t + rng.uniform(10.0, 30.0), kernels)
        t = launch("cudaLaunchKernel", t + 2.0, [(ALL_REDUCE, rng.uniform(15.0, 40.0))], stream=NCCL)
    # Sampling: a few small kernels launched one by one, then the wait for the GPU.
    for kernel in ELEMENTWISE[3:] * 4:
        t = launch("cudaLaunchKernel", t + rng.uniform(3.0, 9.0), [(kernel, rng.uniform(1.5, 4.0))])
    t = max(t, gpu) + rng.uniform(20.0, 80.0)
    events.append({"ph": "X", "cat": "user_annotation", "name": name, "pid": PID, "tid": TID,
                   "ts": round(start, 3), "dur": round(t - start, 3), "args": {"External id": correlation}})
    # Python frames under the step: the bulk of a with_stack trace, which HTA loads and infer-doctor skips.
    frames = int((t - start) / 6.0)
    for i in range(frames):
        at = start + (t - start) * i / max(frames, 1)
        events.append({"ph": "X", "cat": "python_function", "name": PYTHON[i % len(PYTHON)], "pid": PID,
                       "tid": TID, "ts": round(at, 3), "dur": round(rng.uniform(1.0, 5.0), 3),
                       "args": {"Python parent id": i, "Python id": i + 1, "Python module id": 0}})
    events.sort(key=lambda e: e["ts"])
    for event in events:
        w.event(event)
    return t + rng.uniform(5.0, 40.0), gpu, correlation


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rank", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with open(args.out, "w") as out:
        head = json.dumps(header(args.rank), indent=2)
        out.write(head[:-2] + ',\n  "traceEvents": [\n')
        w = Writer(out, args.size_mb * 1e6 - len(head))
        w.event({"ph": "M", "name": "process_name", "pid": DEVICE, "tid": 0, "args": {"name": "GPU 0"}})
        # Correlation ids count every CUDA call since the process began: large by the time a profile starts.
        clock, gpu, correlation, number = 1_000.0, 0.0, 1_000_000, 0
        while not w.full():
            clock, gpu, correlation = step(w, rng, clock, gpu, correlation, number)
            number += 1
        out.write('\n  ],\n  "traceName": "' + args.out + '"\n}\n')


if __name__ == "__main__":
    main()
