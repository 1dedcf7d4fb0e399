"""`auto` precision: chosen from measured rates, cached per machine, re-measured on request."""

import json

import pytest
import torch

from napari_clip_guided_sam.model import precision_probe
from napari_clip_guided_sam.model.precision_probe import (
    choose_precision,
    machine_key,
    measure_gflops,
    probe_precision,
)
from napari_clip_guided_sam.model.runtime import resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("gflops", "expected"),
    [
        ({"fp32": 318.0, "bf16": 163.0}, "fp32"),  # the Xeon of issue 13: bf16 is slower
        ({"fp32": 120.0, "bf16": 370.0}, "bf16"),  # native bf16 about 3x faster
        ({"fp32": 100.0, "bf16": 105.0}, "fp32"),  # within noise: fp32's accuracy wins
        ({"fp32": 100.0, "bf16": 111.0}, "bf16"),
        ({"fp32": 20.0, "bf16": 150.0, "fp16": 160.0}, "bf16"),  # bf16's range, near fp16
        ({"fp32": 20.0, "bf16": 100.0, "fp16": 160.0}, "fp16"),
        ({"fp32": 20.0, "fp16": 160.0}, "fp16"),  # a GPU without bf16
    ],
)
def test_the_faster_precision_is_chosen(gflops, expected):
    precision, reason = choose_precision(gflops)
    assert precision == expected
    assert expected in reason


def test_probe_result_is_cached_per_machine_and_can_be_forced():
    calls = []

    def fake(rates):
        def measure(device, precisions):
            calls.append(precisions)
            return dict(rates)

        return measure

    first = probe_precision(CPU, measure=fake({"fp32": 318.0, "bf16": 163.0}))
    assert (first.precision, first.cached, first.dtype) == ("fp32", False, None)
    assert calls == [("fp32", "bf16")]
    again = probe_precision(CPU, measure=fake({"fp32": 1.0, "bf16": 999.0}))
    assert again.precision == "fp32" and again.cached and len(calls) == 1
    assert resolve_precision("auto", CPU) is None  # the cached choice, nothing measured

    stored = json.loads(precision_probe.cache_path().read_text())
    assert stored[machine_key(CPU)]["gflops"] == {"fp32": 318.0, "bf16": 163.0}

    forced = probe_precision(CPU, force=True, measure=fake({"fp32": 100.0, "bf16": 300.0}))
    assert forced.precision == "bf16" and not forced.cached and len(calls) == 2
    assert resolve_precision("auto", CPU) is torch.bfloat16
    assert "torch " + torch.__version__ in machine_key(CPU)


def test_a_damaged_cache_file_is_measured_again():
    path = precision_probe.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    choice = probe_precision(CPU, measure=lambda device, precisions: {"fp32": 2.0, "bf16": 1.0})
    assert choice.precision == "fp32" and not choice.cached
    assert machine_key(CPU) in json.loads(path.read_text())


def test_real_measurement_reports_every_candidate():
    rates = measure_gflops(CPU, ("fp32", "bf16"), shape=(64, 32, 48), rounds=2)
    assert set(rates) == {"fp32", "bf16"}
    assert all(rate > 0 for rate in rates.values())


def test_fixed_precisions_skip_the_probe():
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    assert not precision_probe.cache_path().exists()
    with pytest.raises(ValueError, match="fp16 is not supported on the CPU"):
        resolve_precision("fp16", CPU)
