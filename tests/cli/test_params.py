from napari_clip_guided_sam.cli import main


def test_params_prints_the_paper_table(capsys):
    assert main(["params", "--preset", "paper"]) == 0
    out = capsys.readouterr().out
    assert "System (SAM + CLIP)" in out and "260.5M" in out and "49.0M" in out
    assert "197.1M" in out


def test_unknown_preset_fails_with_a_message(capsys):
    assert main(["params", "--preset", "nope"]) == 1
    assert "Unknown preset 'nope'" in capsys.readouterr().err


def test_weights_list_names_the_cache_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIP_GUIDED_SAM_CACHE", str(tmp_path))
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "sam_vit_b_01ec64.pth" in out and "missing" in out


def test_info_prints_the_automatic_precision_and_why(capsys):
    assert main(["info", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "precision auto -> " in out and "measured now" in out and "GFLOP/s" in out
    assert main(["info", "--device", "cpu"]) == 0
    assert "(cached " in capsys.readouterr().out
    assert main(["info", "--device", "cpu", "--reprobe"]) == 0
    assert "measured now" in capsys.readouterr().out


def test_params_counts_each_adapter_depth(capsys):
    assert (
        main(["params", "--preset", "paper", "--adapter-blocks", "3", "--image-size", "512"]) == 0
    )
    out = capsys.readouterr().out
    assert "SAM vit_b at 512 px" in out and "adapters in 3 of 12 encoder blocks" in out
    assert "4.1M" in out  # 3 x 1,379,712 adapter parameters
    assert "16.56M" in out and "<- this config" in out
