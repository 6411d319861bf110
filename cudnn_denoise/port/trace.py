"""The call trace: every cuDNN and cuBLAS call of a run, one line each, in a plain text file.

    tracer = trace.open_trace(path, backend, calls.Settings(...))   # or trace.OFF
    with tracer.setup("model for batch 4"):
        model = build(...); tracer.register(model)
    with tracer.step(1, x, target, lr, slot=0):
        model.train_step_async(x, target, lr, slot=0)
    tracer.close()

With the cuDNN backend the tracer sits in the one call hook of bindings/library.py and writes each
call as it was made: `function name=value ...` with the headers' argument names, descriptors read
back from cuDNN, enums by name, host scalars as float32, device pointers by the name of the model's
buffer they point into (Registry). The NumPy reference makes no library calls: for each of its steps
the tracer writes the calls that the cuDNN backend makes for the same step (port/calls.py), with CHOSEN
where that backend decides at setup. The format is in docs/fortran.md, "The call trace".

Lines of a section are written when it ends, when the model's buffers and descriptors have names.
In setup sections device pointers are written as `device` and descriptors without their contents:
buffers made and freed during setup (algorithm search) have no lasting names.
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass, field

from ..bindings import ffi, library
from . import calls

FORMAT = "# cudnn_denoise call trace, format 1 (docs/fortran.md, \"The call trace\")"
HOST_SCALARS = {"alpha", "beta", "alpha1", "alpha2", "valuePtr"}  # cuDNN reads these from host memory
_SETUP, _COMPUTE, _OTHER = "setup", "compute", "other"


def open_trace(path, backend: str, settings: calls.Settings) -> "Tracer":
    """A tracer writing to path (replaced) for a run of `backend` with these model settings."""
    return Tracer(open(path, "w"), backend, settings)


_SECTION = re.compile(r"# (setup|step \d+|evaluate): |# (other calls) ")


def read_sections(text: str) -> list[tuple[str, list[str]]]:
    """(title, call lines) of each section of a trace, in order: titles "setup", "step 7",
    "evaluate", "other calls". Comment lines (the header, notes) are left out."""
    sections = []
    for line in text.splitlines():
        match = _SECTION.match(line)
        if match:
            sections.append((match.group(1) or match.group(2), []))
        elif line and not line.startswith("#"):
            if not sections:
                raise ValueError(f"a call before any section: {line[:80]}")
            sections[-1][1].append(line)
    return sections


# ---- names of the model's buffers, descriptors and handles ----


def _is_device_array(value) -> bool:
    return hasattr(value, "nbytes") and hasattr(getattr(value, "data", None), "ptr")


def _address(cdata) -> int:
    return int(ffi.cast("uintptr_t", cdata))


def _model_parts(model):
    """(name, value) of a DenoiseCNN's attributes, and one level into its layers and context.

    Names are the attribute names, a leading underscore dropped: the context's are unprefixed
    (workspace, ones, cudnn_handle), a layer's carry its attribute name (conv1.x_desc), dicts add
    their keys (conv1.conv_desc.forward); the parameter views are named as in the state_dict
    (conv1.weight) and the gradient views with a d (dconv1.weight).
    """
    for attr, value in vars(model).items():
        if attr in ("w", "dw"):
            prefix = "" if attr == "w" else "d"
            yield from ((prefix + key, view) for key, view in value.items())
        elif type(value).__module__.startswith("cudnn_denoise.layers"):
            prefix = "" if type(value).__name__ == "Context" else f"{attr}."
            for inner, part in vars(value).items():
                name = prefix + inner.lstrip("_")
                if isinstance(part, dict):
                    yield from ((f"{name}.{key}", item) for key, item in part.items())
                else:
                    yield name, part
        else:
            yield attr.lstrip("_"), value


@dataclass
class Registry:
    """Device buffers and library objects of the registered models, by name, looked up by address."""

    models: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)  # the current step's x and target

    def table(self) -> tuple[dict, dict]:
        """(buffers, objects): (start, nbytes) -> (itemsize, names); address -> (name, object)."""
        buffers, objects = {}, {}
        parts = [pair for model in self.models for pair in _model_parts(model)] + list(self.inputs.items())
        for name, value in parts:
            if _is_device_array(value):
                if value.nbytes:
                    entry = buffers.setdefault((value.data.ptr, value.nbytes), (value.itemsize, set()))
                    entry[1].add(name)
            elif isinstance(getattr(value, "ptr", None), ffi.CData):  # a descriptor or handle
                objects[_address(value.ptr)] = (name, value)
            elif type(value).__name__ in ("Stream", "ExternalStream") and isinstance(value.ptr, int):
                objects[value.ptr] = (name, value)
        return buffers, objects


def buffer_name(buffers: dict, address: int, nbytes: int | None) -> str:
    """The buffer at address: its name(s) if the call uses all of it, else name[first:stop] in elements.

    nbytes: how much of it the call reads or writes (None: unknown, e.g. a workspace).
    """
    if address == 0:
        return "NULL"
    inside = [(start, size, item, names) for (start, size), (item, names) in buffers.items()
              if start <= address < start + size]
    at_start = {size: names for start, size, _, names in inside if start == address}
    if nbytes in at_start or (nbytes is None and at_start):
        return "/".join(sorted(at_start[nbytes if nbytes is not None else max(at_start)]))
    if not inside:
        return f"unnamed@{address:#x}"
    start, _, item, names = min(inside, key=lambda entry: entry[1])
    first = (address - start) // item
    count = (nbytes or item) // item
    where = f"[{first}]" if count == 1 else f"[{first}:{first + count}]"
    return "/".join(sorted(names)) + where


# ---- one call as text ----


@functools.cache
def _declarations() -> dict:
    """Function name -> declarations.Function: the headers' argument names and Fortran declarations."""
    from .declarations import read_declarations

    return {f.name: f for f in read_declarations().functions}


def _enum_name(enum: str, value: int) -> str:
    return dict(ffi.typeof(enum).elements).get(int(value), str(int(value)))


def describe(descriptor) -> str:
    """A descriptor's contents as cuDNN returns them, in port/calls.py's notation ("" for other kinds)."""
    from ..bindings.descriptors import (
        ActivationDescriptor,
        ConvolutionDescriptor,
        FilterDescriptor,
        TensorDescriptor,
    )

    if isinstance(descriptor, TensorDescriptor):
        dtype, dims, strides = descriptor.get_4d()
        return calls.tensor_text(_enum_name("cudnnDataType_t", dtype), dims, strides)
    if isinstance(descriptor, FilterDescriptor):
        dtype, fmt, dims = descriptor.get_4d()
        return calls.filter_text(_enum_name("cudnnDataType_t", dtype), _enum_name("cudnnTensorFormat_t", fmt),
                                dims)
    if isinstance(descriptor, ConvolutionDescriptor):
        c = descriptor.get_2d()
        return calls.convolution_text((c["pad_h"], c["pad_w"]), (c["u"], c["v"]),
                                     (c["dilation_h"], c["dilation_w"]),
                                     _enum_name("cudnnConvolutionMode_t", c["mode"]),
                                     _enum_name("cudnnDataType_t", c["compute_type"]),
                                     _enum_name("cudnnMathType_t", descriptor.math_type()))
    if isinstance(descriptor, ActivationDescriptor):
        mode, nan, coef = descriptor.get()
        return calls.activation_text(_enum_name("cudnnActivationMode_t", mode),
                                    _enum_name("cudnnNanPropagation_t", nan), coef)
    return ""


def _extent(descriptor) -> int | None:
    """Bytes of the float32 tensor or filter a descriptor describes (None for other kinds or types)."""
    from ..bindings.descriptors import FilterDescriptor, TensorDescriptor

    if isinstance(descriptor, TensorDescriptor):
        dtype, dims, strides = descriptor.get_4d()
        elements = 1 + sum((d - 1) * s for d, s in zip(dims, strides))
    elif isinstance(descriptor, FilterDescriptor):
        dtype, _, dims = descriptor.get_4d()
        elements = dims[0] * dims[1] * dims[2] * dims[3]
    else:
        return None
    return 4 * elements if _enum_name("cudnnDataType_t", dtype) == calls.F32 else None


def _cublas_extent(arg: str, named: dict) -> int | None:
    """Bytes of a cuBLAS float vector or matrix argument, from m, n, trans, lda and the increments."""
    if arg == "A":
        return 4 * named["lda"] * named["n"]
    if arg not in ("x", "y"):
        return 4  # alpha, beta, result in device memory: one float
    count = named["n"]
    if "trans" in named:  # gemv, y = op(A) x with A m x n: x has n values and y m, or the reverse if transposed
        m, n = named["m"], named["n"]
        transposed = named["trans"] != ffi.typeof("cublasOperation_t").relements["CUBLAS_OP_N"]
        count = {"x": m if transposed else n, "y": n if transposed else m}[arg]
    return 4 * (1 + (count - 1) * abs(named["inc" + arg]))


@dataclass
class _Record:
    """A call as the hook saw it, written when its section ends."""

    function: str
    args: tuple
    device_pointer_mode: bool  # cuBLAS reads alpha, beta and result from device memory
    destroyed: set = field(default_factory=set)  # addresses destroyed since (temporary descriptors)


def render(record: _Record, kind: str, buffers: dict, objects: dict) -> str:
    """One trace line."""
    from ..bindings import load

    cudnn, cublas = load()
    lib = (cudnn if record.function.startswith("cudnn") else cublas).lib
    ctypes = ffi.typeof(getattr(lib, record.function)).args
    decl = _declarations()[record.function].args
    named = {var.name: value for var, value in zip(decl, record.args) if isinstance(value, int)}
    is_cublas = lib is cublas.lib
    parts, previous = [record.function], None
    for var, ctype, value in zip(decl, ctypes, record.args):
        if ctype.kind == "enum":
            text = _enum_name(ctype.cname, value)
        elif ctype.kind == "primitive":
            text = repr(float(value)) if ctype.cname in ("float", "double") else str(int(value))
        elif var.passing == "out":
            text = "(out)"
        elif var.passing == "in":  # const int dimA[]
            is_array = isinstance(value, ffi.CData) and ffi.typeof(value).kind == "array"
            text = "[" + ",".join(str(v) for v in value) + "]" if is_array else "(in)"
        elif ctype.item.kind == "struct":  # a handle, descriptor or stream
            address = _address(value)
            name, obj = objects.get(address, (f"unnamed@{address:#x}", None))
            if address in record.destroyed:
                name, obj = "temporary", None
            text = name + (describe(obj) if kind == _COMPUTE and obj is not None else "")
            previous = obj
        elif _is_host_scalar(var.name, is_cublas, record.device_pointer_mode):
            text = "(out)" if var.name == "result" else calls.scalar(ffi.cast("float *", value)[0])
        elif kind == _SETUP:
            text = "device" if _address(value) else "NULL"
        else:
            if var.name == "workSpace":
                nbytes = None
            elif is_cublas:
                nbytes = _cublas_extent(var.name, named)
            else:
                nbytes = _extent(previous) if previous is not None else None
            text = buffer_name(buffers, _address(value), nbytes)
        parts.append(f"{var.name}={text}")
    return " ".join(parts)


def _is_host_scalar(name: str, is_cublas: bool, device_pointer_mode: bool) -> bool:
    if is_cublas:
        return name in ("alpha", "beta", "result") and not device_pointer_mode
    return name in HOST_SCALARS


# ---- the tracer ----


class Tracer:
    """Writes a run's calls, section by section (setup, step N, evaluate), to one text file."""

    def __init__(self, file, backend: str, settings: calls.Settings):
        self.file, self.backend, self.settings = file, backend, settings
        self.registry = Registry()
        self._records: list[_Record] = []
        self._kind = _OTHER
        self._other_header = False  # "# other calls" written since the last section
        self._rendering = False
        self._device_mode: dict[int, bool] = {}  # cuBLAS handle -> pointer mode is device
        self._captured: dict[int, float] = {}  # reference with --graph: batch -> lr of the "captured" step
        if backend == "cudnn":
            previous = library.set_hook(self._hook)
            if previous is not None:
                library.set_hook(previous)
                file.close()
                raise RuntimeError("another call hook (the profiler?) is installed: "
                                   "trace and profile one at a time")
            about = "every cuDNN and cuBLAS call as it was made"
        else:
            about = (f"no library calls; each step lists the calls the cudnn backend makes for it "
                     f"(cudnn_denoise.plan), {calls.CHOSEN} where its setup decides")
        flags = " ".join(f"{k}={'yes' if v is True else 'no' if v is False else v}"
                         for k, v in vars(settings).items())
        self._write(FORMAT)
        self._write(f"# backend {backend}: {about}")
        self._write(f"# settings: {flags}")

    # -- the hook (cuDNN backend) --

    @contextlib.contextmanager
    def _hook(self, name: str, args: tuple):
        if self._rendering:  # describe() reading a descriptor back
            yield
            return
        handle = _address(args[0]) if name.startswith("cublas") and args else None
        record = _Record(name, args, self._device_mode.get(handle, False))
        self._records.append(record)
        if name.startswith("cudnnDestroy") and name.endswith("Descriptor"):
            for earlier in self._records:
                earlier.destroyed.add(_address(args[0]))
        yield
        if name in ("cudnnDestroy", "cublasDestroy_v2"):
            self._flush()  # now, while the closing handle still holds its pointer and so its name
        if name == "cublasSetPointerMode_v2":
            self._device_mode[handle] = args[1] == ffi.typeof("cublasPointerMode_t").relements[
                "CUBLAS_POINTER_MODE_DEVICE"]

    # -- sections --

    @contextlib.contextmanager
    def _section(self, header: str, kind: str):
        self._flush()
        self._write(f"# {header}")
        self._kind = kind
        try:
            yield
        finally:
            self._flush()
            self._kind, self._other_header = _OTHER, False

    def setup(self, label: str):
        """Building a model: call register(model) inside, so that its calls are written with names."""
        return self._section(f"setup: {label}", _SETUP)

    def register(self, model) -> None:
        """Name the buffers, descriptors and handles of a cuDNN model (the reference has none)."""
        if self.backend == "cudnn":
            self.registry.models.append(model)

    def inputs(self, model, x, target):
        """The arrays the model's step will read x and target from: device copies for the cuDNN backend."""
        if self.backend != "cudnn":
            return x, target
        import cupy

        with model.stream:
            return cupy.asarray(x), cupy.asarray(target)

    @contextlib.contextmanager
    def step(self, number: int, x, target, lr: float, slot: int = 0):
        """One training step on (x, target), its loss sum to loss_sums[slot]."""
        batch, _, height, width = x.shape
        self.registry.inputs = {"x": x, "target": target}
        with self._section(f"step {number}: batch {batch} x 1 x {height} x {width}, lr {lr}", _COMPUTE):
            yield
            if self.backend == "cudnn":
                replayed = not self._records  # the section began with none
            else:  # as DenoiseCNN: a graph is captured per batch shape, again when lr changes
                replayed = self.settings.graph and self._captured.get(batch) == lr
                if not replayed:
                    self._write_plan(calls.step(self.settings, batch, height, width, lr, slot))
                self._captured[batch] = lr
        if self.settings.graph and replayed:
            self._write(f"# step {number} made no calls: it replayed the CUDA graph captured earlier")
        elif self.settings.graph:
            self._write(f"# step {number} was captured into a CUDA graph (--graph): later steps replay "
                        "these calls without making them")

    @contextlib.contextmanager
    def evaluate(self, x, target):
        """The loss of one batch without a step (validation)."""
        batch, _, height, width = x.shape
        self.registry.inputs = {"x": x, "target": target}
        with self._section(f"evaluate: batch {batch} x 1 x {height} x {width}", _COMPUTE):
            yield
            if self.backend != "cudnn":
                self._write_plan(calls.evaluate(self.settings, batch, height, width))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Write what is left and stop tracing."""
        if self.file.closed:
            return
        self._flush()
        if self.backend == "cudnn":
            library.set_hook(None)
        self.file.close()

    # -- writing --

    def _write(self, line: str) -> None:
        self.file.write(line + "\n")

    def _write_plan(self, calls) -> None:
        for call in calls:
            self._write(call.line())

    def _flush(self) -> None:
        records, self._records = self._records, []
        if not records:
            return
        if self._kind == _OTHER and not self._other_header:
            self._write("# other calls (outside setup, steps and evaluations)")
            self._other_header = True
        self._rendering = True
        try:
            buffers, objects = self.registry.table()
            for record in records:
                self._write(render(record, self._kind, buffers, objects))
        finally:
            self._rendering = False
        self.file.flush()


class _NoTrace:
    """A tracer that writes nothing (the default)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def setup(self, label: str):
        return contextlib.nullcontext()

    def register(self, model) -> None:
        pass

    def inputs(self, model, x, target):
        return x, target

    def step(self, number: int, x, target, lr: float, slot: int = 0):
        return contextlib.nullcontext()

    def evaluate(self, x, target):
        return contextlib.nullcontext()

    def close(self) -> None:
        pass


OFF = _NoTrace()
