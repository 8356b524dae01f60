"""``gateway admin-token generate``: a token, and the tokens-file line that accepts it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.settings import parse_settings


def test_generate_appends_a_hashed_line_to_a_0600_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokens_file = tmp_path / "admin-tokens"
    assert main(["admin-token", "generate", "--name", "ops", "--append-to", str(tokens_file), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["admin-token", "generate", "--name", "dash", "--read-only", "--append-to", str(tokens_file)]) == 0
    captured = capsys.readouterr()
    second = captured.out.strip()
    assert second.startswith("gwa_") and "admin.tokens_file line: dash:sha256:" in captured.err
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    text = tokens_file.read_text()
    assert first["token"] not in text and second not in text  # only digests are written
    settings = parse_settings({"admin": {"tokens_file": str(tokens_file)}}, environ={})
    ops = settings.admin.tokens.authenticate(first["token"])
    dash = settings.admin.tokens.authenticate(second)
    assert ops is not None and ops.name == "ops" and not ops.read_only
    assert dash is not None and dash.name == "dash" and dash.read_only


def test_duplicate_name_and_bad_name_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokens_file = tmp_path / "admin-tokens"
    assert main(["admin-token", "generate", "--name", "ops", "--append-to", str(tokens_file)]) == 0
    before = tokens_file.read_text()
    capsys.readouterr()
    assert main(["admin-token", "generate", "--name", "ops", "--append-to", str(tokens_file)]) == 2
    assert "already has an admin token named 'ops'" in capsys.readouterr().err
    assert main(["admin-token", "generate", "--name", "bad name"]) == 2
    assert "an admin token name is" in capsys.readouterr().err
    assert tokens_file.read_text() == before
