"""The converted checkpoint folder (see README "Weights"): where it is and what it holds.

`lyra2 convert` writes one folder of safetensors files; the C core reads only those. This module finds the
folder (argument, then $LYRA2_CHECKPOINT_DIR) and says which components are present."""
import os

# Component -> file name inside the converted folder (the layout `lyra2 convert` writes, lyra2/convert.py).
FILES = {
    "dit": "dit.safetensors",
    "vae": "vae.safetensors",
    "umt5": "umt5.safetensors",
    "tokenizer": "tokenizer/spiece.model",
    "clip": "clip.safetensors",
    "negative_prompt": "negative_prompt.safetensors",
    "lora_dmd": "lora/dmd_distillation.safetensors",
    "lora_realism": "lora/realism_boost.safetensors",
    "lora_detail": "lora/detail_enhancer.safetensors",
    "da3": "da3.safetensors",
    "moge": "moge.safetensors",
}
GENERATE_NEEDS = ("dit", "vae", "umt5", "tokenizer", "clip", "negative_prompt")
DEPTH_NEEDS = ("da3", "moge")


def resolve_dir(checkpoint_dir=None):
    """The checkpoint folder to use, or None. An explicit folder that does not exist is an error."""
    if checkpoint_dir is not None:
        path = os.fspath(checkpoint_dir)
        if not os.path.isdir(path):
            raise ValueError(f"checkpoint_dir: {path!r} is not a folder (convert the upstream weights with "
                             "`lyra2 convert SRC DST` and pass DST)")
        return path
    env = os.environ.get("LYRA2_CHECKPOINT_DIR")
    if env and os.path.isdir(env):
        return env
    return None


def components(folder):
    """{component: path} for the files present in a converted folder."""
    if folder is None:
        return {}
    return {name: os.path.join(folder, f) for name, f in FILES.items() if os.path.isfile(os.path.join(folder, f))}


def missing_for_generate(folder):
    have = components(folder)
    return [FILES[c] for c in GENERATE_NEEDS if c not in have]
