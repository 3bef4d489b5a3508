"""Tiny real fixtures shared by the tests: a BERT built from a config, a MELD-shaped CSV."""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "i you we they he she it is are was not no yes oh my god what why how really great love hate so "
    "okay ok hey hi well just know think can do don't that this the a an to of and monica ross rachel "
    "joey chandler phoebe coffee sorry happy sad angry scared wow"
).split()


def make_tiny_bert(folder: Path) -> Path:
    """Write a 2-layer, 32-wide BERT and its WordPiece tokenizer to `folder` (no network)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz.,!?'"]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 takes the vocabulary itself (`vocab=`); a `vocab_file=` keyword is ignored there and would
    # leave a tokenizer of 5 special tokens that reads every word as [UNK].
    BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=160,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def copy_prepared(source: Path, target: Path) -> Path:
    """A private copy of a prepared data folder without its feature cache."""
    import shutil

    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("cache"))
    return target


def small_settings(data_dir: Path, tiny_bert: Path, *, model: dict | None = None, train: dict | None = None):
    """Settings for quick runs on the sample: tiny BERT, no video weights, 4 frames cropped to 32x32, 2 s of audio."""
    from meldctl.settings import load_settings

    small_model = {
        "text_model": str(tiny_bert),
        "video_weights": "none",
        "num_frames": 4,
        "resize_size": (36, 48),
        "crop_size": 32,
        "audio_seconds": 2.0,
    }
    small_train = {"epochs": 2, "batch_size": 8, "workers": 0}
    return load_settings(
        overrides={
            "data": {"data_dir": data_dir},
            "model": {**small_model, **(model or {})},
            "train": {**small_train, **(train or {})},
        }
    )


def train_small(sample_data: Path, tiny_bert: Path, folder: Path, **model: object) -> Path:
    """Train one epoch on a copy of the sample in `folder`; return the run folder (data is beside it)."""
    from meldctl.training.trainer import run_training

    settings = small_settings(copy_prepared(sample_data, folder / "data"), tiny_bert, model=model, train={"epochs": 1})
    run_training(settings.data, settings.model, settings.train, run_dir=folder / "run")
    return folder / "run"


def tar_gz_bytes(files: dict[str, bytes]) -> bytes:
    """An in-memory .tar.gz holding `files` ({member name: content})."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def children(pid: int) -> list[int]:
    """The processes that `pid` started (and that are still alive), from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found += [int(c) for c in text.split()]
    return found


def descendants(pid: int) -> list[int]:
    """`pid`'s children, theirs, and so on (torchrun's workers leave its process group: killpg misses them)."""
    return [d for child in children(pid) for d in (child, *descendants(child))]
