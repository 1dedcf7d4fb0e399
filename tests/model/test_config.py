import pytest

from napari_clip_guided_sam.model.config import PRESETS, ModelConfig, get_preset


def test_paper_defaults_follow_the_design():
    config = get_preset("paper")
    assert (config.sam.variant, config.sam.encoder_depth, config.sam.window_size) == (
        "vit_b",
        12,
        14,
    )
    assert config.sam.global_attn_indexes == (2, 5, 8, 11)
    assert (config.clip.arch, config.clip.clip_size, config.clip.surgery_depth) == (
        "ViT-B-16",
        512,
        6,
    )
    assert (config.guide.threshold, config.guide.n_points, config.guide.point_seed) == (0.8, 5, 42)
    assert config.guide.token_norm == "paper" and not config.adapters.pad_before_norm
    assert (config.adapters.alpha, config.adapters.mlp_ratio) == (0.5, 0.25)
    assert config.loss == "bce_dice_iou" and config.resize == "squash"


def test_reference_adds_only_the_released_code_quirks():
    paper, reference = get_preset("paper"), get_preset("reference")
    assert reference.guide.token_norm == "reference"
    assert reference.adapters.pad_before_norm
    assert reference.loss == "bce"
    assert reference.sam == paper.sam and reference.clip == paper.clip
    # The released code trains the text positional embedding through the redundant feature;
    # the paper freezes the text encoder.
    assert reference.trainable.text_positional_embedding
    assert reference.guide.text_gradient == "redundant"
    assert not any(
        preset.trainable.text_positional_embedding
        for name, preset in PRESETS.items()
        if name != "reference"
    )


def test_configs_saved_before_the_text_gradient_field_read_as_the_class_path():
    # Checkpoints and training states written before `text_gradient` existed were trained
    # with the gradient through the class feature.
    data = get_preset("tiny").to_dict()
    del data["guide"]["text_gradient"]
    assert ModelConfig.from_dict(data).guide.text_gradient == "class"
    assert get_preset("tiny").guide.text_gradient == "redundant"


def test_every_preset_round_trips_through_json():
    for config in PRESETS.values():
        import json

        assert ModelConfig.from_dict(json.loads(config.to_json())) == config


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(ValueError, match="paper, reference, tiny"):
        get_preset("papr")


def test_unknown_config_field_is_rejected():
    data = get_preset("tiny").to_dict()
    data["guide"]["treshold"] = 0.5
    with pytest.raises(ValueError, match="treshold"):
        ModelConfig.from_dict(data)


def test_replace_changes_nested_fields():
    config = get_preset("paper").replace(**{"guide.threshold": 0.6, "adapters.use_text": False})
    assert config.guide.threshold == 0.6 and not config.adapters.use_text
    assert config.guide.n_points == 5


def test_unknown_backbones_are_refused_by_name():
    from napari_clip_guided_sam.model.config import ClipConfig
    from napari_clip_guided_sam.model.factory import build_model

    with pytest.raises(ValueError, match="Unknown CLIP architecture 'ViT-X'"):
        build_model(
            get_preset("tiny").replace(clip=ClipConfig(arch="ViT-X")), base_weights="random"
        )
    unknown_sam = get_preset("tiny").replace(**{"sam.variant": "vit_x"})
    with pytest.raises(ValueError, match="no official weights"):
        build_model(unknown_sam, base_weights="official")


def test_tiny_448_is_tiny_at_a_finer_input_with_whole_windows():
    tiny, fine = get_preset("tiny"), get_preset("tiny_448")
    assert fine.sam.image_size == 448 and fine.sam.base_image_size is None
    # Everything but the input side (and the name) is tiny's: the same random architecture.
    assert fine.replace(name="tiny", **{"sam.image_size": 256}) == tiny
    # 28 tokens a side: two whole 14-token windows, so the windowed blocks pad nothing.
    assert fine.sam.grid_size % fine.sam.window_size == 0
    assert fine.sam.low_res_size == 112


def test_tiny_448_trains_from_scratch_with_tinys_recipe_and_learning_rates():
    from napari_clip_guided_sam.model.config import FROM_SCRATCH_PRESETS
    from napari_clip_guided_sam.training import default_learning_rates
    from napari_clip_guided_sam.training.recipe import default_recipe

    assert set(FROM_SCRATCH_PRESETS) == {"tiny", "tiny_448"}
    assert default_recipe("tiny_448") == default_recipe("tiny") != default_recipe("paper")
    assert default_learning_rates("tiny_448") == default_learning_rates("tiny") == (1e-3, 1e-4)
