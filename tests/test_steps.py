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
