"""torch.ops.ultramem.* against pure-PyTorch implementations of the same math (written here,
independently of the crate), gradcheck in float64, opcheck, torch.compile, and bad tensors.

Tolerances: the ABI computes in f64 and rounds once to the output dtype. Against a float64
PyTorch reference, a float64 output differs only by summation order (~1e-15 relative: 1e-12 is
used) and a float32 output by its one rounding (2^-24 relative: rtol 1e-6 leaves room for
cancellation in short sums). Selection tests draw continuous random values, so ties (which
torch.topk orders arbitrarily and the crate breaks to the lower index) have probability zero.
"""

import math

import pytest
from conftest import require

torch = require("torch")
import ultramem  # noqa: E402
from ultramem import UltramemError  # noqa: E402
from ultramem.nn import UltraMemV2  # noqa: E402

ops = torch.ops.ultramem
F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed, dtype=F64):
    return torch.randn(*shape, generator=gen(seed), dtype=dtype)


# --- pure-PyTorch references --------------------------------------------------------------


def ref_weighted_gather(rows, w, table):
    t, m, cn = w.shape
    dv = table.shape[1]
    vals = table[rows.long()].reshape(t, m, cn, dv // cn)
    return (vals * w[..., None]).sum(1).reshape(t, dv)


ACT = {
    0: lambda a: a,
    1: torch.relu,
    2: lambda a: torch.nn.functional.gelu(a, approximate="none"),
    3: torch.nn.functional.silu,
}


def ref_peer_ffn(rows, s, z, down, up, act):
    r = rows.long()
    phi = ACT[act]((down[r] * z[:, None, :]).sum(-1))  # [T, M]
    t, m, cn = s.shape
    dv = up.shape[1]
    vals = up[r].reshape(t, m, cn, dv // cn) * (s * phi[..., None])[..., None]
    return vals.sum(1).reshape(t, dv)


def ref_additive_topk(q, keys, k, k1):
    half = q.shape[-1] // 2
    n = keys.shape[2]
    s1 = torch.einsum("thd,hnd->thn", q[..., :half], keys[:, 0])
    s2 = torch.einsum("thd,hnd->thn", q[..., half:], keys[:, 1])
    v1, i1 = s1.topk(k1, dim=-1)
    v2, i2 = s2.topk(k1, dim=-1)
    grid = (v1[..., :, None] + v2[..., None, :]).flatten(-2)  # [T, H, K1*K1]
    score, cell = grid.topk(k, dim=-1)
    idx = i1.gather(-1, cell // k1) * n + i2.gather(-1, cell % k1)
    return idx, score


def ref_tucker_topk(q, keys, cores, u, v, m, k1):
    t, h, _, r, _ = q.shape
    n, cn = keys.shape[3], cores.shape[1]
    s_row = torch.einsum("thrd,hrnd->thrn", q[:, :, 0], keys[:, 0])
    s_col = torch.einsum("thrd,hrnd->thrn", q[:, :, 1], keys[:, 1])
    i1 = torch.einsum("hr,thrn->thn", u, s_row).topk(k1, dim=-1).indices
    i2 = torch.einsum("hr,thrn->thn", v, s_col).topk(k1, dim=-1).indices
    sr = s_row.gather(-1, i1[:, :, None, :].expand(t, h, r, k1))
    sc = s_col.gather(-1, i2[:, :, None, :].expand(t, h, r, k1))
    per_core = torch.einsum("thra,hcrs,thsb->thabc", sr, cores, sc).reshape(t, h, k1 * k1, cn)
    cell = per_core.sum(-1).topk(m, dim=-1).indices
    idx = i1.gather(-1, cell // k1) * n + i2.gather(-1, cell % k1)
    return idx, per_core.gather(2, cell[..., None].expand(t, h, m, cn))


def ref_score_fn(x, func):
    if func == 0:
        return x
    if func == 1:
        return torch.softmax(x, dim=2)
    if func == 2:
        return torch.relu(x)
    return torch.sigmoid(x)


# --- inputs ----------------------------------------------------------------------------------


def gather_inputs(seed, t=5, m=3, cn=2, n_rows=7, dv=6, dtype=F64):
    rows = torch.randint(0, n_rows, (t, m), generator=gen(seed), dtype=torch.int32)
    return rows, randn(t, m, cn, seed=seed + 1, dtype=dtype), randn(n_rows, dv, seed=seed + 2, dtype=dtype)


def peer_inputs(seed, t=4, m=3, cn=2, n_rows=6, dp=5, dv=4, dtype=F64):
    rows = torch.randint(0, n_rows, (t, m), generator=gen(seed), dtype=torch.int32)
    return (
        rows,
        randn(t, m, cn, seed=seed + 1, dtype=dtype),
        randn(t, dp, seed=seed + 2, dtype=dtype),
        randn(n_rows, dp, seed=seed + 3, dtype=dtype),
        randn(n_rows, dv, seed=seed + 4, dtype=dtype),
    )


def additive_inputs(seed, t=3, h=2, dk=6, n=7, dtype=F64):
    return randn(t, h, dk, seed=seed, dtype=dtype), randn(h, 2, n, dk // 2, seed=seed + 1, dtype=dtype)


def tucker_inputs(seed, t=3, h=2, r=2, dk=4, n=6, cn=2, dtype=F64):
    q = randn(t, h, 2, r, dk, seed=seed, dtype=dtype)
    keys = randn(h, 2, r, n, dk, seed=seed + 1, dtype=dtype)
    cores = randn(h, cn, r, r, seed=seed + 2, dtype=dtype)
    u, v = ultramem.tucker_proxy(cores)
    return q, keys, cores, u, v


# --- each op against PyTorch -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("cn", [1, 2])
def test_weighted_gather_matches_torch(seed, cn):
    rows, w, table = gather_inputs(seed, cn=cn)
    torch.testing.assert_close(ops.weighted_gather(rows, w, table), ref_weighted_gather(rows, w, table), rtol=1e-12, atol=1e-12)
    # float32 in, float32 out: the f64 result rounded once.
    w32, t32 = w.float(), table.float()
    out = ops.weighted_gather(rows, w32, t32)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref_weighted_gather(rows, w32.double(), t32.double()).float(), rtol=1e-6, atol=1e-6)


def test_weighted_gather_reads_bf16_and_f16_tables():
    rows, w, table = gather_inputs(7, dtype=torch.float32)
    for dt in (torch.bfloat16, torch.float16):
        low = table.to(dt)
        out = ops.weighted_gather(rows, w, low)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref_weighted_gather(rows, w.double(), low.double()).float(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("act", [0, 1, 2, 3])
def test_peer_ffn_matches_torch(act):
    args = peer_inputs(10 + act)
    torch.testing.assert_close(ops.peer_ffn(*args, act), ref_peer_ffn(*args, act), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k,k1", [(4, 4), (3, 5), (5, 7)])
def test_additive_topk_matches_torch(seed, k, k1):
    q, keys = additive_inputs(seed)
    score, idx = ops.additive_topk(q, keys, k, k1)
    want_idx, want_score = ref_additive_topk(q, keys, k, k1)
    assert idx.dtype == torch.int32
    assert torch.equal(idx.long(), want_idx)
    torch.testing.assert_close(score, want_score, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("cn,m,k1", [(1, 4, 4), (2, 5, 3), (2, 8, 6)])
def test_tucker_topk_matches_torch(seed, cn, m, k1):
    q, keys, cores, u, v = tucker_inputs(seed, cn=cn)
    score, idx = ops.tucker_topk(q, keys, cores, u, v, m, k1)
    want_idx, want_score = ref_tucker_topk(q, keys, cores, u, v, m, k1)
    assert torch.equal(idx.long(), want_idx)
    torch.testing.assert_close(score, want_score, rtol=1e-12, atol=1e-12)


def test_index_map_matches_torch():
    idx = torch.randint(0, 50, (4, 6), generator=gen(3), dtype=torch.int32)
    shuffle = torch.randperm(50, generator=gen(4)).to(torch.int32)
    out = ops.index_map(idx, shuffle, 12, 30, 40)
    assert torch.equal(out.long(), (shuffle[idx.long()].long() % 12 + 30) % 40)
    assert torch.equal(ops.index_map(idx, None, 12, 30, 40).long(), (idx.long() % 12 + 30) % 40)


def test_index_outputs_hold_every_possible_value():
    # N_tot past 2^31: int64 rows (an int32 output would have read back negative).
    idx = torch.tensor([0, 3], dtype=torch.int32)
    out = ops.index_map(idx, None, 1, 2**31 + 5, 2**32)
    assert out.dtype == torch.int64
    assert out.tolist() == [2**31 + 5, 2**31 + 5]
    # int64 in: int64 out; a negative index is the crate's error, never reinterpreted.
    out = ops.index_map(torch.tensor([4, 7]), None, 10, 0, 10)
    assert out.dtype == torch.int64 and out.tolist() == [4, 7]
    with pytest.raises(UltramemError, match="= -1 is out of range"):
        ops.index_map(torch.tensor([-1, 3], dtype=torch.int32), None, 10, 0, 10)
    # Small tables keep int32.
    assert ops.index_map(idx, None, 10, 0, 10).dtype == torch.int32


@pytest.mark.parametrize("func", [0, 1, 2, 3])
def test_score_fn_matches_torch(func):
    x = randn(3, 2, 5, 2, seed=20 + func)
    torch.testing.assert_close(ops.score_fn(x, func), ref_score_fn(x, func), rtol=1e-12, atol=1e-12)


# --- gradients -------------------------------------------------------------------------------


def test_gradcheck_weighted_gather():
    rows, w, table = gather_inputs(30)
    w.requires_grad_()
    table.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ops.weighted_gather(rows, a, b), (w, table))


@pytest.mark.parametrize("act", [0, 1, 2, 3])
def test_gradcheck_peer_ffn(act):
    rows, *floats = peer_inputs(40 + act)
    floats = [f.requires_grad_() for f in floats]
    assert torch.autograd.gradcheck(lambda s, z, d, u: ops.peer_ffn(rows, s, z, d, u, act), tuple(floats))


def test_gradcheck_additive_topk():
    q, keys = additive_inputs(50)
    q.requires_grad_()
    keys.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ops.additive_topk(a, b, 3, 5)[0], (q, keys))


def test_gradcheck_tucker_topk():
    q, keys, cores, u, v = tucker_inputs(60)
    for t in (q, keys, cores):
        t.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: ops.tucker_topk(a, b, c, u, v, 5, 3)[0], (q, keys, cores))


@pytest.mark.parametrize("func", [0, 1, 2, 3])
def test_gradcheck_score_fn(func):
    x = randn(2, 2, 4, 2, seed=70 + func).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: ops.score_fn(a, func), (x,))


def test_gradcheck_layer_module():
    layer = UltraMemV2(8, 4, 5, 3, 6, 4, heads=2, dtype=F64, seed=3)
    x = randn(3, 8, seed=80).requires_grad_()
    params = [p for p in layer.parameters()]
    names = [n for n, _ in layer.named_parameters()]

    def run(x, *ps):
        saved = [p.data for p in params]
        try:
            for p, new in zip(params, ps):
                p.data = new
            return torch.func.functional_call(layer, dict(zip(names, ps)), (x,))
        finally:
            for p, old in zip(params, saved):
                p.data = old

    inputs = (x, *[p.detach().clone().requires_grad_() for p in params])
    assert torch.autograd.gradcheck(run, inputs)


# --- opcheck and torch.compile ---------------------------------------------------------------


def opcheck_cases():
    rows, w, table = gather_inputs(90, dtype=torch.float32)
    p = peer_inputs(91, dtype=torch.float32)
    q, keys = additive_inputs(92, dtype=torch.float32)
    tq = tucker_inputs(93, dtype=torch.float32)
    x = randn(2, 2, 4, seed=94, dtype=torch.float32)
    grad = lambda *ts: [t.clone().requires_grad_() for t in ts]  # noqa: E731
    score, idx = ops.additive_topk(q, keys, 3, 4)
    tscore, tidx = ops.tucker_topk(*tq, 4, 3)
    return [
        (ops.weighted_gather.default, (rows, *grad(w, table))),
        (ops.weighted_gather_backward.default, (rows, w, table, randn(5, 6, seed=95, dtype=torch.float32))),
        (ops.peer_ffn.default, (p[0], *grad(*p[1:]), 2)),
        (ops.peer_ffn_backward.default, (*p, 2, randn(4, 4, seed=96, dtype=torch.float32))),
        (ops.additive_topk.default, (*grad(q, keys), 3, 4)),
        (ops.additive_topk_backward.default, (q, keys, idx, torch.ones_like(score))),
        (ops.tucker_topk.default, (*grad(*tq[:3]), *tq[3:], 4, 3)),
        (ops.tucker_topk_backward.default, (*tq, tidx, torch.ones_like(tscore))),
        (ops.index_map.default, (idx, None, 5, 1, 7)),
        (ops.score_fn.default, (*grad(x), 1)),
        (ops.score_fn_backward.default, (x, 1, torch.ones_like(x))),
    ]


@pytest.mark.parametrize("case", range(11))
def test_opcheck(case):
    op, args = opcheck_cases()[case]
    torch.library.opcheck(op, args)


def test_compiled_layer_matches_eager():
    torch.manual_seed(0)
    layer = UltraMemV2(16, 8, 6, 4, 8, 12, heads=2, seed=1)
    x = torch.randn(2, 5, 16, generator=gen(5))
    eager = layer(x)
    eager.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, eager, rtol=0, atol=0)
    for n, p in layer.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-6, atol=1e-6, msg=n)


def test_layer_module_matches_pure_torch_composition():
    layer = UltraMemV2(8, 4, 5, 3, 6, 4, heads=2, dtype=F64, seed=9)
    x = randn(4, 8, seed=11)
    eps = layer.eps

    def norm(a, g):
        return a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + eps) * g

    t = x.shape[0]
    q = norm((x @ layer.w_q.t()).reshape(t, 2, 2, 2, 4), layer.gamma_q)
    khat = norm(layer.keys, layer.gamma_k)
    idx, score = ref_tucker_topk(q, khat, layer.cores, layer.u, layer.v, 3, 3)
    rows = layer.shuffle.long()[idx.reshape(t, 6)] % 25
    y = ref_peer_ffn(rows, score.reshape(t, 6, 2), x @ layer.w_pre.t(), layer.down, layer.up, 0)
    torch.testing.assert_close(layer(x), y @ layer.w_out.t(), rtol=1e-10, atol=1e-12)


def test_layer_trains():
    layer = UltraMemV2(16, 8, 8, 4, 8, 8, seed=2)
    x = torch.randn(32, 16, generator=gen(1))
    target = torch.randn(32, 16, generator=gen(2))
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss = (layer(x) - target).square().mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        layer.refresh_proxy()
    assert loss.item() < 0.7 * first, (first, loss.item())


# --- bad tensors: the crate's message, never a crash ---------------------------------------


def bad_cases():
    rows, w, table = gather_inputs(100, dtype=torch.float32)
    q, keys = additive_inputs(101, dtype=torch.float32)
    nan_q = q.clone()
    nan_q[1, 0, 2] = math.nan
    far = rows.clone()
    far[2, 1] = 7
    return [
        ("int16 rows", lambda: ops.weighted_gather(rows.to(torch.int16), w, table), "dtype int16"),
        ("int rows as weights", lambda: ops.weighted_gather(rows, rows[..., None], table), "expected a float dtype"),
        ("wrong shape", lambda: ops.weighted_gather(rows, w[:, :2].contiguous(), table), "`weights` has shape [5, 2, 2]"),
        ("non-contiguous", lambda: ops.weighted_gather(rows, w, table.t().contiguous().t()), "not contiguous"),
        ("row past the table", lambda: ops.weighted_gather(far, w, table), "`rows[7]` = 7"),
        ("k too large", lambda: ops.additive_topk(q, keys, 50, 7), "exceeds"),
        ("NaN query", lambda: ops.additive_topk(nan_q, keys, 3, 3), "`q[14]` is NaN"),
        ("Dv not divisible", lambda: ops.weighted_gather(rows, w, table[:, :5].contiguous()), "weighted_gather"),
        ("bad activation", lambda: ops.peer_ffn(*peer_inputs(5, dtype=torch.float32), 9), "code 9"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_bad_tensors_raise_the_crates_message(case):
    what, call, message = bad_cases()[case]
    with pytest.raises(UltramemError) as e:
        call()
    assert message.lower() in str(e.value).lower(), (what, str(e.value))
