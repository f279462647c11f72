"""The one stop/reload policy (streamprep.ops.signals.StopPolicy), shared by a run and the --workers supervisor."""

from __future__ import annotations

import logging
import signal

import pytest

from streamprep.ops.signals import StopPolicy


def test_first_stop_drains_later_ones_abort_and_reload_waits_for_no_stop(caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []
    policy = StopPolicy(
        logging.getLogger("streamprep.test"),
        lambda sig: done.append(f"drain {sig.name}"),
        lambda sig: done.append(f"abort {sig.name}"),
        lambda: done.append("reload"),
        what=" the workers",
    )
    with caplog.at_level(logging.INFO):
        policy.on_reload()
        policy.on_stop(signal.SIGTERM)
        policy.on_reload()  # stopping: a reload would start what is being stopped
        policy.on_stop(signal.SIGINT)
        policy.on_stop(signal.SIGTERM)
    assert done == ["reload", "drain SIGTERM", "abort SIGINT", "abort SIGTERM"]
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "SIGTERM received: stopping the workers",
        "second SIGINT: stopping the workers now",
        "second SIGTERM: stopping the workers now",
    ]
