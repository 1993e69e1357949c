"""lossd.scoring: every input format and column type, the output dataset, refusals in the data's terms,
the summary, and remote scoring through real servers — each score checked against numpy."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
import scoring_data as data

from lossd.client import LossClient
from lossd.scoring import DataRefused, Summary, UsageError, score
from lossd.server import BackgroundServer, ServerSettings

MSE = {"input": "pred", "target": "label"}
CE = {"input": "logits", "target": "label"}


def _check_mse(table: pa.Table, source: pa.Table, rtol: float = 1e-6) -> None:
    want, _ = data.mse_rows(source.column("pred").to_numpy(), source.column("label").to_numpy())
    np.testing.assert_allclose(table.column("loss").to_numpy(), want, rtol=rtol, atol=1e-8)


# --- input formats ---------------------------------------------------------------------------------------


def _write(table: pa.Table, path: str, kind: str) -> None:
    if kind == "parquet":
        pq.write_table(table, path, row_group_size=700)
    elif kind == "feather":
        feather.write_feather(table, path, chunksize=700)
    elif kind == "ipc-stream":
        with ipc.new_stream(path, table.schema) as w:
            w.write_table(table, max_chunksize=700)
    elif kind == "csv":
        pcsv.write_csv(table, path)
    elif kind == "jsonl":
        with open(path, "w") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row) + "\n")


@pytest.mark.parametrize("kind, name", [("parquet", "d.parquet"), ("feather", "d.feather"),
                                        ("ipc-stream", "d.arrows.arrow"), ("csv", "d.csv"), ("jsonl", "d.jsonl")])
def test_each_file_format_scores_every_row_in_order(tmp_path, kind: str, name: str) -> None:
    """Parquet, Feather/IPC (file and stream), CSV and JSON lines: one loss per row, in input order."""
    source = data.regression().select(["id", "pred", "label"])
    path = str(tmp_path / name)
    _write(source, path, kind)
    table = score(path, "mse", MSE, keep=["id"], batch_rows=500)
    assert table.column("id").to_pylist() == list(range(data.ROWS))
    _check_mse(table, source, rtol=1e-5)


def test_npz_arrays_are_columns(tmp_path) -> None:
    """Each array of an .npz is a column; 2-D arrays become rows of vectors."""
    rng = np.random.default_rng(3)
    pred, label = rng.standard_normal((2, 300, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", pred=pred, label=label, id=np.arange(300))
    table = score(str(tmp_path / "d.npz"), "mse", MSE, keep=["id"], gradients=True)
    want, grad = data.mse_rows(pred, label)
    np.testing.assert_allclose(table.column("loss").to_numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(data.tensor(table.column("grad_input")), grad, rtol=1e-5, atol=1e-7)


def test_directory_with_hive_partitions_keeps_partition_columns(tmp_path) -> None:
    """A directory of Parquet files reads as one dataset in sorted path order; hive partition columns can be
    kept and sliced by."""
    source = data.regression().select(["id", "pred", "label"])
    halves = [source.slice(0, 1000), source.slice(1000)]
    for year, half in zip((2024, 2025), halves, strict=True):
        os.makedirs(tmp_path / f"year={year}")
        pq.write_table(half, tmp_path / f"year={year}" / "part.parquet", row_group_size=300)
    summary_rows = score(str(tmp_path), "mse", MSE, keep=["id", "year"])
    assert summary_rows.column("year").to_pylist() == [2024] * 1000 + [2025] * 1000
    assert summary_rows.column("id").to_pylist() == list(range(data.ROWS))


def test_globs_and_several_inputs_are_read_in_order(tmp_path) -> None:
    """A glob's files in sorted path order, after the inputs given before it."""
    source = data.regression().select(["id", "pred", "label"])
    pq.write_table(source.slice(1500), tmp_path / "a.parquet")
    for i, start in enumerate((0, 500, 1000)):
        pq.write_table(source.slice(start, 500), tmp_path / f"part-{i}.parquet")
    table = score([str(tmp_path / "part-*.parquet"), str(tmp_path / "a.parquet")], "mse", MSE, keep=["id"])
    assert table.column("id").to_pylist() == list(range(data.ROWS))


@pytest.mark.parametrize("frame", ["table", "reader", "pandas", "polars"])
def test_in_memory_tables_and_data_frames(frame: str) -> None:
    """A pyarrow Table or RecordBatchReader, and pandas or polars DataFrames, score like files."""
    source = data.regression().select(["id", "pred", "label"])
    given = {"table": lambda: source, "reader": lambda: pa.RecordBatchReader.from_batches(
        source.schema, source.to_batches(max_chunksize=300)), "pandas": source.to_pandas,
        "polars": lambda: pytest.importorskip("polars").from_arrow(source)}[frame]()
    _check_mse(score(given, "mse", MSE), source)


# --- column types ----------------------------------------------------------------------------------------


def test_fixed_size_lists_and_gradients_shaped_like_the_input() -> None:
    """(N, d) columns give a per-row mean; grad_input has the input column's shape and is that row's gradient."""
    source = data.regression()
    table = score(source, "mse", {"input": "vec", "target": "vec_target"}, gradients=True)
    want, grad = data.mse_rows(data.tensor(source.column("vec")), data.tensor(source.column("vec_target")))
    np.testing.assert_allclose(table.column("loss").to_numpy(), want, rtol=1e-5)
    assert table.schema.field("grad_input").type == source.schema.field("vec").type
    np.testing.assert_allclose(data.tensor(table.column("grad_input")), grad, rtol=1e-5, atol=1e-7)


def test_row_reduction_sum_adds_a_rows_elements() -> None:
    """--row-reduction sum: the per-row loss is the sum over the row, and its gradient is unscaled."""
    source = data.regression()
    table = score(source, "mse", {"input": "vec", "target": "vec_target"}, gradients=True, row_reduction="sum")
    want, grad = data.mse_rows(data.tensor(source.column("vec")), data.tensor(source.column("vec_target")))
    np.testing.assert_allclose(table.column("loss").to_numpy(), want * 3, rtol=1e-5)
    np.testing.assert_allclose(data.tensor(table.column("grad_input")), grad * 3, rtol=1e-5, atol=1e-7)


def test_nested_fixed_size_lists_and_tensor_extension_columns() -> None:
    """Nested fixed-size lists are (N, d1, d2); Arrow's fixed-shape tensor type is (N, *shape), and the
    gradient column keeps that type."""
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2, 50, 2, 3)).astype(np.float32)
    source = pa.table({"x": data.fixed_list(x), "y": pa.FixedShapeTensorArray.from_numpy_ndarray(y)})
    table = score(source, "mse", {"input": "x", "target": "y"}, gradients=True, wrt=["input", "target"])
    want, grad = data.mse_rows(x, y)
    np.testing.assert_allclose(table.column("loss").to_numpy(), want, rtol=1e-5)
    assert isinstance(table.schema.field("grad_target").type, pa.FixedShapeTensorType)
    got = table.column("grad_target").combine_chunks().to_numpy_ndarray()
    np.testing.assert_allclose(got, -grad, rtol=1e-5, atol=1e-7)


def test_class_indices_and_logits_against_numpy() -> None:
    """cross_entropy over fixed-size-list logits and int64 labels: losses and gradients equal numpy's."""
    source = data.classification()
    table = score(source, "cross_entropy", CE, gradients=True, batch_rows=333)
    want, grad = data.cross_entropy_rows(data.tensor(source.column("logits")), source.column("label").to_numpy())
    np.testing.assert_allclose(table.column("loss").to_numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.tensor(table.column("grad_input")), grad, rtol=1e-5, atol=1e-6)


def test_several_numeric_columns_stack_into_one_role() -> None:
    """--map input=a,b,c stacks three numeric columns into (N, 3)."""
    source = data.classification()
    logits = data.tensor(source.column("logits"))
    flat = pa.table({f"c{i}": logits[:, i].astype(np.float32) for i in range(data.CLASSES)} |
                    {"label": source.column("label")})
    table = score(flat, "cross_entropy", {"input": [f"c{i}" for i in range(data.CLASSES)], "target": "label"})
    want, _ = data.cross_entropy_rows(logits, source.column("label").to_numpy())
    np.testing.assert_allclose(table.column("loss").to_numpy(), want, rtol=1e-5, atol=1e-6)


def test_uniform_json_lists_score_and_ragged_ones_are_refused_by_row(tmp_path) -> None:
    """JSON lines lists of one length are vectors; the first row whose list differs is named."""
    path = tmp_path / "d.jsonl"
    rows = [{"x": [1.0, 2.0], "y": [0.0, 0.0]}] * 3 + [{"x": [1.0], "y": [0.0, 0.0]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataRefused, match=r"d\.jsonl, row 3, column x: a list of 1 values"):
        score(str(path), "mse", {"input": "x", "target": "y"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    assert score(str(path), "mse", {"input": "x", "target": "y"}).column("loss").to_pylist() == [2.5] * 3


# --- refusals --------------------------------------------------------------------------------------------


def _bad_labels(tmp_path, row: int = 1234) -> tuple[str, pa.Table]:
    source = data.classification()
    labels = source.column("label").to_numpy().copy()
    labels[row] = 7
    bad = source.set_column(source.schema.get_field_index("label"), "label", pa.array(labels))
    path = str(tmp_path / "scores.parquet")
    pq.write_table(bad, path, row_group_size=500)
    return path, bad


def test_refused_row_is_reported_by_file_row_and_column(tmp_path) -> None:
    """A class index out of range: the message names the file, the row (counted from 0) and the column."""
    path, _ = _bad_labels(tmp_path)
    with pytest.raises(DataRefused) as info:
        score(path, "cross_entropy", CE, batch_rows=256)
    assert str(info.value).startswith("scores.parquet, row 1,234, column label: class index 7 is outside [0, 5)") \
        or str(info.value).startswith(f"{path}, row 1,234, column label: class index 7 is outside [0, 5)")


def test_stop_writes_every_batch_before_the_bad_one(tmp_path) -> None:
    """on_error stop: the parts before the refused batch are on disk, none after."""
    path, _ = _bad_labels(tmp_path)
    out = str(tmp_path / "out")
    with pytest.raises(DataRefused):
        score(path, "cross_entropy", CE, batch_rows=256, out=out, in_flight=1)
    written = ds.dataset(out).to_table()
    assert written.num_rows == 4 * 256  # row 1,234 is in the fifth batch


def test_skip_gives_refused_rows_a_null_loss_and_an_error(tmp_path) -> None:
    """on_error skip: the bad row gets a null loss (not NaN) and an error; every other row of its batch a score."""
    path, bad = _bad_labels(tmp_path)
    table = score(path, "cross_entropy", CE, batch_rows=256, on_error="skip", gradients=True)
    loss = table.column("loss")
    assert loss.null_count == 1 and not loss[1234].is_valid
    assert "class index 7 is outside [0, 5)" in table.column("error")[1234].as_py()
    assert table.column("error").null_count == data.ROWS - 1
    labels = bad.column("label").to_numpy()
    good = np.arange(data.ROWS) != 1234
    want, _ = data.cross_entropy_rows(data.tensor(bad.column("logits"))[good], labels[good])
    np.testing.assert_allclose(loss.to_numpy(zero_copy_only=False)[good], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("values, message", [
    (pa.array([1.0, None, 3.0], pa.float32()), "row 1, column label: null"),
    (pa.array(["a", "b", "c"]), "row 0, column label: holds string"),
], ids=["null", "string"])
def test_nulls_and_strings_in_a_mapped_column_are_refused(values: pa.Array, message: str) -> None:
    """A null or a string in a mapped column is refused data, named by row and column."""
    source = pa.table({"pred": pa.array([1.0, 2.0, 3.0], pa.float32()), "label": values})
    with pytest.raises(DataRefused, match=message):
        score(source, "mse", MSE)


def test_null_in_a_mapped_column_with_skip_scores_the_other_rows() -> None:
    """on_error skip: the null row is refused, its neighbours scored."""
    pred = pa.array([1.0, 2.0, 3.0], pa.float32())
    source = pa.table({"pred": pred, "label": pa.array([0.0, None, 1.0], pa.float32())})
    table = score(source, "mse", MSE, on_error="skip")
    assert table.column("loss").to_pylist() == [1.0, None, 4.0]


@pytest.mark.parametrize("loss, roles", [("info_nce", {"features": "vec"}), ("nt_xent", {"embeddings": "vec"}),
                                         ("uncertainty_weighting", {"losses": "pred", "log_vars": "label"})])
def test_losses_that_couple_rows_are_refused_up_front(loss: str, roles: dict) -> None:
    """A loss without a per-row value is a usage error that says why, before any row is read."""
    with pytest.raises(UsageError, match="does not give each row a loss of its own"):
        score(data.regression(), loss, roles)


def test_unknown_column_and_missing_role_are_usage_errors() -> None:
    """A column the input lacks, or a required role left unmapped, is refused naming it."""
    with pytest.raises(UsageError, match="no column 'nope'"):
        score(data.regression(), "mse", {"input": "pred", "target": "nope"})
    with pytest.raises(UsageError, match="mse needs target"):
        score(data.regression(), "mse", {"input": "pred"})


# --- output and summary ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "csv", "jsonl"])
def test_output_dataset_is_numbered_parts_and_a_manifest(tmp_path, fmt: str) -> None:
    """--out writes numbered parts in input order and a manifest; readers see one dataset."""
    out = str(tmp_path / "out")
    score(data.regression(), "mse", MSE, keep=["id"], out=out, format=fmt, batch_rows=600)
    names = sorted(os.listdir(out))
    assert names == ["_lossd_manifest.json", *[f"part-{i:06d}.{fmt}" for i in range(4)]]
    manifest = json.loads(Path(out, "_lossd_manifest.json").read_text())
    assert manifest["complete"] and [p["rows"] for p in manifest["parts"]] == [600, 600, 600, 200]
    reader = {"parquet": "parquet", "arrow": "arrow", "csv": "csv", "jsonl": "json"}[fmt]
    written = ds.dataset(out, format=reader).to_table()
    assert written.column("id").to_pylist() == list(range(data.ROWS))
    _check_mse(written, data.regression(), rtol=1e-5)


def test_summary_mean_equals_one_compute_mean_over_the_dataset(tmp_path, client: LossClient) -> None:
    """The summary's mean of per-row losses equals one Compute with reduction "mean" over everything, and its
    percentiles and max equal numpy's; it is written beside the dataset."""
    source = data.classification()
    out = str(tmp_path / "out")
    summary = score(source, "cross_entropy", CE, out=out, batch_rows=300)
    assert isinstance(summary, Summary)
    logits = data.tensor(source.column("logits")).astype(np.float32)
    labels = source.column("label").to_numpy()
    whole = client.compute("cross_entropy", input=logits, target=labels, reduction="mean")
    figures = json.loads(Path(f"{out}.summary.json").read_text())
    assert figures["rows"] == data.ROWS and figures["mean"] == pytest.approx(whole, rel=1e-5)
    want, _ = data.cross_entropy_rows(logits, labels)
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        assert figures[name] == pytest.approx(np.quantile(want, q), rel=1e-5)
    assert figures["max"] == pytest.approx(want.max(), rel=1e-5)


def test_slices_summarise_each_value_sorted_by_mean_loss(tmp_path) -> None:
    """--slice-by: rows and mean per value, equal to a numpy group-by, hardest slice first."""
    source = data.regression()
    out = str(tmp_path / "out")
    score(source, "mse", MSE, out=out, slice_by="country", batch_rows=512)
    figures = json.loads(Path(f"{out}.summary.json").read_text())
    want, _ = data.mse_rows(source.column("pred").to_numpy(), source.column("label").to_numpy())
    country = np.asarray(source.column("country").to_pylist())
    means = [s["mean"] for s in figures["slices"]]
    assert means == sorted(means, reverse=True)
    for s in figures["slices"]:
        rows = country == s["value"]
        assert s["rows"] == rows.sum() and s["mean"] == pytest.approx(want[rows].mean(), rel=1e-5)


def test_an_earlier_output_is_not_overwritten_without_resume(tmp_path) -> None:
    """A second run into the same --out is refused unless it resumes."""
    out = str(tmp_path / "out")
    score(data.regression(), "mse", MSE, out=out)
    with pytest.raises(UsageError, match="add --resume"):
        score(data.regression(), "mse", MSE, out=out)


def test_resume_skips_written_parts_and_rebuilds_the_summary(tmp_path) -> None:
    """A resumed run with the same job keeps the finished parts and ends with the full summary."""
    out = str(tmp_path / "out")
    first = score(data.regression(), "mse", MSE, out=out, batch_rows=500)
    manifest = os.path.join(out, "_lossd_manifest.json")
    record = json.loads(Path(manifest).read_text())
    record["parts"] = record["parts"][:2]  # as if the run had stopped after two parts
    record["complete"] = False
    Path(manifest).write_text(json.dumps(record))
    os.remove(os.path.join(out, "part-000003.parquet"))
    again = score(data.regression(), "mse", MSE, out=out, batch_rows=500, resume=True)
    assert again.as_dict()["rows"] == data.ROWS and again.as_dict()["mean"] == pytest.approx(
        first.as_dict()["mean"], rel=1e-9)
    assert ds.dataset(out).to_table().num_rows == data.ROWS


# --- remote ----------------------------------------------------------------------------------------------


def test_remote_scoring_equals_in_process(server: BackgroundServer) -> None:
    """Through a real server (several batches in flight) the scores and gradients equal the in-process ones."""
    source = data.classification()
    here = score(source, "cross_entropy", CE, gradients=True, batch_rows=250)
    there = score(source, "cross_entropy", CE, gradients=True, batch_rows=250, servers=[server.address], in_flight=3)
    np.testing.assert_array_equal(there.column("loss").to_numpy(), here.column("loss").to_numpy())
    np.testing.assert_array_equal(data.tensor(there.column("grad_input")), data.tensor(here.column("grad_input")))


def test_remote_refusal_is_mapped_back_to_file_row_and_column(tmp_path, server: BackgroundServer) -> None:
    """The server's field violation becomes the file, row and column of the bad value."""
    path, _ = _bad_labels(tmp_path, row=77)
    with pytest.raises(DataRefused, match=r"row 77, column label: class index 7 is outside \[0, 5\)"):
        score(path, "cross_entropy", CE, servers=[server.address], batch_rows=1000)


def test_run_succeeds_while_any_server_answers(server: BackgroundServer) -> None:
    """With two servers, one of them stopped before the run, every batch is still scored."""
    settings = ServerSettings(host="127.0.0.1", port=0, metrics_port=0, device="cpu")
    stopped = BackgroundServer(settings).start()
    address = stopped.address
    stopped.stop()
    table = score(data.regression(), "mse", MSE, servers=[address, server.address], batch_rows=200)
    _check_mse(table, data.regression())


def test_scoring_on_servers_loads_no_torch(server: BackgroundServer) -> None:
    """A remote run imports no torch in the scoring process (it only needs the client and pyarrow)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np, pyarrow as pa; from lossd.scoring import score; "
            "t = pa.table({'p': np.ones(3, np.float32), 'y': np.zeros(3, np.float32)}); "
            f"out = score(t, 'mse', {{'input': 'p', 'target': 'y'}}, servers=['{server.address}']); "
            "print(out.column('loss').to_pylist(), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split("]")[-1].strip() == "False" and done.stdout.startswith("[1.0, 1.0, 1.0]"), done.stderr


def test_batches_over_stream_mb_go_over_the_streaming_rpcs(server: BackgroundServer) -> None:
    """A client whose stream_mb is below the batch size sends each batch in chunks; the scores are the same."""
    source = data.classification()
    with LossClient(server.address, stream_mb=0.01, timeout=60) as small:
        there = score(source, "cross_entropy", CE, gradients=True, client=small, batch_rows=1000)
    here = score(source, "cross_entropy", CE, gradients=True, batch_rows=1000)
    np.testing.assert_array_equal(there.column("loss").to_numpy(), here.column("loss").to_numpy())
    np.testing.assert_array_equal(data.tensor(there.column("grad_input")), data.tensor(here.column("grad_input")))
