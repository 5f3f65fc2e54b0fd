import pytest

from reasoner.steps import FORMATS, StepFormat, get_format, is_final_step

STEPS = ["12 + 5 = 17", "17 - 3 = 14", "The answer is 14"]


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_render_is_prefix_closed_and_splits_back(name):
    fmt = get_format(name)
    full = fmt.render("Q?", STEPS)
    for k in range(len(STEPS)):
        assert full.startswith(fmt.render("Q?", STEPS[:k]))
    completion = fmt.render_solution(STEPS)
    assert fmt.split(completion) == STEPS
    assert fmt.prompt("Q?") + completion + fmt.open_header(len(STEPS)) == full  # what SFT and Tree-GRPO train on


def test_tiny_format_text():
    fmt = get_format("tiny")
    assert fmt.render("How many?", STEPS[:1]) == "Question: How many?\nAnswer:\n12 + 5 = 17\n"


def test_step_dpo_headers():
    fmt = get_format("step-dpo")
    assert fmt.render("Q", STEPS[:2]) == "Q\nLet's think step by step.\nStep 1: 12 + 5 = 17\nStep 2: 17 - 3 = 14\nStep 3:"
    assert fmt.split("Step 1: a\nStep 2: b\n") == ["a", "b"]


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_a_rendered_prefix_tokenizes_as_the_start_of_the_training_row(name):
    """What the generator encodes before step k is a token prefix of the SFT row, and the step it should write
    next starts the rest: a prefix that ended in the header's lone space token would not be (``: `` + ``Tom``
    where training has ``:`` + `` Tom``)."""
    from reasoner.models import encode_prefix, load_policy
    from reasoner.trainers.sft import sft_example

    tokenizer, fmt = load_policy().tokenizer, get_format(name)
    steps = ["Tom has 12 + 5 = 17", "Then 17 - 3 = 14", "The answer is 14"]
    row = sft_example(tokenizer, fmt, "Q?", steps)["input_ids"]
    for k in range(len(steps)):
        prefix = encode_prefix(tokenizer, fmt.render("Q?", steps[:k]))
        step = tokenizer(fmt.gap_after(fmt.render("Q?", steps[:k])) + steps[k] + fmt.delimiter,
                         add_special_tokens=False)["input_ids"]
        assert row[:len(prefix) + len(step)] == prefix + step


def test_gap_after_an_open_header_only():
    fmt = get_format("step-dpo")
    assert fmt.header_gap == " " and fmt.open_header(2) == "Step 3:"
    assert fmt.gap_after(fmt.render("Q", STEPS[:1])) == " "
    assert fmt.gap_after(fmt.prompt("Q")) == ""  # the bare template: the completion writes "Step 1: ..." itself
    assert fmt.gap_after("Q\nStep 2: ") == ""  # a prefix written with the whole header
    assert get_format("tiny").gap_after("Question: Q\nAnswer:\n12 + 5 = 17") == ""
    custom = StepFormat("custom", "Q: {question} =>", "\n", "Step {k}: ")  # a template that ends in no whitespace
    assert custom.gap_after(custom.prompt("q")) == "" and custom.gap_after(custom.render("q", ["a"])) == " "


def test_round_trip_dict_and_errors():
    fmt = get_format("newline2")
    assert StepFormat.from_dict(fmt.to_dict()) == fmt
    with pytest.raises(ValueError, match="unknown step format"):
        get_format("nope")


def test_final_step_detection():
    assert is_final_step("The answer is 14")
    assert is_final_step("so $\\boxed{3}$")
    assert is_final_step("#### 7")
    assert not is_final_step("17 - 3 = 14")


@pytest.fixture(scope="module")
def sentencepiece_style_tokenizer():
    """A BPE tokenizer with a Metaspace pre-tokenizer (Llama 2 / Mistral style: any text it is given starts with
    a ``▁`` dummy prefix), trained here on synthetic problems: no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from data.synthetic import load_split

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    # newlines stand alone, as Llama 2's byte-fallback <0x0A> does; "▁" before the start of any text it is given
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", behavior="isolated"),
                                                 pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    texts = [f"{p.question}\n{p.solution}\nStep 1: Let's think step by step." for p in load_split("train", limit=300)]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_rows_built_piece_by_piece_match_the_whole_text_with_a_dummy_prefix_tokenizer(name, sentencepiece_style_tokenizer):
    """SFT rows, pair completions and value-model pieces are tokenized piece by piece; with a tokenizer that puts a
    ``▁`` before any text it is given, each piece must still come out as it does inside the whole text the
    generator encodes (``Step`` after a newline, not ``▁Step``)."""
    from prm.model import encode_steps
    from reasoner.models import encode_continuation, encode_prefix
    from reasoner.trainers.pairs import tokenize_pair
    from reasoner.trainers.sft import sft_example

    tokenizer, fmt = sentencepiece_style_tokenizer, get_format(name)
    assert tokenizer("Step", add_special_tokens=False)["input_ids"] != encode_continuation(tokenizer, "Step")
    whole = lambda text: encode_prefix(tokenizer, text)  # noqa: E731
    row = sft_example(tokenizer, fmt, "Q?", STEPS)["input_ids"]
    assert row[:-1] == whole(fmt.prompt("Q?") + fmt.render_solution(STEPS))
    prompt = fmt.render("Q?", STEPS[:1])
    chosen = fmt.gap_after(prompt) + STEPS[1]
    pair = tokenize_pair(tokenizer, fmt, prompt, chosen, chosen)
    assert pair["prompt"] + pair["chosen"] == whole(prompt + chosen + fmt.delimiter)
    ids, _, _ = encode_steps(tokenizer, fmt, fmt.prompt("Q?"), STEPS)
    assert ids == whole(fmt.prompt("Q?") + fmt.render_solution(STEPS))


def test_byte_level_tokenizers_tokenize_pieces_alone():
    from reasoner.models import encode_continuation, load_policy

    tokenizer = load_policy().tokenizer
    assert encode_continuation(tokenizer, "Step 2: Tom") == tokenizer("Step 2: Tom", add_special_tokens=False)["input_ids"]
