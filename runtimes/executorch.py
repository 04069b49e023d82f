"""ExecuTorch backend: an artifact's encoder.pte / decoder.pte run by `executorch.runtime` (XNNPACK on CPU).

    backend = ExecuTorchBackend("artifacts/w18s-late-640x960-fp32-executorch", threads={"encoder": 2, "decoder": 1})
    session = Session(backend)            # runtimes.session, unchanged

These are the files a phone app loads; XNNPACK runs the same kernels on Arm phones as here on x86 (other
instruction sets, so other timings). Each program's constant method `edgeclick_metadata` names its
contract hash and graph, and a program built for another I/O contract is refused with ContractMismatch.

Threads. ExecuTorch's Python runtime has ONE threadpool per process (`_unsafe_reset_threadpool(n)` /
`_threadpool_get_thread_count()` in its pybindings; XNNPACK and the portable kernels draw on it), and an XNNPACK
program binds the pool that exists when its method is loaded. Resizing it after a program is loaded is not
safe (measured here: a later run aborted the process; a reload after the resize hung). So the count is
process-wide: the first ExecuTorch backend of a process sizes the pool before it loads anything, every later
one must ask for the same count (ValueError otherwise), and both graphs run at that count; a per-graph
mapping is accepted only when its counts agree. To compare counts, use one process per count, as
`edgeclick bench` does (a fresh worker per artifact and thread count). threads None: the pool as it is.
Runs are serialised by a process-wide lock (one pool).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np

from edgeclick import contract

from .backend import check_contract, check_feeds

Threads = Union[int, Mapping[str, int], None]
"""One count for both graphs, a per-graph mapping whose counts agree ({"encoder": 2, "decoder": 2}; see the module
docstring: the pool is process-wide), or None (the process's pool as it is: ExecuTorch's default, one thread per
performant core, until a backend sized it)."""

METADATA_METHOD = "edgeclick_metadata"  # constant method of every .pte: JSON with the contract and the graph
_DTYPES = {0: "uint8", 1: "int8", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64", 11: "bool"}
"""ExecuTorch ScalarType codes (as TensorInfo.dtype() returns them; c10's numbering) → numpy dtype names."""
_POOL_LOCK = threading.Lock()  # one threadpool per process: resize, reload and run under one lock
_DEFAULT_THREADS: list[int] = []  # the pool size before edgeclick first resized it


class _Pool:
    """The process's threadpool size once an ExecuTorch program is loaded (None before): fixed from then on."""

    size: int | None = None

    @classmethod
    def claim(cls, threads: int, where: str) -> None:
        """Size the pool to `threads` before the first program loads; refuse another count later (under _POOL_LOCK)."""
        lib = _pybindings()
        if cls.size is None:
            if int(lib._threadpool_get_thread_count()) != threads:
                default_threads()
                lib._unsafe_reset_threadpool(threads)
            cls.size = threads
        elif cls.size != threads:
            raise ValueError(f"{where}: ExecuTorch's threadpool is process-wide and this process already runs programs "
                             f"at {cls.size} thread(s), not {threads}; use {cls.size}, or open it in another process "
                             "(edgeclick bench runs each thread count in its own worker)")


def dense(array: np.ndarray) -> Any:
    """A torch tensor with canonical contiguous strides (shape as given).

    numpy gives a leading size-1 axis made by `x[None]` a stride of 0 and torch.from_numpy keeps it;
    ExecuTorch refuses that in an export's example input ("0 in strides is not supported") and derives dim
    orders from strides at run time. Copied only where the strides are not canonical.
    """
    import torch

    tensor = torch.from_numpy(np.asarray(array))
    expected = torch.empty(tensor.shape, dtype=tensor.dtype).stride()
    return tensor if tensor.stride() == expected else tensor.clone(memory_format=torch.contiguous_format)


def _pybindings() -> Any:
    from executorch.extension.pybindings import portable_lib

    return portable_lib


def default_threads() -> int:
    """ExecuTorch's own threadpool size in this process (before any resize by this module)."""
    if not _DEFAULT_THREADS:
        _DEFAULT_THREADS.append(int(_pybindings()._threadpool_get_thread_count()))
    return _DEFAULT_THREADS[0]


def graph_threads(threads: Threads, graph: str) -> int:
    """The pool size `graph` runs with under `threads` (see Threads); ValueError for a bad count or graph name."""
    if isinstance(threads, Mapping):
        unknown = sorted(set(threads) - {contract.ENCODER, contract.DECODER})
        if unknown:
            raise ValueError(f"per-graph threads name unknown graph(s) {unknown}; use {contract.ENCODER!r} / {contract.DECODER!r}")
        counts = {graph_threads(n, graph) for n in threads.values()} | ({default_threads()} if len(threads) < 2 else set())
        if len(counts) > 1:
            raise ValueError(f"per-graph threads {dict(threads)}: ExecuTorch runs every graph of a process on one "
                             "threadpool (process-wide, fixed once a program is loaded); give one count")
        threads = threads.get(graph)
    if threads is None:
        return _Pool.size or default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be >= 1 (or None for ExecuTorch's default), got {threads!r}")
    return threads


def tensor_dtype(info: Any) -> str:
    """numpy dtype name of an ExecuTorch TensorInfo (6 → "float32")."""
    code = int(info.dtype())
    return _DTYPES.get(code, f"ScalarType {code}")


def read_program_metadata(program: Any, where: str) -> dict[str, str]:
    """The JSON of a program's METADATA_METHOD; ContractMismatch when it has none."""
    if METADATA_METHOD not in program.method_names:
        raise contract.ContractMismatch(f"{where} has no {METADATA_METHOD!r} method; re-export it with `edgeclick export --target executorch`")
    return json.loads(program.load_method(METADATA_METHOD).execute([])[0])


class ExecuTorchBackend:
    """Backend protocol over an ExecuTorch artifact directory (manifest.json + encoder/decoder .pte).

    input_size: the artifact's (H, W) (programs are static). threads: see the module docstring.
    methods: graph name → loaded `forward` method.
    """

    name = "executorch"

    def __init__(self, artifact_dir: str | Path, threads: Threads = None) -> None:
        from edgeclick.manifest import read_manifest

        from .artifact import graph_specs_from_manifest

        manifest = read_manifest(artifact_dir)
        if manifest.format != "executorch":
            raise ValueError(f"{manifest.root}: a {manifest.format!r} artifact, not ExecuTorch; open it with runtimes.artifact.open_backend")
        if not manifest.complete:
            raise ValueError(f"{manifest.root}: incomplete artifact ({manifest.missing}); it cannot run here")
        self.manifest = manifest
        self._setup({g: manifest.path(g) for g in (contract.ENCODER, contract.DECODER)},
                    graph_specs_from_manifest(manifest), manifest.size, threads)

    @classmethod
    def from_files(cls, files: dict[str, Path], graphs: dict[str, contract.GraphSpec], input_size: tuple[int, int],
                   threads: Threads = None) -> "ExecuTorchBackend":
        """A backend over loose .pte files (the exporter validates with this before a manifest exists)."""
        backend = cls.__new__(cls)
        backend.manifest = None
        backend._setup(files, graphs, input_size, threads)
        return backend

    def _setup(self, files: dict[str, Path], graphs: dict[str, contract.GraphSpec], input_size: tuple[int, int],
               threads: Threads) -> None:
        try:
            from executorch.runtime import Runtime
        except ImportError as exc:
            raise RuntimeError("ExecuTorch is not installed; pip install -e .[executorch] (executorch==1.5.1)") from exc
        contract.check_size(*input_size)
        self.graphs = graphs
        self.input_size = tuple(input_size)
        self.threads = {graph: graph_threads(threads, graph) for graph in graphs}
        self.methods: dict[str, Any] = {}
        self._programs: dict[str, Any] = {}
        runtime = Runtime.get()
        for graph in graphs:
            path = Path(files[graph])
            if not path.is_file():
                raise FileNotFoundError(f"{path}: ExecuTorch program missing")
            program = runtime.load_program(path)
            meta = read_program_metadata(program, f"ExecuTorch program {path}")
            check_contract(meta.get(contract.META_CONTRACT_HASH, "<none>"), f"ExecuTorch program {path}")
            if meta.get(contract.META_GRAPH) != graph:
                raise ValueError(f"{path}: metadata says graph {meta.get(contract.META_GRAPH)!r}, expected {graph!r}")
            with _POOL_LOCK:
                _Pool.claim(self.threads[graph], str(path))
                self.methods[graph] = program.load_method("forward")
            self._programs[graph] = program  # a Method reads its Program's memory: keep the Program alive
        self.contract_hash = contract.contract_hash()
        self.files = {g: Path(p) for g, p in files.items()}

    def threads_note(self) -> str:
        """"encoder 2 threads, decoder 1 thread" (what bench rows and validation notes state)."""
        return ", ".join(f"{g} {n} thread{'s' if n != 1 else ''}" for g, n in self.threads.items())

    def io_info(self, graph: str) -> tuple[list[tuple[str, str, tuple[int, ...]]], list[tuple[str, str, tuple[int, ...]]]]:
        """(inputs, outputs) as (name, numpy dtype name, shape), named by position after the contract (a .pte
        keeps no tensor names); an extra tensor is named "<extra i>" so a structure check reports it."""
        meta = self.methods[graph].metadata
        spec = self.graphs[graph]

        def infos(count: int, get: Any, names: list[str]) -> list[tuple[str, str, tuple[int, ...]]]:
            return [(names[i] if i < len(names) else f"<extra {i}>", tensor_dtype(get(i)), tuple(int(d) for d in get(i).sizes()))
                    for i in range(count)]

        return (infos(meta.num_inputs(), meta.input_tensor_meta, spec.input_names()),
                infos(meta.num_outputs(), meta.output_tensor_meta, spec.output_names()))

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `graph` on feeds named as the contract says; outputs by contract name (copies: the program's
        memory plan reuses its output buffers on the next run)."""
        spec = self.graphs[graph]
        size = check_feeds(spec, feeds)
        if size != self.input_size:
            raise ValueError(f"{graph}: feeds are {size[0]}x{size[1]}, this ExecuTorch artifact was exported for "
                             f"{self.input_size[0]}x{self.input_size[1]} (programs are static; export that size)")
        # Programs read these tensors in place (inputs are outside their memory plan, export/executorch.py):
        # `inputs` must stay alive until execute returns.
        inputs = [dense(feeds[name]) for name in spec.input_names()]
        with _POOL_LOCK:
            outputs = self.methods[graph].execute(inputs)
            arrays = [np.array(o.numpy(), copy=True) for o in outputs]
        return dict(zip(spec.output_names(), arrays))
