"""The benchmark's outputs: a Markdown table, a JSON record and a PNG."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from lossd.bench.scenarios import Row, as_dicts


def machine() -> dict[str, Any]:
    """Where the figures came from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    import os

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "grpcio": version("grpcio"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("req/s", "rows/s"):
        return f"{value:,.0f}"
    if unit == "x":
        return f"{value:.2f}"
    return f"{value:.3g}" if value < 10 else f"{value:,.1f}"


def markdown(rows: list[Row], host: dict[str, Any], gpu: bool = False) -> str:
    """The table the README shows (``gpu``: the absolute-time table of the GPU scenarios)."""
    if gpu:
        lines = ["| GPU scenario (end to end) | lossd, ms | torch on the same device, ms | ratio |",
                 "| --- | --- | --- | --- |"]
        lines += [f"| {r.scenario} | {r.lossd:,.1f} | {r.floor:,.1f} | {r.ratio:.2f} |" for r in rows]
        return "\n".join(lines) + f"\n\nOn {host['cuda']}, {host['date']}.\n"
    lines = [
        "| scenario | unit | lossd | echo: the ceiling (shm row: the gRPC path; same-work row: lossd.bench.minimal) "
        "| torch in-process: the floor "
        "| ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r.unit == "MiB/s" and "grpc_mib_s" in r.extra:  # the gRPC path is this row's reference
            r = Row(r.scenario, r.unit, r.lossd, r.extra["grpc_mib_s"], r.floor, r.ratio, r.target, r.ok, r.extra)
        met = "—" if r.ok is None else ("yes" if r.ok else "**no**")
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}"
        ceiling = _fmt(r.ceiling, r.unit)
        if "echo_aio" in r.extra:  # both echoes were measured: show both, the faster one (the ceiling) first
            pair = sorted((("aio", r.extra["echo_aio"]), ("sync", r.extra["echo_sync"])),
                          key=lambda e: e[1], reverse=r.unit == "req/s")
            ceiling = f"{_fmt(pair[0][1], r.unit)} ({pair[0][0]}; {pair[1][0]} {_fmt(pair[1][1], r.unit)})"
        lines.append(f"| {r.scenario} | {r.unit} | {_fmt(r.lossd, r.unit)} | {ceiling} | "
                     f"{_fmt(r.floor, r.unit)} | {ratio} | {r.target} | {met} |")
    lines.append("")
    lines += [_cpu_line(r) for r in rows if r.extra.get("server_cpu_us")]
    lines.append(f"Measured {host['date']} on {host['cpu']} ({host['cores']} cores), Python {host['python']}, "
                 f"torch {host['torch']}, grpcio {host['grpcio']}" + (f", {host['cuda']}" if host["cuda"] else "")
                 + ".")
    return "\n".join(lines) + "\n"


_SERVERS = {"lossd": "lossd", "echo_aio": "the echo on grpc.aio", "echo_sync": "the echo on grpc's thread-pool "
            "server", "minimal": "the same work without lossd's features"}


def _cpu_line(row: Row) -> str:
    """What each server spent per call in a row's rounds: the cost behind its rates."""
    spent = "; ".join(f"{_SERVERS.get(name, name)} {us:,.0f} µs" for name, us in row.extra["server_cpu_us"].items())
    return f"Server CPU per call in the rounds of \"{row.scenario}\" (user and system, all threads, median): {spent}.\n"


def write_json(path: Path, rows: list[Row], sweep: list[dict[str, float]], host: dict[str, Any],
               gpu: list[Row] | None = None, scoring: list[dict[str, Any]] | None = None) -> None:
    """Everything measured, machine-readable."""
    record = {"machine": host, "rows": as_dicts(rows), "sweep": sweep, "gpu": as_dicts(gpu or []),
              "scoring": scoring or []}
    path.write_text(json.dumps(record, indent=2) + "\n")


def write_png(path: Path, sweep: list[dict[str, float]], host: dict[str, Any],
              scoring: list[dict[str, Any]] | None = None) -> bool:
    """Latency and throughput against tensor size, and (with ``scoring``) rows/s of each batch-scoring path;
    False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sizes = [s["elements"] for s in sweep]
    fig, axes = plt.subplots(1, 3 if scoring else 2, figsize=(16.5 if scoring else 11, 4.2))
    lat, tput = axes[0], axes[1]
    for key, label, style in (("echo_s", "raw-bytes echo (ceiling)", "k--"), ("lossd_s", "lossd", "C0o-"),
                              ("floor_s", "torch in-process (floor)", "C2s:")):
        lat.plot(sizes, [s[key] * 1e3 for s in sweep], style, label=label)
        tput.plot(sizes, [s["request_mib"] / s[key] for s in sweep], style, label=label)
    for ax in (lat, tput):
        ax.set_xscale("log")
        ax.set_xlabel("elements per tensor (MSE value + gradient, float32)")
        ax.grid(True, which="both", alpha=0.3)
    lat.set_yscale("log")
    lat.set_ylabel("median latency (ms)")
    tput.set_yscale("log")
    tput.set_ylabel("request MiB/s")
    lat.legend()
    if scoring:
        _scoring_panel(axes[2], scoring)
    fig.suptitle(f"lossd vs the gRPC ceiling — {host['cpu']}, {host['cores']} cores, {host['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _scoring_panel(ax: Any, scoring: list[dict[str, Any]]) -> None:
    """Grouped bars: rows/s of each path, per dataset."""
    paths = ("naive", "in-process", "floor", "remote", "ceiling")
    labels = [f"({r['dataset']}) {r['loss']}" + (" +grad" if r["gradients"] else "") for r in scoring]
    width = 0.16
    for i, path in enumerate(paths):
        values = [r["rows_per_s"].get(path, 0.0) for r in scoring]
        ax.bar([j + (i - 2) * width for j in range(len(scoring))], values, width, label=path)
    ax.set_xticks(range(len(scoring)), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("rows/s (lossd score and its references)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7)


BENCH_START, BENCH_END = "<!-- bench:start (written by `make bench`) -->", "<!-- bench:end -->"


def update_readme(readme: Path, table: str, picture: str | None) -> None:
    """Put the latest table (and picture) between the README's bench markers."""
    text = readme.read_text()
    head, found, rest = text.partition(BENCH_START)
    _, found_end, tail = rest.partition(BENCH_END)
    if not (found and found_end):
        raise ValueError(f"{readme} lacks the bench markers")
    image = f"\n![lossd vs the gRPC ceiling]({picture})\n" if picture else ""
    readme.write_text(f"{head}{BENCH_START}\n{table}{image}{BENCH_END}{tail}")
