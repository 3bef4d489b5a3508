"""Dialogue context: each utterance's fused representation attends to its neighbours in the same dialogue.

A batch is a flat list of utterances, as everywhere else in meldctl; three integer tensors say where each one
stands: `dialogue` `[B]` (which conversation), `position` `[B]` (its order there) and `speaker` `[B]` (equal
numbers for the same speaker, negative when unknown). Who may look at whom is a mask computed from them, so no
padding into `[dialogues, turns]` is needed and a batch that holds whole dialogues gives every utterance its
full window. A batch without these keys is scored with every utterance alone: the `--no-context` ablation of
the same weights.

Why attention over fused, per-utterance vectors (bc-LSTM / DialogueRNN's place in the network, not context
tokens in the text encoder): it works on cached frozen features of every modality, so training stays cheap;
the window (`past`, `future`) is exact; a missing modality in a context utterance is already its learned
stand-in; and on real MELD text it gained where in-encoder context did not (docs/training.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

CONTEXT_KEYS = ("dialogue", "position", "speaker")
"""The batch keys that place utterances in their dialogues."""


def window_ahead(trained: int, asked: int | None) -> int:
    """How many later utterances are seen: the trained window, or fewer when asked (`--causal` asks 0)."""
    return trained if asked is None else max(0, min(asked, trained))


def context_mask(dialogue: torch.Tensor, position: torch.Tensor, past: int, future: int) -> torch.Tensor:
    """Which utterance may attend to which: `[B, B]` bool, row i's window over columns j.

    j is in i's window when both are in the same dialogue and `-past <= position[j] - position[i] <= future`.
    The diagonal is always in, so no row is left with nothing to attend to.
    """
    offset = position[None, :] - position[:, None]  # [B, B]: j - i
    same = dialogue[:, None] == dialogue[None, :]
    itself = torch.eye(len(dialogue), dtype=torch.bool, device=dialogue.device)
    return (same & (offset >= -past) & (offset <= future)) | itself


class _Block(nn.Module):
    """Pre-norm multi-head attention with additive biases, then a feed-forward layer; both residual."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        size, dim = x.shape  # [B, D]; bias [heads, B, B] with -inf outside each row's window
        q, k, v = self.qkv(self.norm(x)).view(size, 3, self.heads, dim // self.heads).permute(1, 2, 0, 3)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dim // self.heads) + bias  # [heads, B, B]
        mixed = (scores.softmax(dim=-1) @ v).permute(1, 0, 2).reshape(size, dim)  # [B, D]
        x = x + self.dropout(self.out(mixed))
        return x + self.dropout(self.ff(self.ff_norm(x)))


class DialogueContext(nn.Module):
    """Attention of each utterance over the `past` utterances before it and the `future` ones after it.

    Args:
        dim: Width of the per-utterance vectors (the fusion layer's).
        past: How many earlier utterances of the dialogue each one sees.
        future: How many later ones.
        speakers: Learn whether the utterance in view has the same speaker (a bias per head); speaker names
            themselves are never embedded, so unseen names work.
        heads: Attention heads (must divide `dim`).
        layers: Stacked attention blocks.
        dropout: Dropout on each block's residual branches.
    """

    def __init__(
        self, dim: int, past: int, future: int, *, speakers: bool, heads: int = 4, layers: int = 1, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if dim % heads:
            heads = 1
        self.past, self.future, self.speakers, self.heads = past, future, speakers, heads
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(layers))
        # A learned bias per head for every relative position in the window, and for same / other speaker.
        self.position_bias = nn.Parameter(torch.zeros(heads, past + future + 1))
        self.speaker_bias = nn.Parameter(torch.zeros(heads, 2)) if speakers else None

    def forward(self, x: torch.Tensor, batch: dict[str, torch.Tensor], *, future: int | None = None) -> torch.Tensor:
        """`x` `[B, D]` in dialogue context; rows alone when `batch` carries no dialogue keys.

        `future` narrows the window's later side below the trained one (0: past only, for live use).
        """
        if "dialogue" not in batch:
            dialogue = torch.arange(len(x), device=x.device)
            position = torch.zeros(len(x), dtype=torch.long, device=x.device)
        else:
            dialogue, position = batch["dialogue"].to(x.device), batch["position"].to(x.device)
        ahead = window_ahead(self.future, future)
        allowed = context_mask(dialogue, position, self.past, ahead)
        offset = (position[None, :] - position[:, None]).clamp(-self.past, self.future) + self.past
        bias = self.position_bias[:, offset]  # [heads, B, B]
        if self.speaker_bias is not None and "speaker" in batch:
            speaker = batch["speaker"].to(x.device)
            same = (speaker[:, None] == speaker[None, :]) & (speaker[:, None] >= 0)
            bias = bias + self.speaker_bias[:, same.long()]
        bias = bias.masked_fill(~allowed[None], float("-inf"))
        for block in self.blocks:
            x = block(x, bias)
        return x
