from __future__ import annotations

import math

import torch

from meldctl.media.features import log_mel_features, pad_frames
from meldctl.model.audio import AudioEncoder
from meldctl.model.config import PreprocessConfig


def _utterances() -> list[torch.Tensor]:
    torch.manual_seed(3)
    t = torch.arange(48000) / 16000
    waves = [0.3 * torch.sin(2 * math.pi * f * t[:n]) + 0.05 * torch.randn(n) for f, n in ((300, 20000), (900, 48000))]
    return [log_mel_features(w, PreprocessConfig()) for w in waves]  # [1, 64, frames], 126 and 301 frames


def _batch(mels: list[torch.Tensor], frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([m.shape[-1] for m in mels])
    return torch.stack([pad_frames(m, frames) for m in mels]), lengths


def test_padding_never_reaches_the_embedding() -> None:
    """The same utterances in a 3 s, an 8 s and a 20 s window give the same embeddings, in eval and training."""
    torch.manual_seed(0)
    encoder = AudioEncoder(projection_dim=16)
    encoder.set_normalisation(torch.full((64,), -5.0), torch.full((64,), 3.0))
    mels = _utterances()
    for mode in ("eval", "train"):
        getattr(encoder, mode)()
        outs = [encoder(*_batch(mels, frames)) for frames in (301, 801, 2001)]
        for other in outs[1:]:
            assert torch.allclose(outs[0], other, atol=1e-5), mode
    alone = encoder.eval()(*_batch(mels[:1], 126))
    assert torch.allclose(alone, encoder(*_batch(mels, 801))[:1], atol=1e-5)  # and of the other rows


def test_training_statistics_ignore_padding() -> None:
    encoder = AudioEncoder(projection_dim=16).train()
    mels = _utterances()
    encoder(*_batch(mels, 301))
    short = encoder.blocks[0].norm.running_mean.clone()
    encoder = AudioEncoder(projection_dim=16).train()
    encoder(*_batch(mels, 2001))
    assert torch.allclose(short, encoder.blocks[0].norm.running_mean, atol=1e-6)


def test_normalisation_is_part_of_the_weights() -> None:
    encoder = AudioEncoder(projection_dim=8, n_mels=64)
    encoder.set_normalisation(torch.arange(64.0), torch.full((64,), 2.0))
    state = encoder.state_dict()
    assert torch.equal(state["mel_mean"], torch.arange(64.0)) and torch.equal(state["mel_std"], torch.full((64,), 2.0))


def test_batches_pad_to_a_few_shapes() -> None:
    """The audio collate pads to multiples of 64 frames within the window: few distinct shapes an epoch (each
    shape costs allocator and oneDNN memory), and the padding, masked, changes no embedding (above)."""
    from meldctl.data.kinds import KINDS, CollateContext, padded_frames

    assert [padded_frames(n, 801) for n in (0, 1, 64, 65, 126, 768, 769, 801)] == [1, 64, 64, 128, 128, 768, 801, 801]
    mels = _utterances()  # 126 and 301 frames
    samples = [{"audio": m, "audio_length": m.shape[-1], "audio_present": True} for m in mels]
    samples.append({"audio": None, "audio_length": 0, "audio_present": False})
    batch = KINDS["audio"].collate(samples, CollateContext(PreprocessConfig(), None))
    assert batch["audio"].shape == (3, 1, 64, 320)
    assert batch["audio_length"].tolist() == [126, 301, 0]
    assert torch.equal(batch["audio"][1, :, :, :301], mels[1]) and not batch["audio"][1, :, :, 301:].any()
