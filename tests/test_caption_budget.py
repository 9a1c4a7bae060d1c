"""issue 17: captions are budgeted per family. SD1 and SDXL count CLIP tokens against 225 (kohya's max_token_length);
Anima counts Qwen3 tokens against 512 (anima_train_network.py's qwen3_max_token_length), with the Qwen3 tokenizer
the trainer reads where transformers can load it, else with a high estimate (UTF-8 bytes)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from onetwo.data.captions import (
    CLIP_COUNTER,
    TokenCounter,
    caption_counter,
    estimate_qwen3_tokens,
    estimate_tokens,
)
from onetwo.kohya.families import ANIMA, CLIP_TOKENS, QWEN3_TOKENS, SD1, SDXL
from onetwo.project.file import load_project
from tests.model_files import write_anima_files
from tests.sdscripts import SD_SCRIPTS, needs_sdscripts
from tests.venvs import bare_venv

# Short tags whose CLIP count is high for their bytes (each digit is a CLIP token): a caption over SD's 225 CLIP
# tokens that is under 512 bytes, so under Anima's 512 Qwen3 tokens whatever the tokenizer.
LONG = ", ".join(f"x{index}" for index in range(10, 70))
MEDIUM = ", ".join(f"y{index}" for index in range(10, 40))
BOORU = ("1girl, solo, long hair, looking at viewer, smile, open mouth, blue eyes, simple background, white "
         "background, shirt, hair ornament, long sleeves, dress, holding, bow, very long hair, standing, full body, "
         "braid, white hair, hair bow, frills, japanese clothes, kimono, 初音ミク, ribbon, sash, obi, 🌸, red bow")


def test_the_families_declare_their_budgets() -> None:
    assert SD1.tokens == SDXL.tokens == CLIP_TOKENS and (CLIP_TOKENS.tokenizer, CLIP_TOKENS.limit) == ("CLIP", 225)
    assert ANIMA.tokens == QWEN3_TOKENS
    assert (QWEN3_TOKENS.tokenizer, QWEN3_TOKENS.limit, QWEN3_TOKENS.limit_key) == ("Qwen3", 512,
                                                                                    "qwen3_max_token_length")


def test_the_qwen3_estimate_counts_utf8_bytes_after_nfc() -> None:
    assert estimate_qwen3_tokens("") == 0
    assert estimate_qwen3_tokens("1girl, smile") == 12
    assert estimate_qwen3_tokens("初音ミク") == 12
    assert estimate_qwen3_tokens("e\u0301") == estimate_qwen3_tokens("\u00e9") == 2  # NFC: one é


def test_under_the_budget_the_estimate_is_trusted_without_a_tokenizer(tmp_path: Path) -> None:
    counter = TokenCounter(QWEN3_TOKENS, tmp_path / "no-tokenizer-here")
    assert estimate_tokens(LONG) > 225 and counter.count(LONG) == (len(LONG.encode()), False)
    assert counter.count("a" * 600) == (600, False)  # over, and no tokenizer to load: the estimate, said so
    assert CLIP_COUNTER.count(LONG)[0] > 225


def anima_files(tmp_path: Path) -> dict[str, str]:
    files = write_anima_files(tmp_path / "models")
    return {"model": "anima", "base_model": str(files["base_model"]), "text_encoder": str(files["text_encoder"]),
            "vae": str(files["vae"])}


def test_the_counter_reads_the_tokenizer_the_trainer_reads(make_project, tmp_path: Path) -> None:
    project = load_project(make_project(project={**anima_files(tmp_path), "sd_scripts": str(tmp_path / "sd")}))
    assert caption_counter(project) == TokenCounter(QWEN3_TOKENS, tmp_path / "sd" / "configs" / "qwen3_06b")
    folder = tmp_path / "qwen3"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3"}), encoding="utf-8")
    project = load_project(make_project(project={**anima_files(tmp_path), "text_encoder": str(folder)}))
    assert caption_counter(project) == TokenCounter(QWEN3_TOKENS, folder)
    assert caption_counter(load_project(make_project())) == CLIP_COUNTER


@pytest.fixture(scope="module")
def quick_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bare_venv(tmp_path_factory.mktemp("bare") / "venv")


@pytest.mark.parametrize("family", ["sd1", "anima"])
def test_a_caption_over_225_clip_tokens_is_fine_for_anima_only(make_project, cli, tmp_path: Path,
                                                                quick_python: Path, family: str) -> None:
    project = anima_files(tmp_path) if family == "anima" else {}
    make_project(project={**project, "python": str(quick_python)})
    for name in ("alice", "bob"):
        for index in range(3):
            (tmp_path / "data" / name / f"img{index}.txt").write_text(MEDIUM, encoding="utf-8")
    long = tmp_path / "data" / "alice" / "img0.txt"
    long.write_text(LONG, encoding="utf-8")
    _, out, err = cli("check")
    over = [line for line in err.splitlines() if "over max_token_length" in line or "over qwen3_max" in line]
    composites = [line for line in err.splitlines() if "composite caption(s) may exceed" in line]
    if family == "sd1":
        assert len(over) == 1 and str(long) in over[0] and "CLIP tokens" in over[0], err
        assert "over max_token_length = 225" in over[0]
        assert composites and "may exceed 225 CLIP tokens" in composites[0], err
        assert "CLIP tokens (img0.png)" in out
    else:
        assert over == [] and composites == [], err
        assert f"longest     {len(('alice, ' + LONG).encode())} Qwen3 tokens (img0.png)" in out, out


@pytest.mark.parametrize("family", ["sd1", "anima"])
def test_composite_trims_to_the_familys_budget(make_project, cli, tmp_path: Path, family: str) -> None:
    # no checkout, so no Qwen3 tokenizer: the estimate decides (the tokenizer's count is tested below)
    make_project(project={**anima_files(tmp_path), "sd_scripts": str(tmp_path / "none")} if family == "anima" else {},
                 composite={"per_pair": 2, "width": 128, "height": 128, "workers": 1, "trim_captions": True})
    for name in ("alice", "bob"):
        for index in range(3):
            (tmp_path / "data" / name / f"img{index}.txt").write_text(LONG, encoding="utf-8")
    assert cli("composite")[0] == 0
    captions = [path.read_text(encoding="utf-8") for path in (tmp_path / "work" / "composites").glob("*.txt")]
    assert captions
    if family == "sd1":
        assert all(estimate_tokens(caption) <= 225 for caption in captions)
        assert all(len(caption.split(", ")) < 2 * 60 for caption in captions)  # trimmed
    else:  # 2 x 60 short tags: about 600 bytes, trimmed to the estimate's 512
        assert all(estimate_qwen3_tokens(caption) <= 512 and estimate_tokens(caption) > 225 for caption in captions)


# ---- with the real tokenizers (transformers): marked sdscripts ----------------------------------------------------


def byte_level_tokenizer(folder: Path):
    """A Qwen2 byte-level BPE tokenizer with no merges: one token per byte, the most a byte-level BPE can give."""
    from transformers import AutoTokenizer
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    folder.mkdir(parents=True)
    vocab = {char: index for index, char in enumerate(bytes_to_unicode().values())}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "bos_token": None, "add_prefix_space": False}), encoding="utf-8")
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


@pytest.mark.sdscripts
@needs_sdscripts
def test_the_estimate_is_never_below_the_real_count(tmp_path: Path) -> None:
    tokenizer = byte_level_tokenizer(tmp_path / "bytes")
    always = replace(QWEN3_TOKENS, limit=0)  # a budget every caption is over: the tokenizer always counts
    for text in (LONG, BOORU, "e\u0301, " * 40, "🌸" * 20, "\uff46\uff55\uff4c\uff4c \uff37, \uff21\uff22"):
        worst, exact = TokenCounter(always, tmp_path / "bytes").count(text)
        assert exact and worst == len(tokenizer(text)["input_ids"]) <= estimate_qwen3_tokens(text), text
        real, exact = TokenCounter(always, SD_SCRIPTS / "configs" / "qwen3_06b").count(text)
        assert exact and real <= worst, text
    big = ", ".join([BOORU] * 6)
    counted, exact = TokenCounter(QWEN3_TOKENS, tmp_path / "bytes").count(big)
    assert exact and counted == len(tokenizer(big)["input_ids"]) <= estimate_qwen3_tokens(big)


@pytest.mark.sdscripts
@needs_sdscripts
def test_with_the_trainers_qwen3_tokenizer_a_long_booru_caption_fits_anima_not_sd(tmp_path: Path) -> None:
    """The checkout's configs/qwen3_06b, which anima_train_network.py reads for a single-file text encoder."""
    from transformers import AutoTokenizer

    folder = tmp_path / "qwen3"
    shutil.copytree(SD_SCRIPTS / "configs" / "qwen3_06b", folder)
    caption = ", ".join([BOORU, BOORU.replace("1girl", "2girls")])
    counted, exact = TokenCounter(QWEN3_TOKENS, folder).count(caption)
    real = len(AutoTokenizer.from_pretrained(folder, local_files_only=True)(caption)["input_ids"])
    assert exact and counted == real and estimate_tokens(caption) > 225 and real < 512
    assert CLIP_COUNTER.count(caption)[0] > 225
