"""onnxruntime backend: an ONNX artifact (encoder + decoder graphs) behind the Backend protocol.

    backend = OrtBackend("artifacts/w18s-late-640x960-fp32-onnx", power="efficient")
    backend = OrtBackend("artifacts/w18s-late-640x960-fp32-onnx", threads=2)   # the default profile, 2 threads
    session = Session(backend)            # runtimes.session, unchanged

Thread counts and spinning come from a power profile (runtimes/power.py; default power.DEFAULT_PROFILE);
`threads` overrides the profile's counts and keeps its spinning.

CPU by default; any other installed execution provider may be named. An artifact whose graphs were
built for another I/O contract (hash in each file's metadata) is refused with ContractMismatch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np

from edgeclick import contract

from .backend import check_contract, check_feeds
from .power import PowerProfile, get_profile

DEFAULT_PROVIDERS: tuple[str, ...] = ("CPUExecutionProvider",)
Threads = Union[int, Mapping[str, int], None]
"""Intra-op threads: one count for every graph, a per-graph mapping ({"encoder": 2, "decoder": 1}; a graph
it leaves out gets the power profile's count), or None (the power profile's counts)."""


def graph_threads(threads: Threads, graph: str) -> int | None:
    """The thread count of `graph` under `threads` (see Threads); ValueError for an unknown graph name."""
    if threads is None or isinstance(threads, int):
        return threads
    unknown = sorted(set(threads) - {contract.ENCODER, contract.DECODER})
    if unknown:
        raise ValueError(f"per-graph threads name unknown graph(s) {unknown}; use {contract.ENCODER!r} / {contract.DECODER!r}")
    return threads.get(graph)

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(double)": "float64", "tensor(bool)": "bool"}


def numpy_dtype(ort_type: str) -> str:
    """onnxruntime's type string ("tensor(float)") → numpy dtype name ("float32")."""
    return _ORT_DTYPES.get(ort_type, ort_type)


def session_options(threads: int | None = None, profile_prefix: str | None = None,
                    power: "str | PowerProfile | None" = None, graph: str = contract.ENCODER) -> Any:
    """SessionOptions: all graph optimisations, sequential execution, the power profile's spinning and
    block-sizing config entries and its thread count for `graph` (`threads` overrides the count); optional
    profiling to `profile_prefix`*.json."""
    import onnxruntime as ort

    profile = get_profile(power)
    if threads is None:
        threads = profile.ort_thread_counts().get(graph)
    opts = ort.SessionOptions()
    for key, value in profile.ort_config_entries().items():
        opts.add_session_config_entry(key, value)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1 (or None for onnxruntime's default), got {threads}")
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return opts


def resolve_providers(providers: Sequence[str] | None) -> list[str]:
    """Requested execution providers, checked against the installed ones (error lists what is available)."""
    import onnxruntime as ort

    wanted = list(providers) if providers else list(DEFAULT_PROVIDERS)
    available = ort.get_available_providers()
    missing = [p for p in wanted if p not in available]
    if missing:
        raise ValueError(f"onnxruntime execution provider(s) {missing} not available in this install; available: {available}")
    return wanted


class OrtBackend:
    """Backend protocol over an ONNX artifact directory (manifest.json + encoder/decoder .onnx).

    input_size: the artifact's (H, W), or None for a dynamic export (any multiple of 32).
    threads: intra-op threads, one count or per graph (`Threads`): the per-click decoder gains little
        from a second thread where the encoder does (measured by `edgeclick deploy-table`), so a deployment
        may give them different counts. None: the power profile's.
    power: power profile name (runtimes/power.py; None: the default): spinning and thread counts per graph.
    sessions: graph name → onnxruntime.InferenceSession.
    """

    name = "onnxruntime"

    def __init__(self, artifact_dir: str | Path, providers: Sequence[str] | None = None, threads: Threads = None,
                 profile_prefix: str | None = None, power: "str | PowerProfile | None" = None) -> None:
        from edgeclick.manifest import read_manifest

        from .artifact import graph_specs_from_manifest

        manifest = read_manifest(artifact_dir)
        if manifest.format != "onnx":
            raise ValueError(f"{manifest.root}: a {manifest.format!r} artifact, not ONNX; open it with runtimes.artifact.open_backend")
        if not manifest.complete:
            raise ValueError(f"{manifest.root}: incomplete artifact ({manifest.missing}); re-export it")
        files = {graph: manifest.path(graph) for graph in (contract.ENCODER, contract.DECODER)}
        self.manifest = manifest
        self._setup(files, graph_specs_from_manifest(manifest), None if manifest.dynamic else manifest.size,
                    providers, threads, profile_prefix, power)

    @classmethod
    def from_files(cls, files: dict[str, Path], graphs: dict[str, contract.GraphSpec], input_size: tuple[int, int] | None,
                   providers: Sequence[str] | None = None, threads: Threads = None,
                   profile_prefix: str | None = None, power: "str | PowerProfile | None" = None) -> "OrtBackend":
        """A backend over loose graph files (the exporter validates with this before a manifest exists)."""
        backend = cls.__new__(cls)
        backend.manifest = None
        backend._setup(files, graphs, input_size, providers, threads, profile_prefix, power)
        return backend

    def _setup(self, files: dict[str, Path], graphs: dict[str, contract.GraphSpec], input_size: tuple[int, int] | None,
               providers: Sequence[str] | None, threads: Threads, profile_prefix: str | None,
               power: "str | PowerProfile | None" = None) -> None:
        import onnxruntime as ort

        self.power = get_profile(power)
        if input_size is not None:
            contract.check_size(*input_size)
        self.providers = resolve_providers(providers)
        self.graphs = graphs
        self.input_size = input_size
        self.sessions: dict[str, Any] = {}
        for graph in graphs:
            path = Path(files[graph])
            if not path.is_file():
                raise FileNotFoundError(f"{path}: ONNX graph missing")
            opts = session_options(graph_threads(threads, graph), profile_prefix and f"{profile_prefix}_{graph}",
                                   self.power, graph)
            # The encoder runs once per image; its memory arena would keep its peak activations (~120 MiB
            # of HRNet at 640x960) allocated for the process lifetime. The per-click decoder keeps its arena.
            opts.enable_cpu_mem_arena = graph != contract.ENCODER
            session = ort.InferenceSession(str(path), sess_options=opts, providers=self.providers)
            meta = session.get_modelmeta().custom_metadata_map
            check_contract(meta.get(contract.META_CONTRACT_HASH, "<none>"), f"ONNX graph {path}")
            if meta.get(contract.META_GRAPH) != graph:
                raise ValueError(f"{path}: metadata says graph {meta.get(contract.META_GRAPH)!r}, expected {graph!r}")
            self.sessions[graph] = session
        self.contract_hash = contract.contract_hash()
        self.files = {g: Path(p) for g, p in files.items()}

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `graph` on feeds named as the contract says; outputs by contract name (float32)."""
        spec = self.graphs[graph]
        size = check_feeds(spec, feeds)
        if self.input_size is not None and size != tuple(self.input_size):
            raise ValueError(f"{graph}: feeds are {size[0]}x{size[1]}, this artifact was exported for "
                             f"{self.input_size[0]}x{self.input_size[1]} (export with --dynamic for any size)")
        outputs = self.sessions[graph].run(spec.output_names(), {name: feeds[name] for name in spec.input_names()})
        return dict(zip(spec.output_names(), outputs))

    def end_profiling(self) -> dict[str, str]:
        """Stop profiling (sessions opened with profile_prefix) and return graph → profile JSON path."""
        return {graph: session.end_profiling() for graph, session in self.sessions.items()}
