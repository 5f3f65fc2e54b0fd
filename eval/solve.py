"""`reasoner solve` and `reasoner eval-policy`: run a policy on questions through a `StepGenerator`."""

from __future__ import annotations

from data.answers import is_equivalent
from data.problems import Problem, load_problems
from search.decode import accuracy_report, greedy, majority_answer, sample_solutions

__all__ = ["solve", "evaluate_policy", "load_generator"]


def load_generator(policy: str | None, backend: str = "hf", seed: int = 0, device: str | None = None):
    """Load a policy (embedded default when None) and wrap it in a step generator."""
    from reasoner.backends import make_generator
    from reasoner.models import load_policy

    if backend == "vllm":
        return make_generator(policy, "vllm", seed=seed)
    return make_generator(load_policy(policy, device=device), "hf", seed=seed)


def solve(*, question: str | None, problems: str | None, limit: int | None, policy: str | None, samples: int,
          temperature: float, backend: str = "hf", seed: int = 0, device: str | None = None) -> int:
    """Print the steps and extracted answer of each question (and k samples + majority with ``samples``)."""
    if (question is None) == (problems is None):
        raise ValueError("give either a QUESTION or --problems SPEC")
    if question is not None and not question.strip():
        raise ValueError("the question is empty")
    items = [Problem("question", question, "")] if question else load_problems(problems, limit=limit)
    generator = load_generator(policy, backend, seed, device)
    questions = [p.question for p in items]
    if samples:
        groups = sample_solutions(generator, questions, samples, temperature=temperature)
    else:
        groups = [[s] for s in greedy(generator, questions)]
    correct = 0
    for problem, group in zip(items, groups):
        print(f"── {problem.id}: {problem.question}")
        for number, solution in enumerate(group, start=1):
            label = f"sample {number}" if samples else "greedy"
            print(f"  [{label}] " + "\n  ".join(solution.steps) if solution.steps else f"  [{label}] (no steps)")
            print(f"    → answer: {solution.answer}  ({solution.tokens} tokens)")
        final = majority_answer(group) if samples else group[0].answer
        if samples:
            print(f"  majority answer of {samples}: {final}")
        if problem.answer:
            verdict = is_equivalent(final, problem.answer)
            correct += verdict
            print(f"  gold: {problem.answer}  {'✓' if verdict else '✗'}")
        print()
    if problems:
        print(f"{correct}/{len(items)} correct")
    return 0


def evaluate_policy(*, problems: str, limit: int | None, policy: str | None, k: int, temperature: float,
                    seed: int = 0, backend: str = "hf", device: str | None = None, samples: int | None = None) -> dict:
    """Greedy accuracy, pass@k and maj@k (temperature sampling) of a policy on a problem spec; pass@k is
    estimated without bias from ``samples`` (>= k) draws per problem when given."""
    items = load_problems(problems, limit=limit, needed_for="evaluate")
    generator = load_generator(policy, backend, seed, device)
    report = accuracy_report(generator, [p.question for p in items], [p.answer for p in items], k=k,
                             temperature=temperature, samples=samples)
    result = {"problems": problems, "n": len(items), "policy": policy or "embedded",
              **{key: round(value, 4 if "seconds" not in key else 2) for key, value in report.items()}}
    if k:
        result["temperature"] = temperature
    return result
