"""The compiled encoder computes the same embeddings, adapters and guidance included."""

import torch

from napari_clip_guided_sam.model.compilation import compile_image_encoder
from napari_clip_guided_sam.model.factory import build_model


def test_compiled_encoder_matches_and_does_not_recompile_for_new_guidance(sam_input):
    from torch._dynamo.utils import counters

    eager = build_model("tiny", seed=0)
    compiled = build_model("tiny", seed=0)
    # aot_eager traces exactly what inductor would compile, without minutes of C++ builds.
    compile_image_encoder(compiled, backend="aot_eager")
    counters.clear()
    with torch.no_grad():
        for name in ("cell", "nucleus"):
            guide = eager.guidance(sam_input[:1], eager.text_features([name]))
            torch.testing.assert_close(
                compiled.encode_image(sam_input[:1], guide),
                eager.encode_image(sam_input[:1], guide),
                atol=1e-5,
                rtol=1e-5,
            )
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]
