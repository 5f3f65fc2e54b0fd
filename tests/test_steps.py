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
    assert fmt.prompt("Q?") + completion + fmt.header(len(STEPS)) == full  # what SFT and Tree-GRPO train on


def test_tiny_format_text():
    fmt = get_format("tiny")
    assert fmt.render("How many?", STEPS[:1]) == "Question: How many?\nAnswer:\n12 + 5 = 17\n"


def test_step_dpo_headers():
    fmt = get_format("step-dpo")
    assert fmt.render("Q", STEPS[:2]) == "Q\nLet's think step by step.\nStep 1: 12 + 5 = 17\nStep 2: 17 - 3 = 14\nStep 3: "
    assert fmt.split("Step 1: a\nStep 2: b\n") == ["a", "b"]


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
