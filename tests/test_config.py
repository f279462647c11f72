"""Config validation that names the key, and the source budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RECORDINGS

from streamprep.config import budget
from streamprep.config.schema import parse
from streamprep.inference.model import load_model
from streamprep.values.errors import ConfigError

DEMO = str(RECORDINGS / "demo_720p.mp4")
PAN = str(RECORDINGS / "pan_1080p.mp4")


def test_ids_that_publish_to_the_same_topic_are_refused_with_both_names() -> None:
    with pytest.raises(ConfigError, match="source ids 'cam/1' and 'cam_1' would publish to the same MQTT topic"):
        parse({"sources": [{"url": DEMO, "id": "cam/1"}, {"url": DEMO, "id": "cam_1"}]})


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"sources": [{"url": DEMO, "id": "door\nERROR forged line"}]}, "sources.0.id"),
        ({"device": "edge\r01", "sources": [DEMO]}, "device"),
    ],
)
def test_control_characters_in_names_are_refused(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: .* contains a control character"):
        parse(data)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"device": "d" * 70_000, "sources": [DEMO]}, "device"),
        ({"sources": [{"url": DEMO, "id": "i" * 129}]}, "sources.0.id"),
        ({"sources": [DEMO], "models": {"m" * 200: {}}}, "models"),
        ({"sources": [DEMO], "model": {"name": "n" * 300}}, "model.name"),
        ({"sources": [DEMO], "events": {"labels": ["l" * 129]}}, "events.labels"),
        (
            {
                "sources": [
                    {"url": DEMO, "zones": [{"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]], "labels": ["x" * 200]}]}
                ],
                "events": {},
            },
            "sources.0.zones.0.labels",
        ),
        (
            {"sources": [DEMO], "output": {"mqtt": {"url": "mqtt://h", "topic_prefix": "a/" + "p" * 129}}},
            "output.mqtt.topic_prefix",
        ),
        (
            {"sources": [DEMO], "events": {"homeassistant": {"discovery_prefix": "h" * 200}}},
            "events.homeassistant.discovery_prefix",
        ),
    ],
)
def test_every_name_is_at_most_128_characters(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: .* characters long; names are at most 128") as caught:
        parse(data)
    assert len(str(caught.value)) < 200, "the message quotes only the start of the name"


def test_a_name_of_128_characters_is_accepted_and_a_long_file_name_gives_a_short_id(tmp_path: Path) -> None:
    long_file = tmp_path / f"{'f' * 200}.mp4"
    cfg = parse({"device": "d" * 128, "sources": [{"url": DEMO, "id": "i" * 128}, str(long_file)]})
    assert [len(i) for i in cfg.source_ids()] == [128, 120]


@pytest.mark.parametrize("command", ["check", "run"])
def test_check_and_run_refuse_a_70000_character_device_naming_the_key(tmp_path: Path, command: str) -> None:
    """It used to pass ``check`` and then fail ``run --mqtt`` with an internal error from the MQTT client."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'device = "{"d" * 70_000}"\nsources = ["{DEMO}"]\n[output]\nmqtt = "mqtt://127.0.0.1:9"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", command, "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"streamprep: error: {cfg}: device: 'dddd") and len(line) < 300, line


@pytest.mark.parametrize(
    ("roi", "message"),
    [
        ([0.5, 0.5, 0.6, 0.6], "x \\+ width = 1.1 goes past the right edge"),
        ([0.0, 0.5, 0.5, 0.75], "y \\+ height = 1.25 goes past the bottom edge"),
        ([0.1, 0.1, 0.0, 0.5], "must be .* with width and height > 0"),
    ],
)
def test_a_region_in_fractions_is_checked_at_config_time(roi: list[float], message: str) -> None:
    with pytest.raises(ConfigError, match=rf"sources\.0\.roi: {message}"):
        parse({"sources": [{"url": DEMO, "roi": roi}]})


def test_a_region_in_fractions_that_fits_is_accepted() -> None:
    assert parse({"sources": [{"url": DEMO, "roi": [0.25, 0.0, 0.75, 1.0]}]}).sources[0].roi == (0.25, 0.0, 0.75, 1.0)


def test_the_estimate_reads_each_file_s_frame_size() -> None:
    costs = budget.estimate(parse({"sources": [DEMO, PAN, "rtsp://cam.example/1"]}))
    assert [(c.width, c.height, c.size_known) for c in costs] == [
        (1280, 720, True),
        (1920, 1080, True),
        (1920, 1080, False),
    ]
    assert costs[1].memory_mb > 2 * costs[0].memory_mb * 0.9, "cost grows with the frame size"


def test_too_many_sources_are_refused() -> None:
    cfg = parse({"sources": [DEMO] * 3, "limits": {"max_sources": 2}})
    with pytest.raises(ConfigError, match=r"limits\.max_sources: 3 sources configured, at most 2 allowed"):
        budget.check(cfg)


def test_sources_over_the_memory_budget_are_refused_with_the_reason() -> None:
    cfg = parse({"sources": [PAN] * 20, "limits": {"memory_mb": 512}})
    with pytest.raises(ConfigError) as caught:
        budget.check(cfg)
    text = str(caught.value)
    assert text.startswith("limits.memory_mb: the 20 sources would need about ")
    assert "pan_1080p (1920x1080)" in text and "frames its decoder keeps" in text
    assert budget.check(parse({"sources": [PAN] * 2, "limits": {"memory_mb": 512}}))


def test_run_refuses_an_over_budget_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'sources = ["{PAN}", "{PAN}", "{PAN}"]\n[limits]\nmax_sources = 2\n')
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("streamprep: error: limits.max_sources: 3 sources")
    assert "Traceback" not in proc.stderr and "connecting" not in proc.stderr, "refused before any source started"


def test_import_loads_nothing_heavy() -> None:
    heavy = "('cv2', 'av', 'onnxruntime', 'onnx', 'numpy')"
    code = f"import sys, streamprep; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = "import streamprep; streamprep.Run; import sys; print('onnx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_a_bundled_model_can_be_named() -> None:
    from streamprep.inference.settings import BUNDLED_MODELS

    for name in ("fastestdet_352", "fastestdet_352.onnx"):
        assert parse({"model": {"path": name}}).model.path == BUNDLED_MODELS / "fastestdet_352.onnx"
    assert parse({"model": {"path": "nothing_like_it"}}).model.path == Path("nothing_like_it")


def test_an_error_naming_700_000_unknown_keys_names_ten_and_counts_the_rest() -> None:
    with pytest.raises(ConfigError) as caught:
        parse({f"k{i}": 1 for i in range(700_000)})
    message = str(caught.value)
    assert message.startswith("k0: unknown key; k1: unknown key;") and message.endswith(
        "k9: unknown key; ... and 699990 more"
    )


def test_second_models_are_read_under_model_and_models_name() -> None:
    then = {"path": "mobilenet_v2_224_int8", "on_labels": ["cat", "dog"], "min_score": 0.5, "margin": 0.1}
    cfg = parse({"model": {"then": [then]}, "models": {"door": {"then": [then, {"path": "fastestdet_352"}]}}})
    (first,) = cfg.model.then
    assert first.path.name == "mobilenet_v2_224_int8.onnx", "a bundled model's name"
    assert (first.on_labels, first.min_score, first.margin) == (("cat", "dog"), 0.5, 0.1)
    assert [t.path.stem for t in cfg.models["door"].then] == ["mobilenet_v2_224_int8", "fastestdet_352"]
    assert cfg.models["door"].then[1].on_labels is None, "default: every label"


@pytest.mark.parametrize(
    ("then", "message"),
    [
        ({"margin": 0.1}, "model.then.0.path: Field required"),
        ({"path": "mobilenet_v2_224_int8", "min_score": 1.5}, "model.then.0.min_score: Input should be less"),
        ({"path": "mobilenet_v2_224_int8", "margin": -0.1}, "model.then.0.margin: Input should be greater"),
        ({"path": "mobilenet_v2_224_int8", "on_label": ["cat"]}, "model.then.0.on_label: unknown key"),
        ({"path": "mobilenet_v2_224_int8", "on_labels": []}, "on_labels: give at least one label"),
        ({"path": "mobilenet_v2_224_int8", "then": [{"path": "fastestdet_352"}]}, "cannot have models of its own"),
    ],
)
def test_a_bad_second_model_is_refused_naming_the_key(then: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"model": {"then": [then]}})


def test_check_and_inspect_load_the_second_model_as_run_would(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[model.then]]\npath = "mobilenet_v2_224_int8"\non_labels = ["cat"]\n')
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "check", "--config", str(good), DEMO],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "model default.then.0: mobilenet_v2_224_int8 ok (224x224 nhwc uint8, classify decoder)" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "inspect", "--config", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    expected = "then 0    mobilenet_v2_224_int8: classify decoder (max batch 1), 224x224, on cat scoring 0+, margin 0"
    assert expected in proc.stdout.splitlines()
    bad = tmp_path / "bad.toml"
    bad.write_text('[[model.then]]\npath = "nope.onnx"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "check", "--config", str(bad), DEMO],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    said = proc.stderr.strip().splitlines()[-1]
    assert said.startswith("streamprep: error: model.then.0: model nope.onnx: no such file"), said


def test_second_models_need_a_detector_first() -> None:
    cfg = parse({"model": {"path": "mobilenet_v2_224_int8", "then": [{"path": "mobilenet_v2_224_int8"}]}})
    with pytest.raises(ConfigError, match=r"^model.then: model mobilenet_v2_224_int8 gives no boxes to crop"):
        load_model(cfg.model)
