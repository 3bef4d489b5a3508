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
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "video", "audio")}


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
    model = build_model(ModelConfig(text_model=str(tiny_bert), video_weights="none")).train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("text.encoder") for n in frozen)
    assert any(n.startswith("video.backbone") for n in frozen)
    assert not any(n.startswith("audio.") for n in frozen), "the audio CNN must be trainable"
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    out = model(_batch(model, load_tokenizer(str(tiny_bert))))
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
