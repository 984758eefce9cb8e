"""Every reference in the sources resolves from a clone: upstream tags are defined in docs/REFERENCES.md, its
anchors exist, and nothing cites the design-time spec files that are not in the repository."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "REFERENCES.md")
FOLDERS = ("csrc", "lyra2", "tests", "benchmarks")
SPEC_FILES = re.compile(r"\b(network|encoders|pipeline|depth|sampling|checkpoints)\.md\b")
REF = r"(?:DA3cfg/[\w-]+|[A-Z][A-Za-z0-9]*)(?::[0-9]+(?:-[0-9]+)?)?"
UPSTREAM_LIST = re.compile(r"\bupstream (" + REF + r"(?:, " + REF + r")*)")


def _sources():
    for folder in FOLDERS:
        for root, _, files in os.walk(os.path.join(ROOT, folder)):
            for f in files:
                if f.endswith((".c", ".h", ".cu", ".py", ".sh", ".md")) and f != os.path.basename(__file__):
                    path = os.path.join(root, f)
                    with open(path, encoding="utf-8") as fh:
                        yield os.path.relpath(path, ROOT), fh.read()


def _doc():
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def _tags(doc):
    tags = set()
    for row in re.findall(r"^\| ([^|]+) \| [^|]*`", doc, re.M):
        for t in re.split(r",\s*", row.strip()):
            tags.add(t.replace("&lt;name&gt;", "").rstrip("/") if t.startswith("DA3cfg") else t)
    return tags


def _anchors(doc):
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^## (.+)$", doc, re.M)}


def test_no_spec_file_citations():
    bad = [f"{path}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
           for path, text in _sources() for m in SPEC_FILES.finditer(text)]
    assert not bad, "cite upstream file:line or docs/ instead:\n" + "\n".join(bad[:40])


def test_upstream_tags_are_defined():
    tags = _tags(_doc())
    assert {"W", "WL", "M", "Z", "TOK", "T5", "CLIP", "DA3net", "MOGE"} <= tags
    bad = set()
    for path, text in _sources():
        for lst in UPSTREAM_LIST.findall(text):
            for ref in lst.split(", "):
                if ":" not in ref:
                    continue  # a bare word after "upstream" ("upstream Lyra", "upstream T5RelativeEmbedding")
                tag = ref.split(":")[0]
                if tag.startswith("DA3cfg/"):
                    tag = "DA3cfg"
                if tag not in tags:
                    bad.add(f"{path}: {tag}")
    assert not bad, "tags missing from docs/REFERENCES.md:\n" + "\n".join(sorted(bad))


def test_doc_anchors_exist():
    anchors = _anchors(_doc())
    bad = [f"{path}: #{a}" for path, text in _sources()
           for a in re.findall(r"docs/REFERENCES\.md#([a-z0-9-]+)", text) if a not in anchors]
    assert not bad, "\n".join(bad)
