from napari_clip_guided_sam.model.accounting import count_parameters


def test_paper_parameter_table_matches_table_1():
    rows = {
        row.component: (round(row.total / 1e6, 1), round(row.trainable / 1e6, 1))
        for row in count_parameters("paper")
    }
    assert rows["SAM image encoder + adapters"] == (106.2, 16.6)
    assert rows["SAM decoder (prompt encoder + mask decoder)"] == (4.1, 4.1)
    assert rows["SAM total"] == (110.3, 20.6)
    assert rows["CLIP vision"] == (86.8, 28.3)
    assert rows["CLIP text (+ logit scale)"] == (63.4, 0.0)
    assert rows["CLIP total"] == (150.3, 28.4)
    assert rows["System (SAM + CLIP)"] == (260.5, 49.0)
    assert rows["Deployment (SAM + CLIP vision, cached text)"][0] == 197.1
