"""The decoder's tail tiling (export.graphs.DecoderGraph): tiled equals untiled, and the halo covers the reach."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
snac = pytest.importorskip("snac")

from export.graphs import TAIL_TILES, DecoderGraph, ExportSnake, prepare_for_export  # noqa: E402
from snac_onnx.config import ModelConfig  # noqa: E402
from tests.support import seeded_snac  # noqa: E402

pytestmark = pytest.mark.slow  # exports decoder graphs (about a minute each)

CONFIGS = ["tiny_24khz", "tiny_44khz"]


def _model(name: str) -> tuple[torch.nn.Module, ModelConfig]:
    model, config = seeded_snac(name)
    return prepare_for_export(model, config), ModelConfig.from_json(config)


def _inputs(config: ModelConfig, frames: int, batch: int = 2) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    codes = [torch.randint(0, config.codebook_size, (batch, n)) for n in config.code_lengths(frames)]
    noise = [torch.randn(batch, 1, n) for n in config.noise_lengths(frames)]
    return codes, noise


@pytest.mark.parametrize("name", CONFIGS)
def test_tiled_tail_equals_untiled(name):
    model, config = _model(name)
    tiled, whole = DecoderGraph(model), DecoderGraph(model, tiles=1)
    assert tiled.tiles == TAIL_TILES > 1 and whole.tiles == 1
    # the shortest input the graphs accept, and longer ones whose tiles are of unequal length
    for frames in (config.frames_multiple, 3 * config.frames_multiple, 7 * config.frames_multiple):
        codes, noise = _inputs(config, frames)
        with torch.no_grad():
            a, b = tiled.run(codes, noise), whole.run(codes, noise)
        assert a.shape == b.shape == (2, 1, frames * config.hop_length * config.vq_strides[0])
        assert torch.allclose(a, b, rtol=0, atol=1e-6), (frames, float((a - b).abs().max()))


@pytest.mark.parametrize("name", CONFIGS)
def test_halo_covers_the_tails_measured_reach(name):
    """Perturb the tail's input at one step and see how far the output moves: the halo must cover that."""
    model, config = _model(name)
    graph = DecoderGraph(model)
    split = graph.num_noise - len(graph.tail_noise_rates)
    frames = 4 * config.frames_multiple
    codes, noise = _inputs(config, frames, batch=1)
    with torch.no_grad():
        x = graph._apply_layers(graph.head, graph.quantizer.from_codes(codes), noise[:split])
        base = graph._apply_layers(graph.tail, x, noise[split:])
        middle = x.shape[-1] // 2
        bumped = x.clone()
        bumped[..., middle] += 1.0
        moved = (graph._apply_layers(graph.tail, bumped, noise[split:]) - base).abs()[0, 0] > 0
    where = torch.nonzero(moved).flatten()
    factor = graph.tail_factor
    reach_left = middle - int(where.min()) // factor
    reach_right = int(where.max()) // factor - middle
    assert 0 < max(reach_left, reach_right) <= graph.halo, (reach_left, reach_right, graph.halo)


@pytest.mark.parametrize("name", CONFIGS)
def test_too_small_a_halo_is_caught(name):
    """The equality test above can fail: with a halo well below the reach, tiles differ from untiled."""
    model, config = _model(name)
    tiled, whole = DecoderGraph(model), DecoderGraph(model, tiles=1)
    tiled.halo = 2
    codes, noise = _inputs(config, 3 * config.frames_multiple)
    with torch.no_grad():
        err = float((tiled.run(codes, noise) - whole.run(codes, noise)).abs().max())
    assert err > 1e-4


def test_count_includes_each_tile():
    model, _ = _model("tiny_24khz")
    tiled, whole = DecoderGraph(model), DecoderGraph(model, tiles=1)
    def is_snake(m):
        return isinstance(m, ExportSnake)

    tail_snakes = sum(is_snake(m) for layer in tiled.tail for m in layer.modules())
    assert tail_snakes > 0 and not whole.tail
    assert whole.count(is_snake) == sum(map(is_snake, model.decoder.modules()))
    assert tiled.count(is_snake) == whole.count(is_snake) + (TAIL_TILES - 1) * tail_snakes
