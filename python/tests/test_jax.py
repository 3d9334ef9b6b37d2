"""ultramem.jax: the forward ops on JAX arrays through DLPack (eager), against jax.numpy math."""

import numpy as np
import pytest
from conftest import require

jax = require("jax")
jnp = jax.numpy
uj = pytest.importorskip("ultramem.jax")


def test_weighted_gather_matches_jax_numpy():
    key = jax.random.PRNGKey(0)
    k1, k2, k3 = jax.random.split(key, 3)
    rows = jax.random.randint(k1, (5, 3), 0, 7, dtype=jnp.int32)
    w = jax.random.normal(k2, (5, 3, 2))
    table = jax.random.normal(k3, (7, 6))
    out = uj.weighted_gather(rows, w, table)
    want = (table[rows].reshape(5, 3, 2, 3) * w[..., None]).sum(1).reshape(5, 6)
    assert isinstance(out, jax.Array)
    np.testing.assert_allclose(np.asarray(out), np.asarray(want), rtol=1e-6, atol=1e-6)


def test_peer_ffn_matches_jax_numpy():
    ks = jax.random.split(jax.random.PRNGKey(1), 5)
    rows = jax.random.randint(ks[0], (4, 3), 0, 6, dtype=jnp.int32)
    s = jax.random.normal(ks[1], (4, 3, 1))
    z = jax.random.normal(ks[2], (4, 5))
    down = jax.random.normal(ks[3], (6, 5))
    up = jax.random.normal(ks[4], (6, 4))
    out = uj.peer_ffn(rows, s, z, down, up, 1)
    alpha = jnp.maximum((down[rows] * z[:, None, :]).sum(-1), 0.0)
    want = (up[rows] * (s[..., 0] * alpha)[..., None]).sum(1)
    np.testing.assert_allclose(np.asarray(out), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_additive_topk_matches_jax_numpy():
    ks = jax.random.split(jax.random.PRNGKey(2), 2)
    q = jax.random.normal(ks[0], (3, 2, 6))
    keys = jax.random.normal(ks[1], (2, 2, 7, 3))
    score, idx = uj.additive_topk(q, keys, 4, 5)
    s1 = jnp.einsum("thd,hnd->thn", q[..., :3], keys[:, 0])
    s2 = jnp.einsum("thd,hnd->thn", q[..., 3:], keys[:, 1])
    full = (s1[..., :, None] + s2[..., None, :]).reshape(3, 2, 49)
    want_score, want_idx = jax.lax.top_k(full, 4)
    assert np.array_equal(np.asarray(idx), np.asarray(want_idx))
    np.testing.assert_allclose(np.asarray(score), np.asarray(want_score), rtol=1e-5, atol=1e-5)


def test_index_map_and_score_fn():
    idx = jnp.arange(12, dtype=jnp.int32).reshape(3, 4)
    np.testing.assert_array_equal(np.asarray(uj.index_map(idx, None, 5, 2, 6)), np.asarray((idx % 5 + 2) % 6))
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 2, 5))
    np.testing.assert_allclose(
        np.asarray(uj.score_fn(x, 1)), np.asarray(jax.nn.softmax(x, axis=2)), rtol=1e-6, atol=1e-6
    )


def test_bad_array_raises_the_crates_message():
    from ultramem import UltramemError

    rows = jnp.zeros((2, 3), dtype=jnp.float32)
    with pytest.raises(UltramemError, match="indices are int32, uint32 or int64"):
        uj.weighted_gather(rows, jnp.ones((2, 3, 1)), jnp.ones((4, 2)))


def test_index_outputs_hold_every_possible_value():
    # N_tot past 2^31: an int32 output would read back negative, and JAX without x64 would
    # truncate an int64 one, so the call raises there and returns int64 with x64 on.
    idx = jnp.array([0, 3], dtype=jnp.int32)
    if not jax.config.jax_enable_x64:
        with pytest.raises(OverflowError, match="jax_enable_x64"):
            uj.index_map(idx, None, 1, 2**31 + 5, 2**32)
    with jax.enable_x64(True):
        out = uj.index_map(jnp.array([0, 3], dtype=jnp.int32), None, 1, 2**31 + 5, 2**32)
        assert out.dtype == jnp.int64
        assert np.asarray(out).tolist() == [2**31 + 5, 2**31 + 5]
        # int64 in, int64 out; a negative index is the crate's error.
        out = uj.index_map(jnp.array([4, 7], dtype=jnp.int64), None, 10, 0, 10)
        assert out.dtype == jnp.int64 and np.asarray(out).tolist() == [4, 7]
        from ultramem import UltramemError

        with pytest.raises(UltramemError, match="= -1 is out of range"):
            uj.index_map(jnp.array([-1, 3], dtype=jnp.int64), None, 10, 0, 10)
    # Small tables keep int32.
    assert uj.index_map(idx, None, 10, 0, 10).dtype == jnp.int32
