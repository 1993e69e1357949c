"""The CPU scenarios: each measures lossd, the echo ceiling and the in-process floor side by side."""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
import numpy as np
import torch
import torch.nn.functional as F

from lossd.bench.echo import METHOD
from lossd.bench.measure import (
    PairedThroughput,
    charged,
    counted_throughput,
    paired_latency,
    paired_rates,
    paired_throughput,
)
from lossd.bench.processes import ServerProcess, echo_server, http_echo_server, lossd_server, minimal_server
from lossd.bench.v2 import run_v2
from lossd.client import LossClient
from lossd.client._codec import encode_array
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import loss_service_pb2_grpc as pb_grpc

_OPTIONS = [("grpc.max_receive_message_length", 1 << 30), ("grpc.max_send_message_length", 1 << 30)]
MiB = 1 << 20
SHM_PREFIX = "lossd-bench-"


@dataclass
class Row:
    """One scenario's figures; ``ratio`` compares lossd with the ceiling, ``target`` says what must hold."""

    scenario: str
    unit: str
    lossd: float
    ceiling: float | None
    floor: float | None
    ratio: float | None
    target: str
    ok: bool | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """The servers and channels every scenario shares."""

    lossd: ServerProcess
    echo: ServerProcess
    client: LossClient
    stub: pb_grpc.LossServiceStub
    echo_call: grpc.UnaryUnaryMultiCallable
    quick: bool
    sync_echo_call: grpc.UnaryUnaryMultiCallable | None = None  # the same echo on grpc's thread-pool server
    minimal: LossClient | None = None  # a client of lossd.bench.minimal: the same work without lossd's features
    # The serving processes by name ("lossd", "echo_aio", "echo_sync", "minimal"): whose CPU per call is measured.
    server_pids: dict[str, int] = field(default_factory=dict)


def _request(kind: str, loss: str, **arrays: np.ndarray) -> pb.ComputeRequest | pb.GradientRequest:
    msg = pb.GradientRequest(loss=loss) if kind == "Gradient" else pb.ComputeRequest(loss=loss)
    for role, a in arrays.items():
        msg.inputs[role].CopyFrom(encode_array(a))
    return msg


def _echo(ctx: Context, request: Any, method: str, sync: bool = False) -> Callable[[], object]:
    """The echo call for ``request``: as many bytes out as lossd's request, a reply as large as lossd's
    (``sync``: to the echo on grpc's thread-pool server).

    Like any client, the echo's builds its payload from the arrays on every call: one copy of the
    tensor bytes into one message, the least grpcio allows (it only sends ``bytes``).
    """
    reply = getattr(ctx.stub, method)(request, timeout=120).ByteSize()
    encoded = request.SerializeToString()
    head = encoded[: len(encoded) - sum(len(t.raw_data) for t in request.inputs.values())]
    arrays = [np.frombuffer(t.raw_data, np.uint8) for t in request.inputs.values()]
    metadata = (("reply-bytes", str(reply)),)
    echo_call = ctx.sync_echo_call if sync else ctx.echo_call
    assert echo_call is not None
    return lambda: echo_call(b"".join([head, *arrays]), metadata=metadata, timeout=120)


def _echoes(ctx: Context, request: Any, method: str) -> list[Callable[[], object]]:
    """Both echo calls for ``request``: on grpc.aio, then on grpc's thread-pool server."""
    return [_echo(ctx, request, method), _echo(ctx, request, method, sync=True)]


_ECHO_NAMES = ("aio", "sync")


def _both(aio: float, sync: float, scale: float = 1.0) -> dict[str, Any]:
    """The two echoes' figures for a row's extra (the table shows both)."""
    return {"echo_aio": aio * scale, "echo_sync": sync * scale}


def _floor_value(loss: Callable[..., torch.Tensor], **arrays: np.ndarray) -> Callable[[], object]:
    return lambda: loss(*(torch.from_numpy(a) for a in arrays.values())).item()


def _floor_grad(loss: Callable[..., torch.Tensor], **arrays: np.ndarray) -> Callable[[], object]:
    def run() -> object:
        tensors = [torch.from_numpy(a) for a in arrays.values()]
        leaf = tensors[0].requires_grad_(True)
        value = loss(*tensors)
        (grad,) = torch.autograd.grad(value, [leaf])
        return value.item(), grad.numpy()
    return run


def _small(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(1024, np.float32), rng.random(1024, np.float32)


def mse_small_latency(ctx: Context) -> Row:
    """MSE over 1K floats, one call at a time: median latency, against the faster of the two echoes."""
    x, y = _small()
    n, budget = (150, 5.0) if ctx.quick else (1000, 30.0)
    ours, aio, sync, floor = (lat.median for lat in paired_latency([
        lambda: ctx.client.compute("mse", input=x, target=y),
        *_echoes(ctx, _request("Compute", "mse", input=x, target=y), "Compute"),
        _floor_value(F.mse_loss, input=x, target=y),
    ], n, budget))
    echo = min(aio, sync)
    ratio = ours / echo
    return Row("MSE 1K floats, c=1", "ms", ours * 1e3, echo * 1e3, floor * 1e3, ratio, "<= 1.5x faster echo",
               ratio <= 1.5, _both(aio, sync, 1e3))


def _small_throughput(ctx: Context, client: LossClient, *others: LossClient,
                      pids: Sequence[int | None] = ()) -> PairedThroughput:
    """MSE over 1K floats from 16 concurrent callers through ``client``, in rounds alternating with both echoes
    (and then with the same calls through each of ``others``); ``pids``: the processes serving each, in that
    order, for their CPU per call."""
    x, y = _small()
    n, budget = (3000, 12.0) if ctx.quick else (21000, 60.0)
    return paired_throughput([
        lambda: client.compute("mse", input=x, target=y),
        *_echoes(ctx, _request("Compute", "mse", input=x, target=y), "Compute"),
        *(lambda c=c: c.compute("mse", input=x, target=y) for c in others),
    ], 16, n, budget, pids=pids)


def _against_faster(paired: PairedThroughput) -> tuple[float, float, float]:
    """lossd's median, the faster echo's median (the higher of the two) and the per-round ratio to it (calls 0, 1
    and 2 of ``paired``: lossd, then the echoes)."""
    ours, aio, sync = paired.medians[:3]
    faster = 1 if aio >= sync else 2
    return ours, max(aio, sync), paired.ratio(0, faster)


def mse_small_throughput(ctx: Context) -> list[Row]:
    """MSE over 1K floats from 16 concurrent callers: requests per second, against the faster echo; and, from
    the same rounds, against the minimal service doing the same work (lossd.bench.minimal), when there is one."""
    others = [ctx.minimal] if ctx.minimal is not None else []
    names = ["lossd", "echo_aio", "echo_sync", *(["minimal"] if others else [])]
    pids = [ctx.server_pids.get(name) for name in names] if ctx.server_pids else []
    paired = _small_throughput(ctx, ctx.client, *others, pids=pids)
    ours, echo, ratio = _against_faster(paired)
    cpu = {name: us for name, us in zip(names, paired.cpu_medians, strict=True) if us is not None}
    rows = [Row("MSE 1K floats, c=16", "req/s", ours, echo, None, ratio, ">= 0.8x faster echo", ratio >= 0.8,
                {**_both(*paired.medians[1:3]), **({"server_cpu_us": cpu} if cpu else {})})]
    if others:
        rows.append(Row("MSE 1K floats, c=16, against the same work without lossd's features", "req/s", ours,
                        paired.medians[3], None, paired.ratio(0, 3), "informational (target: row above)", None))
    return rows


def mse_small_throughput_workers(ctx: Context) -> Row:
    """The c=16 scenario against ``--workers N`` (N = cores, 2 to 4) with a client of N channels: what the
    multi-core set-up adds. Informational: the target is judged on the single-process row."""
    workers = min(4, max(2, os.cpu_count() or 1))  # each worker holds its own torch: a few suffice here
    with lossd_server("--device", "cpu", workers=workers) as server, \
            LossClient(server.address, timeout=120, channels=workers) as client:
        paired = _small_throughput(ctx, client)
    ours, echo, ratio = _against_faster(paired)
    return Row(f"MSE 1K floats, c=16, {workers} workers + {workers} channels", "req/s", ours, echo, None,
               ratio, "informational (target: row above)", None, _both(*paired.medians[1:]))


def mse_pipeline_throughput(ctx: Context) -> Row:
    """MSE over 1K floats from one caller through ``LossClient.pipeline`` (its default depth, 16): requests per
    second, in rounds alternating with both unary echoes at c=16; the ratio is to the faster echo of each round."""
    x, y = _small()
    count = 3000 if ctx.quick else 8000
    rounds = 3 if ctx.quick else 7

    def pipelined() -> tuple[float, int]:
        started = time.perf_counter()
        done = sum(1 for _ in ctx.client.pipeline("mse", itertools.repeat({"input": x, "target": y}, count)))
        return done / (time.perf_counter() - started), done

    echoes = _echoes(ctx, _request("Compute", "mse", input=x, target=y), "Compute")
    spent: dict[str, list[float]] = {"lossd": [], "echo_aio": [], "echo_sync": []}
    runs = [charged(pipelined, ctx.server_pids.get("lossd"), spent["lossd"]),
            *(charged(lambda e=e: counted_throughput(e, 16, count, 60.0), ctx.server_pids.get(name), spent[name])
              for e, name in zip(echoes, ("echo_aio", "echo_sync"), strict=True))]
    ours, aio, sync = paired_rates(runs, rounds)
    ratio = statistics.median(p / max(a, s) for p, a, s in zip(ours, aio, sync, strict=True))
    cpu = {name: statistics.median(us) for name, us in spent.items() if us}
    return Row("MSE 1K floats, pipeline (depth 16), one caller", "req/s", statistics.median(ours),
               max(statistics.median(aio), statistics.median(sync)), None, ratio, ">= 2x faster unary echo c=16",
               ratio >= 2.0, {**_both(statistics.median(aio), statistics.median(sync)),
                              **({"server_cpu_us": cpu} if cpu else {})})


def mse_large_gradient(ctx: Context) -> Row:
    """MSE value+gradient over 4M floats (16 MiB per tensor): median latency."""
    rng = np.random.default_rng(0)
    x, y = rng.random(4 * MiB, np.float32), rng.random(4 * MiB, np.float32)  # 4M floats: 16 MiB each
    n, budget = (8, 10.0) if ctx.quick else (30, 60.0)
    ours, echo, floor = (lat.median for lat in paired_latency([
        lambda: ctx.client.gradient("mse", input=x, target=y),
        _echo(ctx, _request("Gradient", "mse", input=x, target=y), "Gradient"),
        _floor_grad(F.mse_loss, input=x, target=y),
    ], n, budget))
    ratio = ours / echo
    return Row("MSE 4M floats value+grad", "ms", ours * 1e3, echo * 1e3, floor * 1e3, ratio, "<= 1.5x echo",
               ratio <= 1.5)


def ce_gradient(ctx: Context) -> Row:
    """Cross-entropy value+gradient over 4096x1000 logits: median latency."""
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((4096, 1000), np.float32), rng.integers(0, 1000, 4096)
    n, budget = (8, 10.0) if ctx.quick else (30, 60.0)
    ours, echo, floor = (lat.median for lat in paired_latency([
        lambda: ctx.client.gradient("cross_entropy", input=logits, target=labels),
        _echo(ctx, _request("Gradient", "cross_entropy", input=logits, target=labels), "Gradient"),
        _floor_grad(F.cross_entropy, input=logits, target=labels),
    ], n, budget))
    ratio = ours / echo
    return Row("CE 4096x1000 value+grad", "ms", ours * 1e3, echo * 1e3, floor * 1e3, ratio, "<= 2x echo",
               ratio <= 2.0)


def shared_memory_throughput(ctx: Context) -> Row:
    """MSE value+gradient over 4M floats (16 MiB tensors): shared memory against the gRPC path."""
    rng = np.random.default_rng(0)
    n = 4 * MiB
    x, y = rng.random(n, np.float32), rng.random(n, np.float32)
    with LossClient(ctx.lossd.address, shared_memory=True, shm_prefix=SHM_PREFIX, timeout=120) as shm:
        sx, sy, out = (shm.shared_array((n,), np.float32) for _ in range(3))
        sx[:], sy[:] = x, y
        rounds, budget = (6, 10.0) if ctx.quick else (20, 40.0)
        fast, grpc_path = (lat.median for lat in paired_latency([
            lambda: shm.gradient("mse", input=sx, target=sy, out={"input": out}),
            lambda: ctx.client.gradient("mse", input=x, target=y),
        ], rounds, budget))
    ratio = (2 * x.nbytes / fast) / (2 * x.nbytes / grpc_path)
    return Row("Shared memory, MSE 4M value+grad", "MiB/s", 2 * x.nbytes / MiB / fast, None, None, ratio,
               ">= 5x the gRPC path", ratio >= 5.0, {"grpc_mib_s": 2 * x.nbytes / MiB / grpc_path})


def memory_per_request(quick: bool) -> Row:
    """Peak server RSS above idle for one 16 MiB MSE value+gradient request, in multiples of the request."""
    rng = np.random.default_rng(0)
    x, y = rng.random(2 * MiB, np.float32), rng.random(2 * MiB, np.float32)  # 8 MiB each: 16 MiB request
    request_bytes = x.nbytes + y.nbytes
    with lossd_server("--device", "cpu") as server, LossClient(server.address, timeout=120) as client:
        client.gradient("mse", input=x[:1024], target=y[:1024])  # warm the code paths, not the buffers
        time.sleep(1.5)  # past the server's idle heap trim, so "idle" is the server at rest
        idle = server.rss_bytes()
        server.reset_peak()
        client.gradient("mse", input=x, target=y)
        peak = server.peak_rss_bytes()
    ratio = (peak - idle) / request_bytes
    return Row("Server peak RSS, one 16 MiB request", "x request", ratio, None, None, ratio, "<= 4x request",
               ratio <= 4.0, {"idle_mib": idle / MiB, "peak_mib": peak / MiB})


def size_sweep(ctx: Context) -> list[dict[str, float]]:
    """MSE value+gradient latency for growing tensors: lossd, the echo and the floor (for the picture)."""
    rng = np.random.default_rng(0)
    sizes = (1_000, 16_000, 256_000, 1_000_000, 4_000_000)
    out = []
    for size in sizes:
        x, y = rng.random(size, np.float32), rng.random(size, np.float32)
        n = 60 if size <= 16_000 else 10
        n = max(3, n // 3) if ctx.quick else n
        ours, echo, floor = (lat.median for lat in paired_latency([
            lambda x=x, y=y: ctx.client.gradient("mse", input=x, target=y),
            _echo(ctx, _request("Gradient", "mse", input=x, target=y), "Gradient"),
            _floor_grad(F.mse_loss, input=x, target=y),
        ], n, 20.0))
        out.append({"elements": size, "request_mib": 2 * x.nbytes / MiB, "lossd_s": ours, "echo_s": echo,
                    "floor_s": floor})
    return out


def run_cpu(quick: bool, scoring: bool = True) -> tuple[list[Row], list[dict[str, float]], list[dict[str, Any]]]:
    """Every CPU scenario, servers started and stopped here: the rows, the size sweep and the batch-scoring
    figures (``scoring`` False leaves those out)."""
    from lossd.bench.scoring import memory_growth, rows_of, run_scoring

    with lossd_server("--device", "cpu", "--shm-prefix", SHM_PREFIX, "--http-port", "0") as server, \
            echo_server() as echo, echo_server(sync=True) as sync_echo, http_echo_server() as http_echo, \
            minimal_server() as minimal, LossClient(minimal.address, timeout=120) as minimal_client, \
            LossClient(server.address, timeout=120, max_message_mb=1024) as client, \
            grpc.insecure_channel(server.address, options=_OPTIONS) as lossd_channel, \
            grpc.insecure_channel(echo.address, options=_OPTIONS) as echo_channel, \
            grpc.insecure_channel(sync_echo.address, options=_OPTIONS) as sync_channel:
        ctx = Context(server, echo, client, pb_grpc.LossServiceStub(lossd_channel),
                      echo_channel.unary_unary(METHOD), quick, sync_channel.unary_unary(METHOD), minimal_client,
                      {"lossd": server.pid, "echo_aio": echo.pid, "echo_sync": sync_echo.pid, "minimal": minimal.pid})
        rows = [mse_small_latency(ctx), *mse_small_throughput(ctx), mse_pipeline_throughput(ctx),
                mse_small_throughput_workers(ctx), mse_large_gradient(ctx), ce_gradient(ctx),
                shared_memory_throughput(ctx)]
        rows += run_v2(server, ctx.echo_call, http_echo, quick, Row)
        sweep = size_sweep(ctx)
        scored = run_scoring(server.address, ctx.stub, ctx.echo_call, quick) if scoring else []
    rows.append(memory_per_request(quick))
    if scoring:
        rows += rows_of(scored, *memory_growth(quick), Row)
    return rows, sweep, scored


def as_dicts(rows: list[Row]) -> list[dict[str, Any]]:
    """Rows as plain dicts, for JSON."""
    return [asdict(r) for r in rows]
