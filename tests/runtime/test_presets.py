"""Token presets of the SNAC TTS family: each checked against the rules of that model's own inference code.

Each reference function below is re-typed from the cited file (quoted in its docstring), so a wrong base,
stride or order here fails against it.
"""

from __future__ import annotations

import numpy as np
import pytest

from snac_onnx import PRESETS, InvalidArgumentError, InvalidCodesError, MiniOmniHeads
from snac_onnx.layouts import LAYOUT_NAMES, codes_to_tokens, tokens_to_codes

STRIDES = (4, 2, 1)


def _codes(frames, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4096, frames * n) for n in (1, 2, 4)]


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_every_layout_round_trips_exactly(name):
    codes = _codes(9)
    codes[0][0] = 0  # code 0 is valid
    back = tokens_to_codes(codes_to_tokens(codes, STRIDES, name), STRIDES, 4096, name)
    for a, b in zip(codes, back, strict=True):
        np.testing.assert_array_equal(a, b)


def test_orpheus_matches_its_decoder():
    """canopyai/Orpheus-TTS orpheus_tts_pypi/orpheus_tts/decoder.py:

        def turn_token_into_id(token_string, index):
            ...
            return int(number_str) - 10 - ((index % 7) * 4096)

    with ``<custom_token_N>`` being vocabulary id 128256 + N."""
    codes = _codes(5, seed=1)
    ids = codes_to_tokens(codes, STRIDES, "orpheus")
    reference = [int(i) - 128256 - 10 - ((index % 7) * 4096) for index, i in enumerate(ids)]
    assert reference == codes_to_tokens(codes, STRIDES, "interleaved").tolist()
    preset = PRESETS["orpheus"]
    assert (preset.start_of_speech, preset.end_of_speech, preset.custom_token_base) == (128257, (128258,), 128256)


@pytest.mark.parametrize(
    "name,audio_tokens_start,start,end",
    [("vyvotts-qwen3", 151679, 151670, 151671), ("vyvotts-lfm2", 64410, 64401, 64402),
     ("vyvotts-llama3", 128266, 128257, 128258)],
)
def test_vyvotts_matches_its_codec_and_configs(name, audio_tokens_start, start, end):
    """Vyvo-Labs/VyvoTTS vyvotts/configs/inference/{qwen3,lfm2,llama3}.yaml (AUDIO_TOKENS_START, START_OF_SPEECH,
    END_OF_SPEECH) and vyvotts/codec.py, whose encode writes each frame as

        [L0, L1a+4096, L2a+2*4096, L2b+3*4096, L1b+4*4096, L2c+5*4096, L2d+6*4096]

    and inference/constraints.py, which adds AUDIO_TOKENS_START and rejects ids outside a slot's range."""
    c0, c1, c2 = _codes(4, seed=2)
    reference = []
    for i in range(len(c0)):
        frame = [c0[i], c1[2 * i] + 4096, c2[4 * i] + 2 * 4096, c2[4 * i + 1] + 3 * 4096,
                 c1[2 * i + 1] + 4 * 4096, c2[4 * i + 2] + 5 * 4096, c2[4 * i + 3] + 6 * 4096]
        reference += [audio_tokens_start + int(v) for v in frame]
    assert codes_to_tokens([c0, c1, c2], STRIDES, name).tolist() == reference
    preset = PRESETS[name]
    assert (preset.start_of_speech, preset.end_of_speech) == (start, (end,))
    wrong_slot = np.array(reference)
    wrong_slot[1] -= 4096  # slot 1 given a slot-0 id: strict, as constraints.py is
    with pytest.raises(InvalidCodesError, match="out of range"):
        tokens_to_codes(wrong_slot, STRIDES, 4096, name)


def _mini_omni_reference_heads(codes):
    """gpt-omni/mini-omni utils/snac_utils.py, the inverse of

        def reconscruct_snac(output_list):
            ...
            for i in range(7):
                output_list[i] = output_list[i][i + 1 :]
            for i in range(len(output_list[-1])):
                output.append("#")
                for j in range(7):
                    output.append(output_list[j][i])

    (head j is delayed by j + 1 steps; SnacConfig.end_of_audio = 4097, padded_vocab_size = 4160)."""
    flat = codes_to_tokens(codes, STRIDES, "interleaved").reshape(-1, 7)
    frames = flat.shape[0]
    steps = frames + 7 + 1
    heads = np.full((7, steps), 4160 - 1, np.int64)  # anything in the delay slots: padding
    for j in range(7):
        heads[j, j + 1 : j + 1 + frames] = flat[:, j]
        heads[j, j + 1 + frames] = 4097  # end of audio
    return heads


def test_mini_omni_heads_undo_the_delay_and_match_its_layershift():
    codes = _codes(6, seed=3)
    heads = _mini_omni_reference_heads(codes)
    adapter = MiniOmniHeads()
    got = np.concatenate([adapter.push(heads[:, t]) for t in range(heads.shape[1])])
    assert adapter.done
    np.testing.assert_array_equal(got, codes_to_tokens(codes, STRIDES, "interleaved"))

    def layershift(input_id, layer, stride=4160, shift=152000):  # snac_utils.py, verbatim
        return input_id + shift + layer * stride

    flat = codes_to_tokens(codes, STRIDES, "interleaved")
    assert codes_to_tokens(codes, STRIDES, "mini-omni").tolist() == [
        layershift(int(v), k % 7) for k, v in enumerate(flat)
    ]
    with pytest.raises(InvalidCodesError, match="7 integer head outputs"):
        MiniOmniHeads().push([1, 2, 3])


@pytest.mark.parametrize("name", ["orpheus", "vyvotts-qwen3", "vyvotts-lfm2", "vyvotts-llama3"])
def test_preset_stream_skips_markers_ends_at_end_of_speech_and_equals_offline(tiny24, name):
    preset = PRESETS[name]
    codes = _codes(6, seed=4)
    ids = codes_to_tokens(codes, STRIDES, name)
    stream = tiny24.preset_stream(name)
    text_ids = [5, 17, preset.start_of_speech]  # below the audio range: skipped
    pieces = [stream.push(text_ids)]
    for start in range(0, ids.size, 5):  # pushes that split frames
        pieces.append(stream.push(ids[start : start + 5]))
    pieces.append(stream.push([preset.end_of_speech[0], int(ids[0])]))  # ends; what follows is ignored
    assert stream.done and stream.push(ids).size == 0
    audio = np.concatenate(pieces)
    expected = tiny24.decode(codes, noise=False)
    assert audio.shape == expected.shape and np.abs(audio - expected).max() <= 1e-4
    with pytest.raises(InvalidCodesError, match="above the"):
        tiny24.preset_stream(name).push([preset.audio_range[1] + 1])


def test_text_only_for_presets_whose_tokenizer_spells_tags(tiny24):
    assert tiny24.preset_stream("orpheus").push("<custom_token_10>").size == 0  # a partial frame waits
    with pytest.raises(InvalidArgumentError, match="takes token ids, not text"):
        tiny24.preset_stream("vyvotts-qwen3").push("<custom_token_10>")
    with pytest.raises(InvalidArgumentError, match="one of"):
        tiny24.preset_stream("maya2")


def test_a_preset_of_your_own_with_modulo_ids_and_a_trim(tiny24):
    """What a model whose reference takes ids modulo 4096 and drops a warm-up would need (its own preset)."""
    from snac_onnx import PresetStream, TokenPreset
    from snac_onnx.layouts import ORPHEUS

    mine = TokenPreset("mine", ORPHEUS, 128257, (128258,), None, "a test", modulo=True, trim_samples=2048)
    codes = _codes(5, seed=6)
    ids = codes_to_tokens(codes, STRIDES, "orpheus").copy()
    ids[1] -= 4096  # slot 1 given a slot-0 id: modulo maps it to the same code
    stream = PresetStream(tiny24.stream(layout=ORPHEUS), mine)
    audio = np.concatenate([stream.push(ids[:10]), stream.push(ids[10:]), stream.flush()])
    expected = tiny24.decode(codes, noise=False)[2048:]
    assert audio.shape == expected.shape and np.abs(audio - expected).max() <= 1e-4
    with pytest.raises(InvalidCodesError, match="out of range"):  # the strict preset refuses the same ids
        tiny24.preset_stream("orpheus").push(ids)
    with pytest.raises(InvalidArgumentError, match="trim_samples"):
        TokenPreset("bad", ORPHEUS, None, (), None, "x", trim_samples=-1)
