"""Lesson 12's graded items: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations

import torch
import torch.distributed as dist


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)


# ---------------------------------------------------------------------------- correct
def mlp_flops(batch, sizes):
    forward, backward = 0, 0
    for i, (d, h) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        forward += 2 * batch * d * h
        backward += 2 * batch * d * h  # dW
        if i > 0:
            backward += 2 * batch * d * h  # dX, not needed for the first layer
    return forward, backward


def saved_bytes(model):
    params = {p.data.data_ptr() for p in model.parameters()}
    seen, total = set(), 0
    for module in model.modules():
        for t in _tensors(module._cache):
            if t.data_ptr() in params or t.data_ptr() in seen:
                continue
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def average_gradients(grads):
    world = dist.get_world_size()
    for g in grads:
        dist.all_reduce(g)  # the sum over the ranks, in place
        g /= world
    return grads


def average_gradients_flat(grads):
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    out, offset = [], 0
    for g in grads:
        out.append(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    return out


def average_gradients_new_tensors(grads):
    out = []
    for g in grads:
        total = g.clone()
        torch.distributed.all_reduce(total)
        out.append(total / torch.distributed.get_world_size())
    return tuple(out)


def loss_scaler_step(grads, scale, good_steps, growth_interval):
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        return None, scale * 0.5, 0
    unscaled = [g / scale for g in grads]
    good_steps += 1
    if good_steps == growth_interval:
        return unscaled, scale * 2.0, 0
    return unscaled, scale, good_steps


SOLUTIONS = {
    "12.flops": [mlp_flops],
    "12.saved_bytes": [saved_bytes],
    "12.average_gradients": [
        average_gradients,
        average_gradients_flat,
        average_gradients_new_tensors,
    ],
    "12.loss_scaler_step": [loss_scaler_step],
}


# ---------------------------------------------------------------------------- mistakes
def flops_no_factor_two(batch, sizes):
    f, b = mlp_flops(batch, sizes)
    return f // 2, b // 2


def flops_first_layer_dx(batch, sizes):
    f, _ = mlp_flops(batch, sizes)
    return f, 2 * f


def flops_backward_equals_forward(batch, sizes):
    f, _ = mlp_flops(batch, sizes)
    return f, f


def flops_no_batch(batch, sizes):
    return mlp_flops(1, sizes)


def saved_bytes_twice(model):
    params = {p.data.data_ptr() for p in model.parameters()}
    return sum(
        t.numel() * t.element_size()
        for m in model.modules()
        for t in _tensors(m._cache)
        if t.data_ptr() not in params
    )


def saved_bytes_with_weights(model):
    seen, total = set(), 0
    for m in model.modules():
        for t in _tensors(m._cache):
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
    return total


def saved_bytes_four_per_value(model):
    params = {p.data.data_ptr() for p in model.parameters()}
    seen, total = set(), 0
    for m in model.modules():
        for t in _tensors(m._cache):
            if t.data_ptr() not in params and t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += 4 * t.numel()
    return total


def average_sum_only(grads):
    for g in grads:
        dist.all_reduce(g)
    return grads


def average_by_two(grads):
    for g in grads:
        dist.all_reduce(g)
        g /= 2
    return grads


def average_no_exchange(grads):
    return [g / dist.get_world_size() for g in grads]


def average_divided_twice(grads):
    world = dist.get_world_size()
    for g in grads:
        g /= world
        dist.all_reduce(g)
        g /= world
    return grads


def average_first_only(grads):
    for g in grads:
        dist.all_reduce(g)
        g /= dist.get_world_size()
        return grads  # returns inside the loop: the other gradients are left alone


def average_keeps_none(grads):
    return [dist.all_reduce(g) for g in grads]  # all_reduce returns None


def average_skipped_on_rank_1(grads):
    if dist.get_rank() == 1:  # rank 0 waits for ever in its all_reduce
        return grads
    return average_gradients(grads)


def average_raises_on_rank_1(grads):
    if dist.get_rank() == 1:
        raise ValueError("rank 1 has no gradients")
    return average_gradients(grads)


def average_first_rank_only(grads):
    # calls all_reduce a different number of times depending on the values: ranks disagree
    for g in grads:
        if g.sum() > 0:
            dist.all_reduce(g)
        g /= dist.get_world_size()
    return grads


def scaler_isinf_only(grads, scale, good_steps, growth_interval):
    if any(bool(torch.isinf(g).any()) for g in grads):  # a NaN gets through
        return None, scale * 0.5, 0
    good_steps += 1
    if good_steps == growth_interval:
        return [g / scale for g in grads], scale * 2.0, 0
    return [g / scale for g in grads], scale, good_steps


def scaler_no_backoff(grads, scale, good_steps, growth_interval):
    unscaled, new_scale, new_good = loss_scaler_step(grads, scale, good_steps, growth_interval)
    return unscaled, (scale if unscaled is None else new_scale), new_good


def scaler_keeps_count(grads, scale, good_steps, growth_interval):
    unscaled, new_scale, new_good = loss_scaler_step(grads, scale, good_steps, growth_interval)
    return unscaled, new_scale, (good_steps if unscaled is None else new_good)


def scaler_grows_early(grads, scale, good_steps, growth_interval):
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        return None, scale * 0.5, 0
    if good_steps + 1 >= growth_interval - 1:
        return [g / scale for g in grads], scale * 2.0, 0
    return [g / scale for g in grads], scale, good_steps + 1


def scaler_multiplies(grads, scale, good_steps, growth_interval):
    unscaled, new_scale, new_good = loss_scaler_step(grads, scale, good_steps, growth_interval)
    if unscaled is None:
        return None, new_scale, new_good
    return [g * scale for g in grads], new_scale, new_good


def scaler_in_place(grads, scale, good_steps, growth_interval):
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        return None, scale * 0.5, 0
    for g in grads:
        g /= scale
    return loss_scaler_step([g * scale for g in grads], scale, good_steps, growth_interval)


def scaler_no_reset_after_growth(grads, scale, good_steps, growth_interval):
    unscaled, new_scale, new_good = loss_scaler_step(grads, scale, good_steps, growth_interval)
    if unscaled is not None and new_scale != scale:
        return unscaled, new_scale, growth_interval
    return unscaled, new_scale, new_good


MISTAKES = [
    ("12.flops", flops_no_factor_two, "multiply-add is 2 FLOPs"),
    ("12.flops", flops_first_layer_dx, "first layer's input is data"),
    ("12.flops", flops_backward_equals_forward, "two products of the forward's"),
    ("12.flops", flops_no_batch, "multiply by the batch size"),
    ("12.saved_bytes", saved_bytes_twice, "counted twice"),
    ("12.saved_bytes", saved_bytes_with_weights, "weights are counted"),
    ("12.saved_bytes", saved_bytes_four_per_value, "Not every value takes 4 bytes"),
    ("12.average_gradients", average_sum_only, "not the average"),
    ("12.average_gradients", average_by_two, "Divided by 2"),
    ("12.average_gradients", average_no_exchange, "nothing was exchanged"),
    ("12.average_gradients", average_divided_twice, "twice"),
    ("12.average_gradients", average_first_only, "only the first gradient was averaged"),
    ("12.average_gradients", average_keeps_none, "returns None"),
    ("12.average_gradients", average_skipped_on_rank_1, "Rank 1 did not call all_reduce"),
    ("12.average_gradients", average_raises_on_rank_1, "ValueError: rank 1 has no gradients"),
    ("12.loss_scaler_step", scaler_isinf_only, "torch.isinf misses NaN"),
    ("12.loss_scaler_step", scaler_no_backoff, "must be halved"),
    ("12.loss_scaler_step", scaler_keeps_count, "starts again: good_steps = 0"),
    ("12.loss_scaler_step", scaler_grows_early, "Grown too early"),
    ("12.loss_scaler_step", scaler_multiplies, "multiplied by the scale"),
    ("12.loss_scaler_step", scaler_in_place, "modified its input"),
    ("12.loss_scaler_step", scaler_no_reset_after_growth, "starts again from 0"),
]

# Named on seed 0; on other seeds the ranks' gradients may happen to agree in sign.
SEED_0_MISTAKES = [
    ("12.average_gradients", average_first_rank_only, "for ever"),
]
