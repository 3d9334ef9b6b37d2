#!/usr/bin/env bash
# Builds the test and bench executables on a machine without a GPU and copies them, with the
# GPU check script, into gpu-bundle/ (ignored by git) for a GPU machine that has no Rust.
#
#   scripts/build-gpu-bundle.sh            # then run gpu-bundle/gpu-check.sh there
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf gpu-bundle && mkdir -p gpu-bundle
# Cargo's JSON messages go through a file: they are too long for one command-line argument.
messages=$(mktemp)
trap 'rm -f "$messages"' EXIT
{ cargo test --release --all-features --no-run --message-format=json;
  cargo bench --all-features --no-run --message-format=json;
  cargo build --release --all-features --example memory_vs_moe --message-format=json;
  cargo build --release --all-features --example gpu_model --message-format=json; } \
    >"$messages" 2>/dev/null
python3 - "$messages" <<'PY'
import json, shutil, sys
wanted = ("differential", "bad_input", "ops", "memory_vs_moe", "gpu_model")
found = set()
with open(sys.argv[1]) as f:
    for line in f:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        exe = msg.get("executable")
        target = msg.get("target", {})
        # An example with `test = true` also builds its test harness: take the example itself.
        example_test = target.get("kind") == ["example"] and msg.get("profile", {}).get("test")
        if exe and not example_test and target.get("kind") in (["test"], ["bench"], ["example"]) and target.get("name") in wanted:
            shutil.copy(exe, f"gpu-bundle/{target['name']}")
            found.add(target["name"])
            print("bundled", target["name"])
missing = set(wanted) - found
if missing:
    sys.exit(f"not built: {sorted(missing)}")
PY
# The C ABI's library and the Python package, for the PyTorch-on-CUDA checks.
cargo build --release --all-features --lib 2>/dev/null
cp target/release/libultramem.so gpu-bundle/
mkdir -p gpu-bundle/python
cp -r python/ultramem python/tests gpu-bundle/python/
cp scripts/gpu-check.sh benches/torch_baselines.py benches/ncu_sum.py benches/abi_cuda_timing.py \
    benches/python_overhead.py scripts/model_vs_measured.py gpu-bundle/
# The committed model reports, to put the GPU's measurements beside.
mkdir -p gpu-bundle/model-results
cp -r benches/results/*-model-* gpu-bundle/model-results/ 2>/dev/null || true
ls -la gpu-bundle
