"""Token presets of the SNAC TTS family: each checked against the rules of that model's own inference code.

Each reference function below is re-typed from the cited file (quoted in its docstring), so a wrong base,
stride or order here fails against it.
"""

from __future__ import annotations

import numpy as np
import pytest

from snac_onnx import PRESETS, InvalidArgumentError, InvalidCodesError, MiniOmniHeads
from snac_onnx.layouts import LAYOUT_NAMES, codes_to_tokens, tokens_to_codes
from snac_onnx.stream.presets import Sampling

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


def _mini_omni_reference_steps(codes):
    """The generation steps of gpt-omni/mini-omni's seven audio heads for ``codes``, as its own loop sees them.

    utils/snac_utils.py, the inverse of

        def reconscruct_snac(output_list):
            ...
            for i in range(7):
                output_list[i] = output_list[i][i + 1 :]

    (head j is delayed by j + 1 steps), and inference.py

        audio_vocabsize = 4096
        ...
        _eoa = audio_vocabsize
        _pad_a = audio_vocabsize + 1

    where the loop (litgpt/generate/base.py, generate_TA) stops at the step whose last head gives _eoa, before it
    keeps that step:

        if tokens_A[-1] == eos_id_a:
            break

    Each head gives _eoa after its last code and its pad (4097) after that; before its delay, its pad."""
    flat = codes_to_tokens(codes, STRIDES, "interleaved").reshape(-1, 7)
    frames = flat.shape[0]
    steps = frames + 7 + 1  # the last is the step whose head 6 gives _eoa
    heads = np.full((7, steps), 4097, np.int64)  # _pad_a in the delay slots and after the end
    for j in range(7):
        heads[j, j + 1 : j + 1 + frames] = flat[:, j]
        heads[j, j + 1 + frames] = 4096  # _eoa
    return heads


def test_mini_omni_heads_end_at_4096_and_undo_the_delay():
    codes = _codes(6, seed=3)
    heads = _mini_omni_reference_steps(codes)
    adapter = MiniOmniHeads()
    got = []
    for t in range(heads.shape[1]):
        assert not adapter.done, t
        got.append(adapter.push(heads[:, t]))
    assert adapter.done  # at the step whose last head gave 4096, as mini-omni's own loop stops
    np.testing.assert_array_equal(np.concatenate(got), codes_to_tokens(codes, STRIDES, "interleaved"))
    assert adapter.push(heads[:, -1]).size == 0

    def layershift(input_id, layer, stride=4160, shift=152000):  # snac_utils.py, verbatim
        return input_id + shift + layer * stride

    flat = codes_to_tokens(codes, STRIDES, "interleaved")
    assert codes_to_tokens(codes, STRIDES, "mini-omni").tolist() == [
        layershift(int(v), k % 7) for k, v in enumerate(flat)
    ]
    with pytest.raises(InvalidCodesError, match="7 integer head outputs"):
        MiniOmniHeads().push([1, 2, 3])
    padded = heads.copy()
    padded[3, 5] = 4097  # a pad where a code was due
    adapter = MiniOmniHeads()
    for t in range(5):
        adapter.push(padded[:, t])
    with pytest.raises(InvalidCodesError, match="head 3 gave 4097"):
        adapter.push(padded[:, 5])


@pytest.mark.parametrize("name", ["orpheus", "maya1", "veena", "vyvotts-qwen3", "vyvotts-lfm2", "vyvotts-llama3"])
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
    expected = tiny24.decode(codes, noise=False)[preset.trim_samples :]
    assert audio.shape == expected.shape and np.abs(audio - expected).max() <= 1e-4
    assert stream.skipped_ids == 2  # 5 and 17; the start of speech is expected, not skipped
    if preset.modulo:  # skipped, as the reference skips ids outside [SNAC_MIN_ID, SNAC_MAX_ID]
        fresh = tiny24.preset_stream(name)
        fresh.push([preset.audio_range[1] + 1])
        assert fresh.skipped_ids == 1
    else:
        with pytest.raises(InvalidCodesError, match="above the"):
            tiny24.preset_stream(name).push([preset.audio_range[1] + 1])


def test_text_for_presets_whose_tokenizer_spells_tags(tiny24):
    stream = tiny24.preset_stream("orpheus")
    assert stream.push("Sure! <custom_token_10>").size == 0  # a partial frame waits
    assert stream.skipped_chars == len("Sure!")
    qwen = PRESETS["vyvotts-qwen3"]  # its tokenizer adds <custom_token_i> = TOKENIZER_LENGTH + i too
    assert tiny24.preset_stream(qwen).push(f"<custom_token_{qwen.layout.offset - qwen.custom_token_base}>").size == 0
    with pytest.raises(InvalidArgumentError, match="takes token ids, not text"):
        tiny24.preset_stream("mini-omni").push("<custom_token_10>")
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


def test_maya1_matches_its_card():
    """maya-research/maya1's model card (verbatim copies; the card itself is on Hugging Face):

        CODE_START_TOKEN_ID = 128257
        CODE_END_TOKEN_ID = 128258
        CODE_TOKEN_OFFSET = 128266
        SNAC_MIN_ID = 128266
        SNAC_MAX_ID = 156937
        ...
        snac_codes = [
            token_id for token_id in token_ids[:eos_idx]
            if SNAC_MIN_ID <= token_id <= SNAC_MAX_ID
        ]
        ...
            l1.append((slots[0] - CODE_TOKEN_OFFSET) % 4096)
        ...
        # Trim warmup samples (first 2048 samples)
        if len(audio) > 2048:
            audio = audio[2048:]

    build_prompt: ``soh_token + bos_token + formatted_text + eot_token + eoh_token + soa_token + sos_token`` with
    ``formatted_text = f'<description="{description}"> {text}'``, SOH_ID = 128259, EOH_ID = 128260, SOA_ID = 128261,
    TEXT_EOT_ID = 128009; vllm_streaming_inference.py: DEFAULT_TEMPERATURE = 0.4, DEFAULT_TOP_P = 0.9,
    DEFAULT_MAX_TOKENS = 2000, DEFAULT_REPETITION_PENALTY = 1.1."""
    preset = PRESETS["maya1"]
    assert (preset.start_of_speech, preset.end_of_speech, preset.audio_range) == (128257, (128258,), (128266, 156938))
    assert preset.modulo and preset.trim_samples == 2048
    assert preset.sampling == Sampling(temperature=0.4, top_p=0.9, repetition_penalty=1.1, max_tokens=2000)
    text = {128259: "<custom_token_3>", 128000: "<|begin_of_text|>", 128009: "<|eot_id|>", 128260: "<custom_token_4>",
            128261: "<custom_token_5>", 128257: "<custom_token_1>"}
    card = (text[128259] + text[128000] + '<description="warm, slow"> Hello there.' + text[128009] + text[128260]
            + text[128261] + text[128257])
    assert preset.format_prompt("Hello there.", "warm, slow") == card

    def reference_codes(token_ids):  # extract_snac_codes and the de-interleave, re-typed
        eos = token_ids.index(128258) if 128258 in token_ids else len(token_ids)
        kept = [t for t in token_ids[:eos] if 128266 <= t <= 156937]
        l1, l2, l3 = [], [], []
        for i in range(len(kept) // 7):
            s = kept[i * 7 : (i + 1) * 7]
            l1.append((s[0] - 128266) % 4096)
            l2.extend([(s[1] - 128266) % 4096, (s[4] - 128266) % 4096])
            l3.extend([(s[2] - 128266) % 4096, (s[3] - 128266) % 4096, (s[5] - 128266) % 4096, (s[6] - 128266) % 4096])
        return [np.array(l1), np.array(l2), np.array(l3)]

    codes = _codes(5, seed=11)
    ids = codes_to_tokens(codes, STRIDES, "maya1").tolist()
    ids[1] -= 4096  # another slot's range: reduced modulo 4096 all the same
    generated = [128257, *ids[:9], 157000, *ids[9:], 128258, *ids[:7]]  # one id above the range, then the end
    want = reference_codes(generated)
    got = tokens_to_codes(codes_to_tokens(want, STRIDES, "interleaved"), STRIDES, 4096, "interleaved")
    for a, b in zip(got, codes, strict=True):
        np.testing.assert_array_equal(a, b)
    _MAYA1_CASE.extend([generated, want])


_MAYA1_CASE: list = []  # (ids a Maya1 model generated, the codes its card decodes them to), from the test above


def test_maya1_stream_equals_its_reference_decode(tiny24):
    if not _MAYA1_CASE:
        test_maya1_matches_its_card()
    generated, want = _MAYA1_CASE[:2]
    stream = tiny24.preset_stream("maya1")
    audio = np.concatenate([stream.push(generated[:20]), stream.push(generated[20:])])
    assert stream.done and stream.skipped_ids == 1
    expected = tiny24.decode(want, noise=False)[2048:]
    assert audio.shape == expected.shape and np.abs(audio - expected).max() <= 1e-4


def test_veena_matches_its_card():
    """maya-research/veena-tts's model card (verbatim copies):

        START_OF_SPEECH_TOKEN = 128257
        END_OF_SPEECH_TOKEN = 128258
        START_OF_HUMAN_TOKEN = 128259
        END_OF_HUMAN_TOKEN = 128260
        START_OF_AI_TOKEN = 128261
        END_OF_AI_TOKEN = 128262
        AUDIO_CODE_BASE_OFFSET = 128266

        speakers = ["kavya", "agastya", "maitri", "vinaya"]
        ...
            prompt = f"<spk_{speaker}> {text}"
            prompt_tokens = tokenizer.encode(prompt, add_special_tokens=False)
            input_tokens = [
                START_OF_HUMAN_TOKEN, *prompt_tokens,
                END_OF_HUMAN_TOKEN, START_OF_AI_TOKEN, START_OF_SPEECH_TOKEN
            ]
        ...
                eos_token_id=[END_OF_SPEECH_TOKEN, END_OF_AI_TOKEN]
        ...
        def generate_speech(text, speaker="kavya", temperature=0.4, top_p=0.9):
        ...
                repetition_penalty=1.05,
        ...
            max_tokens = min(int(len(text) * 1.3) * 7 + 21, 700)
        ...
            if torch.any((tensor < 0) | (tensor > 4095)):
                raise ValueError("Invalid SNAC token values")"""
    preset = PRESETS["veena"]
    assert (preset.start_of_speech, preset.end_of_speech, preset.layout.offset) == (128257, (128258, 128262), 128266)
    assert preset.voices == ("kavya", "agastya", "maitri", "vinaya") and preset.default_voice == "kavya"
    assert not preset.modulo and preset.trim_samples == 0
    assert preset.sampling == Sampling(temperature=0.4, top_p=0.9, repetition_penalty=1.05, max_tokens=700)
    assert preset.format_prompt("Namaste.", "maitri") == (
        "<custom_token_3><spk_maitri> Namaste.<custom_token_4><custom_token_5><custom_token_1>"
    )
    with pytest.raises(InvalidArgumentError, match="voices"):
        preset.format_prompt("Namaste.", "tara")


def test_veena_ends_at_either_end_id(tiny24):
    codes = _codes(4, seed=12)
    ids = codes_to_tokens(codes, STRIDES, "veena").tolist()
    for end in (128258, 128262):
        stream = tiny24.preset_stream("veena")
        audio = np.concatenate([stream.push([128257, *ids]), stream.push([end])])
        assert stream.done
        np.testing.assert_allclose(audio, tiny24.decode(codes, noise=False), atol=1e-4, rtol=0)


def test_orpheus_prompt_and_sampling_match_its_package():
    """canopyai/Orpheus-TTS orpheus_tts_pypi/orpheus_tts/engine_class.py:

                adapted_prompt = f"{voice}: {prompt}"
                prompt_tokens = self.tokenizer(adapted_prompt, return_tensors="pt")
                start_token = torch.tensor([[ 128259]], dtype=torch.int64)
                end_tokens = torch.tensor([[128009, 128260, 128261, 128257]], dtype=torch.int64)
                all_input_ids = torch.cat([start_token, prompt_tokens.input_ids, end_tokens], dim=1)
                prompt_string = self.tokenizer.decode(all_input_ids[0])
        ...
        def generate_tokens_sync(self, prompt, voice=None, request_id="req-001", temperature=0.6, top_p=0.8,
                                 max_tokens=1200, stop_token_ids = [49158], repetition_penalty=1.3):

    (the tokenizer adds <|begin_of_text|>; <custom_token_N> is id 128256 + N; stop_token_ids=[128258] in
    realtime_streaming_example/main.py). README.md: "tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"."""
    preset = PRESETS["orpheus"]
    assert preset.format_prompt("Hi.", "leo") == (
        "<custom_token_3><|begin_of_text|>leo: Hi.<|eot_id|><custom_token_4><custom_token_5><custom_token_1>"
    )
    assert preset.format_prompt("Hi.", None).startswith("<custom_token_3><|begin_of_text|>tara: Hi.")
    assert preset.voices == ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")
    assert preset.sampling == Sampling(temperature=0.6, top_p=0.8, repetition_penalty=1.3, max_tokens=1200)
    assert preset.stop_texts() == ["<custom_token_2>"]
    with pytest.raises(InvalidArgumentError, match="empty"):
        preset.format_prompt("  ", None)


@pytest.mark.parametrize(
    "name,length,soh,eot,eoh,text_form",
    [
        ("vyvotts-llama3", 128256, 128259, 128009, 128260, "<custom_token_3><|begin_of_text|>Hi.<|eot_id|><custom_token_4>"),
        ("vyvotts-qwen3", 151669, 151672, 151645, 151673, "<custom_token_3>Hi.<|im_end|><custom_token_4>"),
        ("vyvotts-lfm2", 64400, 64403, 7, 64404, "<custom_token_3><|startoftext|>Hi.<|im_end|><custom_token_4>"),
    ],
)
def test_vyvotts_prompts_match_its_inference(name, length, soh, eot, eoh, text_form):
    """Vyvo-Labs/VyvoTTS vyvotts/inference/base.py:

            prompt = f"{voice}: {text}" if voice is not None else text
            input_ids = self.tokenizer(prompt, return_tensors="pt").input_ids
            start = torch.tensor([[self.START_OF_HUMAN]], dtype=torch.int64)
            end = torch.tensor([[self.END_OF_TEXT, self.END_OF_HUMAN]], dtype=torch.int64)

    with TOKENIZER_LENGTH, START_OF_HUMAN, END_OF_TEXT and END_OF_HUMAN from configs/inference/<name>.yaml, and
    <custom_token_i> = TOKENIZER_LENGTH + i (utils/copy_tokenizer.py). The text of END_OF_TEXT (<|eot_id|>,
    <|im_end|>) and of the BOS the Llama and LFM2 tokenizers add is each tokenizer's own; vllm_inference.py:
    temperature 0.6, top_p 0.8, max_tokens 1200, repetition_penalty 1.3."""
    preset = PRESETS[name]
    assert preset.custom_token_base == length and soh - length == 3 and eoh - length == 4
    assert preset.format_prompt("Hi.", None) == text_form
    assert preset.format_prompt("Hi.", "EN_B00000_S00010").replace("EN_B00000_S00010: ", "") == text_form
    assert preset.sampling == Sampling(temperature=0.6, top_p=0.8, repetition_penalty=1.3, max_tokens=1200)
    # END_OF_TEXT as each tokenizer spells it: Llama 3's <|eot_id|> (128009), Qwen's and LFM2's <|im_end|>
    assert {128009: "<|eot_id|>", 151645: "<|im_end|>", 7: "<|im_end|>"}[eot] + "<custom_token_4>" in text_form


def test_no_preset_for_vyvotts_lfm2_5_which_is_mimi():
    """Vyvo-Labs/VyvoTTS configs/inference/lfm2_5.yaml: ``CODEC_TYPE: "mimi"`` with the lfm2 ids: not SNAC."""
    assert not any("lfm2_5" in name or "lfm2.5" in name for name in PRESETS)


def test_a_tag_with_an_endless_number_is_plain_text_and_the_partial_tag_stays_short(tiny24):
    """A number longer than any vocabulary's ids is no tag: its text is skipped (Python would refuse to convert
    over 4300 digits); a partial tag fed digit runs never grows past a tag's length."""
    stream = tiny24.preset_stream("orpheus")
    assert stream.push("<custom_token_" + "7" * 5000 + ">").size == 0
    assert stream.skipped_chars == len("<custom_token_") + 5000 + 1
    stream.push("<custom_token_")
    for _ in range(100):
        stream.push("9" * 1000)
    assert len(stream._text_tail) <= len("<custom_token_") + 9
