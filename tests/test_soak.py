"""A bounded soak: 64 concurrent clients, mixed work and a few bad requests, nothing lost or leaked."""

from __future__ import annotations

import os

from lossd.bench.soak import run_soak

SECONDS = float(os.environ.get("LOSSD_SOAK_SECONDS", "20"))


def test_soak_serves_everything_with_only_deliberate_errors_and_no_growth() -> None:
    """Only the deliberate NOT_FOUND/INVALID_ARGUMENT; RSS after warm-up grows < 10%; no fd leak."""
    report = run_soak(SECONDS, clients=64)
    assert report.unexpected == {}
    assert set(report.errors) <= {"NOT_FOUND", "INVALID_ARGUMENT"} and report.errors
    assert report.served > 1000
    assert report.rss_end_mib <= 1.10 * report.rss_warm_mib, report
    assert report.fds_end <= report.fds_warm + 4, report
