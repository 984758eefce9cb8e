"""The layout of csrc/ (docs/ARCHITECTURE.md): files depend downward only.

Layers, bottom to top: core -> nn -> {models, geom, sample, io} -> pipeline -> python (the _core glue) -> testing
(the test-only _testops glue). A file may include or call into its own layer or a lower one, never a higher
one, and no files form a circle, neither through #include lines nor through calls (file A calls a function
defined in file B and B, perhaps through others, calls back into A). The sources are read as text, so this
runs without a build: function definitions are found at the start of a line (the code's style), uses as the
name outside comments and strings.
"""
import os
import re

import pytest

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")

LAYERS = {"core": 0, "lyra2.h": 0, "nn": 1, "models": 2, "geom": 2, "sample": 2, "io": 2, "pipeline": 3,
          "python": 4, "testing": 5}


def _sources():
    out = []
    for root, _, files in os.walk(CSRC):
        for f in files:
            if f.endswith((".c", ".h", ".cu")):
                out.append(os.path.relpath(os.path.join(root, f), CSRC).replace(os.sep, "/"))
    return sorted(out)


def _layer(path):
    return LAYERS[path.split("/")[0]]


def _text(path):
    with open(os.path.join(CSRC, path), encoding="utf-8") as f:
        return f.read()


_COMMENT_OR_STRING = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


def _code(path):
    """The file without comments and string/char literals (kept: newlines, so lines stay lines)."""
    def blank(m):
        s = m.group(0)
        return "" if s.startswith("/") and "\n" not in s else re.sub(r"[^\n]", " ", s) if s.startswith("/*") \
            else '""'
    return _COMMENT_OR_STRING.sub(blank, _text(path))


def _includes(path, files):
    """The csrc files `path` includes (quoted includes, resolved as the compilers' -I csrc does)."""
    out = []
    for name in re.findall(r'^\s*#\s*include\s+"([^"]+)"', _text(path), re.M):
        here = os.path.normpath(os.path.join(os.path.dirname(path), name)).replace(os.sep, "/")
        for cand in (here, name):
            if cand in files:
                out.append(cand)
                break
        else:
            raise AssertionError(f"{path}: #include \"{name}\" is not a file under csrc/")
    return out


_DEF = re.compile(r'^(?:extern "C"\s+)?(?!static\b|return\b|else\b|if\b|while\b|for\b|switch\b)'
                  r'[A-Za-z_][\w \t\*]*?\b([A-Za-z_]\w*)\s*\([^;{}]*\)\s*\{', re.M)
_NAME = re.compile(r"\b([A-Za-z_]\w*)\b")


def _call_graph(files):
    """{file: set of files whose global functions it calls or names}, over the .c and .cu files. A name counts
    without a call too: a backend's op table lists its ops as function pointers."""
    units = [f for f in files if f.endswith((".c", ".cu"))]
    code = {f: _code(f) for f in units}
    # The extern "C" of .cu files is read as a plain prefix: strip the string before matching definitions.
    defined = {}
    for f in units:
        text = _text(f) if f.endswith(".cu") else code[f]
        text = _COMMENT_OR_STRING.sub(lambda m: m.group(0) if m.group(0) == '"C"' else " ", text)
        for name in _DEF.findall(text):
            if not name.startswith("__"):  # __launch_bounds__(...) and other attributes before the name
                defined.setdefault(name, f)
    graph = {}
    for f in units:
        graph[f] = {defined[n] for n in _NAME.findall(code[f]) if n in defined and defined[n] != f}
    return graph, defined


def _cycles(graph):
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


FILES = _sources()


def test_sources_found():
    assert "nn/ops.h" in FILES and "models/dit_forward.c" in FILES and "python/module.c" in FILES
    assert all(f.split("/")[0] in LAYERS for f in FILES), sorted({f.split("/")[0] for f in FILES} - set(LAYERS))


def test_includes_point_down():
    files = set(FILES)
    bad = [f"{f} (layer {f.split('/')[0]}) includes {g}"
           for f in FILES for g in _includes(f, files) if _layer(g) > _layer(f)]
    assert not bad, "upward includes:\n" + "\n".join(bad)


def test_no_include_circles():
    files = set(FILES)
    graph = {f: set(_includes(f, files)) for f in FILES}
    assert _cycles(graph) == []


def test_calls_point_down():
    graph, _ = _call_graph(FILES)
    bad = [f"{f} calls into {g}" for f in sorted(graph) for g in sorted(graph[f]) if _layer(g) > _layer(f)]
    assert not bad, "upward calls:\n" + "\n".join(bad)


def test_no_call_circles():
    graph, _ = _call_graph(FILES)
    assert _cycles(graph) == []


def test_call_graph_sees_known_edges():
    # The reader above must see the edges the layout relies on, or the two checks before prove nothing.
    graph, defined = _call_graph(FILES)
    assert defined["dit_forward_run"] == "models/dit_forward.c"
    assert defined["dit_linear"] == "models/dit_run.c"
    assert "models/dit_block.c" in graph["models/dit_forward.c"]
    assert "models/dit_run.c" in graph["models/dit_block.c"]
    assert "nn/cpu/cpu_attention.c" in graph["nn/cpu/cpu_backend.c"]
    assert "nn/ops.c" in graph["models/dit_block.c"]
    assert "nn/cuda/cuda_attention.cu" in graph["nn/cuda/cuda_backend.cu"]
    assert "nn/cuda/cuda_common.cu" in graph["nn/cuda/cuda_gemm.cu"]


def test_cycle_finder():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("folder", ["python", "testing"])
def test_glue_is_not_in_the_core(folder):
    # The shared core (every layer below python/) never includes Python or NumPy headers.
    for f in FILES:
        if _layer(f) < LAYERS["python"]:
            assert not re.search(r'#\s*include\s+[<"](Python|numpy/)', _text(f)), f
    assert any(f.startswith(folder + "/") for f in FILES)


# ---------------------------------------------------------------- the Python package, one way

LYRA2 = os.path.join(os.path.dirname(CSRC), "lyra2")
# Who may import whom (also inside functions): the job entry (api) over its two drivers (generate, preview)
# over what they share (depth, fields). A module not listed here is not checked.
PY_LAYERS = {"api": 2, "generate": 1, "preview": 1, "depth": 0, "fields": 0}


def _py_imports(name):
    with open(os.path.join(LYRA2, name + ".py"), encoding="utf-8") as f:
        text = f.read()
    return set(re.findall(r"^\s*from \.(\w+) import", text, re.M)) | \
        {m for line in re.findall(r"^\s*from \. import ([\w, ]+)", text, re.M) for m in re.split(r",\s*", line)}


def test_python_layers_one_way():
    bad = [f"lyra2/{a}.py imports lyra2.{b}" for a in PY_LAYERS for b in sorted(_py_imports(a))
           if b in PY_LAYERS and PY_LAYERS[b] >= PY_LAYERS[a] and b != a]
    assert not bad, "\n".join(bad)
    assert not os.path.exists(os.path.join(LYRA2, "pipeline.py"))  # the generate driver is csrc/pipeline/ alone
