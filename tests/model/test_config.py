from __future__ import annotations

import pytest
from pydantic import ValidationError

from meldctl.model.config import ModelConfig, PreprocessConfig, setting_fields
from meldctl.settings import ModelSettings


def test_defaults_are_the_kinetics_preset_of_the_r3d18_weights() -> None:
    from torchvision.models.video import R3D_18_Weights

    preset = R3D_18_Weights.KINETICS400_V1.transforms()
    config = PreprocessConfig()
    assert list(config.resize_size) == list(preset.resize_size)
    assert [config.crop_size, config.crop_size] == list(preset.crop_size)
    assert list(config.mean) == list(preset.mean) and list(config.std) == list(preset.std)


def test_model_settings_are_the_configs_fields_with_their_bounds() -> None:
    shared = setting_fields(ModelConfig) + setting_fields(PreprocessConfig)
    assert list(ModelSettings.model_fields) == [*shared, "checkpoint"]
    for name in shared:
        config = ModelConfig if name in setting_fields(ModelConfig) else PreprocessConfig
        assert ModelSettings.model_fields[name].description == config.model_fields[name].description
    with pytest.raises(ValidationError):
        ModelSettings(num_frames=100000)


@pytest.mark.parametrize(
    "values",
    [
        {"num_frames": 100000},
        {"n_mels": 100000},
        {"std": (0.2, 0.0, 0.2)},
        {"mean": (float("nan"), 0.4, 0.4)},
        {"crop_size": 200},
        {"audio_seconds": 0.001},
        {"max_tokens": 0},
        {"resize_size": (5000, 5000)},
        {"unknown_field": 1},
    ],
)
def test_preprocess_values_out_of_bounds_are_refused(values: dict) -> None:
    with pytest.raises(ValidationError):
        PreprocessConfig.from_dict({**PreprocessConfig().to_dict(), **values})


def test_model_config_label_lists_are_checked() -> None:
    with pytest.raises(ValidationError):
        ModelConfig(emotions=("joy",))
    with pytest.raises(ValidationError):
        ModelConfig(emotions=("joy", "joy"))
    with pytest.raises(ValidationError):
        ModelConfig(projection_dim=10**7)
    assert ModelConfig(modalities="video,text").modalities == ("text", "video")
