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
    BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True).save_pretrained(folder)
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
