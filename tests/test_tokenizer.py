"""lyra2.models.Tokenizer against the sentencepiece library and Hugging Face's fast tokenizer.

The models are trained here (small nmt_nfkc unigram models, one with byte fallback), so no binary is
committed. The reference that counts is HF's fast T5 tokenizer built from the .model exactly as
transformers 4.57's T5Converter does (upstream runs AutoTokenizer("google/umt5-xxl"), upstream T5:62-102, T5:77-80,
T5:36-45); it must agree on every string. Differences from the sentencepiece library are expected and each one must be
explained by a known HF-vs-sentencepiece difference, checked, not just named.

Test-only dependencies (skipped when absent): sentencepiece, tokenizers, protobuf; transformers (optional)
cross-checks the hand-built HF pipeline.
"""
import os
import random
import unicodedata

import numpy as np
import pytest

spm = pytest.importorskip("sentencepiece")
tokenizers = pytest.importorskip("tokenizers")
pytest.importorskip("google.protobuf")
from sentencepiece import sentencepiece_model_pb2 as spm_pb2  # noqa: E402

from lyra2 import Lyra2Error  # noqa: E402
from lyra2.models.tokenizer import Tokenizer  # noqa: E402

EXTRA_IDS = 300
SEED_PROMPT = (
    "A slow, steady horizontal orbit of the camera around the scene, focusing on the two massive galleons. The "
    "scene is a frozen tableau: the turquoise water is glass-like and motionless, the canvas sails are rigid, and "
    "the distant clouds are fixed in the golden sky. Every element, from the foreground wooden barrels and coiled "
    "ropes to the intricate coastal architecture, remains perfectly still. The warm, late-afternoon sunlight and "
    "soft shadows are permanent. As the camera advances, more of the harbor's stone buildings and the ships' "
    "wooden hulls are revealed, maintaining identical textures and colors. The entire world is locked in a "
    "silent, breathless moment with zero object or environmental movement.")


# ----------------------------------------------------------------------------------------------- corpus
POOLS = {
    "ascii": [chr(c) for c in range(0x20, 0x7f)],
    "latin": list("àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœŒĳſǆǈµ²³¹¼½ªº"),
    "combining": ["\u0301", "\u0300", "\u0308", "\u0327", "\u0303", "\u20e3", "\u0903", "\ufe0f", "\u200d"],
    "fullwidth": [chr(c) for c in range(0xff01, 0xff5f)] + ["\u3000", "\uff5e"],
    "halfwidth": [chr(c) for c in range(0xff61, 0xffa0)] + ["\uffe8", "\uffe9"],
    "cjk": list("東京の街夜雨猫カメラゆっくり空海山川日本語中文字漢🀄﨑𠀋𪚲"),
    "hangul": list("서울밤한국어") + ["\u1100", "\u1161", "\u11a8", "\u3131", "\u314f"],
    "cyrillic": list("москваулицаночьЖЁЙ"),
    "arabic": list("مرحباالعالم") + ["\u0600", "\u0601", "\u06dd", "\u0661"],
    "indic": list("नमस्तेक्षत्रঅআகா") + ["\u0e01", "\u0e33", "\u0e4d"],
    "emoji": ["😀", "👍", "🏻", "🇯", "🇵", "❤", "☝", "✨", "🎥", "🌊", "👨", "👩", "👧", "©", "®", "™", "‼", "⁉",
              "🈁", "🈂", "ℹ", "Ⓜ", "㊗"],
    "compat": list("ﬁﬂﬀﬃﬄﬅﬆ①②⑩㍿ℌℍℕ𝐀𝐁𝔸ﷺ㎞㏒½⅓ⅷ") + ["\u2126", "\u212b", "\u1e9b"],
    "space": [" ", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u2002", "\u2009", "\u200b", "\u2028", "\u2029",
              "\u0085", "\u3000", "\ufeff", "\u1680", "\u202f", "\u205f", "\u000b", "\u000c", "\u001c"],
    "control": [chr(c) for c in range(0x01, 0x09)] + ["\x7f", "\x80", "\x8f", "\x9f", "\x1b", "\u00ad", "\u2060",
                                                       "\u200e", "\u200f", "\ufffd", "\ue000", "\uffff", "\x00"],
    "special": ["</s>", "<pad>", "<unk>", "<sep>", "<extra_id_0>", "<extra_id_299>", "<extra_id_300>", "<0x41>",
                "<0xE3>", "<s>", "▁", "▁▁"],
    "quotes": ["\u2018", "\u2019", "\u201c", "\u201d", "\u02bc", "\u2013", "\u2014", "\u2026", "&amp;", "&lt;",
               "&#x2019;", "&hellip;"],
}
WORDS = ("the camera slowly orbits around scene water golden sky ship harbor stone building wooden barrel rope "
         "cloud light shadow frozen still moment movement café naïve résumé façade über straße").split()


def _random_string(rng, n_parts):
    parts = []
    for _ in range(n_parts):
        r = rng.random()
        if r < 0.45:
            parts.append(rng.choice(WORDS) + rng.choice(["", " ", " ", ", ", ". "]))
        else:
            pool = POOLS[rng.choice(sorted(POOLS))]
            parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 4))))
    return "".join(parts)


def make_corpus():
    fixed = [
        SEED_PROMPT, SEED_PROMPT.replace("'", "\u2019"), "", " ", "  a  b  ", "a\tb\nc", "\r\n",
        "The camera\u2019s view: \u201cslow\u201d zoom \u2014 calm\u2026", "e\u0301 vs \u00e9", "Ａ\u0301",
        "\u00b2\u0903", "\u0600a", "ｶﾞﾊﾟ", "x\u0308\u0301", "\u1100\u1161\u11a8", "👨\u200d👩\u200d👧", "1\ufe0f\u20e3",
        "👍🏻🇯🇵", "a</s>b", "a </s> b", "<extra_id_0>x<extra_id_299>", "<unk><unk>", "<0x41>", "<sep> x",
        "ＬＯＵＤ　ＮＯＩＳＥＳ", "ﬁﬂ ﬃ", "\u2581\u2581x", "\x00a\x01", "a\u200b\u200bb",
        SEED_PROMPT * 3, " ".join(WORDS) * 8, "東京" * 400,
    ]
    rng = random.Random(1234)
    rand = [_random_string(rng, rng.randint(1, 12)) for _ in range(330)]
    rand += [_random_string(rng, rng.randint(100, 200)) for _ in range(6)]
    return fixed + rand


CORPUS = make_corpus()


# ----------------------------------------------------------------------------------------------- models
def _training_lines():
    rng = random.Random(0)
    syl = ("ka ri to ne mo sa lu pe an er in on th st ch qu é ü ß 東 京 街 夜 서 울 мо ск ва "
           "ing ion ed es ly re ta zo mi").split()
    words = WORDS + ["".join(rng.choice(syl) for _ in range(rng.randint(1, 4))) for _ in range(500)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))) for _ in range(3000)]


def _train(path_prefix, byte_fallback):
    spm.set_random_generator_seed(1)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_training_lines()), model_prefix=str(path_prefix), vocab_size=400,
        hard_vocab_limit=False, model_type="unigram", normalization_rule_name="nmt_nfkc",
        character_coverage=0.9995, user_defined_symbols=["<sep>"], pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        byte_fallback=byte_fallback, num_threads=1, minloglevel=2)
    return str(path_prefix) + ".model"


def hf_fast(model_path, byte_fallback=False):
    """HF's fast tokenizer as transformers' T5Converter (SpmConverter) builds it from a .model."""
    from tokenizers import AddedToken, Regex, Tokenizer as HFTokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    m = spm_pb2.ModelProto()
    with open(model_path, "rb") as f:
        m.ParseFromString(f.read())
    vocab = [(p.piece, p.score) for p in m.pieces]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(EXTRA_IDS - 1, -1, -1)]
    tk = HFTokenizer(Unigram(vocab, unk_id=m.trainer_spec.unk_id, byte_fallback=byte_fallback))
    tk.add_tokens([AddedToken(p.piece, normalized=False, special=p.type == 3) for p in m.pieces if p.type in (3, 4)])
    tk.normalizer = normalizers.Sequence([
        normalizers.Precompiled(m.normalizer_spec.precompiled_charsmap),
        normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), "\u2581")])
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tk.post_processor = processors.TemplateProcessing(single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"],
                                                      special_tokens=[("</s>", m.trainer_spec.eos_id)])
    specials = ["</s>", "<unk>", "<pad>"] + [f"<extra_id_{i}>" for i in range(EXTRA_IDS)]
    tk.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
    return tk


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("spm")
    plain = _train(d / "plain", False)
    byte = _train(d / "byte", True)
    return {"plain": plain, "byte": byte}


# ----------------------------------------------------------------------------------------------- tests
def test_model_fields_match_protobuf(models):
    for path in models.values():
        m = spm_pb2.ModelProto()
        with open(path, "rb") as f:
            m.ParseFromString(f.read())
        tok = Tokenizer(path)
        assert tok.vocab_size == len(m.pieces) + EXTRA_IDS
        assert (tok.unk_id, tok.eos_id, tok.pad_id) == (2, 1, 0)
        assert tok.normalizer == "nmt_nfkc"
        for i, p in enumerate(m.pieces):
            assert tok.id_to_piece(i) == p.piece
        assert tok.id_to_piece(len(m.pieces)) == f"<extra_id_{EXTRA_IDS - 1}>"
        assert tok.id_to_piece(tok.vocab_size - 1) == "<extra_id_0>"
        with pytest.raises(ValueError):
            tok.id_to_piece(tok.vocab_size)


@pytest.mark.parametrize("which", ["plain", "byte"])
def test_ids_match_hf_fast(models, which):
    """100 % agreement with HF's fast tokenizer (upstream's), without truncation, on the whole corpus."""
    tok = Tokenizer(models[which])
    ref = hf_fast(models[which])
    bad = []
    for s in CORPUS:
        want = ref.encode(s).ids
        got = tok.tokenize(s, clean=False) + [tok.eos_id]
        if got != want:
            bad.append((s, got, want))
    assert not bad, f"{len(bad)}/{len(CORPUS)} differ from HF, first: {bad[0]!r}"
    assert len(CORPUS) >= 300


def test_byte_fallback_option_matches_hf_with_byte_fallback(models):
    """byte_fallback=True reproduces HF's Unigram(byte_fallback=True) (the LlamaConverter setting)."""
    tok = Tokenizer(models["byte"], byte_fallback=True)
    ref = hf_fast(models["byte"], byte_fallback=True)
    n_bytes = 0
    for s in CORPUS:
        want = ref.encode(s).ids
        got = tok.tokenize(s, clean=False) + [tok.eos_id]
        assert got == want, repr(s)
        n_bytes += sum(1 for i in got if tok.id_to_piece(i).startswith("<0x"))
    assert n_bytes > 100  # the corpus really exercises the fallback


def test_hand_built_reference_equals_transformers(models, tmp_path):
    """The hand-built HF pipeline above is what transformers' AutoTokenizer makes of a umT5-style folder."""
    transformers = pytest.importorskip("transformers")
    import json
    import shutil
    shutil.copy(models["plain"], tmp_path / "spiece.model")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5Tokenizer", "extra_ids": EXTRA_IDS, "eos_token": "</s>", "unk_token": "<unk>",
         "pad_token": "<pad>"}))
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    ref = hf_fast(models["plain"])
    for s in CORPUS:
        assert auto.backend_tokenizer.encode(s).ids == ref.encode(s).ids, repr(s)
    # the padded, truncated form upstream asks for (get_t5_emb.py: padding="max_length", truncation=True)
    tok = Tokenizer(models["plain"])
    batch = CORPUS[:40] + [SEED_PROMPT * 3]
    out = auto(batch, padding="max_length", truncation=True, max_length=512, add_special_tokens=True,
               return_attention_mask=True)
    ids, mask = tok.encode_batch(batch, clean=False)
    np.testing.assert_array_equal(ids, np.array(out["input_ids"]))
    np.testing.assert_array_equal(mask, np.array(out["attention_mask"]))


def test_encode_truncates_keeping_eos_and_pads(models):
    tok = Tokenizer(models["plain"])
    ref = hf_fast(models["plain"])
    ref.enable_truncation(512)
    ref.enable_padding(length=512, pad_id=0, pad_token="<pad>")
    for s in [SEED_PROMPT, SEED_PROMPT * 4, "", "x"]:
        ids, mask = tok.encode(s, clean=False)
        e = ref.encode(s)
        assert ids.dtype == np.int64 and ids.shape == (512,) and mask.shape == (512,)
        np.testing.assert_array_equal(ids, e.ids)
        np.testing.assert_array_equal(mask, e.attention_mask)
        n = int(mask.sum())
        assert ids[n - 1] == tok.eos_id and (ids[n:] == tok.pad_id).all()
    ids, mask = tok.encode(SEED_PROMPT * 4, clean=False)
    assert mask.all() and ids[-1] == tok.eos_id


ADDED = ["</s>", "<pad>", "<unk>", "<sep>"] + [f"<extra_id_{i}>" for i in range(EXTRA_IDS)]


def _identity_spm(model_path):
    """The same model with normalisation switched off, to feed it HF-normalised text, and with byte pieces
    as ordinary pieces (HF's lattice matches every vocabulary string, "<0x41>" included; its T5
    conversion has no byte fallback)."""
    m = spm_pb2.ModelProto()
    with open(model_path, "rb") as f:
        m.ParseFromString(f.read())
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.precompiled_charsmap = b""
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.add_dummy_prefix = False  # the caller applies HF's Metaspace rule
    m.trainer_spec.byte_fallback = False
    for p in m.pieces:
        if p.type == spm_pb2.ModelProto.SentencePiece.BYTE:
            p.type = spm_pb2.ModelProto.SentencePiece.NORMAL
    return spm.SentencePieceProcessor(model_proto=m.SerializeToString())


def _split_added(s):
    """s cut into (segment, None) and (None, added token) parts, leftmost-longest like HF."""
    out, seg, i = [], 0, 0
    while i < len(s):
        hits = [a for a in ADDED if s.startswith(a, i)]
        if hits:
            a = max(hits, key=len)
            out += [(s[seg:i], None), (None, a)]
            i = seg = i + len(a)
        else:
            i += 1
    return out + [(s[seg:], None)]


def _spm_explains(sp, sp_id, ref, s, got):
    """Why sentencepiece's ids differ from ours/HF's for s, or None. The claimed HF-vs-sentencepiece
    differences are undone one by one on the sentencepiece side, and the result must then equal `got`:
    (a) added-token text in the prompt is an id for HF and plain text for sentencepiece;
    (b) HF normalises with its grapheme-cluster rule (a cluster < 6 bytes replaced whole by its first
        charsmap match; longer clusters code point by code point), sentencepiece by longest match;
    (c) HF's T5 conversion has no byte fallback: a run of unknown characters is one <unk>;
    (d) HF's unigram lattice holds every vocabulary string, so "<0x41>" in the text is that byte piece."""
    reasons, ids = set(), []
    for seg, added in _split_added(s):
        if added is not None:
            reasons.add("added-token text")
            ids.append(sp.piece_to_id(added) if sp.piece_to_id(added) != sp.unk_id() else got[len(ids)])
            continue
        norm = ref.normalizer.normalize_str(seg)
        if sp.normalize(seg) != ("\u2581" + norm.replace(" ", "\u2581") if norm else ""):
            reasons.add("grapheme-cluster normaliser")
        meta = norm.replace(" ", "\u2581")
        meta = meta if meta.startswith("\u2581") or not meta else "\u2581" + meta  # Metaspace "always"
        if any(sp.is_byte(i) for i in sp.encode(seg)):
            reasons.add("no byte fallback")
        if "<0x" in seg and sp.piece_to_id("<0x41>") != sp.unk_id():
            reasons.add("byte-piece text")
        for i in sp_id.encode(meta):  # a run of unknowns is one token, as in both libraries
            if not (sp_id.is_unknown(i) and ids and ids[-1] == i):
                ids.append(i)
    if ids + [1] == got and reasons:
        return ", ".join(sorted(reasons))
    return None


@pytest.mark.parametrize("which", ["plain", "byte"])
def test_differences_from_sentencepiece_are_explained(models, which):
    sp = spm.SentencePieceProcessor(model_file=models[which])
    sp_id = _identity_spm(models[which])
    ref = hf_fast(models[which])
    tok = Tokenizer(models[which])
    reasons, unexplained, same = {}, [], 0
    for s in CORPUS:
        got = tok.tokenize(s, clean=False) + [1]
        if sp.encode(s) + [1] == got:
            same += 1
            continue
        why = _spm_explains(sp, sp_id, ref, s, got)
        if why is None:
            unexplained.append(s)
        else:
            reasons[why] = reasons.get(why, 0) + 1
    print(f"\n{which}: {same}/{len(CORPUS)} identical to sentencepiece; explained differences: {reasons}")
    assert not unexplained, f"{len(unexplained)} unexplained, first: {unexplained[0]!r}"
    if which == "plain":  # with byte fallback most strings of this corpus differ (they hold unknowns)
        assert same > len(CORPUS) // 3


def test_bad_inputs(models, tmp_path):
    tok = Tokenizer(models["plain"])
    with pytest.raises(TypeError):
        tok.encode(b"bytes")
    with pytest.raises(TypeError):
        tok.encode_batch("a str")
    with pytest.raises(Lyra2Error):
        Tokenizer(tmp_path / "missing.model")
    with pytest.raises(ValueError):
        Tokenizer(models["plain"], extra_ids=-1)


def test_corrupt_models_raise_not_crash(models, tmp_path):
    """Truncations and byte flips of a real model: a clean Lyra2Error (when loading, or when a damaged part such
    as the charsmap is first used) or a working tokenizer, never a crash."""
    data = open(models["plain"], "rb").read()
    rng = random.Random(7)
    cases = [data[:n] for n in (0, 1, 2, 5, 17, 100, 1000, len(data) // 2, len(data) - 1)]
    for _ in range(150):
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        cases.append(bytes(b))
    cases.append(b"\xff" * 64)
    n_err = 0
    for i, c in enumerate(cases):
        p = tmp_path / f"c{i}.model"
        p.write_bytes(c)
        try:
            t = Tokenizer(p)
        except Lyra2Error:
            n_err += 1
            continue
        try:
            t.tokenize(SEED_PROMPT + " ｶﾞ東京 é👍🏻 <extra_id_3>", clean=False)
        except Lyra2Error as e:
            assert "tokenizer model" in str(e)
    assert n_err >= 9


# ----------------------------------------------------------------------------------------------- cleaning
CLEAN_EXTRA = [
    "&amp;amp; &AMP; &NTILDE; &ntilde &ampx &#x2019; &#8217 &#12ab; &#0; &#x110000; &#128; &notit; &hellip;x",
    "a<b &amp; c\nd &amp; e", "x &amp; y\n<tag> &lt;\n&gt;", "\x1b[31mred\x1b[0m \x1b[1;2m", "\x93quoted\x94 \x80",
    "ǅ ŉ ﬅ ＬＯＵＤ ｶﾞ　x", "a\r\nb\rc\u2028d\u0085e", "\ufeff\u206a\ufff9x", "&#x201c;q&#x201d;", "&lt;b&gt;",
    "&amp;lt;", " \t spaced \n\n out \u3000 ", "The camera\u2019s \u201cview\u201d", "\u0000\u0007bell\u007f",
]


def _upstream_clean(text, **ftfy_options):
    """Wan's HuggingfaceTokenizer(clean="whitespace"): basic_clean then whitespace_clean."""
    ftfy = pytest.importorskip("ftfy")
    regex = pytest.importorskip("regex")
    import html
    text = html.unescape(html.unescape(ftfy.fix_text(text, **ftfy_options))).strip()
    return regex.sub(r"\s+", " ", text).strip()


def test_clean_matches_ftfy_exactly_without_nfc_and_mojibake():
    """Every fixer we implement is exact: ftfy with the two parts we leave out switched off."""
    for s in CORPUS + CLEAN_EXTRA:
        assert Tokenizer.clean(s) == _upstream_clean(s, fix_encoding=False, normalization=None), repr(s)


def test_clean_differs_from_default_ftfy_only_by_nfc():
    """The documented divergence: ftfy's final NFC (mojibake repair does not fire on this corpus)."""
    n_nfc = 0
    for s in CORPUS + CLEAN_EXTRA:
        ours, ref = Tokenizer.clean(s), _upstream_clean(s)
        assert unicodedata.normalize("NFC", ours) == ref, repr(s)
        n_nfc += ours != ref
    print(f"\nclean: {n_nfc}/{len(CORPUS) + len(CLEAN_EXTRA)} strings differ from default ftfy before NFC")
    assert n_nfc < len(CORPUS) // 5


def test_encode_cleans_first(models):
    tok = Tokenizer(models["plain"])
    a = tok.encode("The camera\u2019s  \u201cslow\u201d\tzoom &amp; pan ")
    b = tok.encode("The camera's \"slow\" zoom & pan", clean=False)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    ids, mask = tok.encode_batch([SEED_PROMPT, "x"])
    assert ids.shape == (2, 512) and mask.shape == (2, 512)
    np.testing.assert_array_equal(ids[0], tok.encode(SEED_PROMPT)[0])
