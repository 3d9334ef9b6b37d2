"""Per-call overhead of a tiny op from Python, on the CPU: the C ABI through ctypes, and
torch.ops.ultramem through torch.library's define + impl route and through the custom_op
decorator route.

The op is a weighted gather of 1 token x 1 slot from a 4 x 4 table (16 bytes read): its work is
nanoseconds, so the time per call is the overhead of the route. Each figure is the best of 7
repeats of N calls (the minimum is the least disturbed by the machine's other load).

    ULTRAMEM_LIB=target/release/libultramem.so PYTHONPATH=python python3 benches/python_overhead.py
"""

import ctypes
import platform
import sys
import timeit

import torch
from torch.utils.dlpack import to_dlpack

import ultramem
from ultramem._lib import dltensor, lib, library_path

N = 20000


def best_us(fn, number=N):
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def main():
    rows = torch.zeros((1, 1), dtype=torch.int32)
    w = torch.ones((1, 1, 1))
    table = torch.arange(16.0).reshape(4, 4)
    out = torch.empty((1, 4))
    f = lib.ultramem_weighted_gather_forward

    # 1. The C ABI alone: descriptors made once, one ctypes call per iteration.
    caps = [to_dlpack(t) for t in (rows, w, table, out)]
    ptrs = [dltensor(c) for c in caps]

    def abi_call():
        f(ptrs[0], ptrs[1], ptrs[2], ptrs[3], None)

    # 2. The C ABI with the DLPack wrapping of each tensor, per call (what a binding does).
    def abi_with_dlpack():
        c = (to_dlpack(rows), to_dlpack(w), to_dlpack(table), to_dlpack(out))
        f(dltensor(c[0]), dltensor(c[1]), dltensor(c[2]), dltensor(c[3]), None)

    # 3. torch.ops.ultramem (define + impl), output allocated by torch each call.
    op = torch.ops.ultramem.weighted_gather

    def torch_op():
        op(rows, w, table)

    # 4. The same implementation through the custom_op decorator.
    @torch.library.custom_op("ultramem_bench::weighted_gather", mutates_args=())
    def decorated(rows: torch.Tensor, weights: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        return ultramem.torch_ops._weighted_gather(rows, weights, table)

    def decorator_op():
        decorated(rows, w, table)

    # For scale: the cheapest torch op on the same tensors.
    def torch_add():
        torch.add(w, w)

    assert torch.equal(op(rows, w, table), decorated(rows, w, table))
    print(f"library: {library_path()}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"tiny weighted gather (T=1, M=1, N=4, Dv=4), best of 7 x {N} calls, microseconds per call:")
    rows_out = [
        ("C ABI via ctypes, descriptors prepared", abi_call),
        ("C ABI via ctypes, DLPack-wrapping 4 tensors per call", abi_with_dlpack),
        ("torch.ops.ultramem.weighted_gather (define + impl)", torch_op),
        ("torch.library.custom_op decorator route", decorator_op),
        ("torch.add on a 1-element tensor (for scale)", torch_add),
    ]
    for name, fn in rows_out:
        print(f"  {best_us(fn):7.2f} us  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
