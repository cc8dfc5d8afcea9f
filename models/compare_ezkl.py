#!/usr/bin/env python3
"""Measures EZKL and sn2 side by side on the same ONNX files: CPU seconds of one whole prove,
loading the proving key included, each in a process of its own. A measurement, not a test.
sn2's figure is the median of `--sn2-runs` proves (5): one process of a third of a second is
at the mercy of a noisy machine, where EZKL's half a minute averages the noise out.

    python3 -m venv /tmp/ezkl && /tmp/ezkl/bin/pip install ezkl==23.0.5 onnx==1.23.2 numpy
    /tmp/ezkl/bin/python models/compare_ezkl.py --sn2 target/release/sn2 models/digits-lstm ...

For each model folder (model.onnx and calibration.json) it runs EZKL's pipeline (settings with
public input and output and fixed weights, calibrated for resources on the folder's first
calibration samples, compiled, set up, a witness) and times `ezkl.prove`; then sn2's import,
setup, and `sn2 prove`. EZKL's SRS is generated locally with `gen_srs` (insecure, for timing
only: this machine cannot download the public one). Prints a markdown table.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def child_cpu(command):
    """Runs `command`; returns (CPU seconds of the child, wall seconds, peak RSS in MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, after.ru_maxrss / 1024


def ezkl_step(code, timeout):
    """Runs a step of EZKL's Python API in a child process, with a time limit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    try:
        subprocess.run([sys.executable, "-c", "import ezkl\n" + code], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, subprocess.CalledProcessError):
        return None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, time.monotonic() - start, after.ru_maxrss / 1024


def measure_ezkl(folder, work, timeout):
    model = os.path.join(folder, "model.onnx")
    samples = json.load(open(os.path.join(folder, "calibration.json")))["inputs"]
    data = os.path.join(work, "input.json")
    json.dump({"input_data": [samples[0]]}, open(data, "w"))
    calibration = os.path.join(work, "calibration.json")
    json.dump({"input_data": [sum(samples[:8], [])]}, open(calibration, "w"))
    paths = {name: os.path.join(work, name) for name in
             ["settings.json", "model.compiled", "kzg.srs", "pk.key", "vk.key", "witness.json", "proof.json"]}
    setup = f"""
args = ezkl.PyRunArgs()
args.input_visibility = "public"
args.output_visibility = "public"
args.param_visibility = "fixed"
args.variables = [("N", 1), ("batch_size", 1)]
ezkl.gen_settings({model!r}, {paths['settings.json']!r}, py_run_args=args)
ezkl.calibrate_settings({data!r}, {model!r}, {paths['settings.json']!r}, "resources")
ezkl.compile_circuit({model!r}, {paths['model.compiled']!r}, {paths['settings.json']!r})
import json
logrows = json.load(open({paths['settings.json']!r}))["run_args"]["logrows"]
ezkl.gen_srs({paths['kzg.srs']!r}, logrows)
"""
    if ezkl_step(setup, timeout) is None:
        return {"ezkl": "settings did not finish"}
    settings = json.load(open(paths["settings.json"]))
    keys = ezkl_step(f"ezkl.setup({paths['model.compiled']!r}, {paths['vk.key']!r}, {paths['pk.key']!r}, {paths['kzg.srs']!r})",
                     timeout)
    if keys is None:
        return {"ezkl": f"setup did not finish in {timeout} s", "logrows": settings["run_args"]["logrows"]}
    witness = ezkl_step(f"ezkl.gen_witness({data!r}, {paths['model.compiled']!r}, {paths['witness.json']!r})", timeout)
    prove = ezkl_step(f"ezkl.prove({paths['witness.json']!r}, {paths['model.compiled']!r}, {paths['pk.key']!r}, "
                      f"{paths['proof.json']!r}, {paths['kzg.srs']!r})", timeout)
    result = {
        "logrows": settings["run_args"]["logrows"],
        "ezkl setup cpu": keys[0],
        "ezkl pk MB": os.path.getsize(paths["pk.key"]) / 1e6,
        "ezkl witness cpu": witness[0] if witness else None,
    }
    if prove is None:
        result["ezkl"] = f"prove did not finish in {timeout} s"
    else:
        result["ezkl prove cpu"] = prove[0]
        result["ezkl prove wall"] = prove[1]
    return result


def measure_sn2(sn2, folder, work, runs):
    store = os.path.join(work, "store")
    model = os.path.join(folder, "model.onnx")
    subprocess.run([sn2, "model", "import", model, "--calibration", os.path.join(folder, "calibration.json"),
                    "--models-dir", store, "--name", "bench"], check=True, stdout=subprocess.DEVNULL)
    setup = child_cpu([sn2, "model", "setup", "bench", "--models-dir", store])
    samples = json.load(open(os.path.join(folder, "calibration.json")))["inputs"]
    data = os.path.join(work, "sn2-input.json")
    json.dump({"input_data": [samples[0]]}, open(data, "w"))
    miner = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"  # any hotkey: the binding's input
    proves = sorted(child_cpu([sn2, "prove", "--model", "bench", "--input", data,
                               "--out", os.path.join(work, "sn2-proof.json"), "--miner", miner,
                               "--models-dir", store])
                    for _ in range(runs))
    median = proves[len(proves) // 2]
    return {"sn2 setup cpu": setup[0], "sn2 prove cpu": median[0], "sn2 prove wall": median[1],
            "sn2 prove cpu range": [proves[0][0], proves[-1][0]]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sn2", required=True)
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per EZKL step")
    parser.add_argument("--sn2-runs", type=int, default=5, help="sn2 proves measured (the median is shown)")
    parser.add_argument("folders", nargs="+")
    args = parser.parse_args()
    rows = []
    for folder in args.folders:
        with tempfile.TemporaryDirectory() as work:
            row = {"model": os.path.basename(os.path.normpath(folder))}
            row.update(measure_sn2(args.sn2, folder, work, max(1, args.sn2_runs)))
            row.update(measure_ezkl(folder, work, args.timeout))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| model | EZKL logrows | EZKL setup CPU | EZKL proving key | EZKL prove CPU | sn2 prove CPU (median) | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ezkl = r.get("ezkl prove cpu")
        ratio = f"{ezkl / r['sn2 prove cpu']:.0f}x" if ezkl else "—"
        prove = f"{ezkl:.2f} s" if ezkl else r.get("ezkl", "—")
        setup = f"{r['ezkl setup cpu']:.1f} s" if "ezkl setup cpu" in r else "—"
        key = f"{r['ezkl pk MB']:.0f} MB" if "ezkl pk MB" in r else "—"
        print(f"| {r['model']} | {r.get('logrows', '—')} | {setup} | {key} | {prove} | {r['sn2 prove cpu']:.2f} s | {ratio} |")


if __name__ == "__main__":
    main()
