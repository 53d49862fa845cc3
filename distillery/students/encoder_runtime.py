"""Where a frozen encoder's forward pass runs: torch, ONNX Runtime or OpenVINO, in fp32, bf16 or int8.

The training encoder pass (:class:`distillery.students.encoder.Encoder`) runs on one of these *runtimes*, the same
CPU runtimes the inference service serves with, because the encoder pass dominates ``probe`` and ``stack`` training.
A runtime takes padded token batches (numpy) and returns mean-pooled, L2-normalised embeddings; tokenisation and
batching stay in the encoder, so every runtime sees the same inputs.

Which one is fastest depends on the CPU (measured on this project's machines, CPU ms per 256-token MiniLM article):
- AVX512-BF16/AMX CPUs: OpenVINO bf16 (fused attention; ~1.6x torch bf16, cosine 0.99998 of fp32).
- AVX2-only EPYC (no bf16, no VNNI), one thread each: torch fp32 94, ONNX Runtime fp32 98, OpenVINO fp32 84,
  OpenVINO int8 105 (no VNNI: slower), ONNX Runtime dynamic int8 62 but cosine 0.993 to fp32.
``auto`` is OpenVINO (bf16 where the CPU has it, else fp32; torch on CUDA). int8 (ONNX Runtime) only on request:
it moves embeddings, so the caller measures a head's score drift against the unquantised runtime on a sample
first (:func:`distillery.students.encoder.embed_gated`) and uses int8 only within the 0.02 gate.

Exported models are cached per machine under ``$XDG_CACHE_HOME/distillery/encoders`` keyed by the model's
fingerprint, written atomically, so each node exports an encoder once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx", "openvino", "auto")
EXPORTS = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "distillery" / "encoders"


def model_fingerprint(path: str) -> str:
    """A short hash of a model folder's config and weight files (name and size): a replaced model under the same
    name gets a new fingerprint, so embeddings cached for the old one are not reused."""
    folder = Path(path)
    digest = hashlib.sha256()
    config = folder / "config.json"
    digest.update(config.read_bytes() if config.is_file() else str(folder).encode())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:12]


def resolve_runtime(runtime: str, int8: bool | str = False, bf16: bool = False) -> tuple[str, str]:
    """(backend, precision) for a runtime setting; ``auto`` picks the fastest unquantised runtime here. int8 is
    only used when asked for (``int8=True``, ONNX Runtime's dynamic int8): measured on real articles it moved a
    ridge head's scores by 0.036 MAE, over the 0.02 gate, so callers gate it (:func:`~distillery.students.encoder.
    embed_gated`)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"encoder runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    int8 = int8 in (True, "on", "true", "1")
    if runtime == "auto":
        runtime = _fastest()
    if int8:
        if runtime != "onnx":
            raise ValueError(f"int8 training embeddings need runtime onnx, not {runtime}")
        return "onnx", "int8"
    if runtime == "openvino":
        return "openvino", "bf16" if _openvino_bf16() else "fp32"
    return runtime, "bf16" if bf16 else "fp32"


def _fastest() -> str:
    """torch on CUDA; else OpenVINO (bf16 on CPUs that have it; fp32 still ~10% less CPU than torch or ONNX
    Runtime fp32 on an AVX2-only EPYC, with cosine 0.999999 to torch), else torch."""
    import torch

    if torch.cuda.is_available() or not _has_module("openvino"):
        return "torch"
    return "openvino"


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _openvino_bf16() -> bool:
    if not _has_module("openvino"):
        return False
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def threads_here() -> int:
    """The CPUs this process may use: a Ray task's share (Ray sets OMP_NUM_THREADS to it), else 0 = all."""
    return int(os.environ.get("OMP_NUM_THREADS") or 0)


def pooled_model(model_path: str, attn: str = "eager"):
    """``AutoModel`` + mean pooling + L2 normalisation as one torch module (what every runtime computes)."""
    import torch
    from transformers import AutoModel

    inner = AutoModel.from_pretrained(model_path, attn_implementation=attn).eval()

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden.float() * m.float()).sum(1) / m.float().sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=-1)

    return Pooled().eval()


class TorchRuntime:
    def __init__(self, model_path: str, precision: str, device: str | None = None):
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = pooled_model(model_path, attn="sdpa").to(self.device)
        self.bf16 = precision == "bf16"

    def forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        ids, m = torch.from_numpy(input_ids).to(self.device), torch.from_numpy(mask).to(self.device)
        with torch.inference_mode(), torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16,
                                                    enabled=self.bf16):
            return self.model(ids, m).float().cpu().numpy()


def ensure_exported(backend: str, precision: str, model_path: str, fingerprint: str) -> None:
    """Export (and quantise) the model for ``backend`` on this node once, before parts on this node's workers
    would each do it at the same time."""
    if backend == "onnx":
        fp32 = EXPORTS / fingerprint / "encoder.onnx"
        if not fp32.exists():
            _export_onnx(model_path, fp32)
        if precision == "int8" and not fp32.with_name("encoder-int8.onnx").exists():
            _quantize_onnx(fp32, fp32.with_name("encoder-int8.onnx"))
    elif backend == "openvino" and not (EXPORTS / fingerprint / "encoder.xml").exists():
        _convert_openvino(model_path, EXPORTS / fingerprint / "encoder.xml")


class OnnxRuntime:
    """ONNX Runtime on CPU; int8 = dynamic quantisation of the weight products only (the attention core and the
    embedding gather stay fp32: quantising those moved probe scores by ~0.4 MAE)."""

    def __init__(self, model_path: str, precision: str, fingerprint: str):
        import onnxruntime as ort

        fp32 = EXPORTS / fingerprint / "encoder.onnx"
        if not fp32.exists():
            _export_onnx(model_path, fp32)
        model_file = fp32
        if precision == "int8":
            model_file = fp32.with_name("encoder-int8.onnx")
            if not model_file.exists():
                _quantize_onnx(fp32, model_file)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads_here()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # spinning starves shared CPUs
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])

    def forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(["embedding"], {"input_ids": input_ids, "attention_mask": mask})[0]


def _export_onnx(model_path: str, out: Path) -> None:
    import torch

    ids = torch.ones((2, 16), dtype=torch.long)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out.parent)
    os.close(fd)
    with torch.inference_mode():
        torch.onnx.export(pooled_model(model_path), (ids, torch.ones_like(ids)), tmp,
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"], opset_version=17,
                          dynamo=False, dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                                      "attention_mask": {0: "batch", 1: "seq"},
                                                      "embedding": {0: "batch"}})
    Path(tmp).replace(out)  # atomic: another process sees the whole file or none


def _quantize_onnx(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    activation_products = [n.name for n in graph.node
                           if n.op_type == "MatMul" and not any(x in weights for x in n.input)]
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=dst.parent)
    os.close(fd)
    quantize_dynamic(str(src), tmp, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
                     nodes_to_exclude=activation_products)
    Path(tmp).replace(dst)


class OpenVinoRuntime:
    """OpenVINO's CPU plugin (bf16 where the CPU has it); widths padded to multiples of 32 so that a handful of
    shapes are compiled, not one per batch length. Batches at the encoder's full token budget (most news articles
    fill it) run on a second model compiled with that width fixed: OpenVINO skips shape inference and picks
    kernels for the known width (7-10% less CPU per article measured by the inference service)."""

    WIDTH_MULTIPLE = 32

    def __init__(self, model_path: str, precision: str, fingerprint: str):
        import openvino as ov

        self.xml = EXPORTS / fingerprint / "encoder.xml"
        if not self.xml.exists():
            _convert_openvino(model_path, self.xml)
        self.properties = {"PERFORMANCE_HINT": "LATENCY",
                           "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        if threads_here():
            self.properties["INFERENCE_NUM_THREADS"] = str(threads_here())
        self.core = ov.Core()
        self.compiled = self.core.compile_model(str(self.xml), "CPU", self.properties)
        self.request = self.compiled.create_infer_request()
        self.max_width = 0  # the encoder's full token budget with special tokens, once it knows it
        self._full = None  # (compiled model, request) at max_width, compiled on first use

    def _full_width_request(self):
        if self._full is None:
            import openvino as ov

            model = self.core.read_model(str(self.xml))
            shape = ov.PartialShape([-1, self.max_width])
            model.reshape({"input_ids": shape, "attention_mask": shape})
            compiled = self.core.compile_model(model, "CPU", self.properties)
            self._full = (compiled, compiled.create_infer_request())
        return self._full

    def forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        width = -(-input_ids.shape[1] // self.WIDTH_MULTIPLE) * self.WIDTH_MULTIPLE
        if self.max_width and width > self.max_width:
            width = max(input_ids.shape[1], self.max_width)  # full-budget batches (most articles): no extra columns
        extra = width - input_ids.shape[1]  # masked out: attention and pooling ignore these positions
        if extra:
            input_ids = np.pad(input_ids, ((0, 0), (0, extra)))
            mask = np.pad(mask, ((0, 0), (0, extra)))
        compiled, request = (self._full_width_request() if width == self.max_width
                             else (self.compiled, self.request))
        result = request.infer({"input_ids": input_ids, "attention_mask": mask})
        return np.array(result[compiled.outputs[0]], dtype=np.float32, copy=True)


def _convert_openvino(model_path: str, out: Path) -> None:
    import shutil

    import openvino as ov
    import torch

    example = {"input_ids": torch.ones((2, 16), dtype=torch.long),
               "attention_mask": torch.ones((2, 16), dtype=torch.long)}
    with torch.inference_mode():
        model = ov.convert_model(pooled_model(model_path, attn="sdpa"), example_input=example,
                                 input=[("input_ids", [-1, -1], ov.Type.i64),
                                        ("attention_mask", [-1, -1], ov.Type.i64)])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".convert-"))
    try:
        ov.save_model(model, str(tmp / out.name))
        (tmp / out.name).with_suffix(".bin").replace(out.with_suffix(".bin"))
        (tmp / out.name).replace(out)  # the .xml last: its presence means the pair is complete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_runtime(backend: str, precision: str, model_path: str, fingerprint: str, device: str | None = None):
    if backend == "onnx":
        return OnnxRuntime(model_path, precision, fingerprint)
    if backend == "openvino":
        return OpenVinoRuntime(model_path, precision, fingerprint)
    return TorchRuntime(model_path, precision, device)
