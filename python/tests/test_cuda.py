"""torch.ops.ultramem on CUDA tensors: the crate's PTX kernels on torch's current stream over
torch's memory, against the same ops on the CPU (the f64 reference rounded to f32).

Needs a CUDA device: without one every test here says SKIPPED (the CUDA path of the ABI is
then unverified on this machine). On the GPU check machine, which may lack pytest, run
``python3 test_cuda.py``: the runner at the bottom calls every test and fails loudly.

Tolerance: the kernels accumulate in f32 (short sums here, a few dozen terms), the CPU path in
f64 rounded once: 1e-4 relative to the magnitude covers f32 accumulation of these sizes and
is far below a wrong argument's O(1) error. Selections are compared exactly (continuous random
inputs: no ties).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import pytest  # noqa: E402
from conftest import require  # noqa: E402

torch = require("torch")
if not torch.cuda.is_available():
    pytest.skip(
        "SKIPPED: no CUDA device: the ABI's CUDA path is unverified here", allow_module_level=True
    )

import ultramem  # noqa: E402
from ultramem import UltramemError  # noqa: E402
from ultramem.nn import UltraMemV2  # noqa: E402

ops = torch.ops.ultramem
CUDA = torch.device("cuda")


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed):
    return torch.randn(*shape, generator=gen(seed))


def close(got, want):
    torch.testing.assert_close(got.cpu(), want.cpu(), rtol=1e-4, atol=1e-4)


def both(fn, *args):
    """``fn`` on the CPU tensors and on their CUDA copies."""
    cpu = fn(*args)
    gpu = fn(*[a.to(CUDA) if isinstance(a, torch.Tensor) else a for a in args])
    return cpu, gpu


def test_weighted_gather_and_its_backward_on_cuda():
    rows = torch.randint(0, 50, (64, 8), generator=gen(1), dtype=torch.int32)
    w = randn(64, 8, 2, seed=2)
    for table in (randn(50, 32, seed=3), randn(50, 32, seed=3).bfloat16()):
        cpu, gpu = both(ops.weighted_gather, rows, w, table)
        assert gpu.is_cuda and gpu.dtype == torch.float32
        close(gpu, cpu)
        dout = randn(64, 32, seed=4)
        cpu, gpu = both(ops.weighted_gather_backward, rows, w, table, dout)
        for c, g in zip(cpu, gpu):
            close(g, c)


def test_peer_ffn_on_cuda():
    rows = torch.randint(0, 40, (16, 6), generator=gen(5), dtype=torch.int32)
    args = (rows, randn(16, 6, 2, seed=6), randn(16, 12, seed=7), randn(40, 12, seed=8), randn(40, 10, seed=9))
    for act in range(4):
        cpu, gpu = both(ops.peer_ffn, *args, act)
        close(gpu, cpu)
        cpu, gpu = both(ops.peer_ffn_backward, *args, act, randn(16, 10, seed=10))
        for c, g in zip(cpu, gpu):
            close(g, c)


def test_topk_on_cuda():
    q, keys = randn(32, 2, 16, seed=11), randn(2, 2, 40, 8, seed=12)
    (cs, ci), (gs, gi) = both(ops.additive_topk, q, keys, 8, 16)
    assert torch.equal(gi.cpu(), ci)
    close(gs, cs)
    dscore = randn(32, 2, 8, seed=13)
    cpu, gpu = both(ops.additive_topk_backward, q, keys, ci, dscore)
    for c, g in zip(cpu, gpu):
        close(g, c)

    q = randn(32, 1, 2, 2, 16, seed=14)
    keys = randn(1, 2, 2, 30, 16, seed=15)
    cores = randn(1, 2, 2, 2, seed=16)
    u, v = ultramem.tucker_proxy(cores)
    (cs, ci), (gs, gi) = both(ops.tucker_topk, q, keys, cores, u, v, 12, 0)
    assert torch.equal(gi.cpu(), ci)
    close(gs, cs)
    cpu, gpu = both(ops.tucker_topk_backward, q, keys, cores, u, v, ci, randn(*cs.shape, seed=17))
    for c, g in zip(cpu, gpu):
        close(g, c)


def test_index_map_and_score_fn_on_cuda():
    idx = torch.randint(0, 100, (8, 16), generator=gen(18), dtype=torch.int32)
    shuffle = torch.randperm(100, generator=gen(19)).to(torch.int32)
    cpu, gpu = both(ops.index_map, idx, shuffle, 30, 7, 64)
    assert torch.equal(gpu.cpu(), cpu)
    x = randn(4, 2, 12, 2, seed=20)
    for func in range(4):
        cpu, gpu = both(ops.score_fn, x, func)
        close(gpu, cpu)


def test_layer_forward_backward_on_cuda_on_a_side_stream():
    layer = UltraMemV2(32, 8, 16, 8, 16, 16, heads=2, seed=3)
    x = randn(64, 32, seed=21)
    want = layer(x)
    want.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()
    gpu_layer = layer.to(CUDA)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        got = gpu_layer(x.to(CUDA))
        got.square().sum().backward()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    close(got, want)
    for n, p in gpu_layer.named_parameters():
        torch.testing.assert_close(p.grad.cpu(), grads[n], rtol=1e-3, atol=1e-3, msg=n)


def test_int64_indices_on_cuda():
    # int64 rows, idx and nu are narrowed on the device (each value checked); int64 outputs
    # widened there. Results equal the CPU path's; a negative value is the crate's error with
    # the value as written, for int64 and for int32.
    rows = torch.randint(0, 50, (16, 4), generator=gen(21), dtype=torch.int64)
    w = randn(16, 4, 1, seed=22)
    table = randn(50, 16, seed=23).bfloat16()
    cpu, gpu = both(ops.weighted_gather, rows, w, table)
    close(gpu, cpu)
    idx = torch.randint(0, 40, (3, 5), generator=gen(24), dtype=torch.int64)
    shuffle = torch.randperm(40, generator=gen(25))
    cpu, gpu = both(ops.index_map, idx, shuffle, 30, 7, 64)
    assert gpu.dtype == torch.int64 and torch.equal(gpu.cpu(), cpu)
    for dtype in (torch.int64, torch.int32):
        bad = rows.to(dtype).clone()
        bad[2, 1] = -3
        with pytest.raises(UltramemError, match="= -3 is out of range"):
            ops.weighted_gather(bad.to(CUDA), w.to(CUDA), table.to(CUDA))


def test_cuda_refuses_float64_and_bad_rows_with_the_crates_message():
    rows = torch.tensor([[0, 9]], dtype=torch.int32, device=CUDA)
    w = torch.ones(1, 2, 1, device=CUDA)
    table = torch.ones(4, 2, device=CUDA)
    with pytest.raises(UltramemError, match="float32"):
        ops.weighted_gather(rows, w.double(), table)
    with pytest.raises(UltramemError, match="rows"):
        ops.weighted_gather(rows, w, table)
    with pytest.raises(UltramemError):
        ops.weighted_gather(rows.cpu(), w, table)  # mixed devices


if __name__ == "__main__":
    failed = 0
    for name, fn in sorted(globals().items()):
        if name.startswith("test_") and callable(fn):
            try:
                fn()
                print(f"ok      {name}")
            except Exception as e:  # noqa: BLE001  (report every failure, then exit non-zero)
                failed += 1
                print(f"FAILED  {name}: {type(e).__name__}: {e}")
    print(f"{failed} failed")
    sys.exit(1 if failed else 0)
