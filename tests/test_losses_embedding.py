"""Behaviour of the embedding, contrastive and ranking families that the catalog-wide suite cannot express:
unbatched inputs, refused targets, degenerate batches (no pairs, batch of 1 or 2), the tutorial's InfoNCE
numbers, the SimCLR equivalence of nt_xent, and MoCo's stop-gradient default.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossd.client import InvalidArgumentError, LossClient


def _rng() -> np.random.Generator:
    return np.random.default_rng(7)


# ---------------------------------------------------------------------------------------------------- unbatched


@pytest.mark.parametrize("loss", ["triplet_margin", "triplet_margin_with_distance"])
def test_unbatched_triplet_equals_a_batch_of_one(client: LossClient, loss: str) -> None:
    """A (D,) triplet gives the value of the (1, D) batch, and a 0-d loss under reduction "none"."""
    a, p, n = _rng().normal(size=(3, 5))
    single = client.compute(loss, inputs={"anchor": a, "positive": p, "negative": n}, reduction="none")
    batch = client.compute(loss, inputs={"anchor": a[None], "positive": p[None], "negative": n[None]},
                           reduction="none")
    assert np.shape(single) == () and np.shape(batch) == (1,)
    assert float(single) == pytest.approx(float(batch[0]), rel=1e-12)
    expected = max(0.0, np.linalg.norm(a - p + 1e-6) - np.linalg.norm(a - n + 1e-6) + 1.0)
    assert float(single) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_unbatched_cosine_embedding_takes_a_scalar_target(client: LossClient) -> None:
    """cosine_embedding with (D,) inputs takes a 0-d target and answers a 0-d loss."""
    x1, x2 = np.array([1.0, 0.0, 0.0]), np.array([1.0, 1.0, 0.0])
    got = client.compute("cosine_embedding", inputs={"input1": x1, "input2": x2, "target": np.array(-1.0)},
                         reduction="none")
    assert np.shape(got) == ()
    assert float(got) == pytest.approx(1 / math.sqrt(2), rel=1e-9)


def test_unbatched_ranking_list_answers_a_scalar(client: LossClient) -> None:
    """An (L,) list is one query: reduction "none" answers a 0-d value."""
    got = client.compute("pairwise_hinge", inputs={"scores": np.array([2.0, 0.5, 0.0]),
                                                   "relevance": np.array([2, 1, 0])}, reduction="none")
    # pairs (0,1): 1 - 1.5 -> 0; (0,2): 1 - 2 -> 0; (1,2): 1 - 0.5 = 0.5; mean over 3 pairs
    assert np.shape(got) == () and float(got) == pytest.approx(0.5 / 3)


# ---------------------------------------------------------------------------------------------------- ±1 targets


@pytest.mark.parametrize(("loss", "inputs"), [
    ("hinge_embedding", {"input": np.array([0.5, 1.5]), "target": np.array([1.0, 0.0])}),
    ("margin_ranking", {"input1": np.array([0.5, 1.5]), "input2": np.array([1.0, 0.0]),
                        "target": np.array([1, 0], dtype=np.int64)}),
    ("cosine_embedding", {"input1": np.ones((2, 3)), "input2": np.eye(2, 3), "target": np.array([1.0, 2.0])}),
])
def test_targets_other_than_plus_minus_one_are_refused(client: LossClient, loss: str, inputs: dict) -> None:
    """A target of 0 (torch's own margin_ranking samples) or 2 is refused on inputs[target]."""
    with pytest.raises(InvalidArgumentError) as err:
        client.compute(loss, inputs=inputs)
    assert err.value.fields == ["inputs[target]"]
    assert "-1 or +1" in str(err.value)


def test_integer_and_float_targets_agree(client: LossClient) -> None:
    """An int64 ±1 target (torch's samples use int64) gives the float target's value."""
    x1, x2, y = np.array([0.3, -0.2, 1.0]), np.array([0.1, 0.4, 2.0]), np.array([1, -1, 1])
    as_int = client.compute("margin_ranking", inputs={"input1": x1, "input2": x2, "target": y}, margin=0.1)
    as_float = client.compute("margin_ranking", inputs={"input1": x1, "input2": x2, "target": y.astype(float)},
                              margin=0.1)
    assert as_int == pytest.approx(as_float, rel=1e-15)
    assert as_int == pytest.approx(np.maximum(0, -y * (x1 - x2) + 0.1).mean())


# ---------------------------------------------------------------------------------------------------- ranking


@pytest.mark.parametrize("loss", ["pairwise_hinge", "lambda_rank"])
def test_query_with_all_equal_relevance_contributes_zero(client: LossClient, loss: str) -> None:
    """A query without pairs has loss 0 and zero gradient, and still counts in the mean over queries."""
    scores = np.array([[0.3, -1.0, 2.0, 0.1], [0.5, 0.2, -0.4, 1.3]])
    relevance = np.array([[1, 1, 1, 1], [2, 0, 1, 0]])
    per_query, grads = client.gradient(loss, inputs={"scores": scores, "relevance": relevance}, reduction="none",
                                       wrt=["scores"], grad_output=np.ones(2))
    assert per_query[0] == 0.0 and per_query[1] > 0
    assert np.all(grads["scores"][0] == 0.0)
    mean = client.compute(loss, inputs={"scores": scores, "relevance": relevance})
    assert mean == pytest.approx(per_query[1] / 2, rel=1e-12)


def test_lambda_rank_at_k_by_hand(client: LossClient) -> None:
    """NDCG@2 worked by hand: a pair whose two items both rank below position 2 adds nothing."""
    scores, rel = np.array([3.0, 2.0, 1.0, 0.0]), np.array([0, 0, 1, 0])
    # IDCG@2 = 1. Pairs: (2,0) ranks 3/1: |dNDCG| = 1 * |0 - 1|; (2,1) ranks 3/2: 1/log2(3); (2,3) ranks 3/4: 0.
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    expected = softplus(2.0) + softplus(1.0) / math.log2(3)
    assert client.compute("lambda_rank", inputs={"scores": scores, "relevance": rel}, k=2) == pytest.approx(expected)
    # without the cutoff the (2,3) pair counts too: |D(3) - D(4)| = 1/2 - 1/log2(5), IDCG = 1
    full = (softplus(2.0) * (1 - 0.5) + softplus(1.0) * (1 / math.log2(3) - 0.5)
            + softplus(-1.0) * (0.5 - 1 / math.log2(5)))
    assert client.compute("lambda_rank", inputs={"scores": scores, "relevance": rel}) == pytest.approx(full)


def test_negative_relevance_is_refused(client: LossClient) -> None:
    """Relevance labels must be >= 0."""
    with pytest.raises(InvalidArgumentError) as err:
        client.compute("lambda_rank", inputs={"scores": np.zeros(3), "relevance": np.array([1, -1, 0])})
    assert err.value.fields == ["inputs[relevance]"]


# ---------------------------------------------------------------------------------------------------- nt_xent, circle


def test_nt_xent_without_a_positive_pair_is_refused(client: LossClient) -> None:
    """All labels distinct: the mean over positive pairs is undefined (pml says 0, optax NaN), so it is refused."""
    with pytest.raises(InvalidArgumentError) as err:
        client.compute("nt_xent", inputs={"embeddings": _rng().normal(size=(4, 3)), "labels": np.arange(4)})
    assert err.value.fields == ["inputs[labels]"]


def test_nt_xent_none_lists_the_ordered_positive_pairs(client: LossClient) -> None:
    """Reduction "none" answers one value per ordered positive pair (a != p)."""
    labels = np.array([0, 0, 0, 1, 2])  # 3*2 ordered pairs of label 0
    got = client.compute("nt_xent", inputs={"embeddings": _rng().normal(size=(5, 3)), "labels": labels},
                         reduction="none")
    assert np.shape(got) == (6,)


def test_nt_xent_equals_the_simclr_cross_entropy_form(client: LossClient) -> None:
    """Two views with labels [0..N-1, 0..N-1] give SimCLR's CE over sim/tau with the diagonal masked."""
    z = torch.from_numpy(_rng().normal(size=(8, 5)))
    sim = F.normalize(z, dim=1) @ F.normalize(z, dim=1).T / 0.5
    sim.fill_diagonal_(float("-inf"))
    partner = torch.tensor([4, 5, 6, 7, 0, 1, 2, 3])
    expected = F.cross_entropy(sim, partner).item()
    got = client.compute("simclr", inputs={"embeddings": z.numpy(), "labels": np.array([0, 1, 2, 3] * 2)},
                         temperature=0.5)
    assert got == pytest.approx(expected, rel=1e-12)


def test_circle_without_a_positive_pair_is_zero(client: LossClient) -> None:
    """Circle loss: an anchor with no positive (or no negative) scores 0, so an all-distinct batch gives 0."""
    emb = _rng().normal(size=(4, 3))
    value, grads = client.gradient("circle", inputs={"embeddings": emb, "labels": np.arange(4)},
                                   wrt=["embeddings"])
    assert value == 0.0 and np.all(grads["embeddings"] == 0.0)
    assert client.compute("circle", inputs={"embeddings": emb, "labels": np.zeros(4, dtype=np.int64)}) == 0.0


# ---------------------------------------------------------------------------------------------------- info_nce


def test_info_nce_batch_of_two(client: LossClient) -> None:
    """N=2: each row's only positive is the other; the standard loss is 0, the seed's double count log 2."""
    f = _rng().normal(size=(2, 4))
    assert client.compute("info_nce", inputs={"features": f}) == pytest.approx(0.0, abs=1e-15)
    seed = client.compute("info_nce", inputs={"features": f}, denominator="seed")
    assert seed == pytest.approx(math.log(2), rel=1e-12)


def test_info_nce_batch_of_one(client: LossClient) -> None:
    """N=1: the seed's positive is the row itself, loss 0 with zero gradient; the standard form is refused."""
    f = _rng().normal(size=(1, 4))
    value, grads = client.gradient("info_nce", inputs={"features": f}, denominator="seed", wrt=["features"])
    assert value == 0.0 and np.all(grads["features"] == 0.0)
    with pytest.raises(InvalidArgumentError) as err:
        client.compute("info_nce", inputs={"features": f})
    assert err.value.fields == ["inputs[features]"]


def test_info_nce_seed_denominator_reproduces_the_tutorial(client: LossClient) -> None:
    """denominator="seed" with raw dot products equals the tutorial's formula, written out naively here."""
    f = _rng().normal(size=(5, 3)) * 0.2
    sim = np.exp(f @ f.T / 0.07)
    n = len(f)
    pos = np.array([sim[i, (i - 1) % n] + sim[i, (i + 1) % n] for i in range(n)])
    neg = sim.sum(axis=1) - np.diag(sim)
    expected = -np.mean(np.log(pos / (pos + neg)))
    got = client.compute("InfoNCELoss", inputs={"features": f}, denominator="seed", normalize=False)
    assert got == pytest.approx(expected, rel=1e-12)


def test_info_nce_does_not_overflow_on_large_raw_features(client: LossClient) -> None:
    """Unnormalised features with similarities ~1e6/tau stay finite (log-sum-exp, no naive exp)."""
    f = _rng().normal(size=(4, 3)) * 1000
    value, grads = client.gradient("info_nce", inputs={"features": f.astype(np.float32)}, normalize=False,
                                   wrt=["features"])
    assert math.isfinite(value) and np.all(np.isfinite(grads["features"]))


def test_info_nce_requires_its_features(client: LossClient) -> None:
    """Leaving out the only role is refused on inputs[features] (the generic test cannot send zero inputs)."""
    with pytest.raises(InvalidArgumentError) as err:
        client.compute("info_nce", inputs={"other": np.zeros(2)})
    assert "inputs[features]" in err.value.fields


# ---------------------------------------------------------------------------------------------------- moco


def test_moco_differentiates_only_the_query_by_default(client: LossClient) -> None:
    """Gradient without wrt returns the query's gradient only; key and queue are differentiable on request."""
    rng = _rng()
    inputs = {"query": rng.normal(size=(3, 4)), "key": rng.normal(size=(3, 4)), "queue": rng.normal(size=(5, 4))}
    _, grads = client.gradient("moco_info_nce", inputs=inputs)
    assert sorted(grads) == ["query"]
    _, grads = client.gradient("moco_info_nce", inputs=inputs, wrt=["query", "key", "queue"])
    assert all(np.abs(grads[r]).max() > 0 for r in ("query", "key", "queue"))
