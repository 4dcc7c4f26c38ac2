"""gradflowkit.member_optim: one optimizer step per member, as torch.optim on each member alone.

Oracle: torch.optim.SGD / Adam / AdamW run on every member's slice separately, with that
member's learning rate, stepping only when the member is active."""

from __future__ import annotations

import pytest
import torch

from gradflowkit.member_optim import MemberOptimizer, member_values

CASES = {
    "sgd": (torch.optim.SGD, dict()),
    "sgd-momentum-decay": (torch.optim.SGD, dict(momentum=0.9, weight_decay=0.01)),
    "adam": (torch.optim.Adam, dict()),
    "adam-l2": (torch.optim.Adam, dict(weight_decay=0.05, betas=(0.8, 0.99))),
    "adamw": (torch.optim.AdamW, dict(weight_decay=0.1)),
}
KIND = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adamw"}


def run_both(case, lrs, active_rows, steps=6):
    """Apply the same gradients with MemberOptimizer and with per-member torch optimizers."""
    optim, options = CASES[case]
    members = len(lrs)
    shapes = [(members, 3, 2), (members, 4)]
    start = [torch.randn(*s, dtype=torch.float64) for s in shapes]
    grads = [[torch.randn(*s, dtype=torch.float64) for s in shapes] for _ in range(steps)]
    stacked = [torch.nn.Parameter(p.clone()) for p in start]
    opt = MemberOptimizer([(f"p{i}", p) for i, p in enumerate(stacked)], members,
                          kind=KIND[optim], lr=lrs, **options)
    for step in range(steps):
        for p, g in zip(stacked, grads[step]):
            p.grad = g.clone()
        opt.step(torch.tensor(active_rows[step]))
    expected = []
    for m in range(members):
        params = [torch.nn.Parameter(p[m].clone()) for p in start]
        ref = optim(params, lr=lrs[m], **options)
        for step in range(steps):
            if active_rows[step][m]:
                for p, g in zip(params, grads[step]):
                    p.grad = g[m].clone()
                ref.step()
        expected.append(params)
    return stacked, expected


@pytest.mark.parametrize("case", CASES)
def test_equals_torch_optim_per_member(case):
    lrs = [0.1, 0.03, 0.5]
    active = [[True, True, True]] * 6
    stacked, expected = run_both(case, lrs, active)
    for m in range(3):
        for p, ref in zip(stacked, expected[m]):
            torch.testing.assert_close(p[m], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("updates", [False, True])
def test_all_active_steps_equal_the_masked_steps_bit_for_bit(case, updates):
    """When every member steps, SGD and Adam take unmasked in-place paths; their numbers
    must be those of the masked path (here: the same members beside one that rests), so
    that a run does not change when it records its updates or when a member stops."""
    optim, options = CASES[case]
    shapes = [(3, 3, 2), (3, 4)]
    start = [torch.randn(*s) for s in shapes]
    fast = [torch.nn.Parameter(p.clone()) for p in start]
    masked = [torch.nn.Parameter(torch.cat([p, torch.ones_like(p[:1])])) for p in start]
    opts = [MemberOptimizer([(f"p{i}", p) for i, p in enumerate(ps)], n, kind=KIND[optim],
                            lr=[0.1, 0.03, 0.5, 0.2][:n], **options)
            for ps, n in ((fast, 3), (masked, 4))]
    for _ in range(5):
        grads = [torch.randn(*s) for s in shapes]
        for p, g in zip(fast, grads):
            p.grad = g.clone()
        for p, g in zip(masked, grads):
            p.grad = torch.cat([g, torch.full_like(g[:1], float("nan"))])
        got = opts[0].step(torch.ones(3, dtype=torch.bool), updates=updates)
        want = opts[1].step(torch.tensor([True, True, True, False]), updates=updates)
        for i, (p, q) in enumerate(zip(fast, masked)):
            assert torch.equal(p, q[:3]), f"p{i}"
            if updates:
                assert torch.equal(got[f"p{i}"], want[f"p{i}"][:3])
    assert all(torch.equal(q[3], torch.ones_like(q[3])) for q in masked)


@pytest.mark.parametrize("case", CASES)
def test_inactive_members_do_not_move_and_their_state_waits(case):
    lrs = [0.1, 0.2]
    active = [[True, True], [True, False], [False, False], [True, True], [True, False],
              [True, True]]
    stacked, expected = run_both(case, lrs, active)
    for m in range(2):
        for p, ref in zip(stacked, expected[m]):
            torch.testing.assert_close(p[m], ref, rtol=1e-12, atol=1e-12)


def test_nonfinite_gradients_of_inactive_members_are_ignored():
    p = torch.nn.Parameter(torch.ones(2, 3, dtype=torch.float64))
    opt = MemberOptimizer([("p", p)], 2, kind="adam", lr=0.1)
    p.grad = torch.tensor([[1.0, 2.0, 3.0], [float("nan"), float("inf"), 1.0]],
                          dtype=torch.float64)
    opt.step(torch.tensor([True, False]))
    assert torch.isfinite(p).all()
    assert torch.equal(p[1], torch.ones(3, dtype=torch.float64))
    assert not torch.equal(p[0], torch.ones(3, dtype=torch.float64))


def test_updates_are_the_parameter_changes():
    p = torch.nn.Parameter(torch.randn(2, 5, dtype=torch.float64))
    opt = MemberOptimizer([("w", p)], 2, kind="sgd", lr=[0.1, 0.2], momentum=0.5)
    for _ in range(3):
        before = p.detach().clone()
        p.grad = torch.randn(2, 5, dtype=torch.float64)
        deltas = opt.step(torch.tensor([True, False]), updates=True)
        torch.testing.assert_close(deltas["w"], p.detach() - before, rtol=0, atol=1e-15)
        assert torch.equal(deltas["w"][1], torch.zeros(5, dtype=torch.float64))
    assert opt.step(torch.tensor([True, True])) == {}


def test_parameters_without_gradient_are_skipped():
    a = torch.nn.Parameter(torch.ones(2, 2))
    b = torch.nn.Parameter(torch.ones(2, 2))
    opt = MemberOptimizer([("a", a), ("b", b)], 2, lr=1.0)
    a.grad = torch.ones(2, 2)
    opt.step(torch.tensor([True, True]))
    assert torch.equal(a, torch.zeros(2, 2)) and torch.equal(b, torch.ones(2, 2))


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(kind="rmsprop"), ValueError, r"optimizer must be one of"),
    (dict(lr=[0.1]), ValueError, r"lr has 1 values but the ensemble has 2 members"),
    (dict(lr=-0.1), ValueError, r"lr must be > 0, got -0.1"),
    (dict(lr=[0.1, 0.0]), ValueError, r"lr\[1\] must be > 0, got 0.0"),
    (dict(kind="adam", momentum=0.9), ValueError, r"momentum applies to optimizer='sgd'"),
    (dict(kind="adam", betas=(0.9, 1.0)), ValueError, r"betas must be in \[0, 1\)"),
    (dict(weight_decay=-1.0), ValueError, r"weight_decay must be >= 0"),
])
def test_bad_arguments(kwargs, exc, msg):
    p = torch.nn.Parameter(torch.ones(2, 3))
    options = dict(lr=0.1) | kwargs
    with pytest.raises(exc, match=msg):
        MemberOptimizer([("p", p)], 2, **options)


def test_parameters_need_the_member_axis():
    with pytest.raises(ValueError, match=r"parameter 'w' has shape \(3, 2\); .* 2 needs the "
                                         r"member axis first"):
        MemberOptimizer([("w", torch.nn.Parameter(torch.ones(3, 2)))], 2, lr=0.1)


def test_member_values():
    assert member_values("lr", 0.5, 3).tolist() == [0.5, 0.5, 0.5]
    assert member_values("lr", [1, 2], 2).dtype == torch.float64
    with pytest.raises(TypeError, match=r"lr\[0\] must be a real number"):
        member_values("lr", ["a"], 1)


@pytest.mark.parametrize("optim, options", [(torch.optim.SGD, dict(momentum=0.9)),
                                            (torch.optim.Adam, dict()),
                                            (torch.optim.AdamW, dict())])
def test_weight_decay_per_member(optim, options):
    """Oracle: torch.optim on each member alone with that member's weight_decay."""
    decays, lrs = [0.0, 0.05, 0.5], [0.1, 0.1, 0.05]
    start = torch.randn(3, 4, 2, dtype=torch.float64)
    grads = [torch.randn(3, 4, 2, dtype=torch.float64) for _ in range(5)]
    p = torch.nn.Parameter(start.clone())
    opt = MemberOptimizer([("w", p)], 3, kind=KIND[optim], lr=lrs, weight_decay=decays,
                          **options)
    for g in grads:
        p.grad = g.clone()
        opt.step(torch.tensor([True, True, True]))
    for m in range(3):
        q = torch.nn.Parameter(start[m].clone())
        ref = optim([q], lr=lrs[m], weight_decay=decays[m], **options)
        for g in grads:
            q.grad = g[m].clone()
            ref.step()
        torch.testing.assert_close(p[m], q, rtol=1e-12, atol=1e-12)


def test_weight_decay_per_member_checks_values():
    p = torch.nn.Parameter(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"weight_decay must be >= 0, got \[0.1, -1.0\]"):
        MemberOptimizer([("p", p)], 2, lr=0.1, weight_decay=[0.1, -1.0])
    with pytest.raises(ValueError, match=r"weight_decay has 3 values but the ensemble has 2"):
        MemberOptimizer([("p", p)], 2, lr=0.1, weight_decay=[0.1, 0.1, 0.1])


def test_set_lr_checks_and_replaces_the_cached_rate():
    p = torch.nn.Parameter(torch.ones(2, 3))
    opt = MemberOptimizer([("w", p)], 2, lr=0.1)
    p.grad = torch.ones(2, 3)
    opt.step(torch.ones(2, dtype=torch.bool))             # caches -lr on the fast path
    opt.set_lr(torch.tensor([0.5, 0.25], dtype=torch.float64))
    opt.step(torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(p.detach(), torch.tensor([[0.4] * 3, [0.65] * 3]))
    with pytest.raises(ValueError, match=r"lr must have shape \(2,\)"):
        opt.set_lr(torch.tensor([0.1]))
    with pytest.raises(ValueError, match="finite and > 0"):
        opt.set_lr(torch.tensor([0.1, float("nan")]))
