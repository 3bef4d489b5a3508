from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
import torch

from meldctl.labels import MODALITIES
from meldctl.model import ModelConfig, build_model
from meldctl.model.text import load_tokenizer

SUBSETS = [c for n in range(1, 4) for c in itertools.combinations(MODALITIES, n)]


def _batch(model, tokenizer, b: int = 2) -> dict[str, torch.Tensor]:
    batch: dict[str, torch.Tensor] = {}
    if model.text is not None:
        batch.update(tokenizer(["oh my god", "i know"][:b], padding=True, return_tensors="pt"))
    if model.video is not None:
        batch["video"] = torch.randn(b, 3, 4, 32, 32)  # [B, C, T, H, W]
    if model.audio is not None:
        batch["audio"] = torch.randn(b, 1, 64, 50)  # [B, 1, n_mels, frames]
        batch["audio_length"] = torch.tensor([50, 31][:b])
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "video", "audio", "audio_length")}


@pytest.mark.parametrize("modalities", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_forward_shapes_for_every_subset(modalities: tuple[str, ...], tiny_bert: Path) -> None:
    config = ModelConfig(modalities=modalities, text_model=str(tiny_bert), video_weights="none")
    model = build_model(config).eval()
    out = model(_batch(model, load_tokenizer(str(tiny_bert))))
    assert out["emotion"].shape == (2, 7)
    assert out["sentiment"].shape == (2, 3)
    assert torch.isfinite(out["emotion"]).all()


def test_trainable_parameters_get_gradients_and_frozen_ones_do_not_move(tiny_bert: Path) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(text_model=str(tiny_bert), video_weights="none", modality_dropout=0.0)).train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("text.encoder") for n in frozen)
    assert any(n.startswith("video.backbone") for n in frozen)
    assert not any(n.startswith("audio.") for n in frozen), "the audio CNN must be trainable"
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    batch = _batch(model, load_tokenizer(str(tiny_bert)), b=2)
    # Each modality missing in one row of a batch of three: the stand-ins must learn too.
    batch = {k: torch.cat([v, v[:1]]) for k, v in batch.items()}
    for i, modality in enumerate(("text", "audio", "video")):
        batch[f"{modality}_present"] = torch.tensor([j != i for j in range(3)])
    out = model(batch)
    (out["emotion"].sum() + out["sentiment"].sum()).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, f"{name} got no gradient"
        else:
            assert param.grad is None, f"frozen {name} got a gradient"
    optimizer.step()
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), f"frozen {name} changed"


def test_unfrozen_text_encoder_is_trained(tiny_bert: Path) -> None:
    model = build_model(ModelConfig(modalities=("text",), text_model=str(tiny_bert), freeze_text=False)).train()
    out = model(_batch(model, load_tokenizer(str(tiny_bert))))
    out["emotion"].sum().backward()
    assert model.text.encoder.embeddings.word_embeddings.weight.grad is not None


def test_frozen_backbones_stay_in_eval_mode(tiny_bert: Path) -> None:
    model = build_model(ModelConfig(text_model=str(tiny_bert), video_weights="none")).train()
    assert model.fusion.training and model.audio.training
    assert not model.text.encoder.training and not model.video.backbone.training


def test_offline_text_model_names_the_path_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from meldctl.errors import MeldError

    with pytest.raises(MeldError) as info:
        build_model(ModelConfig(modalities=("text",), text_model="no-such-org/no-such-model"))
    assert "--text-model PATH" in info.value.hint


def test_offline_video_weights_name_the_path_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models.video import R3D_18_Weights

    from meldctl.errors import MeldError

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(type(R3D_18_Weights.KINETICS400_V1), "get_state_dict", offline)
    with pytest.raises(MeldError) as info:
        build_model(ModelConfig(modalities=("video",), video_weights="kinetics400"))
    assert "--video-weights PATH" in info.value.hint


def test_local_video_weights_file_is_loaded(tmp_path: Path) -> None:
    from torchvision.models.video import r3d_18

    reference = r3d_18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r3d.pth")
    model = build_model(ModelConfig(modalities=("video",), video_weights=str(tmp_path / "r3d.pth")))
    assert torch.equal(model.video.backbone.stem[0].weight, reference.stem[0].weight)


def test_model_package_imports_no_cli_or_aws() -> None:
    import subprocess

    code = (
        "import sys, meldctl.model, meldctl.model.checkpoint;"
        "bad=[m for m in ('typer','boto3','sagemaker','rich') if m in sys.modules];"
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("layer_mix", [True, False])
def test_text_features_per_layer_or_last(tiny_bert: Path, layer_mix: bool) -> None:
    model = build_model(ModelConfig(modalities=("text",), text_model=str(tiny_bert), text_layer_mix=layer_mix))
    tokens = load_tokenizer(str(tiny_bert))(["oh my god", "i know you"], padding=True, return_tensors="pt")
    feats = model.text.features(tokens["input_ids"], tokens["attention_mask"])
    assert feats.shape == ((2, 3, 32) if layer_mix else (2, 32))  # tiny BERT: 2 layers + embeddings, width 32
    assert model.text.project(feats).shape == (2, 128)
    if layer_mix:  # zero-initialised weights start as a plain average of the layers
        assert torch.allclose(model.text.project(feats), model.text.projection(feats.mean(1)), atol=1e-6)


def test_build_model_is_in_eval_mode(tiny_bert: Path) -> None:
    """A fresh model computes cacheable features with its frozen encoders' running statistics untouched."""
    model = build_model(ModelConfig(text_model=str(tiny_bert), video_weights="none"))
    assert not model.training and not model.video.backbone.training and not model.audio.training


def test_a_missing_modality_uses_the_stand_in(tiny_bert: Path) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(text_model=str(tiny_bert), video_weights="none"))
    with torch.no_grad():
        model.stand_ins["video"].normal_()
    batch = _batch(model, load_tokenizer(str(tiny_bert)))
    without_video = {k: v for k, v in batch.items() if k != "video"}
    hidden = {**batch, "video_present": torch.tensor([False, False])}
    with torch.no_grad():
        a, b, full = model(without_video), model(hidden), model(batch)
    assert torch.allclose(a["emotion"], b["emotion"], atol=1e-6)  # no inputs == inputs marked absent
    assert not torch.allclose(a["emotion"], full["emotion"], atol=1e-4)
    with torch.no_grad():  # other video values change nothing once the rows are marked absent
        noisy = model({**hidden, "video": torch.randn_like(batch["video"])})
    assert torch.allclose(noisy["emotion"], b["emotion"], atol=1e-6)


def test_modality_dropout_hides_modalities_in_training_only(tiny_bert: Path) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(text_model=str(tiny_bert), video_weights="none", modality_dropout=0.5))
    present = {m: torch.ones(4000, dtype=torch.bool) for m in ("text", "audio", "video")}
    kept = torch.stack(list(model._hide(present).values()), dim=1)  # [B, 3]
    assert kept.any(dim=1).all(), "a row never loses every modality"
    # Each hidden with p = 0.5, but a row that would lose all three (1 in 8) keeps them: 1.5 - 3/8 = 1.125 of 3.
    assert 0.35 < 1 - kept.float().mean().item() < 0.40
    one = {"text": torch.ones(10, dtype=torch.bool), "audio": torch.zeros(10, dtype=torch.bool),
           "video": torch.zeros(10, dtype=torch.bool)}  # fmt: skip
    assert model._hide(one)["text"].all(), "the only modality a row has is never hidden"
    batch = _batch(model, load_tokenizer(str(tiny_bert)))
    with torch.no_grad():
        assert torch.equal(model(batch)["emotion"], model(batch)["emotion"])  # eval: deterministic, nothing hidden


def test_weights_keep_the_format_2_layout(tiny_bert: Path) -> None:
    """Existing checkpoints still load: the weight names, and the parameter order that a `last.pt`'s optimiser
    state follows, are those of the first format-2 checkpoints (recorded in format2_layout.json from that code)."""
    import json

    recorded = json.loads((Path(__file__).parent / "format2_layout.json").read_text())
    model = build_model(ModelConfig(text_model=str(tiny_bert), video_weights="none"))
    assert list(model.state_dict()) == recorded["state_dict"]
    assert [name for name, _ in model.named_parameters()] == recorded["parameters"]


def test_training_mode_keeps_frozen_encoders_in_eval_mode(tiny_bert: Path) -> None:
    config = ModelConfig(text_model=str(tiny_bert), video_weights="none", freeze_text=False)
    model = build_model(config).train()
    assert model.text.encoder.training, "an unfrozen text encoder trains"
    assert not model.video.backbone.training, "the frozen R3D-18 keeps its BatchNorm statistics"
    assert set(model.encoders) == set(MODALITIES) and model.encoders["audio"] is model.audio
    assert build_model(ModelConfig(modalities=("audio",))).text is None
