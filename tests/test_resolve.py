"""Resolving a config once (streamprep.config.resolve): every source's effective values, fallbacks included."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import RECORDINGS

from streamprep.config.resolve import ResolvedSource, resolve_each, resolve_sources
from streamprep.config.schema import parse
from streamprep.flow.queues import DropPolicy
from streamprep.sources import FileSource, LiveSource, make_source
from streamprep.sources.live import SourceKind
from streamprep.sources.skipping import SampleMode
from streamprep.values.errors import ConfigError

DEMO = str(RECORDINGS / "demo_720p.mp4")


def test_each_source_gets_its_own_setting_or_the_top_level_one() -> None:
    cfg = parse(
        {
            "fps": 5,
            "queue_size": 6,
            "live_queue_size": 3,
            "sample": "keyframes",
            "skip_frames": False,
            "hwaccel": "off",
            "sources": [
                DEMO,
                "rtsp://cam.example/1",
                {"url": DEMO, "fps": 2, "queue_size": 9, "policy": "drop_newest", "sample": "exact", "skip_frames": 1},
                {"url": "rtsp://cam.example/2", "hwaccel": "auto", "queue_size": 4, "policy": "block"},
            ],
        }
    )
    file, cam, own_file, own_cam = resolve_sources(cfg)
    assert (file.fps, file.queue_size, file.policy) == (5, 6, DropPolicy.BLOCK)
    assert (cam.fps, cam.queue_size, cam.policy) == (5, 3, DropPolicy.DROP_OLDEST)
    assert (own_file.fps, own_file.queue_size, own_file.policy) == (2, 9, DropPolicy.DROP_NEWEST)
    assert (own_cam.queue_size, own_cam.policy, own_cam.options.policy) == (4, DropPolicy.BLOCK, DropPolicy.BLOCK)
    decoding = file.options.decoding
    assert (decoding.sample, decoding.skip, file.hwaccel) == (SampleMode.KEYFRAMES, False, "off")
    assert (own_file.options.decoding.sample, own_file.options.decoding.skip) == (SampleMode.EXACT, True)
    assert own_cam.hwaccel == "auto"
    assert all(s.model == "default" for s in (file, cam, own_file, own_cam))


@pytest.mark.parametrize(
    ("url", "own", "top", "kind", "live"),
    [
        (DEMO, None, False, SourceKind.FILE, False),
        (DEMO, None, True, SourceKind.FILE, True),
        (DEMO, False, True, SourceKind.FILE, False),
        (DEMO, True, False, SourceKind.FILE, True),
        ("rtsp://cam.example/s", None, False, SourceKind.NETWORK, True),
        ("/dev/video0", None, False, SourceKind.WEBCAM, True),
        ("3", None, False, SourceKind.WEBCAM, True),
        ("lavfi:testsrc2", None, False, SourceKind.LAVFI, True),
    ],
)
def test_liveness_is_worked_out_once(url: str, own: bool | None, top: bool, kind: SourceKind, live: bool) -> None:
    source: dict[str, object] = {"url": url} if own is None else {"url": url, "realtime": own}
    (spec,) = resolve_sources(parse({"realtime": top, "sources": [source]}))
    assert spec.kind is kind and spec.live is live
    assert spec.options.realtime is (kind is SourceKind.FILE)  # a file that runs live is paced at its own rate
    assert spec.queue_size == (1 if live else 8)


def test_ids_are_the_configs_in_its_order() -> None:
    cfg = parse({"sources": [DEMO, DEMO, {"url": "rtsp://u@cam.example/a", "id": "door"}, "rtsp://cam.example/b"]})
    ids = ["demo_720p", "demo_720p-2", "door", "cam.example"]
    assert [s.id for s in resolve_sources(cfg)] == cfg.source_ids() == ids


def test_the_url_carries_the_credentials_and_the_shown_one_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_PASSWORD", "s3cret:x")
    source = {"url": "rtsp://cam.example/s", "username": "viewer", "password_env": "CAM_PASSWORD"}
    (spec,) = resolve_sources(parse({"sources": [source]}))
    assert spec.url == "rtsp://viewer:s3cret%3Ax@cam.example/s"
    assert "s3cret" not in spec.safe_url and "cam.example/s" in spec.safe_url


def test_a_source_whose_credentials_cannot_be_read_is_refused_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_PASSWORD", raising=False)
    bad = {"url": "rtsp://viewer@cam.example/s", "id": "door", "password_env": "NO_SUCH_PASSWORD"}
    cfg = parse({"sources": [DEMO, bad]})
    good, refused = resolve_each(cfg)
    assert isinstance(good, ResolvedSource) and good.id == "demo_720p"
    assert isinstance(refused, ConfigError) and "password_env" in str(refused) and "door" in str(refused)
    with pytest.raises(ConfigError, match="source door: password_env"):
        resolve_sources(cfg)


def test_the_live_options_are_the_sources_own() -> None:
    source = {
        "url": "rtsp://cam.example/s",
        "transport": "udp",
        "open_timeout_s": 2,
        "stall_timeout_s": 3,
        "backoff_cap_s": 7,
        "max_restarts_per_minute": 4,
        "format": "rtsp",
        "options": {"probesize": "5000"},
        "low_delay": False,
        "wait_for_source": True,
        "roi": [0.1, 0.1, 0.5, 0.5],
    }
    (spec,) = resolve_sources(parse({"sources": [source]}))
    o = spec.options
    assert (o.transport, o.open_timeout, o.stall_timeout, o.input_format) == ("udp", 2, 3, "rtsp")
    assert (o.backoff.first_s, o.backoff.cap_s, o.backoff.per_minute) == (0.5, 7, 4)
    assert (o.input_options, o.low_delay, o.wait_for_source) == ({"probesize": "5000"}, False, True)
    assert spec.roi == (0.1, 0.1, 0.5, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.fps = 3.0  # type: ignore[misc]


def test_a_resumed_file_resolves_with_its_resume_seq() -> None:
    cfg = parse({"sources": [DEMO]})
    cfg = cfg.model_copy(update={"sources": (cfg.sources[0].resumed_at(42),)})
    assert resolve_sources(cfg)[0].resume_seq == 42


def test_make_source_builds_what_the_spec_says() -> None:
    cfg = parse({"hwaccel": "off", "sources": [DEMO, {"url": "rtsp://cam.example/s"}]})
    file_spec, cam_spec = resolve_sources(cfg)
    file = make_source(file_spec, lambda _: None)
    assert isinstance(file, FileSource) and not file.live and file.id == "demo_720p"
    cam = make_source(cam_spec, lambda _: None, came_up=True)
    assert isinstance(cam, LiveSource) and cam.live and cam.url == cam_spec.url
    assert cam.options.wait_for_source  # it has been online: kept retrying whatever it answers
    assert not make_source(cam_spec, lambda _: None).options.wait_for_source  # type: ignore[attr-defined]
