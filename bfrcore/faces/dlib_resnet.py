"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) read into numpy and run by
onnxruntime or torch.

The same network and weights as ``dlib.face_recognition_model_v1`` (29 convolutions, 150x150 RGB chip, 128-D
descriptor, Euclidean), evaluated by onnxruntime's or torch's convolution kernels instead of dlib's BLAS-less ones:
per chip on one CPU core 5.5-6.3 ms (onnxruntime) or 10-18 ms (torch) instead of 80 ms, and both run on CUDA. The
descriptors agree with dlib's to 3.6e-7 (max |diff| on real faces; float32 summation order; tested to 1e-5 in
tests/celebref/test_dlib_resnet.py): the build's identity decisions do not move.

- :func:`read_weights` parses dlib's serialisation of the network (``loss_metric_2`` → ``input_rgb_image_sized``
  → ``con_4`` / ``affine_`` / ``relu_`` / ``add_prev_`` / ``max_pool_2`` / ``avg_pool_2`` → ``fc_2``), checking every
  shape against the architecture of dlib's ``dnn_face_recognition_ex.cpp``; any other file raises
  :class:`DlibModelFormatError`.
- :func:`face_chips` cuts the 150x150 chips exactly as ``compute_face_descriptor`` does (dlib's own
  ``get_face_chips``, padding 0.25).
- :func:`model` / :func:`descriptors`: the torch module and its use on chips (uint8, (N, 150, 150, 3));
  :func:`onnx_model` / :func:`onnx_session` / :func:`onnx_descriptors`: the same as an ONNX graph (converted once
  per machine into the weights cache, :mod:`bfrcore.weights.derived`).

The network (input first): x = (rgb - mean) / 256; conv 7x7/2, 32 → affine → relu → max-pool 3x3/2; residual
blocks [conv 3x3 → affine → relu → conv 3x3 → affine] + shortcut, relu: 3 x 32, 4 x 64, 3 x 128, 3 x 256, 1 x 256,
the first block of each level after the first with stride 2 (no padding) and a 2x2/2 average-pooled shortcut,
added with dlib's ``add_prev`` rule (the output takes the larger size; the smaller operand counts as zero-padded
at the end of each axis); global average → fc 256 → 128 without bias.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CHIP_SIZE = 150
CHIP_PADDING = 0.25


class DlibModelFormatError(ValueError):
    """The file is not dlib's face recognition ResNet in the expected serialisation."""


@dataclass
class ConvWeights:
    weight: np.ndarray  # (out, in, kh, kw) float32
    bias: np.ndarray  # (out,)
    stride: int
    padding: int
    gamma: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # the affine that follows
    beta: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


@dataclass
class DlibResNetWeights:
    mean_rgb: tuple[float, float, float]
    convs: list[ConvWeights]
    fc: np.ndarray  # (in=256, out=128): dlib multiplies x (N, in) by this matrix


def _token(version: str) -> bytes:
    """How dlib serialises a short version string: its length as a one-byte integer, then the characters."""
    return bytes([0x01, len(version)]) + version.encode()


class _Reader:
    """dlib's serialisation primitives: integers (a byte with the length in its low 4 bits and the sign in bit 7,
    then that many little-endian bytes), strings (length, bytes), floats/doubles (integer mantissa, integer
    exponent), tensors (version 2, n, k, nr, nc, raw little-endian float32)."""

    def __init__(self, data: bytes):
        self.b = data
        self.i = 0

    def int(self) -> int:
        if self.i >= len(self.b):
            raise DlibModelFormatError("unexpected end of file")
        ctrl = self.b[self.i]
        size = ctrl & 0x0F
        if size > 8:
            raise DlibModelFormatError(f"bad integer control byte {ctrl:#x} at {self.i}")
        v = int.from_bytes(self.b[self.i + 1:self.i + 1 + size], "little")
        self.i += 1 + size
        return -v if ctrl & 0x80 else v

    def real(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        n = self.int()
        s = self.b[self.i:self.i + n]
        self.i += n
        return s.decode("latin-1")

    def expect(self, version: str) -> None:
        got = self.string()
        if got != version:
            raise DlibModelFormatError(f"expected {version!r} at byte {self.i}, got {got[:40]!r}")

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise DlibModelFormatError(f"unsupported tensor version at byte {self.i}")
        n, k, nr, nc = (self.int() for _ in range(4))
        count = n * k * nr * nc
        end = self.i + 4 * count
        if end > len(self.b):
            raise DlibModelFormatError("tensor runs past the end of the file")
        arr = np.frombuffer(self.b, dtype="<f4", count=count, offset=self.i).astype(np.float32)
        self.i = end
        return arr

    def alias(self) -> tuple[int, int, int, int]:
        if self.int() != 1:
            raise DlibModelFormatError(f"unsupported alias_tensor version at byte {self.i}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]

    def find(self, version: str) -> None:
        """Move to the next record of ``version`` (skipping the wrappers' bookkeeping between layer records)."""
        j = self.b.find(_token(version), self.i)
        if j < 0:
            raise DlibModelFormatError(f"no {version!r} record after byte {self.i}")
        self.i = j


#: (channels, blocks) per level, input first, as in dlib's dnn_face_recognition_ex.cpp
LEVELS = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))


_RECORDS = ("con_4", "affine_", "fc_2")
_RECORD_RE = re.compile(b"|".join(re.escape(_token(n)) for n in _RECORDS))


def _next_record(r: _Reader) -> str:
    """The next convolution, affine or fc record in the file (the reader is left at it)."""
    m = _RECORD_RE.search(r.b, r.i)
    if m is None:
        raise DlibModelFormatError(f"no convolution, affine or fc record after byte {r.i}")
    r.i = m.start()
    return m.group()[2:].decode()


def _conv(r: _Reader) -> ConvWeights:
    r.expect("con_4")
    params = r.tensor()
    n_filters, nr, nc, sy, sx, py, px = (r.int() for _ in range(7))
    fshape = r.alias()
    r.alias()  # biases
    for _ in range(4):
        r.real()  # learning-rate / weight-decay multipliers
    if fshape[0] != n_filters or fshape[2:] != (nr, nc) or sy != sx or py != px:
        raise DlibModelFormatError(f"unexpected convolution record {fshape} stride {sy}/{sx} padding {py}/{px}")
    n_w = int(np.prod(fshape))
    if params.size != n_w + n_filters:
        raise DlibModelFormatError(f"convolution parameters {params.size} != {n_w} + {n_filters}")
    return ConvWeights(params[:n_w].reshape(fshape), params[n_w:], int(sy), int(py))


def _affine(r: _Reader, conv: ConvWeights) -> None:
    r.expect("affine_")
    params = r.tensor()
    g, b = r.alias(), r.alias()
    c = conv.weight.shape[0]
    if g[1] != c or b[1] != c or params.size != 2 * c:
        raise DlibModelFormatError(f"affine of {params.size} values after a {c}-filter convolution")
    conv.gamma, conv.beta = params[:c], params[c:]


def _expected_convs() -> list[tuple[int, int, int, int]]:
    """(out channels, in channels, kernel, stride) of the 29 convolutions, input first: the 7x7 stem, then per
    residual block two 3x3 convolutions, the first of a level's first block taking the previous level's channels
    (stride 2 from the second level on)."""
    out, prev = [(32, 3, 7, 2)], 32
    for lvl, (ch, n_blocks) in enumerate(LEVELS):
        for b in range(n_blocks):
            out.append((ch, prev if b == 0 else ch, 3, 2 if (b == 0 and lvl > 0) else 1))
            out.append((ch, ch, 3, 1))
        prev = ch
    return out


def read_weights(path: str | Path) -> DlibResNetWeights:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat`` (raises :class:`DlibModelFormatError` otherwise)."""
    r = _Reader(Path(path).read_bytes())
    r.find("loss_metric_2")
    r.find("input_rgb_image_sized")
    r.expect("input_rgb_image_sized")
    mean = (r.real(), r.real(), r.real())
    convs: list[ConvWeights] = []
    while True:
        name = _next_record(r)
        if name == "fc_2":
            break
        if name == "con_4":
            convs.append(_conv(r))
        else:
            if not convs or convs[-1].gamma.size:
                raise DlibModelFormatError("an affine record without its convolution")
            _affine(r, convs[-1])
    r.expect("fc_2")
    n_out, n_in = r.int(), r.int()
    fc = r.tensor()
    if (n_out, n_in) != (128, 256) or fc.size != n_in * n_out:
        raise DlibModelFormatError(f"fc layer {n_in} -> {n_out} with {fc.size} values; expected 256 -> 128")
    expected = _expected_convs()
    got = [(c.weight.shape[0], c.weight.shape[1], c.weight.shape[2], c.stride) for c in convs]
    if got != expected or any(c.gamma.size == 0 for c in convs):
        raise DlibModelFormatError(f"the convolutions do not match dlib's face ResNet ({len(convs)} read)")
    return DlibResNetWeights(mean, convs, fc.reshape(n_in, n_out))


def face_chips(img: np.ndarray, shapes) -> list[np.ndarray]:
    """The 150x150 RGB chips ``compute_face_descriptor`` cuts for ``shapes`` (dlib full_object_detections)."""
    import dlib

    return [np.asarray(c) for c in dlib.get_face_chips(np.ascontiguousarray(img), shapes, size=CHIP_SIZE,
                                                        padding=CHIP_PADDING)]


def _torch_module(w: DlibResNetWeights):
    import torch
    import torch.nn.functional as F

    class DlibFaceResNet(torch.nn.Module):
        """dlib's face recognition ResNet; ``forward`` takes float (N, 3, 150, 150) RGB in 0..255."""

        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(w.mean_rgb, dtype=torch.float32).view(1, 3, 1, 1))
            self.weights = torch.nn.ParameterList()
            self.scales = torch.nn.ParameterList()
            self.shifts = torch.nn.ParameterList()
            self.strides = [c.stride for c in w.convs]
            self.paddings = [c.padding for c in w.convs]
            for c in w.convs:
                self.weights.append(torch.nn.Parameter(torch.from_numpy(c.weight.copy()), requires_grad=False))
                # conv bias folded into the affine shift would change float rounding: kept apart
                self.shifts.append(torch.nn.Parameter(torch.from_numpy(
                    np.stack([c.bias, c.gamma, c.beta])), requires_grad=False))
            self.fc = torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(w.fc.T)), requires_grad=False)

        def _unit(self, x, j):
            s = self.shifts[j]
            y = F.conv2d(x, self.weights[j], s[0], stride=self.strides[j], padding=self.paddings[j])
            return y * s[1].view(1, -1, 1, 1) + s[2].view(1, -1, 1, 1)

        def forward(self, x):
            x = (x - self.mean) / 256.0
            x = F.max_pool2d(torch.relu(self._unit(x, 0)), 3, 2)
            j = 1
            for lvl, (_, nb) in enumerate(LEVELS):
                for b in range(nb):
                    down = b == 0 and lvl > 0
                    y = self._unit(torch.relu(self._unit(x, j)), j + 1)
                    j += 2
                    short = F.avg_pool2d(x, 2, 2) if down else x
                    x = torch.relu(_add_prev(y, short))
            x = x.mean(dim=(2, 3))
            return x @ self.fc.T

    return DlibFaceResNet()


def _add_prev(a, b):
    """dlib's ``add_prev``: the sum at the larger size, the smaller operand zero-padded at the end of each axis."""
    if a.shape == b.shape:
        return a + b
    import torch

    shape = [max(p, q) for p, q in zip(a.shape, b.shape)]
    out = torch.zeros(shape, dtype=a.dtype, device=a.device)
    out[:, :a.shape[1], :a.shape[2], :a.shape[3]] += a
    out[:, :b.shape[1], :b.shape[2], :b.shape[3]] += b
    return out


_MODELS: dict = {}


def model(path: str | Path, device: str = "cpu"):
    """The torch module for the weights at ``path`` on ``device`` (cached per process)."""
    key = (str(path), str(device))
    if key not in _MODELS:
        _MODELS[key] = _torch_module(read_weights(path)).to(device).eval()
    return _MODELS[key]


def _batches(chips: np.ndarray | list[np.ndarray], batch: int):
    """(out (N, 128) float32 zeros, [(slice, uint8 (n, 150, 150, 3) chips)]) after checking the chips' shape."""
    chips = np.asarray(chips, dtype=np.uint8)
    if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ValueError(f"expected uint8 (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) chips, got {chips.shape}")
    parts = [(slice(s, s + batch), chips[s:s + batch]) for s in range(0, len(chips), batch)]
    return np.zeros((len(chips), 128), np.float32), parts


def descriptors(net, chips: np.ndarray | list[np.ndarray], batch: int = 64) -> np.ndarray:
    """128-D descriptors (float32, (N, 128)) of uint8 RGB chips (N, 150, 150, 3) by the torch module ``net``."""
    import torch

    out, parts = _batches(chips, batch)
    dev = next(net.parameters()).device
    with torch.inference_mode():
        for where, part in parts:
            out[where] = net(torch.from_numpy(part).to(dev).permute(0, 3, 1, 2).float()).cpu().numpy()
    return out


def onnx_model(w: DlibResNetWeights):
    """The same network as an ONNX graph (opset 13; input ``chips``: float32 (N, 3, 150, 150) RGB in 0..255, output
    ``descriptor`` (N, 128)), for onnxruntime: no torch in the process that runs it (the build's workers)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    def node(op, inputs, **attrs):
        out = f"t{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def unit(x, j, size):
        c = w.convs[j]
        k, s, p = c.weight.shape[2], c.stride, c.padding
        y = node("Conv", [x, const(f"w{j}", c.weight), const(f"b{j}", c.bias)], kernel_shape=[k, k],
                 strides=[s, s], pads=[p, p, p, p])
        y = node("Mul", [y, const(f"g{j}", c.gamma.reshape(1, -1, 1, 1))])
        y = node("Add", [y, const(f"be{j}", c.beta.reshape(1, -1, 1, 1))])
        return y, (size + 2 * p - k) // s + 1

    x = node("Sub", ["chips", const("mean", np.array(w.mean_rgb, np.float32).reshape(1, 3, 1, 1))])
    x = node("Div", [x, const("scale", np.array(256.0, np.float32))])
    x, size = unit(x, 0, CHIP_SIZE)
    x = node("MaxPool", [node("Relu", [x])], kernel_shape=[3, 3], strides=[2, 2])
    size = (size - 3) // 2 + 1
    channels, j = 32, 1
    for lvl, (ch, nb) in enumerate(LEVELS):
        for b in range(nb):
            down = b == 0 and lvl > 0
            y, ysize = unit(x, j, size)
            y, ysize = unit(node("Relu", [y]), j + 1, ysize)
            j += 2
            short, ssize = x, size
            if down:
                short = node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
                ssize = (size - 2) // 2 + 1
            # dlib's add_prev: the larger size wins, the smaller operand is zero-padded at the end of each axis
            out_c, out_s = max(ch, channels), max(ysize, ssize)

            def padded(t, c, s, out_c=out_c, out_s=out_s):
                if (c, s) == (out_c, out_s):
                    return t
                pads = np.array([0, 0, 0, 0, 0, out_c - c, out_s - s, out_s - s], np.int64)
                name = f"pad{len(nodes)}"
                inits.append(numpy_helper.from_array(pads, name))
                return node("Pad", [t, name], mode="constant")

            x = node("Relu", [node("Add", [padded(y, ch, ysize), padded(short, channels, ssize)])])
            channels, size = out_c, out_s
    x = node("ReduceMean", [x], axes=[2, 3], keepdims=0)
    nodes.append(helper.make_node("MatMul", [x, const("fc", w.fc)], ["descriptor"]))
    graph = helper.make_graph(
        nodes, "dlib_face_recognition_resnet_model_v1", [helper.make_tensor_value_info(
            "chips", TensorProto.FLOAT, ["n", 3, CHIP_SIZE, CHIP_SIZE])],
        [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["n", 128])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    return m


#: bump when :func:`onnx_model` changes the graph it writes (names the cached file)
ONNX_CONVERTER_VERSION = "1"
_SESSIONS: dict = {}


def onnx_model_bytes(path: str | Path) -> bytes:
    """The serialised ONNX graph of the network at ``path``, converted once per machine and kept in the weights
    cache (:mod:`bfrcore.weights.derived`: ``dlib-resnet-face-v1.<source sha256[:16]>.v<converter>.onnx``; importing
    the ``onnx`` package alone costs about 0.8 s, paid once instead of per build and worker)."""
    from bfrcore import weights as wreg
    from bfrcore.weights.derived import load_or_derive

    name = f"dlib-resnet-face-v1.{wreg.fingerprint(Path(path))[:16]}.v{ONNX_CONVERTER_VERSION}.onnx"
    return load_or_derive(name, lambda: onnx_model(read_weights(path)).SerializeToString())[0]


def onnx_session(path: str | Path, device: str = "cpu"):
    """An onnxruntime session of the network at ``path`` on ``device`` (one intra-op thread on the CPU, as the
    build's workers run; cached per process)."""
    key = (str(path), str(device))
    if key not in _SESSIONS:
        import onnxruntime as ort

        from bfrcore.faces.embed import onnx_providers

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        providers, _ = onnx_providers(device)
        _SESSIONS[key] = ort.InferenceSession(onnx_model_bytes(path), opts, providers=providers)
    return _SESSIONS[key]


def onnx_descriptors(session, chips: np.ndarray | list[np.ndarray], batch: int = 64) -> np.ndarray:
    """:func:`descriptors` through an onnxruntime session."""
    out, parts = _batches(chips, batch)
    for where, part in parts:
        out[where] = session.run(["descriptor"], {"chips": np.ascontiguousarray(part.transpose(0, 3, 1, 2),
                                                                                  dtype=np.float32)})[0]
    return out
