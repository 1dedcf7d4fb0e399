from napari_clip_guided_sam.model.accounting import count_parameters

TEXT_POSITIONAL_EMBEDDING = 77 * 512  # CLIP ViT-B/16's context x text width


def _table(preset: str) -> dict:
    return {row.component: row for row in count_parameters(preset)}


def test_reference_parameter_table_matches_table_1():
    rows = {
        name: (round(row.total / 1e6, 1), round(row.trainable / 1e6, 1))
        for name, row in _table("reference").items()
    }
    assert rows["SAM image encoder + adapters"] == (106.2, 16.6)
    assert rows["SAM decoder (prompt encoder + mask decoder)"] == (4.1, 4.1)
    assert rows["SAM total"] == (110.3, 20.6)
    assert rows["CLIP vision"] == (86.8, 28.3)
    assert rows["CLIP text (+ logit scale)"] == (63.4, 0.0)
    assert rows["CLIP total"] == (150.3, 28.4)  # counts the trained text positional embedding
    assert rows["System (SAM + CLIP)"] == (260.5, 49.0)
    assert rows["Deployment (SAM + CLIP vision, cached text)"][0] == 197.1


def test_paper_freezes_the_text_positional_embedding_that_reference_trains():
    paper, reference = _table("paper"), _table("reference")
    assert {name: row.total for name, row in paper.items()} == {
        name: row.total for name, row in reference.items()
    }
    extra = {name: reference[name].trainable - row.trainable for name, row in paper.items()}
    text_rows = {"CLIP text (+ logit scale)", "CLIP total", "System (SAM + CLIP)"}
    assert extra == {name: TEXT_POSITIONAL_EMBEDDING if name in text_rows else 0 for name in extra}
    assert paper["CLIP text (+ logit scale)"].trainable == 0
    assert round(paper["CLIP total"].trainable / 1e6, 1) == 28.3
