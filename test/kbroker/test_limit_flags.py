"""Every ingress limit is a flag of `kbroker run` / `kbroker ingress`, with its default from the
settings, a KBROKER_* variable, and a check that the values fit together."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
from kbroker.core.events import DecodeLimits
from kbroker.core.settings import IngressSettings, ServerLimits

from kbroker import limit_flags


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    limit_flags.register(p)
    return p.parse_args(list(argv))


def test_defaults_are_the_settings_defaults() -> None:
    assert limit_flags.apply(IngressSettings(), parse()) == IngressSettings()


@pytest.mark.parametrize(
    ("argv", "group", "field", "value"),
    [
        (["--max-header-bytes", "70000"], "server", "max_header_bytes", 70000),
        (["--header-timeout", "2.5"], "server", "header_timeout", 2.5),
        (["--max-connections", "7"], "server", "max_connections", 7),
        (["--max-buffered-body-bytes", "33554432"], "server", "max_buffered_body_bytes", 2**25),
        (["--max-event-bytes", "2048"], "limits", "max_event_bytes", 2048),
        (["--max-attributes", "50"], "limits", "max_attributes", 50),
    ],
)
def test_flag_sets_its_limit(argv: list[str], group: str, field: str, value: float) -> None:
    settings = limit_flags.apply(IngressSettings(), parse(*argv))
    assert getattr(getattr(settings, group), field) == value


def test_environment_gives_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBROKER_IDLE_TIMEOUT", "3")
    assert limit_flags.apply(IngressSettings(), parse()).server.idle_timeout == 3.0


def test_limits_that_do_not_fit_together_are_refused() -> None:
    with pytest.raises(ValueError, match="max_header_count"):
        limit_flags.apply(IngressSettings(), parse("--max-attributes", "120"))


def test_argv_round_trips() -> None:
    settings = IngressSettings(
        server=dataclasses.replace(ServerLimits(), min_body_rate=10),
        limits=dataclasses.replace(DecodeLimits(), max_batch_events=5),
    )
    assert limit_flags.apply(IngressSettings(), parse(*limit_flags.argv(settings))) == settings
