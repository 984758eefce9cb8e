"""lyra2.convert: torch-free .pth / DCP reading, restricted unpickler, name mapping, config detection.

Checkpoints are built two ways: by hand (tests/pth_builder.py writes the pickle opcodes and the zip
itself, always available) and by torch when it is installed. Converted tensors are compared bit for
bit with the values that went in."""
import hashlib
import json
import os
import pickle
import sys
import zipfile

import numpy as np
import pytest

import lyra2
import importlib

cv = importlib.import_module("lyra2.convert")  # the module; lyra2.convert itself is the convert() function
from lyra2 import io as lio

sys.path.insert(0, os.path.dirname(__file__))
import pth_builder as pb  # noqa: E402
from conftest import DATA  # noqa: E402


def bits(x):
    """Raw bytes of an array, for bit-exact comparisons (NaN and -0 included)."""
    return np.ascontiguousarray(x).tobytes()


def bf16_reference(x):
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_value(b):
    return (np.asarray(b, np.uint16).astype(np.uint32) << 16).view(np.float32)


def write_pth(path, obj, storages, prefix="archive"):
    with open(path, "wb") as f:
        f.write(pb.torch_zip_bytes(obj, storages, prefix))


def load_raw(path):
    """{name: (dtype, raw bytes)} from a converted file (BF16 read back as its bits)."""
    info = lio.safetensors_info(path)["tensors"]
    raw = open(path, "rb").read()
    return {n: (t["dtype"], raw[t["offset"]: t["offset"] + t["nbytes"]]) for n, t in info.items()}


# ---- hand-made .pth ----------------------------------------------------------------------------------

def test_hand_made_pth_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((3, 4)).astype(np.float32)
    f16 = rng.standard_normal(5).astype(np.float16)
    b16 = rng.integers(0, 65536, (2, 3), dtype=np.uint16)  # arbitrary bf16 bit patterns, NaNs included
    i64 = np.array([-(2 ** 40), 0, 7], np.int64)
    boo = np.array([True, False, True])
    base = rng.standard_normal(40).astype(np.float32)
    st = pb.Storages()
    view = pb.tensor(st, view=(base, 3, (4, 5), (1, 6)))  # a transposed window with a storage offset
    param = pb.Reduce(pb.Global("torch._utils", "_rebuild_parameter"), (pb.tensor(st, f32), True, pb.ODict([])))
    sd = pb.ODict([("w.f32", param), ("w.f16", pb.tensor(st, f16)), ("w.bf16", pb.tensor(st, bf16_bits=b16)),
                   ("w.i64", pb.tensor(st, i64)), ("w.bool", pb.tensor(st, boo)), ("w.view", view),
                   ("w.empty", pb.tensor(st, np.zeros((0, 3), np.float32)))])
    # a module state_dict carries `_metadata` as a BUILD on the OrderedDict; wrap in {"model": ..., cfg}
    obj = {"model": pb.Build(sd, {"_metadata": pb.ODict([("", {"version": 1})])}),
           "model_config": {"dim": 4, "name": "x", "ratios": [1.5, 2.0]}}
    src = tmp_path / "weights.pth"
    write_pth(src, obj, st, prefix="weights")
    m = cv.convert(src, tmp_path / "out", progress=False, dtype="keep")
    out = tmp_path / "out" / "weights.safetensors"
    got = load_raw(out)
    want_view = np.lib.stride_tricks.as_strided(base[3:], (4, 5), (4, 24))
    assert got["w.f32"] == ("F32", bits(f32))
    assert got["w.f16"] == ("F16", bits(f16))
    assert got["w.bf16"] == ("BF16", bits(b16))
    assert got["w.i64"] == ("I64", bits(i64))
    assert got["w.bool"] == ("BOOL", bits(boo))
    assert got["w.view"] == ("F32", bits(want_view))
    assert got["w.empty"][0] == "F32" and lio.safetensors_info(out)["tensors"]["w.empty"]["shape"] == [0, 3]
    meta = lio.safetensors_info(out)["metadata"]
    assert json.loads(meta["source_extras"]) == {"model_config": {"dim": 4, "name": "x", "ratios": [1.5, 2.0]}}
    entry = m["files"]["weights.safetensors"]
    assert entry["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert {t["name"]: (t["shape"], t["dtype"]) for t in entry["tensors"]}["w.view"] == ([4, 5], "F32")
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["files"]["weights.safetensors"]["sha256"] \
        == entry["sha256"]


def test_auto_dtype_rounds_dit_family_to_bf16(tmp_path):
    rng = np.random.default_rng(1)
    names = {"patch_embedding.weight": (8, 144), "head.head.weight": (64, 8),
             "blocks.0.self_attn.q.weight": (8, 8), "blocks.0.ffn.0.weight": (16, 8)}
    arrays = {k: rng.standard_normal(s).astype(np.float32) for k, s in names.items()}
    st = pb.Storages()
    write_pth(tmp_path / "dit.pth", pb.state_dict(arrays, st), st)
    cv.convert(tmp_path / "dit.pth", tmp_path / "o", progress=False)
    got = load_raw(tmp_path / "o" / "dit.safetensors")
    for k, a in arrays.items():
        assert got[k] == ("BF16", bits(bf16_reference(a)))


# ---- hand-made Distributed Checkpoint ---------------------------------------------------------------

def make_dcp(folder, rng, extra_bytes_item=True):
    q = rng.integers(0, 65536, (13, 6), dtype=np.uint16)      # bf16, 8 row chunks of 2 (last ones short/empty)
    mod = rng.integers(0, 65536, (1, 6, 4), dtype=np.uint16)  # dim 0 < 8: only one non-empty chunk
    pe = rng.standard_normal((4, 144)).astype(np.float32)
    hh = rng.integers(0, 65536, (64, 4), dtype=np.uint16)
    tensors = {"net.blocks.0.self_attn.q.weight": ("bfloat16", q, 8),
               "net.blocks.0.modulation": ("bfloat16", mod, 8),
               "net.patch_embedding.weight": ("float32", pe, 3),
               "net.head.head.weight": ("bfloat16", hh, 2),
               "net.accum_iteration": ("int64", np.array([5], np.int64), 1),
               "net_ema.patch_embedding.weight": ("float32", pe, 1)}
    pb.dcp_folder(folder, tensors, files=3, extra_bytes_item=extra_bytes_item)
    return {"blocks.0.self_attn.q.weight": q, "blocks.0.modulation": mod, "patch_embedding.weight": pe,
            "head.head.weight": hh}


def test_hand_made_dcp_reassembles_bit_exact(tmp_path):
    want = make_dcp(tmp_path / "model", np.random.default_rng(2))
    m = cv.convert(tmp_path / "model", tmp_path / "out", progress=False, dtype="keep")
    got = load_raw(tmp_path / "out" / "dit.safetensors")
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == ("F32" if v.dtype == np.float32 else "BF16", bits(v)), k
    dropped = m["files"]["dit.safetensors"]["dropped"]
    assert dropped["net.accum_iteration"] == "training counter"
    assert "net_ema.patch_embedding.weight" in dropped
    assert "byte item" in dropped["net.blocks.0.self_attn.attn_op._extra_state"]
    cfg = m["files"]["dit.safetensors"]["config"]
    assert cfg["family"] == "dit" and cfg["dim"] == 4 and cfg["in_dim"] == 36 and cfg["out_dim"] == 16


def test_dcp_with_missing_chunk_is_refused(tmp_path):
    make_dcp(tmp_path / "model", np.random.default_rng(3))
    meta = (tmp_path / "model" / ".metadata").read_bytes()
    # drop one storage entry: rename the fqn of the last MetadataIndex key of that tensor (same length)
    i = meta.rfind(b"net.head.head.weight")
    broken = meta[:i] + b"net.head.head.weighX" + meta[i + 20:]
    (tmp_path / "model" / ".metadata").write_bytes(broken)
    with pytest.raises(lyra2.Lyra2Error, match="no storage entry for tensor 'net.head.head.weight'"):
        cv.convert(tmp_path / "model", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "dit.safetensors").exists()


def test_dcp_with_corrupt_blob_is_refused(tmp_path):
    make_dcp(tmp_path / "model", np.random.default_rng(4))
    f = tmp_path / "model" / "__0_0.distcp"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(lyra2.Lyra2Error):
        cv.convert(tmp_path / "model", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "dit.safetensors").exists()


# ---- malicious and malformed pickles -----------------------------------------------------------------

@pytest.mark.parametrize("proto", [2, 4])
def test_reduce_to_os_system_is_refused(tmp_path, proto):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    payload = pickle.dumps({"w": Evil()}, protocol=proto)
    src = tmp_path / "evil.pth"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("evil/data.pkl", payload)
    with pytest.raises(lyra2.Lyra2Error, match=r"global '(posix|os)\.system' is not allowed"):
        cv.convert(src, tmp_path / "out", progress=False)
    assert not marker.exists()
    assert not (tmp_path / "out" / "evil.safetensors").exists()


MALICIOUS = {
    "builtins_eval": (b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1s\x85R.", "global 'builtins.eval'"),
    "numpy_reconstruct": (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n.", "global 'numpy.core.multiarray._reconstruct'"),
    "stack_global_subprocess": (b"\x80\x04\x8c\nsubprocess\x8c\x05Popen\x93.", "global 'subprocess.Popen'"),
    "inst_opcode": (b"(ios\nsystem\nS'ls'\n.", "opcode 0x69"),
    "ext_registry": (b"\x80\x02\x82\x01.", "opcode 0x82"),
    "call_a_dtype": (b"\x80\x02ctorch\nfloat32\n)R.", "torch.float32 is not callable"),
    "storage_outside_persid": (b"\x80\x02ctorch\nFloatStorage\n)R.", "may only appear inside a persistent id"),
    "setitem_on_list": (b"\x80\x02]K\x01K\x02s.", "SETITEM(S) on a list"),
    "build_on_int": (b"\x80\x02K\x01}b.", "BUILD on a int"),
    "memo_miss": (b"\x80\x02h\x07.", "memo entry 7 was never stored"),
    "no_stop": (b"\x80\x02}", "stream ended without STOP"),
    "underflow": (b"\x80\x02s.", "stack underflow"),
    "truncated_string": (b"\x80\x02X\xff\x00\x00\x00ab", "string runs past the end"),
    "huge_long": (b"\x80\x02\x8a\x09" + b"\x01" * 9 + b".", "wider than 64 bits"),
    "bad_persid": (b"\x80\x02X\x03\x00\x00\x00abcQ.", "persistent id is not"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_unpickler_refuses(case):
    data, fragment = MALICIOUS[case]
    with pytest.raises(lyra2.Lyra2Error) as e:
        cv._unpickle(data, "test.pkl")
    assert fragment in str(e.value) and "test.pkl" in str(e.value)


def test_tensor_view_outside_storage_is_refused(tmp_path):
    st = pb.Storages()
    pid = st.add(np.zeros(6, np.float32).tobytes(), "FloatStorage", 6)
    bad = pb.Reduce(pb.Global("torch._utils", "_rebuild_tensor_v2"), (pid, 2, (2, 3), (3, 1), False, pb.ODict([])))
    with pytest.raises(lyra2.Lyra2Error, match="tensor view reaches element 7 but the storage '0' has 6"):
        cv._unpickle(pb.dumps({"w": bad}), "x")
    # the storage declares more elements than the member holds: caught when the bytes are read
    st = pb.Storages()
    pid = st.add(np.zeros(2, np.float32).tobytes(), "FloatStorage", 6)
    t = pb.Reduce(pb.Global("torch._utils", "_rebuild_tensor_v2"), (pid, 0, (6,), (1,), False, pb.ODict([])))
    write_pth(tmp_path / "short.pth", {"w": t}, st)
    with pytest.raises(lyra2.Lyra2Error, match="holds 8 bytes, its header says 24"):
        cv.convert(tmp_path / "short.pth", tmp_path / "o", progress=False)


def test_recursive_and_shared_structures():
    # a list that contains itself is refused; a shared sub-list stays one object
    with pytest.raises(lyra2.Lyra2Error, match="contains itself"):
        cv._unpickle(b"\x80\x02]q\x00h\x00a.", "x")
    shared = cv._unpickle(b"\x80\x02]q\x00K\x01ah\x00h\x00\x86.", "x")
    assert shared[0] is shared[1] and shared[0] == [1]
    # a DAG of 60 levels with two edges each converts in linear time (memoised conversion)
    ops = bytearray(b"\x80\x02]q\x00")
    for i in range(1, 60):
        ops += b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"\x86q" + bytes([i])
    ops += b"."
    obj = cv._unpickle(bytes(ops), "x")
    assert obj[0] is obj[1]


def test_non_torch_files_are_refused(tmp_path):
    legacy = tmp_path / "old.pt"
    legacy.write_bytes(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.")
    with pytest.raises(lyra2.Lyra2Error, match="legacy"):
        cv.convert(legacy, tmp_path / "o", progress=False)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"hello world")
    with pytest.raises(lyra2.Lyra2Error, match="not a torch.save zip"):
        cv.convert(junk, tmp_path / "o", progress=False)
    st = pb.Storages()
    raw = pb.torch_zip_bytes(pb.state_dict({"a": np.ones(3, np.float32)}, st), st)
    (tmp_path / "trunc.pth").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(lyra2.Lyra2Error, match="corrupt zip"):
        cv.convert(tmp_path / "trunc.pth", tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# ---- overwrite, folders, CLI ---------------------------------------------------------------------------

def make_checkpoint_tree(root, rng):
    """A miniature checkpoints/ folder as the HF download lays it out (upstream Z:158, ML:82, DCP:17-36)."""
    want = {}
    want["dit"] = make_dcp(root / "model" / "model", rng)
    pb.dcp_folder(root / "model" / "optim", {"state.step": ("int64", np.array([3], np.int64), 1)},
                  files=1, extra_bytes_item=False)
    vae = {"encoder.conv1.weight": rng.standard_normal((4, 3, 3, 3, 3)).astype(np.float32),
           "decoder.conv1.weight": rng.standard_normal((4, 16, 3, 3, 3)).astype(np.float32),
           "conv2.weight": rng.standard_normal((16, 16, 1, 1, 1)).astype(np.float32)}
    st = pb.Storages()
    (root / "vae").mkdir(parents=True)
    write_pth(root / "vae" / "vae.pth", pb.state_dict(vae, st), st)
    st = pb.Storages()
    write_pth(root / "vae" / "video_mean_std.pt", pb.state_dict({"mean": np.zeros(16, np.float32)}, st), st)
    want["vae"] = vae
    clip = {"visual.patch_embedding.weight": rng.standard_normal((8, 3, 14, 14)).astype(np.float32),
            "visual.pos_embedding": rng.standard_normal((1, 17, 8)).astype(np.float32),
            "visual.transformer.0.mlp.0.weight": rng.standard_normal((32, 8)).astype(np.float32),
            "textual.token_embedding.weight": rng.standard_normal((10, 4)).astype(np.float32)}
    st = pb.Storages()
    (root / "image_encoder").mkdir()
    write_pth(root / "image_encoder" / "model.pth", pb.state_dict(clip, st), st)
    want["clip"] = clip
    da3 = {"model.da3.backbone.pretrained.cls_token": rng.standard_normal((1, 1, 8)).astype(np.float32),
           "model.da3.head.norm.weight": rng.standard_normal(16).astype(np.float32),
           "optimizer_step": np.array([1], np.int64)}
    st = pb.Storages()
    (root / "recon").mkdir()
    write_pth(root / "recon" / "model.pt", {"module": pb.state_dict(da3, st)}, st)
    want["da3"] = da3
    (root / "lora").mkdir()
    lio.save_safetensors({"blocks.0.self_attn.q.lora_A.weight": np.ones((2, 8), np.float32),
                          "blocks.0.self_attn.q.lora_B.weight": np.ones((8, 2), np.float32)},
                         root / "lora" / "dmd_distillation.safetensors")
    (root / "text_encoder").mkdir()
    (root / "text_encoder" / "spiece.model").write_bytes(b"\x0a\x05dummy")
    (root / "README.txt").write_text("not a checkpoint")
    return want


def test_convert_checkpoint_folder(tmp_path, capsys):
    want = make_checkpoint_tree(tmp_path / "checkpoints", np.random.default_rng(5))
    out = tmp_path / "converted"
    m = cv.convert(tmp_path / "checkpoints", out, progress=True)
    assert "dit.safetensors" in capsys.readouterr().err  # the progress bar went to stderr
    assert sorted(m["files"]) == ["clip.safetensors", "da3.safetensors", "dit.safetensors",
                                  os.path.join("lora", "dmd_distillation.safetensors"),
                                  os.path.join("tokenizer", "spiece.model"), "vae.safetensors"]
    # the LoRA is copied byte for byte
    assert (out / "lora" / "dmd_distillation.safetensors").read_bytes() == \
        (tmp_path / "checkpoints" / "lora" / "dmd_distillation.safetensors").read_bytes()
    assert m["files"][os.path.join("lora", "dmd_distillation.safetensors")]["config"]["rank"] == 2
    # VAE / CLIP floats become bf16 in "auto"; CLIP's text tower is dropped
    vae = load_raw(out / "vae.safetensors")
    for k, v in want["vae"].items():
        assert vae[k] == ("BF16", bits(bf16_reference(v)))
    clip = load_raw(out / "clip.safetensors")
    assert "textual.token_embedding.weight" not in clip and "visual.pos_embedding" in clip
    # DA3: the 'module' sub-dict, model. prefix stripped, other keys dropped, fp32 kept
    da3 = load_raw(out / "da3.safetensors")
    assert da3 == {"da3.backbone.pretrained.cls_token": ("F32", bits(want["da3"]["model.da3.backbone.pretrained.cls_token"])),
                   "da3.head.norm.weight": ("F32", bits(want["da3"]["model.da3.head.norm.weight"]))}
    assert "optimizer_step" in m["files"]["da3.safetensors"]["dropped"]
    skipped = m["skipped"]
    assert any(p.endswith("video_mean_std.pt") for p in skipped)
    assert any(p.endswith("optim") for p in skipped)
    # refusing to overwrite, then forcing
    with pytest.raises(FileExistsError, match="force=True"):
        cv.convert(tmp_path / "checkpoints", out, progress=False)
    m2 = cv.convert(tmp_path / "checkpoints", out, progress=False, force=True)
    assert m2["files"]["dit.safetensors"]["sha256"] == m["files"]["dit.safetensors"]["sha256"]
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_same_network_twice_is_refused(tmp_path):
    st = pb.Storages()
    vae = pb.state_dict({"encoder.conv1.weight": np.ones(2, np.float32), "decoder.conv1.weight": np.ones(2, np.float32)}, st)
    (tmp_path / "src").mkdir()
    write_pth(tmp_path / "src" / "a.pth", vae, st)
    write_pth(tmp_path / "src" / "b.pth", vae, st)
    with pytest.raises(ValueError, match="would both be written to vae.safetensors"):
        cv.convert(tmp_path / "src", tmp_path / "out", progress=False)


def test_cli_main(tmp_path, capsys):
    st = pb.Storages()
    write_pth(tmp_path / "x.pth", pb.state_dict({"a": np.arange(3, dtype=np.float32)}, st), st)
    assert cv.main([str(tmp_path / "x.pth"), str(tmp_path / "one.safetensors"), "--quiet"]) == 0
    assert lio.load_safetensors(tmp_path / "one.safetensors")["a"].tolist() == [0, 1, 2]
    assert (tmp_path / "one.safetensors.manifest.json").exists()
    assert cv.main([str(tmp_path / "x.pth"), str(tmp_path / "one.safetensors"), "--quiet"]) == 1
    assert "--force" in capsys.readouterr().err
    assert cv.main([str(tmp_path / "x.pth"), str(tmp_path / "one.safetensors"), "--quiet", "--force"]) == 0
    with pytest.raises(ValueError, match="dtype='fp8'"):
        cv.convert(tmp_path / "x.pth", tmp_path / "o", dtype="fp8")


# ---- files written by torch itself -------------------------------------------------------------------

def test_torch_written_pth_bit_exact(tmp_path):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(6, 5)
    sd = lin.state_dict()  # an OrderedDict with _metadata
    sd["bf16"] = torch.randn(7, 3, generator=g).to(torch.bfloat16)
    sd["f16"] = torch.randn(4, generator=g).half()
    sd["i64"] = torch.arange(-3, 9)
    sd["view"] = torch.randn(6, 8, generator=g)[1:5, ::2].t()  # offset + non-contiguous strides
    sd["shared_a"] = torch.randn(10, generator=g)
    sd["shared_b"] = sd["shared_a"][2:7]
    torch.save(sd, tmp_path / "t.pth")
    cv.convert(tmp_path / "t.pth", tmp_path / "o", progress=False, dtype="keep")
    got = load_raw(tmp_path / "o" / "t.safetensors")
    for k, v in sd.items():
        raw = v.contiguous().view(torch.int16).numpy() if v.dtype == torch.bfloat16 else v.contiguous().numpy()
        assert got[k][1] == bits(raw), k


def test_torch_written_dcp_bit_exact(tmp_path):
    torch = pytest.importorskip("torch")
    dcp = pytest.importorskip("torch.distributed.checkpoint")
    g = torch.Generator().manual_seed(1)
    sd = {"net.blocks.0.self_attn.q.weight": torch.randn(16, 8, generator=g).to(torch.bfloat16),
          "net.patch_embedding.weight": torch.randn(8, 144, generator=g).to(torch.bfloat16),
          "net.head.head.weight": torch.randn(64, 8, generator=g),
          "net.blocks.0.modulation": torch.randn(1, 6, 8, generator=g)}
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(sd, checkpoint_id=str(tmp_path / "model"))
    m = cv.convert(tmp_path / "model", tmp_path / "o", progress=False, dtype="keep")
    got = load_raw(tmp_path / "o" / "dit.safetensors")
    for k, v in sd.items():
        raw = v.view(torch.int16).numpy() if v.dtype == torch.bfloat16 else v.numpy()
        assert got[k[4:]][1] == bits(raw), k
    # and the torch reference reader agrees on our DCP: load the hand-made folder with torch
    # (no byte item: the hand-made one has no stored bytes, which torch's reader would look for)
    want = make_dcp(tmp_path / "hand", np.random.default_rng(6), extra_bytes_item=False)
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp_to_torch_save(str(tmp_path / "hand"), str(tmp_path / "hand.pt"))
    ref = torch.load(tmp_path / "hand.pt", weights_only=True)
    for k, v in want.items():
        t = ref["net." + k]
        raw = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
        assert bits(raw) == bits(v), k
    assert m["files"]["dit.safetensors"]["config"]["dim"] == 8


# ---- configuration detection ---------------------------------------------------------------------------

GOLDEN = json.load(open(os.path.join(DATA, "golden_weight_shapes.json")))


def test_detect_config_on_golden_weights():
    dit = cv.detect_config(GOLDEN["dit"]["shapes"])
    c = GOLDEN["dit"]["config"]
    assert dit["family"] == "dit"
    assert (dit["dim"], dit["ffn_dim"], dit["layers"], dit["in_dim"], dit["out_dim"], dit["text_dim"], dit["freq_dim"]) \
        == (c["dim"], c["ffn_dim"], c["num_layers"], c["in_dim"], c["out_dim"], c["text_dim"], c["freq_dim"])
    assert dit["model_type"] == c["model_type"] and dit["buffer_squeeze_dim"] == c["buffer_mlp_squeeze_dim"]
    # buffer_embed_dim = buffer_in_dim * 4 (patch) * 2 * multires (upstream EXP:21-62, ML:48-50, NETCFG:30)
    assert dit["buffer_embed_dim"] == c["buffer_in_dim"] * 4 * 2 * c["buffer_sincos_multires"]
    assert dit["heads"] is None and dit["heads_source"] == "convention"  # 48 is not a multiple of 128
    assert cv.detect_config(GOLDEN["dit"]["shapes"], {"num_heads": "4"})["heads"] == c["num_heads"]

    vae, c = cv.detect_config(GOLDEN["vae"]["shapes"]), GOLDEN["vae"]["config"]
    assert (vae["dim"], vae["z_dim"], vae["dim_mult"], vae["num_res_blocks"], vae["temporal_downsample"]) == \
        (c["dim"], c["z_dim"], c["dim_mult"], c["num_res_blocks"], c["temperal_downsample"])

    t5, c = cv.detect_config(GOLDEN["umt5"]["shapes"]), GOLDEN["umt5"]["config"]
    assert (t5["vocab"], t5["dim"], t5["dim_attn"], t5["ffn_dim"], t5["heads"], t5["layers"], t5["num_buckets"]) == \
        (c["vocab_size"], c["dim"], c["dim_attn"], c["dim_ffn"], c["num_heads"], c["encoder_layers"], c["num_buckets"])

    clip, c = cv.detect_config(GOLDEN["clip"]["shapes"]), GOLDEN["clip"]["config"]
    assert (clip["width"], clip["patch"], clip["layers"], clip["image_size"], clip["embed_dim"]) == \
        (c["vision_dim"], c["patch_size"], c["vision_layers"], c["image_size"], c["embed_dim"])
    assert clip["mlp_dim"] == c["vision_dim"] * c["vision_mlp_ratio"]

    da3, c = cv.detect_config(GOLDEN["da3"]["shapes"]), GOLDEN["da3"]["config"]
    assert (da3["da3"]["width"], da3["da3"]["depth"], da3["da3"]["heads"], da3["da3"]["heads_source"]) == \
        (c["anyview"]["embed_dim"], c["anyview"]["depth"], c["anyview"]["num_heads"], "weights")
    assert da3["da3"]["camera_token"] and da3["da3"]["ffn"] == "swiglu"
    assert (da3["da3_metric"]["width"], da3["da3_metric"]["depth"]) == (c["metric"]["embed_dim"], c["metric"]["depth"])

    moge, c = cv.detect_config(GOLDEN["moge"]["shapes"]), GOLDEN["moge"]["config"]["moge"]
    assert (moge["width"], moge["depth"], moge["dim_proj"], moge["dim_upsample"]) == \
        (c["embed_dim"], c["depth"], c["dim_proj"], c["dim_upsample"])


def test_detect_config_full_size_conventions():
    """Full-size key tables from upstream WL:86-96, WL:99-115, WL:286, upstream T5:130-331, CLIP:309-400,
    docs/REFERENCES.md#weight-names."""
    D = 5120
    dit = {"patch_embedding.weight": [D, 144], "head.head.weight": [64, D], "text_embedding.0.weight": [D, 4096],
           "time_embedding.0.weight": [D, 256], "img_emb.proj.1.weight": [1280, 1280]}
    for i in range(40):
        dit.update({f"blocks.{i}.self_attn.q.weight": [D, D], f"blocks.{i}.ffn.0.weight": [13824, D],
                    f"blocks.{i}.cam_encoder.weight": [D, 1536], f"blocks.{i}.buffer_encoder.0.weight": [256, 20480]})
    c = cv.detect_config(dit)
    assert (c["dim"], c["heads"], c["layers"], c["ffn_dim"], c["in_dim"], c["out_dim"], c["text_dim"], c["cam_dim"]) == \
        (5120, 40, 40, 13824, 36, 16, 4096, 1536)
    t5 = {"token_embedding.weight": [256384, 4096], "norm.weight": [4096]}
    for i in range(24):
        t5.update({f"blocks.{i}.attn.q.weight": [4096, 4096], f"blocks.{i}.ffn.fc1.weight": [10240, 4096],
                   f"blocks.{i}.pos_embedding.embedding.weight": [32, 64]})
    c = cv.detect_config(t5)
    assert (c["heads"], c["layers"], c["vocab"], c["ffn_dim"]) == (64, 24, 256384, 10240)
    clip = {"visual.patch_embedding.weight": [1280, 3, 14, 14], "visual.pos_embedding": [1, 257, 1280],
            "visual.head": [1280, 1024]}
    for i in range(32):
        clip[f"visual.transformer.{i}.mlp.0.weight"] = [5120, 1280]
    c = cv.detect_config(clip)
    assert (c["heads"], c["layers"], c["image_size"], c["patch"]) == (16, 32, 224, 14)
    da3 = {"da3.backbone.pretrained.cls_token": [1, 1, 1536], "da3.backbone.pretrained.patch_embed.proj.weight": [1536, 3, 14, 14],
           "da3_metric.backbone.pretrained.cls_token": [1, 1, 1024],
           "da3_metric.backbone.pretrained.patch_embed.proj.weight": [1024, 3, 14, 14]}
    for i in range(40):
        da3[f"da3.backbone.pretrained.blocks.{i}.mlp.w12.weight"] = [8192, 1536]
        if i >= 13:
            da3[f"da3.backbone.pretrained.blocks.{i}.attn.q_norm.weight"] = [64]
    for i in range(24):
        da3[f"da3_metric.backbone.pretrained.blocks.{i}.mlp.fc1.weight"] = [4096, 1024]
    c = cv.detect_config(da3)
    assert (c["da3"]["heads"], c["da3"]["depth"], c["da3"]["qknorm_start"]) == (24, 40, 13)
    assert (c["da3_metric"]["heads"], c["da3_metric"]["depth"]) == (16, 24)
    # an incomplete file still yields the family and a clear note instead of an exception
    partial = cv.detect_config({"encoder.conv1.weight": [96, 3, 3, 3, 3], "decoder.conv1.weight": [384, 16, 3, 3, 3]})
    assert partial["family"] == "vae" and "conv2.weight" in partial["incomplete"]


def test_folder_with_a_refused_file_writes_nothing(tmp_path):
    src = tmp_path / "checkpoints"
    make_checkpoint_tree(src, np.random.default_rng(7))
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with zipfile.ZipFile(src / "text_encoder" / "negative_prompt.pt", "w") as z:
        z.writestr("negative_prompt/data.pkl", pickle.dumps({"t5_text_embeddings": Evil()}, protocol=2))
    with pytest.raises(lyra2.Lyra2Error, match=r"negative_prompt\.pt.*system' is not allowed(.|\n)*nothing was written"):
        cv.convert(src, tmp_path / "out", progress=False)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_shared_structure_bomb_in_extras_is_fast(tmp_path):
    # {"model": {...tensors...}, "cfg": L59} where L_i = [L_{i-1}, L_{i-1}]: 2^59 paths, 60 objects
    ops = bytearray(b"\x80\x02}q\x00X\x03\x00\x00\x00cfg]q\x010")
    for i in range(2, 62):
        ops += b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"\x86q" + bytes([i]) + b"0"
    ops += b"h\x3ds"  # d["cfg"] = L61
    st = pb.Storages()
    model = pb.dumps(pb.state_dict({"a": np.ones(2, np.float32)}, st))
    # splice: d["model"] = <state dict> (the writer's opcodes minus PROTO and STOP; its memo slots
    # 0..7 are overwritten, which nothing reads afterwards)
    ops += b"X\x05\x00\x00\x00model" + model[2:-1] + b"s."
    with zipfile.ZipFile(tmp_path / "bomb.pth", "w") as z:
        z.writestr("bomb/data.pkl", bytes(ops))
        for k, raw in st.data.items():
            z.writestr(f"bomb/data/{k}", raw)
    import time
    t = time.perf_counter()
    m = cv.convert(tmp_path / "bomb.pth", tmp_path / "o", progress=False)
    assert time.perf_counter() - t < 10
    assert m["files"]["bomb.safetensors"]["dropped"]["cfg"] == "non-tensor entry that is not plain data"


def _vae_and_corrupt_clip(src, rng):
    """src/vae/vae.pth (good) and src/image_encoder/model.pth whose tensor data fails its zip CRC."""
    vae = {"encoder.conv1.weight": rng.standard_normal((4, 3, 3, 3, 3)).astype(np.float32),
           "decoder.conv1.weight": rng.standard_normal((4, 16, 3, 3, 3)).astype(np.float32)}
    st = pb.Storages()
    (src / "vae").mkdir(parents=True)
    write_pth(src / "vae" / "vae.pth", pb.state_dict(vae, st), st)
    w = rng.standard_normal((8, 3, 14, 14)).astype(np.float32)
    st = pb.Storages()
    blob = bytearray(pb.torch_zip_bytes(pb.state_dict({"visual.patch_embedding.weight": w}, st), st))
    at = bytes(blob).index(w.tobytes())
    blob[at + 100] ^= 0xFF  # stored (uncompressed) data: the member's CRC-32 no longer matches
    (src / "image_encoder").mkdir()
    (src / "image_encoder" / "model.pth").write_bytes(bytes(blob))


def _tree(folder):
    """{relative path: bytes} of every file under folder (hidden ones included)."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, folder)] = open(p, "rb").read()
    return out


def test_failed_convert_leaves_dst_as_it_was(tmp_path):
    src = tmp_path / "checkpoints"
    _vae_and_corrupt_clip(src, np.random.default_rng(11))
    # A fresh dst: nothing is left, not even the folder.
    with pytest.raises(lyra2.Lyra2Error, match=r"model\.pth.*corrupt"):
        cv.convert(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    # An existing dst with an earlier conversion: forced rerun fails, the old files and manifest stay.
    old = tmp_path / "old"
    good = tmp_path / "good"
    (good / "vae").mkdir(parents=True)
    os.replace(src / "vae" / "vae.pth", good / "vae" / "vae.pth")
    cv.convert(good, old, progress=False)
    os.replace(good / "vae" / "vae.pth", src / "vae" / "vae.pth")
    (old / "vae.safetensors").write_bytes(b"earlier output")  # must survive the failed forced run
    before = _tree(old)
    assert sorted(before) == ["manifest.json", "vae.safetensors"]
    with pytest.raises(lyra2.Lyra2Error, match="corrupt"):
        cv.convert(src, old, progress=False, force=True)
    assert _tree(old) == before
    # ... and a rerun without the corrupt file is not refused by leftovers of the failed one.
    os.unlink(src / "image_encoder" / "model.pth")
    m = cv.convert(src, tmp_path / "out", progress=False)
    assert sorted(m["files"]) == ["vae.safetensors"]
    assert sorted(os.listdir(tmp_path / "out")) == ["manifest.json", "vae.safetensors"]


def test_manifest_is_written_atomically_with_unique_temp_and_umask_mode(tmp_path, monkeypatch):
    st = pb.Storages()
    write_pth(tmp_path / "x.pth", pb.state_dict({"a": np.arange(3, dtype=np.float32)}, st), st)
    # A stale "<manifest>.tmp" (the old fixed temp name) must neither be used nor block the write.
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json.tmp").mkdir()
    old_mask = os.umask(0o027)
    try:
        cv.convert(tmp_path / "x.pth", out, progress=False)
    finally:
        os.umask(old_mask)
    assert json.loads((out / "manifest.json").read_text())["format"] == "lyra2-converted-checkpoint"
    assert (out / "manifest.json").stat().st_mode & 0o777 == 0o640
    assert (out / "x.safetensors").stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(out)) == ["manifest.json", "manifest.json.tmp", "x.safetensors"]
    # A failing JSON dump removes its temporary file.
    with pytest.raises(TypeError):
        cv._write_json_atomic(str(out / "bad.json"), {"x": object()})
    assert sorted(os.listdir(out)) == ["manifest.json", "manifest.json.tmp", "x.safetensors"]
