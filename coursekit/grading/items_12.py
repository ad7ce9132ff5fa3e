"""Graded items of lesson 12 (GPUs and scale): FLOPs, bytes kept for backward, the
data-parallel gradient average, and one step of dynamic loss scaling.

References: torch's own FLOP counter (``torch.utils.flop_counter.FlopCounterMode``)
on a coursekit MLP; ``coursekit.checkpoint.saved_bytes``, itself tested against
torch's saved tensors; the mean of the ranks' gradients, computed here while the
student's function runs on 2 and 3 real gloo processes (``coursekit.grading.ranks``);
and ``torch.amp.GradScaler`` for the loss scaler.
"""

from __future__ import annotations

import torch

from coursekit import nn
from coursekit.checkpoint import saved_bytes as _saved_bytes
from coursekit.checkpoint import tensors_in
from coursekit.grading.context import GradingContext, _exception_hint
from coursekit.grading.hints import Mistake
from coursekit.grading.registry import item


# ---------------------------------------------------------------------------- 12.flops
def _counted_flops(batch: int, sizes: list[int]) -> tuple[int, int]:
    """(forward, backward) FLOPs that torch counts on a coursekit MLP with these sizes."""
    from torch.utils.flop_counter import FlopCounterMode  # imported when grading, not before

    g = torch.Generator().manual_seed(0)
    layers: list[nn.Module] = []
    for d, h in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(d, h, generator=g), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    x = torch.randn(batch, sizes[0], generator=g)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        model.backward(torch.ones_like(out))  # Sequential: no dX for the first layer
    return forward, counter.get_total_flops()


@item(
    "12.flops",
    points=2,
    description="forward and backward FLOPs of the matrix products of an MLP",
    signature="fn(batch, sizes) -> (forward_flops, backward_flops), sizes = [D, H1, ..., C]",
    covers="one to four layers, batch 1, wide and narrow layers",
    timeout=30.0,
)
def flops(ctx: GradingContext, fn) -> None:
    for batch, sizes in [(32, [40, 64, 10]), (1, [5, 3]), (7, [3, 20, 20, 20, 2]), (16, [9, 1, 9])]:
        with ctx.case(f"batch {batch}, sizes {sizes}"):
            forward, backward = _counted_flops(batch, sizes)
            pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
            macs = sum(batch * d * h for d, h in pairs)
            first = batch * sizes[0] * sizes[1]
            got = ctx.call(fn, batch, list(sizes), names=("batch", "sizes"))
            if isinstance(got, (tuple, list)) and len(got) == 2:
                got = tuple(float(v) if isinstance(v, int) else v for v in got)
            expected = (
                torch.tensor(float(forward), dtype=torch.float64),
                torch.tensor(float(backward), dtype=torch.float64),
            )
            no_two = "A multiply-add is 2 FLOPs: each output of x @ W is a dot product of "
            no_two += "length D, D multiplications and D additions, so 2*B*D*H per layer."
            mistakes = {
                "forward_flops": [
                    Mistake(float(macs), no_two),
                    Mistake(
                        float(forward + sum(batch * h for _, h in pairs)),
                        "Count only the matrix products: the bias additions (B*H per layer) "
                        "are left out, as the activations are.",
                    ),
                    Mistake(
                        float(2 * sum(d * h for d, h in pairs)),
                        "The count is for a whole batch: every one of the B examples needs "
                        "its own products, so multiply by the batch size.",
                    ),
                ],
                "backward_flops": [
                    Mistake(float(2 * macs - first), no_two),
                    Mistake(
                        float(4 * macs),
                        "The first layer's input is data and needs no gradient: its backward "
                        "computes dW (2*B*D*H) but not dX, so it costs 2*B*D*H, the other "
                        "layers 4*B*D*H.",
                    ),
                    Mistake(
                        float(2 * macs),
                        "The backward of a linear layer has two products of the forward's "
                        "size, dX = dout @ W.T and dW = x.T @ dout: twice the forward "
                        "(except dX of the first layer, which is not needed).",
                    ),
                ],
            }
            ctx.compare(got, expected, ("forward_flops", "backward_flops"), mistakes=mistakes)


# ---------------------------------------------------------------------------- 12.saved_bytes
def _model(ctx: GradingContext, kinds: list[str], sizes: list[int], dtype: torch.dtype):
    g = torch.Generator().manual_seed(int(ctx.randint(1000).item()))
    layers: list[nn.Module] = []
    acts = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "leaky": lambda: nn.LeakyReLU(0.1),
    }
    for i, (d, h) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(d, h, dtype=dtype, generator=g))
        if i < len(kinds):
            layers.append(acts[kinds[i]]())
    return nn.Sequential(*layers)


def _all_tensor_bytes(model: nn.Module, dedupe: bool, skip_params: bool, per_elem=None) -> float:
    params = {id(p.data) for p in model.parameters()}
    seen: set[int] = set()
    total = 0
    for module in model.modules():
        for t in tensors_in(module._cache):
            if skip_params and id(t) in params:
                continue
            if dedupe and id(t) in seen:
                continue
            seen.add(id(t))
            total += t.numel() * (per_elem if per_elem is not None else t.element_size())
    return float(total)


@item(
    "12.saved_bytes",
    points=2,
    description="bytes a coursekit model keeps for backward after a forward pass",
    signature="fn(model) -> int, model a coursekit Sequential after its forward pass",
    covers="float32 and float64, ReLU, tanh, sigmoid and leaky ReLU (a bool mask), one layer",
    timeout=30.0,
)
def saved_bytes(ctx: GradingContext, fn) -> None:
    cases = [
        (["relu"], [6, 9, 4], torch.float32, 5),
        (["tanh", "relu"], [3, 8, 8, 2], torch.float64, 7),
        (["leaky", "sigmoid"], [4, 5, 6, 3], torch.float32, 3),
        ([], [7, 3], torch.float64, 1),
    ]
    for kinds, sizes, dtype, batch in cases:
        model = _model(ctx, kinds, sizes, dtype)
        x = ctx.randn(batch, sizes[0]).to(dtype)
        model(x)
        layers = ", ".join(type(m).__name__ for m in model)
        with ctx.case(f"{layers}, sizes {sizes}, batch {batch}, {str(dtype)[6:]}"):
            expected = torch.tensor(float(_saved_bytes(model)), dtype=torch.float64)
            got = ctx.call(fn, model, names=("model",), opaque=("model",))
            if isinstance(got, int) and not isinstance(got, bool):
                got = float(got)
            mistakes = [
                Mistake(
                    _all_tensor_bytes(model, dedupe=False, skip_params=True),
                    "A tensor kept by two caches is counted twice: the ReLU's output is also "
                    "the next Linear's input x (the very same tensor). Remember what you "
                    "counted (e.g. a set of t.data_ptr()) and count each tensor once.",
                ),
                Mistake(
                    _all_tensor_bytes(model, dedupe=True, skip_params=False),
                    "The weights are counted: a Linear's cache holds w, but w is a parameter "
                    "and is kept anyway. Leave out tensors that are a parameter's .data.",
                ),
                Mistake(
                    _all_tensor_bytes(model, dedupe=False, skip_params=False),
                    "Each tensor must be counted once, and parameters not at all (a Linear's "
                    "cache holds its weight, and the ReLU's output is the next layer's input).",
                ),
                Mistake(
                    _all_tensor_bytes(model, dedupe=True, skip_params=True, per_elem=1),
                    "That is the number of values, not of bytes: multiply each tensor's "
                    "numel() by its element_size() (8 for float64, 4 for float32, 1 for bool).",
                ),
                Mistake(
                    _all_tensor_bytes(model, dedupe=True, skip_params=True, per_elem=4),
                    "Not every value takes 4 bytes: use t.element_size() (8 for float64, 1 for "
                    "the bool mask of a leaky ReLU).",
                ),
            ]
            ctx.compare(got, expected, ("bytes",), mistakes={"bytes": mistakes})


# ---------------------------------------------------------------------------- 12.average_gradients
# Seconds the ranks of one case may take; a rank still inside a collective then is hung.
RANK_TIMEOUT = 8.0
WAITS_FOR_EVER = (
    "Every rank must make the same collective calls, in the same order: a collective "
    "completes only when all ranks have called it, so a rank that skips one (a call inside an "
    "`if` that not every rank takes) leaves the others waiting for ever."
)


def _rank_failure(ctx: GradingContext, reports: list[dict], world: int) -> None:
    """Fail the case if a rank raised, crashed or hung; say which and why."""
    calls = [int(r.get("calls", 0)) if isinstance(r.get("calls"), int) else 0 for r in reports]
    for rank, report in enumerate(reports):
        status = report.get("status")
        if status == "raised":
            text = str(report.get("text") or "it raised an exception")
            trace = str(report.get("traceback") or "").strip()
            shown = f"On rank {rank} of {world}: {text}"
            if trace:
                shown += "\n\nTraceback of rank " + str(rank) + ":\n" + trace
            kind, message = str(report.get("kind") or ""), str(report.get("message") or "")
            ctx.fail(shown, _exception_hint(kind, message, None), "error")
        if status == "crashed" and report.get("joined") is False:  # before the student's code
            raise RuntimeError(f"rank {rank} could not join the process group: {report['text']}")
        if status == "crashed":
            ctx.fail(f"Rank {rank} of {world} failed: {report.get('text')}")
    hung = [rank for rank, report in enumerate(reports) if report.get("status") == "hung"]
    if hung:
        counts = ", ".join(f"rank {r}: {c}" for r, c in enumerate(calls))
        done = [r for r in range(world) if r not in hung]
        waiting = ", ".join(f"rank {r}" for r in hung)
        if done and len(set(calls)) > 1:
            low = min(calls)
            few = ", ".join(f"rank {r}" for r, c in enumerate(calls) if c == low)
            did = "did not call all_reduce" if low == 0 else "called all_reduce fewer times"
            message = (
                f"{few.capitalize()} {did} (all_reduce calls: {counts}), so {waiting} waited "
                "for it in all_reduce for ever and was stopped by the grader."
            )
        elif done:
            message = (
                f"{waiting.capitalize()} did not finish after the other rank(s) had returned "
                f"(all_reduce calls: {counts}): it waited in a collective that the others "
                "never made, and was stopped by the grader."
            )
        else:
            message = (
                f"No rank finished within {RANK_TIMEOUT:g} s (all_reduce calls: {counts}): "
                "an endless loop, or collectives that the ranks make in different orders."
            )
        ctx.fail(message, WAITS_FOR_EVER)


@item(
    "12.average_gradients",
    points=3,
    description="average the gradients over the ranks with torch.distributed.all_reduce",
    signature="fn(grads) -> list of the gradients averaged over all ranks; runs on every rank "
    "of a gloo process group (torch.distributed.all_reduce, get_world_size)",
    covers="2 and 3 gloo processes, one to three gradients of different shapes",
    timeout=60.0,
)
def average_gradients(ctx: GradingContext, fn) -> None:
    from coursekit.grading.ranks import RUN

    for world, shapes in [(2, [(3, 4), (4,)]), (3, [(2, 5)]), (2, [(3,), (2, 2), (5, 1)])]:
        grads = [[ctx.randn(*s) for s in shapes] for _ in range(world)]
        with ctx.case(f"{world} processes (gloo), gradients of shapes {shapes}"):
            reports = ctx.call(fn, grads, RANK_TIMEOUT, names=("grads", "timeout"), via=RUN)
            if (
                not isinstance(reports, list)
                or len(reports) != world
                or not all(isinstance(r, dict) for r in reports)
            ):
                ctx.fail("The ranks' results could not be read.")
            _rank_failure(ctx, reports, world)
            mean = [sum(grads[r][i] for r in range(world)) / world for i in range(len(shapes))]
            names = tuple(f"grads[{i}]" for i in range(len(shapes)))
            for rank in range(world):
                got = reports[rank].get("value")
                if isinstance(got, tuple):
                    got = list(got)
                if not isinstance(got, list) or len(got) != len(shapes):
                    ctx.fail(
                        f"On rank {rank} your function returned "
                        f"{'None' if got is None else type(got).__name__}; it should return "
                        f"the list of the {len(shapes)} averaged gradients.",
                        "Return the gradients (the all-reduced tensors, or new ones), in "
                        "the order of `grads`.",
                    )
                if any(g is None for g in got):
                    ctx.fail(
                        f"On rank {rank} your function returned a list holding None.",
                        "dist.all_reduce(t) works in place and returns None: call it, then "
                        "use t itself (`dist.all_reduce(g)`, not `g = dist.all_reduce(g)`).",
                    )
                own = grads[rank]
                first_ok = (
                    isinstance(got[0], torch.Tensor)
                    and got[0].shape == mean[0].shape
                    and got[0].dtype == mean[0].dtype
                    and torch.allclose(got[0], mean[0])
                )
                summed = [m * world for m in mean]
                mistakes = {
                    n: [
                        Mistake(
                            summed[i],
                            f"This is the sum over the {world} ranks, not the average: after "
                            "all_reduce every rank holds the sum; divide it by "
                            "dist.get_world_size().",
                        ),
                        Mistake(
                            summed[i] / 2,
                            "Divided by 2 whatever the number of ranks: divide by "
                            "dist.get_world_size().",
                        ),
                        Mistake(
                            own[i],
                            f"grads[{i}] is this rank's own gradient: only the first gradient "
                            "was averaged. Call dist.all_reduce on every gradient of the list "
                            "(or on one flat tensor holding them all)."
                            if i > 0 and first_ok
                            else "This is this rank's own gradient: nothing was exchanged. "
                            "Call dist.all_reduce(g) on every gradient; it sums g over the ranks.",
                        ),
                        Mistake(
                            own[i] / world,
                            "Divided by the world size but nothing was exchanged: call "
                            "dist.all_reduce(g) first, which sums g over the ranks.",
                        ),
                        Mistake(
                            mean[i] / world,
                            "Divided by the world size twice (before and after all_reduce?).",
                        ),
                    ]
                    for i, n in enumerate(names)
                }
                for i, n in enumerate(names):
                    ctx.compare(
                        got[i],
                        mean[i],
                        (n,),
                        mistakes={n: mistakes[n]},
                        what=f"the list your function returned on rank {rank}",
                    )


# ---------------------------------------------------------------------------- 12.loss_scaler_step
def _reference_step(grads, scale, good_steps, interval):
    """What torch.amp.GradScaler does: (unscaled grads or None, new scale, new good_steps)."""
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    opt = torch.optim.SGD(params, lr=1.0)
    scaler = torch.amp.GradScaler("cpu", growth_interval=interval)
    state = scaler.state_dict()
    state.update(scale=float(scale), _growth_tracker=int(good_steps))
    scaler.load_state_dict(state)
    scaler.scale(torch.ones(()))  # creates the scale and the tracker from the state
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    scaler.step(opt)  # unscale, then step unless a gradient holds inf or NaN
    scaler.update()
    stepped = any(bool((p.detach() != 0).any()) for p in params)
    unscaled = [-p.detach().clone() for p in params] if stepped else None
    return unscaled, scaler.get_scale(), scaler.state_dict()["_growth_tracker"]


@item(
    "12.loss_scaler_step",
    points=3,
    description="one step of dynamic loss scaling: unscale, skip on inf/NaN, backoff and growth",
    signature="fn(grads, scale, good_steps, growth_interval) -> "
    "(unscaled grads or None to skip, new scale, new good_steps)",
    covers="clean steps, growth at the interval and one step before, inf, -inf, NaN, interval 1",
    timeout=30.0,
)
def loss_scaler_step(ctx: GradingContext, fn) -> None:
    inf, nan = float("inf"), float("nan")
    # (scale, good_steps, growth_interval, a bad value to plant or None)
    cases = [
        (2.0**16, 0, 2000, None),
        (2.0**10, 4, 5, None),
        (2.0**16, 7, 10, inf),
        (512.0, 2, 3, nan),
        (2.0**12, 0, 1, None),
        (8.0, 1, 3, -inf),
        (2.0**20, 5, 100, None),
        (2.0**10, 3, 5, None),
    ]
    for scale, good, interval, bad in cases:
        shapes = [(3, 2), (4,)]
        true = [ctx.randn(*s, scale=1e-4).float() for s in shapes]
        grads = [g * scale for g in true]
        if bad is not None:
            grads[1][int(ctx.randint(4).item())] = bad
        what = "clean" if bad is None else f"a {bad} in grads[1]"
        with ctx.case(f"scale {scale:g}, good_steps {good}, growth_interval {interval}, {what}"):
            expected, new_scale, new_good = _reference_step(grads, scale, good, interval)
            got = ctx.call(
                fn,
                [g.clone() for g in grads],
                scale,
                good,
                interval,
                names=("grads", "scale", "good_steps", "growth_interval"),
            )
            if not isinstance(got, (tuple, list)) or len(got) != 3:
                ctx.fail(
                    "Your function should return three values: (the unscaled gradients or "
                    f"None, the new scale, the new good_steps); it returned {type(got).__name__}.",
                )
            got_grads, got_scale, got_good = got
            if expected is None and got_grads is not None:
                ctx.fail(
                    "The gradients hold an inf or a NaN, so the step must be skipped: return "
                    "None instead of the gradients.",
                    "Check every gradient with torch.isfinite(g).all(): it is False for inf, "
                    "-inf and NaN alike (torch.isinf misses NaN, and a NaN compares False "
                    "with everything).",
                )
            if expected is not None and got_grads is None:
                ctx.fail(
                    "Every gradient is finite, so the step must not be skipped: return the "
                    "unscaled gradients, not None.",
                    "Skip (return None) only when some gradient holds an inf or a NaN.",
                )
            if expected is not None:
                if isinstance(got_grads, tuple):
                    got_grads = list(got_grads)
                times = [g * scale for g in grads]
                mistakes = {
                    f"grads[{i}]": [
                        Mistake(
                            times[i],
                            "The gradients were multiplied by the scale: they were computed "
                            "from the scaled loss and are S times too large, so divide by S.",
                        ),
                        Mistake(grads[i], "The gradients are still scaled: divide them by S."),
                    ]
                    for i in range(len(grads))
                }
                ctx.compare(
                    got_grads,
                    expected,
                    tuple(f"grads[{i}]" for i in range(len(grads))),
                    mistakes=mistakes,
                    what="the unscaled gradients",
                )
            scale_mistakes: list[Mistake] = []
            if bad is None and good + 1 == interval:
                scale_mistakes = [
                    Mistake(
                        float(scale),
                        f"This was the {interval}th clean step in a row (good_steps was "
                        f"{good}, one more makes {interval} = growth_interval): double the "
                        "scale and set good_steps back to 0.",
                    )
                ]
            if bad is None and good + 1 < interval:
                scale_mistakes = [
                    Mistake(
                        float(scale * 2),
                        "Grown too early: double the scale only when good_steps + 1 reaches "
                        "growth_interval (count this clean step first, then compare).",
                    )
                ]
            if bad is not None:
                scale_mistakes = [
                    Mistake(
                        float(scale),
                        "After an overflow (inf or NaN) the scale must be halved: the next step "
                        "then has a chance to fit in float16's range.",
                    )
                ]
            ctx.compare(
                float(got_scale) if isinstance(got_scale, (int, float)) else got_scale,
                torch.tensor(float(new_scale), dtype=torch.float64),
                ("scale",),
                mistakes={"scale": scale_mistakes},
                what="the new scale",
            )
            good_mistakes = []
            if bad is not None:
                good_mistakes.append(
                    Mistake(
                        float(good),
                        "After an overflow the count of clean steps starts again: good_steps = 0.",
                    )
                )
            if bad is None and good + 1 == interval:
                good_mistakes.append(
                    Mistake(
                        float(interval),
                        "After growing the scale, good_steps starts again from 0.",
                    )
                )
            if bad is None and good + 1 < interval:
                good_mistakes.append(Mistake(float(good), "A clean step adds one to good_steps."))
            ctx.compare(
                float(got_good) if isinstance(got_good, int) else got_good,
                torch.tensor(float(new_good), dtype=torch.float64),
                ("good_steps",),
                mistakes={"good_steps": good_mistakes},
                what="the new good_steps",
            )
