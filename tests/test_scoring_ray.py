"""Batch scoring on Ray: LossScorer in a real local Ray's map_batches, and ``lossd score --ray``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import scoring_data as data

from lossd.scoring import score

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'lossd[ray]'")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray() -> Iterator[str]:
    """A local Ray on loopback with 4 logical CPUs (an actor pool plus its read tasks wait forever on 2);
    other processes join it through its address with token authentication off. Its start is retried once:
    a raylet that does not register within Ray's fixed 30 s is a start-up hiccup, not a lossd failure."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    for attempt in range(2):
        try:
            context = ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                               _node_ip_address="127.0.0.1")
            break
        except Exception:
            ray.shutdown()
            if attempt:
                raise
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield context.address_info["address"]
    ray.shutdown()


def test_loss_scorer_in_map_batches_equals_the_single_process_path(local_ray: str, tmp_path: Path) -> None:
    """Dataset.map_batches(LossScorer, ActorPoolStrategy) adds the rows' losses and gradients, equal (matched
    by id) to lossd.scoring.score in one process."""
    from lossd.integrations.ray import LossScorer

    source = data.classification()
    roles = {"input": "logits", "target": "label"}
    scored = ray.data.from_arrow(source).repartition(4).map_batches(
        LossScorer, fn_constructor_kwargs={"loss": "cross_entropy", "roles": roles, "gradients": True},
        compute=ray.data.ActorPoolStrategy(size=2), batch_format="pyarrow", batch_size=300)
    got = scored.to_arrow_refs()
    table = __import__("pyarrow").concat_tables(ray.get(got)).sort_by("id")
    want = score(source, "cross_entropy", roles, gradients=True, keep=["id"])
    assert table.column("id").to_pylist() == want.column("id").to_pylist()
    np.testing.assert_array_equal(table.column("loss").to_numpy(), want.column("loss").to_numpy())
    np.testing.assert_array_equal(data.tensor(table.column("grad_input")), data.tensor(want.column("grad_input")))


def test_lossd_score_ray_writes_the_rows_of_the_single_process_run(local_ray: str, tmp_path: Path) -> None:
    """``lossd score --ray ADDRESS`` (another process joining the cluster) writes the same rows as without --ray."""
    path = tmp_path / "preds.parquet"
    pq.write_table(data.regression(), path, row_group_size=500)
    args = [str(path), "--loss", "mse", "--map", "input=vec", "--map", "target=vec_target", "--keep", "id",
            "--gradients", "--quiet"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    on_ray = subprocess.run([sys.executable, "-m", "lossd.cli", "score", *args, "--out", str(tmp_path / "ray"),
                             "--ray", local_ray], capture_output=True, text=True, timeout=300, env=env)
    assert on_ray.returncode == 0, on_ray.stderr[-2000:]
    here = subprocess.run([sys.executable, "-m", "lossd.cli", "score", *args, "--out", str(tmp_path / "here")],
                          capture_output=True, text=True, timeout=300)
    assert here.returncode == 0, here.stderr
    a = ds.dataset(tmp_path / "ray").to_table().sort_by("id")
    b = ds.dataset(tmp_path / "here").to_table().sort_by("id")
    assert a.column("id").to_pylist() == list(range(data.ROWS))
    np.testing.assert_array_equal(a.column("loss").to_numpy(), b.column("loss").to_numpy())
    np.testing.assert_array_equal(data.tensor(a.column("grad_input")), data.tensor(b.column("grad_input")))
    totals = [line.split()[:2] for line in on_ray.stdout.splitlines() if line.startswith("all ")]
    assert totals == [["all", f"{data.ROWS:,}"]]


def test_importing_the_ray_integration_loads_neither_torch_nor_ray() -> None:
    """lossd.integrations.ray is importable by a client-only program: torch and ray stay unloaded."""
    code = ("import sys, lossd.integrations.ray; "
            "print('torch' in sys.modules, 'ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr
