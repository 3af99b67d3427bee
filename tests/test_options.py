"""One dialect for every command: flags, CONFIG.yaml and key=value load into the same checked dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from mobilebert.cli import COMMANDS, build_parser
from mobilebert.cli.flags import config_from_args, fill, shown
from mobilebert.options import UsageError, changed, load, option, to_dict


@dataclass
class Section:
    lr: float = option(1e-3, help="learning rate", above=0)
    steps: int = option(10, help="steps", at_least=1)


@dataclass(kw_only=True)
class Cfg:
    data: str = option(help="data folder")
    texts: list[str] = option(factory=list, help="texts", positional=True)
    seeds: list[int] = option(factory=lambda: [42], help="seeds")
    mode: str = option("a", help="mode", choices=("a", "b"))
    fast: bool = option(False, help="fast")
    train: Section = option(factory=lambda: Section(lr=5e-4), help="optimisation")

    def check(self) -> None:
        if self.fast and self.train.steps > 100:
            raise ValueError("--fast takes at most 100 train.steps")


def _load(argv: list[str]) -> Cfg:
    import argparse

    ns = fill(argparse.ArgumentParser(), Cfg, resumable=False).parse_intermixed_args(argv)
    path, overrides, values, names = config_from_args(Cfg, ns)
    return load(Cfg, path, overrides, values, names)


def test_flags_yaml_and_overrides_give_the_same_config(tmp_path: Path):
    yml = tmp_path / "c.yaml"
    yml.write_text("data: d\nseeds: [1, 2]\ntrain:\n  lr: 1e-4\n")
    by_flags = _load(["--data", "d", "--seeds", "1,2", "--train.lr", "1e-4"])
    by_yaml = _load([str(yml)])
    by_keys = _load(["data=d", "seeds=[1,2]", "train.lr=1e-4"])
    assert to_dict(by_flags) == to_dict(by_yaml) == to_dict(by_keys)
    assert by_flags.train.steps == 10 and _load(["--data", "d"]).train.lr == 5e-4  # the section's own default


def test_precedence_is_defaults_yaml_overrides_flags(tmp_path: Path):
    yml = tmp_path / "c.yaml"
    yml.write_text("data: from-yaml\nmode: b\ntrain:\n  steps: 3\n")
    cfg = _load([str(yml), "data=from-override", "train.steps=4", "--train.steps", "5", "some", "text"])
    assert (cfg.data, cfg.mode, cfg.train.steps, cfg.texts) == ("from-override", "b", 5, ["some", "text"])


@pytest.mark.parametrize("argv, message", [
    (["--data", "d", "--train.lr", "0"], "--train.lr must be > 0, got 0"),
    (["data=d", "train.lr=-1"], "train.lr must be > 0"),
    (["data=d", "mode=c"], "mode must be one of a, b"),
    (["data=d", "nokey=1"], "unknown key(s) nokey"),
    (["data=d", "train.nokey=1"], "unknown key(s) train.nokey"),
    (["data=d", "seeds=x"], "seeds must be a list"),
    (["--data", "d", "--seeds", "1,x"], "--seeds must be a comma-separated list"),
    ([], "--data is required"),
    (["--data", "d", "--fast", "--train.steps", "101"], "--fast takes at most 100 train.steps"),
])
def test_one_line_naming_the_setting_as_typed(argv: list[str], message: str):
    with pytest.raises(UsageError) as e:
        _load(argv)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_yaml_value_is_named_with_its_file(tmp_path: Path):
    yml = tmp_path / "c.yaml"
    yml.write_text("data: d\ntrain:\n  lr: -1\n")
    with pytest.raises(UsageError, match=r"c\.yaml: train\.lr must be > 0"):
        _load([str(yml)])


def test_resume_compares_only_settings_that_change_results():
    @dataclass
    class Run:
        lr: float = option(1e-3, help="lr")
        threads: int = option(1, help="threads", affects_result=False)

    assert changed(Run, {"lr": 1e-3, "threads": 1}, {"lr": 1e-3, "threads": 2}) == []
    assert changed(Run, {"lr": 1e-3, "threads": 1}, {"lr": 2e-3, "threads": 1}) == ["lr"]


def test_defaults_read_as_written():
    assert shown(5e-5) == "5e-5" and shown([1, 8]) == "1 8" and shown(0.1) == "0.1"


def test_every_command_builds_its_flags_from_its_config():
    parser = build_parser()
    subs = parser._subparsers._group_actions[0].choices
    assert set(subs) == set(COMMANDS)
    for name in COMMANDS:
        text = subs[name].format_help()
        assert "example:" in text, name


def test_a_missing_package_is_named_with_the_install_line_before_any_work(tmp_path, monkeypatch, capsys):
    import importlib.util

    from mobilebert.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else real(name, *a))
    assert main(["demo", "--fast", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scipy" in err[0] and 'pip install "mobilebert[all]"' in err[0]
    assert not (tmp_path / "d").exists()
