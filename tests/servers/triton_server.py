"""A real NVIDIA Triton Inference Server on 127.0.0.1, for the remote-inference tests and benchmark.

Run with the interpreter of ``.venv-triton`` (Debian's python3 with ``nvidia-pytriton``, see
``scripts/triton-venv.sh``), not the project's venv: pytriton's Python model stub only works with the
interpreter it was built against. ``nvidia-pytriton`` bundles the ``tritonserver`` binary, which runs on a
CPU-only machine; each model here is an ONNX file run by ONNX Runtime inside pytriton's Python backend,
served with the same input and output names, dtypes and shapes as the file, so a client sees what Triton's
own ONNX Runtime backend would show it. Prints ``STREAMPREP-TRITON-READY`` once every model is loaded.

    triton_server.py --http-port 8000 --grpc-port 8001 --model ssd=PATH:8 [--vector embed] \
        [--grpc-tls CERT KEY] [--token SECRET] [--labels ssd=LABELS.txt]

``--labels`` gives a model its class names the way a client can read them: a ``labels`` parameter of its
model configuration (a JSON list; Triton's ``label_filename`` stays on the server, no client can read it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.models.model import Model
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

READY = "STREAMPREP-TRITON-READY"  # one write: found even inside a line of tritonserver's log

_NUMPY = {
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


def onnx_model(path: Path, delay_s: float) -> tuple[Any, list[Tensor], list[Tensor]]:
    """An inference callable running ``path`` on every batch, and the model's tensors minus the batch axis."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    names = [o.name for o in outputs]
    fixed_one = inputs[0].shape[0] == 1  # a model exported with batch 1: run it per image

    @batch  # type: ignore[misc]
    def infer(**tensors: np.ndarray) -> dict[str, np.ndarray]:
        if delay_s:
            time.sleep(delay_s)
        x = tensors[inputs[0].name]
        if fixed_one:
            parts = [session.run(names, {inputs[0].name: x[i : i + 1]}) for i in range(len(x))]
            return {n: np.concatenate([p[k] for p in parts]) for k, n in enumerate(names)}
        return dict(zip(names, session.run(names, {inputs[0].name: x}), strict=True))

    def tensor(arg: Any) -> Tensor:
        return Tensor(
            name=arg.name, dtype=_NUMPY[arg.type], shape=tuple(-1 if isinstance(d, str) else d for d in arg.shape[1:])
        )

    return infer, [tensor(i) for i in inputs], [tensor(o) for o in outputs]


def vector_model() -> tuple[Any, list[Tensor], list[Tensor]]:
    """A model whose input is no image (a vector of 128 floats): streamprep must refuse it at start."""

    @batch  # type: ignore[misc]
    def infer(x: np.ndarray) -> dict[str, np.ndarray]:
        return {"y": x.sum(axis=1, keepdims=True)}

    return infer, [Tensor(name="x", dtype=np.float32, shape=(128,))], [Tensor(name="y", dtype=np.float32, shape=(1,))]


def with_labels(labels: dict[str, Path]) -> None:
    """Put each model's labels in its configuration's ``parameters`` (pytriton has no option for it)."""
    original = Model._get_triton_model_config

    def config(self: Model) -> Any:
        made = original(self)
        if self.model_name in labels:
            names = [x.strip() for x in labels[self.model_name].read_text().splitlines() if x.strip()]
            made.backend_parameters["labels"] = json.dumps(names)
        return made

    Model._get_triton_model_config = config  # type: ignore[method-assign]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--model", action="append", default=[], help="NAME=PATH[:MAX_BATCH] (ONNX)")
    p.add_argument("--vector", action="append", default=[], help="NAME of a model with a non-image input")
    p.add_argument("--delay-ms", type=float, default=0.0, help="extra time per inference")
    p.add_argument("--grpc-tls", nargs=2, metavar=("CERT", "KEY"), help="gRPC over TLS with this certificate")
    p.add_argument("--token", help="require the header triton-access-token: TOKEN for inference")
    p.add_argument("--workspace", type=Path, help="pytriton's workspace (default: a new temporary one)")
    p.add_argument("--labels", action="append", default=[], help="NAME=FILE: the model's labels, one per line")
    args = p.parse_args()
    with_labels({name: Path(file) for name, _, file in (spec.partition("=") for spec in args.labels)})
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        allow_metrics=False,
        log_verbose=0,
        exit_timeout_secs=2,
    )
    if args.grpc_tls:
        config.grpc_use_ssl = True
        config.grpc_server_cert, config.grpc_server_key = args.grpc_tls
    security = None
    if args.token:
        # pytriton's own endpoints stay protected too; inference and model configs need the token
        endpoints = ["inference", "shared-memory", "model-repository", "statistics", "trace", "logging"]
        security = TritonSecurityConfig(access_token=args.token, restricted_endpoints=endpoints)
    with Triton(config=config, workspace=args.workspace, security_config=security) as triton:
        for spec in args.model:
            name, _, rest = spec.partition("=")
            path, _, max_batch = rest.partition(":")
            infer, inputs, outputs = onnx_model(Path(path), args.delay_ms / 1000.0)
            triton.bind(name, infer, inputs, outputs, config=ModelConfig(max_batch_size=int(max_batch or 8)))
        for name in args.vector:
            infer, inputs, outputs = vector_model()
            triton.bind(name, infer, inputs, outputs, config=ModelConfig(max_batch_size=8))
        print(READY, flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
