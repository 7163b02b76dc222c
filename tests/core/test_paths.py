"""Attempt folders and their leases: a publish prunes the big files of the month's other
attempts, but never those of an attempt still running, in this process or another one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from forecasting.core import paths
from forecasting.core.config import load_config
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.paths import REPO

M = pd.Period("2024-06", "M")

# A stage of a running attempt in a process of its own (another Airflow deployment's worker):
# it holds the attempt's lease as the pipeline's stages do, says so, waits for a line on stdin
# (the other deployment has published meanwhile), then reads its snapshot.
RUNNING_STAGE = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import pandas as pd

    from forecasting.core import paths

    folder = Path(sys.argv[1])
    with paths.hold_lease(folder, "train"):
        print("holding", flush=True)
        sys.stdin.readline()
        print(len(pd.read_parquet(paths.existing(paths.snapshot_in(folder)))), flush=True)
    """
)

# The other deployment's publish step: prunes the month's superseded attempts.
PUBLISHING = textwrap.dedent(
    """
    import sys

    import pandas as pd

    from forecasting.core import paths
    from forecasting.core.config import load_config

    config = load_config(sys.argv[1])
    pruned = paths.prune_superseded_runs(config, pd.Period(sys.argv[2], "M"), keep=sys.argv[3])
    print(",".join(sorted(p.name for p in pruned)), flush=True)
    """
)


def _attempt(config, name: str, rows: int = 5):
    folder = paths.run_dir(config, M, name)
    paths.write_parquet_atomically(pd.DataFrame({"units": range(rows)}), paths.snapshot_in(folder))
    paths.write_json_atomically({"stage": "extract"}, paths.result_in(folder, "extract"))
    return folder


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO)])}


def test_a_publish_in_another_process_never_prunes_a_running_attempts_files(tmp_path):
    """Two deployments ran the same month over one data_dir: the one that published deleted the
    other's raw.parquet mid-run, which then died of a bare FileNotFoundError (issue 23, fault 8)."""
    path = write_config(tmp_path, demo_config_dict(tmp_path))
    config = load_config(path)
    running = _attempt(config, "manual__a__20240701T000000000000Z", rows=7)
    stale = _attempt(config, "manual__c__20240701T000000000001Z")
    orphan = _attempt(config, "manual__d__20240701T000000000002Z")  # from before leases: none
    published = _attempt(config, "manual__b__20240701T000000000003Z")
    long_ago = (datetime.now(UTC) - paths.LEASE_STALE - timedelta(minutes=1)).isoformat()
    paths.write_json_atomically(
        {"host": "gone", "pid": 1, "stage": "train", "heartbeat": long_ago}, stale / paths.LEASE
    )
    paths.write_json_atomically(
        {"host": "h", "pid": 1, "stage": "publish", "heartbeat": "now"}, published / paths.LEASE
    )

    stage = subprocess.Popen(
        [sys.executable, "-c", RUNNING_STAGE, str(running)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert stage.stdout is not None and stage.stdin is not None
        assert stage.stdout.readline().strip() == "holding"
        publisher = subprocess.run(
            [sys.executable, "-c", PUBLISHING, str(path), str(M), published.name],
            capture_output=True,
            text=True,
            env=_env(),
            check=True,
        )
        stage.stdin.write("go\n")
        stage.stdin.flush()
        out, err = stage.communicate(timeout=120)
    finally:
        if stage.poll() is None:
            stage.kill()
    assert stage.returncode == 0, err
    assert out.strip() == "7"  # the running attempt read its whole snapshot
    assert publisher.stdout.strip() == f"{stale.name},{orphan.name}"
    assert paths.snapshot_in(published).is_file() and not (published / paths.LEASE).exists()
    assert not paths.snapshot_in(stale).exists() and not paths.snapshot_in(orphan).exists()
    assert paths.results_in(stale) == {"extract": paths.result_in(stale, "extract")}  # what happened stays

    # The stage's lease outlives it (the attempt's next stage takes it on): still not pruned.
    assert paths.live_lease(running)["stage"] == "train"
    assert paths.prune_superseded_runs(config, M, keep=published.name) == []


def test_a_pruned_attempt_fails_for_good_saying_who_pruned_it(tmp_path):
    from forecasting.core.errors import is_permanent

    config = load_config(write_config(tmp_path, demo_config_dict(tmp_path)))
    gone = _attempt(config, "manual__a__20240701T000000000000Z")
    published = _attempt(config, "manual__b__20240701T000000000001Z")
    paths.prune_superseded_runs(config, M, keep=published.name)

    with pytest.raises(paths.AttemptPruned) as raised:
        paths.existing(paths.snapshot_in(gone))
    message = str(raised.value)
    assert is_permanent(raised.value)
    assert f"superseded by attempt {published.name}" in message and f"Run {M} again" in message


def test_a_lease_beats_while_its_stage_runs_and_ends_with_the_publish(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "LEASE_HEARTBEAT", timedelta(seconds=0.05))
    folder = tmp_path / "attempt"
    with paths.hold_lease(folder, "train"):
        first = paths.read_json(folder / paths.LEASE)
        time.sleep(0.5)
        later = paths.read_json(folder / paths.LEASE)
    assert (first["pid"], first["stage"]) == (os.getpid(), "train")
    assert later["heartbeat"] > first["heartbeat"]
    assert paths.live_lease(folder) is not None  # kept between stages

    with paths.hold_lease(folder, "publish"):
        paths.write_json_atomically({}, paths.result_in(folder, "publish"))
    assert not (folder / paths.LEASE).exists()  # published: only a running stage holds it now


def test_a_model_saved_through_the_atomic_writer_is_private_and_loads(tmp_path):
    """XGBoost's save_model made model.ubj 0644 beside the rest at 0600 (issue 23, fault 16)."""
    import numpy as np
    import xgboost as xgb

    booster = xgb.train(
        {"max_depth": 2}, xgb.DMatrix(np.arange(20.0).reshape(10, 2), label=np.arange(10.0)), 3
    )
    path = paths.booster(tmp_path / "models" / "v1")
    paths.write_file_atomically(path, booster.save_model)

    assert path.stat().st_mode & 0o777 == paths.PRIVATE == 0o600
    assert not path.read_bytes().startswith(b'{"')  # UBJSON, as the .ubj name asks, not JSON text
    assert xgb.Booster(model_file=str(path)).num_boosted_rounds() == 3
    assert [p.name for p in path.parent.iterdir()] == ["model.ubj"]  # no temp file left
