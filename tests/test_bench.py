"""The benchmark's own code: its GPU scenarios run (here on the CPU, scaled down) and its report writes."""

from __future__ import annotations

from pathlib import Path

from lossd.bench import report
from lossd.bench.gpu import run_gpu
from lossd.bench.measure import PairedThroughput
from lossd.bench.scenarios import Row


def test_gpu_scenarios_run_end_to_end_when_pointed_at_the_cpu() -> None:
    """The --gpu code path (servers, clients, floors) runs; scaled down on the CPU it yields three timed rows."""
    rows = run_gpu(quick=True, device="cpu")
    assert [r.scenario.split()[0] for r in rows] == ["CE", "InfoNCE", "MSE"]
    assert all(r.lossd > 0 and r.floor is not None and r.floor > 0 for r in rows)


def test_readme_table_is_replaced_between_the_markers(tmp_path: Path) -> None:
    """update_readme puts the table and picture between the markers and leaves the rest alone."""
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BENCH_START}\nold\n{report.BENCH_END}\noutro\n")
    host = {"date": "d", "cpu": "c", "cores": 2, "python": "3", "torch": "t", "grpcio": "g", "cuda": None}
    table = report.markdown([Row("s", "ms", 2.0, 1.0, 0.5, 2.0, "<= 3x echo", True)], host)
    report.update_readme(readme, table, "docs/bench/sweep.png")
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "| s | ms | 2 | 1 | 0.5 | 2.00 | <= 3x echo | yes |" in text
    assert "![lossd vs the gRPC ceiling](docs/bench/sweep.png)" in text


def test_paired_ratio_is_the_median_of_ratios_within_rounds() -> None:
    """A slow spell that hits both calls of one round leaves the paired ratio unchanged."""
    paired = PairedThroughput([[100.0, 50.0, 100.0], [200.0, 100.0, 180.0]])
    assert paired.medians == [100.0, 180.0]
    assert paired.ratio() == 0.5  # rounds: 0.5, 0.5, 0.556
