"""`sluice run` flags are a contract other tools rely on: pin their names and defaults."""

from __future__ import annotations

import pytest

from sluice.cli import _parser
from sluice.settings import Settings


def test_run_defaults() -> None:
    args = _parser().parse_args(["run"])
    assert args.namespaces is None and not args.all_namespaces
    assert args.metrics_port == 9090
    assert args.health_port == 8080
    assert args.watch_timeout == 70.0
    assert args.leader_elect is True
    assert args.lease_duration == 15.0
    assert args.admission == "off"
    assert args.status_interval is None
    assert args.status_writers == 4


def test_run_flags() -> None:
    args = _parser().parse_args(
        [
            "run",
            "--namespace",
            "a",
            "-n",
            "b",
            "--metrics-port",
            "9191",
            "--no-leader-elect",
            "--admission",
            "local",
            "--status-interval",
            "0.25",
            "--status-writers",
            "2",
        ]
    )
    assert args.namespaces == ["a", "b"]
    assert args.metrics_port == 9191
    assert args.leader_elect is False
    assert args.admission == "local"
    assert args.status_interval == 0.25
    assert args.status_writers == 2


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_status_writers_must_be_a_positive_count(value: str) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "--status-writers", value])


def test_namespace_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "-n", "a", "--all-namespaces"])


def test_status_interval_flag_beats_env() -> None:
    env = {"SLUICE_STATUS_INTERVAL": "5"}
    assert Settings.build({"status_interval": 0.0}, env).status_interval == 0.0
    assert Settings.build({"status_interval": None}, env).status_interval == 5.0
    assert Settings.build({}, {}).status_interval == 1.0
    assert Settings.build({"status_interval": -3}, {}).status_interval == 0.0


def test_settings_are_the_flags_then_the_environment_then_the_defaults() -> None:
    args = vars(_parser().parse_args(["run", "-n", "a", "--lease-duration", "6"]))
    settings = Settings.build(args, {})
    assert settings.namespaces == ("a",)
    assert settings.lease_duration == 6.0
    assert settings.renew_deadline == 4.0
    assert settings.leader_election_namespace is None
    # Every default of `sluice run` is the Settings' own.
    defaults = Settings.build(vars(_parser().parse_args(["run"])), {})
    assert defaults == Settings()


def test_gc_is_tuned_for_the_event_loop() -> None:
    import gc

    from sluice.cli import _tune_gc

    before = gc.get_threshold()
    try:
        _tune_gc()
        assert gc.get_freeze_count() > 0  # start-up objects out of the collector's sight
        assert gc.get_threshold()[0] >= 10_000  # few young-generation passes
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_stuck_after_defaults_to_30_seconds_and_must_be_positive() -> None:
    assert Settings.build(vars(_parser().parse_args(["run"])), {}).stuck_after == 30.0
    args = _parser().parse_args(["run", "--stuck-after", "2.5"])
    assert Settings.build(vars(args), {}).stuck_after == 2.5
    for bad in ("0", "-1", "nan"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["run", "--stuck-after", bad])


def test_max_matrix_defaults_to_256_and_must_be_positive() -> None:
    assert Settings.build(vars(_parser().parse_args(["run"])), {}).max_matrix == 256
    args = _parser().parse_args(["run", "--max-matrix", "1000"])
    assert Settings.build(vars(args), {}).max_matrix == 1000
    for bad in ("0", "-1", "x"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["run", "--max-matrix", bad])
