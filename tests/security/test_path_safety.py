"""Inputs from AWS never write outside where they belong: S3 config keys with ``..`` cannot escape the folder."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_s3_config_keys_cannot_escape_the_download_folder(aws: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from shadowing.aws.clients import client
    from shadowing.dependencies.aws_sources import load_configs

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR: the download folder lands under tmp_path
    s3 = client("s3", "us-east-1", aws)
    s3.create_bucket(Bucket="configs")
    s3.put_object(Bucket="configs", Key="app/docker-compose.yml",
                  Body=b"services:\n  web:\n    image: w\n    environment:\n      API_URL: http://api:8080\n"
                       b"  api:\n    image: a\n")
    s3.put_object(Bucket="configs", Key="app/../../escaped.yml", Body=b"services: {}\n")
    findings = load_configs("s3://configs/app", s3)
    assert not list(tmp_path.rglob("escaped.yml")), "an S3 key with .. was written outside the download folder"
    assert findings.references or findings.nodes  # the good config was still read
