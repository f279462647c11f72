"""Remote inference on a real NVIDIA Triton Inference Server (KServe v2 protocol) started on 127.0.0.1.

The server is ``nvidia-pytriton``'s bundled ``tritonserver`` serving the bundled ONNX models through ONNX
Runtime (``servers/triton_server.py``), from ``.venv-triton`` (``scripts/triton-venv.sh``; ``.ci/run`` makes it).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RECORDINGS, SSD, ListSink, replay, stable
from servers.triton import TRITON_PYTHON, TritonServer
from test_mqtt_delivery import make_ca_and_server_cert

from streamprep.config.schema import parse
from streamprep.inference.model import labels_from_metadata, load_model
from streamprep.inference.remote import auth_headers, server_model
from streamprep.run.pipeline import Pipeline
from streamprep.values.errors import ConfigError, ModelError, ServerUnavailable
from streamprep.values.frames import DropReason, SourceState

DEMO = RECORDINGS / "demo_720p.mp4"
VFR = RECORDINGS / "vfr_720p.mp4"
PAN = RECORDINGS / "pan_1080p.mp4"
SSD_NAME = "ssd_mobilenet_v2_fpnlite_256_int8"  # the bundled model: its sidecar and labels come along


def require_triton() -> None:
    if not TRITON_PYTHON.exists():
        reason = f"{TRITON_PYTHON} is missing: run scripts/triton-venv.sh (.ci/run does)"
        if os.environ.get("STREAMPREP_REQUIRE_SERVICES"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def triton() -> Iterator[TritonServer]:
    """One Triton for the module: ``ssd`` (the bundled SSD, max_batch_size 4), ``labelled`` (the same, with its
    labels in its model configuration) and ``embed`` (no image input)."""
    require_triton()
    labelled = ["--model", f"labelled={SSD}:4", "--labels", f"labelled={SSD.with_suffix('.labels.txt')}"]
    server = TritonServer(["--model", f"ssd={SSD}:4", *labelled, "--vector", "embed"])
    server.start()
    yield server
    server.kill()


def remote(url: str, **kserve: Any) -> dict[str, Any]:
    return {"backend": "kserve", "path": SSD_NAME, "kserve": {"url": url, "model": "ssd", **kserve}}


async def poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``predicate()`` holds, checking every 50 ms (counters change without telling anyone)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.05)


# -- what the server says becomes a ModelInfo, as a local file's would


def test_server_metadata_becomes_the_same_model_info_as_the_onnx_file() -> None:
    local = load_model(parse({}).model).engine.info
    metadata = {
        "name": "ssd",
        "inputs": [{"name": i.name, "datatype": "UINT8", "shape": ["-1", "256", "256", "3"]} for i in local.inputs],
        "outputs": [
            {"name": o.name, "datatype": "FP32", "shape": ["-1", *[str(d) for d in o.shape[1:]]]} for o in local.outputs
        ],
    }
    config = {"config": {"max_batch_size": 4, "parameters": {"names": {"string_value": "['a', 'b']"}}}}
    found = server_model("ssd", metadata, config, local.sidecar, "grpc://h:8001/ssd")
    assert found.max_batch_size == 4 and found.batched
    assert [(i.name, i.shape, i.dtype) for i in found.info.inputs] == [
        (local.inputs[0].name, (None, 256, 256, 3), "uint8")
    ]
    assert [o.name for o in found.info.outputs] == [o.name for o in local.outputs]
    assert [o.shape[1:] for o in found.info.outputs] == [o.shape[1:] for o in local.outputs]
    assert found.info.metadata == {"names": "['a', 'b']"}, "Triton's config parameters are the model's metadata"


def test_a_model_without_batch_axis_takes_one_image_per_request() -> None:
    metadata = {
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [3, 224, 224]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [1000]}],
    }
    found = server_model("cls", metadata, {"max_batch_size": 0}, {}, "http://h:8000/cls")
    assert not found.batched and found.max_batch_size is None
    assert found.info.inputs[0].shape == (1, 3, 224, 224) and found.info.outputs[0].shape == (1, 1000)


@pytest.mark.parametrize(
    ("kserve", "message"),
    [
        ({}, 'backend = "kserve" needs a kserve table'),
        ({"kserve": {"url": "tcp://h:1", "model": "m"}}, "must look like grpc://HOST"),
        ({"kserve": {"url": "grpcs://h:1", "model": "m", "tls_insecure": True}}, "gRPC cannot skip certificate"),
        ({"kserve": {"url": "grpc://h:1", "model": "m", "password_env": "P"}}, "a password needs a username"),
        (
            {"kserve": {"url": "grpc://h:1", "model": "m", "username": "u", "token_env": "T"}},
            "username and a token would both be the authorization header",
        ),
    ],
)
def test_remote_model_config_is_checked_when_read(kserve: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"model": {"backend": "kserve", **kserve}})


def test_credentials_come_from_the_environment_files_or_systemd_and_become_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def headers(**kserve: Any) -> dict[str, str]:
        cfg = parse({"model": {"backend": "kserve", "kserve": {"model": "m", **kserve}}}).model.kserve
        assert cfg is not None
        return auth_headers(cfg, "model.kserve")

    monkeypatch.setenv("KSERVE_PASSWORD", "s3cret")
    basic = "Basic " + base64.b64encode(b"edge:s3cret").decode()
    assert headers(url="https://h", username="edge", password_env="KSERVE_PASSWORD") == {"authorization": basic}
    assert headers(url="https://edge:s3cret@h/v2") == {"authorization": basic}
    (tmp_path / "kserve-token").write_text("t0ken\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert headers(url="grpc://h") == {"authorization": "Bearer t0ken"}
    assert headers(url="grpc://h", token_header="X-Api-Key") == {"x-api-key": "t0ken"}
    with pytest.raises(ConfigError, match=r"model\.kserve\.token_env: environment variable NOPE is not set"):
        headers(url="grpc://h", token_env="NOPE")
    with pytest.raises(ConfigError, match=r"model.kserve.password_file: .*/missing: No such file"):
        headers(url="grpc://h", username="u", password_file=str(tmp_path / "missing"))


def test_a_missing_tritonclient_is_one_clear_error() -> None:
    code = (
        "import sys; sys.modules['tritonclient'] = None\n"
        "from streamprep.cli.main import main\n"
        "raise SystemExit(main(['inspect', '--config', sys.argv[1]]))\n"
    )
    cfg = Path(os.environ.get("TMPDIR", "/tmp")) / f"remote-missing-{os.getpid()}.toml"
    cfg.write_text('[model]\nbackend = "kserve"\n[model.kserve]\nurl = "grpc://127.0.0.1:1"\nmodel = "m"\n')
    try:
        done = subprocess.run([sys.executable, "-c", code, str(cfg)], capture_output=True, text=True, timeout=60)
    finally:
        cfg.unlink()
    assert done.returncode == 4, done.stderr
    errors = [x for x in done.stderr.splitlines() if x.startswith("streamprep: error:")]
    assert errors == [
        "streamprep: error: backend = \"kserve\" needs the tritonclient package: pip install 'streamprep[remote]' "
        "(tritonclient.grpc is not installed)"
    ], done.stderr
    assert "Traceback" not in done.stderr


# -- against the real server


def remote_by_name(url: str, model: str) -> dict[str, Any]:
    """A model known only by its name on the server: no local copy (``path``), so no sidecar or labels file."""
    pre = {"color": "rgb", "scaling": "none", "resize": "stretch"}
    return {"backend": "kserve", "decoder": "ssd", "preprocess": pre, "kserve": {"url": url, "model": model}}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_remote_model_without_path_takes_its_labels_from_the_server(
    triton: TritonServer, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = triton.grpc_url if protocol == "grpc" else triton.http_url
    with caplog.at_level(logging.WARNING, logger="streamprep.inference.model"):
        model = load_model(parse({"model": remote_by_name(url, "labelled")}).model)
    assert model.labels == load_model(parse({}).model).labels and len(model.labels) == 81
    assert not [r for r in caplog.records if "no labels" in r.getMessage()]


def test_a_remote_model_without_labels_anywhere_says_what_is_missing_once(
    triton: TritonServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="streamprep.inference.model"):
        model = load_model(parse({"model": remote_by_name(triton.grpc_url, "ssd")}).model)
    assert model.labels == ()
    said = [r.getMessage() for r in caplog.records if "no labels" in r.getMessage()]
    assert len(said) == 1, said
    assert f"the server ({triton.grpc_url}/ssd) gives none" in said[0] and "labels = FILE" in said[0]
    assert ".labels.txt" not in said[0], "no file beside a model that is not here"


def test_server_parameters_of_every_form_give_labels() -> None:
    local = load_model(parse({}).model).engine.info
    metadata = {
        "inputs": [{"name": i.name, "datatype": "UINT8", "shape": ["-1", "256", "256", "3"]} for i in local.inputs],
        "outputs": [],
        "parameters": {"labels": ["person", "cat"]},  # Open Inference Protocol: plain JSON values
    }
    found = server_model("m", metadata, None, {}, "http://h/m")
    assert labels_from_metadata(found.info.metadata) == ("person", "cat")
    config = {"config": {"parameters": {"labels": {"string_value": "dog\ncup\n"}}}}  # Triton: one per line
    found = server_model("m", metadata, config, {}, "http://h/m")
    assert labels_from_metadata(found.info.metadata) == ("dog", "cup"), "the server's configuration wins"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_remote_inference_gives_the_same_detections_as_local(triton: TritonServer, protocol: str) -> None:
    url = triton.grpc_url if protocol == "grpc" else triton.http_url
    local, _ = replay(parse({"sources": [str(DEMO)], "fps": 2}))
    cfg = parse({"sources": [str(DEMO)], "fps": 2, "model": remote(url)})
    model = load_model(cfg.model)
    assert model.engine.info.providers == (f"kserve {url}/ssd",)
    assert (model.spec, model.labels) == (load_model(parse({}).model).spec, load_model(parse({}).model).labels)
    got, report = replay(cfg, model)
    assert not report.failures
    assert len(got) == len(local) == 24
    for g, e in zip(stable(got), stable(local), strict=True):
        assert (g["seq"], g["frame_index"], g["pts"]) == (e["seq"], e["frame_index"], e["pts"])
        assert [d["label"] for d in g["detections"]] == [d["label"] for d in e["detections"]]
        for dg, de in zip(g["detections"], e["detections"], strict=True):
            assert dg["score"] == pytest.approx(de["score"], abs=1e-3)
            assert dg["box"] == pytest.approx(de["box"], abs=0.5)
    assert any(g["detections"] for g in stable(got)), "the recording has things to detect"


def test_batches_across_sources_up_to_the_servers_max_batch_size(
    triton: TritonServer, caplog: pytest.LogCaptureFixture
) -> None:
    sources = [str(DEMO), str(VFR), str(PAN)]
    cfg = parse({"sources": sources, "fps": 3, "model": {**remote(triton.grpc_url), "max_wait_ms": 50}})
    model = load_model(cfg.model)
    assert model.max_batch == 4, "model.batch unset: the server's max_batch_size"
    results, report = replay(cfg, model)
    assert not report.failures
    sizes = [r.batch_size for r in results]
    assert max(sizes) > 1 and max(sizes) <= 4
    mixed = {}
    for r in results:
        mixed.setdefault((r.timings.inference_ms, r.batch_size), set()).add(r.source)
    assert any(len(s) > 1 for s in mixed.values()), "one request carried frames of several sources"
    for source in ("demo_720p", "vfr_720p", "pan_1080p"):
        c = report.metrics.sources[source]
        assert c.sampled == c.processed > 0 and c.dropped == 0
    capped = parse({"model": {**remote(triton.grpc_url), "batch": 8}})
    assert load_model(capped.model).max_batch == 4
    assert "model.batch = 8 is more than the server takes (max_batch_size 4)" in caplog.text


@pytest.mark.parametrize(
    ("model", "code", "message"),
    [
        ({"kserve": {"model": "nope"}}, 4, "the inference server at {url} has no model 'nope'"),
        ({"kserve": {"model": "embed"}}, 2, "model {url}/embed: input 'x' has rank 2, an image input has rank 4"),
        (
            {"preprocess": {"width": 320}},
            2,
            "model {url}/ssd: model.preprocess.width = 320 contradicts the model, whose input "
            "'serving_default_input_1:0' has width 256",
        ),
    ],
    ids=["wrong-name", "not-an-image", "wrong-shape"],
)
def test_a_wrong_model_is_refused_at_start_with_one_line(
    triton: TritonServer, tmp_path: Path, model: dict[str, Any], code: int, message: str
) -> None:
    cfg = tmp_path / "c.toml"
    kserve = {"url": triton.grpc_url, "model": "ssd", **model.get("kserve", {})}
    lines = ['[model]\nbackend = "kserve"']
    if "preprocess" in model:
        lines.append(f"[model.preprocess]\nwidth = {model['preprocess']['width']}")
    lines.append("[model.kserve]\n" + "\n".join(f'{k} = "{v}"' for k, v in kserve.items()))
    cfg.write_text("\n".join(lines) + "\n")
    for command in ("run", "check"):
        done = subprocess.run(
            [sys.executable, "-m", "streamprep", command, str(DEMO), "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == code, done.stderr
        errors = [x for x in done.stderr.splitlines() if x.startswith("streamprep: error:")]
        assert errors == [f"streamprep: error: {message.format(url=triton.grpc_url)}"], done.stderr
        assert "Traceback" not in done.stderr


def test_an_unreachable_server_is_refused_at_start() -> None:
    cfg = parse({"model": {"backend": "kserve", "kserve": {"url": "http://127.0.0.1:9", "model": "ssd"}}})
    with pytest.raises(ModelError, match=r"inference server http://127\.0\.0\.1:9/ssd unreachable: Connection refused"):
        load_model(cfg.model)


def test_a_hung_server_times_out_and_counts_as_unavailable(triton: TritonServer) -> None:
    models = [
        load_model(parse({"model": remote(url, timeout_s=1)}).model) for url in (triton.grpc_url, triton.http_url)
    ]
    triton.freeze()
    try:
        for model in models:
            started = time.monotonic()
            with pytest.raises(ServerUnavailable, match=r"unavailable: (Deadline Exceeded|timed out)"):
                model.engine.run(model.preprocessor.new_batch(1))
            assert time.monotonic() - started < 5, "bounded by timeout_s"
    finally:
        triton.freeze(False)
    for model in models:
        assert len(model.engine.run(model.preprocessor.new_batch(1))) == 3, "it answers again"


def test_tls_and_a_token_like_the_mqtt_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_triton()
    ca, crt, key = make_ca_and_server_cert(tmp_path, "triton")
    other_ca, _, _ = make_ca_and_server_cert(tmp_path, "other")
    server = TritonServer(["--model", f"ssd={SSD}:2", "--grpc-tls", str(crt), str(key), "--token", "Corr3ctHorse"])
    server.start()
    try:
        monkeypatch.setenv("TRITON_TOKEN", "Corr3ctHorse")
        grpcs = f"grpcs://127.0.0.1:{server.grpc_port}"
        header = "triton-grpc-protocol-triton-access-token"  # Triton's restricted-API header over gRPC
        good = {"ca_file": str(ca), "token_env": "TRITON_TOKEN", "token_header": header}
        cfg = parse({"sources": [str(VFR)], "fps": 1, "model": remote(grpcs, **good)})
        results, report = replay(cfg)
        assert len(results) == 10 and not report.failures
        over_http = remote(server.http_url, token_env="TRITON_TOKEN", token_header="triton-access-token")
        assert load_model(parse({"model": over_http}).model).max_batch == 2

        with pytest.raises(ModelError, match=r"refused the request: .*restricted.*: check the credentials") as refused:
            load_model(parse({"model": remote(grpcs, ca_file=str(ca))}).model)
        assert "Corr3ctHorse" not in str(refused.value)
        with pytest.raises(ModelError, match=r"unreachable: .*(certificate|handshake|SSL)"):
            load_model(parse({"model": remote(grpcs, **{**good, "ca_file": str(other_ca)})}).model)
        with pytest.raises(ConfigError, match=r"model\.kserve\.ca_file: .*/missing\.crt: no such file"):
            load_model(parse({"model": remote(grpcs, **{**good, "ca_file": str(tmp_path / "missing.crt")})}).model)
    finally:
        server.kill()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_server_killed_and_restarted_mid_run(protocol: str) -> None:
    """Files wait for the server and lose nothing; live frames are dropped and counted (``unavailable``);
    both sources say why while it is away, and results flow again once it is back."""
    require_triton()
    server = TritonServer(["--model", f"ssd={SSD}:4"])
    server.start()
    try:
        cfg = parse(
            {
                "sources": [{"url": str(DEMO), "id": "file"}, {"url": str(VFR), "id": "camera", "realtime": True}],
                "fps": 5,
                "model": remote(
                    server.grpc_url if protocol == "grpc" else server.http_url, timeout_s=2, backoff_cap_s=1
                ),
            }
        )
        model = await asyncio.to_thread(load_model, cfg.model)
        sink = ListSink()
        pipeline = Pipeline(cfg, model, [sink])
        run_task = asyncio.create_task(pipeline.run())
        await sink.wait_for(lambda: len(sink.of("camera")) >= 3, 60, "the camera's first results")
        await asyncio.to_thread(server.kill)

        def stalled(source: str) -> bool:
            return any(
                s.source == source and s.state is SourceState.STALLED and "inference server" in s.reason
                for s in sink.statuses
            )

        await sink.wait_for(lambda: stalled("camera") and stalled("file"), 60, "both sources stalled")
        camera = pipeline.metrics.sources["camera"]
        await poll(lambda: camera.drops[DropReason.UNAVAILABLE] >= 3, 60, "live frames dropped")
        waiting = len(sink.of("file"))
        await asyncio.to_thread(server.start)
        report = await asyncio.wait_for(run_task, 120)
    finally:
        server.kill()
    assert not report.failures and not report.sink_failures
    file = report.metrics.sources["file"]
    assert file.sampled == file.processed == 60 and file.dropped == 0, "every frame of the file waited"
    assert waiting < 60, "the file was still running when the server went away"
    assert [r.seq for r in sink.of("file")] == list(range(60))
    assert camera.sampled == camera.processed + camera.dropped
    assert camera.drops[DropReason.UNAVAILABLE] >= 3
    seqs = [r.seq for r in sink.of("camera")]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    dropped_after = max(seqs) > seqs[2] + camera.drops[DropReason.UNAVAILABLE]
    assert dropped_after, "results flowed again after the server came back"
    reason = next(s.reason for s in sink.statuses if s.source == "camera" and s.state is SourceState.STALLED)
    url = server.grpc_url if protocol == "grpc" else server.http_url
    assert reason.startswith(f"model ssd: inference server {url}/ssd unavailable: "), reason
    after = [s.state for s in sink.statuses if s.source == "camera"]
    last_stall = max(i for i, s in enumerate(after) if s is SourceState.STALLED)
    assert SourceState.ONLINE in after[last_stall:], "the camera shows online again once results flow"
