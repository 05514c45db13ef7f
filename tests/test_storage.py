"""Storage on a folder and on an object store (a local S3 endpoint served by moto, spoken to over HTTP)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import pyarrow as pa
import pytest

from drm.storage import Storage
from pipeline.tables import CURVES, PROFILES, TrialTables, committed, promote, read_replicates, replicates_schema, write_trial
from tests.helpers import drmfm, free_port

BUCKET = "drmfm-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3():
    """An S3 endpoint on 127.0.0.1 with one bucket; yields a function giving a fresh prefix's URI."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **CREDENTIALS},
    )
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        import boto3

        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", **_boto_credentials()).create_bucket(Bucket=BUCKET)
        saved = {k: os.environ.get(k) for k in CREDENTIALS}
        os.environ.update(CREDENTIALS)
        yield lambda: f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}?endpoint_override=127.0.0.1:{port}&scheme=http"
    finally:
        server.terminate()
        server.wait(10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _boto_credentials() -> dict:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def _trial(trial_id: str, n: int) -> TrialTables:
    """A trial's tables with n seed rows (configuration columns null: storage does not read them)."""
    given = {"sweep": ["s"] * n, "trial_id": [trial_id] * n, "seed": list(range(n)), "status": ["ok"] * n}
    replicates = pa.table({f.name: pa.array(given[f.name], f.type) if f.name in given else pa.nulls(n, f.type) for f in replicates_schema()})
    return TrialTables(trial_id, replicates, CURVES.empty_table(), PROFILES.empty_table(), weights=b"w" * 10)


@pytest.fixture(params=["folder", "s3"])
def storage(request, tmp_path):
    if request.param == "folder":
        return Storage(tmp_path / "store")
    return Storage(request.getfixturevalue("s3")())


def test_a_trial_lands_whole_replaces_on_rerun_and_is_promoted_from_staging(storage):
    results = storage.sub("results", "s")
    write_trial(results, _trial("a", 3))
    write_trial(results, _trial("a", 3))  # a re-run replaces
    write_trial(results, _trial("b", 2), ".staging", "b")
    assert committed(results) == {"a"}
    assert read_replicates(results).num_rows == 3
    assert promote(results, "b", ".staging", "b")
    assert committed(results) == {"a", "b"} and read_replicates(results).num_rows == 5
    assert not results.exists(".staging", "b") and results.read_bytes("weights", "b.pt") == b"w" * 10
    assert not promote(results, "c", ".staging", "c")


def test_a_storage_pickles_as_its_location(storage):
    import pickle

    again = pickle.loads(pickle.dumps(storage))
    again.write_text("hello", "x.txt")
    assert storage.read_bytes("x.txt") == b"hello" and again.show("x.txt") == storage.show("x.txt")


@pytest.mark.slow
def test_a_sweep_on_an_object_store_lands_everything_there_and_resumes_from_it(s3, tmp_path):
    from tests.helpers import mlflow_runs, write_spec

    uri = s3()
    spec = write_spec(tmp_path, name="remote")
    result = drmfm("sweep", str(spec), "--storage", uri, home=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    root = Storage(uri)
    rows = read_replicates(root.sub("results", "remote")).to_pylist()
    assert len(rows) == 6 and len({(r["trial_id"], r["seed"]) for r in rows}) == 6
    assert all(r["status"] == "ok" and r["mlflow_run_id"] for r in rows)
    assert root.is_file("ray", "remote", "drmfm-spec.json")  # Ray Tune's state is on the store too
    assert not (tmp_path / "results").exists() and not (tmp_path / "ray").exists()
    assert len(mlflow_runs(tmp_path, "remote")) == 2 + 6
    status = drmfm("status", "--storage", uri, home=tmp_path)
    assert status.returncode == 0 and "remote: 2/2 trials done" in status.stdout, status.stdout + status.stderr
    again = drmfm("sweep", str(spec), "--storage", uri, "--resume", home=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr
    assert read_replicates(root.sub("results", "remote")).num_rows == 6
    refused = drmfm("sweep", str(spec), "--storage", uri, home=tmp_path)
    assert refused.returncode == 2 and "exists" in refused.stderr
